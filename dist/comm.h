// dist/comm.h — the communicator interface of data-parallel training: the collectives
// (all-reduce, reduce-scatter, all-gather, broadcast, barrier) over the ranks of one job,
// on contiguous tensors. Two implementations: MpiComm (dist/mpi_comm.h) for CPU tensors,
// NcclComm (dist/nccl_comm.h) for CUDA tensors. Nothing here is home-made communication:
// each call is one MPI or NCCL collective.
//
// Every collective has an asynchronous form that returns a CommWork; wait() on it
// completes the collective as seen by later work on this rank: MPI waits on the host, NCCL
// makes the compute stream wait on the communication stream (the host does not block).
// A collective that does not complete within the communicator's timeout is an rn::Error
// naming the collective and the rank (another rank died or hangs), never a silent hang.
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"

namespace rn::dist {

enum class ReduceOp { sum, max, min };

class CommWork {
public:
    virtual ~CommWork() = default;
    virtual void wait() = 0;
    // lets the library move the collective along without blocking (MPI progresses
    // non-blocking collectives only inside MPI calls; NCCL needs nothing)
    virtual void poll() {}
};

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual std::string backend() const = 0;  // "mpi" or "nccl"

    // t ← op over ranks of t, in place (every rank gets the result)
    virtual std::unique_ptr<CommWork> all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::sum) = 0;
    // out ← rank r's block of the sum: in holds size()·n elements, out n; block r is
    // in[r·n, (r+1)·n) summed over ranks
    virtual std::unique_ptr<CommWork> reduce_scatter_async(const Tensor& in, const Tensor& out) = 0;
    // out ← every rank's `in` concatenated in rank order: out holds size()·in.numel()
    virtual std::unique_ptr<CommWork> all_gather_async(const Tensor& in, const Tensor& out) = 0;
    // t ← root's t
    virtual std::unique_ptr<CommWork> broadcast_async(const Tensor& t, int root) = 0;
    virtual void barrier() = 0;

    void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::sum) { all_reduce_async(t, op)->wait(); }
    void reduce_scatter(const Tensor& in, const Tensor& out) { reduce_scatter_async(in, out)->wait(); }
    void all_gather(const Tensor& in, const Tensor& out) { all_gather_async(in, out)->wait(); }
    void broadcast(const Tensor& t, int root) { broadcast_async(t, root)->wait(); }
};

// The checks every implementation makes before a collective, so that a wrong call is an
// rn::Error that says what was expected and what came, not a crash inside the library.
void check_collective_tensor(const char* what, const Tensor& t, bool want_cuda);
void check_collective_sizes(const char* what, const Tensor& big, const Tensor& small, int world);

}  // namespace rn::dist
