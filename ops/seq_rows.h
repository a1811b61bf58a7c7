// ops/seq_rows.h — sequence tensors the bf16 tensor-core kernels read where they lie (the
// retention and attention ops share this): a [B,H,T,D] view of the model's [B,T,H,D]
// projections, its rows described by SeqRows (ops/op_types.h), instead of a permuting copy.
// See Note [Retention without permutes] (ops/retention.cpp) and docs/attention.md.
#pragma once
#include "core/tensor.h"
#include "ops/op_types.h"

namespace rn {

// the data pointer on a 16-byte boundary (what a cp.async / 16-byte vector load needs)
bool aligned16(const Tensor& t);

// A [B,H,T,D] tensor whose rows a tensor-core kernel can read in place: the last dim
// contiguous, every row on a 16-byte boundary (a broadcast dim, stride 0, included). A dim of
// size 1 has no stride that matters.
bool rows_readable(const Tensor& t);

// t's rows in the kernels' terms (given; a size-1 dim gets stride 0); an undefined t (a
// gradient nobody wants) gives none
SeqRows rows_of(const Tensor& t);

// a fresh contiguous copy (aligned by the allocator), where contiguous_nograd could hand
// back a misaligned view
Tensor fresh_copy(const Tensor& t);

// t itself where its rows can be read in place, else a fresh copy: what a strided path,
// which must not fall back, does with an incoming gradient
Tensor readable_or_copy(const Tensor& t);

// [B,H,T,D] laid out as [B,T,H,D]: what the model's projections give, and what it reads back
Tensor empty_bthd(int64_t B, int64_t H, int64_t T, int64_t D, DType dt, Device dev);

// a new [B,H,T,D] tensor laid out as t is: contiguous for a contiguous t, else as [B,T,H,D]
// (a strided path's gradient of a view of the model's projections)
Tensor empty_laid_out_as(const Tensor& t);

}  // namespace rn
