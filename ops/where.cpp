// ops/where.cpp — where and masked_fill: checks, dispatch to the one kernel both use (a
// broadcasting three-operand choice: ops/where_cpu.cpp, cuda/where.cu) and their backward
// nodes. The backwards are the same choice applied to the gradient with a zero on the other
// side, then summed back over broadcast dims.
#include "ops/where.h"

#include "autograd/node.h"
#include "cuda/where.h"
#include "ops/op_util.h"
#include "ops/reduce.h"

namespace rn {

namespace {
// cond ? a : b over the broadcast shape, recording nothing
Tensor where_nograd(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& shape) {
    Tensor out = empty(shape, a.dtype(), a.device());
    Shape sc = broadcast_strides(cond, shape), sa = broadcast_strides(a, shape);
    Shape sb = broadcast_strides(b, shape);
    if (out.is_cuda())
        cuda::where_forward(cond.dtype(), a.dtype(), out.raw_data(), cond.raw_data(), a.raw_data(), b.raw_data(), shape,
                            sc, sa, sb);
    else
        cpu::where_forward(cond.dtype(), a.dtype(), out.raw_data(), cond.raw_data(), a.raw_data(), b.raw_data(), shape,
                           sc, sa, sb);
    return out;
}

// d/da where(c, a, b) = grad where c, else 0;  d/db = grad where !c, else 0 (each sum_to its shape)
struct WhereBackward : Node {
    SavedTensor cond;  // as given: any dtype, any strides, broadcastable to the output
    std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
        const Tensor& g = grads[0];
        Tensor c = cond.get("WhereBackward");
        Tensor zero = scalar_tensor(0.0, g.dtype(), g.device());
        Tensor ga, gb;
        if (needs_input_grad(0)) ga = sum_to(where_nograd(c, g, zero, g.shape()), input_meta[0].shape);
        if (needs_input_grad(1)) gb = sum_to(where_nograd(c, zero, g, g.shape()), input_meta[1].shape);
        return {ga, gb};
    }
    void release() override { cond.reset(); }
    std::string name() const override { return "WhereBackward"; }
};

// d/dx masked_fill(x, m, v) = grad where !m, 0 where m
struct MaskedFillBackward : Node {
    SavedTensor mask;  // as given, broadcastable to x
    std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
        const Tensor& g = grads[0];
        Tensor zero = scalar_tensor(0.0, g.dtype(), g.device());
        return {where_nograd(mask.get("MaskedFillBackward"), zero, g, g.shape())};
    }
    void release() override { mask.reset(); }
    std::string name() const override { return "MaskedFillBackward"; }
};
}  // namespace

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
    check_defined(cond, "where", "cond");
    check_same_dtype_device(a, b, "where");
    RN_CHECK(cond.device() == a.device(), "where: cond is on ", cond.device(), " but the values are on ", a.device());
    Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where (cond and a)"), b.shape(),
                                   "where (with b)");
    Tensor out = where_nograd(cond, a, b, shape);
    if (any_requires_grad({a, b})) {
        auto n = std::make_shared<WhereBackward>();
        n->cond = SavedTensor(cond);
        record(n, {a, b}, {out});
    }
    return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
    check_defined(x, "masked_fill");
    check_defined(mask, "masked_fill", "mask");
    RN_CHECK(mask.device() == x.device(), "masked_fill: mask is on ", mask.device(), " but x is on ", x.device());
    Shape shape = broadcast_shapes(mask.shape(), x.shape(), "masked_fill");
    RN_CHECK(shape == x.shape(), "masked_fill: a mask of shape ", mask.shape(), " does not broadcast to x's shape ",
             x.shape(), " (it would make ", shape, ")");
    Tensor fill = scalar_tensor(value, x.dtype(), x.device());
    Tensor out = where_nograd(mask, fill, x, shape);
    if (any_requires_grad({x})) {
        auto n = std::make_shared<MaskedFillBackward>();
        n->mask = SavedTensor(mask);
        record(n, {x}, {out});
    }
    return out;
}

}  // namespace rn
