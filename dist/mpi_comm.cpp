// dist/mpi_comm.cpp — MpiComm (dist/mpi_comm.h): each collective is one MPI non-blocking
// call; wait() polls MPI_Test against the deadline, so a dead or hanging peer becomes an
// rn::Error after the timeout rather than a process that never returns.
#include "dist/mpi_comm.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <thread>

#include "core/tensor_math.h"
#include "dist/launch.h"

namespace rn::dist {

namespace {

std::string mpi_error_string(int rc) {
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, buf, &len);
    return std::string(buf, size_t(len));
}

#define RN_MPI_CHECK(call, what)                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        RN_CHECK(rc_ == MPI_SUCCESS, what, " failed: ", mpi_error_string(rc_));                    \
    } while (0)

MPI_Datatype mpi_type(DType t, const char* what) {
    switch (t) {
        case DType::f32: return MPI_FLOAT;
        case DType::f64: return MPI_DOUBLE;
        case DType::i32: return MPI_INT32_T;
        case DType::i64: return MPI_INT64_T;
        default: break;
    }
    RN_CHECK(false, what, ": MPI takes f32, f64, i32 or i64 tensors, got ", t,
             "\nHINT: bf16 training runs on CUDA, through NCCL");
    return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
    switch (op) {
        case ReduceOp::max: return MPI_MAX;
        case ReduceOp::min: return MPI_MIN;
        default: return MPI_SUM;
    }
}

int count_of(int64_t n, const char* what) {
    // MPI counts are int; our buckets are far below 2^31 elements
    RN_CHECK(n <= INT_MAX, what, ": ", n, " elements exceed MPI's int count (", INT_MAX,
             ")\nHINT: use a smaller --bucket-mb");
    return int(n);
}

class MpiWork : public CommWork {
public:
    MpiWork(MPI_Request req, std::vector<Tensor> keep, const char* what, int rank, double timeout_s)
        : req_(req), keep_(std::move(keep)), what_(what), rank_(rank), timeout_s_(timeout_s) {}
    // Dropped without wait() only on an error path (an exception unwinding past the
    // buckets): waiting here could block for ever on a dead peer, so it is abandoned.
    ~MpiWork() override {
        if (req_ != MPI_REQUEST_NULL) abandon();
    }
    void wait() override {
        if (req_ == MPI_REQUEST_NULL) return;
        auto start = std::chrono::steady_clock::now();
        for (int spin = 0;; ++spin) {
            int done = 0;
            RN_MPI_CHECK(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), what_);
            if (done) break;
            if (spin > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
            double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (waited >= timeout_s_) abandon();
            RN_CHECK(waited < timeout_s_, "rank ", rank_, ": ", what_, " did not complete within ", timeout_s_,
                     " s: another rank has died, hangs, or is not running the same collectives"
                     "\nHINT: look at the other ranks' output; --comm-timeout sets this limit");
        }
        keep_.clear();
    }
    // A collective can be neither cancelled nor freed (MPI 3.1, 5.12): after a timeout it
    // is forgotten, its buffers kept alive for good, since MPI may still write them if
    // the late rank arrives (the job is about to end anyway).
    void abandon() {
        static std::vector<Tensor> graveyard;
        for (auto& t : keep_) graveyard.push_back(t);
        keep_.clear();
        req_ = MPI_REQUEST_NULL;
    }
    void poll() override {
        int done = 0;  // an error here is reported by wait()
        if (req_ != MPI_REQUEST_NULL) MPI_Test(&req_, &done, MPI_STATUS_IGNORE);
    }

private:
    MPI_Request req_;
    std::vector<Tensor> keep_;  // the buffers stay alive until MPI is done with them
    const char* what_;
    int rank_;
    double timeout_s_;
};

}  // namespace

struct MpiComm::Impl {
    MPI_Comm comm = MPI_COMM_NULL;
};

MpiComm::MpiComm(double timeout_s) : impl_(std::make_unique<Impl>()), timeout_s_(timeout_s) {
    RN_CHECK(mpi_running(), "MpiComm: MPI is not running. HINT: start the job with mpirun "
             "(dist::init_from_launcher starts MPI there)");
    RN_CHECK(timeout_s > 0, "MpiComm: timeout must be positive, got ", timeout_s);
    RN_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(impl_->comm, &rank_);
    MPI_Comm_size(impl_->comm, &size_);
}

MpiComm::MpiComm(const MpiComm& parent, int color, int key)
    : impl_(std::make_unique<Impl>()), timeout_s_(parent.timeout_s_) {
    RN_CHECK(color >= 0 && key >= 0, "MpiComm: color and key must be ≥ 0, got ", color, " and ", key);
    RN_MPI_CHECK(MPI_Comm_split(parent.impl_->comm, color, key, &impl_->comm), "MPI_Comm_split");
    MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(impl_->comm, &rank_);
    MPI_Comm_size(impl_->comm, &size_);
}

MpiComm::~MpiComm() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
}

std::unique_ptr<CommWork> MpiComm::all_reduce_async(const Tensor& t, ReduceOp op) {
    const char* what = "MPI all_reduce";
    check_collective_tensor(what, t, false);
    MPI_Request req;
    RN_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), count_of(t.numel(), what), mpi_type(t.dtype(), what),
                                mpi_op(op), impl_->comm, &req),
                 what);
    return std::make_unique<MpiWork>(req, std::vector<Tensor>{t}, what, rank_, timeout_s_);
}

std::unique_ptr<CommWork> MpiComm::reduce_scatter_async(const Tensor& in, const Tensor& out) {
    const char* what = "MPI reduce_scatter";
    check_collective_tensor(what, in, false);
    check_collective_tensor(what, out, false);
    check_collective_sizes(what, in, out, size_);
    MPI_Request req;
    RN_MPI_CHECK(MPI_Ireduce_scatter_block(in.raw_data(), out.raw_data(), count_of(out.numel(), what),
                                           mpi_type(in.dtype(), what), MPI_SUM, impl_->comm, &req),
                 what);
    return std::make_unique<MpiWork>(req, std::vector<Tensor>{in, out}, what, rank_, timeout_s_);
}

std::unique_ptr<CommWork> MpiComm::all_gather_async(const Tensor& in, const Tensor& out) {
    const char* what = "MPI all_gather";
    check_collective_tensor(what, in, false);
    check_collective_tensor(what, out, false);
    check_collective_sizes(what, out, in, size_);
    const int n = count_of(in.numel(), what);
    const MPI_Datatype ty = mpi_type(in.dtype(), what);
    const bool in_place = static_cast<char*>(out.raw_data()) + size_t(rank_) * in.nbytes() ==
                          static_cast<char*>(in.raw_data());
    MPI_Request req;
    RN_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.raw_data(), n, ty, out.raw_data(), n, ty, impl_->comm,
                                &req),
                 what);
    return std::make_unique<MpiWork>(req, std::vector<Tensor>{in, out}, what, rank_, timeout_s_);
}

std::unique_ptr<CommWork> MpiComm::broadcast_async(const Tensor& t, int root) {
    const char* what = "MPI broadcast";
    check_collective_tensor(what, t, false);
    RN_CHECK(root >= 0 && root < size_, what, ": root ", root, " is not a rank in [0, ", size_, ")");
    MPI_Request req;
    RN_MPI_CHECK(MPI_Ibcast(t.raw_data(), count_of(t.numel(), what), mpi_type(t.dtype(), what), root, impl_->comm,
                            &req),
                 what);
    return std::make_unique<MpiWork>(req, std::vector<Tensor>{t}, what, rank_, timeout_s_);
}

void MpiComm::barrier() {
    MPI_Request req;
    RN_MPI_CHECK(MPI_Ibarrier(impl_->comm, &req), "MPI barrier");
    MpiWork(req, {}, "MPI barrier", rank_, timeout_s_).wait();
}

void MpiComm::broadcast_bytes(std::string& s, int root) {
    Tensor n = from_vector<int64_t>({int64_t(s.size())}, {1});
    broadcast(n, root);
    const int64_t len = n.to_vector<int64_t>()[0];
    // bytes travel as i64 words (MpiComm's dtypes), the tail zero-padded
    std::vector<int64_t> words(size_t((len + 7) / 8 + 1), 0);
    if (rank_ == root) std::memcpy(words.data(), s.data(), s.size());
    Tensor w = from_vector<int64_t>(words, {int64_t(words.size())});
    broadcast(w, root);
    s.assign(reinterpret_cast<const char*>(w.data<int64_t>()), size_t(len));
}

double MpiComm::all_reduce_scalar(double v, ReduceOp op) {
    Tensor t = from_vector<double>({v}, {1});
    all_reduce(t, op);
    return t.to_vector<double>()[0];
}

std::vector<double> MpiComm::all_gather_scalar(double v) {
    Tensor in = from_vector<double>({v}, {1});
    Tensor out = zeros({size_}, DType::f64);
    all_gather(in, out);
    return out.to_vector<double>();
}

}  // namespace rn::dist
