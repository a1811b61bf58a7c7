// cuda/rotary.h — the xPos rotation on the GPU (mirror of cpu::xpos_rotate in ops/rotary.h;
// pos is a device [B] array; y = scale · rotate(x)).
#pragma once
#include "core/dtype.h"

namespace rn::cuda {
void xpos_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, int sign, double scale = 1.0, int64_t split = -1, double scale_hi = 1.0);
}  // namespace rn::cuda
