// ops/swiglu.cpp — silu_mul: checks, dispatch to the CPU (ops/swiglu_cpu.cpp) or CUDA
// (cuda/swiglu.cu) kernels, and the backward node.
#include "ops/swiglu.h"

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "cuda/swiglu.h"
#include "ops/matmul.h"
#include "ops/op_util.h"

namespace rn {

namespace {
struct SiluMulBackward : Node {
    SavedTensor a, b;  // contiguous inputs
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor av = a.get("SiluMulBackward"), bv = b.get("SiluMulBackward");
        Tensor dy = contiguous_nograd(g[0]);
        const bool need_a = needs_input_grad(0), need_b = needs_input_grad(1);
        Tensor da = need_a ? empty_like(av) : Tensor(), db = need_b ? empty_like(bv) : Tensor();
        void* dap = need_a ? da.raw_data() : nullptr;
        void* dbp = need_b ? db.raw_data() : nullptr;
        if (dy.is_cuda())
            cuda::silu_mul_backward(dy.dtype(), dap, dbp, dy.raw_data(), av.raw_data(), bv.raw_data(), dy.numel());
        else
            cpu::silu_mul_backward(dy.dtype(), dap, dbp, dy.raw_data(), av.raw_data(), bv.raw_data(), dy.numel());
        return {da, db};
    }
    std::string name() const override { return "SiluMulBackward"; }
};

// y = h · Wᵀ with h = silu(a) ⊙ b made again here (see swiglu_linear in ops/swiglu.h)
struct SwigluLinearBackward : Node {
    SavedTensor a, b, W;  // a, b contiguous [N, k]; W [m, k]
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        const char* nm = "SwigluLinearBackward";
        Tensor av = a.get(nm), bv = b.get(nm), w = W.get(nm);
        const int64_t m = w.size(0);
        Tensor dy = contiguous_nograd(g[0]).reshape({-1, m});
        const bool need_a = needs_input_grad(0), need_b = needs_input_grad(1), need_w = needs_input_grad(2);
        NoGradGuard no_grad;
        Tensor dh = matmul(dy, w);  // [N, k]; becomes h below
        Tensor da = need_a ? empty_like(av) : Tensor(), db = need_b ? empty_like(bv) : Tensor();
        void* dap = need_a ? da.raw_data() : nullptr;
        void* dbp = need_b ? db.raw_data() : nullptr;
        if (dy.is_cuda())
            cuda::silu_mul_backward_recompute(dy.dtype(), dap, dbp, dh.raw_data(), av.raw_data(), bv.raw_data(),
                                              dh.numel());
        else
            cpu::silu_mul_backward_recompute(dy.dtype(), dap, dbp, dh.raw_data(), av.raw_data(), bv.raw_data(),
                                             dh.numel());
        Tensor dw = need_w ? matmul(dy.t(), dh) : Tensor();  // dh now holds h: dW = dyᵀ · h
        return {da, db, dw};
    }
    void release() override { a.reset(); b.reset(); W.reset(); }
    std::string name() const override { return "SwigluLinearBackward"; }
};
}  // namespace

Tensor silu_mul(const Tensor& a_in, const Tensor& b_in) {
    const char* op = "silu_mul";
    check_same_dtype_device(a_in, b_in, op);
    check_floating(a_in, op);
    RN_CHECK(a_in.shape() == b_in.shape(), op, ": a and b must have the same shape, got ", a_in.shape(), " and ",
             b_in.shape());
    Tensor a = contiguous_nograd(a_in), b = contiguous_nograd(b_in);
    Tensor y = empty_like(a);
    if (a.is_cuda())
        cuda::silu_mul_forward(a.dtype(), y.raw_data(), a.raw_data(), b.raw_data(), a.numel());
    else
        cpu::silu_mul_forward(a.dtype(), y.raw_data(), a.raw_data(), b.raw_data(), a.numel());
    if (any_requires_grad({a_in, b_in})) {
        auto n = std::make_shared<SiluMulBackward>();
        n->a = SavedTensor(a);
        n->b = SavedTensor(b);
        record(n, {a_in, b_in}, {y});
    }
    return y;
}

Tensor swiglu_linear(const Tensor& a_in, const Tensor& b_in, const Tensor& W) {
    const char* op = "swiglu_linear";
    check_same_dtype_device(a_in, b_in, op);
    check_same_dtype_device(a_in, W, op);
    check_floating(a_in, op);
    RN_CHECK(a_in.shape() == b_in.shape(), op, ": a and b must have the same shape, got ", a_in.shape(), " and ",
             b_in.shape());
    RN_CHECK(a_in.dim() >= 1 && W.dim() == 2 && W.size(1) == a_in.size(-1), op, ": W must be [m, ",
             a_in.dim() >= 1 ? a_in.size(-1) : 0, "] for inputs of shape ", a_in.shape(), ", got ", W.shape());
    Tensor y;
    {
        NoGradGuard no_grad;  // h lives only until the product is made
        y = matmul(silu_mul(a_in, b_in), W.t());
    }
    if (any_requires_grad({a_in, b_in, W})) {
        auto n = std::make_shared<SwigluLinearBackward>();
        n->a = SavedTensor(contiguous_nograd(a_in));
        n->b = SavedTensor(contiguous_nograd(b_in));
        n->W = SavedTensor(W);
        record(n, {a_in, b_in, W}, {y});
    }
    return y;
}

}  // namespace rn
