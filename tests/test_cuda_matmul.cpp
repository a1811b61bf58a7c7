// tests/test_cuda_matmul.cpp — rn::matmul on CUDA (cuBLAS / cuBLASLt, cuda/matmul.h) against
// the CPU, on fresh random inputs (never zeros, so an unwritten output fails):
//   values  — f32 (rel 1e-5: exact fp32, which TF32 could not reach at these K), f64 (1e-12),
//             bf16 (1e-2: bf16 output rounding; the reference is the CPU product in f64 of
//             the same bf16-rounded inputs); odd sizes (1, 7, 33, 4097 in each of M, N, K),
//             transposed / column-sliced (misaligned) / row-broadcast (stride 0) inputs,
//             batches that fold into one GEMM, broadcast batches and permuted batches;
//   gradients — backward on CUDA against the CPU on the same values;
//   the raw entries — gemm with alpha/beta, padded ldc (sentinels untouched), NaN-poisoned C
//             with beta = 0, K = 0, strided-batched with a stride-0 operand;
//   the Lt plan cache (a repeated shape queries the heuristic once), tuned plans
//   (RN_GEMM_TUNE: timed on a new shape's first eager call, never inside a graph capture,
//   C written once), the cublasGemmEx
//   fallback path, and TF32: off by default, opt-in changes f32 only, and off again gives
//   bit-identical exact results;
//   few-row products x · Wᵀ (a decode step): cuda/gemv.h's kernel takes them (counted),
//   matches the CPU and cuBLAS for 1–8 rows (called directly where rn::matmul prefers
//   cuBLAS), and what it must refuse or should not take (9 rows, 8 rows of a 4 MB weight,
//   K or lda not a multiple of 16 bytes, a misaligned x, f64) stays with cuBLAS, still right.
// ‖out − ref‖ / ‖ref‖ throughout; NaN never passes.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "core/gemm_pins.h"
#include "cuda/device.h"
#include "cuda/gemv.h"
#include "cuda/graph.h"
#include "cuda/matmul.h"
#include "cuda_test_util.h"
#include "ops/matmul.h"

using namespace rn;
using namespace rn::test;

namespace {

const Device kGpu = Device::cuda(0);

bool all_finite(const Tensor& t) {
    for (double v : t.to_vector<double>())
        if (!std::isfinite(v)) return false;
    return true;
}

// How a device input is laid out in memory. Values are what counts: the CPU reference reads
// the same values back from the device.
enum class Layout { contiguous, transposed, sliced, row_broadcast };
const char* layout_name(Layout l) {
    switch (l) {
        case Layout::contiguous: return "contiguous";
        case Layout::transposed: return "transposed";
        case Layout::sliced: return "sliced";
        case Layout::row_broadcast: return "row_broadcast";
    }
    return "?";
}

// A device tensor of logical shape s with fresh N(0,1) values, rounded to dt, laid out as asked:
// transposed: stored with the last two dims swapped (reaches cuBLAS as a transpose flag);
// sliced: columns [3, 3+C) of a wider buffer (leading dim C+5, first element 3 elements in,
//         so not 16-byte aligned: the Lt plan must be told);
// row_broadcast: one row expanded over the rows (stride 0; the wrapper copies it).
Tensor make_input(const Shape& s, DType dt, Layout l, Generator& g) {
    const size_t n = s.size();
    switch (l) {
        case Layout::contiguous: return randn(s, g, DType::f64).to(dt).to(kGpu);
        case Layout::transposed: {
            Shape t = s;
            std::swap(t[n - 1], t[n - 2]);
            return randn(t, g, DType::f64).to(dt).to(kGpu).transpose(-1, -2);
        }
        case Layout::sliced: {
            Shape w = s;
            w[n - 1] += 5;
            return randn(w, g, DType::f64).to(dt).to(kGpu).narrow(-1, 3, s[n - 1]);
        }
        case Layout::row_broadcast: {
            Shape r = s;
            r[n - 2] = 1;
            return randn(r, g, DType::f64).to(dt).to(kGpu).expand(s);
        }
    }
    return Tensor();
}

// CPU f64 copy of a device tensor's values (bf16 and f32 values are exact in f64)
Tensor ref64(const Tensor& d) { return d.detach().to(Device::cpu()).to(DType::f64); }

struct Case {
    Shape a, b;
};

// odd sizes, each of M, N, K taking 1, 7, 33 and 4097 somewhere
const std::vector<Case> kShapes2d = {
    {{1, 1}, {1, 1}},       {{7, 33}, {33, 1}},    {{1, 7}, {7, 33}},     {{33, 4097}, {4097, 7}},
    {{4097, 7}, {7, 33}},   {{7, 33}, {33, 4097}}, {{33, 1}, {1, 7}},     {{64, 96}, {96, 80}},
};
const std::vector<Case> kShapesBatched = {
    {{3, 7, 33}, {33, 5}},           // b shared, a's batch folds into rows: one GEMM
    {{3, 7, 33}, {3, 33, 5}},        // plain strided batch
    {{7, 33}, {4, 33, 5}},           // a broadcast: stride 0
    {{2, 1, 7, 33}, {3, 33, 5}},     // broadcast over two dims: two strided runs
    {{2, 3, 1, 33}, {1, 3, 33, 4097}},
};

void check_values(DType dt, const Tensor& a, const Tensor& b, const std::string& what) {
    BOOST_TEST_CONTEXT(what << " " << dt << " a " << a.shape() << " b " << b.shape()) {
        Tensor out = matmul(a, b);
        BOOST_TEST(out.is_cuda());
        BOOST_TEST(out.dtype() == dt);
        Tensor want = matmul(ref64(a), ref64(b));
        BOOST_REQUIRE(out.shape() == want.shape());
        BOOST_TEST(all_finite(out));
        const double err = rel_err(out.to(Device::cpu()), want);
        BOOST_TEST(err < tol_for(dt), "rel err " << err << " ≥ " << tol_for(dt));
    }
}

// restores the process-wide switches a test flips, even when it fails half-way
struct SwitchGuard {
    bool tf32 = cuda::allow_tf32(), lt = cuda::gemm_use_lt(), gemv = cuda::gemv_enabled();
    ~SwitchGuard() {
        cuda::set_allow_tf32(tf32);
        cuda::set_gemm_use_lt(lt);
        cuda::set_gemv_enabled(gemv);
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_matmul)

BOOST_AUTO_TEST_CASE(values_odd_shapes_every_dtype_and_layout) {
    Generator g(11);
    for (DType dt : {DType::f32, DType::f64, DType::bf16})
        for (const Case& c : kShapes2d)
            for (Layout la : {Layout::contiguous, Layout::transposed, Layout::sliced})
                for (Layout lb : {Layout::contiguous, Layout::transposed, Layout::sliced})
                    check_values(dt, make_input(c.a, dt, la, g), make_input(c.b, dt, lb, g),
                                 std::string(layout_name(la)) + "·" + layout_name(lb));
}

BOOST_AUTO_TEST_CASE(values_broadcast_rows) {
    Generator g(12);
    for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
        check_values(dt, make_input({33, 7}, dt, Layout::row_broadcast, g), make_input({7, 5}, dt, Layout::contiguous, g),
                     "row_broadcast·contiguous");
        check_values(dt, make_input({5, 33}, dt, Layout::transposed, g), make_input({33, 9}, dt, Layout::row_broadcast, g),
                     "transposed·row_broadcast");
    }
}

BOOST_AUTO_TEST_CASE(values_batched_and_broadcast) {
    Generator g(13);
    for (DType dt : {DType::f32, DType::f64, DType::bf16})
        for (const Case& c : kShapesBatched)
            for (Layout l : {Layout::contiguous, Layout::transposed}) {
                check_values(dt, make_input(c.a, dt, l, g), make_input(c.b, dt, Layout::contiguous, g),
                             std::string(layout_name(l)) + "·contiguous");
                check_values(dt, make_input(c.a, dt, Layout::contiguous, g), make_input(c.b, dt, l, g),
                             std::string("contiguous·") + layout_name(l));
            }
}

BOOST_AUTO_TEST_CASE(values_permuted_and_expanded_batches) {
    Generator g(14);
    for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
        // batch dims swapped in memory: strides that do not merge into one batch stride
        Tensor a = randn({3, 2, 7, 33}, g, DType::f64).to(dt).to(kGpu).permute({1, 0, 2, 3});
        Tensor b = randn({2, 3, 33, 5}, g, DType::f64).to(dt).to(kGpu);
        check_values(dt, a, b, "permuted batch");
        // an operand expanded over a batch dim (stride 0 inside the tensor itself)
        Tensor e = randn({1, 33, 5}, g, DType::f64).to(dt).to(kGpu).expand({4, 33, 5});
        check_values(dt, randn({4, 7, 33}, g, DType::f64).to(dt).to(kGpu), e, "expanded batch");
        // the linear-layer case with a weight read transposed: [B, T, C] · Wᵀ
        Tensor w = randn({48, 33}, g, DType::f64).to(dt).to(kGpu);
        check_values(dt, randn({2, 17, 33}, g, DType::f64).to(dt).to(kGpu), w.t(), "x·Wᵀ");
    }
}

BOOST_AUTO_TEST_CASE(gradients_match_cpu) {
    Generator g(21);
    struct GradCase {
        Shape a, b;
        bool a_t;  // a used through a transposed view of its leaf
    };
    const std::vector<GradCase> cases = {
        {{7, 33}, {33, 5}, false},          {{33, 7}, {33, 4097}, true},     {{3, 7, 33}, {33, 5}, false},
        {{2, 1, 7, 33}, {3, 33, 5}, false}, {{4, 33, 7}, {1, 33, 9}, true},  {{1, 1}, {1, 7}, false},
    };
    for (DType dt : {DType::f32, DType::f64, DType::bf16})
        for (const GradCase& c : cases) {
            BOOST_TEST_CONTEXT(dt << " a " << c.a << (c.a_t ? "ᵀ" : "") << " b " << c.b) {
                Tensor a = randn(c.a, g, DType::f64).to(dt).to(kGpu).detach().requires_grad_();
                Tensor b = randn(c.b, g, DType::f64).to(dt).to(kGpu).detach().requires_grad_();
                Tensor out = matmul(c.a_t ? a.transpose(-1, -2) : a, b);
                Tensor gout = randn(out.shape(), g, DType::f64).to(dt).to(kGpu);
                out.backward(gout);
                // the same on the CPU in f64, from the same (rounded) values
                Tensor ar = ref64(a).requires_grad_(), br = ref64(b).requires_grad_();
                Tensor outr = matmul(c.a_t ? ar.transpose(-1, -2) : ar, br);
                outr.backward(ref64(gout));
                BOOST_REQUIRE(a.grad().defined() && b.grad().defined());
                BOOST_TEST(a.grad().is_cuda());
                BOOST_TEST(a.grad().shape() == a.shape());
                BOOST_TEST(b.grad().shape() == b.shape());
                const double ea = rel_err(a.grad().to(Device::cpu()), ar.grad());
                const double eb = rel_err(b.grad().to(Device::cpu()), br.grad());
                BOOST_TEST(ea < tol_for(dt), "dA rel err " << ea);
                BOOST_TEST(eb < tol_for(dt), "dB rel err " << eb);
            }
        }
}

BOOST_AUTO_TEST_CASE(raw_gemm_alpha_beta_padding_poison) {
    // C [M, N] inside a buffer with ldc = N + 3: the padding columns are sentinels that must
    // survive; C starts as NaN for beta = 0 (must not be read) and as random for beta ≠ 0.
    Generator g(31);
    const int64_t M = 33, N = 7, K = 65, ldc = N + 3;
    for (DType dt : {DType::f32, DType::f64, DType::bf16})
        for (bool ta : {false, true})
            for (bool tb : {false, true})
                for (double beta : {0.0, 2.0}) {
                    BOOST_TEST_CONTEXT(dt << " transA=" << ta << " transB=" << tb << " beta=" << beta) {
                        Tensor a = randn(ta ? Shape{K, M} : Shape{M, K}, g, DType::f64).to(dt).to(kGpu);
                        Tensor b = randn(tb ? Shape{N, K} : Shape{K, N}, g, DType::f64).to(dt).to(kGpu);
                        Tensor c = randn({M, ldc}, g, DType::f64).to(dt).to(kGpu);
                        Tensor c0 = ref64(c);
                        if (beta == 0.0) c.narrow(1, 0, N).fill_(std::numeric_limits<double>::quiet_NaN());
                        cuda::set_device(0);
                        cuda::gemm(dt, ta, tb, M, N, K, 0.5, a.raw_data(), ta ? M : K, b.raw_data(), tb ? K : N, beta,
                                   c.raw_data(), ldc);
                        Tensor got = ref64(c);
                        Tensor ar = ref64(a), br = ref64(b);
                        Tensor want = matmul(ta ? ar.t() : ar, tb ? br.t() : br);
                        want = want * 0.5 + c0.narrow(1, 0, N) * beta;
                        BOOST_TEST(all_finite(got.narrow(1, 0, N)));
                        BOOST_TEST(rel_err(got.narrow(1, 0, N).contiguous(), want) < tol_for(dt));
                        BOOST_TEST(max_abs_diff(got.narrow(1, N, 3).contiguous(), c0.narrow(1, N, 3).contiguous()) == 0.0,
                                   "gemm wrote past N into the padding");
                    }
                }
    // K = 0 with beta = 0: an empty sum, C = 0 without reading the NaNs there
    for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
        Tensor c = full({5, 4}, std::numeric_limits<double>::quiet_NaN(), dt, kGpu);
        Tensor x = randn({5, 4}, g, DType::f64).to(dt).to(kGpu);
        cuda::gemm(dt, false, false, 5, 4, 0, 1.0, x.raw_data(), 1, x.raw_data(), 4, 0.0, c.raw_data(), 4);
        BOOST_TEST(max_abs_diff(c.to(Device::cpu()), zeros({5, 4}, dt)) == 0.0);
    }
}

BOOST_AUTO_TEST_CASE(strided_batched_with_broadcast_operand) {
    // A shared by every batch entry (strideA = 0), B and C strided; against one CPU product each
    Generator g(32);
    const int64_t batch = 5, M = 9, N = 17, K = 33;
    for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
        BOOST_TEST_CONTEXT(dt) {
            Tensor a = randn({M, K}, g, DType::f64).to(dt).to(kGpu);
            Tensor b = randn({batch, K, N}, g, DType::f64).to(dt).to(kGpu);
            Tensor c = full({batch, M, N}, std::numeric_limits<double>::quiet_NaN(), dt, kGpu);
            cuda::set_device(0);
            cuda::gemm_strided_batched(dt, false, false, M, N, K, 1.0, a.raw_data(), K, 0, b.raw_data(), N, K * N, 0.0,
                                       c.raw_data(), N, M * N, batch);
            Tensor want = matmul(ref64(a), ref64(b));
            BOOST_TEST(rel_err(c.to(Device::cpu()), want) < tol_for(dt));
        }
    }
}

BOOST_AUTO_TEST_CASE(lt_plans_are_cached_per_shape) {
    Generator g(41);
    SwitchGuard guard;
    cuda::set_gemm_use_lt(true);
    cuda::clear_gemm_cache();
    Tensor a = randn({64, 96}, g, DType::f64).to(DType::bf16).to(kGpu);
    Tensor b = randn({96, 80}, g, DType::f64).to(DType::bf16).to(kGpu);
    const auto s0 = cuda::gemm_stats();
    Tensor o1 = matmul(a, b);
    Tensor o2 = matmul(a, b);
    const auto s1 = cuda::gemm_stats();
    BOOST_TEST(s1.heuristic_queries - s0.heuristic_queries == 1, "one heuristic query for a repeated shape");
    BOOST_TEST(s1.cached_shapes == 1);
    BOOST_TEST(s1.lt_no_algorithm == s0.lt_no_algorithm, "cuBLASLt offered no algorithm for a plain bf16 GEMM");
    BOOST_TEST(s1.lt_calls - s0.lt_calls == 2);
    BOOST_TEST(max_abs_diff(o1.to(Device::cpu()), o2.to(Device::cpu())) == 0.0, "same plan, same bits");
    // another shape, and the same shape from a misaligned view: each a plan of its own
    Tensor wide = randn({64, 101}, g, DType::f64).to(DType::bf16).to(kGpu);
    check_values(DType::bf16, wide.narrow(1, 5, 96), b, "misaligned view");
    check_values(DType::bf16, a, randn({96, 81}, g, DType::f64).to(DType::bf16).to(kGpu), "new shape");
    const auto s2 = cuda::gemm_stats();
    BOOST_TEST(s2.heuristic_queries - s1.heuristic_queries == 2);
    BOOST_TEST_MESSAGE("cuBLASLt plan cache: " << s2.cached_shapes << " shapes, " << s2.heuristic_queries
                                               << " heuristic queries, " << s2.lt_no_algorithm << " without an Lt algorithm");
}

BOOST_AUTO_TEST_CASE(tuned_plans_time_candidates_outside_captures) {
    // RN_GEMM_TUNE=8 (Note [Tuned plans], cuda/matmul.cpp): a new shape's first eager call
    // times the heuristic's candidates on a scratch output and keeps the fastest. Nothing is
    // timed while a CUDA graph records (the captured product takes the heuristic's first);
    // C is written once, so beta = 1 accumulates once; values as the CPU's.
    Generator g(44);
    SwitchGuard guard;
    cuda::set_gemm_use_lt(true);
    const ScopedEnv tune("RN_GEMM_TUNE", "8");
    cuda::clear_gemm_cache();
    Tensor a = randn({1024, 768}, g, DType::f64).to(DType::bf16).to(kGpu);
    Tensor b = randn({768, 2304}, g, DType::f64).to(DType::bf16).to(kGpu);
    const Tensor want = matmul(ref64(a), ref64(b));
    const auto s0 = cuda::gemm_stats();
    cuda::Graph graph(0);
    Tensor captured;
    std::string why;
    BOOST_REQUIRE_MESSAGE(graph.capture([&] { captured = matmul(a, b); }, &why), why);
    const auto s1 = cuda::gemm_stats();
    BOOST_TEST(s1.tuned_shapes == s0.tuned_shapes, "a plan was tuned while a graph recorded");
    graph.replay();
    BOOST_TEST(rel_err(captured.to(Device::cpu()), want) < tol_for(DType::bf16));
    Tensor eager = matmul(a, b);
    const auto s2 = cuda::gemm_stats();
    BOOST_TEST(s2.tuned_shapes == s1.tuned_shapes + 1, "the first eager call of a new shape did not tune");
    BOOST_TEST(s2.heuristic_queries == s1.heuristic_queries, "the captured call's plan was not reused");
    BOOST_TEST(rel_err(eager.to(Device::cpu()), want) < tol_for(DType::bf16));
    matmul(a, b);
    BOOST_TEST(cuda::gemm_stats().tuned_shapes == s2.tuned_shapes, "a shape was tuned twice");
    // beta = 1 on a new shape: its first call tunes on scratch, then accumulates into C once
    {
        const int64_t M = 512, N = 384, K = 640;
        Tensor x = randn({M, K}, g, DType::f64).to(DType::bf16).to(kGpu), w = randn({N, K}, g, DType::f64).to(DType::bf16).to(kGpu);
        Tensor c = randn({M, N}, g, DType::f64).to(DType::bf16).to(kGpu);
        const Tensor c0 = ref64(c);
        const int64_t before = cuda::gemm_stats().tuned_shapes;
        cuda::set_device(0);
        cuda::gemm(DType::bf16, false, true, M, N, K, 1.0, x.raw_data(), K, w.raw_data(), K, 1.0, c.raw_data(), N);
        BOOST_TEST(cuda::gemm_stats().tuned_shapes == before + 1);
        const Tensor want_c = matmul(ref64(x), ref64(w).t()) + c0;
        BOOST_TEST(rel_err(ref64(c), want_c) < tol_for(DType::bf16), "C accumulated other than once");
    }
    cuda::clear_gemm_cache();
}

BOOST_AUTO_TEST_CASE(tuned_picks_export_and_pin_the_same_bits) {
    // What `retnet train` keeps beside its checkpoints and a --resume imports (Note [Tuned
    // plans]): the picks of a tuned shape, pinned after the plans are gone and timing is off,
    // give the same bits; the export lists them unchanged; another GPU's are refused, and a
    // damaged algorithm falls back to the heuristic's (right values, counted).
    Generator g(45);
    SwitchGuard guard;
    cuda::set_gemm_use_lt(true);
    struct Reset {
        ~Reset() {  // a header alone pins nothing
            const std::string e = cuda::gemm_tuned_export();
            std::string ignored;
            cuda::gemm_tuned_import(e.substr(0, e.find("\nbf16") + 1), "reset", &ignored);
            cuda::set_gemm_tune(0);
            cuda::clear_gemm_cache();
        }
    } reset;
    cuda::clear_gemm_cache();
    cuda::set_gemm_tune(8);
    const int64_t M = 2048, N = 3072, K = 768;
    Tensor a = randn({M, K}, g, DType::f64).to(DType::bf16).to(kGpu);
    Tensor b = randn({K, N}, g, DType::f64).to(DType::bf16).to(kGpu);
    const Tensor want = matmul(ref64(a), ref64(b));
    const Tensor first = matmul(a, b).to(Device::cpu()).to(DType::f32);
    const auto s1 = cuda::gemm_stats();
    const std::string text = cuda::gemm_tuned_export();
    const GemmPins listed = parse_gemm_pins(text, "export");
    BOOST_TEST(listed.device == cuda::device_name(0));
    bool found = false;
    for (const GemmPin& p : listed.pins) found = found || (p.shape.M == M && p.shape.N == N && p.shape.K == K);
    BOOST_TEST(found, "the tuned shape is not in the export:\n" << text);

    cuda::set_gemm_tune(1);  // as a new process that does not time: only the import decides
    cuda::clear_gemm_cache();
    std::string why;
    BOOST_TEST(cuda::gemm_tuned_import(text, "export", &why) == int64_t(listed.pins.size()), why);
    const Tensor again = matmul(a, b).to(Device::cpu()).to(DType::f32);
    const auto s2 = cuda::gemm_stats();
    BOOST_TEST(s2.pinned_shapes == s1.pinned_shapes + 1);
    BOOST_TEST(s2.tuned_shapes == s1.tuned_shapes);
    BOOST_TEST(s2.pins_failed == s1.pins_failed);
    BOOST_TEST(max_abs_diff(first, again) == 0.0, "the pinned algorithm gave other bits");
    BOOST_TEST(cuda::gemm_tuned_export() == text);

    std::string other = text;
    other.replace(other.find("device ") + 7, listed.device.size(), "Some Other GPU");
    why.clear();
    BOOST_TEST(cuda::gemm_tuned_import(other, "other", &why) == 0);
    BOOST_TEST(why.find("Some Other GPU") != std::string::npos, why);

    GemmPins damaged = listed;
    for (GemmPin& p : damaged.pins) p.algo.fill(0xffffffffffffffffull);
    BOOST_TEST(cuda::gemm_tuned_import(format_gemm_pins(damaged), "damaged", &why) == int64_t(damaged.pins.size()));
    const Tensor fallback = matmul(a, b);
    BOOST_TEST(cuda::gemm_stats().pins_failed == s2.pins_failed + 1);
    BOOST_TEST(rel_err(ref64(fallback), want) < tol_for(DType::bf16));
}

BOOST_AUTO_TEST_CASE(bf16_fallback_path_matches) {
    // the cublasGemmEx path that runs when Lt has no algorithm, forced on
    Generator g(42);
    SwitchGuard guard;
    cuda::set_gemm_use_lt(false);
    const auto s0 = cuda::gemm_stats();
    for (const Case& c : kShapesBatched)
        check_values(DType::bf16, make_input(c.a, DType::bf16, Layout::transposed, g),
                     make_input(c.b, DType::bf16, Layout::contiguous, g), "gemm_ex fallback");
    const auto s1 = cuda::gemm_stats();
    BOOST_TEST(s1.lt_calls == s0.lt_calls, "Lt used while switched off");
    BOOST_TEST(s1.gemm_ex_calls > s0.gemm_ex_calls);
}

BOOST_AUTO_TEST_CASE(few_row_products_take_the_gemv_kernel) {
    Generator g(43);
    SwitchGuard guard;
    cuda::set_gemv_enabled(true);
    struct S {
        int64_t M, N, K;
    };
    // the small preset's decode products (QKVG stacked, out / fc2, fc1+gate stacked, LM head)
    // and odd ones: N not a multiple of the 8 columns a block, K with a tail of pieces
    const std::vector<S> shapes = {{1, 4128, 768}, {2, 768, 1296}, {4, 1024, 512}, {1, 32000, 768},
                                   {3, 33, 1000},  {4, 7, 64},     {4, 100, 4104}, {1, 3, 8}};
    for (DType dt : {DType::f32, DType::bf16}) {
        const int64_t v = dt == DType::f32 ? 4 : 8;
        for (const S& s : shapes) {
            if (s.K % v) continue;
            BOOST_TEST_CONTEXT(dt << " M " << s.M << " N " << s.N << " K " << s.K) {
                Tensor x = randn({s.M, s.K}, g, DType::f64).to(dt).to(kGpu);
                Tensor w = randn({s.N, s.K}, g, DType::f64).to(dt).to(kGpu);
                const int64_t before = cuda::gemm_stats().gemv_calls;
                Tensor out = matmul(x, w.t());
                BOOST_TEST(cuda::gemm_stats().gemv_calls == before + 1, "the few-row kernel did not run");
                BOOST_TEST(all_finite(out));
                const double err = rel_err(out.to(Device::cpu()), matmul(ref64(x), ref64(w).t()));
                BOOST_TEST(err < tol_for(dt), "vs CPU: rel err " << err);
                cuda::set_gemv_enabled(false);
                Tensor blas = matmul(x, w.t());
                cuda::set_gemv_enabled(true);
                BOOST_TEST(rel_err(out.to(Device::cpu()), blas.to(Device::cpu())) < tol_for(dt), "vs cuBLAS");
            }
        }
        // rows of a wider (aligned) buffer, and a 3-d input whose leading dims fold into M
        Tensor wide = randn({3, 776}, g, DType::f64).to(dt).to(kGpu);
        Tensor w = randn({50, 768}, g, DType::f64).to(dt).to(kGpu);
        const int64_t before = cuda::gemm_stats().gemv_calls;
        check_values(dt, wide.narrow(1, 0, 768), w.t(), "rows with lda > K");
        check_values(dt, randn({2, 1, 768}, g, DType::f64).to(dt).to(kGpu), w.t(), "[2, 1, K] · Wᵀ");
        BOOST_TEST(cuda::gemm_stats().gemv_calls == before + 2);
        // refused: stays with cuBLAS, values still right
        const int64_t before_refused = cuda::gemm_stats().gemv_calls;
        check_values(dt, randn({9, 768}, g, DType::f64).to(dt).to(kGpu), w.t(), "9 rows");
        check_values(dt, wide.narrow(1, 3, 768), w.t(), "misaligned x");
        check_values(dt, randn({2, 770}, g, DType::f64).to(dt).to(kGpu),
                     randn({50, 770}, g, DType::f64).to(dt).to(kGpu).t(), "K = 770");
        check_values(dt, randn({2, 768}, g, DType::f64).to(dt).to(kGpu), randn({768, 50}, g, DType::f64).to(dt).to(kGpu),
                     "W stored [K, N]");
        check_values(dt, randn({8, 768}, g, DType::f64).to(dt).to(kGpu),
                     randn({2592, 768}, g, DType::f64).to(dt).to(kGpu).t(), "8 rows: cuBLAS is faster");
        BOOST_TEST(cuda::gemm_stats().gemv_calls == before_refused, "a refused shape ran the few-row kernel");
        // the kernel itself for 5–8 rows (rn::matmul gives those to cuBLAS), against the CPU
        for (int64_t M : {5, 8}) {
            Tensor x = randn({M, 768}, g, DType::f64).to(dt).to(kGpu);
            Tensor out = empty({M, 50}, dt, kGpu);
            BOOST_REQUIRE(cuda::gemv_rows(dt, M, 50, 768, 1.0, x.raw_data(), 768, w.raw_data(), 768, out.raw_data(), 50));
            const double err = rel_err(out.to(Device::cpu()), matmul(ref64(x), ref64(w).t()));
            BOOST_TEST(err < tol_for(dt), "gemv_rows M " << M << ": rel err " << err);
        }
    }
    const int64_t before = cuda::gemm_stats().gemv_calls;
    check_values(DType::f64, randn({2, 64}, g, DType::f64).to(kGpu), randn({16, 64}, g, DType::f64).to(kGpu).t(), "f64");
    BOOST_TEST(cuda::gemm_stats().gemv_calls == before);
}

BOOST_AUTO_TEST_CASE(tf32_is_opt_in) {
    Generator g(51);
    SwitchGuard guard;
    BOOST_TEST(!cuda::allow_tf32(), "TF32 must be off by default");
    cuda::set_allow_tf32(false);
    // K = 4097 of random values: exact fp32 lands near 1e-7, TF32 (10-bit mantissa) near 1e-4
    Tensor a = randn({256, 4097}, g, DType::f32).to(kGpu);
    Tensor b = randn({4097, 192}, g, DType::f32).to(kGpu);
    Tensor want = matmul(ref64(a), ref64(b));
    Tensor exact = matmul(a, b).to(Device::cpu());
    const double e_exact = rel_err(exact, want);
    BOOST_TEST(e_exact < 1e-5, "default f32 path is not exact fp32: rel err " << e_exact);

    Tensor hb = a.to(DType::bf16), hbb = b.to(DType::bf16);
    Tensor bf_off = matmul(hb, hbb).to(Device::cpu());
    cuda::set_allow_tf32(true);
    Tensor fast = matmul(a, b).to(Device::cpu());
    Tensor bf_on = matmul(hb, hbb).to(Device::cpu());
    const double e_fast = rel_err(fast, want);
    BOOST_TEST(e_fast < 5e-3, "TF32 result off by " << e_fast);
    BOOST_TEST(max_abs_diff(bf_on, bf_off) == 0.0, "the TF32 switch changed a bf16 product");
    BOOST_TEST_MESSAGE("f32 rel err: exact " << e_exact << ", TF32 opt-in " << e_fast
                                             << (e_fast > 10 * e_exact ? " (TF32 kernels ran)" : " (cuBLAS kept fp32 here)"));

    cuda::set_allow_tf32(false);
    Tensor again = matmul(a, b).to(Device::cpu());
    BOOST_TEST(max_abs_diff(again, exact) == 0.0, "switching TF32 off again did not restore the exact path");
}

BOOST_AUTO_TEST_CASE(errors_say_what_came) {
    Tensor a = ones({2, 3}, DType::f32, kGpu);
    RN_CHECK_THROWS_WITH(matmul(a, ones({3, 2})), "matmul: tensors on different devices");
    RN_CHECK_THROWS_WITH(matmul(ones({2, 3}, DType::i32, kGpu), ones({3, 2}, DType::i32, kGpu)),
                         "CUDA matmul takes f32, f64 or bf16, got i32");
    RN_CHECK_THROWS_WITH(matmul(a, ones({4, 2}, DType::f32, kGpu)), "inner dims differ");
    // the CPU still refuses bf16, with its own message
    RN_CHECK_THROWS_WITH(matmul(ones({2, 3}, DType::bf16), ones({3, 2}, DType::bf16)),
                         "CPU matmul takes f32 or f64, got bf16");
    cuda::set_device(0);
    RN_CHECK_THROWS_WITH(cuda::gemm(DType::f32, false, false, 2, 3, 3, 1.0, a.raw_data(), 2, a.raw_data(), 3, 0.0,
                                    a.raw_data(), 3),
                         "lda=2 is below K");
    RN_CHECK_THROWS_WITH(cuda::gemm(DType::i64, false, false, 1, 1, 1, 1.0, a.raw_data(), 1, a.raw_data(), 1, 0.0,
                                    a.raw_data(), 1),
                         "takes f32, f64 or bf16, got i64");
}

BOOST_AUTO_TEST_SUITE_END()
