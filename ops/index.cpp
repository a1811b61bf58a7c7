// ops/index.cpp — embedding, index_select and gather with their backward nodes.
// Embedding is index_select along dim 0 of the weight with the ids flattened; both share
// the [O, N, I] kernels in index_cpu.cpp (cuda/index.cu on CUDA). Indices live on the
// indexed tensor's device; they are converted to contiguous i64 once and validated before
// any kernel runs, so a kernel never reads out of bounds. On CUDA the check runs on the
// device and reads back one 8-byte result (one stream sync per forward call; backwards
// reuse the validated indices and never sync).
#include "ops/index.h"

#include <sstream>

#include "autograd/node.h"
#include "cuda/graph.h"
#include "cuda/index.h"
#include "ops/op_util.h"

namespace rn {

namespace {
// "[1, 3]": the multi-index of element `linear` of a row-major tensor of shape s
std::string position_str(const Shape& s, int64_t linear) {
    std::vector<int64_t> c(s.size());
    for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
        c[size_t(d)] = linear % s[size_t(d)];
        linear /= s[size_t(d)];
    }
    std::ostringstream os;
    os << '[';
    for (size_t d = 0; d < c.size(); ++d) os << (d ? ", " : "") << c[d];
    os << ']';
    return os.str();
}

// idx as contiguous i64 on `device` (the indexed tensor's); throws at the first value
// outside [0, n), naming where it was. `what` names the index argument ("ids", "idx"),
// `range_of` what n counts.
Tensor checked_indices(const Tensor& idx, int64_t n, Device device, const char* op, const char* what,
                       const std::string& range_of) {
    check_defined(idx, op, what);
    check_index_dtype(idx, op);
    RN_CHECK(idx.device() == device, op, ": ", what, " is on ", idx.device(), " but the indexed tensor is on ", device,
             ". HINT: move ", what, " to ", device, " with .to()");
    Tensor i64 = idx.dtype() == DType::i64 ? contiguous_nograd(idx) : cast_nograd(idx, DType::i64);
    auto fail = [&](int64_t k, int64_t v) {
        RN_FAIL(op, ": ", what, position_str(i64.shape(), k), " = ", v,
                " is out of range: expected a value in [0, ", n, ") (", range_of, ")");
    };
    if (i64.is_cuda()) {
        // the check waits for the GPU, which a CUDA graph capture forbids: a captured
        // function's caller vouches for its ids (serving/engine.cpp validates them on the host)
        if (cuda::stream_capturing()) return i64;
        int64_t v = 0;
        int64_t k = cuda::find_out_of_range(i64.data<int64_t>(), i64.numel(), n, &v);
        if (k >= 0) fail(k, v);
        return i64;
    }
    const int64_t* p = i64.data<int64_t>();
    for (int64_t k = 0, m = i64.numel(); k < m; ++k)
        if (p[k] < 0 || p[k] >= n) fail(k, p[k]);
    return i64;
}

// d/dweight embedding = grad rows scatter-added into the rows the ids looked up
struct EmbeddingBackward : Node {
    SavedTensor ids;  // i64, contiguous, any shape
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor id = ids.get("EmbeddingBackward");
        Tensor dout = contiguous_nograd(g[0]);
        const TensorMeta& m = input_meta[0];
        Tensor dw = empty(m.shape, m.dtype, m.device);
        if (dw.is_cuda())
            cuda::index_select_backward(dw.dtype(), dw.raw_data(), dout.raw_data(), id.data<int64_t>(), 1, m.shape[0],
                                        id.numel(), m.shape[1]);
        else
            cpu::index_select_backward(dw.dtype(), dw.raw_data(), dout.raw_data(), id.data<int64_t>(), 1, m.shape[0],
                                       id.numel(), m.shape[1]);
        return {dw};
    }
    void release() override { ids.reset(); }
    std::string name() const override { return "EmbeddingBackward"; }
};

// d/dx index_select(x, dim, idx) = grad scatter-added back to positions idx along dim
struct IndexSelectBackward : Node {
    SavedTensor idx;  // i64 [K]
    int64_t outer = 1, n = 0, inner = 1;  // x viewed as [outer, n, inner]
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor id = idx.get("IndexSelectBackward");
        Tensor dout = contiguous_nograd(g[0]);
        const TensorMeta& m = input_meta[0];
        Tensor dx = empty(m.shape, m.dtype, m.device);
        if (dx.is_cuda())
            cuda::index_select_backward(dx.dtype(), dx.raw_data(), dout.raw_data(), id.data<int64_t>(), outer, n,
                                        id.numel(), inner);
        else
            cpu::index_select_backward(dx.dtype(), dx.raw_data(), dout.raw_data(), id.data<int64_t>(), outer, n,
                                       id.numel(), inner);
        return {dx};
    }
    void release() override { idx.reset(); }
    std::string name() const override { return "IndexSelectBackward"; }
};

// d/dx gather(x, dim, idx) = grad scatter-added into x's shape at positions idx along dim
struct GatherBackward : Node {
    SavedTensor idx;  // i64, idx's shape
    int64_t dim = 0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor id = idx.get("GatherBackward");
        Tensor dout = contiguous_nograd(g[0]);
        const TensorMeta& m = input_meta[0];
        Tensor dx = empty(m.shape, m.dtype, m.device);
        if (dx.is_cuda())
            cuda::gather_backward(dx.dtype(), dx.raw_data(), dout.raw_data(), id.data<int64_t>(), m.shape, id.shape(),
                                  dim);
        else
            cpu::gather_backward(dx.dtype(), dx.raw_data(), dout.raw_data(), id.data<int64_t>(), m.shape, id.shape(),
                                 dim);
        return {dx};
    }
    void release() override { idx.reset(); }
    std::string name() const override { return "GatherBackward"; }
};
}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
    check_defined(weight, "embedding", "weight");
    RN_CHECK(weight.dim() == 2, "embedding: expected a weight of shape [V, D], got ", weight.shape());
    const int64_t V = weight.shape()[0], D = weight.shape()[1];
    std::ostringstream rows;
    rows << "the weight has " << V << " rows";
    Tensor id = checked_indices(ids, V, weight.device(), "embedding", "ids", rows.str());
    Tensor w = contiguous_nograd(weight);
    Shape out_shape = id.shape();
    out_shape.push_back(D);
    Tensor out = empty(out_shape, w.dtype(), w.device());
    if (w.is_cuda())
        cuda::index_select_forward(w.dtype(), out.raw_data(), w.raw_data(), id.data<int64_t>(), 1, V, id.numel(), D);
    else
        cpu::index_select_forward(w.dtype(), out.raw_data(), w.raw_data(), id.data<int64_t>(), 1, V, id.numel(), D);
    if (any_requires_grad({weight})) {
        auto n = std::make_shared<EmbeddingBackward>();
        n->ids = SavedTensor(id);
        record(n, {weight}, {out});
    }
    return out;
}

Tensor index_select(const Tensor& x_in, int64_t dim, const Tensor& idx) {
    check_defined(x_in, "index_select");
    RN_CHECK(x_in.dim() >= 1, "index_select: expected a tensor with at least one dim, got a scalar");
    dim = wrap_dim(dim, x_in.dim(), "index_select");
    check_defined(idx, "index_select", "idx");
    RN_CHECK(idx.dim() == 1, "index_select: expected a 1-D idx, got shape ", idx.shape());
    const int64_t N = x_in.shape()[size_t(dim)];
    std::ostringstream range;
    range << "dim " << dim << " of x has size " << N;
    Tensor id = checked_indices(idx, N, x_in.device(), "index_select", "idx", range.str());
    Tensor x = contiguous_nograd(x_in);
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < dim; ++d) outer *= x.shape()[size_t(d)];
    for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[size_t(d)];
    Shape out_shape = x.shape();
    out_shape[size_t(dim)] = id.numel();
    Tensor out = empty(out_shape, x.dtype(), x.device());
    if (x.is_cuda())
        cuda::index_select_forward(x.dtype(), out.raw_data(), x.raw_data(), id.data<int64_t>(), outer, N, id.numel(),
                                   inner);
    else
        cpu::index_select_forward(x.dtype(), out.raw_data(), x.raw_data(), id.data<int64_t>(), outer, N, id.numel(),
                                  inner);
    if (any_requires_grad({x_in})) {
        auto n = std::make_shared<IndexSelectBackward>();
        n->idx = SavedTensor(id);
        n->outer = outer;
        n->n = N;
        n->inner = inner;
        record(n, {x_in}, {out});
    }
    return out;
}

Tensor gather(const Tensor& x_in, int64_t dim, const Tensor& idx) {
    check_defined(x_in, "gather");
    RN_CHECK(x_in.dim() >= 1, "gather: expected a tensor with at least one dim, got a scalar");
    dim = wrap_dim(dim, x_in.dim(), "gather");
    check_defined(idx, "gather", "idx");
    RN_CHECK(idx.dim() == x_in.dim(), "gather: idx must have as many dims as x: got idx ", idx.shape(), " for x ",
             x_in.shape());
    for (int64_t d = 0; d < x_in.dim(); ++d)
        RN_CHECK(d == dim || idx.shape()[size_t(d)] <= x_in.shape()[size_t(d)], "gather: idx ", idx.shape(),
                 " is larger than x ", x_in.shape(), " in dim ", d, " (only dim ", dim, " may be larger)");
    const int64_t N = x_in.shape()[size_t(dim)];
    std::ostringstream range;
    range << "dim " << dim << " of x has size " << N;
    Tensor id = checked_indices(idx, N, x_in.device(), "gather", "idx", range.str());
    Tensor x = contiguous_nograd(x_in);
    Tensor out = empty(id.shape(), x.dtype(), x.device());
    if (x.is_cuda())
        cuda::gather_forward(x.dtype(), out.raw_data(), x.raw_data(), id.data<int64_t>(), x.shape(), id.shape(), dim);
    else
        cpu::gather_forward(x.dtype(), out.raw_data(), x.raw_data(), id.data<int64_t>(), x.shape(), id.shape(), dim);
    if (any_requires_grad({x_in})) {
        auto n = std::make_shared<GatherBackward>();
        n->idx = SavedTensor(id);
        n->dim = dim;
        record(n, {x_in}, {out});
    }
    return out;
}

}  // namespace rn
