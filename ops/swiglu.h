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

// silu_mul(a, b) · Wᵀ (a, b [..., k], W [m, k]; result [..., m]) — the SwiGLU down
// projection and the retention layer's gated output projection — keeping a and b for the
// backward but not the product h = silu(a) ⊙ b ([N, k]: 68 MB a layer at `small`'s FFN,
// B8 T2048, bf16). The backward makes h again in the kernel that computes da and db
// (silu_mul_backward_recompute: it reads dh and writes h in its place), so the recompute
// adds one write and no extra pass: dh = dy·W, then da, db and h, then dW = dyᵀ·h. The
// same values as matmul(silu_mul(a, b), W.t()): y, da and db bit for bit (the same kernels
// on the same operands), dW to rounding (its product is laid out as [m, k], not [k, m]).
Tensor swiglu_linear(const Tensor& a, const Tensor& b, const Tensor& W);

namespace cpu {
void silu_mul_forward(DType dt, void* y, const void* a, const void* b, int64_t n);
void silu_mul_backward(DType dt, void* da, void* db, const void* dy, const void* a, const void* b, int64_t n);
// the backward, and the forward's y = silu(a) ⊙ b written over dy (read first) in the same pass
void silu_mul_backward_recompute(DType dt, void* da, void* db, void* dy_y, const void* a, const void* b, int64_t n);
}  // namespace cpu

}  // namespace rn
