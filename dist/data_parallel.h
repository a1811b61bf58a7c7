// dist/data_parallel.h — data-parallel training over a Communicator: every rank holds the
// whole model, runs forward and backward on its own rows of the global batch, and the
// gradients are averaged over ranks before the update.
//
// Note [Gradient buckets]: parameters are grouped, in reverse registration order (about
// the order backward finishes them), into buckets of about `bucket_bytes`. A hook on each
// parameter (Note [Post-accumulate hooks]) counts the gradients a bucket still waits for;
// when the last arrives, the bucket's gradients are copied into one flat buffer and its
// reduction starts at once (asynchronous; on CUDA on the communication stream, Note
// [Communication stream]), so the reduction of late layers overlaps the backward of early
// ones. With gradient accumulation the hooks only act in the last micro-batch's backward:
// one reduction per optimizer step. finish_gradient_sync() starts any bucket left (a
// parameter that got no gradient counts as zero), waits for all, and measures how long
// it waited: the communication that backward did not hide.
//
// ZeRO stage 1 (`zero = 1`): each bucket's flat buffer is padded to a multiple of the
// world size, and rank r owns block r of every bucket. Gradients are reduce-scattered
// (each rank receives the summed block it owns), each rank runs AdamW on its blocks only
// (the moments m and v exist only for those: optimizer memory per rank falls by the
// world size), and the updated blocks are all-gathered back into every rank's parameters.
// The parameters are the fp32 master weights themselves (activations, not parameters,
// are cast for bf16), so there is no separate master copy to shard. The update is the
// same fused AdamW kernel on the same numbers as nn::AdamW, so ZeRO-1 and plain data
// parallelism agree to rounding of the reduction order.
//
// ZeRO stage 2 (`zero = 2`): ZeRO-1, and no rank keeps the whole gradient past its bucket's
// reduction: each parameter's gradient is copied into the bucket's flat buffer and freed
// as the bucket launches (during backward, late layers first), and the flat buffer itself
// exists only from its launch to the end of the reduce-scatter, and again during the
// step's all-gather of the new parameters. What stays between steps is this rank's block
// of the gradient and of the moments: memory for gradients falls from N to N/world floats
// (with gradient accumulation the gradients are whole until the last micro-batch, whose
// backward launches the reductions). The numbers are ZeRO-1's.
//
// A parameter without a gradient on a rank counts as a zero gradient there (nn::AdamW
// alone would skip it; every RetNet parameter gets one in each step).
//
// Without a communicator (a single process) this is nn::AdamW and nn::clip_grad_norm,
// exactly as before: no hooks, no copies.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/comm.h"
#include "nn/optim.h"

namespace rn::dist {

struct DataParallelOptions {
    size_t bucket_bytes = size_t(25) << 20;
    int zero = 0;  // 0: all-reduce, full AdamW state on every rank; 1: ZeRO stage 1; 2: stage 2
    // false: every reduction waits until backward is over (to measure what overlap hides)
    bool overlap = true;
};

class DataParallel {
public:
    // comm may be null: one process, no communication
    DataParallel(std::shared_ptr<Communicator> comm, const std::vector<std::pair<std::string, Tensor>>& named_params,
                 const nn::AdamWOptions& adam, const DataParallelOptions& opts);
    ~DataParallel();
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    int rank() const { return comm_ ? comm_->rank() : 0; }
    int world() const { return comm_ ? comm_->size() : 1; }
    int zero() const { return opts_.zero; }
    size_t num_buckets() const { return buckets_.size(); }
    Communicator* comm() const { return comm_.get(); }

    // every rank's parameters ← rank 0's
    void broadcast_parameters();
    // before each backward: sync = true for the last micro-batch of an optimizer step
    void begin_backward(bool sync);
    // after the last backward of a step (Note [Gradient buckets])
    void finish_gradient_sync();
    // the global gradient norm, and clipping to max_norm (0: no clipping) like
    // nn::clip_grad_norm; under ZeRO-1 from the shards, one all-reduce of a scalar
    double clip_grad_norm(double max_norm);
    // AdamW at learning rate lr (ZeRO-1: on this rank's blocks, then all-gather)
    void step(double lr);

    // The whole optimizer state as an nn::AdamW over the same parameters (checkpoints
    // read and write it). Without ZeRO it is the optimizer itself; under ZeRO-1
    // gather_optimizer() assembles it from every rank's blocks (a collective: every rank
    // calls it) and scatter_optimizer() takes each rank's blocks from one that is full
    // on every rank.
    nn::AdamW* full_optimizer() { return full_.get(); }
    std::unique_ptr<nn::AdamW> gather_optimizer();
    void scatter_optimizer(nn::AdamW& full);
    // every rank's optimizer state ← rank 0's (after rank 0 loaded a checkpoint): the
    // moments of `full` (this optimizer itself without ZeRO) and the step count
    void broadcast_optimizer(nn::AdamW& full);

    // buckets whose reduction started inside the last backward, before
    // finish_gradient_sync (the overlap; 0 would mean none)
    size_t buckets_launched_in_backward() const { return launched_in_backward_; }
    // seconds spent in finish_gradient_sync and in the ZeRO all-gather, waiting for
    // communication that computation did not hide; reset by take_comm_seconds()
    double take_comm_seconds();
    // bytes of AdamW moments held by this rank
    size_t optimizer_bytes() const;

private:
    struct Bucket;
    void on_grad_ready(size_t param_index);
    void launch(Bucket& b);
    Tensor& flat_of(Bucket& b);

    std::shared_ptr<Communicator> comm_;
    DataParallelOptions opts_;
    nn::AdamWOptions adam_;
    std::vector<std::pair<std::string, Tensor>> params_;
    std::vector<std::unique_ptr<Bucket>> buckets_;
    std::vector<std::pair<size_t, int64_t>> where_;  // per parameter: (bucket, element offset)
    std::unique_ptr<nn::AdamW> full_;                // without ZeRO
    int64_t t_ = 0;                                  // ZeRO: AdamW's step count
    bool sync_ = false;
    size_t launched_in_backward_ = 0;
    double comm_seconds_ = 0;
};

}  // namespace rn::dist
