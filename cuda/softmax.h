// cuda/softmax.h — CUDA row kernels for softmax, log_softmax and cross-entropy, one to one
// with the rn::cpu functions in ops/softmax.h (same names; pointers are device pointers;
// all work is queued on the current device's compute stream, nothing waits for the host).
// Dimension key: N rows, C columns (the softmax dim / classes), both contiguous.
//
// The two cross-entropy entries differ from the CPU ones in one place: the number of
// non-ignored tokens is computed on the device and stays there (`count`, one i64), so the
// forward never waits for the GPU, and the backward reads the upstream gradient `dloss`
// from device memory instead of taking it as a host double.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace rn::cuda {

// y [N, C] = softmax(x [N, C]) along C; log = true gives log_softmax
void softmax_forward(DType dt, void* y, const void* x, int64_t rows, int64_t cols, bool log);
// softmax:     dx = y ⊙ (dy − Σ_c dy⊙y)
// log_softmax: dx = dy − exp(y) ⊙ Σ_c dy        (y is the log-softmax output)
void softmax_backward(DType dt, void* dx, const void* dy, const void* y, int64_t rows, int64_t cols, bool log);

// lse [N] (f64) = log Σ_c exp(logits[n, c]) for every row (ignored rows too);
// loss (one element of the accumulation type — f32 for bf16 — on the device)
// = Σ_{n not ignored} (lse[n] − logits[n, t[n]]) / count, 0 when count is 0; count (one
// i64, device) = the number of non-ignored rows.
// Targets are validated on the device: when some target is neither ignore_index nor in
// [0, C), no out-of-range element is read, the loss is NaN and count is −1 − (the first
// such row), so that the backward writes NaN too and a debug check can name the row.
void cross_entropy_forward(DType dt, void* loss, double* lse, int64_t* count, const void* logits,
                           const int64_t* targets, int64_t rows, int64_t cols, int64_t ignore_index);
// cross_entropy_forward in its two steps, for a caller that produces the logits a block of
// rows at a time (ops/linear_cross_entropy.cpp):
//   rows:  lse [N] as above and term [N] (f64) = lse[n] − logits[n, t[n]] for a valid
//          target, 0 otherwise;
//   total: loss and count as above from every row's term; term null counts and checks the
//          targets alone (loss 0), which is how a caller learns the count before the logits.
void cross_entropy_rows(DType dt, double* lse, double* term, const void* logits, const int64_t* targets,
                        int64_t rows, int64_t cols, int64_t ignore_index);
void cross_entropy_total(DType dt, void* loss, int64_t* count, const double* term, const int64_t* targets,
                         int64_t rows, int64_t cols, int64_t ignore_index);
// dlogits [N, C] = (exp(logits − lse) − onehot(t)) · dloss / count, zero on ignored rows and
// everywhere when count is 0; NaN everywhere when count < 0 (a bad target, see above).
// dlogits may be logits (in place): each element is read once, by the thread that writes it.
// dloss: one element of the accumulation type on the device; count: as written by
// cross_entropy_forward.
void cross_entropy_backward(DType dt, void* dlogits, const void* dloss, const void* logits, const double* lse,
                            const int64_t* targets, const int64_t* count, int64_t rows, int64_t cols,
                            int64_t ignore_index);

}  // namespace rn::cuda
