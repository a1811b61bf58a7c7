// cuda/attention.h — CUDA kernels for causal attention, one to one with the rn::cpu
// functions in ops/attention.h (same names, same arguments; device pointers — lengths and
// pos included, read on the device so that a decode step is capturable in a CUDA graph; all
// work on the current device's compute stream). Shapes and the causal alignment: see
// AttentionShape in ops/op_types.h. dt: f32, f64, bf16; lse is f32 (f64 for f64).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "ops/op_types.h"

namespace rn::cuda {

// rows (null: every tensor contiguous [B,H,T,D]): where each sequence tensor's rows lie, for
// the bf16 tensor-core kernels only — pass them only where attention_takes_rows(dt, s) and
// every row and pointer is 16-byte aligned (else the call fails: nothing else reads them).
// lse and the backward's out-derived row sums stay contiguous [B,Hq,Tq].
bool attention_takes_rows(DType dt, const AttentionShape& s);
void attention_forward(DType dt, const AttentionShape& s, double scale, void* out, void* lse, const void* q,
                       const void* k, const void* v, const QkvRows* rows = nullptr);
void attention_backward(DType dt, const AttentionShape& s, double scale, void* dq, void* dk, void* dv,
                        const void* dout, const void* q, const void* k, const void* v, const void* out,
                        const void* lse, const QkvRows* rows = nullptr);
void attention_decode(DType dt, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tmax, int64_t D, double scale,
                      void* out, const void* q, const void* k, const void* v, const int64_t* lengths);
void kv_cache_write(DType dt, int64_t B, int64_t Hkv, int64_t T, int64_t Tmax, int64_t D, void* cache,
                    const void* x, const int64_t* pos);

}  // namespace rn::cuda
