// ops/attention.cpp — causal attention: input checks, the dispatch to a backend, and the
// backward node that hands the saved row log-sum-exp to the recomputing backward kernel;
// attention_decode and kv_cache_write (no autograd). Kernels in ops/attention_cpu.cpp and
// cuda/attention*.cu; the math in docs/attention.md.
//
// bf16 on the CPU is accepted and computed in f32 (loads widen to float, lse is f32, every
// output rounds to bf16 once), the same contract as on CUDA.
#include "ops/attention.h"

#include <cmath>

#include "autograd/node.h"
#include "core/env.h"
#include "cuda/attention.h"
#include "ops/op_util.h"
#include "ops/seq_rows.h"

namespace rn {

namespace {
// lse is kept in f64 for f64 inputs, f32 otherwise (bf16 would lose the exp's precision)
DType lse_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

double resolve_scale(double scale, int64_t D, const char* op) {
    RN_CHECK(std::isfinite(scale) && scale >= 0, op, ": scale must be finite and ≥ 0 (0 means 1/sqrt(D)), got ",
             scale);
    return scale == 0 ? 1.0 / std::sqrt(double(D > 0 ? D : 1)) : scale;
}

void check_heads(int64_t Hq, int64_t Hkv, const char* op, const Shape& qs, const Shape& ks) {
    RN_CHECK(Hkv >= 1 && Hq >= Hkv && Hq % Hkv == 0, op, ": q's heads (", Hq,
             ") must be a positive multiple of k/v's heads (", Hkv, ") (grouped-query attention); q is ", qs,
             ", k is ", ks);
}

// dq = s·dS K, dk = s·dSᵀ Q (summed over each group's query heads), dv = Pᵀ dO, with P
// recomputed from lse and dS = P ∘ (dO Vᵀ − rowsum(dO ∘ O)); docs/attention.md §3
struct AttentionBackward : Node {
    AttentionShape shape{};
    double scale = 0;
    SavedTensor q, k, v;  // the inputs as the kernels read them (contiguous unless strided)
    SavedTensor out, lse;  // the forward's output [B,Hq,Tq,D] and lse [B,Hq,Tq] (lse_dtype)
    bool strided = false;  // the tensor-core kernels read the rows where they lie (see attention())
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        const char* n = "AttentionBackward";
        Tensor qs = q.get(n), ks = k.get(n), vs = v.get(n), os = out.get(n), ls = lse.get(n);
        if (!needs_input_grad(0) && !needs_input_grad(1) && !needs_input_grad(2)) return {Tensor(), Tensor(), Tensor()};
        // the strided path must not fall back (only the tensor-core kernels read strided
        // rows): a dout they cannot read where it lies becomes a fresh, aligned copy
        Tensor dout = strided ? readable_or_copy(g[0]) : contiguous_nograd(g[0]);
        // the kernels write all three (one pass makes dk and dv together, the declared
        // contract has no "not wanted" pointers); unwanted ones are dropped below. Strided:
        // a gradient is laid out as its input ([B,T,H,D] where that was a view of it)
        auto grad_like = [&](const Tensor& t) { return strided ? empty_laid_out_as(t) : empty_like(t); };
        Tensor dq = grad_like(qs), dk = grad_like(ks), dv = grad_like(vs);
        if (qs.is_cuda()) {
            QkvRows rows;
            if (strided) {
                rows.q = rows_of(qs), rows.k = rows_of(ks), rows.v = rows_of(vs), rows.out = rows_of(os);
                rows.dout = rows_of(dout), rows.dq = rows_of(dq), rows.dk = rows_of(dk), rows.dv = rows_of(dv);
            }
            cuda::attention_backward(qs.dtype(), shape, scale, dq.raw_data(), dk.raw_data(), dv.raw_data(),
                                     dout.raw_data(), qs.raw_data(), ks.raw_data(), vs.raw_data(), os.raw_data(),
                                     ls.raw_data(), strided ? &rows : nullptr);
        } else
            cpu::attention_backward(qs.dtype(), shape, scale, dq.raw_data(), dk.raw_data(), dv.raw_data(),
                                    dout.raw_data(), qs.raw_data(), ks.raw_data(), vs.raw_data(), os.raw_data(),
                                    ls.raw_data());
        return {needs_input_grad(0) ? dq : Tensor(), needs_input_grad(1) ? dk : Tensor(),
                needs_input_grad(2) ? dv : Tensor()};
    }
    void release() override { q.reset(); k.reset(); v.reset(); out.reset(); lse.reset(); }
    std::string name() const override { return "AttentionBackward"; }
};
}  // namespace

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const AttentionOptions& opt) {
    const char* op = "attention";
    check_defined(q_in, op, "q");
    check_defined(k_in, op, "k");
    check_defined(v_in, op, "v");
    RN_CHECK(q_in.dim() == 4, op, ": q must be [B,Hq,Tq,D] (4 dims), got shape ", q_in.shape());
    RN_CHECK(k_in.dim() == 4, op, ": k must be [B,Hkv,Tk,D] (4 dims), got shape ", k_in.shape());
    RN_CHECK(v_in.shape() == k_in.shape(), op, ": v must have k's shape ", k_in.shape(), ", got ", v_in.shape());
    check_same_dtype_device(q_in, k_in, op);
    check_same_dtype_device(q_in, v_in, op);
    check_floating(q_in, op);
    const int64_t B = q_in.size(0), Hq = q_in.size(1), Tq = q_in.size(2), D = q_in.size(3);
    const int64_t Hkv = k_in.size(1), Tk = k_in.size(2);
    RN_CHECK(k_in.size(0) == B, op, ": q and k must have the same batch size, got q ", q_in.shape(), " and k ",
             k_in.shape());
    RN_CHECK(k_in.size(3) == D, op, ": q and k must have the same head dim D, got q ", q_in.shape(), " and k ",
             k_in.shape());
    check_heads(Hq, Hkv, op, q_in.shape(), k_in.shape());
    RN_CHECK(Tk >= Tq, op, ": k/v need at least as many tokens as q (the queries are the last Tq of Tk "
                           "positions), got Tq = ", Tq, " and Tk = ", Tk);
    const double scale = resolve_scale(opt.scale, D, op);

    const AttentionShape shape{B, Hq, Hkv, Tq, Tk, D};
    // Note [Attention without permutes]: the Transformer projects q, k and v as [B,T,H,D] and
    // reads the output back as [B,T,Hq,D]; a [B,H,T,D] contiguous copy of each, of the output
    // and of every gradient was 8 permuting copies a layer (and a prefill chunk copied the
    // narrowed KV cache whole). Where the bf16 tensor-core kernels take the call they read
    // q, k, v where they lie; an output or gradient is laid out as its input, so [B,T,H,D]
    // views in give [B,T,H,D] memory out (contiguous inputs keep contiguous outputs). Every
    // other path makes its inputs contiguous as before, as does RN_ATTENTION_ROWS=0. (Read in
    // place, q, k and v are also saved as given, as any op saves its inputs: a KV cache
    // written between a recorded prefill chunk and its backward is then an in-place error.)
    // On by default since it ran on a GPU (H100, 2026-12-07: the `small`-matched Transformer
    // trains 6.8% faster with 0.28 GiB less peak, docs/attention.md §4); RN_ATTENTION_ROWS=0
    // turns it off. The emulated kernels check it in CI (tests/test_emu_attention_tc.cpp).
    const bool strided = q_in.is_cuda() &&
                         !(q_in.is_contiguous() && k_in.is_contiguous() && v_in.is_contiguous()) &&
                         env_choice("RN_ATTENTION_ROWS", {0, 1}, 1) == 1 &&
                         cuda::attention_takes_rows(q_in.dtype(), shape) && rows_readable(q_in) &&
                         rows_readable(k_in) && rows_readable(v_in);
    Tensor q = strided ? q_in : contiguous_nograd(q_in), k = strided ? k_in : contiguous_nograd(k_in),
           v = strided ? v_in : contiguous_nograd(v_in);
    Tensor out = strided ? empty_laid_out_as(q) : empty(q.shape(), q.dtype(), q.device());
    Tensor lse = empty({B, Hq, Tq}, lse_dtype(q.dtype()), q.device());
    if (q.is_cuda()) {
        QkvRows rows;
        if (strided) rows.q = rows_of(q), rows.k = rows_of(k), rows.v = rows_of(v), rows.out = rows_of(out);
        cuda::attention_forward(q.dtype(), shape, scale, out.raw_data(), lse.raw_data(), q.raw_data(), k.raw_data(),
                                v.raw_data(), strided ? &rows : nullptr);
    } else
        cpu::attention_forward(q.dtype(), shape, scale, out.raw_data(), lse.raw_data(), q.raw_data(), k.raw_data(),
                               v.raw_data());

    if (any_requires_grad({q_in, k_in, v_in})) {
        auto n = std::make_shared<AttentionBackward>();
        n->shape = shape;
        n->scale = scale;
        n->q = SavedTensor(q);
        n->k = SavedTensor(k);
        n->v = SavedTensor(v);
        n->out = SavedTensor(out);
        n->lse = SavedTensor(lse);
        n->strided = strided;
        record(n, {q_in, k_in, v_in}, {out});
    }
    return out;
}

Tensor attention_decode(const Tensor& q_in, const Tensor& k_cache, const Tensor& v_cache, const Tensor& lengths,
                        double scale) {
    const char* op = "attention_decode";
    check_defined(q_in, op, "q");
    check_defined(k_cache, op, "k_cache");
    check_defined(v_cache, op, "v_cache");
    check_defined(lengths, op, "lengths");
    RN_CHECK(q_in.dim() == 3, op, ": q must be [B,Hq,D] (one token per sequence), got shape ", q_in.shape());
    RN_CHECK(k_cache.dim() == 4, op, ": k_cache must be [S,Hkv,Tmax,D], got shape ", k_cache.shape());
    RN_CHECK(v_cache.shape() == k_cache.shape(), op, ": v_cache must have k_cache's shape ", k_cache.shape(),
             ", got ", v_cache.shape());
    check_same_dtype_device(q_in, k_cache, op);
    check_same_dtype_device(q_in, v_cache, op);
    check_floating(q_in, op);
    const int64_t B = q_in.size(0), Hq = q_in.size(1), D = q_in.size(2);
    const int64_t S = k_cache.size(0), Hkv = k_cache.size(1), Tmax = k_cache.size(2);
    RN_CHECK(S >= B, op, ": the cache holds ", S, " sequences but q has ", B, "; q is ", q_in.shape(),
             ", k_cache is ", k_cache.shape());
    RN_CHECK(k_cache.size(3) == D, op, ": q and the cache must have the same head dim D, got q ", q_in.shape(),
             " and k_cache ", k_cache.shape());
    check_heads(Hq, Hkv, op, q_in.shape(), k_cache.shape());
    RN_CHECK(lengths.shape() == Shape({B}), op, ": lengths must be [B] = [", B, "], got ", lengths.shape());
    RN_CHECK(lengths.dtype() == DType::i64, op, ": lengths must be i64, got ", lengths.dtype());
    RN_CHECK(lengths.device() == q_in.device(), op, ": lengths must be on q's device ", q_in.device(),
             " (read there, so a decode step can be captured in a CUDA graph), got ", lengths.device());
    const double s = resolve_scale(scale, D, op);

    Tensor q = contiguous_nograd(q_in), kc = contiguous_nograd(k_cache), vc = contiguous_nograd(v_cache);
    Tensor len = contiguous_nograd(lengths);
    Tensor out = empty(q.shape(), q.dtype(), q.device());
    // B == 0 would hand the kernels an empty batch: nothing to compute
    if (B == 0) return out;
    if (q.is_cuda())
        cuda::attention_decode(q.dtype(), B, Hq, Hkv, Tmax, D, s, out.raw_data(), q.raw_data(), kc.raw_data(),
                               vc.raw_data(), len.data<int64_t>());
    else
        cpu::attention_decode(q.dtype(), B, Hq, Hkv, Tmax, D, s, out.raw_data(), q.raw_data(), kc.raw_data(),
                              vc.raw_data(), len.data<int64_t>());
    return out;
}

void kv_cache_write(const Tensor& cache, const Tensor& x_in, const Tensor& pos) {
    const char* op = "kv_cache_write";
    check_defined(cache, op, "cache");
    check_defined(x_in, op, "x");
    check_defined(pos, op, "pos");
    RN_CHECK(cache.dim() == 4, op, ": cache must be [S,Hkv,Tmax,D], got shape ", cache.shape());
    RN_CHECK(x_in.dim() == 4, op, ": x must be [B,Hkv,T,D], got shape ", x_in.shape());
    check_same_dtype_device(cache, x_in, op);
    check_floating(cache, op);
    const int64_t S = cache.size(0), Hkv = cache.size(1), Tmax = cache.size(2), D = cache.size(3);
    const int64_t B = x_in.size(0), T = x_in.size(2);
    RN_CHECK(x_in.size(1) == Hkv && x_in.size(3) == D, op, ": x must be [B,", Hkv, ",T,", D,
             "] to match the cache ", cache.shape(), ", got ", x_in.shape());
    RN_CHECK(B <= S, op, ": x has ", B, " sequences but the cache holds ", S, "; x is ", x_in.shape(),
             ", cache is ", cache.shape());
    RN_CHECK(T <= Tmax, op, ": x has ", T, " tokens but the cache holds ", Tmax, " positions");
    RN_CHECK(cache.is_contiguous(), op, ": the cache must be contiguous (it is written in place), got strides ",
             cache.strides());
    RN_CHECK(pos.shape() == Shape({B}), op, ": pos must be [B] = [", B, "], got ", pos.shape());
    RN_CHECK(pos.dtype() == DType::i64, op, ": pos must be i64, got ", pos.dtype());
    RN_CHECK(pos.device() == cache.device(), op, ": pos must be on the cache's device ", cache.device(),
             " (read there, so a decode step can be captured in a CUDA graph), got ", pos.device());
    check_inplace_allowed(cache, op);
    Tensor x = contiguous_nograd(x_in), p = contiguous_nograd(pos);
    if (B > 0 && T > 0) {
        if (cache.is_cuda())
            cuda::kv_cache_write(cache.dtype(), B, Hkv, T, Tmax, D, cache.raw_data(), x.raw_data(), p.data<int64_t>());
        else  // positions are checked there, on the host, before a byte moves
            cpu::kv_cache_write(cache.dtype(), B, Hkv, T, Tmax, D, cache.raw_data(), x.raw_data(), p.data<int64_t>());
    }
    cache.bump_version();
}

}  // namespace rn
