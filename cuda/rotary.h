// cuda/rotary.h — the rotations on the GPU, mirrors of cpu::xpos_rotate (y = scale ·
// rotate(x)) and cpu::rope_rotate (half-split RoPE) in ops/rotary.h; pos is a device [B]
// array, read in the kernel (capturable in a CUDA graph).
#pragma once
#include "core/dtype.h"

namespace rn::cuda {
void xpos_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, int sign, double scale = 1.0, int64_t split = -1, double scale_hi = 1.0);
void rope_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, double theta, int sign);
}  // namespace rn::cuda
