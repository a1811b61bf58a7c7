// nn/optim.cpp — AdamW, clipping, schedules (nn/optim.h). The update is one pass over
// p, g, m, v per parameter: on the CPU an OpenMP loop, on CUDA fused kernels that take
// up to cuda::kMultiTensors parameters a launch.
#include "nn/optim.h"

#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "cuda/optim.h"
#include "ops/ops.h"

namespace rn::nn {

namespace cpu {
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2, float gscale) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1 - b1) * gi;
        float vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        // decoupled weight decay (Loshchilov & Hutter): applied to p, not through the gradient
        p[i] -= lr * ((mi / bc1) / (std::sqrt(vi / bc2) + eps) + wd * p[i]);
    }
}
}  // namespace cpu

AdamW::AdamW(const std::vector<std::pair<std::string, Tensor>>& named, AdamWOptions opt) : opt_(opt) {
    for (const auto& [name, p] : named) {
        RN_CHECK(p.dtype() == DType::f32, "AdamW: parameter '", name, "' is ", p.dtype(),
                 "; master weights must be f32 (cast activations, not parameters, for mixed precision)");
        RN_CHECK(p.is_contiguous(), "AdamW: parameter '", name, "' is not contiguous");
        slots_.push_back({name, p, zeros_like(p), zeros_like(p), p.dim() >= 2});
    }
}

void AdamW::step(double lr, double grad_scale) {
    NoGradGuard no_grad;
    ++t_;
    const float b1 = float(opt_.beta1), b2 = float(opt_.beta2);
    const float bc1 = float(1 - std::pow(opt_.beta1, double(t_))), bc2 = float(1 - std::pow(opt_.beta2, double(t_)));
    // CUDA parameters go to one multi-tensor launch per kMultiTensors of them; `keep` holds
    // converted gradients until their launch is queued (at most one launch's worth at a time)
    std::vector<cuda::AdamWTensor> on_gpu;
    std::vector<Tensor> keep;
    auto flush = [&] {
        if (!on_gpu.empty())
            cuda::adamw_step_multi(on_gpu.data(), int(on_gpu.size()), float(lr), b1, b2, float(opt_.eps), bc1, bc2,
                                   float(grad_scale));
        on_gpu.clear();
        keep.clear();
    };
    for (auto& s : slots_) {
        Tensor g = s.param.grad();
        if (!g.defined()) continue;
        g = contiguous_nograd(cast_nograd(g, DType::f32));
        const float wd = s.decay ? float(opt_.weight_decay) : 0.0f;
        float* p = s.param.data<float>();
        if (s.param.is_cuda()) {
            on_gpu.push_back({p, g.data<float>(), s.m.data<float>(), s.v.data<float>(), s.param.numel(), wd});
            keep.push_back(g);
            if (on_gpu.size() == size_t(cuda::kMultiTensors)) flush();
        } else {
            cpu::adamw_step(p, g.data<float>(), s.m.data<float>(), s.v.data<float>(), s.param.numel(), float(lr), b1, b2,
                            float(opt_.eps), wd, bc1, bc2, float(grad_scale));
        }
        s.param.bump_version();
    }
    flush();
}

double grad_norm(const std::vector<Tensor>& params) {
    NoGradGuard no_grad;
    Tensor total, acc;  // acc: one f64 on the GPU that fp32 CUDA gradients add into
    std::vector<const float*> gs;  // those gradients, for one launch per kMultiTensors of them
    std::vector<int64_t> ns;
    for (const auto& p : params) {
        Tensor g = p.grad();
        if (!g.defined()) continue;
        if (g.is_cuda() && g.dtype() == DType::f32 && g.is_contiguous()) {
            if (!acc.defined()) acc = zeros({}, DType::f64, g.device());
            gs.push_back(g.data<float>());
            ns.push_back(g.numel());
            continue;
        }
        Tensor g32 = g.to(DType::f32);
        Tensor sq = sum(g32 * g32).to(DType::f64);
        total = total.defined() ? total + sq : sq;
    }
    if (!gs.empty()) cuda::sum_squares_accumulate_multi(gs.data(), ns.data(), int(gs.size()), acc.data<double>());
    double sum_sq = 0;
    if (total.defined()) sum_sq += total.item();
    if (acc.defined()) sum_sq += acc.item();
    return std::sqrt(sum_sq);
}

double clip_scale(double norm, double max_norm) { return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0; }

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
    NoGradGuard no_grad;
    const double norm = grad_norm(params), scale = clip_scale(norm, max_norm);
    if (scale != 1.0)
        for (const auto& p : params)
            if (p.grad().defined()) p.set_grad(p.grad() * scale);
    return norm;
}

double LRSchedule::at(int64_t step) const {
    if (warmup > 0 && step < warmup) return peak * double(step + 1) / double(warmup);
    double span = double(std::max<int64_t>(total - warmup, 1));
    double frac = std::min(1.0, double(step - warmup) / span);
    if (kind == "linear") return min_lr + (peak - min_lr) * (1.0 - frac);
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + std::cos(M_PI * frac));
}

}  // namespace rn::nn
