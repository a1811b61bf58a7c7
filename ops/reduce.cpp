// ops/reduce.cpp — reductions: checks, the plan, dispatch to the CPU (ops/reduce_cpu.cpp) or
// CUDA (cuda/reduce.cu) kernels, and the backward nodes. The reduced dims are permuted to the end and made
// contiguous, so one row kernel serves every dim set; a reduction of the last dims of a
// contiguous tensor (the common case: norms, losses) needs no copy. On CUDA a sum over one
// run of middle dims of a contiguous tensor (a bias gradient) is read in place by a column
// kernel instead (cuda::reduce_cols).
#include "ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "cuda/reduce.h"
#include "ops/elementwise.h"
#include "autograd/grad_mode.h"
#include "ops/op_util.h"

namespace rn {

namespace {
struct Plan {
    std::vector<bool> reduced;  // per input dim
    Shape kept_shape;           // output shape with keepdim
    Shape out_shape;            // output shape as returned
    int64_t rows = 1, cols = 1;
};

Plan make_plan(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
    Plan p;
    int64_t nd = x.dim();
    p.reduced.assign(size_t(nd), dims.empty());  // no dims: reduce everything
    for (int64_t d : dims) {
        int64_t w = wrap_dim(d, nd, op);
        RN_CHECK(!p.reduced[size_t(w)] || dims.empty(), op, ": dim ", d, " given twice");
        p.reduced[size_t(w)] = true;
    }
    for (int64_t d = 0; d < nd; ++d) {
        if (p.reduced[size_t(d)]) {
            p.cols *= x.shape()[d];
            p.kept_shape.push_back(1);
            if (keepdim) p.out_shape.push_back(1);
        } else {
            p.rows *= x.shape()[d];
            p.kept_shape.push_back(x.shape()[d]);
            p.out_shape.push_back(x.shape()[d]);
        }
    }
    return p;
}

// x with kept dims first, reduced dims last, contiguous: a rows × cols matrix
Tensor as_rows(const Tensor& x, const Plan& p) {
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < x.dim(); ++d) if (!p.reduced[size_t(d)]) perm.push_back(d);
    for (int64_t d = 0; d < x.dim(); ++d) if (p.reduced[size_t(d)]) perm.push_back(d);
    Shape sizes, strides;
    for (int64_t d : perm) { sizes.push_back(x.shape()[d]); strides.push_back(x.strides()[d]); }
    return contiguous_nograd(make_view(x, sizes, strides, x.offset()));
}

// d/dx sum = grad broadcast back over the reduced dims (scaled by 1/n for mean)
struct SumBackward : Node {
    Shape kept_shape;
    double scale = 1.0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor gk = g[0].reshape(kept_shape);
        if (scale != 1.0) gk = gk * scale;
        return {gk.expand(input_meta[0].shape)};
    }
    std::string name() const override { return scale == 1.0 ? "SumBackward" : "MeanBackward"; }
};

// d/dx max = grad at the first argmax of each reduced group, 0 elsewhere
struct MaxBackward : Node {
    Plan plan;
    SavedTensor argmax;  // i64 [rows]
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor gc = contiguous_nograd(g[0]);
        Tensor idx = argmax.get("MaxBackward");
        const Shape& xs = input_meta[0].shape;
        // gradient laid out as rows × cols (kept dims first), then permuted back
        Tensor rowsg = zeros({plan.rows, plan.cols}, gc.dtype(), gc.device());
        const int64_t* ip = idx.data<int64_t>();
        if (gc.is_cuda())
            cuda::scatter_rows(gc.dtype(), rowsg.raw_data(), ip, gc.raw_data(), plan.rows, plan.cols);
        else
            cpu::scatter_rows(gc.dtype(), rowsg.raw_data(), ip, gc.raw_data(), plan.rows, plan.cols);
        Shape perm_sizes;
        std::vector<int64_t> perm;
        for (int64_t d = 0; d < int64_t(xs.size()); ++d) if (!plan.reduced[size_t(d)]) perm.push_back(d);
        for (int64_t d = 0; d < int64_t(xs.size()); ++d) if (plan.reduced[size_t(d)]) perm.push_back(d);
        for (int64_t d : perm) perm_sizes.push_back(xs[size_t(d)]);
        std::vector<int64_t> inv(perm.size());
        for (size_t i = 0; i < perm.size(); ++i) inv[size_t(perm[i])] = int64_t(i);
        return {contiguous_nograd(rowsg.reshape(perm_sizes).permute(inv))};
    }
    void release() override { argmax.reset(); }
    std::string name() const override { return "MaxBackward"; }
};

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool is_mean) {
    const char* name = op == ReduceOp::max ? "max" : (is_mean ? "mean" : "sum");
    check_defined(x, name);
    Plan p = make_plan(x, dims, keepdim, name);
    if (op == ReduceOp::max) RN_CHECK(p.cols > 0, "max: reduction over an empty dim of shape ", x.shape());
    if (is_mean) check_floating(x, name);
    Tensor out = empty(p.out_shape, x.dtype(), x.device());
    Tensor argmax = op == ReduceOp::max ? empty({p.rows}, DType::i64, x.device()) : Tensor();
    int64_t* ap = argmax.defined() ? argmax.data<int64_t>() : nullptr;
    // CUDA sum of a contiguous x over one run of dims [d0, d1) before the last dims (a bias
    // gradient: [N, D] over dim 0): x is [outer, red, inner] as it lies, so a coalesced column
    // kernel reads it in place instead of a transposing copy into rows
    int64_t d0 = -1, d1 = -1;
    bool one_run = true;
    for (int64_t d = 0; d < x.dim(); ++d) {
        if (!p.reduced[size_t(d)]) continue;
        if (d0 < 0) d0 = d;
        else if (d != d1) one_run = false;
        d1 = d + 1;
    }
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d0 >= 0 && d < d0; ++d) outer *= x.shape()[d];
    for (int64_t d = d1; d0 >= 0 && d < x.dim(); ++d) inner *= x.shape()[d];
    if (x.is_cuda() && op == ReduceOp::sum && x.is_contiguous() && d0 >= 0 && one_run && inner > 1) {
        cuda::reduce_cols(x.dtype(), out.raw_data(), x.raw_data(), outer, p.cols, inner);
    } else {
        Tensor rows = as_rows(x, p);
        if (x.is_cuda()) cuda::reduce_rows(op, x.dtype(), out.raw_data(), ap, rows.raw_data(), p.rows, p.cols);
        else cpu::reduce_rows(op, x.dtype(), out.raw_data(), ap, rows.raw_data(), p.rows, p.cols);
    }
    if (is_mean) {
        NoGradGuard no_grad;  // the 1/n scale is part of this op's own backward
        out = affine(out, p.cols ? 1.0 / double(p.cols) : std::numeric_limits<double>::quiet_NaN(), 0.0);
    }
    if (any_requires_grad({x})) {
        if (op == ReduceOp::sum) {
            auto n = std::make_shared<SumBackward>();
            n->kept_shape = p.kept_shape;
            n->scale = is_mean ? 1.0 / double(std::max<int64_t>(p.cols, 1)) : 1.0;
            record(n, {x}, {out});
        } else {
            auto n = std::make_shared<MaxBackward>();
            n->plan = p;
            n->argmax = SavedTensor(argmax);
            record(n, {x}, {out});
        }
    }
    return out;
}
}  // namespace

Tensor sum(const Tensor& x) { return reduce(ReduceOp::sum, x, {}, false, false); }
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
    RN_CHECK(!dims.empty(), "sum: empty dim list (use sum(x) to reduce everything)");
    return reduce(ReduceOp::sum, x, dims, keepdim, false);
}
Tensor mean(const Tensor& x) { return reduce(ReduceOp::sum, x, {}, false, true); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
    RN_CHECK(!dims.empty(), "mean: empty dim list (use mean(x) to reduce everything)");
    return reduce(ReduceOp::sum, x, dims, keepdim, true);
}
Tensor max(const Tensor& x) { return reduce(ReduceOp::max, x, {}, false, false); }
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
    RN_CHECK(!dims.empty(), "max: empty dim list (use max(x) to reduce everything)");
    return reduce(ReduceOp::max, x, dims, keepdim, false);
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    int64_t lead = g.dim() - int64_t(shape.size());
    RN_CHECK(lead >= 0, "sum_to: cannot reduce shape ", g.shape(), " to the larger ", shape);
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < g.dim(); ++d) {
        if (d < lead) { dims.push_back(d); continue; }
        int64_t want = shape[size_t(d - lead)];
        if (want == 1 && g.shape()[d] != 1) dims.push_back(d);
        else RN_CHECK(want == g.shape()[d] || want == 1, "sum_to: shape ", g.shape(), " does not reduce to ", shape);
    }
    Tensor s = dims.empty() ? g : sum(g, dims, true);
    return s.reshape(shape);
}

}  // namespace rn
