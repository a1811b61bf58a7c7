// ops/softmax.cpp — softmax, log_softmax and cross_entropy: input checks, the move of the
// softmax dim to the end (so one row kernel serves every dim), and the backward nodes.
// Kernels in ops/softmax_cpu.cpp and cuda/softmax.cu. Dimension key: N rows, C the softmax
// dim / classes.
#include "ops/softmax.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "autograd/node.h"
#include "cuda/softmax.h"
#include "ops/op_util.h"

namespace rn {

namespace {
// x with dim d moved last, contiguous: an N × C matrix. No copy when d is already the last
// dim of a contiguous x (the common case: attention scores, logits).
Tensor dim_last(const Tensor& x, int64_t d) {
    const int64_t nd = x.dim();
    if (d == nd - 1) return contiguous_nograd(x);
    Shape sizes, strides;
    for (int64_t i = 0; i < nd; ++i)
        if (i != d) { sizes.push_back(x.shape()[size_t(i)]); strides.push_back(x.strides()[size_t(i)]); }
    sizes.push_back(x.shape()[size_t(d)]);
    strides.push_back(x.strides()[size_t(d)]);
    return contiguous_nograd(make_view(x, sizes, strides, x.offset()));
}

// inverse of dim_last: rows (contiguous, dim d last) back to the original dim order, contiguous
Tensor dim_back(const Tensor& rows, int64_t d) {
    const int64_t nd = rows.dim();
    if (d == nd - 1) return rows;
    Shape sizes(static_cast<size_t>(nd)), strides(static_cast<size_t>(nd));
    for (int64_t i = 0; i < nd; ++i) {
        int64_t src = i < d ? i : (i == d ? nd - 1 : i - 1);  // where original dim i sits in rows
        sizes[size_t(i)] = rows.shape()[size_t(src)];
        strides[size_t(i)] = rows.strides()[size_t(src)];
    }
    return contiguous_nograd(make_view(rows, sizes, strides, rows.offset()));
}

// softmax:     d/dx = y ⊙ (g − Σ_c g⊙y)
// log_softmax: d/dx = g − softmax(x) ⊙ Σ_c g        (softmax recovered as exp(y))
struct SoftmaxBackward : Node {
    bool log = false;
    int64_t dim = -1;  // wrapped; the kernels see it as the last dim
    SavedTensor y;     // the output, softmax dim last, contiguous [N, C]
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor yr = y.get(log ? "LogSoftmaxBackward" : "SoftmaxBackward");
        Tensor dy = dim_last(g[0], dim);
        Tensor dx = empty_like(dy);
        const int64_t cols = yr.dim() ? yr.shape().back() : 1;
        const int64_t rows = cols ? yr.numel() / cols : 0;
        if (dy.is_cuda()) cuda::softmax_backward(dy.dtype(), dx.raw_data(), dy.raw_data(), yr.raw_data(), rows, cols, log);
        else cpu::softmax_backward(dy.dtype(), dx.raw_data(), dy.raw_data(), yr.raw_data(), rows, cols, log);
        return {dim_back(dx, dim)};
    }
    void release() override { y.reset(); }
    std::string name() const override { return log ? "LogSoftmaxBackward" : "SoftmaxBackward"; }
};

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
    const char* name = log ? "log_softmax" : "softmax";
    check_defined(x, name);
    check_floating(x, name);
    RN_CHECK(x.dim() >= 1, name, ": expected a tensor with at least 1 dim, got a 0-d tensor");
    const int64_t d = wrap_dim(dim, x.dim(), name);
    Tensor xr = dim_last(x, d);
    Tensor yr = empty(xr.shape(), xr.dtype(), xr.device());
    const int64_t cols = x.shape()[size_t(d)];
    const int64_t rows = cols ? x.numel() / cols : 0;
    if (x.is_cuda()) cuda::softmax_forward(x.dtype(), yr.raw_data(), xr.raw_data(), rows, cols, log);
    else cpu::softmax_forward(x.dtype(), yr.raw_data(), xr.raw_data(), rows, cols, log);
    Tensor y = dim_back(yr, d);
    if (any_requires_grad({x})) {
        auto n = std::make_shared<SoftmaxBackward>();
        n->log = log;
        n->dim = d;
        n->y = SavedTensor(yr);
        record(n, {x}, {y});
    }
    return y;
}

// d/dlogits mean_n(lse_n − x[n, t_n]) = (softmax(x) − onehot(t)) · g / count, 0 on ignored rows
struct CrossEntropyBackward : Node {
    SavedTensor logits;   // [N, C] contiguous (input dtype)
    SavedTensor targets;  // i64 [N] contiguous
    SavedTensor lse;      // f64 [N]: log-sum-exp per row, so backward needs no second reduction
    SavedTensor count_dev;  // CUDA only: i64 [1], the count left on the device (cuda/softmax.h)
    int64_t rows = 0, cols = 0, count = 0, ignore_index = -100;  // count: CPU only
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor x = logits.get("CrossEntropyBackward");
        Tensor t = targets.get("CrossEntropyBackward");
        Tensor l = lse.get("CrossEntropyBackward");
        Tensor dx = empty(input_meta[0].shape, x.dtype(), x.device());
        if (x.is_cuda()) {
            // the upstream gradient stays on the device: no .item(), no sync
            const DType ldt = cross_entropy_loss_dtype(x.dtype());
            Tensor dloss = contiguous_nograd(g[0].dtype() == ldt ? g[0] : cast_nograd(g[0], ldt));
            cuda::cross_entropy_backward(x.dtype(), dx.raw_data(), dloss.raw_data(), x.raw_data(), l.data<double>(),
                                         t.data<int64_t>(), count_dev.get("CrossEntropyBackward").data<int64_t>(),
                                         rows, cols, ignore_index);
        } else {
            cpu::cross_entropy_backward(x.dtype(), dx.raw_data(), g[0].item(), x.raw_data(), l.data<double>(),
                                        t.data<int64_t>(), rows, cols, ignore_index, count);
        }
        return {dx};
    }
    void release() override { logits.reset(); targets.reset(); lse.reset(); count_dev.reset(); }
    std::string name() const override { return "CrossEntropyBackward"; }
};

// "[1, 2]": the multi-index of flat position i in shape s (for error messages)
std::string index_str(int64_t i, const Shape& s) {
    Shape idx(s.size());
    for (size_t k = s.size(); k-- > 0;) { idx[k] = i % s[k]; i /= s[k]; }
    return shape_str(idx);
}

[[noreturn]] void bad_target(const Shape& targets_shape, int64_t r, int64_t t, int64_t C, int64_t ignore_index,
                             const char* name) {
    std::ostringstream where;
    where << "position " << r;
    if (targets_shape.size() > 1) where << " (index " << index_str(r, targets_shape) << ")";
    RN_FAIL(name, ": target ", t, " at ", where.str(), " is out of range for ", C, " classes; expected 0 <= target < ",
            C, " or ignore_index (", ignore_index, ")");
}

// RN_CUDA_CHECK_TARGETS=1: CUDA cross_entropy waits for its forward and throws the CPU's
// message on a bad target. Off by default: a bad target then makes the loss and the gradient
// NaN without stopping the host (see cuda/softmax.h).
bool cuda_check_targets() {
    static const bool on = [] {
        const char* e = std::getenv("RN_CUDA_CHECK_TARGETS");
        return e && *e && std::strcmp(e, "0") != 0;
    }();
    return on;
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

namespace detail {

Tensor cross_entropy_targets(const Tensor& targets, const Shape& lead, int64_t C, int64_t ignore_index,
                             Device device, const char* name, const std::string& rows_of, int64_t* count) {
    int64_t N = 1;
    for (int64_t n : lead) N *= n;
    check_defined(targets, name, "targets");
    RN_CHECK(targets.device() == device, name, ": targets are on ", targets.device(), " but ", rows_of, " are on ",
             device, ". HINT: move both to one device with .to(device)");
    RN_CHECK(targets.dtype() == DType::i32 || targets.dtype() == DType::i64, name,
             ": expected integer targets (i32 or i64), got ", targets.dtype(),
             ". HINT: class indices, not probabilities or one-hot rows");
    RN_CHECK(targets.shape() == lead || (targets.dim() == 1 && targets.numel() == N), name, ": targets of shape ",
             targets.shape(), " do not match ", rows_of, "; expected ", lead, " or [", N, "]");
    Tensor t64 = contiguous_nograd(targets.dtype() == DType::i64 ? targets : cast_nograd(targets, DType::i64));
    *count = 0;
    if (device.is_cpu()) {
        const int64_t* tp = t64.data<int64_t>();
        for (int64_t r = 0; r < N; ++r) {
            const int64_t t = tp[r];
            if (t == ignore_index) continue;
            if (t < 0 || t >= C) bad_target(targets.shape(), r, t, C, ignore_index, name);
            ++*count;
        }
    }
    return t64;
}

void cross_entropy_check_device_count(const Tensor& count_dev, const Tensor& t64, const Shape& targets_shape,
                                      int64_t C, int64_t ignore_index, const char* name) {
    if (!cuda_check_targets()) return;
    const int64_t c = int64_t(count_dev.item());  // debug path: one sync
    if (c < 0)
        bad_target(targets_shape, -1 - c, int64_t(make_view(t64, {}, {}, t64.offset() - 1 - c).item()), C,
                   ignore_index, name);
}

}  // namespace detail

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
    const char* name = "cross_entropy";
    check_defined(logits, name, "logits");
    check_floating(logits, name);
    RN_CHECK(logits.dim() >= 1, "cross_entropy: logits must have a class dim, got a 0-d tensor");
    const int64_t C = logits.shape().back();
    RN_CHECK(C > 0, "cross_entropy: logits of shape ", logits.shape(), " have 0 classes");
    const int64_t N = logits.numel() / C;
    const Shape lead(logits.shape().begin(), logits.shape().end() - 1);
    int64_t count = 0;  // CPU: counted here; CUDA: count_dev, counted and validated on the device
    Tensor t64 = detail::cross_entropy_targets(targets, lead, C, ignore_index, logits.device(), name,
                                               "logits of shape " + shape_str(logits.shape()), &count);

    Tensor x = contiguous_nograd(logits);
    // the loss is a mean over every token: bf16 logits give an f32 loss (as under PyTorch's
    // autocast), so a bf16 run's loss is not rounded to 3 significant digits
    Tensor loss = empty({}, cross_entropy_loss_dtype(logits.dtype()), logits.device());
    Tensor lse = empty({N}, DType::f64, logits.device());
    Tensor count_dev;
    if (logits.is_cuda()) {
        count_dev = empty({1}, DType::i64, logits.device());
        cuda::cross_entropy_forward(x.dtype(), loss.raw_data(), lse.data<double>(), count_dev.data<int64_t>(),
                                    x.raw_data(), t64.data<int64_t>(), N, C, ignore_index);
        detail::cross_entropy_check_device_count(count_dev, t64, targets.shape(), C, ignore_index, name);
    } else {
        const int64_t* tp = t64.data<int64_t>();
        cpu::cross_entropy_forward(x.dtype(), loss.raw_data(), lse.data<double>(), x.raw_data(), tp, N, C,
                                   ignore_index, count);
    }
    if (any_requires_grad({logits})) {
        auto n = std::make_shared<CrossEntropyBackward>();
        n->logits = SavedTensor(x);
        n->targets = SavedTensor(t64);
        n->lse = SavedTensor(lse);
        if (count_dev.defined()) n->count_dev = SavedTensor(count_dev);
        n->rows = N;
        n->cols = C;
        n->count = count;
        n->ignore_index = ignore_index;
        record(n, {logits}, {loss});
    }
    return loss;
}

}  // namespace rn
