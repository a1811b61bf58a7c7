// cuda/swiglu.h — silu_mul on CUDA (mirror of the rn::cpu functions in ops/swiglu.h; device
// pointers, contiguous [n], work on the compute stream; da or db may be null).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace rn::cuda {
void silu_mul_forward(DType dt, void* y, const void* a, const void* b, int64_t n);
void silu_mul_backward(DType dt, void* da, void* db, const void* dy, const void* a, const void* b, int64_t n);
void silu_mul_backward_recompute(DType dt, void* da, void* db, void* dy_y, const void* a, const void* b, int64_t n);
}  // namespace rn::cuda
