// dist/data_parallel.cpp — gradient buckets, their overlapped reduction, ZeRO-1 sharded
// AdamW (dist/data_parallel.h; the notes there say why it works this way).
#include "dist/data_parallel.h"

#include <chrono>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/tensor_math.h"
#include "cuda/device.h"
#include "cuda/optim.h"
#include "ops/ops.h"

namespace rn::dist {

namespace {
double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

struct DataParallel::Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // each parameter's first element in flat
    int64_t numel = 0;             // Σ parameter sizes
    int64_t padded = 0;            // numel rounded up to a multiple of the world size
    int64_t block = 0;             // padded / world: the elements one rank owns (ZeRO-1)
    Tensor flat;                   // [padded] f32: gradients, then (ZeRO-1) new parameters
    Tensor grad_block;             // ZeRO-1 [block]: this rank's block of the summed gradient
    Tensor m, v;                   // ZeRO-1 [block]: AdamW moments of that block
    // ZeRO-1: the pieces of parameters inside this rank's block
    struct Segment {
        size_t param;
        int64_t in_block, in_param, n;
    };
    std::vector<Segment> segments;
    size_t pending = 0;
    bool launched = false;
    std::unique_ptr<CommWork> work;
};

DataParallel::DataParallel(std::shared_ptr<Communicator> comm,
                           const std::vector<std::pair<std::string, Tensor>>& named_params,
                           const nn::AdamWOptions& adam, const DataParallelOptions& opts)
    : comm_(std::move(comm)), opts_(opts), adam_(adam), params_(named_params) {
    RN_CHECK(opts_.zero >= 0 && opts_.zero <= 2, "data parallel: --zero takes 0 (off), 1 (shard the optimizer "
             "state) or 2 (and the gradients), got ", opts_.zero);
    RN_CHECK(opts_.bucket_bytes > 0, "data parallel: the bucket size must be positive");
    RN_CHECK(!params_.empty(), "data parallel: no parameters");
    if (!comm_) opts_.zero = 0;  // one rank owns everything: sharding changes nothing
    if (opts_.zero == 0) full_ = std::make_unique<nn::AdamW>(params_, adam_);
    if (!comm_) return;

    const Device dev = params_[0].second.device();
    const int W = comm_->size(), r = comm_->rank();
    for (const auto& [name, p] : params_) {
        RN_CHECK(p.device() == dev, "data parallel: parameter '", name, "' is on ", p.device(), ", the first on ", dev,
                 "; every parameter must be on this rank's device");
        RN_CHECK(p.dtype() == DType::f32 && p.is_contiguous(), "data parallel: parameter '", name,
                 "' must be contiguous f32 (the master weights), got ", p.dtype());
    }
    // Note [Gradient buckets]: reverse registration order ≈ the order backward finishes
    where_.resize(params_.size());
    std::unique_ptr<Bucket> cur;
    auto close = [&] {
        if (!cur) return;
        Bucket& b = *cur;
        b.padded = (b.numel + W - 1) / W * W;
        b.block = b.padded / W;
        if (opts_.zero < 2) b.flat = zeros({b.padded}, DType::f32, dev);  // ZeRO-2: only while in use
        if (opts_.zero >= 1) {
            b.grad_block = zeros({b.block}, DType::f32, dev);
            b.m = zeros({b.block}, DType::f32, dev);
            b.v = zeros({b.block}, DType::f32, dev);
            const int64_t lo = int64_t(r) * b.block, hi = lo + b.block;
            for (size_t k = 0; k < b.params.size(); ++k) {
                const int64_t a = std::max(lo, b.offsets[k]);
                const int64_t e = std::min(hi, b.offsets[k] + params_[b.params[k]].second.numel());
                if (a < e) b.segments.push_back({b.params[k], a - lo, a - b.offsets[k], e - a});
            }
        }
        buckets_.push_back(std::move(cur));
    };
    for (size_t i = params_.size(); i-- > 0;) {
        if (!cur) cur = std::make_unique<Bucket>();
        where_[i] = {buckets_.size(), cur->numel};
        cur->params.push_back(i);
        cur->offsets.push_back(cur->numel);
        cur->numel += params_[i].second.numel();
        if (size_t(cur->numel) * sizeof(float) >= opts_.bucket_bytes) close();
    }
    close();
    for (size_t i = 0; i < params_.size(); ++i)
        add_post_accumulate_grad_hook(params_[i].second, [this, i](const Tensor&) { on_grad_ready(i); });
}

DataParallel::~DataParallel() {
    if (!comm_) return;
    for (auto& [name, p] : params_) clear_post_accumulate_grad_hooks(p);
}

void DataParallel::broadcast_parameters() {
    if (!comm_) return;
    NoGradGuard no_grad;
    std::vector<std::unique_ptr<CommWork>> works;
    for (auto& [name, p] : params_) works.push_back(comm_->broadcast_async(p, 0));
    for (auto& w : works) w->wait();
    for (auto& [name, p] : params_) p.bump_version();
}

void DataParallel::begin_backward(bool sync) {
    sync_ = sync && comm_;
    launched_in_backward_ = 0;
    if (!sync_) return;
    for (auto& b : buckets_) {
        RN_CHECK(!b->work, "data parallel: begin_backward while a reduction is still pending; call "
                 "finish_gradient_sync() after the last backward of each step");
        b->pending = b->params.size();
        b->launched = false;
    }
}

void DataParallel::on_grad_ready(size_t i) {
    if (!sync_ || !opts_.overlap) return;  // accumulation micro-batch: the reduction waits for the last one
    for (auto& bp : buckets_)  // keep the buckets already travelling moving (MPI)
        if (bp->work) bp->work->poll();
    Bucket& b = *buckets_[where_[i].first];
    if (b.launched) return;
    if (--b.pending == 0) {
        launch(b);
        ++launched_in_backward_;
    }
}

// the bucket's flat buffer, made if ZeRO-2 freed it
Tensor& DataParallel::flat_of(Bucket& b) {
    if (!b.flat.defined()) b.flat = empty({b.padded}, DType::f32, params_[0].second.device());
    return b.flat;
}

void DataParallel::launch(Bucket& b) {
    NoGradGuard no_grad;
    flat_of(b);
    for (size_t k = 0; k < b.params.size(); ++k) {
        const Tensor& p = params_[b.params[k]].second;
        Tensor seg = b.flat.narrow(0, b.offsets[k], p.numel());
        Tensor g = p.grad();
        if (g.defined()) copy_nograd(seg.view(p.shape()), g);
        else fill_nograd(seg, 0.0);  // no gradient on this rank: it contributes zero
        if (opts_.zero == 2) p.zero_grad();  // ZeRO-2: the whole gradient is not kept past here
    }
    if (b.padded > b.numel) fill_nograd(b.flat.narrow(0, b.numel, b.padded - b.numel), 0.0);
    b.launched = true;
    b.work = opts_.zero >= 1 ? comm_->reduce_scatter_async(b.flat, b.grad_block) : comm_->all_reduce_async(b.flat);
}

void DataParallel::finish_gradient_sync() {
    if (!comm_) return;
    RN_CHECK(sync_, "data parallel: finish_gradient_sync without begin_backward(true) before the last backward");
    NoGradGuard no_grad;
    const double t0 = now_s();
    for (auto& b : buckets_)
        if (!b->launched) launch(*b);
    for (auto& b : buckets_) {
        b->work->wait();
        b->work.reset();
    }
    const Device dev = params_[0].second.device();
    if (dev.is_cuda()) cuda::synchronize(dev.index);  // NCCL's wait does not block the host
    comm_seconds_ += now_s() - t0;
    sync_ = false;
    // the mean over ranks: each rank's loss is already the mean over its own rows
    const double inv = 1.0 / double(comm_->size());
    for (auto& b : buckets_) {
        if (opts_.zero >= 1) {
            copy_nograd(b->grad_block, b->grad_block * inv);
            if (opts_.zero == 2) b->flat = Tensor();  // only this rank's block of the gradient remains
            continue;
        }
        // one scaling kernel per bucket; the gradients are views of its result
        Tensor mean = b->flat * inv;
        for (size_t k = 0; k < b->params.size(); ++k) {
            const Tensor& p = params_[b->params[k]].second;
            p.set_grad(mean.narrow(0, b->offsets[k], p.numel()).view(p.shape()));
        }
    }
}

double DataParallel::clip_grad_norm(double max_norm) {
    if (opts_.zero == 0) {
        // every rank holds the whole averaged gradient: the local norm is the global one
        std::vector<Tensor> ps;
        for (auto& [n, p] : params_) ps.push_back(p);
        return nn::clip_grad_norm(ps, max_norm);
    }
    NoGradGuard no_grad;
    Tensor total;
    for (auto& b : buckets_) {
        Tensor sq = sum(b->grad_block * b->grad_block);
        total = total.defined() ? total + sq : sq;
    }
    Tensor t = total.reshape({1}).contiguous();
    comm_->all_reduce(t);  // Σ over ranks of Σ over their blocks = Σ over every element
    const double norm = std::sqrt(t.item());
    if (max_norm > 0 && norm > max_norm) {
        const double scale = max_norm / (norm + 1e-6);
        for (auto& b : buckets_) copy_nograd(b->grad_block, b->grad_block * scale);
    }
    return norm;
}

void DataParallel::step(double lr) {
    if (opts_.zero == 0) {
        full_->step(lr);
        return;
    }
    NoGradGuard no_grad;
    ++t_;
    const float b1 = float(adam_.beta1), b2 = float(adam_.beta2), eps = float(adam_.eps);
    const float bc1 = float(1 - std::pow(adam_.beta1, double(t_))), bc2 = float(1 - std::pow(adam_.beta2, double(t_)));
    const int r = comm_->rank();
    std::vector<std::unique_ptr<CommWork>> works;
    for (auto& bp : buckets_) {
        Bucket& b = *bp;
        Tensor mine = flat_of(b).narrow(0, int64_t(r) * b.block, b.block);
        float* pb = mine.data<float>();
        float* gb = b.grad_block.data<float>();
        float* mb = b.m.data<float>();
        float* vb = b.v.data<float>();
        for (const auto& s : b.segments) {
            const Tensor& p = params_[s.param].second;
            copy_nograd(mine.narrow(0, s.in_block, s.n), p.view({-1}).narrow(0, s.in_param, s.n));
            // the same rule and kernel as nn::AdamW: no decay on norms and biases
            const float wd = p.dim() >= 2 ? float(adam_.weight_decay) : 0.0f;
            if (p.is_cuda())
                cuda::adamw_step(pb + s.in_block, gb + s.in_block, mb + s.in_block, vb + s.in_block, s.n, float(lr),
                                 b1, b2, eps, wd, bc1, bc2);
            else
                nn::cpu::adamw_step(pb + s.in_block, gb + s.in_block, mb + s.in_block, vb + s.in_block, s.n, float(lr),
                                    b1, b2, eps, wd, bc1, bc2);
        }
        // this bucket's blocks travel while the next bucket updates
        works.push_back(comm_->all_gather_async(mine, b.flat));
    }
    const double t0 = now_s();
    for (auto& w : works) w->wait();
    for (auto& bp : buckets_) {
        Bucket& b = *bp;
        for (size_t k = 0; k < b.params.size(); ++k) {
            const Tensor& p = params_[b.params[k]].second;
            copy_nograd(p, b.flat.narrow(0, b.offsets[k], p.numel()).view(p.shape()));
            p.bump_version();
        }
        if (opts_.zero == 2) b.flat = Tensor();
    }
    const Device dev = params_[0].second.device();
    if (dev.is_cuda()) cuda::synchronize(dev.index);
    comm_seconds_ += now_s() - t0;
}

std::unique_ptr<nn::AdamW> DataParallel::gather_optimizer() {
    RN_CHECK(opts_.zero >= 1, "gather_optimizer: only ZeRO-1 and -2 shard the optimizer; use full_optimizer()");
    NoGradGuard no_grad;
    auto full = std::make_unique<nn::AdamW>(params_, adam_);
    full->set_step_count(t_);
    const int r = comm_->rank();
    for (auto& bp : buckets_) {
        Bucket& b = *bp;
        flat_of(b);
        for (int which = 0; which < 2; ++which) {
            const Tensor& mine = which == 0 ? b.m : b.v;
            copy_nograd(b.flat.narrow(0, int64_t(r) * b.block, b.block), mine);
            comm_->all_gather(b.flat.narrow(0, int64_t(r) * b.block, b.block), b.flat);
            for (size_t k = 0; k < b.params.size(); ++k) {
                auto& slot = full->slots()[b.params[k]];
                const Tensor& dst = which == 0 ? slot.m : slot.v;
                copy_nograd(dst, b.flat.narrow(0, b.offsets[k], dst.numel()).view(dst.shape()));
            }
        }
        if (opts_.zero == 2) b.flat = Tensor();
    }
    return full;
}

void DataParallel::scatter_optimizer(nn::AdamW& full) {
    RN_CHECK(opts_.zero >= 1, "scatter_optimizer: only ZeRO-1 and -2 shard the optimizer");
    NoGradGuard no_grad;
    t_ = full.step_count();
    auto& slots = full.slots();
    const int r = comm_->rank();
    for (auto& bp : buckets_) {
        Bucket& b = *bp;
        flat_of(b);
        for (int which = 0; which < 2; ++which) {
            for (size_t k = 0; k < b.params.size(); ++k) {
                const auto& slot = slots[b.params[k]];
                const Tensor& src = which == 0 ? slot.m : slot.v;
                copy_nograd(b.flat.narrow(0, b.offsets[k], src.numel()).view(src.shape()), src);
            }
            copy_nograd(which == 0 ? b.m : b.v, b.flat.narrow(0, int64_t(r) * b.block, b.block));
        }
        if (opts_.zero == 2) b.flat = Tensor();
    }
}

void DataParallel::broadcast_optimizer(nn::AdamW& opt) {
    if (!comm_) return;
    NoGradGuard no_grad;
    std::vector<std::unique_ptr<CommWork>> works;
    for (auto& s : opt.slots()) {
        works.push_back(comm_->broadcast_async(s.m, 0));
        works.push_back(comm_->broadcast_async(s.v, 0));
    }
    Tensor t = full({1}, double(opt.step_count()), DType::i64, params_[0].second.device());
    works.push_back(comm_->broadcast_async(t, 0));
    for (auto& w : works) w->wait();
    opt.set_step_count(int64_t(t.item()));
}

double DataParallel::take_comm_seconds() {
    double s = comm_seconds_;
    comm_seconds_ = 0;
    return s;
}

size_t DataParallel::optimizer_bytes() const {
    size_t n = 0;
    if (full_)
        for (auto& s : full_->slots()) n += s.m.nbytes() + s.v.nbytes();
    for (auto& b : buckets_)
        if (b->m.defined()) n += b->m.nbytes() + b->v.nbytes();
    return n;
}

}  // namespace rn::dist
