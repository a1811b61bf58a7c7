// cuda/retention_tc.h — the fast path: bf16 chunkwise retention on tensor cores
// (cuda/retention_tc.cu). cuda/retention.cu calls these for bf16 chunkwise inputs and
// falls back to its generic kernels when they return false (an unsupported shape).
// Dimension key: B, H, T, Dk, Dv, C as in ops/retention.h; q,k [B,H,T,Dk] bf16,
// v/out [B,H,T,Dv] bf16, states [B,H,Dk,Dv] fp32; all device pointers; the sequence
// tensors contiguous, or where `rows` says (null: all contiguous).
#pragma once
#include <cstddef>
#include <vector>

#include "ops/op_types.h"

namespace rn::cuda {

// Whether this path takes a call of this shape (the pointers and layouts aside): where it
// does, its tensors may have any QkvRows layout with 16-byte aligned rows (a stride
// may be 0), as long as every pointer is 16-byte aligned too.
bool retention_chunkwise_tc_takes_rows(const RetentionShape& s, const std::vector<double>& gamma);
// The bytes of the bf16 chunk states H_c [B,H,NC,Dk,Dv] that the forward can keep for the
// backward (its two-pass form makes them anyway); 0 where it would not (an unsupported shape,
// or the fused forward, which never stores them).
size_t retention_chunkwise_tc_saved_states_bytes(const RetentionShape& s, const std::vector<double>& gamma);
// states_out: null, or that many bytes to keep H_c in (only where the count above is not 0)
bool retention_chunkwise_tc_forward(const RetentionShape& s, const std::vector<double>& gamma, const void* q,
                                    const void* k, const void* v, const float* s0, void* out, float* s_final,
                                    void* states_out = nullptr, const QkvRows* rows = nullptr);
// saved_states: null, or what a forward of the same inputs kept (the backward then skips
// making H_c again)
bool retention_chunkwise_tc_backward(const RetentionShape& s, const std::vector<double>& gamma, void* dq,
                                     void* dk, void* dv, float* ds0, const void* dout, const float* ds_final,
                                     const void* q, const void* k, const void* v, const float* s0,
                                     const void* saved_states = nullptr, const QkvRows* rows = nullptr);

}  // namespace rn::cuda
