// cuda/elementwise.h — CUDA kernels for the pointwise ops, one to one with the rn::cpu
// functions in ops/elementwise.h (same names, same arguments; pointers are device pointers;
// all work is on the device's compute stream).
#pragma once
#include "core/shape.h"
#include "ops/op_types.h"

namespace rn::cuda {

void unary_forward(UnaryOp op, DType dt, void* y, const void* x, int64_t n, double alpha, double beta);
void unary_backward(UnaryOp op, DType dt, void* dx, const void* dy, const void* x, const void* y, int64_t n,
                    double alpha, double beta);
void binary_forward(BinaryOp op, DType dt, void* out, const void* a, const void* b, const Shape& out_shape,
                    const Shape& a_strides, const Shape& b_strides);

}  // namespace rn::cuda
