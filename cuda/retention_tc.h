// cuda/retention_tc.h — the fast path: bf16 chunkwise retention on tensor cores
// (cuda/retention_tc.cu). cuda/retention.cu calls these for bf16 chunkwise inputs and
// falls back to its generic kernels when they return false (an unsupported shape).
// Dimension key: B, H, T, Dk, Dv, C as in ops/retention.h; q,k [B,H,T,Dk] bf16,
// v/out [B,H,T,Dv] bf16, states [B,H,Dk,Dv] fp32; all device pointers, contiguous.
#pragma once
#include <vector>

#include "ops/op_types.h"

namespace rn::cuda {

bool retention_chunkwise_tc_forward(const RetentionShape& s, const std::vector<double>& gamma, const void* q,
                                    const void* k, const void* v, const float* s0, void* out, float* s_final);
bool retention_chunkwise_tc_backward(const RetentionShape& s, const std::vector<double>& gamma, void* dq,
                                     void* dk, void* dv, float* ds0, const void* dout, const float* ds_final,
                                     const void* q, const void* k, const void* v, const float* s0);

}  // namespace rn::cuda
