// tests/test_cuda_copy_optim.cpp — CUDA against CPU for the layout and training-step kernels
// the model leans on: strided copies (the permutes of the attention layout, dtype casts,
// unaligned and odd-sized rows, transposes), the xPos rotation with a scale at long
// positions, and the fused gradient norm and AdamW with a gradient scale (clipping folded
// into the update).
#include <boost/test/unit_test.hpp>

#include "cuda_test_util.h"
#include "nn/optim.h"
#include "ops/ops.h"
#include "ops/rotary.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device kGpu = Device::cuda(0);
}

BOOST_AUTO_TEST_SUITE(cuda_copy_optim)

BOOST_AUTO_TEST_CASE(permuted_and_strided_copies_match_the_cpu) {
    Generator g(31);
    // [B,T,H,D] → [B,H,T,D] (rows of D contiguous on both sides) for D aligned and not,
    // and a transpose (innermost strides differ) and a sliced view (unaligned start)
    for (DType dt : {DType::f32, DType::bf16}) {
        for (Shape s : {Shape{2, 37, 3, 432}, Shape{3, 5, 2, 16}, Shape{1, 7, 4, 24}, Shape{2, 9, 3, 7}, Shape{1, 1, 1, 1}}) {
            BOOST_TEST_CONTEXT(dt << " " << s) {
                Tensor x = randn(s, g).to(dt);
                Tensor want = x.permute({0, 2, 1, 3}).contiguous();
                Tensor got = x.to(kGpu).permute({0, 2, 1, 3}).contiguous().to(Device::cpu());
                BOOST_TEST(max_abs_diff(got, want) == 0.0);
                Tensor want_t = x.transpose(1, 3).contiguous();
                BOOST_TEST(max_abs_diff(x.to(kGpu).transpose(1, 3).contiguous().to(Device::cpu()), want_t) == 0.0);
                // rows starting one element in: no longer 16-byte aligned
                if (s[3] > 1) {
                    Tensor ws = x.narrow(3, 1, s[3] - 1).permute({0, 2, 1, 3}).contiguous();
                    Tensor gs = x.to(kGpu).narrow(3, 1, s[3] - 1).permute({0, 2, 1, 3}).contiguous();
                    BOOST_TEST(max_abs_diff(gs.to(Device::cpu()), ws) == 0.0);
                }
            }
        }
    }
    // casts, contiguous and permuted: f32 → bf16 → f32 equals the CPU's rounding; f64 and ints
    Tensor x = randn({5, 33, 3, 40}, g);
    Tensor cb = x.to(DType::bf16);
    BOOST_TEST(max_abs_diff(x.to(kGpu).to(DType::bf16).to(Device::cpu()), cb) == 0.0);
    BOOST_TEST(max_abs_diff(x.to(kGpu).permute({0, 2, 1, 3}).to(DType::bf16).to(Device::cpu()),
                            cb.permute({0, 2, 1, 3})) == 0.0);
    Tensor x64 = randn({4097}, g, DType::f64) * 1e3;
    BOOST_TEST(max_abs_diff(x64.to(kGpu).to(DType::f32).to(Device::cpu()), x64.to(DType::f32)) == 0.0);
    Tensor ints = randint(-100000, 100000, {3, 4097}, g);
    BOOST_TEST(max_abs_diff(ints.to(kGpu).t().contiguous().to(DType::f64).to(Device::cpu()),
                            ints.t().contiguous().to(DType::f64)) == 0.0);
}

BOOST_AUTO_TEST_CASE(rotation_with_scale_matches_the_cpu_at_long_positions) {
    Generator g(5);
    for (DType dt : {DType::f32, DType::bf16}) {
        for (int64_t C : {int64_t(768), int64_t(48), int64_t(10)}) {  // vector path, and the pair fallback (C % 8 ≠ 0)
            const int64_t Dk = C == 768 ? 256 : (C == 48 ? 16 : 10);
            Tensor x = randn({3, 29, C}, g).to(dt);
            Tensor pos = from_vector<int64_t>({0, 65536, 1000003}, {3});
            Tensor want = xpos_rotate(x.to(DType::f32), Dk, pos, 0.0625);
            Tensor got = xpos_rotate(x.to(kGpu), Dk, pos.to(kGpu), 0.0625).to(Device::cpu()).to(DType::f32);
            BOOST_TEST_CONTEXT(dt << " C " << C) {
                BOOST_TEST(max_abs_diff(got, want) < (dt == DType::bf16 ? 2e-2 : 2e-6));
            }
        }
    }
    // [q | k] in one pass with two scales (the decode step's stacked projection)
    for (DType dt : {DType::f32, DType::bf16}) {
        Tensor x = randn({2, 1, 1536}, g).to(dt);
        Tensor pos = from_vector<int64_t>({7, 65536}, {2});
        Tensor want = xpos_rotate(x.to(DType::f32), 256, pos, 1.0, 768, 0.0625);
        Tensor got = xpos_rotate(x.to(kGpu), 256, pos.to(kGpu), 1.0, 768, 0.0625).to(Device::cpu()).to(DType::f32);
        BOOST_TEST(max_abs_diff(got, want) < (dt == DType::bf16 ? 2e-2 : 2e-6), dt << " split");
        BOOST_TEST(max_abs_diff(got.narrow(2, 768, 768), xpos_rotate(x.to(kGpu).narrow(2, 768, 768), 256, pos.to(kGpu), 0.0625)
                                                             .to(Device::cpu())
                                                             .to(DType::f32)) == 0.0,
                   dt << " the k half equals k rotated alone");
    }
    // the backward: the gradient of Σ w·rotate(x)·s is s·rotate(w, −n)
    Tensor x = randn({2, 17, 64}, g).requires_grad_();
    Tensor w = randn({2, 17, 64}, g);
    Tensor pos = from_vector<int64_t>({5, 70000}, {2});
    sum(xpos_rotate(x, 32, pos, 0.5) * w).backward();
    Tensor xg = x.detach().to(kGpu).requires_grad_();
    sum(xpos_rotate(xg, 32, pos.to(kGpu), 0.5) * w.to(kGpu)).backward();
    BOOST_TEST(max_abs_diff(xg.grad().to(Device::cpu()), x.grad()) < 2e-6);
}

BOOST_AUTO_TEST_CASE(fused_grad_norm_and_scaled_adamw_match_the_cpu) {
    Generator g(9);
    std::vector<std::pair<std::string, Tensor>> pc, pg;
    for (Shape s : {Shape{300, 17}, Shape{7}, Shape{4097}, Shape{64, 64}}) {
        Tensor p = randn(s, g), gr = randn(s, g) * 3.0;
        Tensor a = p.clone().requires_grad_(), b = p.to(kGpu).requires_grad_();
        a.set_grad(gr);
        b.set_grad(gr.to(kGpu));
        pc.emplace_back("p" + std::to_string(pc.size()), a);
        pg.emplace_back("p" + std::to_string(pg.size()), b);
    }
    std::vector<Tensor> vc, vg;
    for (auto& [n, t] : pc) vc.push_back(t);
    for (auto& [n, t] : pg) vg.push_back(t);
    const double nc = nn::grad_norm(vc), ng = nn::grad_norm(vg);
    double want = 0;
    for (auto& t : vc) {
        auto v = t.grad().to_vector<double>();
        for (double e : v) want += e * e;
    }
    // the GPU accumulates Σg² in f64 (exact to ~1e-12 here); the CPU path sums in f32
    BOOST_TEST(std::abs(ng - std::sqrt(want)) < 1e-9 * ng);
    BOOST_TEST(std::abs(nc - std::sqrt(want)) < 1e-5 * ng);
    // AdamW with grad_scale equals AdamW on gradients scaled in place (clip_grad_norm)
    const double sc = nn::clip_scale(nc, 1.5);
    BOOST_TEST(sc < 1.0);
    nn::AdamW oc(pc, nn::AdamWOptions{}), og(pg, nn::AdamWOptions{});
    og.step(1e-2, sc);
    nn::clip_grad_norm(vc, 1.5);
    oc.step(1e-2);
    for (size_t i = 0; i < vc.size(); ++i)
        BOOST_TEST(max_abs_diff(vg[i].detach().to(Device::cpu()), vc[i].detach()) < 1e-6);
}

BOOST_AUTO_TEST_CASE(multi_tensor_launches_match_the_cpu_over_many_parameters) {
    // AdamW and the norm take up to 40 CUDA tensors a launch, in chunks of 4096 elements:
    // 95 parameters (three launches, the last one partial), sizes 1…70,001 (chunks with a
    // ragged last one, sizes not a multiple of 4), one parameter one element off a 16-byte
    // boundary (the element path), one bf16 gradient (converted before the launch), weight
    // decay on some; five steps
    Generator g(10);
    std::vector<std::pair<std::string, Tensor>> pc, pg;
    std::vector<Tensor> vc, vg;
    for (int i = 0; i < 95; ++i) {
        const int64_t n = i == 7 ? 70001 : i == 30 ? 4096 : i == 31 ? 4097 : 1 + (i * 37) % 300;
        const Shape shape = i % 3 ? Shape{n, 1} : Shape{n};
        Tensor p = randn(shape, g), pgpu;
        if (i == 50) {  // a contiguous view at element 1 of its buffer
            Tensor base = randn({n + 1}, g).to(kGpu);
            pgpu = base.narrow(0, 1, n);
            p = pgpu.to(Device::cpu());
            BOOST_TEST(pgpu.is_contiguous());
        } else {
            pgpu = p.to(kGpu);
        }
        Tensor a = p.clone().requires_grad_(), b = pgpu.detach().requires_grad_();
        pc.emplace_back("p" + std::to_string(i), a);
        pg.emplace_back("p" + std::to_string(i), b);
        vc.push_back(pc.back().second);
        vg.push_back(pg.back().second);
    }
    nn::AdamW oc(pc, nn::AdamWOptions{}), og(pg, nn::AdamWOptions{});
    std::vector<std::vector<double>> before;
    for (auto& t : vg) before.push_back(t.detach().to(Device::cpu()).to_vector<double>());
    for (int step = 0; step < 5; ++step) {
        for (size_t i = 0; i < vc.size(); ++i) {
            Tensor gr = randn(vc[i].shape(), g) * 2.0;
            if (i == 60) gr = gr.to(DType::bf16).to(DType::f32);  // exact in bf16: the GPU gets a bf16 gradient
            vc[i].set_grad(gr);
            vg[i].set_grad(i == 60 ? gr.to(DType::bf16).to(kGpu) : gr.to(kGpu));
        }
        const double nc = nn::grad_norm(vc), ng = nn::grad_norm(vg);
        BOOST_TEST(std::abs(ng - nc) < 1e-5 * nc);
        const double sc = nn::clip_scale(ng, 0.5 * ng);  // clip by half: the scale is used
        oc.step(1e-2, sc);
        og.step(1e-2, sc);
        if (step == 0) {  // the first step moves every element by about lr (m̂/√v̂ = ±1): none skipped
            double least = 1e9;
            for (size_t i = 0; i < vg.size(); ++i) {
                const std::vector<double> now = vg[i].detach().to(Device::cpu()).to_vector<double>();
                for (size_t e = 0; e < now.size(); ++e) least = std::min(least, std::abs(now[e] - before[i][e]));
            }
            BOOST_TEST(least > 1e-3);
        }
    }
    double worst = 0;
    for (size_t i = 0; i < vc.size(); ++i)
        worst = std::max(worst, max_abs_diff(vg[i].detach().to(Device::cpu()), vc[i].detach()));
    BOOST_TEST(worst < 1e-6);
}

BOOST_AUTO_TEST_CASE(silu_mul_matches_the_cpu) {
    Generator g(12);
    for (DType dt : {DType::f32, DType::bf16}) {
        for (int64_t n : {int64_t(1), int64_t(7), int64_t(4097), int64_t(3 * 1296)}) {
            Tensor a = (randn({2, n}, g) * 3.0).to(dt), b = randn({2, n}, g).to(dt), w = randn({2, n}, g).to(dt);
            Tensor ac = a.to(DType::f32).detach().requires_grad_(), bc = b.to(DType::f32).detach().requires_grad_();
            sum(silu_mul(ac, bc) * w.to(DType::f32)).backward();
            Tensor ag = a.to(kGpu).detach().requires_grad_(), bg = b.to(kGpu).detach().requires_grad_();
            Tensor y = silu_mul(ag, bg);
            sum(y * w.to(kGpu)).backward();
            // an offset view: the unaligned (scalar) path
            Tensor yo = silu_mul(a.detach().to(kGpu).narrow(1, 1, n - 1), b.detach().to(kGpu).narrow(1, 0, n - 1));
            const double tol = dt == DType::bf16 ? 3e-2 : 1e-5;
            BOOST_TEST_CONTEXT(dt << " n " << n) {
                BOOST_TEST(max_abs_diff(y.to(Device::cpu()).to(DType::f32), silu_mul(ac, bc).detach()) < tol * 10);
                BOOST_TEST(rel_err(ag.grad().to(Device::cpu()).to(DType::f32), ac.grad()) < tol);
                BOOST_TEST(rel_err(bg.grad().to(Device::cpu()).to(DType::f32), bc.grad()) < tol);
                if (n > 1)
                    BOOST_TEST(max_abs_diff(yo.to(Device::cpu()).to(DType::f32),
                                            silu_mul(a.detach().narrow(1, 1, n - 1), b.detach().narrow(1, 0, n - 1)).to(DType::f32)) < tol * 10);
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
