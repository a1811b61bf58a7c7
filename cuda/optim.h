// cuda/optim.h — the fused AdamW update on the GPU (mirror of nn::cpu::adamw_step).
#pragma once
#include <cstdint>

namespace rn::cuda {
// gscale multiplies g on the fly (gradient clipping without a pass over the gradients)
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2, float gscale = 1.f);
// *acc += Σ g² (fp32 loads, fp64 accumulation): one launch per gradient, no host sync
void sum_squares_accumulate(const float* g, int64_t n, double* acc);
}  // namespace rn::cuda
