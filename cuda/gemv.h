// cuda/gemv.h — products of a few rows with a weight stored [N, K] (x · Wᵀ, x [M, K] with
// M ≤ 8): what a decode step multiplies, one token a sequence. cuBLAS runs them as tiled
// GEMMs on tensor cores, which at M = 1 read the weight at ~1 TB/s (H200, ncu); here every
// warp streams whole rows of W with 16-byte loads and keeps the few x rows in L1, so the
// product runs at the weight's read bandwidth. Called by cuda::gemm (cuda/matmul.cpp) for
// the problems gemv_preferred() picks; anything else stays with cuBLAS.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace rn::cuda {

constexpr int64_t kGemvMaxRows = 8;

// C[m, n] = alpha · Σ_k A[m, k] · W[n, k] for m < M ≤ kGemvMaxRows, row-major A (lda), W
// (ldw) and C (ldc), fp32 accumulation, on the current device's compute stream. Returns
// false (and does nothing) when it does not apply: dt not f32/bf16, M outside [1, 8],
// K, lda or ldw not a multiple of 16 bytes' worth of elements, or A / W not 16-byte aligned.
bool gemv_rows(DType dt, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda, const void* W,
               int64_t ldw, void* C, int64_t ldc);

// Whether the kernel beats cuBLAS on x [M, K] · Wᵀ [K, N] (bench/bench_gemv on the H200, W
// read from HBM, replayed from a graph): one row always (1.03–1.65×: 2.8–3.4 µs where cuBLAS
// takes 4.1–5.3 µs for the small preset's weights, 14.0 vs 14.4 µs for its 49 MB LM head);
// two rows up to a 16 MiB weight (1.13–1.55×; 0.88× on the head); four up to 4 MiB (1.07–
// 1.38×; 0.92× at 6.3 MB). More rows re-read x from L1 for every piece of W and lose.
bool gemv_preferred(DType dt, int64_t M, int64_t N, int64_t K);

// The product with its x rows formed first, in each block's shared memory, from what a
// separate kernel would otherwise have written (a decode step's kernels, fused):
//   kRmsNorm: x_m = rms_norm(x_m + res_m) ⊙ norm_w (res, norm_w may be null); with res and
//             sum given, x + res is also written to sum (the residual stream goes on);
//   kSiluMul: x_m = silu(x_m) ⊙ res_m (SwiGLU: a and b halves of the stacked fc1/gate output);
//   kGroupGate: x_m = rms_norm(x_m, per group of `group` values) ⊙ silu(res_m) (a retention
//             layer's per-head gated norm: x = the step's output o [M, H·Dv], res = the gate
//             g, group = Dv; K a multiple of group, group of 16 bytes' worth of elements);
//             norm_w and sum unused.
// Values are rounded to the dtype as the unfused ops round them (ops/norm.h add_rms_norm,
// ops/swiglu.h silu_mul; kGroupGate as the fused retention step's gated norm,
// cuda/retention_decode.h, rounded once). Returns false (and does nothing) where it does not
// apply: dt not f32/bf16, M outside [1, 4], the rows (and kGroupGate's sums) over 48 KiB of
// shared memory, a stride or pointer not 16-byte aligned, a group that does not fit.
struct GemvPrologue {
    enum Kind { kRmsNorm = 0, kSiluMul = 1, kGroupGate = 2 };
    Kind kind = kRmsNorm;
    const void* x = nullptr;
    int64_t ldx = 0;
    const void* res = nullptr;
    int64_t ldr = 0;
    const void* norm_w = nullptr;
    void* sum = nullptr;
    int64_t lds = 0;
    int64_t group = 0;  // kGroupGate: values a group (a head's Dv)
    float eps = 1e-6f;
};
constexpr int64_t kGemvPrologueMaxRows = 4;
constexpr int64_t kGemvPrologueSmem = 48 * 1024;
bool gemv_rows_prologue(DType dt, int64_t M, int64_t N, int64_t K, const GemvPrologue& pro, const void* W,
                        int64_t ldw, void* C, int64_t ldc);
// Whether gemv_rows_prologue would run on these arguments (the same checks, nothing
// launched): a caller that must launch another kernel first, which it cannot take back,
// asks before (ops/decode_fused.h, retention_step_gated_linear).
bool gemv_prologue_applies(DType dt, int64_t M, int64_t N, int64_t K, const GemvPrologue& pro, const void* W,
                           int64_t ldw);
int64_t gemv_prologue_calls();  // launches so far (tests check the fused path ran)

}  // namespace rn::cuda
