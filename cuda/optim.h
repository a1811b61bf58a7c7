// cuda/optim.h — the fused AdamW update on the GPU (mirror of nn::cpu::adamw_step).
#pragma once
#include <cstdint>

namespace rn::cuda {
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2);
}  // namespace rn::cuda
