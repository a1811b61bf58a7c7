// ops/elementwise.h — differentiable pointwise math with numpy broadcasting.
// Binary ops require equal dtypes and devices (no silent promotion); the output has the
// broadcast shape. Gradients of broadcast inputs are summed back to the input's shape
// (sum_to, ops/reduce.h).
#pragma once
#include "core/tensor.h"
#include "ops/op_types.h"  // UnaryOp, BinaryOp, unary_name, binary_name

namespace rn {

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);  // x * sigmoid(x)
Tensor gelu(const Tensor& x);  // exact: x * Φ(x)
Tensor relu(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha * x + beta

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a > 0 where b's gradient is wanted

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return affine(a, 1.0, s); }
inline Tensor operator+(double s, const Tensor& a) { return affine(a, 1.0, s); }
inline Tensor operator-(const Tensor& a, double s) { return affine(a, 1.0, -s); }
inline Tensor operator-(double s, const Tensor& a) { return affine(a, -1.0, s); }
inline Tensor operator*(const Tensor& a, double s) { return affine(a, s, 0.0); }
inline Tensor operator*(double s, const Tensor& a) { return affine(a, s, 0.0); }
inline Tensor operator/(const Tensor& a, double s) { return affine(a, 1.0 / s, 0.0); }
inline Tensor operator/(double s, const Tensor& a) { return affine(pow(a, -1.0), s, 0.0); }

// The raw unary kernels, exposed for ops that fuse their own backward.
namespace cpu {
void unary_forward(UnaryOp op, DType dt, void* y, const void* x, int64_t n, double alpha, double beta);
// dx = dy * f'(x); x and y are both passed, each op reads the one it needs
void unary_backward(UnaryOp op, DType dt, void* dx, const void* dy, const void* x, const void* y,
                    int64_t n, double alpha, double beta);
// out (contiguous, shape out_shape) = a op b, a and b read through broadcast strides
void binary_forward(BinaryOp op, DType dt, void* out, const void* a, const void* b, const Shape& out_shape,
                    const Shape& a_strides, const Shape& b_strides);
}  // namespace cpu

}  // namespace rn
