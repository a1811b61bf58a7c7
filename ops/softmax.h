// ops/softmax.h — softmax, log_softmax and the cross-entropy loss, with fused CPU kernels
// (one task per row, max subtracted before exp so logits of ±1000 stay finite) and
// hand-written backward nodes. Dimension key: N rows (every dim but the softmax dim,
// flattened), C the softmax dim (classes / vocabulary).
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace rn {

// exp(x - max) / Σ exp(x - max) along `dim` (any dim; moved last internally)
Tensor softmax(const Tensor& x, int64_t dim = -1);
// x - logsumexp(x) along `dim`
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

// Mean over the tokens whose target is not `ignore_index` of -log_softmax(logits)[target].
// logits [N, C] or [..., C] (flattened to N rows); targets i32/i64 of logits' leading shape
// or flat [N]. Every target must be ignore_index or lie in [0, C). When every token is
// ignored the loss is 0 and its gradient is zeros (not 0/0 = NaN): a batch of pure padding
// must not poison the parameters.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// The loss's dtype: the logits' accumulation type (f32 for bf16 logits, else the same).
inline DType cross_entropy_loss_dtype(DType logits) { return logits == DType::bf16 ? DType::f32 : logits; }

namespace detail {
// cross_entropy's target checks, shared with linear_cross_entropy (ops/linear_cross_entropy.h):
// integer targets on `device`, of shape `lead` (the logits' leading dims) or flat [N]; returns
// them contiguous in i64. On the CPU every target is checked here (a message naming its
// position) and *count gets the number not ignored; on CUDA the kernels count and check
// on the device (*count = 0). `rows_of` names what the targets must match in messages.
Tensor cross_entropy_targets(const Tensor& targets, const Shape& lead, int64_t C, int64_t ignore_index,
                             Device device, const char* name, const std::string& rows_of, int64_t* count);
// RN_CUDA_CHECK_TARGETS=1: waits for the device count and throws the CPU's message on a bad
// target (see cuda/softmax.h); otherwise does nothing
void cross_entropy_check_device_count(const Tensor& count_dev, const Tensor& t64, const Shape& targets_shape,
                                      int64_t C, int64_t ignore_index, const char* name);
}  // namespace detail

namespace cpu {
// Row kernels over contiguous buffers; dt is the element type of x/y/dx/dy (f32, f64, bf16).
// y [N, C] = softmax(x [N, C]) along C; log = true gives log_softmax
void softmax_forward(DType dt, void* y, const void* x, int64_t rows, int64_t cols, bool log);
// softmax:     dx = y ⊙ (dy − Σ_c dy⊙y)
// log_softmax: dx = dy − exp(y) ⊙ Σ_c dy        (y is the log-softmax output)
void softmax_backward(DType dt, void* dx, const void* dy, const void* y, int64_t rows, int64_t cols, bool log);

// loss (one element of cross_entropy_loss_dtype(dt)) = Σ_{n not ignored} (lse[n] − logits[n, t[n]]) / count;
// lse [N] (f64 whatever dt is: N numbers, and exp(x − lse) in backward wants it exact)
// = log Σ_c exp(logits[n, c]), written for every row (ignored rows too). count is the
// number of non-ignored rows; 0 gives a loss of 0.
// Targets must already be validated (in [0, C) or ignore_index).
void cross_entropy_forward(DType dt, void* loss, double* lse, const void* logits, const int64_t* targets,
                           int64_t rows, int64_t cols, int64_t ignore_index, int64_t count);
// dlogits [N, C] = (exp(logits − lse) − onehot(t)) · dloss / count, zero on ignored rows;
// dlogits may be logits (in place)
void cross_entropy_backward(DType dt, void* dlogits, double dloss, const void* logits, const double* lse,
                            const int64_t* targets, int64_t rows, int64_t cols, int64_t ignore_index,
                            int64_t count);
}  // namespace cpu

}  // namespace rn
