// ops/decode_fused.h — a decode step's products fused with the vector op before them, so
// that a one-token step launches fewer kernels (docs/generation.md, "Fused decode
// kernels"). Inference only: with autograd on, or where the fused kernel does not apply
// (the CPU, more than 4 rows, another dtype, rows over 48 KiB, unaligned data), each is the
// composition of the ops it stands for, which is also its definition:
//   add_rms_norm_linear(x, h, w, eps, W) = {s, rms_norm(s, w, eps) · Wᵀ} with s = x + h
//       (h undefined: s = x, and only the product is computed; s is returned as x);
//   silu_mul_linear(ab, W)               = silu_mul(a, b) · Wᵀ with ab = [a | b] on its last dim.
// W is [N, K] (a Linear's weight, or a stacked one); results keep x's leading dims.
// The fused CUDA kernel rounds every intermediate to the dtype as the ops do; only the
// norm's sum of squares adds in another order (the same tokens, logits within rounding).
#pragma once
#include <utility>

#include "core/tensor.h"

namespace rn {

std::pair<Tensor, Tensor> add_rms_norm_linear(const Tensor& x, const Tensor& h, const Tensor& norm_weight, double eps,
                                              const Tensor& W);
Tensor silu_mul_linear(const Tensor& ab, const Tensor& W);

// The switch for A/B runs and tests (default on; RN_DECODE_FUSION=0 in the environment
// turns it off): off, both ops always run their composition.
void set_decode_fusion_enabled(bool on);
bool decode_fusion_enabled();

}  // namespace rn
