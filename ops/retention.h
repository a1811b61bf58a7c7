// ops/retention.h — retention, the first-class op of RetNet (docs/model.md §1, "Retention
// (one head)"; derivations in docs/retention.md).
//
// Dimension key: B batch, H heads, T tokens, Dk key/query head dim, Dv value head dim,
// C chunk length. q, k: [B,H,T,Dk]; v: [B,H,T,Dv]; state: [B,H,Dk,Dv] (fp32, or f64 for
// f64 inputs); out: [B,H,T,Dv].
//
//   o_n = λ_n Σ_{m≤n} γ^(n−m) (q_n·k_m) v_m  (+ λ_n γ^(t+1) q_n S0 with an initial state)
//   λ_n = 1/sqrt(Σ_{j=0..n} γ^j), n = pos0 + t the absolute position of local token t.
//
// The three paradigms compute the same function to float rounding; each has its own
// hand-derived backward node. Differentiable in q, k, v, the initial state, and through
// the returned final state.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "ops/op_types.h"  // RetentionMode, RetentionShape

namespace rn {

const char* retention_mode_name(RetentionMode m);
RetentionMode retention_mode_from_name(const std::string& s);  // throws on unknown names

struct RetentionOptions {
    RetentionMode mode = RetentionMode::chunkwise;
    int64_t chunk = 64;        // chunkwise only
    int64_t pos0 = 0;          // absolute position of token 0 (λ depends on it)
    bool return_state = false; // also return the final state S_(T−1)
};

struct RetentionResult {
    Tensor out;    // [B,H,T,Dv], dtype of v; not always contiguous (below)
    Tensor state;  // [B,H,Dk,Dv] when asked for, else undefined
};

// gamma: one decay per head, each in (0, 1). initial_state: undefined or [B,H,Dk,Dv].
// q, k, v may be views in any layout. Where CUDA's bf16 tensor-core kernels take a call
// whose q is not contiguous (the model's [B,T,H,D] products seen as [B,H,T,D]), they read
// q, k, v where they lie and `out` (and, in the backward, the gradients) is a [B,H,T,Dv]
// view of a [B,T,H,Dv] tensor: use reshape(), not view(), on it. Otherwise out is contiguous.
RetentionResult retention(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<double>& gamma,
                          const RetentionOptions& opt = {}, const Tensor& initial_state = Tensor());

// One decoding step for a batch of sequences, each with its own state and position; no
// autograd. q, k: [B,H,Dk]; v: [B,H,Dv]; state: [B,H,Dk,Dv], updated in place
// (S ← γS + kᵀv); pos: [B] i64, the absolute position of this token. Returns [B,H,Dv].
Tensor retention_step(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<double>& gamma,
                      const Tensor& state, const Tensor& pos);

// λ for positions pos0 .. pos0+T−1 of one head (exposed for tests and kernels)
double retention_lambda(double gamma, int64_t n);

// The raw CPU kernels over one (b, h) slice each; pointers contiguous, all in T's type
// (f32 or f64) except states, which are the state dtype. Null pointers mean "absent".
// gamma: one decay per head (H of them), as cuda/retention.h takes it.
namespace cpu {
void retention_forward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                       const void* q, const void* k, const void* v, const void* s0, void* out, void* s_final);
void retention_backward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                        void* dq, void* dk, void* dv, void* ds0, const void* dout, const void* ds_final, const void* q,
                        const void* k, const void* v, const void* s0);
void retention_step(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma,
                    const int64_t* pos, const void* q, const void* k, const void* v, void* state, void* out);
}  // namespace cpu

}  // namespace rn
