// dist/nccl_comm.cpp — NcclComm (dist/nccl_comm.h): NCCL collectives on a communication
// stream ordered against the compute stream by events, and a watchdog thread that turns
// an asynchronous NCCL error or a collective stuck past the timeout into a bounded exit.
#include "dist/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "core/tensor_math.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/device.h"

namespace rn::dist {

namespace {

#define RN_NCCL_CHECK(call)                                                                              \
    do {                                                                                                 \
        ncclResult_t r_ = (call);                                                                        \
        if (r_ != ncclSuccess)                                                                           \
            ::rn::detail::throw_error(__FILE__, __LINE__, "NCCL error in ", #call, ": ", ncclGetErrorString(r_), \
                                      "\nHINT: NCCL_DEBUG=WARN in the environment shows NCCL's own reason"); \
    } while (0)

ncclDataType_t nccl_type(DType t, const char* what) {
    switch (t) {
        case DType::f32: return ncclFloat32;
        case DType::f64: return ncclFloat64;
        case DType::bf16: return ncclBfloat16;
        case DType::i32: return ncclInt32;
        case DType::i64: return ncclInt64;
    }
    RN_CHECK(false, what, ": NCCL does not take dtype ", t);
    return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
    switch (op) {
        case ReduceOp::max: return ncclMax;
        case ReduceOp::min: return ncclMin;
        default: return ncclSum;
    }
}

// A CUDA event shared by a work object and the watchdog; destroyed by the last of them.
struct Event {
    cudaEvent_t e = nullptr;
    Event() { RN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)); }
    ~Event() { cudaEventDestroy(e); }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
};

// One collective in flight: its completion event and when it was launched.
struct Pending {
    std::shared_ptr<Event> done;
    std::chrono::steady_clock::time_point start;
    const char* what = "";
};

class NcclComm;

class NcclWork : public CommWork {
public:
    NcclWork(std::shared_ptr<Event> done, int device, std::vector<Tensor> keep)
        : done_(std::move(done)), device_(device), keep_(std::move(keep)) {}
    // dropped without wait(): still order the compute stream after the collective, so the
    // memory of the tensors released here is not reused while NCCL may touch it
    ~NcclWork() override {
        if (!waited_) cudaStreamWaitEvent(rn::cuda::stream(device_), done_->e, 0);
    }
    void wait() override {
        if (waited_) return;
        // the compute stream (where later kernels read the result) waits; the host does not
        RN_CUDA_CHECK(cudaStreamWaitEvent(rn::cuda::stream(device_), done_->e, 0));
        waited_ = true;
        // the tensors may now be freed: anything reusing their memory is queued on the
        // compute stream after this wait (Note [One compute stream])
        keep_.clear();
    }

private:
    std::shared_ptr<Event> done_;
    int device_;
    std::vector<Tensor> keep_;
    bool waited_ = false;
};

class NcclComm : public Communicator {
public:
    NcclComm(MpiComm& mpi, int device, double timeout_s) : device_(device), timeout_s_(timeout_s) {
        rank_ = mpi.rank();
        size_ = mpi.size();
        // NVLink multicast off unless the user chose otherwise (overwrite = 0)
        setenv("NCCL_NVLS_ENABLE", "0", 0);
        rn::cuda::set_device(device_);
        ncclUniqueId id;
        std::string bytes;
        if (rank_ == 0) {
            RN_NCCL_CHECK(ncclGetUniqueId(&id));
            bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
        }
        mpi.broadcast_bytes(bytes, 0);
        RN_CHECK(bytes.size() == sizeof id, "NCCL start-up: the unique id from rank 0 has ", bytes.size(),
                 " bytes, expected ", sizeof id);
        std::memcpy(&id, bytes.data(), sizeof id);
        RN_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
        RN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        watchdog_ = std::thread([this] { watch(); });
    }

    ~NcclComm() override {
        // Unwinding after an error, a peer may never join the pending collectives: abort
        // the communicator rather than wait. Otherwise let them finish while the watchdog
        // still watches (a hang then ends at the timeout), and only then stop it.
        const bool failing = std::uncaught_exceptions() > 0;
        if (failing) ncclCommAbort(comm_);
        else cudaStreamSynchronize(stream_);
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        watchdog_.join();
        if (!failing) ncclCommDestroy(comm_);
        pending_.clear();
        ready_.reset();
        cudaStreamDestroy(stream_);
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string backend() const override { return "nccl"; }

    std::unique_ptr<CommWork> all_reduce_async(const Tensor& t, ReduceOp op) override {
        const char* what = "NCCL all_reduce";
        check(what, t);
        begin();
        RN_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), size_t(t.numel()), nccl_type(t.dtype(), what),
                                    nccl_op(op), comm_, stream_));
        return end(what, {t});
    }
    std::unique_ptr<CommWork> reduce_scatter_async(const Tensor& in, const Tensor& out) override {
        const char* what = "NCCL reduce_scatter";
        check(what, in);
        check(what, out);
        check_collective_sizes(what, in, out, size_);
        begin();
        RN_NCCL_CHECK(ncclReduceScatter(in.raw_data(), out.raw_data(), size_t(out.numel()),
                                        nccl_type(in.dtype(), what), ncclSum, comm_, stream_));
        return end(what, {in, out});
    }
    std::unique_ptr<CommWork> all_gather_async(const Tensor& in, const Tensor& out) override {
        const char* what = "NCCL all_gather";
        check(what, in);
        check(what, out);
        check_collective_sizes(what, out, in, size_);
        begin();  // in-place (in = out's block of this rank) is NCCL's own case
        RN_NCCL_CHECK(ncclAllGather(in.raw_data(), out.raw_data(), size_t(in.numel()), nccl_type(in.dtype(), what),
                                    comm_, stream_));
        return end(what, {in, out});
    }
    std::unique_ptr<CommWork> broadcast_async(const Tensor& t, int root) override {
        const char* what = "NCCL broadcast";
        check(what, t);
        RN_CHECK(root >= 0 && root < size_, what, ": root ", root, " is not a rank in [0, ", size_, ")");
        begin();
        RN_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), size_t(t.numel()), nccl_type(t.dtype(), what), root,
                                    comm_, stream_));
        return end(what, {t});
    }
    void barrier() override {
        // a one-element all-reduce, then the host waits for it
        Tensor one = zeros({1}, DType::f32, Device::cuda(device_));
        all_reduce(one, ReduceOp::sum);
        rn::cuda::synchronize(device_);
    }

private:
    void check(const char* what, const Tensor& t) {
        check_collective_tensor(what, t, true);
        RN_CHECK(t.device().index == device_, what, ": this communicator runs on cuda:", device_, ", got a tensor on ",
                 t.device());
    }
    // the communication stream starts after everything queued so far on the compute stream
    void begin() {
        if (!ready_) ready_ = std::make_shared<Event>();
        // one event serves every collective: the wait captures the record it follows
        RN_CUDA_CHECK(cudaEventRecord(ready_->e, rn::cuda::stream(device_)));
        RN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_->e, 0));
    }
    std::unique_ptr<CommWork> end(const char* what, std::vector<Tensor> keep) {
        auto done = std::make_shared<Event>();
        RN_CUDA_CHECK(cudaEventRecord(done->e, stream_));
        {
            std::lock_guard<std::mutex> lk(mu_);
            pending_.push_back({done, std::chrono::steady_clock::now(), what});
        }
        cv_.notify_all();
        return std::make_unique<NcclWork>(done, device_, std::move(keep));
    }

    // Watchdog: polls the oldest pending collective (they complete in order on the one
    // communication stream) and ends the process on an error or past the timeout.
    [[noreturn]] void fail(const std::string& why) {
        std::fprintf(stderr, "error: rank %d: %s\nHINT: look at the other ranks' output; --comm-timeout sets the limit\n",
                     rank_, why.c_str());
        std::fflush(stderr);
        ncclCommAbort(comm_);
        std::_Exit(3);  // mpirun ends every other rank when one exits non-zero
    }
    void watch() {
        cudaSetDevice(device_);
        std::unique_lock<std::mutex> lk(mu_);
        while (!stop_) {
            cv_.wait_for(lk, std::chrono::milliseconds(pending_.empty() ? 500 : 5));
            while (!pending_.empty()) {
                Pending p = pending_.front();
                cudaError_t q = cudaEventQuery(p.done->e);
                if (q == cudaSuccess) {
                    pending_.pop_front();
                    continue;
                }
                ncclResult_t async = ncclSuccess;
                ncclCommGetAsyncError(comm_, &async);
                if (async != ncclSuccess)
                    fail(std::string(p.what) + " failed: " + ncclGetErrorString(async));
                if (q != cudaErrorNotReady) fail(std::string(p.what) + ": CUDA error " + cudaGetErrorString(q));
                double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - p.start).count();
                if (waited > timeout_s_)
                    fail(std::string(p.what) + " did not complete within " + std::to_string(timeout_s_) +
                         " s: another rank has died or hangs");
                break;
            }
        }
    }

    int device_, rank_ = 0, size_ = 1;
    double timeout_s_;
    ncclComm_t comm_ = nullptr;
    cudaStream_t stream_ = nullptr;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Pending> pending_;
    std::shared_ptr<Event> ready_;
    bool stop_ = false;
    std::thread watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_comm(MpiComm& mpi, int device, double timeout_s) {
    RN_CHECK(device >= 0 && device < rn::cuda::device_count(), "NCCL communicator: rank ", mpi.rank(), " wants cuda:",
             device, " but this machine has ", rn::cuda::device_count(),
             " CUDA devices\nHINT: start at most as many ranks per machine as it has GPUs");
    return std::make_unique<NcclComm>(mpi, device, timeout_s);
}

}  // namespace rn::dist
