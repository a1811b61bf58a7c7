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

BOOST_AUTO_TEST_SUITE_END()
