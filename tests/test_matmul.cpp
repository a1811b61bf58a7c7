// tests/test_matmul.cpp — matmul and the CPU GEMM under it: values against a naive triple
// loop (batch broadcasting, transposed and sliced inputs, the one-GEMM linear-layer path),
// f64 gradcheck on the same kinds of shapes, the tiled kernel against CBLAS and the naive
// loop on odd sizes with every transpose, alpha/beta and padded leading dims, and the
// error messages. Inputs are random (never zeros), so a kernel that writes nothing fails.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "ops/matmul.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {

// Reference product in double: every batch entry by three nested loops over the inputs
// broadcast (expand) to the output's batch shape.
std::vector<double> naive_matmul(const Tensor& a, const Tensor& b, Shape* out_shape = nullptr) {
    Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
    Shape batch = broadcast_shapes(ab, bb, "naive_matmul");
    const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
    Shape sa = batch, sb = batch;
    sa.insert(sa.end(), {M, K});
    sb.insert(sb.end(), {K, N});
    auto av = a.detach().expand(sa).to_vector<double>();
    auto bv = b.detach().expand(sb).to_vector<double>();
    const int64_t nb = numel_of(batch);
    std::vector<double> c(size_t(nb * M * N), 0.0);
    for (int64_t p = 0; p < nb; ++p)
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k) s += av[size_t(p * M * K + i * K + k)] * bv[size_t(p * K * N + k * N + j)];
                c[size_t(p * M * N + i * N + j)] = s;
            }
    if (out_shape) {
        *out_shape = batch;
        out_shape->insert(out_shape->end(), {M, N});
    }
    return c;
}

double max_rel_diff(const std::vector<double>& got, const std::vector<double>& want) {
    BOOST_REQUIRE_EQUAL(got.size(), want.size());
    double m = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        double d = std::abs(got[i] - want[i]) / (1.0 + std::abs(want[i]));
        if (std::isnan(d)) return INFINITY;
        m = std::max(m, d);
    }
    return m;
}

void check_against_naive(const Tensor& a, const Tensor& b, double tol) {
    Shape want_shape;
    auto want = naive_matmul(a, b, &want_shape);
    Tensor c = matmul(a, b);
    BOOST_TEST(c.shape() == want_shape);
    BOOST_TEST(c.dtype() == a.dtype());
    BOOST_TEST(max_rel_diff(c.to_vector<double>(), want) < tol);
}

// A random [rows, cols] matrix stored row-major with leading dim ld (padding filled with
// NaN so a kernel that reads outside the matrix poisons its result).
template <typename T>
std::vector<T> random_matrix(int64_t rows, int64_t cols, int64_t ld, Generator& g) {
    std::vector<T> m(size_t(std::max<int64_t>(rows, 1) * ld), std::numeric_limits<T>::quiet_NaN());
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) m[size_t(i * ld + j)] = T(2 * g.next_uniform() - 1);
    return m;
}

// C = alpha·op(A)·op(B) + beta·C in double, same storage contract as cpu::gemm
template <typename T>
std::vector<double> naive_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const std::vector<T>& A,
                               int64_t lda, const std::vector<T>& B, int64_t ldb, double beta, const std::vector<T>& C,
                               int64_t ldc) {
    std::vector<double> out(size_t(M * N));
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            double s = 0;
            for (int64_t k = 0; k < K; ++k) {
                double x = ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)];
                double y = tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)];
                s += x * y;
            }
            out[size_t(i * N + j)] = alpha * s + (beta == 0 ? 0.0 : beta * double(C[size_t(i * ldc + j)]));
        }
    return out;
}

template <typename T>
std::vector<double> c_values(const std::vector<T>& C, int64_t M, int64_t N, int64_t ldc) {
    std::vector<double> v(size_t(M * N));
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) v[size_t(i * N + j)] = C[size_t(i * ldc + j)];
    return v;
}

// Runs one GEMM case through the tiled kernel (threaded, serial, and with the portable
// micro-kernel forced where AVX2 would be picked) and, where the build has it, CBLAS; each must match the naive loop. Returns how many kernels were checked.
template <typename T>
int check_gemm_case(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, double beta, int64_t pad,
                    Generator& g) {
    const DType dt = dtype_of<T>::value;
    const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    auto A = random_matrix<T>(ta ? K : M, ta ? M : K, std::max<int64_t>(lda, 1), g);
    auto B = random_matrix<T>(tb ? N : K, tb ? K : N, std::max<int64_t>(ldb, 1), g);
    auto C0 = random_matrix<T>(M, N, std::max<int64_t>(ldc, 1), g);
    if (beta == 0)  // beta = 0 must not read C: NaN there would leak into the result
        for (auto& x : C0) x = std::numeric_limits<T>::quiet_NaN();
    const auto want = naive_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
    // f32 sums of K products carry ~sqrt(K) ulps of rounding
    const double tol = dt == DType::f32 ? 2e-6 * (8 + std::sqrt(double(K))) : 1e-13 * (8 + std::sqrt(double(K)));
    int checked = 0;
    auto run = [&](const char* which, auto&& call) {
        auto C = C0;
        call(C.data());
        BOOST_TEST_CONTEXT(which << (ta ? " Aᵀ" : " A") << (tb ? "·Bᵀ" : "·B") << " M=" << M << " N=" << N << " K=" << K
                                 << " alpha=" << alpha << " beta=" << beta << " pad=" << pad << " " << dt) {
            BOOST_TEST(max_rel_diff(c_values(C, M, N, ldc), want) < tol);
            // the padding between rows of C is left alone
            bool pad_untouched = true;
            for (int64_t i = 0; i < M; ++i)
                for (int64_t j = N; j < ldc; ++j)
                    pad_untouched = pad_untouched && std::isnan(double(C[size_t(i * ldc + j)])) ==
                                                         std::isnan(double(C0[size_t(i * ldc + j)]));
            BOOST_TEST(pad_untouched);
        }
        ++checked;
    };
    run("tiled", [&](T* c) { cpu::gemm_tiled(dt, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c, ldc); });
    run("tiled serial",
        [&](T* c) { cpu::gemm_tiled(dt, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c, ldc, 1); });
    if (std::string(cpu::gemm_tiled_isa()) != "generic") {  // the portable micro-kernel too
        cpu::set_gemm_tiled_generic(true);
        run("tiled generic",
            [&](T* c) { cpu::gemm_tiled(dt, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c, ldc); });
        cpu::set_gemm_tiled_generic(false);
    }
    if (cpu::have_blas()) {
        const auto prev = cpu::gemm_backend();
        cpu::set_gemm_backend(cpu::GemmBackend::blas);
        run("cblas", [&](T* c) { cpu::gemm(dt, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c, ldc); });
        cpu::set_gemm_backend(prev);
    }
    return checked;
}

// Restores the GEMM backend when a test that switches it ends, even on failure.
struct BackendGuard {
    cpu::GemmBackend prev = cpu::gemm_backend();
    ~BackendGuard() { cpu::set_gemm_backend(prev); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(matmul_ops)

BOOST_AUTO_TEST_CASE(values_2d_batched_and_broadcast) {
    Generator g(21);
    const std::pair<Shape, Shape> shapes[] = {
        {{3, 4}, {4, 5}},       {{1, 1}, {1, 1}},          {{2, 3, 4}, {4, 5}},     {{4, 5}, {2, 5, 3}},
        {{2, 3, 4}, {2, 4, 5}}, {{3, 1, 4, 5}, {2, 5, 6}}, {{2, 1, 3}, {2, 3, 1}}, {{7, 33}, {33, 130}},
        {{2, 2, 3, 2}, {1, 2, 6}},
    };
    for (DType dt : {DType::f64, DType::f32})
        for (const auto& s : shapes)
            BOOST_TEST_CONTEXT(s.first << " x " << s.second << " " << dt) {
                Tensor a = uniform(s.first, -1, 1, g, dt), b = uniform(s.second, -1, 1, g, dt);
                check_against_naive(a, b, dt == DType::f64 ? 1e-13 : 1e-5);
            }
}

BOOST_AUTO_TEST_CASE(values_noncontiguous_inputs) {
    Generator g(22);
    for (DType dt : {DType::f64, DType::f32}) {
        const double tol = dt == DType::f64 ? 1e-13 : 1e-5;
        Tensor a = uniform({3, 6, 5}, -1, 1, g, dt), b = uniform({3, 5, 4}, -1, 1, g, dt);
        // transposed views (column-major: the transpose-flag path, no copy)
        check_against_naive(noncontiguous(a), noncontiguous(b), tol);
        check_against_naive(uniform({5, 6}, -1, 1, g, dt).t(), uniform({4, 5}, -1, 1, g, dt).t(), tol);
        // transposed slices: column-major with a leading dim larger than the rows
        check_against_naive(uniform({2, 5, 9}, -1, 1, g, dt).narrow(2, 1, 6).transpose(1, 2),
                            uniform({7, 5}, -1, 1, g, dt).narrow(0, 2, 4).t(), tol);
        // sliced columns (inner stride 1, row stride > cols) and sliced rows
        Tensor big = uniform({3, 8, 9}, -1, 1, g, dt);
        check_against_naive(big.narrow(2, 2, 5).narrow(1, 1, 6), b, tol);
        // every-other column: no GEMM layout, so a copy is made
        Tensor strided = make_view(big, {3, 5, 4}, {72, 9, 2}, 1);
        check_against_naive(a, strided, tol);
        // an expanded (stride 0) batch and an expanded row dim
        check_against_naive(uniform({1, 6, 5}, -1, 1, g, dt).expand({3, 6, 5}), b, tol);
        check_against_naive(uniform({1, 5}, -1, 1, g, dt).expand({6, 5}), b, tol);
        // the one-GEMM linear-layer path: a's batch folds into rows (also at an offset),
        // and a batch that does not fold (rows of a slice) takes the batched path
        Tensor w = uniform({5, 7}, -1, 1, g, dt);
        check_against_naive(a, w, tol);
        check_against_naive(uniform({5, 6, 5}, -1, 1, g, dt).narrow(0, 1, 3), w, tol);
        check_against_naive(uniform({3, 9, 5}, -1, 1, g, dt).narrow(1, 2, 6), w, tol);
        check_against_naive(noncontiguous(a), w.t().contiguous().t(), tol);
    }
}

BOOST_AUTO_TEST_CASE(values_larger_than_one_block) {
    // spans several KC, MC and NR blocks of the tiled kernel and several batch entries;
    // checked with whatever backend is active and with the tiled one forced
    Generator g(23);
    BackendGuard guard;
    Tensor a = uniform({2, 150, 300}, -1, 1, g, DType::f64), b = uniform({300, 70}, -1, 1, g, DType::f64);
    Tensor c = uniform({3, 40, 60}, -1, 1, g, DType::f32), d = uniform({3, 60, 50}, -1, 1, g, DType::f32);
    for (auto backend : {cpu::GemmBackend::tiled, cpu::GemmBackend::blas}) {
        if (backend == cpu::GemmBackend::blas && !cpu::have_blas()) continue;
        cpu::set_gemm_backend(backend);
        BOOST_TEST_CONTEXT(cpu::gemm_backend_name(backend)) {
            check_against_naive(a, b, 1e-12);
            check_against_naive(a.transpose(1, 2).contiguous().transpose(1, 2), b, 1e-12);
            check_against_naive(c, d, 1e-5);  // small batched: one matrix per thread
        }
    }
}

BOOST_AUTO_TEST_CASE(empty_dims) {
    Tensor a = ones({2, 3, 0}), b = ones({0, 4});
    Tensor c = matmul(a, b);  // K = 0: a sum of nothing
    BOOST_TEST(c.shape() == Shape({2, 3, 4}));
    BOOST_TEST(c.to_vector<float>() == std::vector<float>(24, 0.0f), boost::test_tools::per_element());
    BOOST_TEST(matmul(ones({0, 3}), ones({3, 4})).shape() == Shape({0, 4}));
    BOOST_TEST(matmul(ones({2, 0, 3}), ones({3, 4})).shape() == Shape({2, 0, 4}));
}

BOOST_AUTO_TEST_CASE(gradcheck_shapes_and_layouts) {
    Generator g(24);
    auto mm = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
    const std::pair<Shape, Shape> shapes[] = {
        {{3, 4}, {4, 5}},       {{2, 3, 4}, {4, 5}},       {{4, 5}, {2, 5, 3}},
        {{2, 3, 4}, {2, 4, 5}}, {{3, 1, 4, 5}, {2, 5, 6}}, {{1, 3, 2}, {2, 2, 3}},
    };
    for (const auto& s : shapes)
        for (bool nc : {false, true})
            BOOST_TEST_CONTEXT(s.first << " x " << s.second << (nc ? " transposed" : "")) {
                RN_CHECK_GRADCHECK(mm, (std::vector<Tensor>{leaf64(s.first, g, nc), leaf64(s.second, g, nc)}));
            }
    // seeded random shapes: 0–2 batch dims, each broadcast on one side or the other, and
    // random layouts
    for (int trial = 0; trial < 8; ++trial) {
        auto draw = [&](int64_t lo, int64_t hi) { return lo + int64_t(g.next_u64() % uint64_t(hi - lo + 1)); };
        const int64_t M = draw(1, 4), K = draw(1, 4), N = draw(1, 4), nb = draw(0, 2);
        Shape sa, sb;
        for (int64_t d = 0; d < nb; ++d) {
            const int64_t n = draw(2, 3), which = draw(0, 2);  // 0: both, 1: a broadcasts, 2: b broadcasts
            sa.push_back(which == 1 ? 1 : n);
            sb.push_back(which == 2 ? 1 : n);
        }
        if (nb > 0 && draw(0, 1) == 1) sb.erase(sb.begin());  // b with fewer dims
        sa.insert(sa.end(), {M, K});
        sb.insert(sb.end(), {K, N});
        const bool nca = draw(0, 1) == 1, ncb = draw(0, 1) == 1;
        BOOST_TEST_CONTEXT("random " << sa << (nca ? "ᵀ" : "") << " x " << sb << (ncb ? "ᵀ" : "")) {
            RN_CHECK_GRADCHECK(mm, (std::vector<Tensor>{leaf64(sa, g, nca), leaf64(sb, g, ncb)}));
        }
    }
    // sliced inputs, the gradient of only one side, and one input used on both sides
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return matmul(in[0].narrow(1, 1, 4), in[1].narrow(0, 1, 3)); },
                       (std::vector<Tensor>{leaf64({2, 6, 3}, g), leaf64({5, 2}, g)}));
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return matmul(in[0].narrow(1, 1, 3).t(), in[1].t()); },
                       (std::vector<Tensor>{leaf64({4, 5}, g), leaf64({2, 4}, g)}));
    Tensor frozen = uniform({4, 3}, -1, 1, g, DType::f64);
    RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return matmul(in[0], frozen); },
                       (std::vector<Tensor>{leaf64({2, 2, 4}, g)}));
    RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return matmul(frozen.t(), in[0]); },
                       (std::vector<Tensor>{leaf64({4, 3}, g, true)}));
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return matmul(in[0], in[0].transpose(-1, -2)); },
                       (std::vector<Tensor>{leaf64({2, 3, 4}, g)}));
}

BOOST_AUTO_TEST_CASE(backward_values_and_saved_inputs) {
    // dA = dC·Bᵀ and dB = Aᵀ·dC checked by value (f32, broadcast batch), so the fast
    // paths of the backward (one GEMM over stacked rows) are held to the formula
    Generator g(25);
    Tensor a = uniform({2, 3, 4}, -1, 1, g).requires_grad_(), b = uniform({4, 5}, -1, 1, g).requires_grad_();
    Tensor dc = uniform({2, 3, 5}, -1, 1, g);
    matmul(a, b).backward(dc);
    auto want_da = naive_matmul(dc, b.transpose(0, 1));
    Tensor at = a.detach().transpose(1, 2);  // [2, 4, 3]
    std::vector<double> want_db(20, 0.0);
    for (int64_t p = 0; p < 2; ++p) {
        auto part = naive_matmul(at.select(0, p), dc.select(0, p));
        for (size_t i = 0; i < 20; ++i) want_db[i] += part[i];
    }
    BOOST_TEST(max_rel_diff(a.grad().to_vector<double>(), want_da) < 1e-5);
    BOOST_TEST(max_rel_diff(b.grad().to_vector<double>(), want_db) < 1e-5);
    // an input modified in place after the forward is reported, not silently used
    Tensor x = uniform({3, 4}, -1, 1, g).requires_grad_(), y = uniform({4, 2}, -1, 1, g);
    Tensor out = matmul(x, y);
    y.fill_(1.0);
    RN_CHECK_THROWS_WITH(sum(out).backward(), "MatmulBackward");
}

BOOST_AUTO_TEST_CASE(errors_say_what_came) {
    Tensor a = ones({2, 3}), b = ones({4, 5});
    RN_CHECK_THROWS_WITH(matmul(a, b), "matmul: inner dims differ: a [2, 3] has K=3, b [4, 5] has K=4");
    RN_CHECK_THROWS_WITH(matmul(ones({3}), ones({3, 2})), "at least 2 dims, got a [3] and b [3, 2]");
    RN_CHECK_THROWS_WITH(matmul(ones({2, 3}), ones({3})), "unsqueeze");
    RN_CHECK_THROWS_WITH(matmul(ones({2, 3}), ones({3, 2}, DType::f64)), "matmul: dtypes differ: f32 vs f64");
    RN_CHECK_THROWS_WITH(matmul(ones({2, 3}, DType::bf16), ones({3, 2}, DType::bf16)),
                         "CPU matmul takes f32 or f64, got bf16");
    RN_CHECK_THROWS_WITH(matmul(ones({2, 3}, DType::i64), ones({3, 2}, DType::i64)), "got i64");
    RN_CHECK_THROWS_WITH(matmul(ones({2, 2, 3}), ones({3, 3, 2})), "batch dims do not broadcast");
    RN_CHECK_THROWS_WITH(matmul(Tensor(), ones({2, 2})), "matmul: a is an undefined tensor");
    float x[4] = {1, 2, 3, 4};
    RN_CHECK_THROWS_WITH(cpu::gemm(DType::f32, false, false, 2, 2, 2, 1.0, x, 1, x, 2, 0.0, x, 2), "lda=1 is below K=2");
    RN_CHECK_THROWS_WITH(cpu::gemm_tiled(DType::i32, false, false, 1, 1, 1, 1.0, x, 1, x, 1, 0.0, x, 1),
                         "supports f32 and f64, got i32");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(gemm_kernels)

BOOST_AUTO_TEST_CASE(tiled_and_cblas_match_naive_on_odd_sizes) {
    Generator g(31);
    const int64_t sizes[] = {1, 7, 33, 130};
    int checked = 0;
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (int64_t M : sizes)
                for (int64_t N : sizes)
                    for (int64_t K : sizes) {
                        checked += check_gemm_case<float>(ta, tb, M, N, K, 1.0, 0.0, 0, g);
                        if ((M + N + K) % 3 == 0)  // a third of them in f64 too, with padding and alpha/beta
                            checked += check_gemm_case<double>(ta, tb, M, N, K, -0.5, 0.75, 3, g);
                    }
    BOOST_TEST_MESSAGE("gemm kernels checked: " << checked << " (cblas " << (cpu::have_blas() ? "yes" : "absent — skipped")
                                                << ", tiled isa " << cpu::gemm_tiled_isa() << ")");
    BOOST_TEST(checked > 0);
}

BOOST_AUTO_TEST_CASE(tiled_blocks_alpha_beta_and_padding) {
    // sizes that cross every blocking boundary: K > KC (later K blocks accumulate into C),
    // M > MC, N > NC (2048 f32 / 1024 f64 columns)
    Generator g(32);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            check_gemm_case<float>(ta, tb, 301, 37, 520, 1.0, 0.0, 0, g);
            check_gemm_case<float>(ta, tb, 5, 2100, 9, 2.0, 1.0, 5, g);
            check_gemm_case<double>(ta, tb, 150, 1100, 260, 0.5, -1.5, 1, g);
            check_gemm_case<float>(ta, tb, 13, 17, 0, 1.0, 0.5, 2, g);  // K = 0: C = beta·C
        }
}

BOOST_AUTO_TEST_CASE(batched_matches_one_by_one) {
    Generator g(33);
    const int64_t M = 9, N = 11, K = 13, batch = 5;
    auto A = random_matrix<float>(batch * M, K, K, g);
    auto B = random_matrix<float>(K, N, N, g);  // shared by every batch entry (offset 0)
    std::vector<float> C(size_t(batch * M * N)), want(size_t(M * N));
    std::vector<int64_t> a_off, b_off(size_t(batch), 0), c_off;
    for (int64_t i = 0; i < batch; ++i) {
        a_off.push_back(i * M * K);
        c_off.push_back((batch - 1 - i) * M * N);  // any placement of the outputs
    }
    cpu::gemm_batched(DType::f32, false, false, M, N, K, 1.0, A.data(), K, a_off.data(), B.data(), N, b_off.data(), 0.0,
                      C.data(), N, c_off.data(), batch);
    for (int64_t i = 0; i < batch; ++i) {
        cpu::gemm_tiled(DType::f32, false, false, M, N, K, 1.0, A.data() + a_off[size_t(i)], K, B.data(), N, 0.0,
                        want.data(), N, 1);
        std::vector<double> got(C.begin() + c_off[size_t(i)], C.begin() + c_off[size_t(i)] + M * N);
        BOOST_TEST(max_rel_diff(got, std::vector<double>(want.begin(), want.end())) < 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(backend_switch) {
    BackendGuard guard;
    cpu::set_gemm_backend(cpu::GemmBackend::tiled);
    BOOST_TEST(std::string(cpu::gemm_backend_name(cpu::gemm_backend())) == "tiled");
    if (cpu::have_blas()) {
        cpu::set_gemm_backend(cpu::GemmBackend::blas);
        BOOST_TEST(std::string(cpu::gemm_backend_name(cpu::gemm_backend())) == "blas");
    } else {
        RN_CHECK_THROWS_WITH(cpu::set_gemm_backend(cpu::GemmBackend::blas), "no CBLAS");
        BOOST_TEST_MESSAGE("CBLAS comparisons skipped: this build has no CBLAS");
    }
}

BOOST_AUTO_TEST_SUITE_END()
