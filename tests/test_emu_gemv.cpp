// tests/test_emu_gemv.cpp — the few-row product kernels (cuda/gemv_kernels.cuh) run on the
// CPU through the emulator of tests/cuda_emu/, against the CPU ops on the same inputs, in
// f32 and bf16: the plain product (1–4 rows) and the products with a prologue (the RMSNorm
// of x + res with and without the norm weight, silu(a) ⊙ b, the per-head gated norm), with K
// past one round of loads a lane (the loop that reloads W) and N not a multiple of a
// block's 8 columns. tests/test_emu_retention_decode.cpp runs the gated norm's product
// after the retention step that feeds it.
// test_cuda_decode_fused and test_cuda_matmul check the same kernels on a GPU.
//
// Tolerances (‖got − want‖ / ‖want‖): f32 1e-5 (the same products, summed in another
// order); bf16 1e-2 (the output rounded to bf16; the reference rounds its intermediates to
// bf16 where the kernel does).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>
#include <type_traits>

#include "tests/cuda_emu/emu.h"
#include "tests/cuda_emu/emu_test.h"
// (emu.h first: the kernels compile against the emulator's CUDA names)
#include "cuda/gemv_kernels.cuh"
#include "core/random.h"
#include "core/tensor_math.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace rn;
using rn::test::rel_err;
namespace k = rn::cuda::gemv_k;

namespace {

Tensor f32(const Tensor& t) { return t.to(DType::f32); }
Tensor round_to(const Tensor& t, DType dt) { return t.to(dt).to(DType::f32); }

dim3 grid_for(int64_t N) { return dim3(unsigned((N + k::kWarps - 1) / k::kWarps)); }

template <typename T, int M>
Tensor plain(const Tensor& x, const Tensor& W) {
    const int64_t K = x.size(1), N = W.size(0);
    Tensor y = full({M, N}, NAN, x.dtype());
    rn_emu::launch(k::gemv_kernel<T, M, 4>, grid_for(N), dim3(k::kWarps * 32), 0, static_cast<const T*>(x.raw_data()),
                   K, static_cast<const T*>(W.raw_data()), K, static_cast<T*>(y.raw_data()), N, int(N), int(K), 1.0f);
    return y;
}

template <typename T, int M, int P>
Tensor with_prologue(const cuda::GemvPrologue& p, const Tensor& W, size_t smem) {
    const int64_t K = W.size(1), N = W.size(0);
    Tensor y = full({M, N}, NAN, W.dtype());
    rn_emu::launch(k::gemv_prologue_kernel<T, M, P, 4>, grid_for(N), dim3(k::kThreadsPro), smem, p,
                   static_cast<const T*>(W.raw_data()), K, static_cast<T*>(y.raw_data()), N, int(N),
                   int(K), 1.0f);
    return y;
}

template <typename T, int M>
void check_once(DType dt, int64_t N, int64_t K, uint64_t seed) {
    const std::string tag = std::string(dtype_name(dt)) + " M" + std::to_string(M) + " N" + std::to_string(N) + " K" +
                            std::to_string(K);
    const double tol = dt == DType::f32 ? 1e-5 : 1e-2;
    Generator gen(seed);
    Tensor x = randn({M, K}, gen, DType::f32).to(dt), h = randn({M, K}, gen, DType::f32).to(dt);
    Tensor w = (randn({K}, gen, DType::f32) * 0.5 + 1.0).to(dt), W = (randn({N, K}, gen, DType::f32) * 0.05).to(dt);
    const size_t smem = size_t(M * K) * sizeof(T);

    const double e0 = rel_err(plain<T, M>(x, W), matmul(f32(x), f32(W).t()));
    BOOST_TEST(e0 <= tol, tag << ": plain product, relative error " << e0);
    BOOST_TEST_MESSAGE("  " << tag << ": plain " << e0);

    for (bool weight : {true, false}) {  // the RMSNorm of x + h, with the residual stream written
        Tensor sum = full({M, K}, NAN, dt);
        cuda::GemvPrologue p;
        p.kind = cuda::GemvPrologue::kRmsNorm;
        p.x = x.raw_data(), p.ldx = K, p.res = h.raw_data(), p.ldr = K, p.sum = sum.raw_data(), p.lds = K;
        p.norm_w = weight ? w.raw_data() : nullptr;
        Tensor y = with_prologue<T, M, cuda::GemvPrologue::kRmsNorm>(p, W, smem);
        Tensor want_sum = round_to(f32(x) + f32(h), dt);
        Tensor normed = round_to(rms_norm(want_sum, weight ? f32(w) : Tensor(), 1e-6), dt);
        const double e = rel_err(y, matmul(normed, f32(W).t()));
        BOOST_TEST(e <= tol, tag << ": rms-norm prologue (weight " << weight << "), relative error " << e);
        BOOST_TEST_MESSAGE("  " << tag << ": rms-norm (weight " << weight << ") " << e);
        BOOST_TEST(rel_err(sum, want_sum) == 0.0, tag << ": the residual stream x + h");
    }
    {  // silu(a) ⊙ b, a and b the halves of one [M, 2K] row as in SwiGLU
        Tensor ab = concat({x, h}, 1);
        cuda::GemvPrologue p;
        p.kind = cuda::GemvPrologue::kSiluMul;
        p.x = ab.raw_data(), p.ldx = 2 * K;
        p.res = static_cast<const char*>(ab.raw_data()) + K * int64_t(sizeof(T)), p.ldr = 2 * K;
        Tensor y = with_prologue<T, M, cuda::GemvPrologue::kSiluMul>(p, W, smem);
        const double e = rel_err(y, matmul(round_to(silu_mul(f32(x), f32(h)), dt), f32(W).t()));
        BOOST_TEST(e <= tol, tag << ": silu-mul prologue, relative error " << e);
        BOOST_TEST_MESSAGE("  " << tag << ": silu-mul " << e);
    }
}

template <typename T, int M>
void check(DType dt, int64_t N, int64_t K, uint64_t seed) {
    rn_emu::in_each_mode([&] { check_once<T, M>(dt, N, K, seed); });
}

// kGroupGate: o [M, K] in heads of `group` values, g the last block of a wider row (as in a
// retention layer's stacked [q | k | v | g]); against the CPU's gated_rms_norm per head
// (silu(g) ⊙ rms_norm(o), the norm rounded to the dtype before the product where the kernel
// rounds once: within the tolerance), then the product
template <typename T, int M>
void check_group_gate(DType dt, int64_t N, int64_t H, int64_t group, uint64_t seed) {
    const int64_t K = H * group, ldy = 3 * K;
    const std::string tag = std::string(dtype_name(dt)) + " M" + std::to_string(M) + " N" + std::to_string(N) + " H" +
                            std::to_string(H) + " group " + std::to_string(group);
    const double tol = dt == DType::f32 ? 1e-5 : 1e-2;
    Generator gen(seed);
    Tensor o = (randn({M, K}, gen, DType::f32) * 3.0).to(dt), y = randn({M, ldy}, gen, DType::f32).to(dt);
    Tensor W = (randn({N, K}, gen, DType::f32) * 0.05).to(dt);
    cuda::GemvPrologue p;
    p.kind = cuda::GemvPrologue::kGroupGate;
    p.x = o.raw_data(), p.ldx = K;
    p.res = static_cast<const char*>(y.raw_data()) + 2 * K * int64_t(sizeof(T)), p.ldr = ldy;
    p.group = group;
    const size_t smem = size_t(M * K) * sizeof(T) + k::group_gate_extra_smem(M, K, group, int64_t(sizeof(T)));
    rn_emu::in_each_mode([&] {
        Tensor got = with_prologue<T, M, cuda::GemvPrologue::kGroupGate>(p, W, smem);
        Tensor g = f32(y).narrow(1, 2 * K, K).reshape({M, H, group});
        Tensor z = gated_rms_norm(f32(o).reshape({M, H, group}), g, 1e-6).reshape({M, K});
        const double e = rel_err(got, matmul(round_to(z, dt), f32(W).t()));
        BOOST_TEST(e <= tol, tag << ": group-gate prologue, relative error " << e);
        BOOST_TEST_MESSAGE("  " << tag << ": group-gate " << e);
    });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(emulated_gemv)

// K 1040 f32: 260 pieces, past one round of 4 × 32 a lane; N 13: a partial second block
BOOST_AUTO_TEST_CASE(f32_products_match_the_cpu_ops) {
    check<float, 1>(DType::f32, 13, 1040, 51);
    check<float, 3>(DType::f32, 9, 64, 52);
}

// K 1040 bf16: 130 pieces (two rounds of loads for lanes 0 and 1)
BOOST_AUTO_TEST_CASE(bf16_products_match_the_cpu_ops) {
    check<__nv_bfloat16, 2>(DType::bf16, 13, 1040, 53);
    check<__nv_bfloat16, 4>(DType::bf16, 7, 48, 54);
}

// one head's group past a warp's 32 pieces (f32 group 160: 40 pieces), heads not a power of
// two, and M·K/V over the 4 pieces of g a thread holds (M 4, K 1152 f32: 1152 pieces for 256
// threads), so that the reload path runs too
BOOST_AUTO_TEST_CASE(f32_group_gate_matches_the_cpu_ops) {
    check_group_gate<float, 1>(DType::f32, 13, 3, 160, 55);
    check_group_gate<float, 4>(DType::f32, 9, 9, 128, 56);
    check_group_gate<float, 3>(DType::f32, 5, 2, 12, 57);
}

BOOST_AUTO_TEST_CASE(bf16_group_gate_matches_the_cpu_ops) {
    check_group_gate<__nv_bfloat16, 2>(DType::bf16, 13, 3, 40, 58);
    check_group_gate<__nv_bfloat16, 4>(DType::bf16, 7, 5, 512, 59);
}

BOOST_AUTO_TEST_SUITE_END()
