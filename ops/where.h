// ops/where.h — differentiable choice by a condition: where and masked_fill.
// A condition or mask may have any dtype (nonzero, NaN included, is true) and broadcasts
// with numpy rules. The values share one dtype: f32, f64, bf16 for gradients (integer
// values also work, un-differentiated, e.g. masking token ids).
#pragma once
#include "core/tensor.h"

namespace rn {

// out = cond ? a : b, elementwise over the broadcast shape of all three.
// Gradients: to a where cond holds, to b elsewhere, each summed back to its input's shape.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// out = mask ? value : x; mask broadcasts to x's shape (not the other way). Gradient to x
// is zero where masked.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

namespace cpu {
// ops/where_cpu.cpp. out (contiguous, out_shape) = cond ? a : b, each operand read through its broadcast
// strides; cond has dtype cond_dt, a, b and out have dtype dt
void where_forward(DType cond_dt, DType dt, void* out, const void* cond, const void* a, const void* b,
                   const Shape& out_shape, const Shape& cond_strides, const Shape& a_strides, const Shape& b_strides);
}  // namespace cpu

}  // namespace rn
