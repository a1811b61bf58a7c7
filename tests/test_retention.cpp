// tests/test_retention.cpp — the retention op on the CPU: f64 gradcheck of every paradigm
// (with and without an initial state, with the final-state gradient); the three paradigms
// agree on outputs, final state and every gradient over awkward T; the op against a naive
// reference built from primitive ops; prefill + retention_step = one pass; T = 65,536 in
// fp32 stays finite and matches the recurrent path; error messages.
#include <boost/test/unit_test.hpp>

#include "ops/retention.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {
const RetentionMode kModes[] = {RetentionMode::parallel, RetentionMode::recurrent, RetentionMode::chunkwise};

std::vector<double> decays(int64_t H) {
    std::vector<double> g;
    for (int64_t h = 0; h < H; ++h) g.push_back(1.0 - std::pow(2.0, -1.0 - double(h)));  // 0.5, 0.75, 0.875...
    return g;
}

struct Grads {
    Tensor out, state, dq, dk, dv, ds0;
};

// forward (+ backward with the given dO and dS_final) of one paradigm on copies of the inputs
Grads run(RetentionMode mode, int64_t chunk, const Tensor& q, const Tensor& k, const Tensor& v,
          const std::vector<double>& g, const Tensor& s0, const Tensor& dO, const Tensor& dsT, int64_t pos0 = 0) {
    Tensor ql = q.detach().clone().requires_grad_(), kl = k.detach().clone().requires_grad_();
    Tensor vl = v.detach().clone().requires_grad_();
    Tensor sl = s0.defined() ? s0.detach().clone().requires_grad_() : Tensor();
    RetentionOptions o;
    o.mode = mode;
    o.chunk = chunk;
    o.pos0 = pos0;
    o.return_state = true;
    RetentionResult r = retention(ql, kl, vl, g, o, sl);
    run_backward({r.out, r.state}, {dO, dsT});
    return {r.out, r.state, ql.grad(), kl.grad(), vl.grad(), sl.defined() ? sl.grad() : Tensor()};
}

void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
    BOOST_REQUIRE(a.defined() && b.defined());
    double e = rel_err(a, b);
    BOOST_TEST(e <= tol, what << ": relative error " << e << " > " << tol);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(retention_cpu)

BOOST_AUTO_TEST_CASE(lambda_is_the_row_normaliser) {
    for (double g : {0.5, 0.96875, 1 - 1.0 / 512}) {
        double c = 0;
        for (int n = 0; n < 50; ++n) {
            c += std::pow(g, n);
            BOOST_TEST(std::abs(retention_lambda(g, n) - 1 / std::sqrt(c)) < 1e-13);
        }
    }
}

BOOST_AUTO_TEST_CASE(gradcheck_every_paradigm) {
    Generator gen(21);
    const int64_t B = 1, H = 2, T = 5, Dk = 3, Dv = 4;
    auto g = decays(H);
    for (RetentionMode mode : kModes)
        for (bool with_state : {false, true})
            for (int64_t pos0 : {int64_t(0), int64_t(3)}) {
                BOOST_TEST_CONTEXT(retention_mode_name(mode) << (with_state ? " +state" : "") << " pos0=" << pos0) {
                    std::vector<Tensor> in = {leaf64({B, H, T, Dk}, gen), leaf64({B, H, T, Dk}, gen, true),
                                              leaf64({B, H, T, Dv}, gen)};
                    if (with_state) in.push_back(leaf64({B, H, Dk, Dv}, gen));
                    auto f = [&](const std::vector<Tensor>& x) {
                        RetentionOptions o;
                        o.mode = mode;
                        o.chunk = 2;  // T = 5: two full chunks and a short one
                        o.pos0 = pos0;
                        o.return_state = true;
                        RetentionResult r = retention(x[0], x[1], x[2], g, o, x.size() > 3 ? x[3] : Tensor());
                        // both outputs, so the final-state gradient path is checked too
                        return concat({r.out.flatten(), r.state.flatten()}, 0);
                    };
                    RN_CHECK_GRADCHECK(f, in);
                }
            }
}

BOOST_AUTO_TEST_CASE(paradigms_agree) {
    Generator gen(22);
    const int64_t B = 2, H = 3, Dk = 5, Dv = 7, C = 8;
    auto g = decays(H);
    for (DType dt : {DType::f64, DType::f32})
        for (int64_t T : {int64_t(1), int64_t(2), C - 1, C, C + 1, 3 * C + 5})
            for (bool with_state : {false, true}) {
                BOOST_TEST_CONTEXT(dt << " T=" << T << (with_state ? " +state" : "")) {
                    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
                    Tensor q = randn({B, H, T, Dk}, gen, dt), k = randn({B, H, T, Dk}, gen, dt);
                    Tensor v = randn({B, H, T, Dv}, gen, dt);
                    Tensor s0 = with_state ? randn({B, H, Dk, Dv}, gen, dt) : Tensor();
                    Tensor dO = randn({B, H, T, Dv}, gen, dt), dsT = randn({B, H, Dk, Dv}, gen, dt);
                    Grads ref = run(RetentionMode::recurrent, C, q, k, v, g, s0, dO, dsT, 5);
                    for (RetentionMode mode : {RetentionMode::parallel, RetentionMode::chunkwise}) {
                        Grads r = run(mode, C, q, k, v, g, s0, dO, dsT, 5);
                        std::string m = retention_mode_name(mode);
                        expect_close(r.out, ref.out, tol, m + " output");
                        expect_close(r.state, ref.state, tol, m + " final state");
                        expect_close(r.dq, ref.dq, tol, m + " dq");
                        expect_close(r.dk, ref.dk, tol, m + " dk");
                        expect_close(r.dv, ref.dv, tol, m + " dv");
                        if (with_state) expect_close(r.ds0, ref.ds0, tol, m + " d(initial state)");
                    }
                }
            }
}

BOOST_AUTO_TEST_CASE(against_a_reference_built_from_primitive_ops) {
    // O = diag(λ) ((Q Kᵀ) ⊙ D) V with D_nm = γ^(n−m) for n ≥ m, built with matmul, exp, where
    Generator gen(23);
    const int64_t B = 2, H = 2, T = 9, Dk = 4, Dv = 6, pos0 = 2;
    auto g = decays(H);
    Tensor q = leaf64({B, H, T, Dk}, gen), k = leaf64({B, H, T, Dk}, gen), v = leaf64({B, H, T, Dv}, gen);
    std::vector<double> dmask(size_t(H * T * T)), lam(size_t(H * T));
    for (int64_t h = 0; h < H; ++h)
        for (int64_t n = 0; n < T; ++n) {
            lam[size_t(h * T + n)] = retention_lambda(g[size_t(h)], pos0 + n);
            for (int64_t m = 0; m < T; ++m)
                dmask[size_t((h * T + n) * T + m)] = n >= m ? std::exp(double(n - m) * std::log(g[size_t(h)])) : 0.0;
        }
    Tensor D = from_vector(dmask, {1, H, T, T}), L = from_vector(lam, {1, H, T, 1});
    Tensor ref = matmul(matmul(q, k.transpose(-1, -2)) * D, v) * L;
    Tensor dO = randn({B, H, T, Dv}, gen, DType::f64);
    ref.backward(dO);
    Tensor rq = q.grad(), rk = k.grad(), rv = v.grad();
    for (RetentionMode mode : kModes) {
        q.zero_grad(), k.zero_grad(), v.zero_grad();
        RetentionOptions o;
        o.mode = mode;
        o.chunk = 4;
        o.pos0 = pos0;
        Tensor out = retention(q, k, v, g, o).out;
        out.backward(dO);
        expect_close(out, ref, 1e-12, std::string(retention_mode_name(mode)) + " vs primitive ops");
        expect_close(q.grad(), rq, 1e-12, "dq");
        expect_close(k.grad(), rk, 1e-12, "dk");
        expect_close(v.grad(), rv, 1e-12, "dv");
    }
}

BOOST_AUTO_TEST_CASE(prefill_then_step_equals_one_pass) {
    Generator gen(24);
    const int64_t B = 3, H = 2, T = 13, P = 8, Dk = 4, Dv = 5;
    auto g = decays(H);
    for (DType dt : {DType::f64, DType::f32}) {
        Tensor q = randn({B, H, T, Dk}, gen, dt), k = randn({B, H, T, Dk}, gen, dt), v = randn({B, H, T, Dv}, gen, dt);
        RetentionOptions whole;
        whole.mode = RetentionMode::parallel;
        Tensor want = retention(q, k, v, g, whole).out;
        // prefill P tokens chunkwise, then decode the rest one token at a time
        RetentionOptions pre;
        pre.mode = RetentionMode::chunkwise;
        pre.chunk = 3;
        pre.return_state = true;
        RetentionResult r = retention(q.narrow(2, 0, P), k.narrow(2, 0, P), v.narrow(2, 0, P), g, pre);
        Tensor state = r.state.clone();
        std::vector<Tensor> outs = {r.out};
        for (int64_t t = P; t < T; ++t) {
            Tensor pos = full({B}, double(t), DType::i64);
            outs.push_back(retention_step(q.select(2, t), k.select(2, t), v.select(2, t), g, state, pos).unsqueeze(2));
        }
        expect_close(concat(outs, 2), want, dt == DType::f64 ? 1e-12 : 1e-5, "prefill + steps");
    }
}

BOOST_AUTO_TEST_CASE(step_sequences_at_different_positions) {
    // each sequence of a batch has its own state and position
    Generator gen(25);
    const int64_t H = 2, Dk = 3, Dv = 4;
    auto g = decays(H);
    Tensor q = randn({2, H, Dk}, gen, DType::f64), k = randn({2, H, Dk}, gen, DType::f64), v = randn({2, H, Dv}, gen, DType::f64);
    Tensor s = randn({2, H, Dk, Dv}, gen, DType::f64);
    Tensor s_copy = s.clone();
    Tensor pos = from_vector<int64_t>({0, 40}, {2});
    Tensor o = retention_step(q, k, v, g, s, pos);
    for (int64_t b = 0; b < 2; ++b) {
        RetentionOptions opt;
        opt.mode = RetentionMode::recurrent;
        opt.pos0 = b == 0 ? 0 : 40;
        opt.return_state = true;
        auto one = [&](const Tensor& t) { return t.narrow(0, b, 1).unsqueeze(2); };
        RetentionResult r = retention(one(q), one(k), one(v), g, opt, s_copy.narrow(0, b, 1).contiguous());
        expect_close(o.narrow(0, b, 1), r.out.squeeze(2), 1e-13, "step output");
        expect_close(s.narrow(0, b, 1), r.state, 1e-13, "step state");
    }
}

BOOST_AUTO_TEST_CASE(very_long_sequence_stays_finite) {
    // T = 65,536 in fp32: chunkwise against recurrent; a γ^(−m) formulation overflows here
    Generator gen(26);
    const int64_t T = 65536, H = 2, Dk = 8, Dv = 8;
    std::vector<double> g = {1 - 1.0 / 32, 1 - 1.0 / 512};
    Tensor q = randn({1, H, T, Dk}, gen), k = randn({1, H, T, Dk}, gen) * 0.35, v = randn({1, H, T, Dv}, gen);
    RetentionOptions c;
    c.mode = RetentionMode::chunkwise;
    c.return_state = true;
    RetentionOptions r = c;
    r.mode = RetentionMode::recurrent;
    RetentionResult a = retention(q, k, v, g, c), b = retention(q, k, v, g, r);
    for (float x : a.out.to_vector<float>()) BOOST_REQUIRE(std::isfinite(x));
    expect_close(a.out, b.out, 1e-5, "chunkwise vs recurrent at T=65536");
    expect_close(a.state, b.state, 1e-5, "final state at T=65536");
}

BOOST_AUTO_TEST_CASE(bad_input_is_refused_with_a_message) {
    auto g = decays(2);
    Tensor q = zeros({1, 2, 4, 3}), v = zeros({1, 2, 4, 5});
    RN_CHECK_THROWS_WITH(retention(q, zeros({1, 2, 4, 2}), v, g), "k must have q's shape [1, 2, 4, 3]");
    RN_CHECK_THROWS_WITH(retention(q, q, zeros({1, 2, 3, 5}), g), "v must be [B,H,T,Dv]");
    RN_CHECK_THROWS_WITH(retention(q, q, v, {0.5}), "1 decays given for 2 heads");
    RN_CHECK_THROWS_WITH(retention(q, q, v, {0.5, 1.0}), "decay of head 1 is 1");
    RN_CHECK_THROWS_WITH(retention(q, q, v, g, {}, zeros({1, 2, 3, 4})), "initial state must be [B,H,Dk,Dv] = [1, 2, 3, 5]");
    RN_CHECK_THROWS_WITH(retention(q.to(DType::bf16), q.to(DType::bf16), v.to(DType::bf16), g), "got bf16");
    RN_CHECK_THROWS_WITH(retention(q, q, v.to(DType::f64), g), "dtypes differ");
    RN_CHECK_THROWS_WITH(retention_mode_from_name("fast"), "unknown retention mode 'fast'");
    Tensor s = zeros({1, 2, 3, 5});
    RN_CHECK_THROWS_WITH(retention_step(zeros({1, 2, 3}), zeros({1, 2, 3}), zeros({1, 2, 5}), g, s, zeros({2}, DType::i64)),
                         "pos must be [B] = [1]");
}

BOOST_AUTO_TEST_SUITE_END()
