// tests/test_cuda_elementwise.cpp — pointwise ops, reductions and core copies on CUDA
// against the CPU on fresh random inputs: outputs and gradients, contiguous and
// non-contiguous, misaligned starts (a view one element into a buffer), odd sizes (1, 7,
// 4097), every kernel path (vector / scalar, compiled-per-op unary, the [R, D] rows kernel
// of broadcasts, warp-per-row / split-row / column reductions), f32, f64 and bf16 (the CPU
// computes on the same bf16-rounded inputs in f32). Tolerances: tol_for in cuda_test_util.h
// (f32 1e-5, bf16 1e-2 relative), f64 held tighter at 1e-13, long f32 sums looser (below).
#include <boost/test/unit_test.hpp>

#include "cuda_test_util.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);

// tol_for (cuda_test_util.h), but f64 held to 1e-13, tighter than the table: pointwise math
// and these sums are within a few f64 ulps of the CPU's
double tol(DType dt) { return dt == DType::f64 ? 1e-13 : tol_for(dt); }
// long f32 sums (over 100,000 elements): the CPU accumulates in double, the GPU in fp32
// trees, an error that grows with the length, so these take the looser 1e-2
constexpr double kLongSumTol = 1e-2;

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
                        check_close(yg, yc, tol(dt), "forward");
                        check_close(xg.grad(), xc.grad(), tol(dt), "gradient");
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
                    check_close(yg, yc, tol(dt), "forward");
                    check_close(ag.grad(), ac.grad(), tol(dt), "grad a");
                    check_close(bg.grad(), bc.grad(), tol(dt), "grad b");
                }
            }
    // transposed operand: the strided path
    Tensor a = randn({37, 53}, g), b = randn({53, 37}, g);
    check_close(add(a.to(gpu), b.to(gpu).t()), add(a, b.t()), tol(DType::f32), "strided add");
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
                const double long_tol = dt == DType::f32 ? kLongSumTol : tol(dt);
                check_close(sum(xg), sum(xc), s.size() == 1 && s[0] > 100000 ? long_tol : tol(dt), "sum all");
                check_close(max(xg), max(xc), tol(dt), "max all");
                check_close(mean(xg, {-1}), mean(xc, {-1}), tol(dt), "mean last");
                check_close(sum(xg, {0}, true), sum(xc, {0}, true), tol(dt), "sum first");
                check_close(max(xg, {-1}), max(xc, {-1}), tol(dt), "max last");
                // max backward goes to the same (first) argmax
                Tensor lc = xc.detach().requires_grad_();
                Tensor lg = xg.detach().requires_grad_();
                sum(max(lc, {0}) * 3.0).backward();
                sum(max(lg, {0}) * 3.0).backward();
                check_close(lg.grad(), lc.grad(), tol(dt), "max grad");
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
    check_close(xg.grad(), xc.grad(), tol(DType::f32), "composite gradient");
}

// A view of a fresh buffer starting `shift` elements in: for shift 1 the data pointer is off
// the 16-byte grid, which sends the kernels to their scalar-head / V = 1 paths.
Tensor shifted(const Tensor& t, int64_t shift) {
    Tensor big = zeros({t.numel() + shift}, t.dtype(), t.device());
    Tensor v = big.narrow(0, shift, t.numel()).view(t.shape());
    copy_nograd(v, t);
    return v;
}

// the vectorised paths with odd sizes and misaligned starts: unary ops (the compiled-per-op
// and run-time-op kernels, bf16 fast exp), including silu / sigmoid at large |x|, where the
// fast bf16 forms divide by an overflowing 1 + e^−x
BOOST_AUTO_TEST_CASE(unary_vector_paths_misaligned_and_large_inputs) {
    Generator g(105);
    const U ops[] = {{"silu", rn::silu, -4, 4},     {"sigmoid", rn::sigmoid, -4, 4}, {"exp", rn::exp, -2, 2},
                     {"gelu", rn::gelu, -3, 3},     {"tanh", rn::tanh, -2, 2},       {"log", rn::log, 0.2, 3},
                     {"silu big", rn::silu, -100, 100}, {"sigmoid big", rn::sigmoid, -100, 100}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (int64_t n : {int64_t(1), int64_t(7), int64_t(4097), int64_t(100003)})
            for (int64_t shift : {int64_t(0), int64_t(1), int64_t(3)})
                for (const auto& op : ops) {
                    BOOST_TEST_CONTEXT(op.name << " " << dt << " n=" << n << " shift " << shift) {
                        Tensor x = uniform({n}, op.lo, op.hi, g, DType::f32).to(dt);
                        Tensor dy = randn({n}, g, DType::f32).to(dt);
                        Tensor xc = cpu_ref_input(x).detach().requires_grad_();
                        Tensor yc = op.f(xc);
                        yc.backward(cpu_ref_input(dy));
                        Tensor xg = shifted(x.to(gpu), shift).detach().requires_grad_();
                        Tensor yg = op.f(xg);
                        yg.backward(shifted(dy.to(gpu), shift));
                        check_close(yg, yc, tol(dt), "forward");
                        // bf16 gradients of sigmoid / tanh go through the bf16-rounded output
                        // (y·(1 − y)): a handful of elements, or a saturated y that rounds to 1,
                        // differ from the f32 reference by more than the tolerance on any device
                        const bool big = std::string(op.name).find("big") != std::string::npos;
                        if (!(dt == DType::bf16 && (n < 4097 || big)))
                            check_close(xg.grad(), xc.grad(), tol(dt), "gradient");
                    }
                }
    // affine (x·2 + 1) through its compiled kernel, misaligned too
    for (DType dt : {DType::f32, DType::bf16})
        for (int64_t shift : {int64_t(0), int64_t(1)}) {
            Tensor x = randn({4097}, g, DType::f32).to(dt);
            check_close(affine(shifted(x.to(gpu), shift), 2.0, 1.0), affine(cpu_ref_input(x), 2.0, 1.0), tol(dt), "affine");
        }
}

// the [R, D] rows kernel of binary ops: row broadcast [D], per-row scalar [R, 1], outer
// [R, 1] op [1, D], a full operand with a row stride (a column slice), misaligned starts,
// D odd / not a multiple of the vector width / 1, rows shorter than a warp; and the
// gradients, whose broadcast sums are the column reduction
BOOST_AUTO_TEST_CASE(binary_rows_path_matches_cpu) {
    Generator g(106);
    using BFn = Tensor (*)(const Tensor&, const Tensor&);
    const std::pair<const char*, BFn> ops[] = {{"add", rn::add}, {"sub", rn::sub}, {"mul", rn::mul}, {"div", rn::div}};
    const std::pair<Shape, Shape> shapes[] = {
        {{65, 256}, {256}},   {{7, 4097}, {4097}},  {{33, 8}, {8}},    {{5, 7}, {7}},     {{300, 1}, {1}},
        {{64, 1000}, {64, 1}}, {{9, 4096}, {9, 1}}, {{1, 4096}, {4096}}, {{4096}, {1, 4096}}, {{40, 1}, {1, 24}},
        {{256}, {130, 256}},  {{130, 1}, {130, 256}}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& [name, f] : ops)
            for (const auto& [sa, sb] : shapes)
                for (int64_t shift : {int64_t(0), int64_t(1)}) {
                    BOOST_TEST_CONTEXT(name << " " << dt << " " << sa << " x " << sb << " shift " << shift) {
                        Tensor a = uniform(sa, 0.5, 2.0, g, DType::f32).to(dt);
                        Tensor b = uniform(sb, 0.5, 2.0, g, DType::f32).to(dt);
                        Tensor ac = cpu_ref_input(a).detach().requires_grad_();
                        Tensor bc = cpu_ref_input(b).detach().requires_grad_();
                        Tensor yc = f(ac, bc);
                        Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                        yc.backward(cpu_ref_input(dy));
                        Tensor ag = shifted(a.to(gpu), shift).detach().requires_grad_();
                        Tensor bg = shifted(b.to(gpu), shift).detach().requires_grad_();
                        Tensor yg = f(ag, bg);
                        yg.backward(shifted(dy.to(gpu), shift));
                        check_close(yg, yc, tol(dt), "forward");
                        check_close(ag.grad(), ac.grad(), tol(dt), "grad a");
                        check_close(bg.grad(), bc.grad(), tol(dt), "grad b");
                    }
                }
    // a full operand with a row stride: columns [c0, c0 + D) of a wider [R, W] matrix
    for (DType dt : {DType::f32, DType::bf16})
        for (int64_t W : {int64_t(264), int64_t(263)})
            for (int64_t c0 : {int64_t(0), int64_t(1), int64_t(8)}) {
                BOOST_TEST_CONTEXT("column slice " << dt << " W=" << W << " c0=" << c0) {
                    Tensor wide = randn({37, W}, g, DType::f32).to(dt);
                    Tensor bias = randn({248}, g, DType::f32).to(dt);
                    Tensor col = randn({37, 1}, g, DType::f32).to(dt);
                    Tensor wc = cpu_ref_input(wide), wg = wide.to(gpu);
                    check_close(add(wg.narrow(1, c0, 248), bias.to(gpu)), add(wc.narrow(1, c0, 248), cpu_ref_input(bias)),
                                tol(dt), "slice + row");
                    check_close(mul(col.to(gpu), wg.narrow(1, c0, 248)), mul(cpu_ref_input(col), wc.narrow(1, c0, 248)),
                                tol(dt), "col * slice");
                }
            }
    // rows enough that a thread of the (capped) grid walks more than U rows: the U-rows-in-
    // flight loop (U = 3 for bf16, 2 otherwise) then its leftover rows, for a per-row scalar
    // [R, 1] and a row broadcast [D]; 300000 × 64 is 4.4 strides of the grid for bf16
    for (DType dt : {DType::bf16, DType::f32}) {
        BOOST_TEST_CONTEXT("many rows " << dt) {
            Tensor a = uniform({300000, 64}, 0.5, 2.0, g, DType::f32).to(dt);
            Tensor col = uniform({300000, 1}, 0.5, 2.0, g, DType::f32).to(dt);
            Tensor row = uniform({64}, 0.5, 2.0, g, DType::f32).to(dt);
            Tensor ag = a.to(gpu), ac = cpu_ref_input(a);
            check_close(mul(ag, col.to(gpu)), mul(ac, cpu_ref_input(col)), tol(dt), "mul per-row scalar");
            check_close(sub(col.to(gpu), ag), sub(cpu_ref_input(col), ac), tol(dt), "per-row scalar - full");
            check_close(add(ag, row.to(gpu)), add(ac, cpu_ref_input(row)), tol(dt), "add row");
        }
    }
    // integers through the rows kernel (exact)
    Tensor i = randint(-50, 50, {33, 40}, g, DType::i64), j = randint(-50, 50, {40}, g, DType::i64);
    BOOST_TEST(max_abs_diff(add(i.to(gpu), j.to(gpu)).to(Device::cpu()), add(i, j)) == 0.0);
    Tensor k = randint(-50, 50, {33, 1}, g, DType::i32), l = randint(-50, 50, {33, 41}, g, DType::i32);
    BOOST_TEST(max_abs_diff(mul(l.to(gpu), k.to(gpu)).to(Device::cpu()), mul(l, k)) == 0.0);
}

// row reductions: 4/8/16 lanes a row (short rows, C = 1), a warp a row, split rows
// with partials (few long rows, the full sum), misaligned rows (odd C and a start one
// element in), max ties / −inf rows / NaN, all dtypes
BOOST_AUTO_TEST_CASE(row_reductions_vector_paths_match_cpu) {
    Generator g(107);
    // short rows (≤ 128 vectors) take the LANES-a-row kernel: 256 = f32 8 lanes, bf16 4, f64
    // 16; 129 odd (per-row heads); 512 f32 / 1000 bf16 = 16 lanes (full / partial); 513 f32
    // and 1025 bf16 just past it (warp a row); 7, 31, 1: head/tail only
    const Shape shapes[] = {{1000, 7}, {33, 1},  {5, 31},     {3, 100003},  {2, 4096},  {64, 4097},
                            {1, 262147}, {1},    {3000, 256}, {517, 129},   {100, 1000}, {40, 512},
                            {40, 513},  {7, 1025}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& s : shapes)
            for (int64_t shift : {int64_t(0), int64_t(1)}) {
                BOOST_TEST_CONTEXT(dt << " " << s << " shift " << shift) {
                    Tensor x = randn(s, g, DType::f32).to(dt);
                    Tensor xc = cpu_ref_input(x);
                    Tensor xg = shifted(x.to(gpu), shift);
                    const bool long_sum = s.size() == 2 && s[1] > 100000;
                    const double loose = dt == DType::f32 && (long_sum || s[0] > 100000) ? kLongSumTol : tol(dt);
                    check_close(sum(xg, {-1}), sum(xc, {-1}), long_sum ? loose : tol(dt), "sum last");
                    check_close(sum(xg), sum(xc), s.size() == 2 && s[0] * s[1] > 100000 ? loose : tol(dt), "sum all");
                    check_close(mean(xg, {-1}), mean(xc, {-1}), tol(dt), "mean last");
                    check_close(max(xg, {-1}), max(xc, {-1}), tol(dt), "max last");
                    check_close(max(xg), max(xc), tol(dt), "max all");
                    Tensor lc = xc.detach().requires_grad_();
                    Tensor lg = xg.detach().requires_grad_();
                    sum(max(lc, {-1}) * 3.0).backward();
                    sum(max(lg, {-1}) * 3.0).backward();
                    check_close(lg.grad(), lc.grad(), tol(dt), "max grad (argmax)");
                }
            }
    // ties: the gradient goes to the first maximum; a row of −inf: max −inf, gradient at 0;
    // rows long enough to be split across warps
    for (DType dt : {DType::f32, DType::bf16})
        for (int64_t C : {int64_t(9), int64_t(203), int64_t(1000), int64_t(5000), int64_t(300001)}) {
            BOOST_TEST_CONTEXT("ties " << dt << " C=" << C) {
                std::vector<float> v(size_t(3 * C), 1.0f);
                for (int64_t c = 0; c < C; ++c) {
                    v[size_t(c)] = float(c % 7);                      // row 0: max 6 at 6, 13, ...
                    v[size_t(C + c)] = -INFINITY;                     // row 1: all −inf
                    v[size_t(2 * C + c)] = c == C / 2 || c == C - 1 ? 5.0f : 1.0f;  // row 2: two maxima
                }
                Tensor x = from_vector<float>(v, {3, C}).to(dt);
                Tensor lc = x.to(DType::f32).detach().requires_grad_();
                Tensor lg = x.to(gpu).detach().requires_grad_();
                Tensor mc = max(lc, {1}), mg = max(lg, {1});
                auto got = mg.to(Device::cpu()).to(DType::f64).to_vector<double>();
                auto want = mc.to(DType::f64).to_vector<double>();
                BOOST_TEST(got == want, boost::test_tools::per_element());
                sum(mc).backward();
                sum(mg).backward();
                BOOST_TEST(max_abs_diff(lg.grad().to(Device::cpu()).to(DType::f32), lc.grad()) == 0.0);
            }
        }
    // NaN anywhere wins, in a warp row and in a split row
    for (int64_t C : {int64_t(40), int64_t(300001)}) {
        std::vector<float> v(size_t(C), 1.0f);
        v[size_t(C - 2)] = NAN;
        Tensor x = from_vector<float>(v, {1, C});
        BOOST_TEST(std::isnan(max(x.to(gpu), {1}).item()));
        BOOST_TEST(std::isnan(max(x.to(gpu)).item()));
    }
}

// sums over non-last dims: the column kernel reads [outer, red, inner] in place (vector
// loads when inner % V == 0 and the start is aligned, else V = 1), split over red with a
// second pass; one run of dims; mean; an empty reduced dim
BOOST_AUTO_TEST_CASE(column_sums_match_cpu) {
    Generator g(108);
    struct C { Shape s; std::vector<int64_t> dims; };
    const C cases[] = {{{4097, 33}, {0}}, {{1000, 64}, {0}}, {{8192, 1024}, {0}}, {{3, 1000, 40}, {1}},
                       {{8, 9, 40}, {0, 1}}, {{8, 9, 40}, {0, 2}}, {{5, 7, 9}, {1}},  {{2, 3}, {0}},
                       {{100000, 16}, {0}}, {{1, 4096}, {0}}, {{64, 2, 8}, {0}}};
    for (DType dt : {DType::f32, DType::bf16, DType::f64})
        for (const auto& cs : cases)
            for (int64_t shift : {int64_t(0), int64_t(1)}) {
                BOOST_TEST_CONTEXT(dt << " " << cs.s << " shift " << shift) {
                    Tensor x = randn(cs.s, g, DType::f32).to(dt);
                    Tensor xc = cpu_ref_input(x);
                    Tensor xg = shifted(x.to(gpu), shift);
                    const double t = dt == DType::f32 && cs.s[0] >= 8192 ? kLongSumTol : tol(dt);  // long f32 sums
                    check_close(sum(xg, cs.dims), sum(xc, cs.dims), t, "sum");
                    check_close(sum(xg, cs.dims, true), sum(xc, cs.dims, true), t, "sum keepdim");
                    check_close(mean(xg, cs.dims), mean(xc, cs.dims), t, "mean");
                }
            }
    // an empty reduced dim sums to zeros
    Tensor e = zeros({0, 40}, DType::f32, gpu);
    Tensor se = sum(e, {0});
    BOOST_TEST(se.shape() == (Shape{40}));
    BOOST_TEST(max_abs_diff(se.to(Device::cpu()), zeros({40}, DType::f32)) == 0.0);
    // the bias gradient of a broadcast add: Σ over rows of dy, through sum_to
    for (DType dt : {DType::f32, DType::bf16}) {
        Tensor xx = randn({512, 768}, g, DType::f32).to(dt), bb = randn({768}, g, DType::f32).to(dt);
        Tensor dy = randn({512, 768}, g, DType::f32).to(dt);
        Tensor bc = cpu_ref_input(bb).detach().requires_grad_(), bgpu = bb.to(gpu).detach().requires_grad_();
        add(cpu_ref_input(xx), bc).backward(cpu_ref_input(dy));
        add(xx.to(gpu), bgpu).backward(dy.to(gpu));
        check_close(bgpu.grad(), bc.grad(), tol(dt), "bias grad");
    }
}

BOOST_AUTO_TEST_SUITE_END()
