// cuda/seq_rows.cuh — where a sequence tensor's rows lie, in the tensor-core kernels' terms
// (the retention and the attention kernels share it), and the host's translation from the
// op's SeqRows (ops/op_types.h). Contiguous [B,H,T,D] is {H·T·D, T·D, D}; the model's own
// projections, [B,T,H,D], are {T·H·D, D, H·D}, which the ops pass without permuting copies
// (every stride a multiple of 8 bf16 elements: rows stay 16-byte aligned).
#pragma once
#include <cstdint>

#include "core/error.h"
#include "ops/op_types.h"

namespace rn::cuda {

// Row t of chain bh = b·H + h starts at element b·sb + h·sh + t·st, its D elements contiguous.
struct Rows {
    int64_t sb, sh, st;
    __host__ __device__ int64_t at(int64_t bh, int H, int64_t t) const { return (bh / H) * sb + (bh % H) * sh + t * st; }
};

// a tensor's rows (SeqRows not given: contiguous [B,H,T,D])
inline Rows kernel_rows(const SeqRows& r, int64_t H, int64_t T, int64_t D) {
    if (!r.given) return Rows{H * T * D, T * D, D};
    return Rows{r.sb, r.sh, r.st};
}

// Every sequence tensor's rows for one call (rows null: all contiguous): q and dq are
// [B,Hq,Tq,Dqk], k and dk [B,Hkv,Tk,Dqk], v and dv [B,Hkv,Tk,Dv], out and dout [B,Hq,Tq,Dv]
// (retention: Hq = Hkv, Tq = Tk; attention: Dqk = Dv).
struct CallRows {
    Rows q, k, v, out, dout, dq, dk, dv;
    CallRows(const QkvRows* rows, int64_t Hq, int64_t Tq, int64_t Hkv, int64_t Tk, int64_t Dqk, int64_t Dv) {
        const QkvRows r = rows ? *rows : QkvRows{};
        q = kernel_rows(r.q, Hq, Tq, Dqk), dq = kernel_rows(r.dq, Hq, Tq, Dqk);
        k = kernel_rows(r.k, Hkv, Tk, Dqk), dk = kernel_rows(r.dk, Hkv, Tk, Dqk);
        v = kernel_rows(r.v, Hkv, Tk, Dv), dv = kernel_rows(r.dv, Hkv, Tk, Dv);
        out = kernel_rows(r.out, Hq, Tq, Dv), dout = kernel_rows(r.dout, Hq, Tq, Dv);
    }
};

// rows whose every start is 16-byte aligned for bf16 (cp.async and the 16-byte stores need
// it; the base pointers are checked where they are known)
inline bool rows_aligned(const QkvRows* rows) {
    if (!rows) return true;
    for (const SeqRows& r : {rows->q, rows->k, rows->v, rows->out, rows->dout, rows->dq, rows->dk, rows->dv})
        if (r.sb % 8 || r.sh % 8 || r.st % 8) return false;
    return true;
}

// Strided rows are the tensor-core kernels' alone: a call they refused (a shape they do not
// take, an unaligned buffer or row) must have come with none, else the generic kernels would
// read the wrong elements. `detail` (streamed after the op's name) describes the call.
template <typename... Detail>
void check_no_rows(const QkvRows* rows, const char* op, const Detail&... detail) {
    RN_CHECK(!rows, op, " (CUDA): tensor layouts given for a call the tensor-core kernels refused", detail...,
             "; only they read strided rows (the op must pass contiguous tensors there)");
}

}  // namespace rn::cuda
