// ops/swiglu.h — silu_mul(a, b) = silu(a) ⊙ b, the gated product of SwiGLU and of the
// retention layer's output gate, as one op: one pass forward (read a, b; write y) and one
// backward (read a, b, dy; write da, db) instead of silu, mul and their two backwards —
// 5 + 9 tensor passes become 3 + 5. Same math as silu(a) * b, within rounding.
//   da = dy ⊙ b ⊙ σ(a)(1 + a(1 − σ(a))),   db = dy ⊙ silu(a)
#pragma once
#include "core/tensor.h"

namespace rn {

// a, b: same shape and dtype (floating), same device; the result is contiguous
Tensor silu_mul(const Tensor& a, const Tensor& b);

namespace cpu {
void silu_mul_forward(DType dt, void* y, const void* a, const void* b, int64_t n);
void silu_mul_backward(DType dt, void* da, void* db, const void* dy, const void* a, const void* b, int64_t n);
}  // namespace cpu

}  // namespace rn
