// ops/view.cpp — Tensor's view methods (declared in core/tensor.h) with their backward
// nodes, plus contiguous/clone/to, which copy. A view shares storage; its backward maps
// the gradient back to the base's geometry (reshape back, transpose back, pad a narrow,
// sum an expand).
#include <algorithm>
#include <numeric>

#include "autograd/node.h"
#include "core/tensor_math.h"
#include "ops/reduce.h"

namespace rn {

namespace {
Shape infer_shape(Shape shape, int64_t numel, const char* op) {
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1) {
            RN_CHECK(infer < 0, op, ": only one dim may be -1 in ", shape);
            infer = int64_t(i);
        } else {
            RN_CHECK(shape[i] >= 0, op, ": negative size in ", shape);
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        RN_CHECK(known > 0 && numel % known == 0, op, ": cannot infer -1 in ", shape, " for ", numel, " elements");
        shape[size_t(infer)] = numel / known;
    }
    RN_CHECK(numel_of(shape) == numel, op, ": shape ", shape, " holds ", numel_of(shape),
             " elements, the tensor has ", numel);
    return shape;
}

// d/dx reshape(x) = reshape(grad, x.shape)
struct ReshapeBackward : Node {
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].reshape(input_meta[0].shape)}; }
    std::string name() const override { return "ReshapeBackward"; }
};

// d/dx permute(x, p) = permute(grad, p⁻¹)
struct PermuteBackward : Node {
    std::vector<int64_t> inverse;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].permute(inverse)}; }
    std::string name() const override { return "PermuteBackward"; }
};

// d/dx narrow(x) = grad placed into zeros of x's shape
struct NarrowBackward : Node {
    int64_t dim = 0, start = 0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        const TensorMeta& m = input_meta[0];
        Tensor out = zeros(m.shape, m.dtype, m.device);
        copy_nograd(out.narrow(dim, start, g[0].shape()[size_t(dim)]), g[0]);
        return {out};
    }
    std::string name() const override { return "NarrowBackward"; }
};

// d/dx expand(x) = grad summed over the expanded dims
struct ExpandBackward : Node {
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {sum_to(g[0], input_meta[0].shape)}; }
    std::string name() const override { return "ExpandBackward"; }
};

// d/dx copy(x) = grad (converted back to x's dtype and device)
struct CopyBackward : Node {
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        const TensorMeta& m = input_meta[0];
        Tensor out = empty(g[0].shape(), m.dtype, m.device);
        copy_nograd(out, g[0]);
        return {out};
    }
    std::string name() const override { return "CopyBackward"; }
};

template <typename N>
Tensor recorded(const Tensor& in, Tensor out, std::shared_ptr<N> node) {
    if (any_requires_grad({in})) record(node, {in}, {out});
    return out;
}

// strides for `shape` viewing x's elements in row-major order without a copy, if possible
bool view_strides(const Tensor& x, const Shape& shape, Shape& out) {
    if (x.is_contiguous()) {
        out = contiguous_strides(shape);
        return true;
    }
    return false;
}
}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
    Shape shape = infer_shape(shape_in, numel(), "view");
    Shape st;
    RN_CHECK(view_strides(*this, shape, st), "view: the tensor of shape ", this->shape(), " and strides ",
             strides(), " is not contiguous. HINT: use reshape(), which copies when it must");
    return recorded(*this, make_view(*this, shape, st, offset()), std::make_shared<ReshapeBackward>());
}

Tensor Tensor::reshape(const Shape& shape_in) const {
    Shape shape = infer_shape(shape_in, numel(), "reshape");
    if (shape == this->shape()) return *this;
    Shape st;
    if (view_strides(*this, shape, st)) return view(shape);
    return contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
    RN_CHECK(int64_t(dims.size()) == dim(), "permute: ", dims.size(), " dims given for a tensor of ", dim(), " dims");
    std::vector<int64_t> p(dims.size()), inv(dims.size());
    std::vector<bool> seen(dims.size(), false);
    Shape sizes, st;
    for (size_t i = 0; i < dims.size(); ++i) {
        p[i] = wrap_dim(dims[i], dim(), "permute");
        RN_CHECK(!seen[size_t(p[i])], "permute: dim ", dims[i], " repeated");
        seen[size_t(p[i])] = true;
        inv[size_t(p[i])] = int64_t(i);
        sizes.push_back(shape()[size_t(p[i])]);
        st.push_back(strides()[size_t(p[i])]);
    }
    auto n = std::make_shared<PermuteBackward>();
    n->inverse = inv;
    return recorded(*this, make_view(*this, sizes, st, offset()), n);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
    d0 = wrap_dim(d0, dim(), "transpose");
    d1 = wrap_dim(d1, dim(), "transpose");
    std::vector<int64_t> p(static_cast<size_t>(dim()));
    std::iota(p.begin(), p.end(), 0);
    std::swap(p[size_t(d0)], p[size_t(d1)]);
    return permute(p);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
    d = wrap_dim(d, dim(), "narrow");
    int64_t n = shape()[size_t(d)];
    RN_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ", start + length,
             ") out of bounds for dim ", d, " of size ", n);
    Shape sizes = shape();
    sizes[size_t(d)] = length;
    auto node = std::make_shared<NarrowBackward>();
    node->dim = d;
    node->start = start;
    return recorded(*this, make_view(*this, sizes, strides(), offset() + start * strides()[size_t(d)]), node);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
    d = wrap_dim(d, dim(), "select");
    int64_t n = shape()[size_t(d)];
    RN_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d, " of size ", n);
    if (index < 0) index += n;
    return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
    RN_CHECK(int64_t(target.size()) >= dim(), "expand: cannot expand shape ", shape(), " to fewer dims ", target);
    Shape st(target.size(), 0);
    size_t lead = target.size() - size_t(dim());
    for (size_t i = 0; i < size_t(dim()); ++i) {
        int64_t have = shape()[i], want = target[lead + i];
        RN_CHECK(have == want || have == 1, "expand: dim ", i, " of size ", have, " cannot become ", want,
                 " (shape ", shape(), " to ", target, ")");
        st[lead + i] = have == want ? strides()[i] : 0;
    }
    if (target == shape()) return *this;
    return recorded(*this, make_view(*this, target, st, offset()), std::make_shared<ExpandBackward>());
}

Tensor Tensor::squeeze(int64_t d) const {
    d = wrap_dim(d, dim(), "squeeze");
    RN_CHECK(shape()[size_t(d)] == 1, "squeeze: dim ", d, " has size ", shape()[size_t(d)], ", expected 1");
    Shape sizes = shape(), st = strides();
    sizes.erase(sizes.begin() + d);
    st.erase(st.begin() + d);
    return recorded(*this, make_view(*this, sizes, st, offset()), std::make_shared<ReshapeBackward>());
}

Tensor Tensor::unsqueeze(int64_t d) const {
    d = wrap_dim(d, dim() + 1, "unsqueeze");
    Shape sizes = shape(), st = strides();
    int64_t s = d < dim() ? st[size_t(d)] * sizes[size_t(d)] : 1;
    sizes.insert(sizes.begin() + d, 1);
    st.insert(st.begin() + d, s);
    return recorded(*this, make_view(*this, sizes, st, offset()), std::make_shared<ReshapeBackward>());
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
    if (dim() == 0) return reshape({1});
    start = wrap_dim(start, dim(), "flatten");
    end = wrap_dim(end, dim(), "flatten");
    RN_CHECK(start <= end, "flatten: start dim ", start, " after end dim ", end);
    Shape sizes;
    for (int64_t d = 0; d < start; ++d) sizes.push_back(shape()[size_t(d)]);
    int64_t m = 1;
    for (int64_t d = start; d <= end; ++d) m *= shape()[size_t(d)];
    sizes.push_back(m);
    for (int64_t d = end + 1; d < dim(); ++d) sizes.push_back(shape()[size_t(d)]);
    return reshape(sizes);
}

Tensor Tensor::contiguous() const {
    if (is_contiguous()) return *this;
    return clone();
}

Tensor Tensor::clone() const {
    Tensor out = empty(shape(), dtype(), device());
    copy_nograd(out, *this);
    return recorded(*this, out, std::make_shared<CopyBackward>());
}

Tensor Tensor::to(DType dt) const {
    if (dt == dtype()) return *this;
    RN_CHECK(!requires_grad() || is_floating(dt), "to(", dt, "): a tensor that requires grad can only be cast to a floating dtype");
    return recorded(*this, cast_nograd(*this, dt), std::make_shared<CopyBackward>());
}

Tensor Tensor::to(Device dev) const {
    if (dev == device()) return *this;
    return recorded(*this, to_device_nograd(*this, dev), std::make_shared<CopyBackward>());
}

}  // namespace rn
