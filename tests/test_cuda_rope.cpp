// tests/test_cuda_rope.cpp — half-split RoPE (rope_rotate) on CUDA against the CPU op on
// fresh random inputs: outputs and gradients in f32, f64 and bf16, over the kernel's paths
// (two 16-byte vectors per thread where D/2 is a multiple of 16 bytes' elements, one pair
// per thread otherwise: D = 6, D = 8 in bf16, a misaligned or non-contiguous input), per-
// sequence start positions past 64K and 1M; fp32 accuracy at large positions against an
// f64 reference; and a CUDA-graph replay that reads new positions in place (pos is read on
// the device). Tolerances: tol_for (cuda_test_util.h). Then the Transformer that uses it,
// end to end on the GPU (until test_cuda_model.cpp has Transformer cases): forward against
// the CPU's, prefill + step() against the forward in f32 and bf16, and a decode step
// captured in a CUDA graph and replayed at new positions.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "cuda/graph.h"
#include "cuda_test_util.h"
#include "nn/transformer.h"
#include "ops/rotary.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);


Tensor to_gpu_leaf(const Tensor& x, GpuLayout l) {
    Tensor d = x.to(gpu);
    if (l == GpuLayout::noncontiguous) d = noncontiguous(d);
    if (l == GpuLayout::misaligned) d = misaligned_gpu(x);
    return d.detach().requires_grad_();
}
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_rope)

BOOST_AUTO_TEST_CASE(rope_matches_cpu) {
    Generator g(401);
    struct Case { int64_t B, T, H, D; };
    // D = 128, 64: the model's heads (vector path in every dtype); 16: bf16's smallest vector
    // head (D/2 = 8); 8: vector in f32, pairs in bf16; 6: pairs everywhere; a long sequence
    const Case cases[] = {{2, 5, 4, 128}, {3, 7, 3, 64}, {2, 9, 5, 16}, {1, 4, 3, 8}, {3, 6, 2, 6}, {1, 300, 8, 64}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (auto [B, T, H, D] : cases)
            for (GpuLayout lay : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                BOOST_TEST_CONTEXT(dt << " B " << B << " T " << T << " H " << H << " D " << D << " " << gpu_layout_name(lay)) {
                    const Shape s{B, T, H * D};
                    std::vector<int64_t> p0 = {3, 65537, 1000003};
                    p0.resize(size_t(B));
                    Tensor pos = from_vector<int64_t>(p0, {B});
                    const double theta = D == 128 ? 500000.0 : 10000.0;
                    Tensor x = uniform(s, -2, 2, g, DType::f32).to(dt);
                    Tensor dy = randn(s, g, DType::f32).to(dt);
                    Tensor xc = cpu_ref_input(x).detach().requires_grad_();
                    Tensor yc = rope_rotate(xc, D, pos, theta);
                    yc.backward(cpu_ref_input(dy));
                    Tensor xg = to_gpu_leaf(x, lay);
                    Tensor yg = rope_rotate(xg, D, pos.to(gpu), theta);
                    BOOST_TEST(yg.dtype() == dt);
                    yg.backward(dy.to(gpu));
                    check_close(yg, yc, tol_for(dt), "forward");
                    check_close(xg.grad(), xc.grad(), tol_for(dt), "gradient");
                }
            }
}

// fp32 input, positions up to 2^20 + T: the GPU's angles (reduced in double, sincosf on
// |a| ≤ π) against the CPU's exact double rotation of the same values
BOOST_AUTO_TEST_CASE(fp32_angles_stay_accurate_at_large_positions) {
    Generator g(402);
    const int64_t B = 4, T = 16, H = 2, D = 128;
    Tensor pos = from_vector<int64_t>({0, 65536, 300000, 1 << 20}, {B});
    Tensor x = uniform({B, T, H * D}, -1, 1, g, DType::f32);
    Tensor want = rope_rotate(x.to(DType::f64), D, pos, 10000.0);
    Tensor got = rope_rotate(x.to(gpu), D, pos.to(gpu), 10000.0);
    const double err = max_abs_diff(got.to(Device::cpu()).to(DType::f64), want);
    BOOST_TEST(err < 2e-6, "max abs error " << err);  // ~ fp32 rounding of a value ≤ 2
}

BOOST_AUTO_TEST_CASE(graph_replay_reads_positions_on_the_device) {
    Generator g(403);
    const int64_t B = 3, D = 64;
    Tensor x = uniform({B, 1, 2 * D}, -1, 1, g).to(gpu);
    Tensor pos = from_vector<int64_t>({0, 0, 0}, {B}).to(gpu);
    cuda::Graph graph(0);
    Tensor out;
    std::string why;
    BOOST_REQUIRE_MESSAGE(graph.capture([&] { out = rope_rotate(x, D, pos, 10000.0); }, &why), why);
    for (const std::vector<int64_t>& p : {std::vector<int64_t>{5, 70000, 1}, std::vector<int64_t>{9, 2, 123456}}) {
        Tensor hp = from_vector<int64_t>(p, {B});
        copy_nograd(pos, hp);  // new positions, same address
        graph.replay();
        check_close(out, rope_rotate(x.to(Device::cpu()), D, hp, 10000.0), tol_for(DType::f32), "replayed");
    }
}

// D = 64 heads (the vector paths), GQA
BOOST_AUTO_TEST_CASE(transformer_decodes_on_the_gpu) {
    nn::ModelConfig c;
    c.arch = "transformer";
    c.vocab_size = 50;
    c.d_model = 128;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.value_dim = 128;
    c.ffn_dim = 96;
    c.n_layers = 2;
    nn::TransformerLM cpu_m(c, 5), m(c, 5);
    m.to(gpu);
    Generator g(404);
    const int64_t B = 3, N = 40, P = 25, Tmax = 48;
    Tensor tokens = randint(0, c.vocab_size, {B, N}, g);
    NoGradGuard ng;
    nn::ForwardOptions fo;
    Tensor want = cpu_m.forward(tokens, fo);  // [B, N, V] f32
    check_close(m.forward(tokens.to(gpu), fo), want, 1e-5, "forward f32");
    for (DType dt : {DType::f32, DType::bf16}) {
        BOOST_TEST_CONTEXT(dt) {
            // bf16: activations rounded to 8 bits through two layers against an f32 reference
            const double tol = dt == DType::f32 ? 1e-5 : 5e-2;
            std::vector<Tensor> st = m.init_states(B, gpu, dt, Tmax);
            BOOST_TEST(st[0].dtype() == dt);
            for (int64_t b = 0; b < B; ++b) {
                std::vector<Tensor> slot;
                for (const Tensor& t : st) slot.push_back(t.narrow(0, b, 1));
                Tensor lp = m.prefill(tokens.narrow(0, b, 1).narrow(1, 0, P - b).to(gpu), 0, slot, dt);
                check_close(lp.to(DType::f32), want.narrow(0, b, 1).narrow(1, 0, P - b), tol, "prefill");
            }
            // eager steps, sequence b at position P − b + s
            for (int64_t s = 0; s < 5; ++s) {
                std::vector<int64_t> tk, ps;
                for (int64_t b = 0; b < B; ++b) {
                    ps.push_back(P - b + s);
                    tk.push_back(int64_t(tokens.narrow(0, b, 1).narrow(1, P - b + s, 1).item()));
                }
                Tensor l = m.step(from_vector<int64_t>(tk, {B}).to(gpu), st, from_vector<int64_t>(ps, {B}).to(gpu), dt);
                for (int64_t b = 0; b < B; ++b)
                    check_close(l.narrow(0, b, 1).to(DType::f32), want.narrow(0, b, 1).select(1, ps[size_t(b)]), tol,
                                "step");
            }
            // the same decode step captured once, replayed with new tokens and positions
            Tensor tok_d = zeros({B}, DType::i64, gpu), pos_d = zeros({B}, DType::i64, gpu), out;
            cuda::Graph graph(0);
            std::string why;
            BOOST_REQUIRE_MESSAGE(graph.capture([&] { out = m.step(tok_d, st, pos_d, dt); }, &why), why);
            for (int64_t s = 5; s < 12; ++s) {
                std::vector<int64_t> tk, ps;
                for (int64_t b = 0; b < B; ++b) {
                    ps.push_back(P - b + s);
                    tk.push_back(int64_t(tokens.narrow(0, b, 1).narrow(1, P - b + s, 1).item()));
                }
                copy_nograd(tok_d, from_vector<int64_t>(tk, {B}));
                copy_nograd(pos_d, from_vector<int64_t>(ps, {B}));
                graph.replay();
                for (int64_t b = 0; b < B; ++b)
                    check_close(out.narrow(0, b, 1).to(DType::f32), want.narrow(0, b, 1).select(1, ps[size_t(b)]), tol,
                                "replayed step");
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
