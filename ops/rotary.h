// ops/rotary.h — the two rotary position encodings applied to queries and keys:
//
// 1. xpos_rotate: torchscale's "xPos" rotation without its scale (docs/model.md §3, "The
//    rotation"), RetNet's. NOT standard half-split RoPE:
//      θ_i = 1 / 10000^(i/(Dk/2 − 1)), i = 0..Dk/2−1, each θ_i used for the pair (2i, 2i+1)
//      rot2(x) = [−x1, x0, −x3, x2, ...]
//      rotate(x, n) = x ⊙ cos(nθ) + rot2(x) ⊙ sin(nθ)
//    Its gradient is the rotation by −n: dx = dy ⊙ cos(nθ) − rot2(dy ⊙ sin(nθ)).
//
// 2. rope_rotate: standard RoPE as Llama / Hugging Face write it (`rotate_half`), the
//    Transformer baseline's (docs/transformer.md §3). Pairs are (i, i + D/2), not adjacent:
//      inv_freq_i = θ^(−2i/D), i = 0..D/2−1,   a_i = n · inv_freq_i
//      y_i       = x_i cos a_i − x_{i+D/2} sin a_i
//      y_{i+D/2} = x_{i+D/2} cos a_i + x_i sin a_i
//    Its gradient is the rotation by −n.
//
// Dimension key: x is [B, T, C] with C = H·D (heads side by side, as the projection
// produces them); token t of sequence b sits at absolute position pos[b] + t.
#pragma once
#include "core/tensor.h"

namespace rn {

// scale multiplies the result (the model's keys take Dk^(−1/2) here: one pass instead of two)
Tensor xpos_rotate(const Tensor& x, int64_t head_dim, int64_t pos0, double scale = 1.0);
// pos: [B] integer tensor, one start position per sequence (continuous batching). split ≥ 0
// (a multiple of head_dim): columns from split on are scaled by scale_hi instead, so that
// queries and keys side by side ([q | k], a decode step's stacked projection) rotate in one
// pass with their own scales.
Tensor xpos_rotate(const Tensor& x, int64_t head_dim, const Tensor& pos, double scale = 1.0, int64_t split = -1,
                   double scale_hi = 1.0);

// θ_i of one head (exposed for tests)
double xpos_theta(int64_t i, int64_t head_dim);

// Half-split RoPE with base theta (ModelConfig::rope_theta). pos: [B] integer tensor, one
// start position per sequence (continuous batching; read on x's device, so a decode step
// stays capturable in a CUDA graph). Any floating dtype; differentiable in x.
Tensor rope_rotate(const Tensor& x, int64_t head_dim, const Tensor& pos, double theta = 10000.0);
Tensor rope_rotate(const Tensor& x, int64_t head_dim, int64_t pos0, double theta = 10000.0);
// inv_freq_i = θ^(−2i/D) of one head (exposed for tests)
double rope_inv_freq(int64_t i, int64_t head_dim, double theta);

namespace cpu {
// y = rotate(x, n) (sign = +1) or the inverse rotation (sign = −1); pos: host [B]
//   columns c ≥ split (split < 0: none) take scale_hi instead of scale
void xpos_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, int sign, double scale = 1.0, int64_t split = -1, double scale_hi = 1.0);
// y = rope(x, n) (sign = +1) or its inverse (sign = −1); pos: host [B]
void rope_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, double theta, int sign);
}  // namespace cpu

}  // namespace rn
