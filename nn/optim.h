// nn/optim.h — AdamW with one fused kernel per parameter (llm.c's habit), learning-rate
// schedules, and gradient clipping by the global norm. Parameters and optimizer state are
// fp32 (the master weights in mixed precision); updates run under NoGradGuard.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace rn::nn {

struct AdamWOptions {
    double beta1 = 0.9, beta2 = 0.98, eps = 1e-8;  // the paper's β
    double weight_decay = 0.05;
};

class AdamW {
public:
    struct Slot {
        std::string name;
        Tensor param, m, v;  // m, v: fp32, zero-initialised
        bool decay = true;   // false for norms and biases (parameters with fewer than 2 dims)
    };
    AdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, AdamWOptions opt);
    // one update at learning rate lr with every gradient taken times grad_scale (clipping:
    // clip_scale(grad_norm(...), max) — no pass over the gradients); parameters without a
    // gradient are skipped
    void step(double lr, double grad_scale = 1.0);
    int64_t step_count() const { return t_; }
    void set_step_count(int64_t t) { t_ = t; }
    std::vector<Slot>& slots() { return slots_; }
    const AdamWOptions& options() const { return opt_; }

private:
    std::vector<Slot> slots_;
    AdamWOptions opt_;
    int64_t t_ = 0;
};

// Σ‖g‖² over all gradients, square-rooted; if above max_norm, every gradient is scaled by
// max_norm / norm. Returns the norm before clipping (one device→host read in all).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
// the same norm, leaving the gradients alone (fused kernels over up to 40 fp32 CUDA
// gradients a launch)
double grad_norm(const std::vector<Tensor>& params);
// max_norm / norm when norm > max_norm > 0, else 1: the factor clip_grad_norm applies
double clip_scale(double norm, double max_norm);

struct LRSchedule {
    std::string kind = "cosine";  // cosine or linear decay after the warm-up
    double peak = 6e-4, min_lr = 0.0;
    int64_t warmup = 375, total = 10000;
    double at(int64_t step) const;  // step counts from 0
};

namespace cpu {
// p ← p − lr·(m̂/(√v̂ + eps) + wd·p), m, v updated in place; all fp32, n elements
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2, float gscale = 1.f);
}  // namespace cpu

}  // namespace rn::nn
