// cuda/tensor_math.h — device versions of core/tensor_math's un-recorded helpers:
// fill, strided copy with dtype conversion, and gradient accumulation.
#pragma once
#include "core/tensor.h"

namespace rn::cuda {

void fill(const Tensor& t, double value);
void copy_strided(const Tensor& dst, const Tensor& src);  // same device, src broadcasts to dst
void accumulate(const Tensor& acc, const Tensor& g);      // acc += g
// out = a + g: three contiguous tensors of one shape and device, out and a of one dtype
void sum_contiguous(const Tensor& out, const Tensor& a, const Tensor& g);

}  // namespace rn::cuda
