// ops/attention.h — causal multi-head attention with grouped-query heads, the other side
// of every comparison RetNet makes (derivations in docs/attention.md):
//
//   o_i = Σ_{j ≤ i + Tk − Tq} softmax_j(s · q_i·k_j) v_j,    s = 1/sqrt(D) unless given
//
// Dimension key: B batch, Hq query heads, Hkv key/value heads (Hq % Hkv == 0; GQA), Tq
// query tokens, Tk key tokens (Tk ≥ Tq; the queries are the last Tq positions, see
// AttentionShape in ops/op_types.h), D head dim (keys and values alike).
// q [B,Hq,Tq,D], k, v [B,Hkv,Tk,D] → out [B,Hq,Tq,D]; f64 and f32 on the CPU (bf16 accepted
// there, computed in f32), f32 and bf16
// (and f64) on CUDA. The forward keeps the row log-sum-exp lse [B,Hq,Tq] (f32; f64 for f64
// inputs); the backward recomputes the probabilities from it block by block
// (FlashAttention's scheme), so memory stays O(T), never O(T²). Differentiable in q, k, v.
#pragma once
#include "core/tensor.h"
#include "ops/op_types.h"  // AttentionShape

namespace rn {

struct AttentionOptions {
    double scale = 0.0;  // softmax scale s; 0 means 1/sqrt(D)
};

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& opt = {});

// One decoding token per sequence over a KV cache, no autograd. q [B,Hq,D]; k_cache,
// v_cache [S,Hkv,Tmax,D] with S ≥ B (sequence b uses cache row b); lengths [B] i64 on q's
// device: sequence b attends to its first lengths[b] cached positions (its own token's k, v
// already written, so 1 ≤ lengths[b] ≤ Tmax). Lengths are read on the device, so a decode
// step with fixed B is capturable in a CUDA graph. Returns [B,Hq,D] in q's dtype.
Tensor attention_decode(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Tensor& lengths,
                        double scale = 0.0);

// Writes x [B,Hkv,T,D] into cache [S,Hkv,Tmax,D] (S ≥ B) at rows b, positions pos[b] …
// pos[b] + T − 1; pos [B] i64 on the cache's device (read there: capturable). No autograd.
// Throws if a position runs past Tmax (checked on the host where pos is on the host).
void kv_cache_write(const Tensor& cache, const Tensor& x, const Tensor& pos);

// The raw kernels, contiguous buffers, llm.c argument order (outputs, inputs, sizes). dt is
// the dtype of q, k, v, out and the gradients; lse is f32 (f64 when dt is f64).
namespace cpu {
//   out [B,Hq,Tq,D], lse [B,Hq,Tq]; q [B,Hq,Tq,D], k, v [B,Hkv,Tk,D]
void attention_forward(DType dt, const AttentionShape& s, double scale, void* out, void* lse, const void* q,
                       const void* k, const void* v);
//   dq [B,Hq,Tq,D], dk, dv [B,Hkv,Tk,D] overwritten; dout, out [B,Hq,Tq,D]; lse [B,Hq,Tq]
void attention_backward(DType dt, const AttentionShape& s, double scale, void* dq, void* dk, void* dv,
                        const void* dout, const void* q, const void* k, const void* v, const void* out,
                        const void* lse);
//   out [B,Hq,D]; q [B,Hq,D]; k, v [S,Hkv,Tmax,D] (rows 0..B−1 used); lengths [B] (host)
void attention_decode(DType dt, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tmax, int64_t D, double scale,
                      void* out, const void* q, const void* k, const void* v, const int64_t* lengths);
//   cache [S,Hkv,Tmax,D] rows 0..B−1 at positions pos[b]…; x [B,Hkv,T,D]; pos [B] (host)
void kv_cache_write(DType dt, int64_t B, int64_t Hkv, int64_t T, int64_t Tmax, int64_t D, void* cache,
                    const void* x, const int64_t* pos);
}  // namespace cpu

}  // namespace rn
