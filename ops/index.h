// ops/index.h — differentiable lookups by integer index: embedding, index_select, gather.
// Indices are i32 or i64 tensors (never differentiated) and must lie in [0, size); a bad
// one throws naming its value, its position in the index tensor and the valid range.
// Every backward is a scatter-add (repeated indices add up) that is race-free under OpenMP
// and deterministic: each destination row is summed by one thread in index order.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace rn {

// weight [V, D], ids of any shape → [*ids.shape, D]; out[..., :] = weight[ids[...], :]
Tensor embedding(const Tensor& weight, const Tensor& ids);
// idx 1-D of length K → x's shape with size K at `dim`; out[.., j, ..] = x[.., idx[j], ..]
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx);
// torch semantics: idx has x's ndim, idx.size(d) <= x.size(d) for d != dim, out has idx's
// shape; out[i][j][k] = x[i][idx[i][j][k]][k] for dim = 1
Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx);

namespace cpu {
// Dimension key: x is viewed as [O, N, I] (outer, indexed dim, inner), idx holds K values
// in [0, N), out is [O, K, I]. All contiguous; idx is i64.
// out[o, k, :] = x[o, idx[k], :]
void index_select_forward(DType dt, void* out, const void* x, const int64_t* idx, int64_t O, int64_t N,
                          int64_t K, int64_t I);
// dx[o, n, :] = Σ_{k : idx[k] = n} dout[o, k, :]   (dx is fully written, zeros where unused)
void index_select_backward(DType dt, void* dx, const void* dout, const int64_t* idx, int64_t O, int64_t N,
                           int64_t K, int64_t I);
// x has x_shape, idx and out have idx_shape (same rank); contiguous; idx is i64
void gather_forward(DType dt, void* out, const void* x, const int64_t* idx, const Shape& x_shape,
                    const Shape& idx_shape, int64_t dim);
// dx (x_shape, fully written) = scatter-add of dout (idx_shape) along dim
void gather_backward(DType dt, void* dx, const void* dout, const int64_t* idx, const Shape& x_shape,
                     const Shape& idx_shape, int64_t dim);
}  // namespace cpu

}  // namespace rn
