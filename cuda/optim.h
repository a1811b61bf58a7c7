// cuda/optim.h — the fused AdamW update on the GPU (mirror of nn::cpu::adamw_step) and the
// gradient norm's sum of squares, per tensor or over many tensors a launch.
#pragma once
#include <cstdint>

namespace rn::cuda {
// gscale multiplies g on the fly (gradient clipping without a pass over the gradients)
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2, float gscale = 1.f);

// AdamW and the gradient norm over many tensors, kMultiTensors a launch (a model's ~100–300
// parameters would otherwise take as many launches, most of them too small to fill the
// card). m, v may not alias p or g; each tensor's update is element for element
// adamw_step's.
constexpr int kMultiTensors = 40;  // the kernels' parameter block stays well under 4 KiB
struct AdamWTensor {
    float* p;
    const float* g;
    float* m;
    float* v;
    int64_t n;
    float wd;
};
void adamw_step_multi(const AdamWTensor* ts, int count, float lr, float b1, float b2, float eps, float bc1, float bc2,
                      float gscale = 1.f);
// *acc += Σ g² over the count tensors (fp32 loads, fp64 accumulation), no host sync
void sum_squares_accumulate_multi(const float* const* gs, const int64_t* ns, int count, double* acc);
}  // namespace rn::cuda
