// tests/test_cuda_decode_fused.cpp — the decode step's fused products (ops/decode_fused.h,
// cuda/gemv.h gemv_rows_prologue) on the GPU:
//   - the kernel against the CPU's composition (add_rms_norm then matmul; silu_mul then
//     matmul) on fresh random data, f32 and bf16, 1–4 rows, odd N and K, with and without
//     the residual and the norm weight; the residual stream it writes equals the CPU's
//     x + h bit for bit (both round the sum once to the dtype);
//   - the shapes it refuses (5 rows, rows over 48 KiB, misaligned data) return false;
//   - the fused retention step (rotation, step, gated norm: cuda/retention_decode.h)
//     against the three ops on the CPU (f32) and on the GPU (bf16), outputs and updated
//     states, several shapes, every tile width, repeated launches (its counters reset),
//     far positions;
//   - the step with out_proj (retention_step_gated_linear: the step kernel's o-only mode, then
//     the product with the gated norm in its prologue) against the CPU's composition and
//     against the one-kernel step then matmul, 1, 3 and 4 sequences, f32 and bf16; where it
//     does not apply (5 rows, a group the vector width does not divide) it falls back once;
//   - a RetNet decoding at batch 1, 3 and 9 with the fusions and without gives the same
//     greedy tokens and logits within rounding, in f32 and bf16, with the fused kernels
//     counted where they should run; and the same with the gated norm in the product or
//     in the step kernel (RN_DECODE_GATE_IN_PRODUCT).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/gemv.h"
#include "cuda/retention_decode.h"
#include "cuda_test_util.h"
#include "engine_test_util.h"
#include "nn/retnet.h"
#include "ops/ops.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device kGpu = Device::cuda(0);

Tensor rnd(Shape s, Generator& g, DType dt, double scale = 1.0) {
    return (randn(s, g, DType::f64) * scale).to(dt);  // on the CPU, in dt: both sides see the same values
}

Tensor f32(const Tensor& t) { return t.to(DType::f32); }
Tensor round_to(const Tensor& t, DType dt) { return t.to(dt).to(DType::f32); }  // the CPU computes in f32

struct FusionGuard {
    bool was = decode_fusion_enabled();
    ~FusionGuard() { set_decode_fusion_enabled(was); }
};
struct GateGuard {
    int was = decode_gate_in_product();
    ~GateGuard() { set_decode_gate_in_product(was); }
};
}  // namespace

BOOST_AUTO_TEST_CASE(prologue_products_match_the_cpu_composition) {
    Generator g(71);
    struct S {
        int64_t M, N, K;
    };
    // the small preset's QKVG (stacked), fc1/gate and head widths, and odd ones
    const std::vector<S> shapes = {{1, 4608, 768}, {1, 2592, 768}, {2, 768, 1296}, {3, 33, 1000}, {4, 7, 64}, {1, 3, 8}};
    for (DType dt : {DType::f32, DType::bf16}) {
        const int64_t v = dt == DType::f32 ? 4 : 8;
        for (const S& s : shapes) {
            if (s.K % v) continue;
            for (int variant = 0; variant < 3; ++variant) {  // 0: x + h, weight; 1: x alone, weight; 2: x + h, no weight
                BOOST_TEST_CONTEXT(dt << " M " << s.M << " N " << s.N << " K " << s.K << " variant " << variant) {
                    Tensor x = rnd({s.M, s.K}, g, dt), h = variant == 1 ? Tensor() : rnd({s.M, s.K}, g, dt);
                    Tensor w = variant == 2 ? Tensor() : rnd({s.K}, g, dt, 0.5) + 1.0;
                    if (w.defined()) w = w.to(dt);
                    Tensor W = rnd({s.N, s.K}, g, dt, 0.05);
                    Tensor xg = x.to(kGpu), hg = h.defined() ? h.to(kGpu) : Tensor(), wg = w.defined() ? w.to(kGpu) : Tensor();
                    Tensor Wg = W.to(kGpu);
                    Tensor y = empty({s.M, s.N}, dt, kGpu), sum = empty({s.M, s.K}, dt, kGpu);
                    cuda::GemvPrologue p;
                    p.kind = cuda::GemvPrologue::kRmsNorm;
                    p.x = xg.raw_data(), p.ldx = s.K;
                    if (h.defined()) p.res = hg.raw_data(), p.ldr = s.K, p.sum = sum.raw_data(), p.lds = s.K;
                    p.norm_w = w.defined() ? wg.raw_data() : nullptr;
                    p.eps = 1e-6f;
                    BOOST_REQUIRE(cuda::gemv_rows_prologue(dt, s.M, s.N, s.K, p, Wg.raw_data(), s.K, y.raw_data(), s.N));
                    // the CPU reference in f32, each intermediate rounded to dt as the ops round it
                    Tensor want_sum = h.defined() ? round_to(f32(x) + f32(h), dt) : f32(x);
                    Tensor normed = round_to(rms_norm(want_sum, w.defined() ? f32(w) : Tensor(), 1e-6), dt);
                    check_close(y, matmul(normed, f32(W).t()).to(DType::f64), tol_for(dt), "rms-norm prologue");
                    if (h.defined()) check_exact(sum, want_sum.to(dt), "the residual stream x + h");
                }
            }
            BOOST_TEST_CONTEXT(dt << " silu M " << s.M << " N " << s.N << " K " << s.K) {
                Tensor ab = rnd({s.M, 2 * s.K}, g, dt), W = rnd({s.N, s.K}, g, dt, 0.05);
                Tensor abg = ab.to(kGpu), Wg = W.to(kGpu), y = empty({s.M, s.N}, dt, kGpu);
                cuda::GemvPrologue p;
                p.kind = cuda::GemvPrologue::kSiluMul;
                p.x = abg.raw_data(), p.ldx = 2 * s.K;
                p.res = static_cast<const char*>(abg.raw_data()) + s.K * int64_t(dtype_size(dt)), p.ldr = 2 * s.K;
                BOOST_REQUIRE(cuda::gemv_rows_prologue(dt, s.M, s.N, s.K, p, Wg.raw_data(), s.K, y.raw_data(), s.N));
                Tensor a = f32(ab).narrow(-1, 0, s.K), b = f32(ab).narrow(-1, s.K, s.K);
                check_close(y, matmul(round_to(silu_mul(a, b), dt), f32(W).t()).to(DType::f64), tol_for(dt),
                            "silu-mul prologue");
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(the_ops_on_the_gpu_agree_with_and_without_fusion) {
    Generator g(72);
    FusionGuard guard;
    for (DType dt : {DType::f32, DType::bf16}) {
        BOOST_TEST_CONTEXT(dt) {
            Tensor x = rnd({1, 1, 256}, g, dt).to(kGpu), h = rnd({1, 1, 256}, g, dt).to(kGpu);
            Tensor w = (rnd({256}, g, dt, 0.5) + 1.0).to(dt).to(kGpu), W = rnd({520, 256}, g, dt, 0.05).to(kGpu);
            Tensor ab = rnd({1, 1, 2 * 256}, g, dt).to(kGpu);
            set_decode_fusion_enabled(true);
            auto [s1, y1] = add_rms_norm_linear(x, h, w, 1e-6, W);
            Tensor z1 = silu_mul_linear(ab, W);
            set_decode_fusion_enabled(false);
            auto [s0, y0] = add_rms_norm_linear(x, h, w, 1e-6, W);
            Tensor z0 = silu_mul_linear(ab, W);
            BOOST_TEST(y1.shape() == Shape({1, 1, 520}));
            check_exact(s1, s0.to(Device::cpu()), "sum");
            check_close(y1, y0.to(Device::cpu()).to(DType::f64), tol_for(dt), "norm + product");
            check_close(z1, z0.to(Device::cpu()).to(DType::f64), tol_for(dt), "silu + product");
        }
    }
}

BOOST_AUTO_TEST_CASE(refused_shapes_say_no) {
    Generator g(73);
    Tensor x = rnd({8, 6144}, g, DType::f32).to(kGpu), W = rnd({16, 6144}, g, DType::f32).to(kGpu);
    Tensor y = empty({8, 16}, DType::f32, kGpu);
    cuda::GemvPrologue p;
    p.x = x.raw_data(), p.ldx = 6144;
    BOOST_TEST(!cuda::gemv_rows_prologue(DType::f32, 5, 16, 64, p, W.raw_data(), 6144, y.raw_data(), 16));  // 5 rows
    BOOST_TEST(!cuda::gemv_rows_prologue(DType::f32, 3, 16, 6144, p, W.raw_data(), 6144, y.raw_data(), 16));  // 72 KiB
    p.x = static_cast<const float*>(x.raw_data()) + 1;
    BOOST_TEST(!cuda::gemv_rows_prologue(DType::f32, 1, 16, 64, p, W.raw_data(), 6144, y.raw_data(), 16));  // misaligned
    p.x = x.raw_data();
    BOOST_TEST(!cuda::gemv_rows_prologue(DType::f64, 1, 16, 64, p, W.raw_data(), 6144, y.raw_data(), 16));  // f64
    p.kind = cuda::GemvPrologue::kSiluMul;  // without b
    BOOST_TEST(!cuda::gemv_rows_prologue(DType::f32, 1, 16, 64, p, W.raw_data(), 6144, y.raw_data(), 16));
    // the ops fall back to their composition and stay right: 6 rows
    FusionGuard guard;
    set_decode_fusion_enabled(true);
    Tensor x6 = rnd({6, 64}, g, DType::f32), W6 = rnd({16, 64}, g, DType::f32);
    check_close(add_rms_norm_linear(x6.to(kGpu), Tensor(), Tensor(), 1e-6, W6.to(kGpu)).second,
                matmul(rms_norm(x6), W6.t()).to(DType::f64), 1e-5, "6 rows");
}

BOOST_AUTO_TEST_CASE(fused_retention_step_matches_the_three_ops) {
    Generator g(74);
    FusionGuard guard;
    struct S {
        int64_t B, H, Dk, Dv, pos;
    };
    // the small preset's layer; a batch with a partial column tile; a far position; Dk over
    // 256 (4 rows in flight a thread, not all)
    const std::vector<S> shapes = {{1, 3, 256, 512, 5}, {3, 4, 64, 100, 17}, {2, 2, 8, 12, 70000}, {1, 2, 320, 64, 9}};
    struct WidthGuard {
        int was = cuda::set_retention_step_col_threads(0);
        ~WidthGuard() { cuda::set_retention_step_col_threads(was); }
    } width_guard;
    for (int ct : {2, 4, 8})  // every tile width
    for (DType dt : {DType::f32, DType::bf16}) {
        for (const S& s : shapes) {
            cuda::set_retention_step_col_threads(ct);
            BOOST_TEST_CONTEXT(dt << " width " << ct << " B " << s.B << " H " << s.H << " Dk " << s.Dk << " Dv " << s.Dv) {
                std::vector<double> gamma;
                for (int64_t h = 0; h < s.H; ++h) gamma.push_back(1.0 - std::pow(2.0, -5.0 - double(h)));
                const int64_t W = 2 * s.H * s.Dk + 2 * s.H * s.Dv;
                Tensor state0 = rnd({s.B, s.H, s.Dk, s.Dv}, g, DType::f32, 0.3);
                std::vector<double> pv;
                for (int64_t b = 0; b < s.B; ++b) pv.push_back(double(s.pos + 3 * b));
                Tensor pos = from_vector(pv, {s.B}).to(DType::i64).to(kGpu);
                Tensor st_fused = state0.to(kGpu), st_plain = state0.to(kGpu), st_cpu = state0.clone();
                for (int rep = 0; rep < 3; ++rep) {  // the counters are back at zero after each launch
                    Tensor y = rnd({s.B, 1, W}, g, dt);
                    const int64_t c0 = cuda::retention_step_gated_calls();
                    set_decode_fusion_enabled(true);
                    Tensor zf = retention_step_gated(y.to(kGpu), pos, gamma, st_fused, 1.0 / 16, 1e-6);
                    BOOST_TEST(cuda::retention_step_gated_calls() == c0 + 1, "the fused kernel did not run");
                    set_decode_fusion_enabled(false);
                    Tensor zp = retention_step_gated(y.to(kGpu), pos, gamma, st_plain, 1.0 / 16, 1e-6);
                    BOOST_TEST(cuda::retention_step_gated_calls() == c0 + 1);
                    BOOST_TEST(zf.shape() == Shape({s.B, 1, s.H * s.Dv}));
                    check_close(zf, zp.to(Device::cpu()).to(DType::f64), tol_for(dt), "z vs the three ops on the GPU");
                    check_close(st_fused, st_plain.to(Device::cpu()).to(DType::f64), 1e-6, "state vs the GPU ops");
                    if (dt == DType::f32) {
                        Tensor zc = retention_step_gated(y, pos.to(Device::cpu()), gamma, st_cpu, 1.0 / 16, 1e-6);
                        check_close(zf, zc.to(DType::f64), 1e-5, "z vs the CPU");
                        check_close(st_fused, st_cpu.to(DType::f64), 1e-5, "state vs the CPU");
                    }
                }
            }
        }
    }
    // Dv not a multiple of 4: the three ops run, still right
    Tensor st = rnd({1, 1, 4, 6}, g, DType::f32), st_g = st.to(kGpu), y = rnd({1, 1, 2 * 4 + 2 * 6}, g, DType::f32);
    set_decode_fusion_enabled(true);
    const int64_t c0 = cuda::retention_step_gated_calls();
    Tensor z = retention_step_gated(y.to(kGpu), full({1}, 7.0, DType::i64, kGpu), {0.9}, st_g, 0.5, 1e-6);
    BOOST_TEST(cuda::retention_step_gated_calls() == c0);
    check_close(z, retention_step_gated(y, full({1}, 7.0, DType::i64), {0.9}, st, 0.5, 1e-6).to(DType::f64), 1e-5,
                "Dv = 6 (unfused)");
}

BOOST_AUTO_TEST_CASE(retention_step_with_out_proj_matches_the_cpu_composition) {
    Generator g(76);
    FusionGuard guard;
    GateGuard gate_guard;
    set_decode_fusion_enabled(true);
    struct S {
        int64_t H, Dk, Dv, N;
    };
    // the small preset's layer (3 heads, Dk 256, Dv 512, out_proj to 768), and Dv 40 (a head's
    // second block of 32 columns partial) with 13 output columns
    const std::vector<S> shapes = {{3, 256, 512, 768}, {3, 64, 40, 13}};
    for (DType dt : {DType::f32, DType::bf16}) {
        for (const S& s : shapes) {
            for (int64_t B : {1, 3, 4}) {
                BOOST_TEST_CONTEXT(dt << " B " << B << " H " << s.H << " Dk " << s.Dk << " Dv " << s.Dv << " N " << s.N) {
                    std::vector<double> gamma;
                    for (int64_t h = 0; h < s.H; ++h) gamma.push_back(1.0 - std::pow(2.0, -5.0 - double(h)));
                    std::vector<double> pv;
                    for (int64_t b = 0; b < B; ++b) pv.push_back(double(9 + 5 * b));
                    Tensor pos = from_vector(pv, {B}).to(DType::i64);
                    Tensor state0 = rnd({B, s.H, s.Dk, s.Dv}, g, DType::f32, 0.3);
                    Tensor y = rnd({B, 1, 2 * s.H * s.Dk + 2 * s.H * s.Dv}, g, dt), W = rnd({s.N, s.H * s.Dv}, g, dt, 0.05);
                    Tensor st_in = state0.to(kGpu), st_off = state0.to(kGpu), st_cpu = state0.clone();
                    const double k_scale = 1.0 / std::sqrt(double(s.Dk));
                    set_decode_gate_in_product(4);
                    const int64_t c0 = cuda::gemv_prologue_calls(), r0 = cuda::retention_step_gated_calls();
                    Tensor got = retention_step_gated_linear(y.to(kGpu), pos.to(kGpu), gamma, st_in, k_scale, 1e-6, W.to(kGpu));
                    BOOST_TEST(cuda::gemv_prologue_calls() == c0 + 1, "the product with the gated norm did not run");
                    BOOST_TEST(cuda::retention_step_gated_calls() == r0 + 1);
                    BOOST_TEST(got.shape() == Shape({B, 1, s.N}));
                    set_decode_gate_in_product(0);  // the one-kernel step, then matmul
                    Tensor off = retention_step_gated_linear(y.to(kGpu), pos.to(kGpu), gamma, st_off, k_scale, 1e-6, W.to(kGpu));
                    BOOST_TEST(cuda::gemv_prologue_calls() == c0 + 1, "switched off, the product with the norm ran");
                    BOOST_TEST(cuda::retention_step_gated_calls() == r0 + 2);
                    // the CPU's composition in f32 on the same values (bf16: the kernels round
                    // q, k, o and the gated row to bf16 on the way)
                    Tensor want = matmul(retention_step_gated(f32(y), pos, gamma, st_cpu, k_scale, 1e-6), f32(W).t());
                    const double cpu_tol = dt == DType::f32 ? 1e-5 : 2e-2;
                    check_close(got, want.to(DType::f64), cpu_tol, "step + out_proj vs the CPU composition");
                    check_close(got, off.to(Device::cpu()).to(DType::f64), tol_for(dt), "gate in the product vs in the step");
                    check_close(st_in, st_cpu.to(DType::f64), cpu_tol, "state vs the CPU");
                    check_exact(st_in, st_off.to(Device::cpu()), "state: the same update in either mode");
                }
            }
        }
    }
    // where the product's prologue does not apply the op runs the one-kernel step and matmul,
    // and updates the state once: 5 rows; bf16 with Dv 12 (not a multiple of 8 values)
    for (auto [dt, B, Dv] : {std::tuple{DType::f32, int64_t(5), int64_t(16)}, std::tuple{DType::bf16, int64_t(1), int64_t(12)}}) {
        BOOST_TEST_CONTEXT(dt << " B " << B << " Dv " << Dv << " (not applicable)") {
            set_decode_gate_in_product(4);
            Tensor st = rnd({B, 2, 8, Dv}, g, DType::f32), st_g = st.to(kGpu);
            Tensor y = rnd({B, 1, 2 * 2 * 8 + 2 * 2 * Dv}, g, dt), W = rnd({7, 2 * Dv}, g, dt, 0.1);  // H 2, Dk 8
            Tensor pos = full({B}, 4.0, DType::i64);
            const int64_t c0 = cuda::gemv_prologue_calls(), r0 = cuda::retention_step_gated_calls();
            Tensor got = retention_step_gated_linear(y.to(kGpu), pos.to(kGpu), {0.9, 0.99}, st_g, 0.5, 1e-6, W.to(kGpu));
            BOOST_TEST(cuda::gemv_prologue_calls() == c0);
            BOOST_TEST(cuda::retention_step_gated_calls() == r0 + 1);
            Tensor want = matmul(retention_step_gated(f32(y), pos, {0.9, 0.99}, st, 0.5, 1e-6), f32(W).t());
            check_close(got, want.to(DType::f64), dt == DType::f32 ? 1e-5 : 2e-2, "fallback vs the CPU");
            check_close(st_g, st.to(DType::f64), dt == DType::f32 ? 1e-5 : 2e-2, "state updated once");
        }
    }
}

BOOST_AUTO_TEST_CASE(logits_statistics_in_one_kernel) {
    Generator g(75);
    FusionGuard guard;
    for (DType dt : {DType::f32, DType::bf16}) {
        for (int64_t V : {int64_t(32000), int64_t(37), int64_t(1)}) {
            BOOST_TEST_CONTEXT(dt << " V " << V) {
                Tensor l = (randn({4, V}, g, DType::f64) * 3.0).to(dt);
                if (V > 30) {  // row 1: a tie for the max at 5 and 29 (the first wins); row 2: a −inf column
                    std::vector<double> v = l.to(DType::f64).to_vector<double>();
                    v[size_t(V + 5)] = v[size_t(V + 29)] = 50.0;
                    v[size_t(2 * V + 3)] = -INFINITY;
                    l = from_vector(v, {4, V}).to(dt);
                }
                Tensor lg = l.to(kGpu);
                set_decode_fusion_enabled(true);
                Tensor ids = arange(0, double(V), 1, DType::f32, kGpu);
                auto [f32s, st] = logits_row_stats(lg, ids);
                set_decode_fusion_enabled(false);
                auto [f32r, sr] = logits_row_stats(lg, ids);
                BOOST_TEST(st.shape() == Shape({3, 4}));
                check_exact(f32s, f32r.to(Device::cpu()), "fp32 logits");
                check_exact(st.narrow(0, 1, 2), sr.narrow(0, 1, 2).to(Device::cpu()), "max and first argmax");
                check_close(st.narrow(0, 0, 1), sr.narrow(0, 0, 1).to(Device::cpu()).to(DType::f64), 1e-6, "log-sum-exp");
                if (V > 30) BOOST_TEST(st.to(Device::cpu()).to_vector<float>()[2 * 4 + 1] == 5.0f);
                set_decode_fusion_enabled(true);
                BOOST_TEST(logits_row_stats(lg).second.size(0) == 2);
            }
        }
    }
}

// greedy decoding of B sequences (their prompts differ) for `steps` tokens after a prompt;
// batch 1 takes the stacked, fused path, batches 2–4 the fused kernels over their rows,
// larger batches one QKVG product and the one-kernel retention step
std::pair<std::vector<int32_t>, std::vector<Tensor>> decode(const nn::LanguageModel& m, DType dt, int steps,
                                                             int64_t B = 1) {
    std::vector<Tensor> st = m.init_states(B, kGpu, dt, 64);
    const std::vector<int32_t> prompt = {3, 17, 42, 5, 9, 61, 2};
    const int64_t P = int64_t(prompt.size());
    std::vector<double> idv;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < P; ++t) idv.push_back(double((prompt[size_t(t)] + 7 * b) % 96));
    Tensor ids = from_vector(idv, {B, P}, kGpu).to(DType::i64);
    Tensor logits = m.prefill(ids, 0, st, dt, 4, true).reshape({B, -1});  // [B, V]
    std::vector<int32_t> toks;
    std::vector<Tensor> all;
    auto argmax = [B](const Tensor& l) {
        const std::vector<double> v = l.reshape({B, -1}).to(Device::cpu()).to(DType::f64).to_vector<double>();
        const size_t V = v.size() / size_t(B);
        std::vector<int32_t> r;
        for (size_t b = 0; b < size_t(B); ++b)
            r.push_back(int32_t(std::max_element(v.begin() + b * V, v.begin() + (b + 1) * V) - (v.begin() + b * V)));
        return r;
    };
    std::vector<int32_t> next = argmax(logits);
    for (int i = 0; i < steps; ++i) {
        toks.insert(toks.end(), next.begin(), next.end());
        Tensor tok = from_vector(std::vector<double>(next.begin(), next.end()), {B}, kGpu).to(DType::i64);
        Tensor pos = full({B}, double(P + i), DType::i64, kGpu);
        Tensor l = m.step(tok, st, pos, dt).to(Device::cpu()).to(DType::f64);  // [B, V]
        all.push_back(l);
        next = argmax(l);
    }
    return {toks, all};
}

// Two decodings of the same model agree: the same greedy tokens, and logits within rounding
// (f32 1e-5, bf16 2e-2 relative: the fused paths add the norms' sums in another order).
// `what` says what the second run changed. Returns the worst logits difference.
double check_same_decoding(const std::vector<int32_t>& t0, const std::vector<Tensor>& l0,
                           const std::vector<int32_t>& t1, const std::vector<Tensor>& l1, DType dt,
                           const std::string& what) {
    BOOST_TEST(t1 == t0, "greedy tokens differ " << what);
    const double tol = dt == DType::f32 ? 1e-5 : 2e-2;
    double worst = 0;
    for (size_t i = 0; i < l0.size(); ++i) worst = std::max(worst, rel_err(l1[i], l0[i]));
    BOOST_TEST(worst <= tol, "logits: worst relative difference " << worst << " " << what);
    return worst;
}

// the few-row products with a prologue a layer of tiny_retnet runs a step, fusion on, up to
// 4 rows: QKVG, fc1/gate, fc2, and out_proj with the gated norm where that applies (f32:
// tiny_retnet's Dv of 12 is not a multiple of bf16's 8-value vector)
int64_t prologues_a_layer(DType dt, int64_t B = 1, int64_t Dv = 12) {
    const int64_t v = dt == DType::f32 ? 4 : 8;
    return 3 + (B <= decode_gate_in_product() && Dv % v == 0 ? 1 : 0);
}

BOOST_AUTO_TEST_CASE(a_model_decodes_the_same_tokens_with_and_without_fusion) {
    FusionGuard guard;
    for (DType dt : {DType::f32, DType::bf16}) {
        BOOST_TEST_CONTEXT(dt) {
            auto model = tiny_retnet(96, 11, 64);
            model->to(kGpu);
            model->to(dt);
            model->fuse_for_decoding();
            const int64_t c0 = cuda::gemv_prologue_calls(), r0 = cuda::retention_step_gated_calls();
            set_decode_fusion_enabled(false);
            auto [t0, l0] = decode(*model, dt, 40);
            const int64_t c1 = cuda::gemv_prologue_calls(), r1 = cuda::retention_step_gated_calls();
            set_decode_fusion_enabled(true);
            auto [t1, l1] = decode(*model, dt, 40);
            BOOST_TEST(c1 == c0, "a fused kernel ran with fusion off");
            BOOST_TEST(r1 == r0, "a fused kernel ran with fusion off");
            BOOST_TEST(cuda::retention_step_gated_calls() - r1 == 40 * 2);  // one a layer a step
            // per step: QKVG and fc1/gate with the norm, fc2 with SwiGLU (2 layers), the head;
            // out_proj with the gated norm in f32 (bf16: Dv 12 is not a multiple of 8 values)
            BOOST_TEST(cuda::gemv_prologue_calls() - c1 == 40 * (prologues_a_layer(dt) * 2 + 1));
            const double worst = check_same_decoding(t0, l0, t1, l1, dt, "with the fused kernels");
            BOOST_TEST_MESSAGE(dt << ": 40 tokens equal, logits within " << worst);
        }
    }
}

BOOST_AUTO_TEST_CASE(batches_decode_the_same_tokens_with_and_without_fusion) {
    FusionGuard guard;
    for (DType dt : {DType::f32, DType::bf16}) {
        for (int64_t B : {3, 9}) {  // the fused products over 3 rows; past 4, one cuBLAS product before the step
            BOOST_TEST_CONTEXT(dt << " batch " << B) {
                auto model = tiny_retnet(96, 11, 64);
                model->to(kGpu);
                model->to(dt);
                model->fuse_for_decoding();
                set_decode_fusion_enabled(false);
                const int64_t r0 = cuda::retention_step_gated_calls();
                auto [t0, l0] = decode(*model, dt, 30, B);
                BOOST_TEST(cuda::retention_step_gated_calls() == r0, "a fused kernel ran with fusion off");
                set_decode_fusion_enabled(true);
                const int64_t c1 = cuda::gemv_prologue_calls(), r1 = cuda::retention_step_gated_calls();
                auto [t1, l1] = decode(*model, dt, 30, B);
                BOOST_TEST(cuda::retention_step_gated_calls() - r1 == 30 * 2);  // one a layer a step, any batch
                // up to 4 rows: QKVG and fc1/gate with the norm, fc2 with SwiGLU (2 layers), the
                // head, out_proj with the gated norm where it applies
                BOOST_TEST(cuda::gemv_prologue_calls() - c1 == (B <= 4 ? 30 * (prologues_a_layer(dt, B) * 2 + 1) : 0));
                const double worst = check_same_decoding(t0, l0, t1, l1, dt, "with the fused kernels");
                BOOST_TEST_MESSAGE(dt << " batch " << B << ": 30 steps equal, logits within " << worst);
            }
        }
    }
}

// RN_DECODE_GATE_IN_PRODUCT on and off: the gated norm in the out_proj product or in the
// step kernel gives the same greedy tokens, and logits within rounding (the norm's sum adds
// in another order); a model whose Dv (16) takes the product's prologue in f32 and bf16
BOOST_AUTO_TEST_CASE(the_gate_in_the_product_decodes_the_same_tokens) {
    FusionGuard guard;
    GateGuard gate_guard;
    set_decode_fusion_enabled(true);
    nn::ModelConfig c;
    c.vocab_size = 96, c.d_model = 64, c.n_heads = 2, c.value_dim = 32, c.ffn_dim = 24, c.n_layers = 2, c.chunk = 4;
    for (DType dt : {DType::f32, DType::bf16}) {
        for (int64_t B : {1, 3}) {
            BOOST_TEST_CONTEXT(dt << " batch " << B) {
                auto model = nn::make_model(c, 11);
                model->to(kGpu);
                model->to(dt);
                model->fuse_for_decoding();
                set_decode_gate_in_product(0);
                const int64_t c0 = cuda::gemv_prologue_calls();
                auto [t0, l0] = decode(*model, dt, 30, B);
                BOOST_TEST(cuda::gemv_prologue_calls() - c0 == 30 * (3 * 2 + 1));
                set_decode_gate_in_product(4);
                const int64_t c1 = cuda::gemv_prologue_calls();
                auto [t1, l1] = decode(*model, dt, 30, B);
                BOOST_TEST(cuda::gemv_prologue_calls() - c1 == 30 * (4 * 2 + 1), "out_proj did not take the gated norm");
                const double worst = check_same_decoding(t0, l0, t1, l1, dt, "with the gated norm in the product");
                BOOST_TEST_MESSAGE(dt << " batch " << B << ": 30 steps equal, logits within " << worst);
            }
        }
    }
}
