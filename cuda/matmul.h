// cuda/matmul.h — the GPU GEMM behind rn::matmul: cuBLAS / cuBLASLt, one to one with the
// rn::cpu GEMM entries of ops/matmul.h (same names, same argument meaning, device pointers).
// Dims key: C [M, N] = alpha · op(A) [M, K] · op(B) [K, N] + beta · C, all row-major.
//
// Every call runs on the current device's compute stream (Note [One compute stream] in
// cuda/context.h); the caller selects the device (rn::matmul sets it from its tensors).
//   f32  — cublasGemmEx with CUBLAS_COMPUTE_32F: exact fp32, no TF32, unless
//          set_allow_tf32(true) opted in (then CUBLAS_COMPUTE_32F_FAST_TF32).
//   bf16 — cublasLtMatmul, fp32 accumulation, bf16 in and out, algorithm from the Lt
//          heuristic with the 32 MiB workspace; descriptors and the chosen algorithm are
//          cached per shape, so a training step never re-queries the heuristic (with
//          RN_GEMM_TUNE=N, the fastest of its first N, timed on first use: Note [Tuned
//          plans] in cuda/matmul.cpp). When Lt has
//          no algorithm for a shape, cublasGemmEx (CUBLAS_COMPUTE_32F) runs it instead.
//   f64  — cublasDgemm.
//   x · Wᵀ with 1–4 rows of x (f32 or bf16, W stored [N, K], beta = 0, one matrix; the
//          exact rule is cuda::gemv_preferred): cuda/gemv.h's kernel, faster than cuBLAS's
//          tiled GEMMs on a decode step's products; set_gemv_enabled(false) sends them to cuBLAS.
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace rn::cuda {

// Row-major GEMM, the contract of rn::cpu::gemm: op(A) = A stored [M, K] with lda ≥ K, or
// with transA, Aᵀ where A is stored [K, M] with lda ≥ M; likewise B ([K, N], ldb ≥ N; transB:
// [N, K], ldb ≥ K); C [M, N] with ldc ≥ N. beta = 0 never reads C. dt: f32, f64 or bf16.
void gemm(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc);

// The gemm contract with bf16 A and B and an f32 C (fp32 accumulation, alpha and beta in
// f32): a sum over several products, kept in f32 between them, is rounded once at the end
// instead of once a product (ops/linear_cross_entropy.cpp sums the output projection's
// weight gradient over row blocks this way). cublasGemmEx, CUBLAS_COMPUTE_32F.
void gemm_bf16_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                   int64_t lda, const void* B, int64_t ldb, double beta, float* C, int64_t ldc);

// `batch` GEMMs with the same M, N, K, transposes and leading dims; matrix i starts at
// A + i·strideA, B + i·strideB, C + i·strideC (elements). strideA or strideB may be 0: a
// broadcast operand is read in place, never copied. strideC must keep the outputs apart.
void gemm_strided_batched(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                          const void* A, int64_t lda, int64_t strideA, const void* B, int64_t ldb,
                          int64_t strideB, double beta, void* C, int64_t ldc, int64_t strideC, int64_t batch);

// The rn::cpu::gemm_batched contract: matrix i starts at A + a_off[i], B + b_off[i],
// C + c_off[i] (host arrays of element offsets). Consecutive matrices whose offsets step
// evenly become one strided-batched call, so a batch that broadcasts over several dims
// ([B, 1, ...] · [1, H, ...]) costs a few launches, not one per matrix.
void gemm_batched(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                  const void* A, int64_t lda, const int64_t* a_off, const void* B, int64_t ldb,
                  const int64_t* b_off, double beta, void* C, int64_t ldc, const int64_t* c_off, int64_t batch);

// Counters for tests and benchmarks (process-wide, all devices).
struct GemmStats {
    int64_t lt_calls = 0;           // bf16 products run by cublasLtMatmul
    int64_t gemm_ex_calls = 0;      // products run by the classic API (f32, f64, bf16 fallback)
    int64_t heuristic_queries = 0;  // cublasLtMatmulAlgoGetHeuristic calls (one per new shape)
    int64_t lt_no_algorithm = 0;    // shapes for which Lt offered nothing (then cublasGemmEx)
    int64_t cached_shapes = 0;      // entries in the Lt plan cache now
    int64_t gemv_calls = 0;         // few-row products run by cuda/gemv.h's kernel
    int64_t tuned_shapes = 0;       // plans whose algorithm was picked by timing (RN_GEMM_TUNE)
    int64_t pinned_shapes = 0;      // plans that took an imported algorithm (gemm_tuned_import)
    int64_t pins_failed = 0;        // imported algorithms cuBLASLt refused for their shape
};
GemmStats gemm_stats();
// Drops every cached Lt plan (descriptors and algorithm); the next call per shape re-queries.
void clear_gemm_cache();
// Tuned plans (Note [Tuned plans] in cuda/matmul.cpp): how many of the heuristic's
// algorithms a new bf16 shape times on its first call, 1 (the default: no timing) to 16;
// 0 hands the choice back to RN_GEMM_TUNE, which any other value overrides. `retnet train`
// sets it (--gemm-tune).
void set_gemm_tune(int candidates);
int gemm_tune();
// The algorithms picked so far on the current device (by timing, or imported), as the text
// of core/gemm_pins.h.
std::string gemm_tuned_export();
// Pins each shape of such a text to its algorithm from now on (clears the plan cache so
// they apply); returns how many. Returns 0 and sets *why when the text was made on another
// GPU model or cuBLASLt version (its algorithms may not exist here). Throws, naming
// `source` and the line, on text that is not in the format.
int64_t gemm_tuned_import(const std::string& text, const std::string& source, std::string* why);
// TF32 for f32 products: off by default. Defined in cuda/context.cpp (cuda/context.h);
// declared here as well so code that must also build without CUDA (tests, benchmarks,
// the CLI) can name it without including the cuBLAS headers. Without CUDA it is a plain
// flag that nothing reads: there is no f32 GPU product for it to change.
void set_allow_tf32(bool on);
bool allow_tf32();
// bf16 through cuBLASLt (default on); off sends bf16 to cublasGemmEx, so tests can check
// the fallback path and benchmarks can compare the two.
void set_gemm_use_lt(bool on);
bool gemm_use_lt();
// the few-row kernel (cuda/gemv.h) for the products it takes (default on); off sends them to
// cuBLAS, so tests and benchmarks can compare the two.
void set_gemv_enabled(bool on);
bool gemv_enabled();

}  // namespace rn::cuda
