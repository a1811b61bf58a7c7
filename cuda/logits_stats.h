// cuda/logits_stats.h — what a decode step needs from its logits, in one kernel: the
// logits in fp32 (for the host's sampler) and per row the log-sum-exp, the max and the
// first position of the max. One block per row, one pass: each thread keeps a running
// (max, Σ exp(x − max), first argmax) over its columns, rescaling the sum when the max
// grows (the online softmax), and the block combines the threads' triples.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace rn::cuda {

// x [rows, V] (f32 or bf16, contiguous) → out32 [rows, V] f32 and stats [2 or 3, rows] f32:
// row 0 the log-sum-exp, row 1 the max, row 2 (with_argmax) the first argmax as a float.
// Returns false (and does nothing) for another dtype or V ≥ 2^31.
bool logits_stats(DType dt, const void* x, int64_t rows, int64_t V, bool with_argmax, float* out32, float* stats);

}  // namespace rn::cuda
