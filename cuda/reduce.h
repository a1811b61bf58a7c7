// cuda/reduce.h — CUDA kernels for the reductions, one to one with the rn::cpu functions in
// ops/reduce.h (same names, same arguments; pointers are device pointers; all work is on the
// device's compute stream), plus a column sum the CPU does not need.
#pragma once
#include <cstdint>

#include "ops/op_types.h"

namespace rn::cuda {

// out[r] = reduce x[r, :]; argmax (device, may be null) for max. Accumulates in fp32 (f64 for f64).
void reduce_rows(ReduceOp op, DType dt, void* out, int64_t* argmax, const void* x, int64_t rows, int64_t cols);
// out [outer, inner] = Σ over the middle dim of x [outer, red, inner] (contiguous): a sum over
// non-last dims read in place, coalesced along inner. Accumulates in fp32 (f64 for f64).
void reduce_cols(DType dt, void* out, const void* x, int64_t outer, int64_t red, int64_t inner);
// dx (rows × cols, zero-filled by the caller): dx[r, argmax[r]] = g[r]
void scatter_rows(DType dt, void* dx, const int64_t* argmax, const void* g, int64_t rows, int64_t cols);

}  // namespace rn::cuda
