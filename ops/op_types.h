// ops/op_types.h — the types both backends share: the op kinds a kernel switches on and the
// retention shape. A leaf header (nothing but core/dtype.h), so cuda/*.h can name them
// without including a public op header (ops/X.h) and the CPU and CUDA kernels of a family
// take the same argument types.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace rn {

// ops/elementwise.h
enum class UnaryOp : uint8_t {
    neg, exp, log, sqrt, rsqrt, abs, tanh, sigmoid, silu, gelu, relu,
    affine,      // alpha * x + beta
    pow_scalar,  // x ^ alpha
};
enum class BinaryOp : uint8_t { add, sub, mul, div, pow };
// "neg", "add", ...: for error messages and backward node names (ops/elementwise.cpp)
const char* unary_name(UnaryOp op);
const char* binary_name(BinaryOp op);

// ops/reduce.h
enum class ReduceOp : uint8_t { sum, max };

// ops/retention.h: the three paradigms, and the sizes every retention kernel takes (B batch,
// H heads, T tokens, Dk/Dv head dims, chunk length, pos0 the absolute position of token 0).
// Both backends take the decays as gamma: a host std::vector<double>, one per head.
enum class RetentionMode { parallel, recurrent, chunkwise };
struct RetentionShape {
    int64_t B, H, T, Dk, Dv, chunk, pos0;
};
// Where the rows of a [B, H, T, D] sequence tensor lie (its last dim contiguous), in
// elements: row (b, h, t) starts at b·sb + h·sh + t·st (a stride may be 0: a broadcast).
// Not `given`: contiguous [B, H, T, D].
struct SeqRows {
    int64_t sb = 0, sh = 0, st = 0;
    bool given = false;
};
// The layouts of one retention or attention call's sequence tensors (the forward's q, k, v,
// out; the backward's too, and dout, dq, dk, dv). Only the bf16 tensor-core kernels read
// them (cuda::retention_takes_rows, cuda::attention_takes_rows); every other kernel takes
// contiguous tensors.
struct QkvRows {
    SeqRows q, k, v, out, dout, dq, dk, dv;
};

// ops/attention.h: causal attention's sizes. q is [B, Hq, Tq, D], k and v [B, Hkv, Tk, D]
// with Tk ≥ Tq and Hq a multiple of Hkv (query head h reads kv head h / (Hq / Hkv)); the
// queries are the LAST Tq of the Tk positions (query i sits at key position Tk − Tq + i and
// sees keys 0 … Tk − Tq + i), so Tq = Tk is training and Tq < Tk a prefill chunk continuing
// a KV cache.
struct AttentionShape {
    int64_t B, Hq, Hkv, Tq, Tk, D;
};

}  // namespace rn
