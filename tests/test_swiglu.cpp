// tests/test_swiglu.cpp — the fused silu_mul op: f64 gradcheck (both inputs, non-contiguous
// too), equality with the unfused silu(a) * b in f32 and bf16, gradients to one input only,
// and the shape/dtype errors.
#include <boost/test/unit_test.hpp>

#include "test_util.h"

using namespace rn;
using namespace rn::test;

BOOST_AUTO_TEST_SUITE(swiglu)

BOOST_AUTO_TEST_CASE(silu_mul_gradcheck) {
    Generator g(3);
    Tensor a = leaf64({3, 7}, g, false, -4, 4), b = leaf64({3, 7}, g, true);
    auto f = [](const std::vector<Tensor>& in) { return silu_mul(in[0], in[1]); };
    RN_CHECK_GRADCHECK(f, (std::vector<Tensor>{a, b}));
}

BOOST_AUTO_TEST_CASE(silu_mul_equals_silu_times_b) {
    Generator g(4);
    Tensor a = uniform({5, 4097}, -30, 30, g), b = randn({5, 4097}, g);
    BOOST_TEST(max_abs_diff(silu_mul(a, b), silu(a) * b) < 1e-5);
    Tensor ab = a.to(DType::bf16), bb = b.to(DType::bf16);
    BOOST_TEST(max_abs_diff(silu_mul(ab, bb), (silu(ab) * bb)) < 0.25);  // bf16: both round, differently
    // gradients: only b needs one
    Tensor bl = b.clone().requires_grad_();
    Tensor w = randn({5, 4097}, g);
    sum(silu_mul(a, bl) * w).backward();
    BOOST_TEST(max_abs_diff(bl.grad(), silu(a) * w) < 1e-5);
}

BOOST_AUTO_TEST_CASE(silu_mul_errors) {
    Generator g(5);
    Tensor a = randn({2, 3}, g);
    RN_CHECK_THROWS_WITH(silu_mul(a, randn({3, 2}, g)), "same shape");
    RN_CHECK_THROWS_WITH(silu_mul(a, randn({2, 3}, g, DType::f64)), "silu_mul");
    RN_CHECK_THROWS_WITH(silu_mul(full({2}, 1, DType::i64), full({2}, 1, DType::i64)), "floating");
}

BOOST_AUTO_TEST_CASE(swiglu_linear_gradcheck) {
    Generator g(75);
    for (bool nc : {false, true}) {
        Tensor a = leaf64({2, 3, 5}, g, nc), b = leaf64({2, 3, 5}, g, nc), w = leaf64({4, 5}, g, nc);
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return swiglu_linear(in[0], in[1], in[2]); },
                           (std::vector<Tensor>{a, b, w}));
    }
}

// against matmul(silu_mul(a, b), W.t()), the two ops it fuses: y, da, db bit for bit, dW to
// rounding; sizes past kParallelMin (the threaded kernels); W frozen gets no gradient
BOOST_AUTO_TEST_CASE(swiglu_linear_equals_the_two_ops) {
    Generator g(76);
    for (DType dt : {DType::f32, DType::f64}) {
        Tensor a0 = uniform({4, 130, 96}, -3, 3, g, dt), b0 = uniform({4, 130, 96}, -1, 1, g, dt);
        Tensor w0 = uniform({40, 96}, -1, 1, g, dt), r = uniform({4, 130, 40}, -1, 1, g, dt);
        auto leaf = [](const Tensor& t) { return t.detach().clone().requires_grad_(); };
        Tensor a = leaf(a0), b = leaf(b0), w = leaf(w0), a2 = leaf(a0), b2 = leaf(b0), w2 = leaf(w0);
        Tensor y = swiglu_linear(a, b, w), y2 = matmul(silu_mul(a2, b2), w2.t());
        BOOST_TEST(max_abs_diff(y, y2) == 0.0);
        sum(y * r).backward();
        sum(y2 * r).backward();
        BOOST_TEST(max_abs_diff(a.grad(), a2.grad()) == 0.0);
        BOOST_TEST(max_abs_diff(b.grad(), b2.grad()) == 0.0);
        BOOST_TEST(rel_err(w.grad(), w2.grad()) < (dt == DType::f64 ? 1e-14 : 1e-6));
        BOOST_TEST(max_abs_diff(a.grad(), zeros_like(a.grad())) > 1e-3);  // not a zero gradient
    }
    Tensor a = uniform({3, 8}, -1, 1, g, DType::f64).requires_grad_(), b = uniform({3, 8}, -1, 1, g, DType::f64);
    Tensor w = uniform({2, 8}, -1, 1, g, DType::f64);
    sum(swiglu_linear(a, b, w)).backward();
    BOOST_TEST(a.grad().defined());
    BOOST_TEST(!w.grad().defined());
    RN_CHECK_THROWS_WITH(swiglu_linear(a, b, uniform({2, 7}, -1, 1, g, DType::f64)), "W must be [m, 8]");
}

BOOST_AUTO_TEST_SUITE_END()
