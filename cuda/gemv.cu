// cuda/gemv.cu — x · Wᵀ for a few rows of x (cuda/gemv.h): one warp per output column n
// streams row n of W (contiguous, 16-byte loads, four in flight per lane) and multiplies it
// with every row of x, which all warps of the launch read and L1 keeps. The sums over K
// end with a warp shuffle reduction; lane m writes row m of the output. The kernels are in
// cuda/gemv_kernels.cuh (run on the CPU by tests/test_emu_gemv.cpp); here, their launchers.
//
// Floors (H200, 4.2 TB/s copy): the `small` preset's stacked QKVG weight (4128 × 768 bf16,
// 6.3 MB) is 1.5 µs, the LM head (32000 × 768, 49 MB) 11.7 µs; bench/bench_cuda_matmul's
// "gemv" rows measure this kernel and cuBLAS against them.
#include "cuda/gemv.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "core/env.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/gemv_kernels.cuh"
#include "cuda/math.cuh"
#include "cuda/pdl.cuh"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

using namespace gemv_k;

// 16-byte pieces of W in flight per lane: 4, or 8 where a row has more than 4 a lane
// (out_proj's and fc2's K of 1296–1536 then need one round trip instead of two; the
// products with 3 pieces a lane keep the smaller register footprint). RN_GEMV_UNROLL=4
// forces 4 (A/B runs).
int unroll_for(int64_t K, int64_t elem) {
    static const bool force4 = env_choice("RN_GEMV_UNROLL", {4}, 0) == 4;
    return !force4 && K / (16 / elem) > 32 * 4 ? 8 : 4;
}

template <typename T>
void launch(int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda, const void* W, int64_t ldw,
            void* C, int64_t ldc) {
    auto a = static_cast<const T*>(A);
    auto w = static_cast<const T*>(W);
    auto c = static_cast<T*>(C);
    const dim3 grid(unsigned((N + kWarps - 1) / kWarps)), block(kWarps * 32);
    const int n = int(N), k = int(K);
    auto go = [&](auto kernel) { launch_pdl(kernel, grid, block, 0, a, lda, w, ldw, c, ldc, n, k, alpha); };
    auto rows = [&](auto u) {
        constexpr int U = decltype(u)::value;
        switch (M) {
            case 1: go(gemv_kernel<T, 1, U>); break;
            case 2: go(gemv_kernel<T, 2, U>); break;
            case 3: go(gemv_kernel<T, 3, U>); break;
            case 4: go(gemv_kernel<T, 4, U>); break;
            case 5: go(gemv_kernel<T, 5, U>); break;
            case 6: go(gemv_kernel<T, 6, U>); break;
            case 7: go(gemv_kernel<T, 7, U>); break;
            default: go(gemv_kernel<T, 8, U>); break;
        }
    };
    if (unroll_for(K, int64_t(sizeof(T))) == 8) rows(std::integral_constant<int, 8>{});
    else rows(std::integral_constant<int, 4>{});
}

}  // namespace

bool gemv_preferred(DType dt, int64_t M, int64_t N, int64_t K) {
    const double mib = double(N) * double(K) * double(dtype_size(dt)) / double(1 << 20);
    return M == 1 || (M == 2 && mib <= 16) || (M <= 4 && mib <= 4);
}

bool gemv_rows(DType dt, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda, const void* W,
               int64_t ldw, void* C, int64_t ldc) {
    if (dt != DType::f32 && dt != DType::bf16) return false;
    const int64_t v = dt == DType::f32 ? 4 : 8;
    if (M < 1 || M > kGemvMaxRows || N < 1 || K < v || N > (int64_t(1) << 30) || K > (int64_t(1) << 30)) return false;
    if (K % v || lda % v || ldw % v || !aligned16(A) || !aligned16(W)) return false;
    if (dt == DType::f32) launch<float>(M, N, K, float(alpha), A, lda, W, ldw, C, ldc);
    else launch<__nv_bfloat16>(M, N, K, float(alpha), A, lda, W, ldw, C, ldc);
    return true;
}

namespace {
std::atomic<int64_t> prologue_calls{0};
}

namespace {
// the dynamic shared memory of a prologue product: its M rows, and for kGroupGate the sums
size_t prologue_smem(int64_t M, int64_t K, int64_t es, const GemvPrologue& pro) {
    const size_t rows = size_t(M * K * es);
    return pro.kind == GemvPrologue::kGroupGate ? rows + group_gate_extra_smem(M, K, pro.group, es) : rows;
}
}  // namespace

bool gemv_prologue_applies(DType dt, int64_t M, int64_t N, int64_t K, const GemvPrologue& pro, const void* W,
                           int64_t ldw) {
    if (dt != DType::f32 && dt != DType::bf16) return false;
    const int64_t v = dt == DType::f32 ? 4 : 8, es = dt == DType::f32 ? 4 : 2;
    if (M < 1 || M > kGemvPrologueMaxRows || N < 1 || K < v || N > (int64_t(1) << 30) || K > (int64_t(1) << 30) ||
        K % v || ldw % v || !aligned16(W))
        return false;
    const GemvPrologue::Kind kind = pro.kind;
    if (kind != GemvPrologue::kRmsNorm && kind != GemvPrologue::kSiluMul && kind != GemvPrologue::kGroupGate)
        return false;
    const bool norm = kind == GemvPrologue::kRmsNorm;
    if (!pro.x || pro.ldx % v || !aligned16(pro.x)) return false;
    if (pro.res && (pro.ldr % v || !aligned16(pro.res))) return false;
    if (!norm && !pro.res) return false;  // silu(a) ⊙ b needs b, the gated norm g
    if (norm && pro.norm_w && !aligned16(pro.norm_w)) return false;
    if (norm && pro.sum && (!pro.res || pro.lds % v || !aligned16(pro.sum))) return false;
    if (kind == GemvPrologue::kGroupGate && (pro.group < v || pro.group % v || K % pro.group)) return false;
    // the rows (and sums) must fit the default shared memory beside the kernel's static red[]
    return prologue_smem(M, K, es, pro) + kWarps * sizeof(float) <= size_t(kGemvPrologueSmem);
}

bool gemv_rows_prologue(DType dt, int64_t M, int64_t N, int64_t K, const GemvPrologue& pro, const void* W,
                        int64_t ldw, void* C, int64_t ldc) {
    if (!gemv_prologue_applies(dt, M, N, K, pro, W, ldw)) return false;
    const int64_t es = dt == DType::f32 ? 4 : 2;
    const dim3 grid(unsigned((N + kWarps - 1) / kWarps)), block(kThreadsPro);
    const size_t smem = prologue_smem(M, K, es, pro);
    const int n = int(N), k = int(K);
    auto run = [&](auto tag) {
        using T = decltype(tag);
        auto w = static_cast<const T*>(W);
        auto c = static_cast<T*>(C);
        auto go = [&](auto kernel) { launch_pdl(kernel, grid, block, smem, pro, w, ldw, c, ldc, n, k, 1.0f); };
        auto rows = [&](auto p) {
            constexpr int P = decltype(p)::value;
            auto with = [&](auto u) {
                constexpr int U = decltype(u)::value;
                switch (M) {
                    case 1: go(gemv_prologue_kernel<T, 1, P, U>); break;
                    case 2: go(gemv_prologue_kernel<T, 2, P, U>); break;
                    case 3: go(gemv_prologue_kernel<T, 3, P, U>); break;
                    default: go(gemv_prologue_kernel<T, 4, P, U>); break;
                }
            };
            if (unroll_for(K, es) == 8) with(std::integral_constant<int, 8>{});
            else with(std::integral_constant<int, 4>{});
        };
        if (pro.kind == GemvPrologue::kRmsNorm) rows(std::integral_constant<int, GemvPrologue::kRmsNorm>{});
        else if (pro.kind == GemvPrologue::kSiluMul) rows(std::integral_constant<int, GemvPrologue::kSiluMul>{});
        else rows(std::integral_constant<int, GemvPrologue::kGroupGate>{});
    };
    if (dt == DType::f32) run(float{});
    else run(__nv_bfloat16{});
    prologue_calls.fetch_add(1, std::memory_order_relaxed);
    return true;
}

int64_t gemv_prologue_calls() { return prologue_calls.load(); }

}  // namespace rn::cuda
