// tests/test_cuda_norm_softmax.cpp — softmax, log_softmax, cross_entropy, layer_norm and rms_norm
// on CUDA against the CPU ops on fresh random inputs: outputs and every gradient, over the
// kernels' shapes of work (a warp per row, a block per row with the row in registers, a block
// re-reading a row too long for them), odd sizes that take the scalar head/tail paths or the
// unvectorised fallback (C = 7, 4097, a misaligned base pointer), non-contiguous inputs.
// Tolerances: tol_for (cuda_test_util.h), ‖cuda − cpu‖ / ‖cpu‖: f32 1e-5 (fp32 sums in trees
// against the CPU's double sums), f64 1e-12, bf16 1e-2 (the CPU computes in f32 on the same
// bf16-rounded inputs; each output and gradient is rounded to bf16 once more on the GPU).
// Every CUDA result must be finite; cross-entropy with a bad target must give NaN instead.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>

#include "cuda_test_util.h"
#include "ops/linear_cross_entropy.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/softmax.h"
#include "ops/swiglu.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);


// x (CPU) laid out on the GPU as asked, as a fresh leaf
Tensor to_gpu_leaf(const Tensor& x, GpuLayout l, bool grad = true) {
    Tensor d = x.to(gpu);
    if (l == GpuLayout::noncontiguous) d = noncontiguous(d);
    if (l == GpuLayout::misaligned) d = misaligned_gpu(x);
    d = d.detach();
    if (grad) d.requires_grad_();
    return d;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_norm_softmax)

// ---------------------------------------------------------------- softmax / log_softmax

BOOST_AUTO_TEST_CASE(softmax_and_log_softmax_match_cpu) {
    Generator g(201);
    // rows × cols: warp rows (7, 33, 64, 1024 f32 = the warp's limit), block rows in the
    // register kernels (1025: just past the warp limit, odd rows with a scalar head and tail;
    // 2049, 4096 the bench's rows; 4097 odd; 8193 bf16 and 16384 f32/bf16: K = 2·KT at 512
    // threads, 16384 exactly full), block rows in the generic cached kernel (16385 just past
    // the register kernels, 32000 vocabulary), block rows re-read (40000 f32 / 70000 bf16),
    // one row; the misaligned layout sends every size through the generic kernels
    const Shape shapes[] = {{1, 7},     {7, 33},    {4097, 64}, {64, 1024}, {6, 1025},  {3, 2049}, {33, 4096},
                            {3, 4097},  {2, 8193},  {4, 16384}, {3, 16385}, {2, 32000}, {2, 40000},
                            {1, 70001}, {5, 1}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes)
            for (bool log : {false, true})
                for (int64_t dim : {int64_t(-1), int64_t(0)})
                    for (GpuLayout lay : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                        if (dim == 0 && s[0] * s[1] > 100000) continue;  // dim 0 of a vocabulary: slow on the CPU
                        BOOST_TEST_CONTEXT((log ? "log_softmax " : "softmax ") << dt << " " << s << " dim " << dim
                                                                               << " " << gpu_layout_name(lay)) {
                            Tensor x = uniform(s, -4, 4, g, DType::f32).to(dt);
                            Tensor dy = randn(s, g, DType::f32).to(dt);
                            auto f = [&](const Tensor& t) { return log ? log_softmax(t, dim) : softmax(t, dim); };
                            Tensor xc = cpu_ref_input(x).detach().requires_grad_();
                            Tensor yc = f(xc);
                            yc.backward(cpu_ref_input(dy));
                            Tensor xg = to_gpu_leaf(x, lay);
                            Tensor yg = f(xg);
                            yg.backward(dy.to(gpu));
                            check_close(yg, yc, tol_for(dt), "forward");
                            check_close(xg.grad(), xc.grad(), tol_for(dt), "gradient");
                        }
                    }
}

BOOST_AUTO_TEST_CASE(softmax_is_stable_at_large_logits) {
    Generator g(202);
    for (DType dt : {DType::f32, DType::bf16}) {
        Tensor x = uniform({9, 3001}, 990, 1010, g, DType::f32).to(dt);
        Tensor y = softmax(x.to(gpu));
        Tensor ly = log_softmax(x.to(gpu));
        check_close(y, softmax(cpu_ref_input(x)), tol_for(dt), "softmax at ±1000");
        check_close(ly, log_softmax(cpu_ref_input(x)), tol_for(dt), "log_softmax at ±1000");
    }
}

// masked logits (−inf entries, as from an attention mask) in every kernel shape: they get
// probability 0 and gradient 0; one row keeps a single finite entry (probability 1). Only
// softmax: log_softmax of −inf is −inf, which the finite-result check refuses.
BOOST_AUTO_TEST_CASE(softmax_with_masked_entries_matches_cpu) {
    Generator g(203);
    const Shape shapes[] = {{9, 300}, {5, 1025}, {4, 4096}, {3, 4097}, {2, 16384}, {2, 40000}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes)
            for (GpuLayout lay : {GpuLayout::contiguous, GpuLayout::misaligned}) {
                BOOST_TEST_CONTEXT("masked softmax " << dt << " " << s << " " << gpu_layout_name(lay)) {
                    std::vector<float> v = uniform(s, -4, 4, g, DType::f32).to_vector<float>();
                    const int64_t C = s[1];
                    for (int64_t r = 0; r < s[0]; ++r)
                        for (int64_t c = 0; c < C; ++c)
                            if ((r == 1 && c != C / 2) || (r != 1 && (c + r) % 3 == 0)) v[size_t(r * C + c)] = -INFINITY;
                    Tensor x = from_vector<float>(v, s).to(dt);
                    Tensor dy = randn(s, g, DType::f32).to(dt);
                    Tensor xc = cpu_ref_input(x).detach().requires_grad_();
                    Tensor yc = softmax(xc, -1);
                    yc.backward(cpu_ref_input(dy));
                    Tensor xg = to_gpu_leaf(x, lay);
                    Tensor yg = softmax(xg, -1);
                    yg.backward(dy.to(gpu));
                    check_close(yg, yc, tol_for(dt), "forward");
                    check_close(xg.grad(), xc.grad(), tol_for(dt), "gradient");
                }
            }
}

// ---------------------------------------------------------------- cross-entropy

BOOST_AUTO_TEST_CASE(cross_entropy_matches_cpu) {
    Generator g(203);
    // rows × classes: odd C (7, 4097), the 32000 vocabulary, odd vocabulary, one row
    const Shape shapes[] = {{1, 7}, {4097, 7}, {7, 4097}, {64, 32000}, {3, 32001}, {300, 100}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes)
            for (int64_t ignore : {int64_t(-100), int64_t(3)})
                for (GpuLayout lay : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                    BOOST_TEST_CONTEXT("cross_entropy " << dt << " " << s << " ignore " << ignore << " "
                                                        << gpu_layout_name(lay)) {
                        const int64_t N = s[0], C = s[1];
                        Tensor x = uniform(s, -5, 5, g, DType::f32).to(dt);
                        // about a fifth of the tokens ignored (ignore = 3 also hits class 3 rows)
                        Tensor t = randint(0, C, {N}, g, DType::i64);
                        auto tv = t.to_vector<int64_t>();
                        Tensor keep = rand({N}, g, DType::f64);
                        auto kv = keep.to_vector<double>();
                        for (int64_t r = 0; r < N; ++r)
                            if (kv[size_t(r)] < 0.2) tv[size_t(r)] = ignore;
                        if (N > 1) tv[0] = C - 1;  // the last class, where a vector tail sits
                        t = from_vector<int64_t>(tv, {N});
                        Tensor xc = cpu_ref_input(x).detach().requires_grad_();
                        Tensor lc = cross_entropy(xc, t, ignore);
                        (lc * 2.5).backward();  // dloss = 2.5: read from device memory on the GPU
                        Tensor xg = to_gpu_leaf(x, lay);
                        Tensor lg = cross_entropy(xg, t.to(gpu), ignore);
                        BOOST_TEST(lg.dim() == 0);
                        BOOST_TEST(lg.dtype() == (dt == DType::bf16 ? DType::f32 : dt));
                        (lg * 2.5).backward();
                        check_close(lg, lc, tol_for(dt), "loss");
                        check_close(xg.grad(), xc.grad(), tol_for(dt), "dlogits");
                    }
                }
}

BOOST_AUTO_TEST_CASE(cross_entropy_batched_int32_targets_and_edge_cases) {
    Generator g(204);
    // [B, T, C] logits with [B, T] i32 targets
    Tensor x = randn({3, 5, 11}, g, DType::f32);
    Tensor t = randint(0, 11, {3, 5}, g, DType::i32);
    Tensor xc = x.detach().requires_grad_(), xg = x.to(gpu).detach().requires_grad_();
    Tensor lc = cross_entropy(xc, t), lg = cross_entropy(xg, t.to(gpu));
    lc.backward();
    lg.backward();
    check_close(lg, lc, tol_for(DType::f32), "batched loss");
    check_close(xg.grad(), xc.grad(), tol_for(DType::f32), "batched dlogits");

    // every token ignored: loss 0 and a zero gradient, not NaN
    Tensor all_ign = full({4}, -100, DType::i64);
    Tensor x2 = randn({4, 9}, g).to(gpu).detach().requires_grad_();
    Tensor l2 = cross_entropy(x2, all_ign.to(gpu));
    l2.backward();
    BOOST_TEST(l2.item() == 0.0);
    BOOST_TEST(max_abs_diff(x2.grad().to(Device::cpu()), zeros({4, 9})) == 0.0);

    // a target out of range: no host sync by default, so no exception — the loss and the
    // gradient come out NaN (RN_CUDA_CHECK_TARGETS=1 makes it throw the CPU's message)
    if (!std::getenv("RN_CUDA_CHECK_TARGETS")) {
        Tensor x3 = randn({4, 5}, g).to(gpu).detach().requires_grad_();
        Tensor l3 = cross_entropy(x3, from_vector<int64_t>({0, 1, 7, 2}, {4}).to(gpu));
        l3.backward();
        BOOST_TEST(std::isnan(l3.item()));
        BOOST_TEST(std::isnan(x3.grad().to_vector<double>()[0]));
    }

    // targets on another device than the logits
    RN_CHECK_THROWS_WITH(cross_entropy(x.to(gpu), t), "targets are on cpu");
}

BOOST_AUTO_TEST_CASE(cross_entropy_is_deterministic) {
    Generator g(205);
    Tensor x = randn({2048, 1000}, g).to(gpu);
    Tensor t = randint(0, 1000, {2048}, g, DType::i64).to(gpu);
    const double a = cross_entropy(x, t).item(), b = cross_entropy(x, t).item();
    BOOST_TEST(a == b);
}

// linear_cross_entropy (ops/linear_cross_entropy.h) on CUDA against the CPU op and against
// the GPU's own unfused loss: several blocks (one ragged), ignored targets, upstream 0.5;
// bf16 against the CPU in f32 on the same bf16 values (the gradients' sums stay f32 on the
// GPU, so bf16 is as close as the unfused bf16 path is)
BOOST_AUTO_TEST_CASE(linear_cross_entropy_matches_cpu) {
    Generator g(206);
    const int64_t N = 700, d = 96, V = 1001;
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (int64_t block : {int64_t(0), int64_t(128), int64_t(333)}) {
            BOOST_TEST_CONTEXT("linear_cross_entropy " << dt << " block " << block) {
                Tensor x = uniform({N, d}, -1, 1, g, DType::f32).to(dt), w = uniform({V, d}, -1, 1, g, DType::f32).to(dt);
                Tensor t = randint(0, V, {N}, g, DType::i64);
                auto tv = t.to_vector<int64_t>();
                for (size_t r = 0; r < tv.size(); r += 7) tv[r] = -100;
                t = from_vector<int64_t>(tv, {N});
                Tensor xc = cpu_ref_input(x).detach().requires_grad_(), wc = cpu_ref_input(w).detach().requires_grad_();
                Tensor lc = linear_cross_entropy(xc, wc, t, -100, block);
                (lc * 0.5).backward();
                Tensor xg = x.to(gpu).detach().requires_grad_(), wg = w.to(gpu).detach().requires_grad_();
                Tensor lg = linear_cross_entropy(xg, wg, t.to(gpu), -100, block);
                BOOST_TEST(lg.dtype() == (dt == DType::bf16 ? DType::f32 : dt));
                (lg * 0.5).backward();
                BOOST_TEST(xg.grad().dtype() == dt);
                check_close(lg, lc, tol_for(dt), "loss");
                check_close(xg.grad(), xc.grad(), tol_for(dt), "dx");
                check_close(wg.grad(), wc.grad(), tol_for(dt), "dw");
                // the GPU's unfused loss: the same values
                Tensor xu = x.to(gpu).detach().requires_grad_(), wu = w.to(gpu).detach().requires_grad_();
                Tensor lu = cross_entropy(matmul(xu, wu.t()), t.to(gpu));
                (lu * 0.5).backward();
                check_close(lg, lu.to(Device::cpu()), tol_for(dt), "loss vs unfused");
                check_close(wg.grad(), wu.grad().to(Device::cpu()), tol_for(dt), "dw vs unfused");
            }
        }
    // every target ignored: 0 and zero gradients; a bad target: NaN, as cross_entropy
    Tensor x = randn({5, 8}, g).to(gpu).detach().requires_grad_(), w = randn({9, 8}, g).to(gpu).detach().requires_grad_();
    Tensor l0 = linear_cross_entropy(x, w, full({5}, -100, DType::i64, gpu), -100, 2);
    l0.backward();
    BOOST_TEST(l0.item() == 0.0);
    BOOST_TEST(max_abs_diff(x.grad().to(Device::cpu()), zeros({5, 8})) == 0.0);
    if (!std::getenv("RN_CUDA_CHECK_TARGETS")) {
        Tensor l1 = linear_cross_entropy(x, w, from_vector<int64_t>({0, 1, 9, 2, 3}, {5}).to(gpu));
        BOOST_TEST(std::isnan(l1.item()));
    }
}

// ---------------------------------------------------------------- layer_norm / rms_norm

BOOST_AUTO_TEST_CASE(norms_match_cpu) {
    Generator g(206);
    // rows × cols: warp rows (7, 64, 512), block rows cached (1024, 4097 odd: unvectorised,
    // 8192: 64 KB of dw/db accumulators), block rows re-read (20000), and accumulators too
    // big for shared memory (40000)
    const Shape shapes[] = {{1, 7},    {7, 64},   {4097, 64}, {33, 512},  {65, 1024},
                            {7, 4097}, {9, 8192}, {3, 20000}, {2, 40000}, {4097, 3}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes)
            for (bool rms : {false, true})
                for (int params = 0; params < 3; ++params)  // none, weight, weight and bias
                    for (GpuLayout lay : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                        if (rms && params == 2) continue;
                        if (lay != GpuLayout::contiguous && params == 1) continue;
                        BOOST_TEST_CONTEXT((rms ? "rms_norm " : "layer_norm ") << dt << " " << s << " params "
                                                                               << params << " " << gpu_layout_name(lay)) {
                            const int64_t C = s[1];
                            // a mean far from 0 tests the centring
                            Tensor x = uniform(s, -1, 3, g, DType::f32).to(dt);
                            Tensor dy = randn(s, g, DType::f32).to(dt);
                            Tensor w = params >= 1 ? uniform({C}, 0.5, 1.5, g, DType::f32).to(dt) : Tensor();
                            Tensor b = params >= 2 ? randn({C}, g, DType::f32).to(dt) : Tensor();
                            auto f = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb) {
                                return rms ? rms_norm(xx, ww, 1e-6) : layer_norm(xx, ww, bb, 1e-5);
                            };
                            Tensor xc = cpu_ref_input(x).detach().requires_grad_();
                            Tensor wc = w.defined() ? cpu_ref_input(w).detach().requires_grad_() : Tensor();
                            Tensor bc = b.defined() ? cpu_ref_input(b).detach().requires_grad_() : Tensor();
                            Tensor yc = f(xc, wc, bc);
                            yc.backward(cpu_ref_input(dy));
                            Tensor xg = to_gpu_leaf(x, lay);
                            Tensor wg = w.defined() ? w.to(gpu).detach().requires_grad_() : Tensor();
                            Tensor bg = b.defined() ? b.to(gpu).detach().requires_grad_() : Tensor();
                            Tensor yg = f(xg, wg, bg);
                            yg.backward(dy.to(gpu));
                            check_close(yg, yc, tol_for(dt), "forward");
                            check_close(xg.grad(), xc.grad(), tol_for(dt), "dx");
                            if (wg.defined()) check_close(wg.grad(), wc.grad(), tol_for(dt), "dweight");
                            if (bg.defined()) check_close(bg.grad(), bc.grad(), tol_for(dt), "dbias");
                        }
                    }
}

BOOST_AUTO_TEST_CASE(bf16_norm_backward_both_cache_choices_match_cpu) {
    // bf16 backward kernels keep 2 vectors a thread (a block a row past 64 vectors, as at
    // C 768) or 3 (RN_NORM_BWD_CACHE=3: a warp a row up to 96), each without the register
    // sums a call does not want (none for a gated norm, dw for RMSNorm, both for LayerNorm):
    // every combination against the CPU at the widths where the choice changes the kernel
    Generator g(211);
    const Shape shapes[] = {{300, 768}, {9, 512}, {33, 1024}};
    for (const char* cache : {"2", "3"}) {
        const ScopedEnv env("RN_NORM_BWD_CACHE", cache);
        for (const auto& s : shapes)
            for (int kind = 0; kind < 4; ++kind) {  // rms, rms + weight, layer + weight + bias, gated
                BOOST_TEST_CONTEXT("cache " << cache << " " << s << " kind " << kind) {
                    const int64_t C = s[1];
                    Tensor x = uniform(s, -1, 3, g, DType::f32).to(DType::bf16);
                    Tensor dy = randn(s, g, DType::f32).to(DType::bf16);
                    Tensor gate = randn(s, g, DType::f32).to(DType::bf16);
                    Tensor w = uniform({C}, 0.5, 1.5, g, DType::f32).to(DType::bf16);
                    Tensor b = randn({C}, g, DType::f32).to(DType::bf16);
                    auto run = [&](Device dev, Tensor& xl, Tensor& wl, Tensor& bl, Tensor& gl) {
                        auto on = [&](const Tensor& t) { return dev.is_cuda() ? t.to(gpu) : cpu_ref_input(t); };
                        xl = on(x).requires_grad_(), wl = on(w).requires_grad_(), bl = on(b).requires_grad_();
                        gl = on(gate).requires_grad_();
                        Tensor y = kind == 0   ? rms_norm(xl, Tensor(), 1e-6)
                                   : kind == 1 ? rms_norm(xl, wl, 1e-6)
                                   : kind == 2 ? layer_norm(xl, wl, bl, 1e-5)
                                               : gated_rms_norm(xl, gl, 1e-6);
                        y.backward(on(dy));
                        return y;
                    };
                    Tensor xg, wg, bg, gg, xc, wc, bc, gc;
                    Tensor yg = run(gpu, xg, wg, bg, gg), yc = run(Device::cpu(), xc, wc, bc, gc);
                    check_close(yg, yc, tol_for(DType::bf16), "forward");
                    check_close(xg.grad(), xc.grad(), tol_for(DType::bf16), "dx");
                    if (kind == 1 || kind == 2) check_close(wg.grad(), wc.grad(), tol_for(DType::bf16), "dweight");
                    if (kind == 2) check_close(bg.grad(), bc.grad(), tol_for(DType::bf16), "dbias");
                    if (kind == 3) check_close(gg.grad(), gc.grad(), tol_for(DType::bf16), "dgate");
                }
            }
    }
}

BOOST_AUTO_TEST_CASE(add_rms_norm_fused_equals_the_two_ops) {
    // the one-kernel residual add + RMSNorm (no autograd) against the add and the norm run
    // apart on the GPU (same bits: the sum is rounded to the dtype before the norm reads it,
    // as the separate add does) and against the CPU; warp rows, cached block rows, an
    // unvectorised width and rows re-read from memory (20000)
    Generator g(207);
    NoGradGuard ng;
    const Shape shapes[] = {{1, 768}, {64, 768}, {7, 1000}, {3, 4097}, {5, 8192}, {2, 20000}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes)
            for (bool weighted : {false, true}) {
                BOOST_TEST_CONTEXT(dt << " " << s << (weighted ? " weight" : "")) {
                    Tensor x = randn(s, g, DType::f32).to(dt).to(gpu), h = randn(s, g, DType::f32).to(dt).to(gpu);
                    Tensor w = weighted ? uniform({s[1]}, 0.5, 1.5, g, DType::f32).to(dt).to(gpu) : Tensor();
                    auto [sum, out] = add_rms_norm(x, h, w, 1e-6);
                    Tensor sum2 = x + h, out2 = rms_norm(sum2, w, 1e-6);
                    BOOST_TEST(max_abs_diff(sum.to(Device::cpu()), sum2.to(Device::cpu())) == 0.0);
                    BOOST_TEST(max_abs_diff(out.to(Device::cpu()), out2.to(Device::cpu())) == 0.0);
                    Tensor wc = weighted ? cpu_ref_input(w.to(Device::cpu())) : Tensor();
                    check_close(out, rms_norm(cpu_ref_input(sum2.to(Device::cpu())), wc, 1e-6), tol_for(dt), "vs CPU");
                }
            }
}

BOOST_AUTO_TEST_CASE(gated_rms_norm_fused_matches_the_two_ops) {
    // silu(gate) ⊙ rms_norm(x) in one kernel (no autograd) against silu_mul(gate, rms_norm(x))
    // on the GPU (one rounding fewer in bf16: within its tolerance) and against the CPU
    Generator g(208);
    NoGradGuard ng;
    const Shape shapes[] = {{3, 432}, {192, 432}, {7, 1000}, {5, 8192}, {2, 20000}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes) {
            BOOST_TEST_CONTEXT(dt << " " << s) {
                Tensor x = randn(s, g, DType::f32).to(dt).to(gpu), gate = randn(s, g, DType::f32).to(dt).to(gpu);
                Tensor out = gated_rms_norm(x, gate, 1e-6);
                check_close(out, silu_mul(gate, rms_norm(x, Tensor(), 1e-6)).to(Device::cpu()).to(DType::f64),
                            tol_for(dt), "vs the two ops");
                check_close(out, silu_mul(cpu_ref_input(gate.to(Device::cpu())), rms_norm(cpu_ref_input(x.to(Device::cpu())), Tensor(), 1e-6)),
                            tol_for(dt), "vs CPU");
            }
        }
}

BOOST_AUTO_TEST_CASE(gated_rms_norm_backward_matches_cpu) {
    // with autograd on: the fused forward keeps the row statistics and its backward kernel
    // gives dx and dgate, against the CPU's silu_mul(gate, rms_norm(x)) and its gradients;
    // rows a warp, a cached block, a streaming block, and an odd width (one element a thread)
    Generator g(210);
    const Shape shapes[] = {{192, 512}, {5, 8192}, {2, 20000}, {9, 77}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes) {
            BOOST_TEST_CONTEXT(dt << " " << s) {
                Tensor x = randn(s, g, DType::f32).to(dt), gate = randn(s, g, DType::f32).to(dt);
                Tensor dout = randn(s, g, DType::f32).to(dt);
                Tensor xg = x.to(gpu).requires_grad_(), gg = gate.to(gpu).requires_grad_();
                Tensor xc = cpu_ref_input(x).requires_grad_(), gc = cpu_ref_input(gate).requires_grad_();
                Tensor out = gated_rms_norm(xg, gg, 1e-6);
                Tensor want = gated_rms_norm(xc, gc, 1e-6);
                out.backward(dout.to(gpu));
                want.backward(cpu_ref_input(dout));
                check_close(out, want, tol_for(dt), "out");
                check_close(xg.grad(), xc.grad(), tol_for(dt), "dx");
                check_close(gg.grad(), gc.grad(), tol_for(dt), "dgate");
            }
        }
}

// swiglu_linear (ops/swiglu.h) against the two ops on the GPU — y, da, db bit for bit (the
// same kernels: the backward's recompute writes the forward's expression), dW to rounding —
// and against the CPU; an odd width takes the scalar tail of silu_mul_backward_recompute
BOOST_AUTO_TEST_CASE(swiglu_linear_matches_the_two_ops_and_the_cpu) {
    Generator g(209);
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (int64_t k : {int64_t(256), int64_t(77)}) {
            BOOST_TEST_CONTEXT(dt << " k " << k) {
                Tensor a = randn({3, 50, k}, g, DType::f32).to(dt), b = randn({3, 50, k}, g, DType::f32).to(dt);
                Tensor w = (randn({40, k}, g, DType::f32) * 0.1).to(dt), dy = randn({3, 50, 40}, g, DType::f32).to(dt);
                auto leaf = [](const Tensor& t) { return t.to(gpu).detach().requires_grad_(); };
                Tensor ag = leaf(a), bg = leaf(b), wg = leaf(w), a2 = leaf(a), b2 = leaf(b), w2 = leaf(w);
                Tensor y = swiglu_linear(ag, bg, wg), y2 = matmul(silu_mul(a2, b2), w2.t());
                y.backward(dy.to(gpu));
                y2.backward(dy.to(gpu));
                check_exact(y, y2.to(Device::cpu()), "y vs the two ops");
                check_exact(ag.grad(), a2.grad().to(Device::cpu()), "da vs the two ops");
                check_exact(bg.grad(), b2.grad().to(Device::cpu()), "db vs the two ops");
                check_close(wg.grad(), w2.grad().to(Device::cpu()), tol_for(dt), "dW vs the two ops");
                Tensor ac = cpu_ref_input(a).detach().requires_grad_(), bc = cpu_ref_input(b).detach().requires_grad_();
                Tensor wc = cpu_ref_input(w).detach().requires_grad_();
                swiglu_linear(ac, bc, wc).backward(cpu_ref_input(dy));
                check_close(y, matmul(silu_mul(ac, bc), wc.t()).detach(), tol_for(dt), "y vs CPU");
                check_close(ag.grad(), ac.grad(), tol_for(dt), "da vs CPU");
                check_close(wg.grad(), wc.grad(), tol_for(dt), "dW vs CPU");
            }
        }
}

// rms_norm_linear (ops/norm.h) against rms_norm + matmul on the GPU (outputs bit for bit,
// gradients to rounding: the input gradients summed by GEMMs with beta = 1) and the CPU
BOOST_AUTO_TEST_CASE(rms_norm_linear_matches_the_ops_and_the_cpu) {
    Generator g(210);
    for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
        BOOST_TEST_CONTEXT(dt) {
            Tensor x = randn({2, 70, 96}, g, DType::f32).to(dt), nw = uniform({96}, 0.5, 1.5, g, DType::f32).to(dt);
            Tensor a = (randn({64, 96}, g, DType::f32) * 0.1).to(dt), b = (randn({40, 96}, g, DType::f32) * 0.1).to(dt);
            Tensor ra = randn({2, 70, 64}, g, DType::f32).to(dt), rb = randn({2, 70, 40}, g, DType::f32).to(dt);
            auto leaf = [](const Tensor& t) { return t.to(gpu).detach().requires_grad_(); };
            Tensor xg = leaf(x), nwg = leaf(nw), ag = leaf(a), bg = leaf(b);
            Tensor x2 = leaf(x), nw2 = leaf(nw), a2 = leaf(a), b2 = leaf(b);
            auto y = rms_norm_linear(xg, nwg, {ag, bg}, 1e-6);
            Tensor n = rms_norm(x2, nw2, 1e-6);
            Tensor ya = matmul(n, a2.t()), yb = matmul(n, b2.t());
            check_exact(y[0], ya.to(Device::cpu()), "y0 vs the ops");
            check_exact(y[1], yb.to(Device::cpu()), "y1 vs the ops");
            (sum(y[0] * ra.to(gpu)) + sum(y[1] * rb.to(gpu))).backward();
            (sum(ya * ra.to(gpu)) + sum(yb * rb.to(gpu))).backward();
            // bf16: the sum of the two input gradients is rounded at different points
            check_close(xg.grad(), x2.grad().to(Device::cpu()), tol_for(dt), "dx vs the ops");
            check_close(nwg.grad(), nw2.grad().to(Device::cpu()), tol_for(dt), "dnorm_w vs the ops");
            check_close(ag.grad(), a2.grad().to(Device::cpu()), tol_for(dt), "da vs the ops");
            Tensor xc = cpu_ref_input(x).detach().requires_grad_(), nwc = cpu_ref_input(nw).detach().requires_grad_();
            Tensor ac = cpu_ref_input(a).detach().requires_grad_(), bc = cpu_ref_input(b).detach().requires_grad_();
            auto yc = rms_norm_linear(xc, nwc, {ac, bc}, 1e-6);
            (sum(yc[0] * cpu_ref_input(ra)) + sum(yc[1] * cpu_ref_input(rb))).backward();
            check_close(y[1], yc[1].detach(), tol_for(dt), "y1 vs CPU");
            check_close(xg.grad(), xc.grad(), tol_for(dt), "dx vs CPU");
            check_close(bg.grad(), bc.grad(), tol_for(dt), "db vs CPU");
        }
    }
}

BOOST_AUTO_TEST_CASE(norm_parameter_gradients_alone_and_deterministic) {
    Generator g(207);
    for (const Shape& s : {Shape{4097, 256}, Shape{300, 8192}}) {
        BOOST_TEST_CONTEXT(s) {
            const int64_t C = s[1];
            Tensor x = uniform(s, -1, 3, g, DType::f32), dy = randn(s, g, DType::f32);
            Tensor w = uniform({C}, 0.5, 1.5, g, DType::f32), b = randn({C}, g, DType::f32);
            // x needs no gradient: the kernels run without dx
            Tensor wc = w.detach().requires_grad_(), bc = b.detach().requires_grad_();
            layer_norm(x, wc, bc).backward(dy);
            Tensor xg = x.to(gpu), dyg = dy.to(gpu);
            Tensor dw1, db1;
            for (int rep = 0; rep < 2; ++rep) {
                Tensor wg = w.to(gpu).detach().requires_grad_(), bg = b.to(gpu).detach().requires_grad_();
                layer_norm(xg, wg, bg).backward(dyg);
                check_close(wg.grad(), wc.grad(), tol_for(DType::f32), "dweight without dx");
                check_close(bg.grad(), bc.grad(), tol_for(DType::f32), "dbias without dx");
                if (rep == 0) {
                    dw1 = wg.grad().to(Device::cpu());
                    db1 = bg.grad().to(Device::cpu());
                } else {  // no atomics: the same bits twice
                    BOOST_TEST(max_abs_diff(wg.grad().to(Device::cpu()), dw1) == 0.0);
                    BOOST_TEST(max_abs_diff(bg.grad().to(Device::cpu()), db1) == 0.0);
                }
            }
            // rms_norm: only dx wanted (weight without grad)
            Tensor xc = x.detach().requires_grad_();
            rms_norm(xc, w).backward(dy);
            Tensor xg2 = xg.detach().requires_grad_();
            rms_norm(xg2, w.to(gpu)).backward(dyg);
            check_close(xg2.grad(), xc.grad(), tol_for(DType::f32), "rms dx without dweight");
        }
    }
}

BOOST_AUTO_TEST_CASE(cuda_ops_refuse_mixed_devices) {
    Tensor x = zeros({2, 8}, DType::f32, gpu);
    RN_CHECK_THROWS_WITH(layer_norm(x, zeros({8})), "weight is on cpu but x is on cuda:0");
    RN_CHECK_THROWS_WITH(rms_norm(x, zeros({8})), "weight is on cpu but x is on cuda:0");
}

BOOST_AUTO_TEST_SUITE_END()
