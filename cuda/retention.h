// cuda/retention.h — CUDA kernels of the retention op (mirror of the rn::cpu retention
// kernels in ops/retention.h; same argument meaning, device pointers). Inputs f32 or bf16
// (f64 for tests), states and accumulation in fp32 (f64 for f64).
#pragma once
#include <cstddef>
#include <vector>

#include "ops/op_types.h"

namespace rn::cuda {

// Chunk states the forward can keep for the backward, so that the backward need not make
// them again: their bytes for this call (0: this path keeps none; only the bf16 tensor-core
// path with two passes has them), then a buffer of that size given to retention_forward,
// which returns whether it filled it, and to retention_backward with the same inputs.
size_t retention_saved_states_bytes(RetentionMode mode, DType dt, const RetentionShape& s,
                                    const std::vector<double>& gamma);
// Whether a call of this shape goes to the bf16 tensor-core kernels, which read sequence
// tensors in any QkvRows layout whose rows start on 16-byte boundaries (the model's
// [B,T,H,D] projections, without permuting copies). `rows` below may be given only then,
// and only with every pointer of the call (states included) 16-byte aligned: the generic
// kernels, which the call would otherwise fall back to, take contiguous tensors only.
// null means every tensor is contiguous [B,H,T,D].
bool retention_takes_rows(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma);
bool retention_forward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                       const void* q, const void* k, const void* v, const void* s0, void* out, void* s_final,
                       void* saved_states = nullptr, const QkvRows* rows = nullptr);
void retention_backward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                        void* dq, void* dk, void* dv, void* ds0, const void* dout, const void* ds_final, const void* q,
                        const void* k, const void* v, const void* s0, const void* saved_states = nullptr,
                        const QkvRows* rows = nullptr);
// pos: device pointer [B]
void retention_step(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma,
                    const int64_t* pos, const void* q, const void* k, const void* v, void* state, void* out);

}  // namespace rn::cuda
