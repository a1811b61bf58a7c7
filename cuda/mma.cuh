// cuda/mma.cuh — the PTX wrappers the tensor-core kernels share (sm_80+): asynchronous
// global → shared copies (cp.async), shared → register matrix loads (ldmatrix) and the
// bf16 m16n8k16 MMA with fp32 accumulators, packing two floats into a bf16 pair, and the
// accumulator strip type a warp's MMAs fill.
// Header-only, included by .cu files only (cuda/retention_tc.cu, cuda/attention_tc.cu,
// cuda/attention_decode.cu). How each kernel lays out its tiles stays in that kernel.
// Under RN_CUDA_EMU (tests/cuda_emu/) the PTX wrappers come from the CPU emulator instead.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#include "cuda/math.cuh"  // bf16_t

#ifdef RN_CUDA_EMU
#include "tests/cuda_emu/mma.h"
#endif

namespace rn::cuda::mma {

#ifndef RN_CUDA_EMU
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global → shared, asynchronous; valid = false writes 16 zero bytes instead
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
// 4 bytes (one float), zero-filled when not valid
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// waits until at most N committed groups are still in flight
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// four 8×8 bf16 matrices from shared memory (lanes 8i..8i+7 give matrix i's row addresses)
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16_t* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p))
                 : "memory");
}
// the same, each matrix transposed
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16_t* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p))
                 : "memory");
}

// d[16×8] += a[16×16] · b[16×8]. Fragment layout (g = lane/4, q = lane%4):
//   a0 (g, 2q..2q+1)  a1 (g+8, 2q..)  a2 (g, 2q+8..)  a3 (g+8, 2q+8..)    [row, k]
//   b0 (k 2q..2q+1, n g)  b1 (k 2q+8.., n g)
//   d0,d1 (g, 2q..2q+1)  d2,d3 (g+8, 2q..2q+1)                              [row, col]
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif  // RN_CUDA_EMU

// two floats as one bf16 pair (lo in the low half), rounded to nearest
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}

// A warp's 16-row strip of fp32 accumulators over NT n-tiles of 8 columns (mma16816's d
// fragments side by side): element [j][e] is row g + 8·(e/2), column 8j + 2q + (e%2).
template <int NT>
using Acc = float[NT][4];

template <int NT>
__device__ __forceinline__ void zero(Acc<NT>& a) {
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) a[j][e] = 0.f;
}

}  // namespace rn::cuda::mma
