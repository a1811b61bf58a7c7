// cuda/context.h — per-device CUDA state: the compute stream, cuBLAS and cuBLASLt handles
// (with a workspace), and the caching allocator's statistics.
//
// Note [One compute stream]: every kernel of a device runs on that device's one stream,
// created with default flags so that it also orders against the legacy default stream
// used by plain cudaMemcpy. The caching allocator relies on this: a block freed on the
// host can be handed to the next allocation at once, because every later kernel runs
// after every earlier one on the same stream.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace rn::cuda {

cudaStream_t stream(int device = -1);  // -1: the current device
cublasHandle_t cublas_handle(int device = -1);
cublasLtHandle_t cublaslt_handle(int device = -1);
void* cublaslt_workspace(int device, size_t* bytes);
int current_device();
int sm_count(int device = -1);
// the shared memory a block may have with cudaFuncAttributeMaxDynamicSharedMemorySize (227 KiB
// on an H100 or H200, 163 KiB on an A100), read once a device
size_t smem_per_block_optin(int device = -1);

// TF32 for f32 matmuls: off by default (exact fp32), an explicit opt-in
void set_allow_tf32(bool on);
bool allow_tf32();

}  // namespace rn::cuda
