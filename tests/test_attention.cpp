// tests/test_attention.cpp — causal attention on the CPU: forward values and every gradient
// against a naive reference built from primitive ops (softmax(QKᵀ·s + causal mask)·V, GQA by
// repeating the kv heads) for f64 and f32 over T = 1, 7, 64, 65, 130 and Tq < Tk, GQA ratios
// 1, 2, 4; f64 gradcheck (GQA, Tq < Tk, non-contiguous inputs); the OpenMP path with
// bit-identical results run to run and across thread counts; T = 1024 with logits in the
// hundreds; T = 4097; bf16 computed in f32; decode = the last row of the full pass;
// prefill, chunked prefill and decode through kv_cache_write = one full pass; the errors.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <sstream>

#include <omp.h>

#include "ops/attention.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {
// softmax(q kᵀ·s + mask) v with query i at key position Tk − Tq + i; built from matmul,
// masked_fill and softmax, the kv heads repeated per group (expand: its backward sums the
// group's query heads, as attention's must)
Tensor ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale = 0) {
    const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
    const int64_t Hkv = k.size(1), Tk = k.size(2), rep = Hq / Hkv;
    if (scale == 0) scale = 1 / std::sqrt(double(D));
    Tensor kr = k.unsqueeze(2).expand({B, Hkv, rep, Tk, D}).reshape({B, Hq, Tk, D});
    Tensor vr = v.unsqueeze(2).expand({B, Hkv, rep, Tk, D}).reshape({B, Hq, Tk, D});
    std::vector<double> m(size_t(Tq * Tk));
    for (int64_t i = 0; i < Tq; ++i)
        for (int64_t j = 0; j < Tk; ++j) m[size_t(i * Tk + j)] = j > i + Tk - Tq ? 1.0 : 0.0;
    Tensor mask = from_vector<double>(m, {Tq, Tk});
    Tensor s = masked_fill(matmul(q, kr.transpose(-1, -2)) * scale, mask, -INFINITY);
    return matmul(softmax(s, -1), vr);
}

struct Result {
    Tensor out, dq, dk, dv;
};
// forward and backward of sum(f(q, k, v) ⊙ w) on fresh leaves with the given values
template <typename F>
Result run(F f, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w) {
    Tensor ql = q.detach().clone().requires_grad_(), kl = k.detach().clone().requires_grad_();
    Tensor vl = v.detach().clone().requires_grad_();
    Tensor out = f(ql, kl, vl);
    sum(out * w).backward();
    return {out.detach(), ql.grad(), kl.grad(), vl.grad()};
}
Result run_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, double scale = 0) {
    AttentionOptions o;
    o.scale = scale;
    return run([&](const Tensor& a, const Tensor& b, const Tensor& c) { return attention(a, b, c, o); }, q, k, v, w);
}
Result run_ref(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, double scale = 0) {
    return run([&](const Tensor& a, const Tensor& b, const Tensor& c) { return ref_attention(a, b, c, scale); }, q, k,
               v, w);
}

struct Inputs {
    Tensor q, k, v;
};
Inputs make_inputs(Generator& g, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D,
                   DType dt = DType::f64) {
    return {uniform({B, Hq, Tq, D}, -1, 1, g, DType::f64).to(dt), uniform({B, Hkv, Tk, D}, -1, 1, g, DType::f64).to(dt),
            uniform({B, Hkv, Tk, D}, -1, 1, g, DType::f64).to(dt)};
}

void expect_rel(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
    BOOST_REQUIRE(a.defined() && b.defined());
    const double e = rel_err(a.to(DType::f64), b.to(DType::f64));
    BOOST_TEST(e <= tol, what << ": relative error " << e << " > " << tol);
}
void expect_abs(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
    BOOST_REQUIRE(a.defined() && b.defined());
    const double e = max_abs_diff(a.to(DType::f64), b.to(DType::f64));
    BOOST_TEST(e <= tol, what << ": max |diff| " << e << " > " << tol);
}
std::string tag(int64_t Tq, int64_t Tk, int64_t rep, DType dt) {
    std::ostringstream os;
    os << dt << " Tq=" << Tq << " Tk=" << Tk << " rep=" << rep;
    return os.str();
}
Tensor i64s(const std::vector<int64_t>& v) { return from_vector<int64_t>(v, {int64_t(v.size())}); }

const std::pair<int64_t, int64_t> kLengths[] = {{1, 1}, {7, 7}, {64, 64}, {65, 65}, {130, 130},
                                                 {1, 9}, {7, 20}, {65, 130}, {3, 64}};
}  // namespace

BOOST_AUTO_TEST_SUITE(attention_cpu)

BOOST_AUTO_TEST_CASE(forward_and_gradients_match_reference) {
    // every query block / key tile boundary (64) is straddled by some Tq, Tk, and Tk − Tq
    // takes values that do not divide the tile
    Generator g(1);
    for (DType dt : {DType::f64, DType::f32}) {
        for (auto [Tq, Tk] : kLengths) {
            for (int64_t rep : {1, 2, 4}) {
                const int64_t B = 2, Hkv = 2, Hq = Hkv * rep, D = 16;
                Inputs in = make_inputs(g, B, Hq, Hkv, Tq, Tk, D, dt);
                Tensor w = uniform({B, Hq, Tq, D}, -1, 1, g, DType::f64).to(dt);
                Result got = run_attention(in.q, in.k, in.v, w);
                // the reference in f64 on the same (rounded) values: the f32 op is measured
                // against the exact answer, not against another f32 rounding
                Result want = run_ref(in.q.to(DType::f64), in.k.to(DType::f64), in.v.to(DType::f64), w.to(DType::f64));
                const bool f64 = dt == DType::f64;
                const std::string t = tag(Tq, Tk, rep, dt);
                BOOST_TEST(got.out.dtype() == dt);
                BOOST_TEST(got.out.shape() == in.q.shape());
                expect_abs(got.out, want.out, f64 ? 1e-14 : 2e-6, t + " out");
                expect_rel(got.dq, want.dq, f64 ? 1e-12 : 2e-5, t + " dq");
                expect_rel(got.dk, want.dk, f64 ? 1e-12 : 2e-5, t + " dk");
                expect_rel(got.dv, want.dv, f64 ? 1e-12 : 2e-5, t + " dv");
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(scale_option_and_softmax_rows) {
    Generator g(2);
    Inputs in = make_inputs(g, 1, 2, 1, 9, 12, 8);
    Tensor w = uniform({1, 2, 9, 8}, -1, 1, g, DType::f64);
    for (double s : {0.0, 0.3, 2.5}) {
        Result got = run_attention(in.q, in.k, in.v, w, s), want = run_ref(in.q, in.k, in.v, w, s);
        expect_abs(got.out, want.out, 1e-14, "scale out");
        expect_rel(got.dq, want.dq, 1e-12, "scale dq");
        expect_rel(got.dk, want.dk, 1e-12, "scale dk");
    }
    // the scale matters (a kernel ignoring it fails here), and 0 is 1/sqrt(D)
    AttentionOptions o;
    o.scale = 2.5;
    BOOST_TEST(max_abs_diff(attention(in.q, in.k, in.v, o), attention(in.q, in.k, in.v)) > 1e-3);
    o.scale = 1 / std::sqrt(8.0);
    BOOST_TEST(max_abs_diff(attention(in.q, in.k, in.v, o), attention(in.q, in.k, in.v)) == 0);
    // with v = one-hot keys, the output rows are the probabilities: they sum to 1 and the
    // first query (at position Tk − Tq = 3) puts no weight past key 3
    Tensor eye = zeros({1, 1, 12, 12}, DType::f64);
    for (int64_t j = 0; j < 12; ++j) eye.narrow(2, j, 1).narrow(3, j, 1).fill_(1.0);
    Tensor p = attention(uniform({1, 1, 9, 12}, -2, 2, g, DType::f64), uniform({1, 1, 12, 12}, -2, 2, g, DType::f64),
                         eye);
    auto pv = p.to_vector<double>();
    for (int64_t i = 0; i < 9; ++i) {
        double rs = 0;
        for (int64_t j = 0; j < 12; ++j) {
            const double x = pv[size_t(i * 12 + j)];
            rs += x;
            if (j > i + 3) BOOST_TEST(x == 0.0);
            else BOOST_TEST(x > 0.0);
        }
        BOOST_TEST(std::abs(rs - 1) < 1e-14);
    }
}

BOOST_AUTO_TEST_CASE(gradcheck_gqa_offsets_noncontiguous) {
    Generator g(3);
    struct Case {
        int64_t B, Hq, Hkv, Tq, Tk, D;
        bool nc;
        double scale;
    };
    for (const Case& c : {Case{1, 2, 1, 3, 5, 3, true, 0.0}, Case{2, 2, 2, 4, 4, 2, false, 0.0},
                          Case{1, 4, 2, 2, 3, 4, true, 0.7}, Case{1, 3, 1, 1, 1, 2, false, 0.0}}) {
        Tensor q = leaf64({c.B, c.Hq, c.Tq, c.D}, g, c.nc, -1.5, 1.5);
        Tensor k = leaf64({c.B, c.Hkv, c.Tk, c.D}, g, c.nc, -1.5, 1.5);
        Tensor v = leaf64({c.B, c.Hkv, c.Tk, c.D}, g, c.nc);
        if (c.nc) BOOST_TEST(!q.is_contiguous());
        AttentionOptions o;
        o.scale = c.scale;
        RN_CHECK_GRADCHECK([o](const std::vector<Tensor>& x) { return attention(x[0], x[1], x[2], o); },
                           (std::vector<Tensor>{q, k, v}));
    }
    // only some inputs wanting a gradient
    Tensor q = leaf64({1, 2, 3, 2}, g), k = uniform({1, 1, 4, 2}, -1, 1, g, DType::f64);
    Tensor v = leaf64({1, 1, 4, 2}, g, true);
    RN_CHECK_GRADCHECK([](const std::vector<Tensor>& x) { return attention(x[0], x[1], x[2]); },
                       (std::vector<Tensor>{q, k, v}));
}

BOOST_AUTO_TEST_CASE(openmp_path_is_deterministic) {
    // B·Hq·T²·D ≈ 4.3M multiply-adds: far past kParallelMin, with 3 query blocks and 3 key
    // tiles per head. Results are bit-identical run to run and for 1 thread vs all.
    Generator g(4);
    const int64_t B = 2, Hq = 4, Hkv = 2, T = 130, D = 32;
    Inputs in = make_inputs(g, B, Hq, Hkv, T, T, D, DType::f32);
    Tensor w = uniform({B, Hq, T, D}, -1, 1, g, DType::f32);
    Result a = run_attention(in.q, in.k, in.v, w), b = run_attention(in.q, in.k, in.v, w);
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    Result c = run_attention(in.q, in.k, in.v, w);
    omp_set_num_threads(nt);
    BOOST_TEST_MESSAGE("openmp_path_is_deterministic: " << nt << " threads vs 1");
    for (const Result* r : {&b, &c}) {
        BOOST_TEST(max_abs_diff(r->out, a.out) == 0);
        BOOST_TEST(max_abs_diff(r->dq, a.dq) == 0);
        BOOST_TEST(max_abs_diff(r->dk, a.dk) == 0);
        BOOST_TEST(max_abs_diff(r->dv, a.dv) == 0);
    }
    Result want = run_ref(in.q.to(DType::f64), in.k.to(DType::f64), in.v.to(DType::f64), w.to(DType::f64));
    expect_abs(a.out, want.out, 2e-6, "omp out");
    expect_rel(a.dq, want.dq, 2e-5, "omp dq");
    expect_rel(a.dk, want.dk, 2e-5, "omp dk");
    expect_rel(a.dv, want.dv, 2e-5, "omp dv");
}

BOOST_AUTO_TEST_CASE(long_sequence_with_large_logits_is_stable) {
    // |logits| up to a few hundred: exp overflows f32 at 88 without the running max
    Generator g(5);
    const int64_t T = 1024, D = 16;
    Inputs in = make_inputs(g, 1, 2, 1, T, T, D);
    in.q = in.q * 60.0;
    Tensor w = uniform({1, 2, T, D}, -1, 1, g, DType::f64);
    Tensor logits = matmul(in.q, in.k.transpose(-1, -2)) / std::sqrt(double(D));
    BOOST_TEST(max(abs(logits)).item() > 100.0);
    Result want = run_ref(in.q, in.k, in.v, w);
    Result got = run_attention(in.q, in.k, in.v, w);
    expect_abs(got.out, want.out, 1e-12, "T=1024 f64 out");
    expect_rel(got.dq, want.dq, 1e-10, "T=1024 f64 dq");
    expect_rel(got.dk, want.dk, 1e-10, "T=1024 f64 dk");
    expect_rel(got.dv, want.dv, 1e-10, "T=1024 f64 dv");
    // f32 on the f32-rounded inputs against f64 on the same values
    Inputs in32{in.q.to(DType::f32), in.k.to(DType::f32), in.v.to(DType::f32)};
    Result want32 = run_ref(in32.q.to(DType::f64), in32.k.to(DType::f64), in32.v.to(DType::f64), w);
    Result got32 = run_attention(in32.q, in32.k, in32.v, w.to(DType::f32));
    BOOST_TEST(std::isfinite(sum(abs(got32.out)).item()));
    expect_abs(got32.out, want32.out, 1e-4, "T=1024 f32 out");
    expect_rel(got32.dq, want32.dq, 1e-3, "T=1024 f32 dq");
    expect_rel(got32.dk, want32.dk, 1e-3, "T=1024 f32 dk");
    expect_rel(got32.dv, want32.dv, 1e-4, "T=1024 f32 dv");
}

BOOST_AUTO_TEST_CASE(very_long_sequence_rows_match) {
    // T = 4097 (64 tiles + 1): rows at the start, the middle and the end against the
    // reference on just those rows (queries i0 … i0+n−1 over keys 0 … i0+n−1)
    Generator g(6);
    const int64_t T = 4097, D = 8;
    Inputs in = make_inputs(g, 1, 1, 1, T, T, D, DType::f32);
    Tensor out = attention(in.q, in.k, in.v);
    for (int64_t i0 : {int64_t(0), int64_t(2046), T - 3}) {
        const int64_t n = 3;
        Tensor want = ref_attention(in.q.narrow(2, i0, n).to(DType::f64), in.k.narrow(2, 0, i0 + n).to(DType::f64),
                                    in.v.narrow(2, 0, i0 + n).to(DType::f64));
        expect_abs(out.narrow(2, i0, n), want, 2e-6, "T=4097 rows at " + std::to_string(i0));
    }
}

BOOST_AUTO_TEST_CASE(bf16_is_computed_in_f32) {
    Generator g(7);
    Inputs in = make_inputs(g, 2, 4, 2, 33, 40, 16, DType::bf16);
    Tensor w = uniform({2, 4, 33, 16}, -1, 1, g, DType::f64).to(DType::bf16);
    Result got = run_attention(in.q, in.k, in.v, w);
    Result want = run_attention(in.q.to(DType::f32), in.k.to(DType::f32), in.v.to(DType::f32), w.to(DType::f32));
    BOOST_TEST(got.out.dtype() == DType::bf16);
    BOOST_TEST(got.dk.dtype() == DType::bf16);
    // one rounding to bf16 of |values| < 1: half an ulp, 2^-9
    expect_abs(got.out, want.out, 1.0 / 512, "bf16 out");
    expect_rel(got.dq, want.dq, 1e-2, "bf16 dq");
    expect_rel(got.dk, want.dk, 1e-2, "bf16 dk");
    expect_rel(got.dv, want.dv, 1e-2, "bf16 dv");
}

BOOST_AUTO_TEST_CASE(decode_is_the_last_row_of_the_full_pass) {
    Generator g(8);
    const int64_t S = 4, B = 3, Hq = 4, Hkv = 2, Tmax = 40, D = 8;
    for (DType dt : {DType::f64, DType::f32}) {
        // the cache is random everywhere: positions past a sequence's length must be ignored
        Tensor kc = uniform({S, Hkv, Tmax, D}, -1, 1, g, DType::f64).to(dt);
        Tensor vc = uniform({S, Hkv, Tmax, D}, -1, 1, g, DType::f64).to(dt);
        Tensor q = uniform({B, Hq, D}, -1, 1, g, DType::f64).to(dt);
        const std::vector<int64_t> lens = {17, 1, Tmax};
        Tensor out = attention_decode(q, kc, vc, i64s(lens));
        BOOST_TEST(out.shape() == q.shape());
        BOOST_TEST(out.dtype() == dt);
        for (int64_t b = 0; b < B; ++b) {
            const int64_t L = lens[size_t(b)];
            Tensor qfull = concat({uniform({1, Hq, L - 1, D}, -1, 1, g, DType::f64).to(dt),
                                   q.narrow(0, b, 1).unsqueeze(2)}, 2);
            Tensor full = attention(qfull, kc.narrow(0, b, 1).narrow(2, 0, L), vc.narrow(0, b, 1).narrow(2, 0, L));
            expect_abs(out.narrow(0, b, 1), full.narrow(2, L - 1, 1).squeeze(2), dt == DType::f64 ? 1e-15 : 1e-6,
                       "decode b=" + std::to_string(b));
        }
        // a given scale reaches the kernel
        Tensor o2 = attention_decode(q, kc, vc, i64s(lens), 3.0);
        BOOST_TEST(max_abs_diff(o2, out) > 1e-3);
    }
}

BOOST_AUTO_TEST_CASE(prefill_chunk_and_decode_through_the_cache_equal_one_pass) {
    // two sequences of different lengths share one batch: sequence 0 has 7 prompt tokens,
    // sequence 1 has 4 (padded to 7 in the prefill write; its decode overwrites the
    // padding). Every step is compared with one full pass over that sequence.
    Generator g(9);
    const int64_t S = 3, Hq = 4, Hkv = 2, Tmax = 16, D = 8;
    const int64_t L[2] = {12, 9}, P[2] = {7, 4};
    std::vector<Inputs> seq;
    std::vector<Tensor> full;
    for (int b = 0; b < 2; ++b) {
        seq.push_back(make_inputs(g, 1, Hq, Hkv, L[b], L[b], D));
        full.push_back(attention(seq[size_t(b)].q, seq[size_t(b)].k, seq[size_t(b)].v));
    }
    Tensor kc = zeros({S, Hkv, Tmax, D}, DType::f64), vc = zeros({S, Hkv, Tmax, D}, DType::f64);
    // prefill: the two prompts written at position 0 (sequence 1's rows 4…6 are junk)
    Tensor junk = uniform({1, Hkv, 3, D}, 5, 9, g, DType::f64);
    Tensor pk = concat({seq[0].k.narrow(2, 0, 7), concat({seq[1].k.narrow(2, 0, 4), junk}, 2)}, 0);
    Tensor pv = concat({seq[0].v.narrow(2, 0, 7), concat({seq[1].v.narrow(2, 0, 4), junk}, 2)}, 0);
    kv_cache_write(kc, pk, i64s({0, 0}));
    kv_cache_write(vc, pv, i64s({0, 0}));
    for (int b = 0; b < 2; ++b) {
        // the prompt's attention over the cache equals the full pass's first rows
        Tensor out = attention(seq[size_t(b)].q.narrow(2, 0, P[b]), kc.narrow(0, b, 1).narrow(2, 0, P[b]),
                               vc.narrow(0, b, 1).narrow(2, 0, P[b]));
        expect_abs(out, full[size_t(b)].narrow(2, 0, P[b]), 1e-15, "prefill b=" + std::to_string(b));
    }
    // decode: both sequences one token a step, at their own positions
    int64_t pos[2] = {P[0], P[1]};
    while (pos[0] < L[0] - 2) {
        Tensor xk = concat({seq[0].k.narrow(2, pos[0], 1), seq[1].k.narrow(2, pos[1], 1)}, 0);
        Tensor xv = concat({seq[0].v.narrow(2, pos[0], 1), seq[1].v.narrow(2, pos[1], 1)}, 0);
        kv_cache_write(kc, xk, i64s({pos[0], pos[1]}));
        kv_cache_write(vc, xv, i64s({pos[0], pos[1]}));
        Tensor qd = concat({seq[0].q.narrow(2, pos[0], 1), seq[1].q.narrow(2, pos[1], 1)}, 0).squeeze(2);
        Tensor out = attention_decode(qd, kc, vc, i64s({pos[0] + 1, pos[1] + 1}));
        for (int b = 0; b < 2; ++b)
            expect_abs(out.narrow(0, b, 1), full[size_t(b)].narrow(2, pos[b], 1).squeeze(2), 1e-15,
                       "decode b=" + std::to_string(b) + " pos=" + std::to_string(pos[b]));
        ++pos[0];
        ++pos[1];
    }
    // the last two tokens of sequence 0 as a chunk (Tq = 2 < Tk = 12) over the cache
    Tensor x2 = seq[0].k.narrow(2, pos[0], 2), v2 = seq[0].v.narrow(2, pos[0], 2);
    kv_cache_write(kc, x2, i64s({pos[0]}));
    kv_cache_write(vc, v2, i64s({pos[0]}));
    Tensor out = attention(seq[0].q.narrow(2, pos[0], 2), kc.narrow(0, 0, 1).narrow(2, 0, L[0]),
                           vc.narrow(0, 0, 1).narrow(2, 0, L[0]));
    expect_abs(out, full[0].narrow(2, pos[0], 2), 1e-15, "chunk");
    // the cache holds exactly the sequences' keys, and row 2 was never written
    expect_abs(kc.narrow(0, 0, 1).narrow(2, 0, L[0]), seq[0].k, 0, "cache row 0");
    expect_abs(kc.narrow(0, 1, 1).narrow(2, 0, pos[1]), seq[1].k.narrow(2, 0, pos[1]), 0, "cache row 1");
    BOOST_TEST(max(abs(kc.narrow(0, 2, 1))).item() == 0.0);
}

BOOST_AUTO_TEST_CASE(errors_name_the_op_and_what_came) {
    Generator g(10);
    Tensor q = uniform({1, 4, 3, 8}, -1, 1, g, DType::f64), k = uniform({1, 2, 5, 8}, -1, 1, g, DType::f64);
    Tensor v = k.clone();
    RN_CHECK_THROWS_WITH(attention(q.squeeze(0), k, v),
                         "attention: q must be [B,Hq,Tq,D] (4 dims), got shape [4, 3, 8]");
    RN_CHECK_THROWS_WITH(attention(q, k.squeeze(0), v.squeeze(0)), "attention: k must be [B,Hkv,Tk,D]");
    RN_CHECK_THROWS_WITH(attention(q, k, v.narrow(2, 0, 4)), "attention: v must have k's shape [1, 2, 5, 8]");
    RN_CHECK_THROWS_WITH(attention(q, k.to(DType::f32), v.to(DType::f32)), "attention: dtypes differ: f64 vs f32");
    RN_CHECK_THROWS_WITH(attention(q, k.narrow(3, 0, 4), v.narrow(3, 0, 4)), "same head dim D");
    RN_CHECK_THROWS_WITH(attention(q, k.narrow(2, 0, 2), v.narrow(2, 0, 2)), "got Tq = 3 and Tk = 2");
    RN_CHECK_THROWS_WITH(attention(q, concat({k, k}, 0), concat({v, v}, 0)), "same batch size");
    Tensor k3 = uniform({1, 3, 5, 8}, -1, 1, g, DType::f64);
    RN_CHECK_THROWS_WITH(attention(q, k3, k3), "q's heads (4) must be a positive multiple of k/v's heads (3)");
    Tensor k8 = uniform({1, 8, 5, 8}, -1, 1, g, DType::f64);
    RN_CHECK_THROWS_WITH(attention(q, k8, k8), "q's heads (4) must be a positive multiple of k/v's heads (8)");
    Tensor qi = zeros({1, 4, 3, 8}, DType::i64), ki = zeros({1, 2, 5, 8}, DType::i64);
    RN_CHECK_THROWS_WITH(attention(qi, ki, ki), "attention: expected a floating tensor");
    AttentionOptions o;
    o.scale = -1;
    RN_CHECK_THROWS_WITH(attention(q, k, v, o), "attention: scale must be finite and ≥ 0");
    RN_CHECK_THROWS_WITH(attention(Tensor(), k, v), "attention: q is an undefined tensor");

    // decode
    Tensor kc = uniform({2, 2, 10, 8}, -1, 1, g, DType::f64), vc = kc.clone();
    Tensor qd = uniform({2, 4, 8}, -1, 1, g, DType::f64);
    RN_CHECK_THROWS_WITH(attention_decode(qd, kc, vc, i64s({3, 0})),
                         "attention_decode: lengths[1] = 0 is outside [1, 10]");
    RN_CHECK_THROWS_WITH(attention_decode(qd, kc, vc, i64s({11, 2})),
                         "attention_decode: lengths[0] = 11 is outside [1, 10]");
    RN_CHECK_THROWS_WITH(attention_decode(qd, kc, vc, i64s({3})),
                         "attention_decode: lengths must be [B] = [2], got [1]");
    RN_CHECK_THROWS_WITH(attention_decode(qd, kc, vc, i64s({3, 3}).to(DType::i32)),
                         "attention_decode: lengths must be i64, got i32");
    RN_CHECK_THROWS_WITH(attention_decode(concat({qd, qd}, 0), kc, vc, i64s({1, 1, 1, 1})),
                         "attention_decode: the cache holds 2 sequences but q has 4");
    RN_CHECK_THROWS_WITH(attention_decode(qd.unsqueeze(2), kc, vc, i64s({1, 1})),
                         "attention_decode: q must be [B,Hq,D]");
    RN_CHECK_THROWS_WITH(attention_decode(qd, kc, vc.narrow(2, 0, 9), i64s({1, 1})),
                         "attention_decode: v_cache must have k_cache's shape");
    RN_CHECK_THROWS_WITH(attention_decode(qd.narrow(2, 0, 4), kc, vc, i64s({1, 1})), "same head dim D");

    // cache write
    Tensor x = uniform({2, 2, 3, 8}, -1, 1, g, DType::f64);
    RN_CHECK_THROWS_WITH(kv_cache_write(kc, x, i64s({0, 8})),
                         "kv_cache_write: pos[1] = 8 with 3 tokens runs past the cache");
    RN_CHECK_THROWS_WITH(kv_cache_write(kc, x, i64s({-1, 0})), "kv_cache_write: pos[0] = -1");
    RN_CHECK_THROWS_WITH(kv_cache_write(kc, x, i64s({0})), "kv_cache_write: pos must be [B] = [2], got [1]");
    RN_CHECK_THROWS_WITH(kv_cache_write(kc, x.narrow(1, 0, 1), i64s({0, 0})), "kv_cache_write: x must be [B,2,T,8]");
    RN_CHECK_THROWS_WITH(kv_cache_write(kc, concat({x, x}, 0), i64s({0, 0, 0, 0})),
                         "kv_cache_write: x has 4 sequences but the cache holds 2");
    RN_CHECK_THROWS_WITH(kv_cache_write(kc.transpose(2, 3).contiguous().transpose(2, 3), x, i64s({0, 0})),
                         "kv_cache_write: the cache must be contiguous");
    RN_CHECK_THROWS_WITH(kv_cache_write(kc, x.to(DType::f32), i64s({0, 0})), "kv_cache_write: dtypes differ");
    // a failed write leaves the cache as it was
    Tensor before = kc.clone();
    RN_CHECK_THROWS_WITH(kv_cache_write(kc, x, i64s({0, 8})), "runs past the cache");
    BOOST_TEST(max_abs_diff(kc, before) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
