// tests/mpi_test_context_parallel.cpp — context-parallel retention (dist/context_parallel.h)
// in real processes: CTest runs it under `mpirun -np 2`, `-np 3` and `-np 4`. Every rank
// builds the same whole sequence (a fixed seed), runs retention over all of it as one
// process would, then runs context_parallel_retention over its own rows; its outputs and
// the gradients of its q, k, v rows (of a loss summed over every rank's outputs, so that
// each rank's k and v also get the gradient from later ranks' outputs through the state)
// must equal the whole run's rows to 1e-12 in f64 — even splits, uneven ones, T that P
// does not divide, every paradigm, chunks that do not divide a rank's part, a sequence
// starting at pos0 > 0; and the last rank's returned state is the whole sequence's.
// A whole RetNet the same way (ForwardOptions::incoming_state, pos0 = the rank's offset):
// each rank's logits rows, and every parameter's gradient summed over the ranks, equal one
// process's over the whole sequence — both variants (torchscale's, and fla's without λ and
// with half-split RoPE).
// Started without mpirun it reports itself skipped (exit 77).
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstdlib>

#include "core/random.h"
#include "core/tensor_math.h"
#include "dist/context_parallel.h"
#include "dist/launch.h"
#include "dist/mpi_comm.h"
#include "nn/lm.h"
#include "nn/model_config.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace rn;
using namespace rn::dist;
using namespace rn::test;

namespace {

MpiComm& comm() {
    static std::unique_ptr<MpiComm> c = [] {
        LaunchInfo li = init_from_launcher();
        if (!li.distributed) {
            std::printf("SKIP: not started by mpirun (run: mpirun -np 2 %s)\n", "mpi_test_context_parallel");
            std::exit(77);
        }
        return std::make_unique<MpiComm>(60.0);
    }();
    return *c;
}

struct Case {
    std::vector<int64_t> lengths;  // empty: ContextSplit::even
    int64_t T;
    RetentionMode mode;
    int64_t chunk;
    int64_t pos0;
};

void check(const Case& cs) {
    MpiComm& c = comm();
    const int P = c.size(), r = c.rank();
    const ContextSplit split = cs.lengths.empty() ? ContextSplit::even(cs.T, P) : ContextSplit::of_lengths(cs.lengths);
    BOOST_REQUIRE(split.total() == cs.T);
    const int64_t B = 2, H = 3, Dk = 4, Dv = 5;
    const std::vector<double> gamma{0.9, 0.97, 0.75};
    Generator g(1234 + uint64_t(cs.T));  // the same sequence on every rank
    Tensor q = randn({B, H, cs.T, Dk}, g, DType::f64), k = randn({B, H, cs.T, Dk}, g, DType::f64);
    Tensor v = randn({B, H, cs.T, Dv}, g, DType::f64), w = randn({B, H, cs.T, Dv}, g, DType::f64);
    RetentionOptions o;
    o.mode = cs.mode;
    o.chunk = cs.chunk;
    o.pos0 = cs.pos0;
    o.return_state = true;
    // the whole sequence, one process
    Tensor qa = q.clone().requires_grad_(), ka = k.clone().requires_grad_(), va = v.clone().requires_grad_();
    RetentionResult whole = retention(qa, ka, va, gamma, o);
    sum(whole.out * w).backward();
    // this rank's rows, context parallel
    const int64_t off = split.offsets[size_t(r)], len = split.lengths[size_t(r)];
    auto rows = [&](const Tensor& t) { return t.narrow(2, off, len).contiguous(); };
    Tensor qr = rows(q).requires_grad_(), kr = rows(k).requires_grad_(), vr = rows(v).requires_grad_();
    RetentionResult part = context_parallel_retention(qr, kr, vr, gamma, o, split, c);
    sum(part.out * rows(w)).backward();
    BOOST_TEST(rel_err(part.out, rows(whole.out.detach())) < 1e-12, "out, rank " << r);
    BOOST_TEST(rel_err(qr.grad(), rows(qa.grad())) < 1e-12, "dq, rank " << r);
    BOOST_TEST(rel_err(kr.grad(), rows(ka.grad())) < 1e-12, "dk, rank " << r);
    BOOST_TEST(rel_err(vr.grad(), rows(va.grad())) < 1e-12, "dv, rank " << r);
    // not vacuous: the state from earlier ranks changes this rank's output (rank > 0)
    if (r > 0) {
        Tensor alone = retention(qr.detach(), kr.detach(), vr.detach(), gamma, o).out;
        BOOST_TEST(max_abs_diff(alone, part.out.detach()) > 1e-3, "rank " << r << ": no state came in");
    }
    if (r == P - 1) BOOST_TEST(rel_err(part.state.detach(), whole.state.detach()) < 1e-12);
}

}  // namespace

BOOST_AUTO_TEST_CASE(equals_one_process_even_and_uneven) {
    const int P = comm().size();
    for (RetentionMode m : {RetentionMode::chunkwise, RetentionMode::parallel, RetentionMode::recurrent}) {
        BOOST_TEST_CONTEXT("mode " << retention_mode_name(m)) {
            check({{}, int64_t(8 * P), m, 4, 0});   // even, chunks dividing each part
            check({{}, int64_t(7 * P + 3), m, 4, 0});  // P does not divide T (for P ≠ 3: rows differ by one)
        }
    }
    // uneven, one rank holding a single token, chunk 3 dividing nothing, pos0 > 0
    std::vector<int64_t> lens;
    for (int r = 0; r < P; ++r) lens.push_back(r == 0 ? 11 : r == 1 ? 1 : 2 + 5 * r);
    int64_t T = 0;
    for (int64_t l : lens) T += l;
    check({lens, T, RetentionMode::chunkwise, 3, 5});
    check({lens, T, RetentionMode::parallel, 64, 17});
}

BOOST_AUTO_TEST_CASE(bad_splits_are_clear_errors) {
    MpiComm& c = comm();
    const int P = c.size();
    BOOST_CHECK_EXCEPTION(ContextSplit::even(int64_t(P - 1), P), Error, [](const Error& e) {
        return std::string(e.what()).find("at least one token") != std::string::npos;
    });
    BOOST_CHECK_THROW(ContextSplit::of_lengths({3, 0}), Error);
    Generator g(3);
    Tensor q = randn({1, 2, 4, 3}, g, DType::f64);
    // a split for a different number of ranks, and rows that do not match this rank's part
    BOOST_CHECK_EXCEPTION(context_parallel_retention(q, q, q, {0.9, 0.8}, {}, ContextSplit::even(4 * (P + 1), P + 1), c),
                          Error, [](const Error& e) { return std::string(e.what()).find("parts for") != std::string::npos; });
    BOOST_CHECK_EXCEPTION(context_parallel_retention(q, q, q, {0.9, 0.8}, {}, ContextSplit::even(5 * P, P), c), Error,
                          [](const Error& e) { return std::string(e.what()).find("tokens of the split") != std::string::npos; });
}

BOOST_AUTO_TEST_CASE(whole_model_equals_one_process) {
    MpiComm& c = comm();
    const int P = c.size(), r = c.rank();
    for (bool fla : {false, true}) {
        BOOST_TEST_CONTEXT((fla ? "fla variant" : "torchscale variant")) {
            nn::ModelConfig cfg = nn::ModelConfig::from_preset("tiny", 37, "retnet");
            if (fla) {
                cfg.rotary = "rope_half";
                cfg.retention_lambda = false;
                cfg.group_norm_affine = true;
            }
            cfg.chunk = 4;
            auto m = nn::make_model(cfg, 7);
            m->to(DType::f64);
            {  // the init's tiny logits would hide errors: weights of order one
                NoGradGuard ng;
                Generator wg(8);
                for (auto& p : m->parameters())
                    p.copy_(uniform(p.shape(), -0.5, 0.5, wg, DType::f64) + (p.dim() == 1 ? 1.0 : 0.0));
            }
            const int64_t T = 6 * P + 1;
            const ContextSplit split = ContextSplit::even(T, P);
            Generator g(9);
            Tensor tokens = randint(0, 37, {2, T}, g), w = randn({2, T, 37}, g, DType::f64);
            nn::ForwardOptions fo;
            fo.compute = DType::f64;
            fo.chunk = 4;
            fo.pos0 = 2;
            Tensor whole = m->forward(tokens, fo);
            sum(whole * w).backward();
            std::vector<Tensor> want;
            for (auto& p : m->parameters()) want.push_back(p.grad().clone());
            m->zero_grad();
            const int64_t off = split.offsets[size_t(r)], len = split.lengths[size_t(r)];
            nn::ForwardOptions cp = fo;
            cp.pos0 = fo.pos0 + off;
            cp.incoming_state = context_parallel_state_fn(split, c);
            Tensor part = m->forward(tokens.narrow(1, off, len).contiguous(), cp);
            sum(part * w.narrow(1, off, len).contiguous()).backward();
            BOOST_TEST(rel_err(part.detach(), whole.detach().narrow(1, off, len).contiguous()) < 1e-12, "rank " << r);
            size_t i = 0;
            for (auto& p : m->parameters()) {
                Tensor gsum = p.grad().clone();
                c.all_reduce(gsum);  // each rank's gradient covers its own tokens' outputs
                BOOST_TEST(rel_err(gsum, want[i]) < 1e-11, "parameter " << i << " rank " << r);
                ++i;
            }
            m->zero_grad();
        }
    }
}
