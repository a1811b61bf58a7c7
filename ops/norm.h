// ops/norm.h — layer_norm and rms_norm over the last dim, with fused forward kernels that
// keep the per-row statistics (mean/rstd, or rstd) for a fused backward. Dimension key:
// N rows (every dim but the last, flattened), C the normalised (last) dim.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace rn {

// (x − mean) / sqrt(var + eps) ⊙ weight + bias over the last dim (biased variance, as in
// PyTorch). weight and bias are optional: pass an undefined Tensor() for none; when given
// they are [C] with x's dtype and device.
Tensor layer_norm(const Tensor& x, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);
// x / sqrt(mean(x²) + eps) ⊙ weight over the last dim; weight optional ([C]) as above.
Tensor rms_norm(const Tensor& x, const Tensor& weight = Tensor(), double eps = 1e-6);
// {x + h, rms_norm(x + h, weight, eps)}: a residual add and the norm after it. On CUDA
// without autograd one kernel does both (a decode step saves a launch per sublayer); with
// autograd, or on the CPU, it is the two ops — the same values either way.
std::pair<Tensor, Tensor> add_rms_norm(const Tensor& x, const Tensor& h, const Tensor& weight = Tensor(),
                                       double eps = 1e-6);
// silu(gate) ⊙ rms_norm(x) (no weight; gate has x's shape): a retention layer's group norm
// and output gate. On CUDA one kernel forward and one backward (rounded once, where the two
// ops round the norm to the dtype before the product; the backward keeps x, gate and the
// row statistics); on the CPU silu_mul(gate, rms_norm(x)).
Tensor gated_rms_norm(const Tensor& x, const Tensor& gate, double eps = 1e-6);

// { rms_norm(x, weight, eps) · W_iᵀ for each W_i } ([..., C] → [..., m_i]; each W_i [m_i, C],
// x's dtype and device): a pre-norm block's norm and the projections that read it (q, k, v
// and the gate; SwiGLU's two), keeping x and the row statistics for the backward but not the
// norm's output ([N, C]: 25 MB a norm at B8 T2048 d 768 in bf16, two a layer). The backward
// makes the output again (the forward kernel: the same bits) and sums the products' input
// gradients in one buffer — dxn = Σ g_i W_i as GEMMs with beta = 1, where autograd would add
// the separate products pairwise. Values equal rms_norm then matmul to rounding (the sum of
// the input gradients is rounded once a product instead of once an add).
std::vector<Tensor> rms_norm_linear(const Tensor& x, const Tensor& weight, const std::vector<Tensor>& Ws,
                                    double eps = 1e-6);

namespace cpu {
// Contiguous buffers, llm.c argument order (outputs first, then inputs, then sizes).
// dt is the dtype of x/out/w/b and their gradients (f32, f64, bf16); the statistics
// mean/rstd [N] are f64 when dt is f64 and f32 otherwise. Null w/b means "none"; a null
// gradient pointer means "not wanted".
//   out [N, C], mean [N], rstd [N], x [N, C], w [C], b [C]
void layer_norm_forward(DType dt, void* out, void* mean, void* rstd, const void* x, const void* w_or_null,
                        const void* b_or_null, int64_t rows, int64_t cols, double eps);
//   dx [N, C], dw [C], db [C] are overwritten (not accumulated); dout [N, C]
void layer_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, void* db_or_null, const void* dout,
                         const void* x, const void* w_or_null, const void* mean, const void* rstd, int64_t rows,
                         int64_t cols);
//   out [N, C], rstd [N], x [N, C], w [C]
void rms_norm_forward(DType dt, void* out, void* rstd, const void* x, const void* w_or_null, int64_t rows,
                      int64_t cols, double eps);
//   dx [N, C], dw [C] overwritten; dout [N, C]
void rms_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, const void* dout, const void* x,
                       const void* w_or_null, const void* rstd, int64_t rows, int64_t cols);
}  // namespace cpu

}  // namespace rn
