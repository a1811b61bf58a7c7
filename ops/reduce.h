// ops/reduce.h — differentiable reductions: sum, mean, max over dims (keepdim or not),
// and sum_to, which folds a broadcast gradient back to an input's shape.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "ops/op_types.h"  // ReduceOp

namespace rn {

Tensor sum(const Tensor& x);  // over everything → a 0-d tensor
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// maximum; its gradient flows to the first position holding the maximum
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// sums g over the dims that broadcasting added or expanded, giving `shape`
Tensor sum_to(const Tensor& g, const Shape& shape);

// The CPU kernels (ops/reduce_cpu.cpp), contiguous buffers.
namespace cpu {
// out[r] = reduce over x[r, 0..cols); for max, argmax[r] gets the first position of the max
void reduce_rows(ReduceOp op, DType dt, void* out, int64_t* argmax, const void* x, int64_t rows, int64_t cols);
// dx (rows × cols, zero-filled by the caller): dx[r, argmax[r]] = g[r] (max's backward)
void scatter_rows(DType dt, void* dx, const int64_t* argmax, const void* g, int64_t rows, int64_t cols);
}  // namespace cpu

}  // namespace rn
