// ops/matmul.h — matrix products: the differentiable `matmul` and the CPU GEMM it runs on.
//
// matmul(a, b) multiplies the last two dims: a [..., M, K] · b [..., K, N] → [..., M, N],
// the leading (batch) dims broadcast numpy-style like torch.matmul. Both inputs need at
// least 2 dims (1-D inputs are refused, not silently promoted: say unsqueeze what you mean).
// CPU dtypes: f32 and f64.
//
// The CPU GEMM goes to CBLAS (OpenBLAS) when the build found it, else to our own cache-
// tiled OpenMP kernel; RN_GEMM=tiled in the environment (or set_gemm_backend) forces the
// tiled kernel, which is also callable directly so tests can compare it with CBLAS.
// Transposed views reach the kernels as a transpose flag, not as a copy.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace rn {

Tensor matmul(const Tensor& a, const Tensor& b);

// One raw GEMM (cpu::gemm's contract, alpha = 1) on `device`'s backend, for ops that place
// products into buffers of their own (accumulating with beta = 1, writing row blocks). On
// CUDA, bf16 inputs with c_dt = f32 accumulate into an f32 C (cuda::gemm_bf16_f32);
// otherwise C has the inputs' dtype dt.
void gemm_on(const Device& device, DType dt, DType c_dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
             const void* A, int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc);

namespace cpu {

// Row-major GEMM, dims key M, N, K:
//   C [M, N] = alpha · op(A) [M, K] · op(B) [K, N] + beta · C
// op(A) = A stored [M, K] with row stride lda ≥ K, or with transA, Aᵀ where A is stored
// [K, M] with lda ≥ M; likewise B ([K, N], ldb ≥ N; transB: [N, K], ldb ≥ K). C is [M, N]
// with ldc ≥ N. beta = 0 never reads C (it may hold garbage or NaN). dt: f32 or f64.
void gemm(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc);

// Our own kernel, always compiled, same contract as gemm: packed panels blocked for L1/L2,
// a register-tiled micro-kernel (AVX2+FMA where the CPU has it, chosen at run time), OpenMP
// over tiles. max_threads = 0 uses omp_get_max_threads(); 1 runs serially (inside a
// parallel batch loop).
void gemm_tiled(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                const void* A, int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc,
                int max_threads = 0);

// `batch` independent GEMMs with the same M, N, K, transposes and leading dims; matrix i
// starts at A + a_off[i], B + b_off[i], C + c_off[i] (offsets in elements; broadcast
// batches repeat an offset). Small products (≤ 64³ multiply-adds) run one matrix per
// OpenMP thread, each GEMM single-threaded; large ones run one after another, each
// threaded inside (OpenBLAS's threads or ours) — never OpenMP around threaded OpenBLAS.
void gemm_batched(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                  const void* A, int64_t lda, const int64_t* a_off, const void* B, int64_t ldb,
                  const int64_t* b_off, double beta, void* C, int64_t ldc, const int64_t* c_off, int64_t batch);

// Which kernel gemm uses. The default is blas when the build has it, else tiled; the
// environment variable RN_GEMM=tiled|blas sets it at first use.
enum class GemmBackend : uint8_t { blas, tiled };
GemmBackend gemm_backend();
void set_gemm_backend(GemmBackend backend);  // throws when blas is asked for without it
bool have_blas();
const char* gemm_backend_name(GemmBackend backend);
// which micro-kernel the tiled GEMM runs on this CPU ("avx2+fma" or "generic")
const char* gemm_tiled_isa();
// forces the portable SSE2 micro-kernel even where AVX2 is present, so tests exercise it
// on every machine (RN_GEMM_ISA=generic in the environment does the same at first use)
void set_gemm_tiled_generic(bool on);

}  // namespace cpu
}  // namespace rn
