// tests/test_elementwise.cpp — pointwise ops and reductions: f64 gradcheck on random
// shapes with broadcasting and non-contiguous inputs, values against std:: math, and the
// errors for mismatched shapes and dtypes.
#include <boost/test/unit_test.hpp>

#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {
using UFn = Tensor (*)(const Tensor&);
struct UnaryCase {
    const char* name;
    UFn f;
    double (*ref)(double);
    double lo, hi;  // input range where the op is smooth
};

double ref_sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double ref_silu(double x) { return x / (1 + std::exp(-x)); }
double ref_gelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double ref_relu(double x) { return x > 0 ? x : 0; }
double ref_rsqrt(double x) { return 1 / std::sqrt(x); }
double ref_neg(double x) { return -x; }
double ref_exp(double x) { return std::exp(x); }
double ref_log(double x) { return std::log(x); }
double ref_sqrt(double x) { return std::sqrt(x); }
double ref_abs(double x) { return std::abs(x); }
double ref_tanh(double x) { return std::tanh(x); }

const UnaryCase unary_cases[] = {
    {"neg", rn::neg, ref_neg, -2, 2},        {"exp", rn::exp, ref_exp, -2, 2},
    {"log", rn::log, ref_log, 0.2, 3},       {"sqrt", rn::sqrt, ref_sqrt, 0.2, 3},
    {"rsqrt", rn::rsqrt, ref_rsqrt, 0.2, 3}, {"abs", rn::abs, ref_abs, 0.1, 2},
    {"tanh", rn::tanh, ref_tanh, -2, 2},     {"sigmoid", rn::sigmoid, ref_sigmoid, -4, 4},
    {"silu", rn::silu, ref_silu, -4, 4},     {"gelu", rn::gelu, ref_gelu, -3, 3},
    {"relu", rn::relu, ref_relu, 0.1, 2},
};
}  // namespace

BOOST_AUTO_TEST_SUITE(elementwise)

BOOST_AUTO_TEST_CASE(unary_values_and_gradcheck) {
    Generator g(11);
    for (const auto& c : unary_cases) {
        BOOST_TEST_CONTEXT(c.name) {
            // abs and relu are checked away from their kink on both sides
            double lo = c.lo, hi = c.hi;
            Tensor x = uniform({3, 5}, lo, hi, g, DType::f64);
            if (std::string(c.name) == "abs" || std::string(c.name) == "relu")
                x = x * (randint(0, 2, {3, 5}, g).to(DType::f64) * 2.0 - 1.0);
            auto xv = x.to_vector<double>();
            auto yv = c.f(x).to_vector<double>();
            for (size_t i = 0; i < xv.size(); ++i) BOOST_TEST(std::abs(yv[i] - c.ref(xv[i])) <= 1e-12 * (1 + std::abs(c.ref(xv[i]))));
            for (bool nc : {false, true}) {
                Tensor leaf = nc ? noncontiguous(x).requires_grad_() : x.detach().clone().requires_grad_();
                RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return c.f(in[0]); }, std::vector<Tensor>{leaf});
            }
            // f32 agrees with f64 to float rounding
            Tensor y32 = c.f(x.to(DType::f32));
            BOOST_TEST(max_abs_diff(y32, c.f(x)) < 1e-5 * (1 + std::abs(yv[0])) * 10);
        }
    }
}

BOOST_AUTO_TEST_CASE(binary_broadcasting_gradcheck) {
    Generator g(12);
    using BFn = Tensor (*)(const Tensor&, const Tensor&);
    struct Case { const char* name; BFn f; };
    const Case cases[] = {{"add", rn::add}, {"sub", rn::sub}, {"mul", rn::mul}, {"div", rn::div},
                          {"pow", static_cast<BFn>(rn::pow)}};
    const std::pair<Shape, Shape> shapes[] = {
        {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{5}, {}}, {{1, 3}, {2, 1}}};
    for (const auto& c : cases)
        for (const auto& sh : shapes)
            for (bool nc : {false, true}) {
                BOOST_TEST_CONTEXT(c.name << " " << sh.first << " x " << sh.second << (nc ? " noncontig" : "")) {
                    // positive inputs keep div and pow smooth
                    Tensor a = leaf64(sh.first, g, nc && sh.first.size() > 0, 0.5, 2.0);
                    Tensor b = leaf64(sh.second, g, nc && sh.second.size() > 0, 0.5, 2.0);
                    RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return c.f(in[0], in[1]); },
                                       (std::vector<Tensor>{a, b}));
                }
            }
}

BOOST_AUTO_TEST_CASE(binary_values) {
    Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor b = from_vector<double>({10, 20, 30}, {3});
    BOOST_TEST((a + b).to_vector<double>() == std::vector<double>({11, 22, 33, 14, 25, 36}), boost::test_tools::per_element());
    BOOST_TEST((a.t() * from_vector<double>({1, -1}, {2})).contiguous().to_vector<double>() ==
                   std::vector<double>({1, -4, 2, -5, 3, -6}), boost::test_tools::per_element());
    BOOST_TEST((b / a).to_vector<double>()[3] == 2.5);
    BOOST_TEST(rn::pow(a, 2.0).to_vector<double>()[5] == 36.0);
    BOOST_TEST((2.0 - a).to_vector<double>()[0] == 1.0);
    BOOST_TEST((a / 4.0).to_vector<double>()[1] == 0.5);
    // integer arithmetic stays integer
    Tensor i = from_vector<int64_t>({7, -3}, {2});
    BOOST_TEST((i + i).to_vector<int64_t>() == std::vector<int64_t>({14, -6}), boost::test_tools::per_element());
    // bf16 computes through float and rounds once
    Tensor h = from_vector<float>({1.5f, 2.25f}, {2}).to(DType::bf16);
    BOOST_TEST((h * h).to_vector<float>()[1] == float(bf16(2.25f * 2.25f)));
}

BOOST_AUTO_TEST_CASE(scalar_ops_gradcheck) {
    Generator g(13);
    Tensor x = leaf64({4, 3}, g, true, 0.5, 2.0);
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return rn::pow(in[0], 2.5) * 3.0 - 1.0 / (in[0] + 1.0); },
                       std::vector<Tensor>{x});
}

BOOST_AUTO_TEST_CASE(binary_errors) {
    RN_CHECK_THROWS_WITH(add(zeros({2, 3}), zeros({4})), "add: shapes [2, 3] and [4] cannot be broadcast");
    RN_CHECK_THROWS_WITH(mul(zeros({2}), zeros({2}, DType::f64)), "mul: dtypes differ: f32 vs f64");
    RN_CHECK_THROWS_WITH(exp(zeros({2}, DType::i64)), "exp: expected a floating tensor");
    RN_CHECK_THROWS_WITH(add(Tensor(), zeros({2})), "undefined");
}

BOOST_AUTO_TEST_CASE(reductions_values) {
    Tensor a = arange(0, 24, 1, DType::f64).reshape({2, 3, 4});
    BOOST_TEST(sum(a).item() == 276.0);
    BOOST_TEST(mean(a).item() == 11.5);
    BOOST_TEST(max(a).item() == 23.0);
    Tensor s = sum(a, {1});
    BOOST_TEST(s.shape() == Shape({2, 4}));
    BOOST_TEST(s.to_vector<double>()[0] == 0 + 4 + 8);
    Tensor sk = sum(a, {0, 2}, true);
    BOOST_TEST(sk.shape() == Shape({1, 3, 1}));
    BOOST_TEST(sk.to_vector<double>()[1] == (4 + 5 + 6 + 7) + (16 + 17 + 18 + 19));
    Tensor m = max(a, {-1});
    BOOST_TEST(m.to_vector<double>()[5] == 23.0);
    BOOST_TEST(mean(a, {2}, true).shape() == Shape({2, 3, 1}));
    BOOST_TEST(sum(a.t(), {2}).to_vector<double>()[1] == sum(a, {1}).to_vector<double>()[1]);
    // f32 sums of many values keep precision (double accumulation)
    Tensor big = full({1 << 20}, 0.1, DType::f32);
    BOOST_TEST(std::abs(sum(big).item() - 104857.6) < 0.05);
    RN_CHECK_THROWS_WITH(sum(a, {3}), "dim 3 out of range");
    RN_CHECK_THROWS_WITH(sum(a, {1, -2}), "given twice");
}

BOOST_AUTO_TEST_CASE(reductions_gradcheck) {
    Generator g(14);
    for (bool nc : {false, true}) {
        Tensor x = leaf64({3, 4, 5}, g, nc);
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return sum(in[0], {1}); }, std::vector<Tensor>{x});
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return mean(in[0], {0, 2}, true); }, std::vector<Tensor>{x});
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return mean(in[0]); }, std::vector<Tensor>{x});
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return max(in[0], {2}); }, std::vector<Tensor>{x});
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return max(in[0], {0, 1}, true); }, std::vector<Tensor>{x});
        RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return max(in[0]) * sum(in[0]); }, std::vector<Tensor>{x});
    }
}

BOOST_AUTO_TEST_CASE(views_and_casts_gradcheck) {
    Generator g(15);
    Tensor x = leaf64({2, 3, 4}, g, true);
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) {
        return in[0].permute({2, 0, 1}).reshape({4, 6}).narrow(1, 1, 4).contiguous() * 2.0;
    }, std::vector<Tensor>{x});
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) {
        return in[0].flatten().unsqueeze(0).expand({3, 24}).narrow(0, 1, 2) * in[0].flatten().unsqueeze(0);
    }, std::vector<Tensor>{x});
    // through f32 and back: the gradient is cast back to f64
    Tensor y = ones({3}, DType::f64).requires_grad_();
    sum(y.to(DType::f32) * 2.0).backward();
    BOOST_TEST(y.grad().dtype() == DType::f64);
    BOOST_TEST(y.grad().to_vector<double>()[2] == 2.0);
}

BOOST_AUTO_TEST_SUITE_END()
