// ops/shape_ops.h — differentiable joining and splitting: concat, stack, split.
// concat copies (its backward narrows the gradient per input); split returns narrow views
// that share x's storage (Tensor::narrow is itself differentiable). All work on any device:
// they only move bytes through the strided copy in core/.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace rn {

// joins tensors along an existing dim; every other dim must match (dim may be negative)
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// joins equal-shaped tensors along a new dim inserted at `dim` (in [-(ndim+1), ndim])
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// chunks of `size` along dim; the last one is smaller when size does not divide the dim
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim = 0);
// chunks of the given sizes along dim; they must sum to x.size(dim)
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);

}  // namespace rn
