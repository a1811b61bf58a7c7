// tests/test_norm_softmax.cpp — softmax, log_softmax, cross_entropy, layer_norm, rms_norm:
// forward values against naive references composed of primitive ops (exp, max, sum, mean,
// rsqrt, ...), gradients by f64 gradcheck and by comparing the fused backward with the
// backward of the naive composition (large enough to take the OpenMP paths), numerical
// stability at logits of ±1000, and the wording of the errors.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/softmax.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {
// ---- naive references, built only from primitive differentiable ops
Tensor ref_softmax(const Tensor& x, int64_t dim) {
    Tensor e = exp(x - max(x, {dim}, true));
    return e / sum(e, {dim}, true);
}
Tensor ref_log_softmax(const Tensor& x, int64_t dim) {
    Tensor s = x - max(x, {dim}, true);
    return s - log(sum(exp(s), {dim}, true));
}
// one-hot rows of the targets (zero rows where ignored), as a constant of logits' dtype
Tensor onehot_of(const Tensor& targets, int64_t C, int64_t ignore_index, DType dt) {
    auto t = targets.to_vector<int64_t>();
    std::vector<double> oh(t.size() * size_t(C), 0.0);
    for (size_t r = 0; r < t.size(); ++r)
        if (t[r] != ignore_index) oh[r * size_t(C) + size_t(t[r])] = 1.0;
    return from_vector<double>(oh, {int64_t(t.size()), C}).to(dt);
}
Tensor ref_cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100) {
    const int64_t C = logits.shape().back();
    Tensor lp = ref_log_softmax(logits.reshape({-1, C}), -1);
    Tensor oh = onehot_of(targets, C, ignore_index, logits.dtype());
    double count = sum(oh).item();
    return neg(sum(lp * oh)) / count;
}
Tensor ref_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
    Tensor d = x - mean(x, {-1}, true);
    Tensor y = d * rsqrt(mean(d * d, {-1}, true) + eps);
    if (w.defined()) y = y * w;
    if (b.defined()) y = y + b;
    return y;
}
Tensor ref_rms_norm(const Tensor& x, const Tensor& w, double eps) {
    Tensor y = x * rsqrt(mean(x * x, {-1}, true) + eps);
    return w.defined() ? y * w : y;
}

// a scalar objective with random weights, so that a constant-sum output (softmax rows sum to
// 1, normalised rows sum to 0) still has a non-zero gradient
Tensor weighted_sum(const Tensor& y, const Tensor& r) { return sum(y * r); }

bool all_finite(const Tensor& t) {
    for (double v : t.to_vector<double>())
        if (!std::isfinite(v)) return false;
    return true;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(norm_softmax)

// ---------------------------------------------------------------- softmax / log_softmax

BOOST_AUTO_TEST_CASE(softmax_forward_matches_reference) {
    Generator g(11);
    for (bool nc : {false, true}) {
        Tensor x = uniform({3, 4, 5}, -3, 3, g, DType::f64);
        if (nc) x = noncontiguous(x);
        for (int64_t d : {0, 1, 2, -1}) {
            Tensor y = softmax(x, d);
            BOOST_TEST(y.shape() == x.shape());
            BOOST_TEST(y.is_contiguous());
            BOOST_TEST(max_abs_diff(y, ref_softmax(x, d)) < 1e-14);
            // rows sum to one, and values are not uniform (a broken kernel writing 1/C fails above)
            BOOST_TEST(max_abs_diff(sum(y, {d}), ones(sum(y, {d}).shape(), DType::f64)) < 1e-14);
            Tensor ly = log_softmax(x, d);
            BOOST_TEST(max_abs_diff(ly, ref_log_softmax(x, d)) < 1e-13);
        }
    }
    // f32 and bf16 against f64
    Tensor x64 = uniform({7, 33}, -5, 5, g, DType::f64);
    Tensor ref = softmax(x64);
    BOOST_TEST(max_abs_diff(softmax(x64.to(DType::f32)).to(DType::f64), ref) < 1e-6);
    BOOST_TEST(max_abs_diff(log_softmax(x64.to(DType::f32)).to(DType::f64), log_softmax(x64)) < 5e-6);
    BOOST_TEST(max_abs_diff(softmax(x64.to(DType::bf16)).to(DType::f64), softmax(x64.to(DType::bf16).to(DType::f64))) <
               1e-2);
}

BOOST_AUTO_TEST_CASE(softmax_gradcheck_several_dims) {
    Generator g(12);
    for (bool nc : {false, true}) {
        for (int64_t d : {0, 1, -1}) {
            Tensor x = leaf64({3, 2, 4}, g, nc, -2, 2);
            RN_CHECK_GRADCHECK([d](const std::vector<Tensor>& in) { return softmax(in[0], d); },
                               std::vector<Tensor>{x});
            RN_CHECK_GRADCHECK([d](const std::vector<Tensor>& in) { return log_softmax(in[0], d); },
                               std::vector<Tensor>{x});
        }
    }
    Tensor v = leaf64({6}, g, true);  // 1-D, strided
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return softmax(in[0], 0); }, std::vector<Tensor>{v});
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, std::vector<Tensor>{v});
}

BOOST_AUTO_TEST_CASE(softmax_backward_matches_naive_on_large_rows) {
    // rows × cols > 16384: the kernels run threaded
    Generator g(13);
    for (bool log_ : {false, true}) {
        for (int64_t d : {-1, 0}) {
            Tensor x = leaf64({40, 700}, g, false, -4, 4);
            Tensor xr = x.detach().clone().requires_grad_();
            Tensor r = uniform({40, 700}, -1, 1, g, DType::f64);
            weighted_sum(log_ ? log_softmax(x, d) : softmax(x, d), r).backward();
            weighted_sum(log_ ? ref_log_softmax(xr, d) : ref_softmax(xr, d), r).backward();
            BOOST_TEST(rel_err(x.grad(), xr.grad()) < 1e-12);
            BOOST_TEST(max_abs_diff(xr.grad(), zeros_like(xr.grad())) > 1e-3);  // not a zero gradient
        }
    }
}

// ---------------------------------------------------------------- cross_entropy

BOOST_AUTO_TEST_CASE(cross_entropy_forward_matches_reference) {
    Generator g(21);
    Tensor logits = uniform({6, 5}, -3, 3, g, DType::f64);
    Tensor t = from_vector<int64_t>({0, 4, -100, 2, 2, -100}, {6});
    double ref = ref_cross_entropy(logits, t).item();
    Tensor loss = cross_entropy(logits, t);
    BOOST_TEST(loss.dim() == 0);
    BOOST_TEST(loss.item() == ref, boost::test_tools::tolerance(1e-13));
    BOOST_TEST(ref > 0.1);
    // hand value for one row: lse − x[t]
    {
        Tensor l1 = from_vector<double>({1.0, 2.0, 3.0}, {1, 3});
        double want = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 2.0;
        BOOST_TEST(cross_entropy(l1, from_vector<int64_t>({1}, {1})).item() == want,
                   boost::test_tools::tolerance(1e-14));
    }
    // i32 targets give the same loss; a custom ignore_index is honoured
    Tensor t32 = t.to(DType::i32);
    BOOST_TEST(cross_entropy(logits, t32).item() == ref, boost::test_tools::tolerance(1e-13));
    Tensor t7 = from_vector<int32_t>({0, 4, 7, 2, 2, 7}, {6});
    BOOST_TEST(cross_entropy(logits, t7, 7).item() == ref, boost::test_tools::tolerance(1e-13));
    // [B, T, C] logits with [B, T] or flat [B*T] targets
    Tensor l3 = logits.reshape({2, 3, 5});
    BOOST_TEST(cross_entropy(l3, t.reshape({2, 3})).item() == ref, boost::test_tools::tolerance(1e-13));
    BOOST_TEST(cross_entropy(l3, t).item() == ref, boost::test_tools::tolerance(1e-13));
    // non-contiguous logits
    Tensor lt = noncontiguous(logits);
    BOOST_TEST(!lt.is_contiguous());
    BOOST_TEST(cross_entropy(lt, t).item() == ref, boost::test_tools::tolerance(1e-13));
    // f32 and bf16 logits
    BOOST_TEST(cross_entropy(logits.to(DType::f32), t).item() == ref, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(cross_entropy(logits.to(DType::f32), t).dtype() == DType::f32);
    // bf16 logits: the loss comes in f32, exact to f32 rounding of the bf16 logits' loss
    Tensor lb = cross_entropy(logits.to(DType::bf16), t);
    BOOST_TEST(lb.dtype() == DType::f32);
    BOOST_TEST(lb.item() == ref_cross_entropy(logits.to(DType::bf16).to(DType::f64), t).item(),
               boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(cross_entropy_gradcheck) {
    Generator g(22);
    for (bool nc : {false, true}) {
        Tensor logits = leaf64({5, 4}, g, nc, -2, 2);
        Tensor t = from_vector<int64_t>({3, -100, 0, 1, -100}, {5});
        RN_CHECK_GRADCHECK([t](const std::vector<Tensor>& in) { return cross_entropy(in[0], t); },
                           std::vector<Tensor>{logits});
        Tensor t32 = from_vector<int32_t>({2, 2, 0, 3, 1}, {5});
        RN_CHECK_GRADCHECK([t32](const std::vector<Tensor>& in) { return cross_entropy(in[0], t32); },
                           std::vector<Tensor>{logits});
        // the loss composed with further ops: the upstream gradient is not 1
        RN_CHECK_GRADCHECK([t](const std::vector<Tensor>& in) { return exp(cross_entropy(in[0], t) * 0.7); },
                           std::vector<Tensor>{logits});
    }
    Tensor l3 = leaf64({2, 3, 4}, g, true, -2, 2);
    Tensor t3 = from_vector<int64_t>({1, -100, 3, 0, 2, 2}, {2, 3});
    RN_CHECK_GRADCHECK([t3](const std::vector<Tensor>& in) { return cross_entropy(in[0], t3); },
                       std::vector<Tensor>{l3});
    // ignored rows receive exactly zero gradient, others do not
    Tensor logits = leaf64({3, 4}, g);
    cross_entropy(logits, from_vector<int64_t>({1, -100, 2}, {3})).backward();
    auto gr = logits.grad().to_vector<double>();
    for (int c = 0; c < 4; ++c) {
        BOOST_TEST(gr[size_t(4 + c)] == 0.0);
        BOOST_TEST(std::abs(gr[size_t(c)]) > 1e-4);
    }
}

BOOST_AUTO_TEST_CASE(cross_entropy_backward_matches_naive_on_large_rows) {
    Generator g(23);
    const int64_t N = 64, C = 600;  // threaded path
    Tensor x = leaf64({N, C}, g, false, -6, 6);
    Tensor xr = x.detach().clone().requires_grad_();
    Tensor t = randint(0, C, {N}, g);
    auto tv = t.to_vector<int64_t>();
    for (int64_t i = 0; i < N; i += 5) tv[size_t(i)] = -100;
    t = from_vector<int64_t>(tv, {N});
    Tensor l = cross_entropy(x, t), lr = ref_cross_entropy(xr, t);
    BOOST_TEST(l.item() == lr.item(), boost::test_tools::tolerance(1e-13));
    (l * 3.0).backward();
    (lr * 3.0).backward();
    BOOST_TEST(rel_err(x.grad(), xr.grad()) < 1e-12);
    BOOST_TEST(max_abs_diff(x.grad(), zeros_like(x.grad())) > 1e-3);
}

BOOST_AUTO_TEST_CASE(cross_entropy_all_ignored_is_zero_with_zero_gradient) {
    Generator g(24);
    Tensor logits = leaf64({3, 4}, g);
    Tensor loss = cross_entropy(logits, full({3}, -100, DType::i64));
    BOOST_TEST(loss.item() == 0.0);
    loss.backward();
    BOOST_REQUIRE(logits.grad().defined());
    BOOST_TEST(max_abs_diff(logits.grad(), zeros({3, 4}, DType::f64)) == 0.0);
    BOOST_TEST(all_finite(logits.grad()));
}

BOOST_AUTO_TEST_CASE(stable_at_large_logits) {
    for (DType dt : {DType::f64, DType::f32}) {
        Tensor x = from_vector<double>({1000, -1000, 1000, -1000, -1000, -999}, {2, 3}).to(dt);
        Tensor y = softmax(x);
        BOOST_TEST(all_finite(y));
        auto yv = y.to_vector<double>();
        BOOST_TEST(yv[0] == 0.5, boost::test_tools::tolerance(1e-6));
        BOOST_TEST(yv[1] == 0.0);
        BOOST_TEST(yv[2] == 0.5, boost::test_tools::tolerance(1e-6));
        double e1 = 1.0 / (2.0 + std::exp(1.0));  // row 2: [-1000, -1000, -999] ~ [0, 0, 1]
        BOOST_TEST(yv[3] == e1, boost::test_tools::tolerance(1e-5));
        BOOST_TEST(yv[5] == std::exp(1.0) * e1, boost::test_tools::tolerance(1e-5));
        Tensor ly = log_softmax(x);
        BOOST_TEST(all_finite(ly));
        BOOST_TEST(ly.to_vector<double>()[0] == -std::log(2.0), boost::test_tools::tolerance(1e-6));
        BOOST_TEST(ly.to_vector<double>()[1] == -2000.0 - std::log(2.0), boost::test_tools::tolerance(1e-6));
        // cross-entropy: row 0 against its far-off class costs 2000 + log 2; row 1 against
        // class 0 costs lse − x₀ = (−999 + log(1 + 2/e)) + 1000
        Tensor xl = x.detach().requires_grad_();
        Tensor loss = cross_entropy(xl, from_vector<int64_t>({1, 0}, {2}));
        double want = ((2000.0 + std::log(2.0)) + (1.0 + std::log(1.0 + 2.0 * std::exp(-1.0)))) / 2.0;
        BOOST_TEST(loss.item() == want, boost::test_tools::tolerance(1e-6));
        loss.backward();
        BOOST_TEST(all_finite(xl.grad()));
        // d/dx of row 0 = (softmax − onehot)/2 = [0.25, −0.5, 0.25]
        auto gv = xl.grad().to_vector<double>();
        BOOST_TEST(gv[0] == 0.25, boost::test_tools::tolerance(1e-6));
        BOOST_TEST(gv[1] == -0.5, boost::test_tools::tolerance(1e-6));
        Tensor xs = x.detach().requires_grad_();
        weighted_sum(softmax(xs), from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).to(dt)).backward();
        BOOST_TEST(all_finite(xs.grad()));
    }
}

// ---------------------------------------------------------------- layer_norm / rms_norm

BOOST_AUTO_TEST_CASE(norm_forward_matches_reference) {
    Generator g(31);
    for (bool nc : {false, true}) {
        Tensor x = uniform({2, 3, 7}, -2, 3, g, DType::f64);  // mean ≠ 0 on purpose
        if (nc) x = noncontiguous(x);
        Tensor w = uniform({7}, 0.5, 1.5, g, DType::f64), b = uniform({7}, -1, 1, g, DType::f64);
        if (nc) w = noncontiguous(w);
        for (int mask = 0; mask < 4; ++mask) {
            Tensor wi = mask & 1 ? w : Tensor(), bi = mask & 2 ? b : Tensor();
            Tensor y = layer_norm(x, wi, bi, 1e-5);
            BOOST_TEST(y.shape() == x.shape());
            BOOST_TEST(max_abs_diff(y, ref_layer_norm(x, wi, bi, 1e-5)) < 1e-13);
        }
        BOOST_TEST(max_abs_diff(rms_norm(x, w, 1e-6), ref_rms_norm(x, w, 1e-6)) < 1e-13);
        BOOST_TEST(max_abs_diff(rms_norm(x), ref_rms_norm(x, Tensor(), 1e-6)) < 1e-13);
    }
    // f32 and bf16, and a large mean (two-pass variance keeps f32 accurate)
    Tensor x = uniform({5, 64}, -1, 1, g, DType::f64) + 1000.0;
    BOOST_TEST(max_abs_diff(layer_norm(x.to(DType::f32)).to(DType::f64), layer_norm(x.to(DType::f32).to(DType::f64))) <
               1e-5);
    BOOST_TEST(max_abs_diff(rms_norm(x.to(DType::f32)).to(DType::f64), rms_norm(x)) < 1e-6);
    Tensor xb = uniform({5, 64}, -2, 2, g, DType::f64).to(DType::bf16);
    BOOST_TEST(max_abs_diff(layer_norm(xb).to(DType::f64), layer_norm(xb.to(DType::f64))) < 3e-2);
    BOOST_TEST(max_abs_diff(rms_norm(xb).to(DType::f64), rms_norm(xb.to(DType::f64))) < 3e-2);
}

BOOST_AUTO_TEST_CASE(layer_norm_gradcheck) {
    Generator g(32);
    for (bool nc : {false, true}) {
        Tensor x = leaf64({3, 5}, g, nc, -2, 2);
        Tensor w = leaf64({5}, g, nc, 0.5, 1.5), b = leaf64({5}, g, nc);
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); },
                           (std::vector<Tensor>{x, w, b}));
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return layer_norm(in[0]); }, std::vector<Tensor>{x});
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1]); },
                           (std::vector<Tensor>{x, w}));
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), in[1]); },
                           (std::vector<Tensor>{x, b}));
    }
    // 3-D input; only the parameters need gradients (x is a plain tensor)
    Tensor x3 = uniform({2, 3, 4}, -1, 1, g, DType::f64);
    Tensor w = leaf64({4}, g), b = leaf64({4}, g);
    RN_CHECK_GRADCHECK([x3](const std::vector<Tensor>& in) { return layer_norm(x3, in[0], in[1]); },
                       (std::vector<Tensor>{w, b}));
    Tensor x3l = leaf64({2, 3, 4}, g, true);
    RN_CHECK_GRADCHECK([w](const std::vector<Tensor>& in) { return layer_norm(in[0], w.detach()); },
                       std::vector<Tensor>{x3l});
}

// ---------------------------------------------------------------- rms_norm_linear

BOOST_AUTO_TEST_CASE(rms_norm_linear_gradcheck) {
    Generator g(61);
    for (bool nc : {false, true}) {
        Tensor x = leaf64({2, 3, 6}, g, nc), w = leaf64({6}, g, false, 0.5, 1.5);
        Tensor w1 = leaf64({4, 6}, g, nc), w2 = leaf64({5, 6}, g, nc);
        // a weighted sum of both outputs, so each product's gradient reaches x
        RN_CHECK_GRADCHECK(
            [](const std::vector<Tensor>& in) {
                auto y = rms_norm_linear(in[0], in[1], {in[2], in[3]}, 1e-6);
                return sum(y[0] * 0.7) + sum(y[1] * y[1]);
            },
            (std::vector<Tensor>{x, w, w1, w2}));
        RN_CHECK_GRADCHECK(  // no norm weight, one product
            [](const std::vector<Tensor>& in) { return rms_norm_linear(in[0], Tensor(), {in[1]}, 1e-6)[0]; },
            (std::vector<Tensor>{x, w1}));
    }
}

// against rms_norm then one matmul per weight: outputs bit for bit (the same kernels), every
// gradient to rounding (the products' input gradients are summed in one buffer); threaded
// sizes; an output left unused; frozen weights get no gradient
BOOST_AUTO_TEST_CASE(rms_norm_linear_equals_the_ops) {
    Generator g(62);
    for (DType dt : {DType::f32, DType::f64}) {
        const double tol = dt == DType::f64 ? 1e-13 : 2e-6;
        Tensor x0 = uniform({3, 100, 64}, -2, 2, g, dt), nw0 = uniform({64}, 0.5, 1.5, g, dt);
        Tensor a0 = uniform({48, 64}, -1, 1, g, dt), b0 = uniform({80, 64}, -1, 1, g, dt), c0 = uniform({16, 64}, -1, 1, g, dt);
        Tensor ra = uniform({3, 100, 48}, -1, 1, g, dt), rb = uniform({3, 100, 80}, -1, 1, g, dt);
        auto leaf = [](const Tensor& t) { return t.detach().clone().requires_grad_(); };
        Tensor x = leaf(x0), nw = leaf(nw0), a = leaf(a0), b = leaf(b0), c = leaf(c0);
        Tensor x2 = leaf(x0), nw2 = leaf(nw0), a2 = leaf(a0), b2 = leaf(b0), c2 = leaf(c0);
        auto y = rms_norm_linear(x, nw, {a, b, c}, 1e-6);
        Tensor n = rms_norm(x2, nw2, 1e-6);
        Tensor ya = matmul(n, a2.t()), yb = matmul(n, b2.t()), yc = matmul(n, c2.t());
        BOOST_TEST(max_abs_diff(y[0], ya) == 0.0);
        BOOST_TEST(max_abs_diff(y[1], yb) == 0.0);
        BOOST_TEST(max_abs_diff(y[2], yc) == 0.0);
        (sum(y[0] * ra) + sum(y[1] * rb)).backward();  // y[2] unused: a zero gradient for c
        (sum(ya * ra) + sum(yb * rb) + sum(yc * 0.0)).backward();
        BOOST_TEST(rel_err(x.grad(), x2.grad()) < tol);
        BOOST_TEST(rel_err(nw.grad(), nw2.grad()) < tol);
        BOOST_TEST(rel_err(a.grad(), a2.grad()) < tol);
        BOOST_TEST(rel_err(b.grad(), b2.grad()) < tol);
        BOOST_TEST(max_abs_diff(c.grad(), zeros_like(c.grad())) == 0.0);
        BOOST_TEST(max_abs_diff(x.grad(), zeros_like(x.grad())) > 1e-3);
    }
    Tensor x = uniform({4, 8}, -1, 1, g, DType::f64).requires_grad_(), w = uniform({3, 8}, -1, 1, g, DType::f64);
    sum(rms_norm_linear(x, Tensor(), {w})[0]).backward();
    BOOST_TEST(x.grad().defined());
    BOOST_TEST(!w.grad().defined());
    RN_CHECK_THROWS_WITH(rms_norm_linear(x, Tensor(), {uniform({3, 7}, -1, 1, g, DType::f64)}),
                         "weight 0 has shape [3, 7], expected [m, 8]");
    RN_CHECK_THROWS_WITH(rms_norm_linear(x, Tensor(), {}), "at least one projection weight");
}

BOOST_AUTO_TEST_CASE(rms_norm_gradcheck) {
    Generator g(33);
    for (bool nc : {false, true}) {
        Tensor x = leaf64({4, 3}, g, nc, -2, 2);
        Tensor w = leaf64({3}, g, nc, 0.5, 1.5);
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); },
                           (std::vector<Tensor>{x, w}));
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return rms_norm(in[0]); }, std::vector<Tensor>{x});
    }
    Tensor x3 = uniform({2, 3, 5}, -1, 1, g, DType::f64);
    Tensor w = leaf64({5}, g);
    RN_CHECK_GRADCHECK([x3](const std::vector<Tensor>& in) { return rms_norm(x3, in[0]); }, std::vector<Tensor>{w});
}

BOOST_AUTO_TEST_CASE(add_rms_norm_is_the_add_then_the_norm) {
    Generator g(34);
    Tensor x = uniform({5, 12}, -2, 2, g, DType::f64), h = uniform({5, 12}, -2, 2, g, DType::f64);
    Tensor w = uniform({12}, 0.5, 1.5, g, DType::f64);
    auto [sum, out] = add_rms_norm(x, h, w, 1e-6);
    BOOST_TEST(max_abs_diff(sum, x + h) == 0.0);
    BOOST_TEST(max_abs_diff(out, rms_norm(x + h, w, 1e-6)) == 0.0);
    // differentiable in x, h and the weight through both outputs
    Tensor xl = leaf64({3, 4}, g, false, -2, 2), hl = leaf64({3, 4}, g, false, -2, 2), wl = leaf64({4}, g, false, 0.5, 1.5);
    auto f = [](const std::vector<Tensor>& in) {
        const auto so = add_rms_norm(in[0], in[1], in[2]);
        return so.second * 2.0 + so.first;
    };
    RN_CHECK_GRADCHECK(f, (std::vector<Tensor>{xl, hl, wl}));
    BOOST_CHECK_EXCEPTION(add_rms_norm(x, h.narrow(1, 0, 6), w), Error, [](const Error& e) {
        return std::string(e.what()).find("same shape") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(gated_rms_norm_is_the_norm_then_the_gate) {
    Generator g(35);
    Tensor x = uniform({6, 10}, -2, 2, g, DType::f64), gate = uniform({6, 10}, -3, 3, g, DType::f64);
    Tensor want = rms_norm(x, Tensor(), 1e-6) * gate / (exp(-gate) + 1.0);  // silu(gate) ⊙ norm, spelled out
    BOOST_TEST(max_abs_diff(gated_rms_norm(x, gate, 1e-6), want) < 1e-14);
    Tensor xl = leaf64({3, 5}, g, false, -2, 2), gl = leaf64({3, 5}, g, false, -2, 2);
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return gated_rms_norm(in[0], in[1]); },
                       (std::vector<Tensor>{xl, gl}));
    BOOST_CHECK_EXCEPTION(gated_rms_norm(x, gate.narrow(1, 0, 5)), Error, [](const Error& e) {
        return std::string(e.what()).find("same shape") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(norm_backward_matches_naive_on_large_rows) {
    // rows × cols > 16384: threaded rows and the per-thread dw/db partial sums
    Generator g(34);
    const Shape s{8, 37, 96};
    Tensor r = uniform(s, -1, 1, g, DType::f64);
    for (bool rms : {false, true}) {
        Tensor x = leaf64(s, g, true, -2, 3), w = leaf64({96}, g, false, 0.5, 1.5), b = leaf64({96}, g);
        Tensor xr = x.detach().clone().requires_grad_(), wr = w.detach().clone().requires_grad_(),
               br = b.detach().clone().requires_grad_();
        if (rms) {
            weighted_sum(rms_norm(x, w), r).backward();
            weighted_sum(ref_rms_norm(xr, wr, 1e-6), r).backward();
        } else {
            weighted_sum(layer_norm(x, w, b), r).backward();
            weighted_sum(ref_layer_norm(xr, wr, br, 1e-5), r).backward();
            BOOST_TEST(rel_err(b.grad(), br.grad()) < 1e-12);
        }
        BOOST_TEST(rel_err(x.grad(), xr.grad()) < 1e-11);
        BOOST_TEST(rel_err(w.grad(), wr.grad()) < 1e-12);
        BOOST_TEST(max_abs_diff(x.grad(), zeros_like(x.grad())) > 1e-3);
        BOOST_TEST(max_abs_diff(w.grad(), zeros_like(w.grad())) > 1e-3);
    }
    // f32 fused backward against the f64 one
    Tensor x = leaf64({64, 300}, g), w = leaf64({300}, g);
    Tensor x32 = x.detach().to(DType::f32).requires_grad_(), w32 = w.detach().to(DType::f32).requires_grad_();
    Tensor r2 = uniform({64, 300}, -1, 1, g, DType::f64);
    weighted_sum(rms_norm(x, w), r2).backward();
    weighted_sum(rms_norm(x32, w32), r2.to(DType::f32)).backward();
    BOOST_TEST(rel_err(x32.grad(), x.grad()) < 1e-5);
    BOOST_TEST(rel_err(w32.grad(), w.grad()) < 1e-5);
}

// ---------------------------------------------------------------- errors

BOOST_AUTO_TEST_CASE(errors_say_what_came) {
    Tensor logits = zeros({4, 5}, DType::f32);
    RN_CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 1, 7, 2}, {4})), "target 7 at position 2");
    RN_CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 1, 7, 2}, {4})), "out of range for 5 classes");
    RN_CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int32_t>({0, -3, 1, 2}, {4})), "target -3 at position 1");
    RN_CHECK_THROWS_WITH(cross_entropy(logits, from_vector<int64_t>({0, 5, 1, 2}, {4})), "expected 0 <= target < 5");
    RN_CHECK_THROWS_WITH(cross_entropy(zeros({2, 2, 5}), from_vector<int64_t>({0, 1, 2, 9}, {2, 2})),
                         "target 9 at position 3 (index [1, 1])");
    RN_CHECK_THROWS_WITH(cross_entropy(logits, zeros({4}, DType::f32)),
                         "expected integer targets (i32 or i64), got f32");
    RN_CHECK_THROWS_WITH(cross_entropy(logits, zeros({3}, DType::i64)),
                         "targets of shape [3] do not match logits of shape [4, 5]");
    RN_CHECK_THROWS_WITH(cross_entropy(zeros({4}, DType::i64), zeros({1}, DType::i64)), "expected a floating tensor");

    Tensor x = zeros({2, 8});
    RN_CHECK_THROWS_WITH(layer_norm(x, zeros({5})), "layer_norm: weight has shape [5], expected [8]");
    RN_CHECK_THROWS_WITH(layer_norm(x, zeros({8}), zeros({2, 8})), "layer_norm: bias has shape [2, 8], expected [8]");
    RN_CHECK_THROWS_WITH(rms_norm(x, zeros({7})), "rms_norm: weight has shape [7], expected [8]");
    RN_CHECK_THROWS_WITH(rms_norm(x, zeros({8}, DType::f64)), "weight has dtype f64 but x has f32");
    RN_CHECK_THROWS_WITH(rms_norm(x, Tensor(), -1.0), "eps must be >= 0");
    RN_CHECK_THROWS_WITH(softmax(x, 2), "dim 2");
    RN_CHECK_THROWS_WITH(softmax(zeros({3}, DType::i64)), "expected a floating tensor");
}

BOOST_AUTO_TEST_SUITE_END()
