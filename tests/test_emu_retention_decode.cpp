// tests/test_emu_retention_decode.cpp — the fused decode step of a retention layer
// (cuda/retention_decode_kernels.cuh: xPos rotation, the state update, o = λ q S and the
// gated group norm in one kernel) run on the CPU through the emulator of tests/cuda_emu/,
// against the CPU op retention_step_gated on the same inputs, in f32 and bf16, for every
// block width (2, 4, 8 column threads) and rows in flight (4, 8): several blocks a head
// (the last one to finish normalises the row: the counter hand-over), Dv not a multiple of
// a block's columns, heads and sequences at different positions. Also its o-only mode (no
// counters touched) followed by the out_proj product that normalises and gates in its
// prologue (cuda/gemv_kernels.cuh, kGroupGate), 1–4 sequences, against the CPU's
// matmul(retention_step_gated(…), Wᵀ). test_cuda_decode_fused checks both on a GPU.
//
// Tolerances (‖got − want‖ / ‖want‖): f32 z 1e-5 and state 1e-6 (the same arithmetic; the
// norm's sum of squares adds in another order); bf16 1e-2 for both, against the f32 op on
// the same values (the kernel rounds the rotated q, k and o to bf16 as the bf16 ops do).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "tests/cuda_emu/emu.h"
#include "tests/cuda_emu/emu_test.h"
// (emu.h first: the kernels compile against the emulator's CUDA names)
#include "cuda/gemv_kernels.cuh"
#include "cuda/retention_decode_kernels.cuh"
#include "core/random.h"
#include "core/tensor_math.h"
#include "ops/decode_fused.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace rn;
using rn::test::rel_err;
namespace k = rn::cuda::step_tc;
namespace gk = rn::cuda::gemv_k;

namespace {

// z undefined: the o-only mode (returns o; the counters, set to a mark, must stay as they are)
template <typename T, int CT, int U>
Tensor run_kernel(int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma, const Tensor& pos,
                  const Tensor& y, double k_scale, double eps, Tensor& state, Tensor z, bool early_angles = true) {
    Tensor scratch = full({B, H, Dv}, NAN, y.dtype());
    const int mark = z.defined() ? 0 : 12345;
    std::vector<int> count(size_t(B * H), mark);
    k::StepGated<T> p;
    p.y = static_cast<const T*>(y.raw_data()), p.ldy = y.size(-1), p.pos = pos.data<int64_t>();
    p.state = state.data<float>(), p.scratch = static_cast<T*>(scratch.raw_data());
    p.z = z.defined() ? static_cast<T*>(z.raw_data()) : nullptr, p.count = count.data();
    p.H = int(H), p.Dk = int(Dk), p.Dv = int(Dv), p.k_scale = float(k_scale), p.eps = float(eps);
    p.early_angles = early_angles;
    const int64_t cols = int64_t(CT) * k::V;
    const dim3 grid(unsigned((Dv + cols - 1) / cols), unsigned(H), unsigned(B));
    rn_emu::launch(k::step_gated_kernel<T, CT, U>, grid, dim3(unsigned(cuda::kStepRowGroups * CT)),
                   k::step_gated_smem(int(Dk)), p, cuda::make_decays(gamma, 0, int(H)));
    for (int c : count)
        BOOST_TEST(c == mark, (z.defined() ? "a head's counter was not reset by its last block"
                                           : "the o-only mode touched a counter"));
    return scratch;
}

// the heads' decays 1 − 2^(−5−h), as torchscale's
std::vector<double> test_gammas(int64_t H) {
    std::vector<double> gamma;
    for (int64_t h = 0; h < H; ++h) gamma.push_back(1.0 - std::pow(2.0, -5.0 - double(h)));
    return gamma;
}

// positions first, first + step, …: sequences far apart in their texts
Tensor test_positions(int64_t B, int64_t first, int64_t step) {
    Tensor pos = zeros({B}, DType::i64);
    for (int64_t b = 0; b < B; ++b) pos.data<int64_t>()[b] = first + step * b;
    return pos;
}

template <typename T>
void check_once(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, uint64_t seed) {
    const std::string tag = std::string(dtype_name(dt)) + " B" + std::to_string(B) + " H" + std::to_string(H) +
                            " Dk" + std::to_string(Dk) + " Dv" + std::to_string(Dv);
    Generator gen(seed);
    const std::vector<double> gamma = test_gammas(H);
    Tensor y = randn({B, 1, 2 * H * Dk + 2 * H * Dv}, gen, DType::f32).to(dt);  // q | k | v | g
    Tensor pos = test_positions(B, 3, 1000);
    Tensor state0 = randn({B, H, Dk, Dv}, gen, DType::f32) * 0.1;
    const double k_scale = 1.0 / std::sqrt(double(Dk)), eps = 1e-6;
    Tensor want_state = state0.clone();
    // the CPU op computes in f32 (bf16 y: the same values in f32, so the kernel's bf16
    // roundings of q, k and o are what the tolerance covers)
    Tensor want = retention_step_gated(y.to(DType::f32), pos, gamma, want_state, k_scale, eps);
    const double z_tol = dt == DType::f32 ? 1e-5 : 1e-2, s_tol = dt == DType::f32 ? 1e-6 : 1e-2;
    auto one = [&](auto ct, auto u) {
        constexpr int CT = decltype(ct)::value, U = decltype(u)::value;
        Tensor state = state0.clone(), z = full({B, 1, H * Dv}, NAN, dt);
        run_kernel<T, CT, U>(B, H, Dk, Dv, gamma, pos, y, k_scale, eps, state, z);
        const double ez = rel_err(z, want), es = rel_err(state, want_state);
        BOOST_TEST(ez <= z_tol, tag << ", " << CT << " column threads, " << U << " rows in flight: z relative error " << ez);
        BOOST_TEST(es <= s_tol, tag << ", " << CT << " column threads, " << U << " rows in flight: state relative error "
                                   << es);
        BOOST_TEST_MESSAGE("  " << tag << ", CT " << CT << ", U " << U << ": z " << ez << ", state " << es);
        // the angles and λ made after the PDL wait instead of before: the same bits
        Tensor state_late = state0.clone(), z_late = full({B, 1, H * Dv}, NAN, dt);
        run_kernel<T, CT, U>(B, H, Dk, Dv, gamma, pos, y, k_scale, eps, state_late, z_late, false);
        BOOST_TEST(rel_err(z_late, z) == 0.0, tag << ": z with the angles after the wait");
        BOOST_TEST(rel_err(state_late, state) == 0.0, tag << ": state with the angles after the wait");
    };
    one(std::integral_constant<int, 8>{}, std::integral_constant<int, 8>{});
    one(std::integral_constant<int, 8>{}, std::integral_constant<int, cuda::kStepUnroll>{});
    one(std::integral_constant<int, 4>{}, std::integral_constant<int, 8>{});
    one(std::integral_constant<int, 2>{}, std::integral_constant<int, cuda::kStepUnroll>{});
}

template <typename T>
void check(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, uint64_t seed) {
    rn_emu::in_each_mode([&] { check_once<T>(dt, B, H, Dk, Dv, seed); });
}

// The out_proj product with the gated norm in its prologue (gemv_kernels.cuh, kGroupGate)
// over the o-only kernel's output: what retention_step_gated_linear launches on CUDA
template <typename T, int M>
Tensor gate_product(const Tensor& o, const Tensor& y, const Tensor& W, int64_t H, int64_t Dk, int64_t Dv, double eps) {
    const int64_t K = H * Dv, N = W.size(0), es = int64_t(sizeof(T));
    cuda::GemvPrologue p;
    p.kind = cuda::GemvPrologue::kGroupGate;
    p.x = o.raw_data(), p.ldx = K;
    p.res = static_cast<const char*>(y.raw_data()) + (2 * H * Dk + H * Dv) * es, p.ldr = y.size(-1);
    p.group = Dv, p.eps = float(eps);
    Tensor out = full({M, 1, N}, NAN, y.dtype());
    const size_t smem = size_t(M * K * es) + gk::group_gate_extra_smem(M, K, Dv, es);
    rn_emu::launch(gk::gemv_prologue_kernel<T, M, cuda::GemvPrologue::kGroupGate, 4>,
                   dim3(unsigned((N + gk::kWarps - 1) / gk::kWarps)), dim3(gk::kThreadsPro), smem, p,
                   static_cast<const T*>(W.raw_data()), K, static_cast<T*>(out.raw_data()), N, int(N), int(K), 1.0f);
    return out;
}

template <typename T>
Tensor gate_product_rows(const Tensor& o, const Tensor& y, const Tensor& W, int64_t H, int64_t Dk, int64_t Dv,
                         double eps) {
    switch (y.size(0)) {
        case 1: return gate_product<T, 1>(o, y, W, H, Dk, Dv, eps);
        case 2: return gate_product<T, 2>(o, y, W, H, Dk, Dv, eps);
        case 3: return gate_product<T, 3>(o, y, W, H, Dk, Dv, eps);
        default: return gate_product<T, 4>(o, y, W, H, Dk, Dv, eps);
    }
}

// the o-only kernel and the product after it against the CPU op's composition
// matmul(retention_step_gated(y, ...), Wᵀ) (ops/decode_fused.h retention_step_gated_linear)
template <typename T>
void check_gate_in_product_once(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, int64_t N, uint64_t seed) {
    const std::string tag = std::string(dtype_name(dt)) + " B" + std::to_string(B) + " H" + std::to_string(H) +
                            " Dk" + std::to_string(Dk) + " Dv" + std::to_string(Dv) + " N" + std::to_string(N);
    Generator gen(seed);
    const std::vector<double> gamma = test_gammas(H);
    Tensor y = randn({B, 1, 2 * H * Dk + 2 * H * Dv}, gen, DType::f32).to(dt);
    Tensor W = (randn({N, H * Dv}, gen, DType::f32) * 0.1).to(dt);
    Tensor pos = test_positions(B, 5, 777);
    Tensor state0 = randn({B, H, Dk, Dv}, gen, DType::f32) * 0.1;
    const double k_scale = 1.0 / std::sqrt(double(Dk)), eps = 1e-6;
    Tensor want_state = state0.clone();
    Tensor want = matmul(retention_step_gated(y.to(DType::f32), pos, gamma, want_state, k_scale, eps),
                         W.to(DType::f32).t());
    const double tol = dt == DType::f32 ? 1e-5 : 1e-2, s_tol = dt == DType::f32 ? 1e-6 : 1e-2;
    auto one = [&](auto ct, auto u) {
        constexpr int CT = decltype(ct)::value, U = decltype(u)::value;
        Tensor state = state0.clone();
        Tensor o = run_kernel<T, CT, U>(B, H, Dk, Dv, gamma, pos, y, k_scale, eps, state, Tensor());
        Tensor got = gate_product_rows<T>(o, y, W, H, Dk, Dv, eps);
        // the full mode writes the same o and state, bit for bit: the modes part after o
        Tensor state_full = state0.clone(), z = full({B, 1, H * Dv}, NAN, dt);
        Tensor o_full = run_kernel<T, CT, U>(B, H, Dk, Dv, gamma, pos, y, k_scale, eps, state_full, z);
        BOOST_TEST(rel_err(o, o_full) == 0.0, tag << ": o differs between the modes");
        BOOST_TEST(rel_err(state, state_full) == 0.0, tag << ": the state differs between the modes");
        const double e = rel_err(got, want), es = rel_err(state, want_state);
        BOOST_TEST(e <= tol, tag << ", CT " << CT << ", U " << U << ": out_proj relative error " << e);
        BOOST_TEST(es <= s_tol, tag << ", CT " << CT << ", U " << U << ": state relative error " << es);
        BOOST_TEST_MESSAGE("  " << tag << ", CT " << CT << ", U " << U << ": gate in the product " << e << ", state "
                                << es);
    };
    one(std::integral_constant<int, 8>{}, std::integral_constant<int, 8>{});
    one(std::integral_constant<int, 2>{}, std::integral_constant<int, cuda::kStepUnroll>{});
}

template <typename T>
void check_gate_in_product(DType dt, int64_t H, int64_t Dk, int64_t Dv, int64_t N, uint64_t seed) {
    rn_emu::in_each_mode([&] {
        for (int64_t B = 1; B <= 4; ++B) check_gate_in_product_once<T>(dt, B, H, Dk, Dv, N, seed + uint64_t(B));
    });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(emulated_fused_decode_step)

// Dv 72: 3 blocks of 32 columns (the last partial), 5 of 16, 9 of 8; Dk 64 (8 rows a thread
// at most in flight with U 8: 64 = 2 × 32 rows)
BOOST_AUTO_TEST_CASE(f32_matches_the_cpu_op) { check<float>(DType::f32, 2, 3, 64, 72, 41); }

BOOST_AUTO_TEST_CASE(bf16_matches_the_cpu_op) { check<__nv_bfloat16>(DType::bf16, 2, 2, 48, 40, 42); }

// the o-only mode and the product with the gated norm, 1–4 sequences: Dv 40 (two blocks of
// 32 columns a head, the second partial; five of 8), 3 heads, 13 output columns (a partial
// block of the product)
BOOST_AUTO_TEST_CASE(f32_gate_in_the_product_matches_the_cpu_ops) {
    check_gate_in_product<float>(DType::f32, 3, 16, 40, 13, 43);
}

BOOST_AUTO_TEST_CASE(bf16_gate_in_the_product_matches_the_cpu_ops) {
    check_gate_in_product<__nv_bfloat16>(DType::bf16, 3, 16, 40, 13, 47);
}

BOOST_AUTO_TEST_SUITE_END()
