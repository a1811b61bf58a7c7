// cuda/norm.h — CUDA kernels for layer_norm and rms_norm, one to one with the rn::cpu
// functions in ops/norm.h (same names, same arguments; pointers are device pointers; all
// work is queued on the current device's compute stream). Dimension key: N rows, C the
// normalised (last) dim; every buffer contiguous.
//
// dt is the dtype of x/out/w/b and their gradients (f32, f64, bf16); the statistics
// mean/rstd [N] are f64 when dt is f64 and f32 otherwise. Null w/b means "none"; a null
// gradient pointer means "not wanted". dw/db are overwritten (not accumulated), reduced over
// the rows in a fixed order without atomics: the same inputs give the same bits every run.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace rn::cuda {

//   out [N, C], mean [N], rstd [N], x [N, C], w [C], b [C]
void layer_norm_forward(DType dt, void* out, void* mean, void* rstd, const void* x, const void* w_or_null,
                        const void* b_or_null, int64_t rows, int64_t cols, double eps);
//   dx [N, C], dw [C], db [C]; dout [N, C]
void layer_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, void* db_or_null, const void* dout,
                         const void* x, const void* w_or_null, const void* mean, const void* rstd, int64_t rows,
                         int64_t cols);
//   out [N, C], rstd [N], x [N, C], w [C]
void rms_norm_forward(DType dt, void* out, void* rstd, const void* x, const void* w_or_null, int64_t rows,
                      int64_t cols, double eps);
//   sum = x + res [N, C] (rounded to dt), out = rms_norm(sum) [N, C]: a residual add and the
//   norm after it in one pass (forward only, so no rstd; ops/norm.h add_rms_norm)
void add_rms_norm_forward(DType dt, void* out, void* sum, const void* x, const void* res, const void* w_or_null,
                          int64_t rows, int64_t cols, double eps);
//   out = silu(gate) ⊙ rms_norm(x) (no weight) [N, C], gate [N, C]: a retention layer's group
//   norm and output gate in one pass (ops/norm.h gated_rms_norm); rstd [N] (may be null: a
//   forward-only caller) for the backward
void gated_rms_norm_forward(DType dt, void* out, const void* x, const void* gate, int64_t rows, int64_t cols,
                            double eps, void* rstd = nullptr);
//   its backward: dx [N, C], dgate [N, C] (either may be null) from dout, x, gate, rstd
void gated_rms_norm_backward(DType dt, void* dx_or_null, void* dgate_or_null, const void* dout, const void* x,
                             const void* gate, const void* rstd, int64_t rows, int64_t cols);
//   dx [N, C], dw [C]; dout [N, C]
void rms_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, const void* dout, const void* x,
                       const void* w_or_null, const void* rstd, int64_t rows, int64_t cols);

}  // namespace rn::cuda
