// cuda/index.h — CUDA kernels for embedding, index_select and gather, one to one with the
// rn::cpu functions in ops/index.h (same names, same arguments; pointers are device
// pointers; all work is on the device's compute stream), plus the device-side index check.
//
// Dimension key (as on the CPU): x is viewed as [O, N, I] (outer, indexed dim, inner), idx
// holds K values in [0, N), out is [O, K, I]. All contiguous; idx is i64.
//
// Backwards are deterministic (no atomics on values): the K indices are stably radix-sorted
// (cub) and each distinct index's run of rows is summed in a fixed order — the CPU's
// ascending k for runs of up to 32 repeats (bit-identical to the CPU in f32/f64), split over
// 8 warps for longer runs (same bits run to run; differs from the CPU by rounding only).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace rn::cuda {

// out[o, k, :] = x[o, idx[k], :]; any dtype (a byte copy, 16 bytes at a time where aligned)
void index_select_forward(DType dt, void* out, const void* x, const int64_t* idx, int64_t O, int64_t N,
                          int64_t K, int64_t I);
// dx[o, n, :] = Σ_{k : idx[k] = n} dout[o, k, :] (dx fully written, zeros where unused);
// floating dtypes, summed in fp32 for bf16
void index_select_backward(DType dt, void* dx, const void* dout, const int64_t* idx, int64_t O, int64_t N,
                           int64_t K, int64_t I);
// x has x_shape, idx and out have idx_shape (same rank, at most 8 dims); contiguous
void gather_forward(DType dt, void* out, const void* x, const int64_t* idx, const Shape& x_shape,
                    const Shape& idx_shape, int64_t dim);
// dx (x_shape, fully written) = scatter-add of dout (idx_shape) along dim. bf16 sums a
// repeated destination in fp32 and rounds once (the CPU rounds after each add).
void gather_backward(DType dt, void* dx, const void* dout, const int64_t* idx, const Shape& x_shape,
                     const Shape& idx_shape, int64_t dim);

// The linear position of the first idx[i] outside [0, bound), or -1 when all are in range;
// *value receives that index. Synchronises the stream once (an 8-byte read back).
int64_t find_out_of_range(const int64_t* idx, int64_t n, int64_t bound, int64_t* value);

}  // namespace rn::cuda
