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
#include <vector>

#include "core/tensor.h"

namespace rn {

std::pair<Tensor, Tensor> add_rms_norm_linear(const Tensor& x, const Tensor& h, const Tensor& norm_weight, double eps,
                                              const Tensor& W);
Tensor silu_mul_linear(const Tensor& ab, const Tensor& W);

// A decode step of a torchscale retention layer after its stacked QKVG product y [B, 1,
// 2·H·Dk + 2·H·Dv] = [q | k | v | g]: xpos_rotate of [q | k] at pos (k times k_scale),
// retention_step (state [B,H,Dk,Dv] updated in place), gated_rms_norm of the output with g;
// returns z [B, 1, H·Dv]. One kernel on CUDA (cuda/retention_decode.h), the three ops
// elsewhere.
Tensor retention_step_gated(const Tensor& y, const Tensor& pos, const std::vector<double>& gamma, const Tensor& state,
                            double k_scale, double eps);

// The same step and the layer's output projection after it, W [N, H·Dv] (out_proj, no
// bias): matmul(retention_step_gated(y, pos, gamma, state, k_scale, eps), Wᵀ) is its
// definition, [B, 1, N]. On CUDA for up to decode_gate_in_product() sequences (below) where
// the product's prologue applies (cuda/gemv.h, kGroupGate), the step kernel stops at o and
// every block of the out_proj product forms rms_norm(o) ⊙ silu(g) per head itself, so no
// block of the step waits on a per-head count; otherwise the one-kernel step (or the ops)
// and then matmul.
// The same values as the definition's fused path but for the norm's order of summation.
Tensor retention_step_gated_linear(const Tensor& y, const Tensor& pos, const std::vector<double>& gamma,
                                   const Tensor& state, double k_scale, double eps, const Tensor& W);

// What the engine needs from a decode step's logits [n, V]: {the logits in f32, stats [2 or 3,
// n] f32} with stats rows log-sum-exp, max and (ids given) the first position of the max as
// a float. ids is arange(V) in f32 on the logits' device, made once by the caller: the ops'
// path (the CPU, f64, fusion off) picks the first maximum with it, and making it here would
// copy from the host, which a CUDA graph capture forbids. One kernel on CUDA
// (cuda/logits_stats.h), the ops elsewhere.
std::pair<Tensor, Tensor> logits_row_stats(const Tensor& logits, const Tensor& ids = Tensor());

// The switch for A/B runs and tests (default on; RN_DECODE_FUSION=0 in the environment
// turns it off): off, both ops always run their composition.
void set_decode_fusion_enabled(bool on);
bool decode_fusion_enabled();
// Within the fusions, up to how many sequences (0–4) retention_step_gated_linear moves the
// gated norm into the product: 1 by default, RN_DECODE_GATE_IN_PRODUCT=N in the environment
// (0 keeps it in the step kernel at every batch). For A/B runs and tests.
void set_decode_gate_in_product(int max_rows);
int decode_gate_in_product();

}  // namespace rn
