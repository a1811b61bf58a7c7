// dist/mpi_comm.h — the communicator over MPI for CPU tensors (MPI's non-blocking
// collectives: MPI_Iallreduce, MPI_Ireduce_scatter_block, MPI_Iallgather, MPI_Ibcast).
// It trains on the CPU across processes, lets CI test the distributed logic with
// `mpirun -np 2`, and carries the control messages of GPU jobs (the config check, the
// NCCL unique id, strings and scalars) that NCCL has no host path for.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"

namespace rn::dist {

class MpiComm : public Communicator {
public:
    // over MPI_COMM_WORLD (duplicated, so our traffic never matches anyone else's);
    // MPI must be running (init_from_launcher). A collective that has not completed after
    // timeout_s seconds is an rn::Error (see dist/comm.h).
    explicit MpiComm(double timeout_s = 300);
    // a sub-communicator of `parent` (MPI_Comm_split): the ranks that pass the same color,
    // ordered by key — e.g. the context-parallel group of a data-parallel rank
    MpiComm(const MpiComm& parent, int color, int key);
    ~MpiComm() override;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string backend() const override { return "mpi"; }
    double timeout() const { return timeout_s_; }

    std::unique_ptr<CommWork> all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::sum) override;
    std::unique_ptr<CommWork> reduce_scatter_async(const Tensor& in, const Tensor& out) override;
    // in-place when `in` is out's block of this rank (then MPI_IN_PLACE)
    std::unique_ptr<CommWork> all_gather_async(const Tensor& in, const Tensor& out) override;
    std::unique_ptr<CommWork> broadcast_async(const Tensor& t, int root) override;
    void barrier() override;

    // ---- host values (control messages)
    void broadcast_bytes(std::string& s, int root);
    double all_reduce_scalar(double v, ReduceOp op = ReduceOp::sum);
    std::vector<double> all_gather_scalar(double v);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    int rank_ = 0, size_ = 1;
    double timeout_s_;
};

}  // namespace rn::dist
