// tests/mpi_test_cuda_nccl.cpp — NCCL on the GPUs of one machine, one rank per GPU (CTest
// runs it as `mpirun -np 2`, label cuda):
//   - all-reduce (sum, max, min), reduce-scatter, all-gather (in place too) and broadcast
//     of odd sizes in f32 and bf16, against the same reduction done on the CPU from the
//     values every rank is known to hold (small integers: exact in bf16 as well);
//   - data-parallel training of a tiny RetNet LM: 2 GPUs with b rows each give, step for
//     step, the loss of one GPU with 2b rows, with and without ZeRO-1. Tolerances: f32
//     2e-5 relative (the same numbers summed in another order), bf16 activations 5e-3
//     relative (every matmul input rounded to 8 mantissa bits, so an ulp of difference in a
//     gradient moves more).
// Skipped (exit 77, saying why) when not started by mpirun or with fewer GPUs than ranks.
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstdlib>

#include "core/tensor_math.h"
#include "cuda/device.h"
#include "dist/data_parallel.h"
#include "dist/launch.h"
#include "dist/mpi_comm.h"
#include "dist/nccl_comm.h"
#include "nn/retnet.h"
#include "ops/ops.h"

using namespace rn;
using namespace rn::dist;

namespace {

struct World {
    LaunchInfo li;
    std::shared_ptr<MpiComm> mpi;
    std::shared_ptr<Communicator> nccl;
    Device dev;
};

World& world() {
    static World w = [] {
        World x;
        x.li = init_from_launcher();
        if (!x.li.distributed) {
            std::printf("SKIP: not started by mpirun (run: mpirun -np 2 mpi_test_cuda_nccl)\n");
            std::exit(77);
        }
        if (cuda::device_count() < x.li.local_world) {
            std::printf("SKIP: %d ranks on this machine but %d CUDA devices; NCCL needs one GPU per rank\n",
                        x.li.local_world, cuda::device_count());
            std::exit(77);
        }
        x.mpi = std::make_shared<MpiComm>(120.0);
        x.dev = Device::cuda(x.li.local_rank);
        cuda::set_device(x.dev.index);
        x.nccl = make_nccl_comm(*x.mpi, x.dev.index, 120.0);
        return x;
    }();
    return w;
}

double value(int r, int64_t i) { return double((i * 5 + r * 11) % 23) - 11.0; }

Tensor rank_tensor(int r, int64_t n, DType dt, Device dev) {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(r, i);
    return cast_nograd(from_vector<double>(v, {n}), dt).to(dev);
}

}  // namespace

BOOST_AUTO_TEST_CASE(nccl_collectives_match_the_cpu) {
    World& w = world();
    Communicator& c = *w.nccl;
    const int W = c.size(), me = c.rank();
    BOOST_REQUIRE_EQUAL(c.backend(), "nccl");
    for (DType dt : {DType::f32, DType::bf16})
        for (int64_t n : {1, 3, 1000003}) {
            for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::max, dist::ReduceOp::min}) {
                Tensor t = rank_tensor(me, n, dt, w.dev);
                c.all_reduce(t, op);
                auto got = t.to_vector<double>();
                for (int64_t i = 0; i < n; ++i) {
                    double want = value(0, i);
                    for (int r = 1; r < W; ++r)
                        want = op == dist::ReduceOp::sum ? want + value(r, i)
                               : op == dist::ReduceOp::max ? std::max(want, value(r, i))
                                                            : std::min(want, value(r, i));
                    BOOST_REQUIRE_MESSAGE(got[size_t(i)] == want, dtype_name(dt) << " n " << n << " element " << i
                                                                                 << ": " << got[size_t(i)] << " vs " << want);
                }
            }
            Tensor in = rank_tensor(me, n * W, dt, w.dev), out = zeros({n}, dt, w.dev);
            c.reduce_scatter(in, out);
            auto rs = out.to_vector<double>();
            for (int64_t j = 0; j < n; ++j) {
                double want = 0;
                for (int r = 0; r < W; ++r) want += value(r, me * n + j);
                BOOST_REQUIRE_EQUAL(rs[size_t(j)], want);
            }
            Tensor all = zeros({n * W}, dt, w.dev);
            c.all_gather(rank_tensor(me, n, dt, w.dev), all);
            Tensor inplace = zeros({n * W}, dt, w.dev);
            copy_nograd(inplace.narrow(0, me * n, n), rank_tensor(me, n, dt, w.dev));
            c.all_gather(inplace.narrow(0, me * n, n), inplace);
            for (const Tensor& g : {all, inplace}) {
                auto v = g.to_vector<double>();
                for (int r = 0; r < W; ++r)
                    for (int64_t j = 0; j < n; ++j) BOOST_REQUIRE_EQUAL(v[size_t(r * n + j)], value(r, j));
            }
            Tensor b = rank_tensor(me, n, dt, w.dev);
            c.broadcast(b, W - 1);
            auto bv = b.to_vector<double>();
            for (int64_t j = 0; j < n; ++j) BOOST_REQUIRE_EQUAL(bv[size_t(j)], value(W - 1, j));
        }
    c.barrier();
    // a CPU tensor is refused with a message, before NCCL sees it
    BOOST_CHECK_THROW(c.all_reduce(zeros({4})), Error);
}

BOOST_AUTO_TEST_CASE(data_parallel_on_gpus_matches_one_gpu) {
    World& w = world();
    const int W = w.nccl->size(), me = w.nccl->rank();
    const int64_t b = 2, T = 48, V = 512, steps = 4;
    nn::ModelConfig cfg = nn::ModelConfig::from_preset("tiny", V);
    Generator g(5);
    std::vector<std::vector<int64_t>> batches;  // the same global batches on every rank
    for (int64_t s = 0; s < steps; ++s) {
        std::vector<int64_t> v(size_t(W * b * (T + 1)));
        for (auto& x : v) x = int64_t(g.next_uniform() * double(V));
        batches.push_back(v);
    }
    auto rows = [&](int64_t s, int64_t first, int64_t n, bool targets) {
        Tensor all = from_vector<int64_t>(batches[size_t(s)], {W * b, T + 1});
        return all.narrow(0, first, n).narrow(1, targets ? 1 : 0, T).contiguous().to(w.dev);
    };
    for (DType compute : {DType::f32, DType::bf16})
        for (int zero : {0, 1}) {
            nn::ForwardOptions fo;
            fo.chunk = 16;
            fo.compute = compute;
            nn::RetNetLM one(cfg, 1), dpm(cfg, 1);
            one.to(w.dev);
            dpm.to(w.dev);
            DataParallelOptions o;
            o.bucket_bytes = 64 << 10;  // several buckets: the overlap path runs
            o.zero = zero;
            DataParallel ref(nullptr, one.named_parameters(), nn::AdamWOptions{}, {});
            DataParallel dp(w.nccl, dpm.named_parameters(), nn::AdamWOptions{}, o);
            const double tol = compute == DType::f32 ? 2e-5 : 5e-3;
            for (int64_t s = 0; s < steps; ++s) {
                // one GPU, all W·b rows
                Tensor lo = one.forward(rows(s, 0, W * b, false), fo);
                Tensor l1 = cross_entropy(lo.reshape({-1, V}), rows(s, 0, W * b, true).reshape({-1}));
                ref.begin_backward(true);
                l1.backward();
                ref.finish_gradient_sync();
                ref.clip_grad_norm(1.0);
                ref.step(1e-3);
                one.zero_grad();
                // W GPUs, b rows each
                Tensor ld = dpm.forward(rows(s, me * b, b, false), fo);
                Tensor l2 = cross_entropy(ld.reshape({-1, V}), rows(s, me * b, b, true).reshape({-1}));
                dp.begin_backward(true);
                l2.backward();
                dp.finish_gradient_sync();
                dp.clip_grad_norm(1.0);
                dp.step(1e-3);
                dpm.zero_grad();
                const double a = l1.item(), d = w.mpi->all_reduce_scalar(l2.item()) / W;
                BOOST_CHECK_MESSAGE(std::abs(a - d) <= tol * std::abs(a), dtype_name(compute)
                                        << " zero " << zero << " step " << s << ": one GPU " << a << ", " << W
                                        << " GPUs " << d << " (tolerance " << tol << " relative)");
            }
        }
}
