// core/tensor_math.h — the small un-recorded tensor math that autograd and the ops need:
// fill, strided copy with dtype conversion, contiguous, cast, device transfer, and
// accumulate (acc += g). Nothing here records a graph; differentiable versions are in ops/.
#pragma once
#include "core/tensor.h"

namespace rn {

void fill_nograd(const Tensor& t, double value);
// dst[...] = src broadcast to dst's shape, converted to dst's dtype; any strides, any devices
void copy_nograd(const Tensor& dst, const Tensor& src);
Tensor contiguous_nograd(const Tensor& t);
Tensor cast_nograd(const Tensor& t, DType dtype);
Tensor to_device_nograd(const Tensor& t, Device device);
// acc += g, same shape and device; g is converted to acc's dtype
void accumulate_nograd(const Tensor& acc, const Tensor& g);
// acc + g as a new contiguous tensor of acc's dtype (same shape and device; neither is
// touched): one pass on CUDA where both are contiguous, else a copy and then accumulate
Tensor sum_nograd(const Tensor& acc, const Tensor& g);
// src's strides seen through broadcasting to `shape` (numpy rules, src's dims aligned to the
// right): 0 where src has size 1 or lacks the dim. Both backends read broadcast operands
// through these in place, without copies.
Shape broadcast_strides(const Tensor& src, const Shape& shape);
// throws when an in-place write would corrupt autograd (a leaf that requires grad while
// grad mode is on)
void check_inplace_allowed(const Tensor& t, const char* op);

// Creation (un-recorded; requires_grad_() afterwards makes a leaf)
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::i64,
              Device device = Device::cpu());
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = Device::cpu());
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());

}  // namespace rn
