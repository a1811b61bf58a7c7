// nn/layers.cpp — Linear, Embedding, RMSNorm, GLU.
#include "nn/layers.h"

#include <cmath>

#include "core/env.h"
#include "ops/ops.h"

namespace rn::nn {

namespace {
bool stacked_intact(const Tensor& stacked, const std::vector<const Linear*>& parts) {
    if (!stacked.defined()) return false;
    const auto* base = static_cast<const char*>(stacked.raw_data());
    const int64_t row = stacked.size(1) * int64_t(dtype_size(stacked.dtype()));
    int64_t off = 0;
    for (const Linear* l : parts) {
        const Tensor& w = l->weight;
        if (w.dtype() != stacked.dtype() || w.device() != stacked.device() || !w.is_contiguous() ||
            static_cast<const char*>(w.raw_data()) != base + off * row)
            return false;
        off += l->out_features;
    }
    return true;
}
}  // namespace

void stack_linear_weights(Tensor& stacked, const std::vector<Linear*>& parts) {
    if (stacked_intact(stacked, std::vector<const Linear*>(parts.begin(), parts.end()))) return;
    NoGradGuard no_grad;
    std::vector<Tensor> ws;
    for (const Linear* l : parts) {
        RN_CHECK(!l->bias.defined(), "stack_linear_weights: a Linear with a bias");
        ws.push_back(l->weight);
    }
    stacked = concat(ws, 0);
    int64_t off = 0;
    for (Linear* l : parts) {
        const bool rg = l->weight.requires_grad();
        Tensor w = stacked.narrow(0, off, l->out_features).detach();
        w.requires_grad_(rg);
        l->weight = w;
        off += l->out_features;
    }
}

namespace {
// what both uses need, whatever x's rows: no autograd, the dtypes agree, the views intact
bool stacked_usable(const Tensor& stacked, const std::vector<const Linear*>& parts, const Tensor& x) {
    return stacked.defined() && !GradMode::enabled() && stacked.dtype() == x.dtype() && stacked_intact(stacked, parts);
}
}  // namespace

bool use_stacked(const Tensor& stacked, const std::vector<const Linear*>& parts, const Tensor& x) {
    return x.numel() == x.size(-1) && stacked_usable(stacked, parts, x);
}

bool use_stacked_step(const Tensor& stacked, const std::vector<const Linear*>& parts, const Tensor& x) {
    return x.dim() == 3 && x.size(1) == 1 && stacked_usable(stacked, parts, x);
}

Tensor xavier_uniform(int64_t out, int64_t in, double gain, Generator& gen) {
    double a = gain * std::sqrt(6.0 / double(in + out));
    return uniform({out, in}, -a, a, gen);
}

Tensor as_compute(const Tensor& w, const Tensor& x) { return w.dtype() == x.dtype() ? w : w.to(x.dtype()); }

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator& gen, double gain) : in_features(in), out_features(out) {
    // gain > 0: xavier-uniform (torchscale's retention projections); 0: PyTorch's nn.Linear
    // default, kaiming-uniform with a = √5, i.e. U(±1/√in) (torchscale's GLU)
    double a = 1.0 / std::sqrt(double(in));
    register_parameter("weight", weight, gain > 0 ? xavier_uniform(out, in, gain, gen) : uniform({out, in}, -a, a, gen));
    if (with_bias) register_parameter("bias", bias, uniform({out}, -a, a, gen));
}

Tensor Linear::forward(const Tensor& x) const {
    RN_CHECK(x.size(-1) == in_features, "Linear: input's last dim is ", x.size(-1), ", expected ", in_features);
    Tensor y = matmul(x, as_compute(weight, x).t());
    if (bias.defined()) y = y + as_compute(bias, x);
    return y;
}

Embedding::Embedding(int64_t vocab, int64_t dim, Generator& gen, double stddev) {
    register_parameter("weight", weight, randn({vocab, dim}, gen) * stddev);
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight, ids); }

RMSNorm::RMSNorm(int64_t dim, double eps_, bool affine) : eps(eps_) {
    if (affine) register_parameter("weight", weight, ones({dim}));
}

Tensor RMSNorm::forward(const Tensor& x) const {
    return rms_norm(x, weight.defined() ? as_compute(weight, x) : Tensor(), eps);
}

std::pair<Tensor, Tensor> RMSNorm::forward_residual(const Tensor& x, const Tensor& h) const {
    return add_rms_norm(x, h, weight.defined() ? as_compute(weight, x) : Tensor(), eps);
}

std::pair<Tensor, Tensor> RMSNorm::forward_linear(const Tensor& x, const Tensor& h, const Tensor& W) const {
    return add_rms_norm_linear(x, h, weight.defined() ? as_compute(weight, x) : Tensor(), eps, as_compute(W, x));
}

std::pair<Tensor, Tensor> RMSNorm::forward_maybe_residual(const Tensor& x, const Tensor& h) const {
    return h.defined() ? forward_residual(x, h) : std::pair<Tensor, Tensor>{x, forward(x)};
}

GLU::GLU(int64_t dim, int64_t hidden, const std::string& act, Generator& gen) : activation(act) {
    RN_CHECK(act == "swish" || act == "silu" || act == "gelu", "GLU: unknown activation '", act,
             "': expected swish (silu) or gelu");
    fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden, false, gen));
    gate = register_module("gate", std::make_shared<Linear>(dim, hidden, false, gen));
    fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim, false, gen));
}

void GLU::fuse() { stack_linear_weights(fused_, {fc1.get(), gate.get()}); }

Tensor GLU::forward_normed(const Tensor& x, const Tensor& h, const RMSNorm& norm, Tensor* sum) const {
    // stacked only where the fused kernels take the rows (up to 4): past that, splitting
    // [fc1 | gate] rows for SwiGLU would cost two copies more than the separate products
    if (activation != "gelu" && !fc2->bias.defined() && decode_fusion_enabled() &&
        (use_stacked(fused_, {fc1.get(), gate.get()}, x) ||
         (use_stacked_step(fused_, {fc1.get(), gate.get()}, x) && x.size(0) <= 4))) {
        auto [s, ab] = norm.forward_linear(x, h, fused_);
        *sum = s;
        return silu_mul_linear(ab, as_compute(fc2->weight, ab));
    }
    auto [s, n] = norm.forward_maybe_residual(x, h);
    *sum = s;
    return forward(n);
}

bool memory_saving(const char* env_var) { return env_choice(env_var, {0, 1}, 1) == 1; }

Tensor gated_projection(const Tensor& a, const Tensor& b, const Linear& proj) {
    if (memory_saving("RN_SWIGLU_RECOMPUTE") && !proj.bias.defined())
        return swiglu_linear(a, b, as_compute(proj.weight, a));
    return proj.forward(silu_mul(a, b));
}

std::vector<Tensor> RMSNorm::forward_linears(const Tensor& x, const std::vector<const Linear*>& ps) const {
    bool fuse = memory_saving("RN_NORM_RECOMPUTE");
    for (const Linear* p : ps) fuse = fuse && !p->bias.defined();
    std::vector<Tensor> out;
    if (!fuse) {
        Tensor n = forward(x);
        for (const Linear* p : ps) out.push_back(p->forward(n));
        return out;
    }
    std::vector<Tensor> Ws;
    for (const Linear* p : ps) Ws.push_back(as_compute(p->weight, x));
    return rms_norm_linear(x, weight.defined() ? as_compute(weight, x) : Tensor(), Ws, eps);
}

Tensor GLU::forward(const Tensor& x, const RMSNorm& norm) const {
    auto p = norm.forward_linears(x, {fc1.get(), gate.get()});
    if (activation != "gelu") return gated_projection(p[0], p[1], *fc2);
    return fc2->forward(gelu(p[0]) * p[1]);
}

Tensor GLU::forward(const Tensor& x) const {
    // one row (a decoding step at batch 1): one matmul for fc1 and gate
    if (activation != "gelu" && use_stacked(fused_, {fc1.get(), gate.get()}, x)) {
        const int64_t h = fc1->out_features;
        Tensor y = matmul(x, fused_.t());
        return fc2->forward(silu_mul(y.narrow(-1, 0, h), y.narrow(-1, h, h)));
    }
    if (activation != "gelu") return gated_projection(fc1->forward(x), gate->forward(x), *fc2);  // SwiGLU, fused
    Tensor h = fc1->forward(x);
    h = activation == "gelu" ? gelu(h) : silu(h);
    return fc2->forward(h * gate->forward(x));
}

}  // namespace rn::nn
