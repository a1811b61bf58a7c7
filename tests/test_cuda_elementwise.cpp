// tests/test_cuda_elementwise.cpp — pointwise ops, reductions and core copies on CUDA
// against the CPU on fresh random inputs: outputs and gradients, contiguous and
// non-contiguous, odd sizes (1, 7, 4097), f32 (tolerance 1e-5 relative), f64 (1e-13) and
// bf16 (the CPU computes on the same bf16-rounded inputs in f32; tolerance 1e-2 relative,
// about two bf16 ulps).
#include <boost/test/unit_test.hpp>

#include "cuda_test_util.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);

double tol_for(DType dt) { return dt == DType::bf16 ? 1e-2 : dt == DType::f32 ? 1e-5 : 1e-13; }

// x on the CPU in the compare dtype (bf16 inputs are compared through f32)
Tensor cpu_ref_input(const Tensor& x) { return x.dtype() == DType::bf16 ? x.to(DType::f32) : x; }

void check_close(const Tensor& got_gpu, const Tensor& want_cpu, DType dt, const std::string& what) {
    Tensor got = got_gpu.to(Device::cpu()).to(DType::f64);
    Tensor want = want_cpu.to(DType::f64);
    auto v = got.to_vector<double>();
    for (double e : v) BOOST_REQUIRE_MESSAGE(std::isfinite(e), what << ": non-finite value from CUDA");
    double e = rel_err(got, want);
    BOOST_TEST(e <= tol_for(dt), what << ": relative error " << e << " > " << tol_for(dt));
}

using UFn = Tensor (*)(const Tensor&);
struct U { const char* name; UFn f; double lo, hi; };
const U unary_ops[] = {{"neg", rn::neg, -2, 2},       {"exp", rn::exp, -2, 2},      {"log", rn::log, 0.2, 3},
                       {"sqrt", rn::sqrt, 0.2, 3},    {"rsqrt", rn::rsqrt, 0.2, 3}, {"abs", rn::abs, -2, 2},
                       {"tanh", rn::tanh, -2, 2},     {"sigmoid", rn::sigmoid, -4, 4}, {"silu", rn::silu, -4, 4},
                       {"gelu", rn::gelu, -3, 3},     {"relu", rn::relu, -2, 2}};
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_elementwise)

BOOST_AUTO_TEST_CASE(unary_forward_and_backward_match_cpu) {
    Generator g(101);
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (int64_t n : {int64_t(1), int64_t(7), int64_t(4097), int64_t(1) << 20})
            for (const auto& op : unary_ops)
                for (bool nc : {false, true}) {
                    BOOST_TEST_CONTEXT(op.name << " " << dt << " n=" << n << (nc ? " noncontig" : "")) {
                        Tensor x = uniform({n}, op.lo, op.hi, g, DType::f32).to(dt);
                        Tensor dy = randn({n}, g, DType::f32).to(dt);
                        Tensor xc = cpu_ref_input(x).detach().requires_grad_();
                        Tensor yc = op.f(xc);
                        yc.backward(cpu_ref_input(dy));
                        Tensor xg = x.to(gpu);
                        if (nc) xg = noncontiguous(xg);
                        xg = xg.detach().requires_grad_();
                        Tensor yg = op.f(xg);
                        BOOST_TEST(yg.is_cuda());
                        yg.backward(dy.to(gpu));
                        check_close(yg, yc, dt, "forward");
                        check_close(xg.grad(), xc.grad(), dt, "gradient");
                    }
                }
}

BOOST_AUTO_TEST_CASE(binary_broadcasting_matches_cpu) {
    Generator g(102);
    using BFn = Tensor (*)(const Tensor&, const Tensor&);
    const std::pair<const char*, BFn> ops[] = {{"add", rn::add}, {"sub", rn::sub}, {"mul", rn::mul},
                                               {"div", rn::div}, {"pow", static_cast<BFn>(rn::pow)}};
    const std::pair<Shape, Shape> shapes[] = {{{4097}, {4097}}, {{7, 4097}, {4097}}, {{3, 1, 5}, {4, 1}},
                                              {{33, 65}, {}},   {{1}, {1}},          {{64, 1000}, {64, 1}}};
    for (DType dt : {DType::f32, DType::bf16})
        for (const auto& [name, f] : ops)
            for (const auto& [sa, sb] : shapes) {
                BOOST_TEST_CONTEXT(name << " " << dt << " " << sa << " x " << sb) {
                    Tensor a = uniform(sa, 0.5, 2.0, g, DType::f32).to(dt);
                    Tensor b = uniform(sb, 0.5, 2.0, g, DType::f32).to(dt);
                    Tensor ac = cpu_ref_input(a).detach().requires_grad_();
                    Tensor bc = cpu_ref_input(b).detach().requires_grad_();
                    Tensor yc = f(ac, bc);
                    Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                    yc.backward(cpu_ref_input(dy));
                    Tensor ag = a.to(gpu).detach().requires_grad_(), bg = b.to(gpu).detach().requires_grad_();
                    Tensor yg = f(ag, bg);
                    yg.backward(dy.to(gpu));
                    check_close(yg, yc, dt, "forward");
                    check_close(ag.grad(), ac.grad(), dt, "grad a");
                    check_close(bg.grad(), bc.grad(), dt, "grad b");
                }
            }
    // transposed operand: the strided path
    Tensor a = randn({37, 53}, g), b = randn({53, 37}, g);
    check_close(add(a.to(gpu), b.to(gpu).t()), add(a, b.t()), DType::f32, "strided add");
    // integers
    Tensor i = randint(-50, 50, {1001}, g, DType::i64);
    BOOST_TEST(max_abs_diff(mul(i.to(gpu), i.to(gpu)).to(Device::cpu()), mul(i, i)) == 0.0);
}

BOOST_AUTO_TEST_CASE(reductions_match_cpu) {
    Generator g(103);
    const Shape shapes[] = {{1}, {7}, {4097}, {3, 4097}, {4097, 3}, {64, 33, 7}, {1 << 22}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes) {
            BOOST_TEST_CONTEXT(dt << " " << s) {
                Tensor x = randn(s, g, DType::f32).to(dt);
                Tensor xc = cpu_ref_input(x);
                Tensor xg = x.to(gpu);
                // sums in f32 over 4M elements: CPU accumulates in double, GPU in fp32 trees
                DType cmp = dt == DType::f32 ? DType::bf16 : dt;  // looser for long f32 sums
                check_close(sum(xg), sum(xc), s.size() == 1 && s[0] > 100000 ? cmp : dt, "sum all");
                check_close(max(xg), max(xc), dt, "max all");
                check_close(mean(xg, {-1}), mean(xc, {-1}), dt, "mean last");
                check_close(sum(xg, {0}, true), sum(xc, {0}, true), dt, "sum first");
                check_close(max(xg, {-1}), max(xc, {-1}), dt, "max last");
                // max backward goes to the same (first) argmax
                Tensor lc = xc.detach().requires_grad_();
                Tensor lg = xg.detach().requires_grad_();
                sum(max(lc, {0}) * 3.0).backward();
                sum(max(lg, {0}) * 3.0).backward();
                check_close(lg.grad(), lc.grad(), dt, "max grad");
            }
        }
    // NaN wins in max, as on the CPU
    Tensor n = from_vector<float>({1, NAN, 3}, {3});
    BOOST_TEST(std::isnan(max(n.to(gpu)).item()));
}

BOOST_AUTO_TEST_CASE(mean_and_views_gradients_on_device) {
    Generator g(104);
    Tensor x = randn({23, 31}, g);
    Tensor xc = x.detach().requires_grad_(), xg = x.to(gpu).detach().requires_grad_();
    auto f = [](const Tensor& t) { return sum(mean(t.t().narrow(0, 3, 20), {1}) * t.select(1, 2).narrow(0, 0, 20)); };
    f(xc).backward();
    f(xg).backward();
    BOOST_TEST(xg.grad().is_cuda());
    check_close(xg.grad(), xc.grad(), DType::f32, "composite gradient");
}

BOOST_AUTO_TEST_SUITE_END()
