// cuda/where.h — the CUDA kernel behind where and masked_fill, one to one with the rn::cpu
// function in ops/where.h (same name, same arguments; pointers are device pointers; the work
// is on the device's compute stream).
#pragma once
#include "core/dtype.h"
#include "core/shape.h"

namespace rn::cuda {

// out (contiguous, out_shape) = cond ? a : b, each operand read through its broadcast
// strides (0 on broadcast dims); cond has dtype cond_dt (nonzero, NaN included, is true),
// a, b and out have dtype dt, any dtype including integers
void where_forward(DType cond_dt, DType dt, void* out, const void* cond, const void* a, const void* b,
                   const Shape& out_shape, const Shape& cond_strides, const Shape& a_strides, const Shape& b_strides);

}  // namespace rn::cuda
