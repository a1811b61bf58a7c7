// ops/shape_ops.cpp — concat, stack, split. concat writes each input into a narrow view of
// one output buffer with the strided copy, so non-contiguous inputs cost no extra copy;
// stack is concat of unsqueezed inputs; split is narrow views.
#include "ops/shape_ops.h"

#include <algorithm>

#include "autograd/node.h"
#include "ops/op_util.h"

namespace rn {

namespace {
// d/dx_i concat(x_0, ..., x_n; dim) = grad.narrow(dim, offset_i, size_i)
struct ConcatBackward : Node {
    int64_t dim = 0;
    std::vector<int64_t> offsets;  // start of input i along dim in the output
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        std::vector<Tensor> out(next.size());
        for (size_t i = 0; i < next.size(); ++i)
            if (needs_input_grad(i))
                out[i] = g[0].narrow(dim, offsets[i], input_meta[i].shape[size_t(dim)]);
        return out;
    }
    std::string name() const override { return "ConcatBackward"; }
};

// the checks concat and stack share: a non-empty list of defined tensors of one dtype and
// device and one rank
void check_list(const std::vector<Tensor>& ts, const char* op) {
    RN_CHECK(!ts.empty(), op, ": expected at least one tensor, got an empty list");
    for (size_t i = 0; i < ts.size(); ++i) {
        RN_CHECK(ts[i].defined(), op, ": input ", i, " is an undefined tensor");
        RN_CHECK(ts[i].dtype() == ts[0].dtype(), op, ": input ", i, " has dtype ", ts[i].dtype(), " but input 0 has ",
                 ts[0].dtype(), ". HINT: cast with .to(dtype) first");
        RN_CHECK(ts[i].device() == ts[0].device(), op, ": input ", i, " is on ", ts[i].device(),
                 " but input 0 is on ", ts[0].device());
        RN_CHECK(ts[i].dim() == ts[0].dim(), op, ": input ", i, " has ", ts[i].dim(), " dims (shape ", ts[i].shape(),
                 ") but input 0 has ", ts[0].dim(), " (shape ", ts[0].shape(), ")");
    }
}
}  // namespace

Tensor concat(const std::vector<Tensor>& ts, int64_t dim_in) {
    check_list(ts, "concat");
    RN_CHECK(ts[0].dim() >= 1, "concat: cannot concatenate scalars (0-d tensors). HINT: use stack");
    const int64_t dim = wrap_dim(dim_in, ts[0].dim(), "concat");
    Shape out_shape = ts[0].shape();
    out_shape[size_t(dim)] = 0;
    std::vector<int64_t> offsets;
    for (size_t i = 0; i < ts.size(); ++i) {
        for (int64_t d = 0; d < ts[0].dim(); ++d)
            RN_CHECK(d == dim || ts[i].shape()[size_t(d)] == ts[0].shape()[size_t(d)], "concat: input ", i,
                     " has shape ", ts[i].shape(), " but input 0 has shape ", ts[0].shape(), ": they differ in dim ",
                     d, " (", ts[i].shape()[size_t(d)], " vs ", ts[0].shape()[size_t(d)], "); only dim ", dim,
                     ", the concatenation dim, may differ");
        offsets.push_back(out_shape[size_t(dim)]);
        out_shape[size_t(dim)] += ts[i].shape()[size_t(dim)];
    }
    Tensor out = empty(out_shape, ts[0].dtype(), ts[0].device());
    for (size_t i = 0; i < ts.size(); ++i) {
        int64_t len = ts[i].shape()[size_t(dim)];
        if (len == 0) continue;
        // a plain view of the output: make_view records nothing
        Shape sizes = out_shape;
        sizes[size_t(dim)] = len;
        Tensor dst = make_view(out, sizes, out.strides(), offsets[i] * out.strides()[size_t(dim)]);
        copy_nograd(dst, ts[i]);
    }
    if (any_requires_grad(ts)) {
        auto n = std::make_shared<ConcatBackward>();
        n->dim = dim;
        n->offsets = offsets;
        record(n, ts, {out});
    }
    return out;
}

Tensor stack(const std::vector<Tensor>& ts, int64_t dim_in) {
    check_list(ts, "stack");
    const int64_t dim = wrap_dim(dim_in, ts[0].dim() + 1, "stack");
    std::vector<Tensor> unsq;
    unsq.reserve(ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
        RN_CHECK(ts[i].shape() == ts[0].shape(), "stack: input ", i, " has shape ", ts[i].shape(),
                 " but input 0 has shape ", ts[0].shape(), "; stack needs equal shapes");
        unsq.push_back(ts[i].unsqueeze(dim));
    }
    return concat(unsq, dim);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim_in) {
    check_defined(x, "split");
    RN_CHECK(x.dim() >= 1, "split: cannot split a scalar (0-d tensor)");
    const int64_t dim = wrap_dim(dim_in, x.dim(), "split");
    const int64_t n = x.shape()[size_t(dim)];
    RN_CHECK(size > 0 || (size == 0 && n == 0), "split: expected a positive chunk size, got ", size,
             " for dim ", dim, " of size ", n);
    if (n == 0) return {x};
    std::vector<Tensor> out;
    for (int64_t s = 0; s < n; s += size) out.push_back(x.narrow(dim, s, std::min(size, n - s)));
    return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim_in) {
    check_defined(x, "split");
    RN_CHECK(x.dim() >= 1, "split: cannot split a scalar (0-d tensor)");
    const int64_t dim = wrap_dim(dim_in, x.dim(), "split");
    const int64_t n = x.shape()[size_t(dim)];
    RN_CHECK(!sizes.empty(), "split: expected at least one size, got an empty list");
    int64_t total = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
        RN_CHECK(sizes[i] >= 0, "split: size ", i, " is negative (", sizes[i], ")");
        total += sizes[i];
    }
    RN_CHECK(total == n, "split: sizes ", Shape(sizes), " sum to ", total, " but dim ", dim, " of shape ", x.shape(),
             " has size ", n);
    std::vector<Tensor> out;
    int64_t s = 0;
    for (int64_t len : sizes) {
        out.push_back(x.narrow(dim, s, len));
        s += len;
    }
    return out;
}

}  // namespace rn
