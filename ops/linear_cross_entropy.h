// ops/linear_cross_entropy.h — the language-model loss, cross_entropy(x · wᵀ, targets), without
// ever holding the [N, V] logits: the output projection and the loss run a block of rows at
// a time, and the gradients are made in the same pass. Dimension key: N rows (tokens), d the
// model width, V the vocabulary, R the rows of a block.
//
// Why: at B8 T2048 with V = 32,000 the bf16 logits are 1.05 GB, and the unfused loss keeps
// them for the backward, where as many bytes of dlogits join them: 2.1 GB at the loss's
// peak. Here it is one block of logits (R·V, reused block after block; 0.26 GB) plus the two
// gradients, x's [N, d] and w's [V, d] in f32 (0.15 GB at d = 768).
//
// How (the derivation is docs/model.md §"The loss without the logits"): the loss is the
// last op of a step, so its gradient is known up to the upstream scalar g (1 in training,
// 1/k with k accumulation steps). For each block of R rows:
//     logits_b = x_b · wᵀ                 (the GEMM, into the one R × V buffer)
//     lse_b, loss terms                   (the cross-entropy kernels' forward)
//     dlogits_b = softmax − onehot, /count (their backward, in place in the same buffer)
//     gx_b  = dlogits_b · w               [R, d]
//     gw   += dlogits_bᵀ · x_b            [V, d], f32 across blocks (one rounding at the end)
// and the backward node returns g·gx, g·gw. The FLOPs are those of the unfused forward and
// backward (three GEMMs of 2·N·d·V); only the logits' trips through memory go. With no
// gradient recorded (evaluation) only the first two steps run.
//
// Values: the loss equals cross_entropy(matmul(x, w.t()), targets) to rounding (its sum
// runs in blocks), and so do the gradients (for bf16, gx and gw stay f32 until scaled by g:
// one rounding to bf16, where the unfused path rounds dlogits first).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace rn {

// x [..., d] (flattened to N rows), w [V, d] (a Linear's weight, or a tied embedding),
// targets of x's leading shape or flat [N] (i32/i64; ignore_index skipped, as cross_entropy).
// f32/f64 on the CPU, f32/bf16/f64 on CUDA; x and w of one dtype and device. Returns the
// mean loss, a 0-d tensor of cross_entropy_loss_dtype(x.dtype()). block_rows = 0 picks R
// so that a block of logits is about 256 MiB on CUDA, 32 MiB on the CPU (RN_CE_BLOCK_ROWS
// in the environment overrides the automatic choice).
Tensor linear_cross_entropy(const Tensor& x, const Tensor& w, const Tensor& targets, int64_t ignore_index = -100,
                            int64_t block_rows = 0);

// the R that block_rows = 0 gives for these sizes
int64_t linear_cross_entropy_block_rows(int64_t rows, int64_t vocab, DType dt, Device device);

}  // namespace rn
