// tests/mpi_test_comm.cpp — the MPI communicator and data-parallel gradients in real
// processes: CTest runs this binary under `mpirun -np 2` and `-np 3` (tests/CMakeLists.txt).
//   - every collective on odd sizes and several dtypes against the result computed
//     locally from what each rank is known to hold (rank-dependent values);
//   - bad calls are rn::Errors that say what was expected and what came;
//   - DataParallel: after finish_gradient_sync every parameter's gradient is the mean of
//     the ranks' own gradients; small buckets start inside backward (the overlap); a
//     ZeRO-1 step gives the parameters and, gathered, the moments of a plain AdamW step;
//   - a rank that does not come to a collective makes the others' wait an rn::Error after
//     the timeout, naming the rank and the collective.
// Started without mpirun it reports itself skipped (exit 77).
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/tensor_math.h"
#include "dist/data_parallel.h"
#include "dist/launch.h"
#include "dist/mpi_comm.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace rn;
using namespace rn::dist;

namespace {

MpiComm& comm() {
    static std::unique_ptr<MpiComm> c = [] {
        LaunchInfo li = init_from_launcher();
        if (!li.distributed) {
            std::printf("SKIP: not started by mpirun (run: mpirun -np 2 %s)\n", "mpi_test_comm");
            std::exit(77);
        }
        return std::make_unique<MpiComm>(60.0);
    }();
    return *c;
}

// what rank r holds at element i (exact in f32: small integers and halves)
double value(int r, int64_t i) { return double((i * 7 + r * 13) % 29) - 14.0 + 0.5 * r; }

Tensor rank_tensor(int r, int64_t n, DType dt) {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(r, i);
    return cast_nograd(from_vector<double>(v, {n}), dt);
}

}  // namespace

BOOST_AUTO_TEST_CASE(all_reduce_sum_max_min_odd_sizes) {
    MpiComm& c = comm();
    const int W = c.size();
    for (DType dt : {DType::f32, DType::f64, DType::i64})
        for (int64_t n : {1, 7, 1001, 65537}) {
            if (dt == DType::i64 && n > 1001) continue;
            for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::max, dist::ReduceOp::min}) {
                Tensor t = rank_tensor(c.rank(), n, dt == DType::i64 ? DType::f64 : dt);
                if (dt == DType::i64) t = cast_nograd(from_vector<double>(t.to_vector<double>(), {n}), DType::i64);
                c.all_reduce(t, op);
                auto got = t.to_vector<double>();
                for (int64_t i = 0; i < n; ++i) {
                    double want = op == dist::ReduceOp::sum ? 0 : value(0, i);
                    for (int r = 0; r < W; ++r) {
                        double x = value(r, i);
                        if (dt == DType::i64) x = double(int64_t(x));  // truncated like the cast
                        if (r == 0 && op != dist::ReduceOp::sum) want = x;
                        want = op == dist::ReduceOp::sum ? want + x : op == dist::ReduceOp::max ? std::max(want, x) : std::min(want, x);
                    }
                    BOOST_REQUIRE_MESSAGE(got[size_t(i)] == want, dtype_name(dt) << " n " << n << " element " << i
                                                                                 << ": " << got[size_t(i)] << " vs " << want);
                }
            }
        }
}

BOOST_AUTO_TEST_CASE(reduce_scatter_all_gather_broadcast) {
    MpiComm& c = comm();
    const int W = c.size(), me = c.rank();
    for (int64_t n : {1, 5, 4099}) {
        // reduce-scatter: block `me` of the sum
        Tensor in = rank_tensor(me, n * W, DType::f32), out = zeros({n}, DType::f32);
        c.reduce_scatter(in, out);
        auto got = out.to_vector<double>();
        for (int64_t j = 0; j < n; ++j) {
            double want = 0;
            for (int r = 0; r < W; ++r) want += value(r, me * n + j);
            BOOST_REQUIRE_EQUAL(got[size_t(j)], want);
        }
        // all-gather, out of place and in place
        Tensor mine = rank_tensor(me, n, DType::f64), all = zeros({n * W}, DType::f64);
        c.all_gather(mine, all);
        Tensor inplace = zeros({n * W}, DType::f64);
        copy_nograd(inplace.narrow(0, me * n, n), mine);
        c.all_gather(inplace.narrow(0, me * n, n), inplace);
        for (const Tensor& g : {all, inplace}) {
            auto v = g.to_vector<double>();
            for (int r = 0; r < W; ++r)
                for (int64_t j = 0; j < n; ++j) BOOST_REQUIRE_EQUAL(v[size_t(r * n + j)], value(r, j));
        }
        // broadcast from the last rank
        Tensor b = rank_tensor(me, n, DType::f32);
        c.broadcast(b, W - 1);
        auto bv = b.to_vector<double>();
        for (int64_t j = 0; j < n; ++j) BOOST_REQUIRE_EQUAL(bv[size_t(j)], value(W - 1, j));
    }
    std::string s = me == 0 ? std::string("the NCCL id travels like this\0with a zero", 42) : "";
    c.broadcast_bytes(s, 0);
    BOOST_CHECK_EQUAL(s, std::string("the NCCL id travels like this\0with a zero", 42));
    auto ranks = c.all_gather_scalar(double(me) + 0.25);
    BOOST_REQUIRE_EQUAL(ranks.size(), size_t(W));
    for (int r = 0; r < W; ++r) BOOST_CHECK_EQUAL(ranks[size_t(r)], r + 0.25);
    BOOST_CHECK_EQUAL(c.all_reduce_scalar(me, dist::ReduceOp::max), W - 1);
    c.barrier();
}

BOOST_AUTO_TEST_CASE(bad_calls_say_what_was_expected) {
    MpiComm& c = comm();
    const int W = c.size();
    auto expect_error = [](const std::function<void()>& f, const std::string& part) {
        try {
            f();
        } catch (const Error& e) {
            BOOST_CHECK_MESSAGE(std::string(e.what()).find(part) != std::string::npos, e.what());
            return;
        }
        BOOST_ERROR("no error; expected one mentioning '" << part << "'");
    };
    expect_error([&] { c.reduce_scatter(zeros({W * 3 + 1}), zeros({3})); }, "elements, got");
    expect_error([&] { c.all_gather(zeros({3}), zeros({3 * W + 2})); }, "elements, got");
    expect_error([&] { c.all_reduce(zeros({4, 3}).t()); }, "contiguous");
    expect_error([&] { c.all_reduce(zeros({4}, DType::bf16)); }, "bf16");
    expect_error([&] { c.broadcast(zeros({4}), W); }, "root");
    expect_error([&] { c.reduce_scatter(zeros({W * 2}), zeros({2}, DType::f64)); }, "dtypes differ");
}

BOOST_AUTO_TEST_CASE(data_parallel_gradients_are_the_mean_and_overlap_backward) {
    MpiComm& c = comm();
    auto shared = std::shared_ptr<MpiComm>(&c, [](MpiComm*) {});  // owned by comm()
    const int W = c.size(), me = c.rank();
    Generator g(7);  // the same on every rank: the same initial parameters
    std::vector<std::pair<std::string, Tensor>> params;
    for (int k = 0; k < 6; ++k) {
        Tensor w = uniform({9, 7}, -0.5, 0.5, g).requires_grad_();
        Tensor b = uniform({7}, -0.5, 0.5, g).requires_grad_();
        params.push_back({"layer" + std::to_string(k) + ".weight", w});
        params.push_back({"layer" + std::to_string(k) + ".bias", b});
    }
    auto loss_of = [&](int rank, const std::vector<std::pair<std::string, Tensor>>& ps) {
        Generator gx(100 + uint64_t(rank));  // each rank's own rows
        Tensor total;
        for (size_t k = 0; k < ps.size(); k += 2) {
            Tensor x = uniform({4, 9}, -1, 1, gx);
            Tensor y = matmul(x, ps[k].second) + ps[k + 1].second;
            Tensor l = sum(y * y) * (1.0 + double(k));
            total = total.defined() ? total + l : l;
        }
        return total;
    };
    // the reference: every rank's gradient, computed here on clones, averaged
    std::vector<Tensor> want;
    for (auto& [n, p] : params) want.push_back(zeros(p.shape()));
    for (int r = 0; r < W; ++r) {
        std::vector<std::pair<std::string, Tensor>> clones;
        for (auto& [n, p] : params) clones.push_back({n, p.detach().clone().requires_grad_()});
        loss_of(r, clones).backward();
        for (size_t i = 0; i < clones.size(); ++i) accumulate_nograd(want[i], clones[i].second.grad() * (1.0 / W));
    }
    for (int zero : {0, 1, 2}) {
        DataParallelOptions o;
        o.bucket_bytes = 200;  // a bucket or two per layer
        o.zero = zero;
        DataParallel dp(shared, params, nn::AdamWOptions{}, o);
        BOOST_CHECK_GT(dp.num_buckets(), size_t(4));
        for (auto& [n, p] : params) p.zero_grad();
        dp.begin_backward(true);
        loss_of(me, params).backward();
        // every bucket's gradients were complete before backward returned: all started inside it
        BOOST_CHECK_EQUAL(dp.buckets_launched_in_backward(), dp.num_buckets());
        dp.finish_gradient_sync();
        if (zero == 2)  // ZeRO-2 keeps no whole gradient past the reduction
            for (auto& [n, p] : params) BOOST_CHECK_MESSAGE(!p.grad().defined(), n << " still holds its gradient");
        if (zero == 0)
            for (size_t i = 0; i < params.size(); ++i)
                BOOST_CHECK_MESSAGE(test::max_abs_diff(params[i].second.grad(), want[i]) < 1e-5,
                                    params[i].first << ": " << test::max_abs_diff(params[i].second.grad(), want[i]));
    }
}

static void zero_step_equals_adamw_step(int stage) {
    MpiComm& c = comm();
    auto shared = std::shared_ptr<MpiComm>(&c, [](MpiComm*) {});
    auto make = [&](Generator gen) {
        std::vector<std::pair<std::string, Tensor>> ps;
        ps.push_back({"a.weight", uniform({13, 5}, -1, 1, gen).requires_grad_()});
        ps.push_back({"a.bias", uniform({5}, -1, 1, gen).requires_grad_()});
        ps.push_back({"b.weight", uniform({3, 17}, -1, 1, gen).requires_grad_()});
        return ps;
    };
    auto plain = make(Generator(3)), sharded = make(Generator(3));
    nn::AdamWOptions ao;
    ao.weight_decay = 0.1;
    DataParallelOptions o0, o1;
    o0.bucket_bytes = o1.bucket_bytes = 64;
    o1.zero = stage;
    DataParallel dp0(shared, plain, ao, o0), dp1(shared, sharded, ao, o1);
    BOOST_CHECK_LT(dp1.optimizer_bytes() * size_t(c.size()), dp0.optimizer_bytes() + size_t(64 * c.size() * 8));
    for (int step = 0; step < 3; ++step) {
        for (auto* ps : {&plain, &sharded}) {
            auto& dp = ps == &plain ? dp0 : dp1;
            for (auto& [n, p] : *ps) p.zero_grad();
            dp.begin_backward(true);
            Generator gx(50 + uint64_t(c.rank()) * 10 + uint64_t(step));
            Tensor l;
            for (auto& [n, p] : *ps) {
                Tensor s = sum(p * uniform(p.shape(), -1, 1, gx));
                l = l.defined() ? l + s : s;
            }
            (l * l).backward();
            dp.finish_gradient_sync();
            double norm = dp.clip_grad_norm(0.5);  // clipping active: the norms must agree
            BOOST_CHECK_GT(norm, 0.5);
            dp.step(1e-2);
        }
        for (size_t i = 0; i < plain.size(); ++i)
            BOOST_CHECK_MESSAGE(test::max_abs_diff(plain[i].second, sharded[i].second) < 1e-6,
                                plain[i].first << " step " << step << ": "
                                               << test::max_abs_diff(plain[i].second, sharded[i].second));
    }
    auto full = dp1.gather_optimizer();
    BOOST_CHECK_EQUAL(full->step_count(), dp0.full_optimizer()->step_count());
    for (size_t i = 0; i < plain.size(); ++i) {
        BOOST_CHECK_LT(test::max_abs_diff(full->slots()[i].m, dp0.full_optimizer()->slots()[i].m), 1e-6);
        BOOST_CHECK_LT(test::max_abs_diff(full->slots()[i].v, dp0.full_optimizer()->slots()[i].v), 1e-6);
        BOOST_CHECK_GT(test::max_abs_diff(full->slots()[i].v, zeros_like(full->slots()[i].v)), 0.0);
    }
    // scatter back into a fresh ZeRO-1 state: the blocks match the ones that were gathered
    auto again = make(Generator(3));
    DataParallel dp2(shared, again, ao, o1);
    dp2.scatter_optimizer(*full);
    auto full2 = dp2.gather_optimizer();
    for (size_t i = 0; i < plain.size(); ++i)
        BOOST_CHECK_EQUAL(test::max_abs_diff(full2->slots()[i].m, full->slots()[i].m), 0.0);
}

BOOST_AUTO_TEST_CASE(zero1_step_equals_adamw_step) { zero_step_equals_adamw_step(1); }
// ZeRO-2 (gradients freed as their buckets launch, flat buffers only while in use): the
// same parameters, moments and optimizer round trip as a plain AdamW step
BOOST_AUTO_TEST_CASE(zero2_step_equals_adamw_step) { zero_step_equals_adamw_step(2); }

BOOST_AUTO_TEST_CASE(a_rank_that_does_not_come_is_an_error_after_the_timeout) {
    MpiComm& patient = comm();
    MpiComm c(1.0);  // one second
    Tensor t = full({3}, 1.0);
    if (c.rank() == 0) {
        auto t0 = std::chrono::steady_clock::now();
        try {
            c.all_reduce(t);
            BOOST_ERROR("rank 0: all_reduce returned although the other ranks never came");
        } catch (const Error& e) {
            const std::string m = e.what();
            BOOST_CHECK_MESSAGE(m.find("rank 0: MPI all_reduce did not complete within 1 s") != std::string::npos, m);
        }
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        BOOST_CHECK_GE(s, 1.0);
        BOOST_CHECK_LT(s, 10.0);
    } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // "hangs"
        // arriving late completes the collective rank 0 gave up on (its buffer was kept)
        c.all_reduce(t);
        BOOST_CHECK_EQUAL(t.to_vector<double>()[0], double(c.size()));
    }
    patient.barrier();  // rank 0 waits here, its MPI calls moving the abandoned one along
}
