// ops/norm.cpp — layer_norm and rms_norm: input checks, the fused forward (which keeps the
// per-row statistics) and the backward nodes that hand them to the fused backward kernel.
// Kernels in ops/norm_cpu.cpp and cuda/norm.cu. Dimension key: N rows, C the normalised
// (last) dim.
#include "ops/norm.h"

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "cuda/norm.h"
#include "ops/elementwise.h"
#include "ops/swiglu.h"
#include "ops/matmul.h"
#include "ops/op_util.h"

namespace rn {

namespace {
// mean/rstd are kept in f64 for f64 inputs, f32 otherwise (bf16 statistics would be too coarse)
DType stat_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

void check_norm_inputs(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
    check_defined(x, op);
    check_floating(x, op);
    RN_CHECK(x.dim() >= 1, op, ": expected a tensor with at least 1 dim, got a 0-d tensor");
    RN_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
    const int64_t C = x.shape().back();
    auto check_param = [&](const Tensor& p, const char* what) {
        if (!p.defined()) return;
        RN_CHECK(p.dim() == 1 && p.shape()[0] == C, op, ": ", what, " has shape ", p.shape(), ", expected [", C,
                 "] (the size of the last dim of x, whose shape is ", x.shape(), ")");
        RN_CHECK(p.dtype() == x.dtype(), op, ": ", what, " has dtype ", p.dtype(), " but x has ", x.dtype(),
                 ". HINT: cast one side with .to(dtype)");
        RN_CHECK(p.device() == x.device(), op, ": ", what, " is on ", p.device(), " but x is on ", x.device());
    };
    check_param(weight, "weight");
    check_param(bias, "bias");
}

// d/dx, d/dw, d/db of (x − μ)·rstd ⊙ w + b: dx = rstd(ĝ − mean(ĝ) − x̂·mean(ĝx̂)), dw = Σ g x̂, db = Σ g
struct LayerNormBackward : Node {
    SavedTensor x;           // [N, C] contiguous
    SavedTensor weight;      // [C] contiguous, or undefined
    SavedTensor mean, rstd;  // [N], stat_dtype
    int64_t rows = 0, cols = 0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor xs = x.get("LayerNormBackward"), ws = weight.get("LayerNormBackward");
        Tensor ms = mean.get("LayerNormBackward"), rs = rstd.get("LayerNormBackward");
        Tensor dout = contiguous_nograd(g[0]);
        Tensor dx, dw, db;
        if (needs_input_grad(0)) dx = empty(input_meta[0].shape, xs.dtype(), xs.device());
        if (needs_input_grad(1)) dw = empty(input_meta[1].shape, xs.dtype(), xs.device());
        if (needs_input_grad(2)) db = empty(input_meta[2].shape, xs.dtype(), xs.device());
        if (!dx.defined() && !dw.defined() && !db.defined()) return {dx, dw, db};
        void* dxp = dx.defined() ? dx.raw_data() : nullptr;
        void* dwp = dw.defined() ? dw.raw_data() : nullptr;
        void* dbp = db.defined() ? db.raw_data() : nullptr;
        const void* wp = ws.defined() ? ws.raw_data() : nullptr;
        if (xs.is_cuda())
            cuda::layer_norm_backward(xs.dtype(), dxp, dwp, dbp, dout.raw_data(), xs.raw_data(), wp, ms.raw_data(),
                                      rs.raw_data(), rows, cols);
        else
            cpu::layer_norm_backward(xs.dtype(), dxp, dwp, dbp, dout.raw_data(), xs.raw_data(), wp, ms.raw_data(),
                                     rs.raw_data(), rows, cols);
        return {dx, dw, db};
    }
    void release() override { x.reset(); weight.reset(); mean.reset(); rstd.reset(); }
    std::string name() const override { return "LayerNormBackward"; }
};

// d/dx, d/dw of x·rstd ⊙ w: dx = rstd(ĝ − x̂·mean(ĝx̂)) with ĝ = g ⊙ w, x̂ = x·rstd; dw = Σ g x̂
struct RmsNormBackward : Node {
    SavedTensor x;       // [N, C] contiguous
    SavedTensor weight;  // [C] contiguous, or undefined
    SavedTensor rstd;    // [N], stat_dtype
    int64_t rows = 0, cols = 0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor xs = x.get("RmsNormBackward"), ws = weight.get("RmsNormBackward"), rs = rstd.get("RmsNormBackward");
        Tensor dout = contiguous_nograd(g[0]);
        Tensor dx, dw;
        if (needs_input_grad(0)) dx = empty(input_meta[0].shape, xs.dtype(), xs.device());
        if (needs_input_grad(1)) dw = empty(input_meta[1].shape, xs.dtype(), xs.device());
        if (!dx.defined() && !dw.defined()) return {dx, dw};
        void* dxp = dx.defined() ? dx.raw_data() : nullptr;
        void* dwp = dw.defined() ? dw.raw_data() : nullptr;
        const void* wp = ws.defined() ? ws.raw_data() : nullptr;
        if (xs.is_cuda())
            cuda::rms_norm_backward(xs.dtype(), dxp, dwp, dout.raw_data(), xs.raw_data(), wp, rs.raw_data(), rows, cols);
        else
            cpu::rms_norm_backward(xs.dtype(), dxp, dwp, dout.raw_data(), xs.raw_data(), wp, rs.raw_data(), rows, cols);
        return {dx, dw};
    }
    void release() override { x.reset(); weight.reset(); rstd.reset(); }
    std::string name() const override { return "RmsNormBackward"; }
};
// silu(gate) ⊙ rms_norm(x) on CUDA: one backward kernel for dx and dgate (cuda/norm.cu)
struct GatedRmsNormBackward : Node {
    SavedTensor x, gate;  // [N, C] contiguous
    SavedTensor rstd;     // [N], stat_dtype
    int64_t rows = 0, cols = 0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        const char* n = "GatedRmsNormBackward";
        Tensor xs = x.get(n), gs = gate.get(n), rs = rstd.get(n);
        Tensor dout = contiguous_nograd(g[0]);
        Tensor dx = needs_input_grad(0) ? empty(input_meta[0].shape, xs.dtype(), xs.device()) : Tensor();
        Tensor dg = needs_input_grad(1) ? empty(input_meta[1].shape, xs.dtype(), xs.device()) : Tensor();
        cuda::gated_rms_norm_backward(xs.dtype(), dx.defined() ? dx.raw_data() : nullptr,
                                      dg.defined() ? dg.raw_data() : nullptr, dout.raw_data(), xs.raw_data(),
                                      gs.raw_data(), rs.raw_data(), rows, cols);
        return {dx, dg};
    }
    void release() override { x.reset(), gate.reset(), rstd.reset(); }
    std::string name() const override { return "GatedRmsNormBackward"; }
};
// the norm's output made again from x and the weight, then the products' backward and the
// norm's (see rms_norm_linear in ops/norm.h); inputs x, weight, W_0 … W_(k−1)
struct RmsNormLinearBackward : Node {
    SavedTensor x;       // [N, C] contiguous
    SavedTensor weight;  // [C] contiguous, or undefined
    std::vector<SavedTensor> Ws;
    int64_t rows = 0, cols = 0;
    double eps = 0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        const char* nm = "RmsNormLinearBackward";
        Tensor xs = x.get(nm), ws = weight.get(nm);
        const DType dt = xs.dtype();
        const bool cuda = xs.is_cuda();
        const void* wp = ws.defined() ? ws.raw_data() : nullptr;
        Tensor xn = empty({rows, cols}, dt, xs.device()), rstd = empty({rows}, stat_dtype(dt), xs.device());
        if (cuda) cuda::rms_norm_forward(dt, xn.raw_data(), rstd.raw_data(), xs.raw_data(), wp, rows, cols, eps);
        else cpu::rms_norm_forward(dt, xn.raw_data(), rstd.raw_data(), xs.raw_data(), wp, rows, cols, eps);
        std::vector<Tensor> out(2 + Ws.size());
        const bool need_dxn = needs_input_grad(0) || needs_input_grad(1);
        Tensor dxn = need_dxn ? empty({rows, cols}, dt, xs.device()) : Tensor();
        bool first = true;
        NoGradGuard no_grad;
        for (size_t i = 0; i < Ws.size(); ++i) {
            Tensor w = Ws[i].get(nm);
            const int64_t m = w.size(0);
            Tensor gi = contiguous_nograd(g[i]).reshape({rows, m});
            if (needs_input_grad(2 + i)) out[2 + i] = matmul(gi.t(), xn);  // dW_i = g_iᵀ · xn [m, C]
            if (!need_dxn) continue;
            Tensor wc = contiguous_nograd(w);
            // dxn (+)= g_i · W_i: [rows, m] · [m, C], accumulated in place after the first
            const double beta = first ? 0.0 : 1.0;
            gemm_on(xs.device(), dt, dt, false, false, rows, cols, m, gi.raw_data(), m, wc.raw_data(), cols, beta,
                    dxn.raw_data(), cols);
            first = false;
        }
        if (!need_dxn) return out;
        Tensor dx = needs_input_grad(0) ? empty(input_meta[0].shape, dt, xs.device()) : Tensor();
        Tensor dw = needs_input_grad(1) ? empty(input_meta[1].shape, dt, xs.device()) : Tensor();
        void* dxp = dx.defined() ? dx.raw_data() : nullptr;
        void* dwp = dw.defined() ? dw.raw_data() : nullptr;
        if (cuda) cuda::rms_norm_backward(dt, dxp, dwp, dxn.raw_data(), xs.raw_data(), wp, rstd.raw_data(), rows, cols);
        else cpu::rms_norm_backward(dt, dxp, dwp, dxn.raw_data(), xs.raw_data(), wp, rstd.raw_data(), rows, cols);
        out[0] = dx, out[1] = dw;
        return out;
    }
    void release() override {
        x.reset();
        weight.reset();
        for (auto& w : Ws) w.reset();
    }
    std::string name() const override { return "RmsNormLinearBackward"; }
};
}  // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, double eps) {
    check_norm_inputs("layer_norm", x_in, weight, bias, eps);
    const int64_t cols = x_in.shape().back();
    const int64_t rows = cols ? x_in.numel() / cols : 0;
    Tensor x = contiguous_nograd(x_in);
    Tensor w = weight.defined() ? contiguous_nograd(weight) : Tensor();
    Tensor b = bias.defined() ? contiguous_nograd(bias) : Tensor();
    Tensor out = empty(x.shape(), x.dtype(), x.device());
    Tensor mean = empty({rows}, stat_dtype(x.dtype()), x.device());
    Tensor rstd = empty({rows}, stat_dtype(x.dtype()), x.device());
    const void* wp = w.defined() ? w.raw_data() : nullptr;
    const void* bp = b.defined() ? b.raw_data() : nullptr;
    if (x.is_cuda())
        cuda::layer_norm_forward(x.dtype(), out.raw_data(), mean.raw_data(), rstd.raw_data(), x.raw_data(), wp, bp,
                                 rows, cols, eps);
    else
        cpu::layer_norm_forward(x.dtype(), out.raw_data(), mean.raw_data(), rstd.raw_data(), x.raw_data(), wp, bp,
                                rows, cols, eps);
    if (any_requires_grad({x_in, weight, bias})) {
        auto n = std::make_shared<LayerNormBackward>();
        n->x = SavedTensor(x);
        n->weight = SavedTensor(w);
        n->mean = SavedTensor(mean);
        n->rstd = SavedTensor(rstd);
        n->rows = rows;
        n->cols = cols;
        record(n, {x_in, weight, bias}, {out});
    }
    return out;
}

std::pair<Tensor, Tensor> add_rms_norm(const Tensor& x, const Tensor& h, const Tensor& weight, double eps) {
    RN_CHECK(x.defined() && h.defined() && x.shape() == h.shape(), "add_rms_norm: x and h must have the same shape, got ",
             x.defined() ? x.shape() : Shape{}, " and ", h.defined() ? h.shape() : Shape{});
    check_same_dtype_device(x, h, "add_rms_norm");
    if (!x.is_cuda() || any_requires_grad({x, h, weight})) {
        Tensor sum = x + h;
        return {sum, rms_norm(sum, weight, eps)};
    }
    check_norm_inputs("add_rms_norm", x, weight, Tensor(), eps);
    const int64_t cols = x.shape().back();
    const int64_t rows = cols ? x.numel() / cols : 0;
    Tensor xc = contiguous_nograd(x), hc = contiguous_nograd(h);
    Tensor w = weight.defined() ? contiguous_nograd(weight) : Tensor();
    Tensor sum = empty(xc.shape(), xc.dtype(), xc.device()), out = empty(xc.shape(), xc.dtype(), xc.device());
    cuda::add_rms_norm_forward(xc.dtype(), out.raw_data(), sum.raw_data(), xc.raw_data(), hc.raw_data(),
                               w.defined() ? w.raw_data() : nullptr, rows, cols, eps);
    return {sum, out};
}

Tensor gated_rms_norm(const Tensor& x, const Tensor& gate, double eps) {
    RN_CHECK(x.defined() && gate.defined() && x.shape() == gate.shape(),
             "gated_rms_norm: x and gate must have the same shape, got ", x.defined() ? x.shape() : Shape{}, " and ",
             gate.defined() ? gate.shape() : Shape{});
    check_same_dtype_device(x, gate, "gated_rms_norm");
    if (!x.is_cuda()) return silu_mul(gate, rms_norm(x, Tensor(), eps));
    check_norm_inputs("gated_rms_norm", x, Tensor(), Tensor(), eps);
    const int64_t cols = x.shape().back();
    const int64_t rows = cols ? x.numel() / cols : 0;
    Tensor xc = contiguous_nograd(x), gc = contiguous_nograd(gate);
    Tensor out = empty(xc.shape(), xc.dtype(), xc.device());
    const bool grad = any_requires_grad({x, gate});
    Tensor rstd = grad ? empty({rows}, stat_dtype(xc.dtype()), xc.device()) : Tensor();
    cuda::gated_rms_norm_forward(xc.dtype(), out.raw_data(), xc.raw_data(), gc.raw_data(), rows, cols, eps,
                                 grad ? rstd.raw_data() : nullptr);
    if (grad) {
        auto n = std::make_shared<GatedRmsNormBackward>();
        n->x = SavedTensor(xc);
        n->gate = SavedTensor(gc);
        n->rstd = SavedTensor(rstd);
        n->rows = rows;
        n->cols = cols;
        record(n, {x, gate}, {out});
    }
    return out;
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight, double eps) {
    check_norm_inputs("rms_norm", x_in, weight, Tensor(), eps);
    const int64_t cols = x_in.shape().back();
    const int64_t rows = cols ? x_in.numel() / cols : 0;
    Tensor x = contiguous_nograd(x_in);
    Tensor w = weight.defined() ? contiguous_nograd(weight) : Tensor();
    Tensor out = empty(x.shape(), x.dtype(), x.device());
    Tensor rstd = empty({rows}, stat_dtype(x.dtype()), x.device());
    const void* wp = w.defined() ? w.raw_data() : nullptr;
    if (x.is_cuda()) cuda::rms_norm_forward(x.dtype(), out.raw_data(), rstd.raw_data(), x.raw_data(), wp, rows, cols, eps);
    else cpu::rms_norm_forward(x.dtype(), out.raw_data(), rstd.raw_data(), x.raw_data(), wp, rows, cols, eps);
    if (any_requires_grad({x_in, weight})) {
        auto n = std::make_shared<RmsNormBackward>();
        n->x = SavedTensor(x);
        n->weight = SavedTensor(w);
        n->rstd = SavedTensor(rstd);
        n->rows = rows;
        n->cols = cols;
        record(n, {x_in, weight}, {out});
    }
    return out;
}

std::vector<Tensor> rms_norm_linear(const Tensor& x_in, const Tensor& weight, const std::vector<Tensor>& Ws,
                                    double eps) {
    const char* op = "rms_norm_linear";
    check_norm_inputs(op, x_in, weight, Tensor(), eps);
    RN_CHECK(!Ws.empty(), op, ": expected at least one projection weight");
    const int64_t cols = x_in.shape().back();
    const int64_t rows = cols ? x_in.numel() / cols : 0;
    for (size_t i = 0; i < Ws.size(); ++i) {
        check_same_dtype_device(x_in, Ws[i], op);
        RN_CHECK(Ws[i].dim() == 2 && Ws[i].size(1) == cols, op, ": weight ", i, " has shape ", Ws[i].shape(),
                 ", expected [m, ", cols, "] (x is ", x_in.shape(), ")");
    }
    std::vector<Tensor> ys;
    Tensor x = contiguous_nograd(x_in);
    Tensor w = weight.defined() ? contiguous_nograd(weight) : Tensor();
    {
        NoGradGuard no_grad;  // the norm's output lives only until the products are made
        Tensor xn = rms_norm(x, w, eps);
        for (const Tensor& W : Ws) ys.push_back(matmul(xn, W.t()));
    }
    std::vector<Tensor> inputs{x_in, weight};
    inputs.insert(inputs.end(), Ws.begin(), Ws.end());
    if (any_requires_grad(inputs)) {
        auto n = std::make_shared<RmsNormLinearBackward>();
        n->x = SavedTensor(x);
        n->weight = SavedTensor(w);
        for (const Tensor& W : Ws) n->Ws.emplace_back(W);
        n->rows = rows;
        n->cols = cols;
        n->eps = eps;
        record(n, inputs, ys);
    }
    return ys;
}

}  // namespace rn
