// cuda/elementwise.h — CUDA kernels for the pointwise ops and reductions, one to one with
// the rn::cpu functions in ops/elementwise.h and ops/reduce.h (same names, same arguments;
// pointers are device pointers; all work is on the device's compute stream).
#pragma once
#include "core/tensor.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace rn::cuda {

void unary_forward(UnaryOp op, DType dt, void* y, const void* x, int64_t n, double alpha, double beta);
void unary_backward(UnaryOp op, DType dt, void* dx, const void* dy, const void* x, const void* y, int64_t n,
                    double alpha, double beta);
void binary_forward(BinaryOp op, DType dt, void* out, const void* a, const void* b, const Shape& out_shape,
                    const Shape& a_strides, const Shape& b_strides);
// out[r] = reduce x[r, :]; argmax (device, may be null) for max. Accumulates in fp32 (f64 for f64).
void reduce_rows(ReduceOp op, DType dt, void* out, int64_t* argmax, const void* x, int64_t rows, int64_t cols);
// out [outer, inner] = Σ over the middle dim of x [outer, red, inner] (contiguous): a sum over
// non-last dims read in place, coalesced along inner. Accumulates in fp32 (f64 for f64).
void reduce_cols(DType dt, void* out, const void* x, int64_t outer, int64_t red, int64_t inner);
// dx (rows × cols, zero-filled by the caller): dx[r, argmax[r]] = g[r]
void scatter_rows(DType dt, void* dx, const int64_t* argmax, const void* g, int64_t rows, int64_t cols);

}  // namespace rn::cuda
