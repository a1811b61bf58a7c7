// cuda/retention.cu — CUDA kernels of the retention op (mirror of ops/retention_cpu.cpp;
// the math in docs/model.md §1 and docs/retention.md). Generic SIMT kernels for f32,
// f64 and bf16; bf16 chunkwise (and parallel) first tries the tensor-core path of
// cuda/retention_tc.cu and comes here only for shapes it declines.
//
// Dimension key: B batch, H heads, T tokens, Dk, Dv head dims, C chunk. Inside the scan
// kernels, Dq is the dim the "query" and "key" operands share (contracted in q·k and
// q·S) and Dw the dim of the "value" operand, the output and the state's columns: the
// state is Dq×Dw. T is the storage type (float, double, bf16), A the arithmetic type
// (float for f32 and bf16, double for f64), which is also the state's type.
//
// Note [One scan, four uses]: every kernel here computes a "scan"
//     S ← γ S + keyᵀ val (token by token, in time order or reversed),  out = qry · S
// whose three operands are rows of [T, Dq] / [T, Dq] / [T, Dw] tensors. The forward is the
// scan (q, k, v). The backward (docs/retention.md §3, BPTT) is three more scans, because
//     dq_n = dŌ_n S_nᵀ    where S_nᵀ = γ S_(n−1)ᵀ + v_nᵀ k_n   (forward scan of (dŌ, v, k), from S0ᵀ)
//     dk_n = v_n G_nᵀ     where G_nᵀ = γ G_(n+1)ᵀ + dŌ_nᵀ q_n (reversed scan of (v, dŌ, q))
//     dv_n = k_n G_n      where G_n  = γ G_(n+1) + q_nᵀ dŌ_n  (reversed scan of (k, q, dŌ))
// with dŌ = λ dO, G_(T−1) = λ q_(T−1)ᵀ dO_(T−1) + dS_final (so the reversed scans start
// from dS_final/γ) and d(initial state) = γ G_0 (the last scan's final state times γ). The
// backward thus never needs S_n and G_n together: the dq scan recomputes the forward states
// from the inputs, the dk and dv scans run the reverse recurrence; nothing is stored
// between forward and backward or between chunks (O(B·H·Dk·Dv) memory at any T).
//
// Two implementations of the scan:
//  - chunk_scan_kernel (chunkwise and parallel): chunks of C ≤ 64 tokens, per chunk
//    O = diag(λ)[(a ⊙ Q) H + ((Q Kᵀ) ⊙ Γ) V],  H ← γ^L H + (b ⊙ K)ᵀ V  (docs/model.md §1).
//    The chunkwise form is exact for any chunk length, so a user chunk > 64 runs as
//    sub-chunks of 64, and the parallel paradigm (one chunk ≥ T) is this kernel with C = 64.
//  - recurrent_scan_kernel (recurrent): the reference paradigm, one token at a time.
// Both: one block of 256 threads per (b, h, tile of 32 state columns); the Dq×32 state
// tile lives in fp32 (f64 for f64) shared memory (chunk) or registers (recurrent), and the
// block walks the tokens in order. γ^e for e ≤ C comes from a table exp(e·log γ) (never
// γ^(−m)); λ_n is computed in double from log γ with expm1, as on the CPU.
//
// retention_step: one kernel for the whole batch; block = (b, h, 32 (f32) or 16 (f64)
// state columns) × all Dk rows; each thread owns 16-byte column vectors of a few rows,
// reads them once, writes S ← γS + kᵀv back in place and reduces q·S over the rows.
//
// Measured once on an H200 (generic kernels, f32): B4 H4 T2048 Dk256 Dv432 forward 3.4 ms,
// forward + backward 15.6 ms in every paradigm (the bf16 tensor-core path: 0.2 / 0.9 ms);
// retention_step H16 Dk256 Dv512 fp32 state: 5.8 µs at batch 1, 272 µs at batch 64
// (1 GiB of state read and written: 3.9 TB/s, bandwidth-bound).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/pdl.cuh"
#include "cuda/math.cuh"
#include "cuda/retention.h"
#include "cuda/retention_common.cuh"
#include "cuda/retention_tc.h"
#include "cuda/seq_rows.cuh"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

constexpr int kThreads = 256;  // threads of every scan block: 8 warps
constexpr int kCols = 32;      // state columns a scan block owns: one per lane
constexpr int kSlice = 32;     // query dims the chunk kernel stages per step of its Dq loop
constexpr int kMaxChunk = 64;  // longest chunk the chunk kernel processes at once

enum ScanFlags : unsigned {
    kLamQry = 1u,           // multiply qry row n by λ_n on load (dŌ = λ dO as a query)
    kLamKey = 2u,           // ... key row
    kLamVal = 4u,           // ... val row
    kLamOut = 8u,           // multiply out row n by λ_n (the forward)
    kReverse = 16u,         // walk the tokens from T−1 down to 0
    kS0DivGamma = 32u,      // the scan starts from s0 / γ (the reversed BPTT scans)
    kFinTimesGamma = 64u,   // the final state is written times γ (d initial state = γ G_0)
};
constexpr unsigned kAnyLam = kLamQry | kLamKey | kLamVal | kLamOut;

// Operands of one scan (Note [One scan, four uses]); pointers at the (b=0, h=0) slice.
template <typename T, typename A>
struct Scan {
    const T* qry;  // [B,H,T,Dq]
    const T* key;  // [B,H,T,Dq]
    const T* val;  // [B,H,T,Dw]
    T* out;        // [B,H,T,Dw], or null: only the final state is wanted
    const A* s0;   // initial state of slice bh: element (i, j) at s0[bh·Dq·Dw + i·s0_rs + j·s0_cs]; null = 0
    A* sfin;       // [B,H,Dq,Dw] final state, or null
    int64_t s0_rs, s0_cs;
    int64_t Tn, Dq, Dw, pos0;  // Tn: tokens
    int H, h0;     // heads of the tensors; first head of this launch (blockIdx.y = h − h0)
    int chunk;     // chunk kernel: tokens per chunk (1 .. kMaxChunk)
    unsigned flags;
};


// ------------------------------------------------------------------ chunk scan kernel
//
// Block (blockIdx.x: 32-column tile of Dw, blockIdx.y: head − h0, blockIdx.z: b), 256
// threads. Shared memory (A elements):
//   Hs  [Dq][32]       the state tile, the whole scan long
//   Vs  [64][32]       the chunk's value tile;  Vb [64][32] = b_u · Vs (b_u = γ^(L−1−u))
//   QK  2 × [64][33]   a 32-dim slice of the chunk's qry and key rows (+1: no bank conflicts);
//                      after the Dq loop the same space holds As [64][65] = (Q Kᵀ) ⊙ Γ
//   pw  [65]           γ^e, e = 0..64;   lam [64] λ of the chunk's rows
// Per chunk: stage Vs; for each 32-dim slice of Dq: stage Q, K slices, accumulate Q Kᵀ
// (16×16 threads × 4×4 entries) and Q·H (warp w: rows w, w+8, ..; lane: column) in
// registers from the old state rows of the slice, then update those rows
// H ← γ^L H + Kᵀ Vb (they are not read again this chunk); finally mask Q Kᵀ into As and
// write out = λ (a ⊙ Q H + As V).
template <typename A>
__host__ __device__ constexpr int64_t chunk_smem_elems(int64_t Dq) {
    return Dq * kCols + 2 * kMaxChunk * kCols + 2 * kMaxChunk * (kSlice + 1) + (kMaxChunk + 1) + kMaxChunk;
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) chunk_scan_kernel(Scan<T, A> p, Decays d) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int QS = kSlice + 1, AS = kMaxChunk + 1;
    const int64_t Dq = p.Dq, Dw = p.Dw, Tn = p.Tn;
    A* Hs = reinterpret_cast<A*>(smem_raw);
    A* Vs = Hs + Dq * kCols;
    A* Vb = Vs + kMaxChunk * kCols;
    A* Qs = Vb + kMaxChunk * kCols;
    A* Ks = Qs + kMaxChunk * QS;
    A* As = Qs;  // aliases Qs/Ks once the Dq loop of a chunk is done (64·65 ≤ 2·64·33)
    A* pw = Ks + kMaxChunk * QS;
    A* lam = pw + kMaxChunk + 1;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tx = tid & 15, ty = tid >> 4;
    const int hl = blockIdx.y;
    const int64_t bh = int64_t(blockIdx.z) * p.H + p.h0 + hl;
    const int64_t j0 = int64_t(blockIdx.x) * kCols, jc = j0 + lane;
    const bool jin = jc < Dw;
    const int C = p.chunk;
    const unsigned fl = p.flags;
    const bool rev = fl & kReverse, need_out = p.out != nullptr;
    const double lgd = d.lg[hl], omd = d.om[hl];
    const A lg = A(lgd);

    const T* qry = p.qry + bh * Tn * Dq;
    const T* key = p.key + bh * Tn * Dq;
    const T* val = p.val + bh * Tn * Dw;
    T* out = need_out ? p.out + bh * Tn * Dw : nullptr;

    for (int e = tid; e <= kMaxChunk; e += kThreads) pw[e] = d_exp(A(e) * lg);
    {
        const A scale = (fl & kS0DivGamma) ? A(1.0 / d.g[hl]) : A(1);
        for (int64_t idx = tid; idx < Dq * kCols; idx += kThreads) {
            const int64_t i = idx / kCols, j = j0 + idx % kCols;
            A s = A(0);
            if (p.s0 && j < Dw) s = p.s0[bh * Dq * Dw + i * p.s0_rs + j * p.s0_cs] * scale;
            Hs[idx] = s;
        }
    }

    for (int64_t c0 = 0; c0 < Tn; c0 += C) {
        const int L = int(Tn - c0 < C ? Tn - c0 : C);
        auto row = [&](int r) -> int64_t { return rev ? Tn - 1 - (c0 + r) : c0 + r; };  // token of local row r
        __syncthreads();  // the previous chunk is done with Vs, Vb, As, lam; pw and Hs are written
        if ((fl & kAnyLam) && tid < L) lam[tid] = A(lambda_at(lgd, omd, p.pos0 + row(tid)));
        __syncthreads();
        for (int idx = tid; idx < L * kCols; idx += kThreads) {
            const int u = idx / kCols;
            const int64_t j = j0 + idx % kCols;
            A x = j < Dw ? ld(val[row(u) * Dw + j]) : A(0);
            if (fl & kLamVal) x *= lam[u];
            Vs[idx] = x;
            Vb[idx] = x * pw[L - 1 - u];
        }

        A acc[4][4];  // (Q Kᵀ)[ty + 16a][tx + 16b]
        A po[8];      // (Q H)[warp + 8a][lane]
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int b = 0; b < 4; ++b) acc[a][b] = A(0);
#pragma unroll
        for (int a = 0; a < 8; ++a) po[a] = A(0);

        for (int64_t i0 = 0; i0 < Dq; i0 += kSlice) {
            const int ns = int(Dq - i0 < kSlice ? Dq - i0 : kSlice);
            __syncthreads();  // Qs/Ks free (previous slice's H update is done); Vs/Vb written
            // stage the slice; rows ≥ L and dims ≥ Dq are zero, so the 64×64 products need no guards
            for (int idx = tid; idx < kMaxChunk * kSlice; idx += kThreads) {
                const int r = idx / kSlice, ii = idx % kSlice;
                A qv = A(0), kv = A(0);
                if (r < L && ii < ns) {
                    const int64_t off = row(r) * Dq + i0 + ii;
                    kv = ld(key[off]);
                    if (fl & kLamKey) kv *= lam[r];
                    if (need_out) {
                        qv = ld(qry[off]);
                        if (fl & kLamQry) qv *= lam[r];
                    }
                }
                Qs[r * QS + ii] = qv;
                Ks[r * QS + ii] = kv;
            }
            __syncthreads();
            if (need_out) {
                for (int ii = 0; ii < ns; ++ii) {
                    A qa[4], kb[4];
#pragma unroll
                    for (int a = 0; a < 4; ++a) qa[a] = Qs[(ty + 16 * a) * QS + ii];
#pragma unroll
                    for (int b = 0; b < 4; ++b) kb[b] = Ks[(tx + 16 * b) * QS + ii];
#pragma unroll
                    for (int a = 0; a < 4; ++a)
#pragma unroll
                        for (int b = 0; b < 4; ++b) acc[a][b] += qa[a] * kb[b];
                    const A hv = Hs[(i0 + ii) * kCols + lane];
#pragma unroll
                    for (int a = 0; a < 8; ++a) po[a] += Qs[(warp + 8 * a) * QS + ii] * hv;
                }
                __syncthreads();  // every thread has read the old state rows of this slice
            }
            // H ← γ^L H + (b ⊙ K)ᵀ V on the slice's rows (warp w: rows w, w+8, w+16, w+24)
            const A gL = pw[L];
#pragma unroll
            for (int a = 0; a < kSlice / 8; ++a) {
                const int ii = warp + 8 * a;
                if (ii < ns) {
                    A h = Hs[(i0 + ii) * kCols + lane] * gL;
                    for (int u = 0; u < L; ++u) h += Ks[u * QS + ii] * Vb[u * kCols + lane];
                    Hs[(i0 + ii) * kCols + lane] = h;
                }
            }
        }

        if (need_out) {
            __syncthreads();  // Qs/Ks are read for the last time above; As overwrites them
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    const int t = ty + 16 * a, u = tx + 16 * b;
                    As[t * AS + u] = (u <= t && t < L) ? acc[a][b] * pw[t - u] : A(0);
                }
            __syncthreads();
#pragma unroll
            for (int a = 0; a < 8; ++a) {
                const int t = warp + 8 * a;
                if (t < L && jin) {
                    A o = pw[t + 1] * po[a];  // (a ⊙ Q) H, a_t = γ^(t+1)
                    for (int u = 0; u <= t; ++u) o += As[t * AS + u] * Vs[u * kCols + lane];
                    if (fl & kLamOut) o *= lam[t];
                    out[row(t) * Dw + jc] = st<T>(o);
                }
            }
        }
    }

    if (p.sfin) {
        __syncthreads();  // the last H update was done by other threads' mapping
        const A scale = (fl & kFinTimesGamma) ? A(d.g[hl]) : A(1);
        for (int64_t idx = tid; idx < Dq * kCols; idx += kThreads) {
            const int64_t i = idx / kCols, j = j0 + idx % kCols;
            if (j < Dw) p.sfin[bh * Dq * Dw + i * Dw + j] = Hs[idx] * scale;
        }
    }
}

// ------------------------------------------------------------------ recurrent scan kernel
//
// Block as in the chunk kernel. Thread (warp w, lane) owns state column j0 + lane, rows
// w, w+8, .., w+8(NR−1) (NR ≥ Dq/8), in registers. Tokens are staged TB at a time
// (Qs, Ks [TB][Dq], Vs [TB][32]); each thread runs its TB steps without synchronising,
//     S_ij ← γ S_ij + k_i v_j,   partial_j += q_i S_ij   (its rows only)
// and leaves the partial sums in red [TB][8][32]; after one barrier the block sums the 8
// row groups into out = λ q S.
template <typename A>
__host__ __device__ constexpr int64_t recurrent_step_elems(int64_t Dq) {
    return 2 * Dq + kCols + 8 * kCols + 1;  // one staged token: q, k, v, partials, λ
}

template <typename T, typename A, int NR>
__global__ void __launch_bounds__(kThreads) recurrent_scan_kernel(Scan<T, A> p, Decays d, int TB) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int64_t Dq = p.Dq, Dw = p.Dw, Tn = p.Tn;
    const int Dqi = int(Dq);
    A* Qs = reinterpret_cast<A*>(smem_raw);
    A* Ks = Qs + TB * Dq;
    A* Vs = Ks + TB * Dq;
    A* red = Vs + TB * kCols;
    A* lam = red + TB * 8 * kCols;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int hl = blockIdx.y;
    const int64_t bh = int64_t(blockIdx.z) * p.H + p.h0 + hl;
    const int64_t j0 = int64_t(blockIdx.x) * kCols, jc = j0 + lane;
    const unsigned fl = p.flags;
    const bool rev = fl & kReverse, need_out = p.out != nullptr;
    const double lgd = d.lg[hl], omd = d.om[hl];
    const A g = A(d.g[hl]);

    const T* qry = p.qry + bh * Tn * Dq;
    const T* key = p.key + bh * Tn * Dq;
    const T* val = p.val + bh * Tn * Dw;
    T* out = need_out ? p.out + bh * Tn * Dw : nullptr;

    A S[NR];
    {
        const A scale = (fl & kS0DivGamma) ? A(1.0 / d.g[hl]) : A(1);
#pragma unroll
        for (int r = 0; r < NR; ++r) {
            const int64_t i = warp + 8 * r;
            S[r] = (p.s0 && i < Dq && jc < Dw) ? p.s0[bh * Dq * Dw + i * p.s0_rs + jc * p.s0_cs] * scale : A(0);
        }
    }

    for (int64_t t0 = 0; t0 < Tn; t0 += TB) {
        const int nb = int(Tn - t0 < TB ? Tn - t0 : TB);
        auto row = [&](int s) -> int64_t { return rev ? Tn - 1 - (t0 + s) : t0 + s; };
        __syncthreads();  // the previous group's red and lam are consumed
        if ((fl & kAnyLam) && tid < nb) lam[tid] = A(lambda_at(lgd, omd, p.pos0 + row(tid)));
        __syncthreads();
        for (int idx = tid; idx < nb * Dqi; idx += kThreads) {
            const int s = idx / Dqi, i = idx % Dqi;
            const int64_t off = row(s) * Dq + i;
            A kv = ld(key[off]);
            if (fl & kLamKey) kv *= lam[s];
            Ks[idx] = kv;
            if (need_out) {
                A qv = ld(qry[off]);
                if (fl & kLamQry) qv *= lam[s];
                Qs[idx] = qv;
            }
        }
        for (int idx = tid; idx < nb * kCols; idx += kThreads) {
            const int s = idx / kCols;
            const int64_t j = j0 + idx % kCols;
            A x = j < Dw ? ld(val[row(s) * Dw + j]) : A(0);
            if (fl & kLamVal) x *= lam[s];
            Vs[idx] = x;
        }
        __syncthreads();
        for (int s = 0; s < nb; ++s) {
            const A v = Vs[s * kCols + lane];
            const A* ks = Ks + s * Dq;
            const A* qs = Qs + s * Dq;
            A part = A(0);
#pragma unroll
            for (int r = 0; r < NR; ++r) {
                const int i = warp + 8 * r;
                if (i < Dqi) {
                    S[r] = g * S[r] + ks[i] * v;  // S ← γS + kᵀv
                    if (need_out) part += qs[i] * S[r];
                }
            }
            if (need_out) red[(s * 8 + warp) * kCols + lane] = part;
        }
        if (need_out) {
            __syncthreads();
            for (int idx = tid; idx < nb * kCols; idx += kThreads) {
                const int s = idx / kCols, jj = idx % kCols;
                const int64_t j = j0 + jj;
                if (j >= Dw) continue;
                A o = A(0);
#pragma unroll
                for (int w = 0; w < 8; ++w) o += red[(s * 8 + w) * kCols + jj];
                if (fl & kLamOut) o *= lam[s];
                out[row(s) * Dw + j] = st<T>(o);
            }
        }
    }

    if (p.sfin && jc < Dw) {
        const A scale = (fl & kFinTimesGamma) ? A(d.g[hl]) : A(1);
#pragma unroll
        for (int r = 0; r < NR; ++r) {
            const int64_t i = warp + 8 * r;
            if (i < Dq) p.sfin[bh * Dq * Dw + i * Dw + jc] = S[r] * scale;
        }
    }
}

// ------------------------------------------------------------------ decoding step kernel
//
// Block (blockIdx.x: tile of 8·V state columns, y: head − h0, z: b), 256 threads =
// 8 column threads × 32 row groups. Thread (ty, tx) owns columns [8V·x + V·tx, +V) of rows
// ty, ty+32, ..: one 16-byte vector a row (V = 4 f32, 2 f64), so a warp moves four
// 128-byte row segments, and four rows are loaded before any is stored (memory-level
// parallelism; the in-place update makes the compiler keep the order otherwise).

template <typename T, typename A, int V>
__global__ void __launch_bounds__(kThreads) step_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                        const T* __restrict__ v, A* __restrict__ state,
                                                        T* __restrict__ out, const int64_t* __restrict__ pos,
                                                        int H, int h0, int64_t Dk, int64_t Dv, Decays d) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    A* qs = reinterpret_cast<A*>(smem_raw);  // [Dk]
    A* ks = qs + Dk;                         // [Dk]
    __shared__ A red[kStepRowGroups][kStepColThreads * V];
    __shared__ A lam_s;

    const int tid = threadIdx.x, tx = tid % kStepColThreads, ty = tid / kStepColThreads;
    const int hl = blockIdx.y;
    const int64_t b = blockIdx.z, bh = b * H + h0 + hl;
    const int64_t jb = int64_t(blockIdx.x) * kStepColThreads * V + int64_t(tx) * V;
    const A g = A(d.g[hl]);
    pdl_wait();  // a decode step's launches overlap (cuda/pdl.h)
    pdl_trigger();

    for (int64_t i = tid; i < Dk; i += kThreads) {
        qs[i] = ld(q[bh * Dk + i]);
        ks[i] = ld(k[bh * Dk + i]);
    }
    if (tid == 0) lam_s = A(lambda_at(d.lg[hl], d.om[hl], pos[b]));
    A vv[V], acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
        vv[e] = jb + e < Dv ? ld(v[bh * Dv + jb + e]) : A(0);
        acc[e] = A(0);
    }
    __syncthreads();

    if (jb < Dv) {  // with V > 1 the launcher guarantees Dv % V == 0: the whole vector is in range
        Vec<A, V> s[kStepUnroll];
        step_update_column<A, V>(state + bh * Dk * Dv + jb, Dk, Dv, ty, qs, ks, vv, g, s, false, acc);
    }
#pragma unroll
    for (int e = 0; e < V; ++e) red[ty][tx * V + e] = acc[e];
    __syncthreads();
    if (tid < kStepColThreads * V) {
        const int64_t j = int64_t(blockIdx.x) * kStepColThreads * V + tid;
        if (j < Dv) out[bh * Dv + j] = st<T>(lam_s * step_column_sum<A, kStepColThreads * V>(red, tid));  // o = λ_pos q S
    }
}

// ------------------------------------------------------------------ launchers


int max_smem_optin() {
    int v = 0;
    RN_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, current_device()));
    return v;
}

// dynamic shared memory above the 48 KiB default needs an opt-in per kernel
template <typename K>
void allow_smem(K kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        RN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <typename F>
void for_head_groups(int64_t H, const std::vector<double>& gamma, F&& launch) {
    for (int64_t h0 = 0; h0 < H; h0 += kMaxHeads) {
        const int nh = int(std::min<int64_t>(kMaxHeads, H - h0));
        launch(int(h0), nh, make_decays(gamma, int(h0), nh));
    }
}

template <typename T, typename A>
void launch_chunk_scan(Scan<T, A> p, int64_t B, int64_t chunk, const std::vector<double>& gamma, const char* op) {
    p.chunk = int(std::min<int64_t>(chunk, kMaxChunk));
    const size_t smem = size_t(chunk_smem_elems<A>(p.Dq)) * sizeof(A);
    const int limit = max_smem_optin();
    RN_CHECK(smem <= size_t(limit), op, " (CUDA): a ", p.Dq, "-dim state tile needs ", smem,
             " bytes of shared memory, the device allows ", limit,
             ". HINT: head dims up to 512 fit in every dtype; f32 allows about twice that");
    auto kernel = chunk_scan_kernel<T, A>;
    allow_smem(kernel, smem);
    for_head_groups(p.H, gamma, [&](int h0, int nh, const Decays& d) {
        p.h0 = h0;
        dim3 grid(unsigned((p.Dw + kCols - 1) / kCols), unsigned(nh), unsigned(B));
        kernel<<<grid, kThreads, smem, stream()>>>(p, d);
        RN_CUDA_CHECK_LAUNCH();
    });
}

template <typename T, typename A, int NR>
void launch_recurrent_nr(Scan<T, A> p, int64_t B, const std::vector<double>& gamma, const char* op) {
    // stage as many tokens as fit in ~64 KiB (at least 1, at most 64)
    const int64_t per_tok = recurrent_step_elems<A>(p.Dq) * int64_t(sizeof(A));
    const int TB = int(std::max<int64_t>(1, std::min<int64_t>(64, (64 * 1024) / per_tok)));
    const size_t smem = size_t(TB * per_tok);
    const int limit = max_smem_optin();
    RN_CHECK(smem <= size_t(limit), op, " (CUDA, recurrent): ", p.Dq, "-dim rows need ", smem,
             " bytes of shared memory, the device allows ", limit);
    auto kernel = recurrent_scan_kernel<T, A, NR>;
    allow_smem(kernel, smem);
    for_head_groups(p.H, gamma, [&](int h0, int nh, const Decays& d) {
        p.h0 = h0;
        dim3 grid(unsigned((p.Dw + kCols - 1) / kCols), unsigned(nh), unsigned(B));
        kernel<<<grid, kThreads, smem, stream()>>>(p, d, TB);
        RN_CUDA_CHECK_LAUNCH();
    });
}

template <typename T, typename A>
void launch_recurrent_scan(Scan<T, A> p, int64_t B, const std::vector<double>& gamma, const char* op) {
    // the state column lives in registers: NR rows a thread, a compile-time count
    if (p.Dq <= 64) launch_recurrent_nr<T, A, 8>(p, B, gamma, op);
    else if (p.Dq <= 128) launch_recurrent_nr<T, A, 16>(p, B, gamma, op);
    else if (p.Dq <= 256) launch_recurrent_nr<T, A, 32>(p, B, gamma, op);
    else if (p.Dq <= 512) launch_recurrent_nr<T, A, 64>(p, B, gamma, op);
    else if (p.Dq <= 1024) launch_recurrent_nr<T, A, 128>(p, B, gamma, op);
    else RN_FAIL(op, " (CUDA, recurrent): head dims up to 1024 are supported, got ", p.Dq);
}

template <typename T, typename A>
void launch_scan(RetentionMode mode, const Scan<T, A>& p, int64_t B, int64_t chunk, const std::vector<double>& gamma,
                 const char* op) {
    switch (mode) {
        case RetentionMode::recurrent: launch_recurrent_scan(p, B, gamma, op); break;
        case RetentionMode::chunkwise: launch_chunk_scan(p, B, chunk, gamma, op); break;
        // the parallel form is the chunkwise form with one chunk ≥ T; run as chunks of 64
        case RetentionMode::parallel: launch_chunk_scan(p, B, kMaxChunk, gamma, op); break;
    }
}

void check_shape(const RetentionShape& s, const std::vector<double>& gamma, const char* op) {
    RN_CHECK(s.B >= 0 && s.H >= 0 && s.T >= 0 && s.Dk >= 0 && s.Dv >= 0 && s.pos0 >= 0 && s.chunk >= 1, op,
             " (CUDA): bad sizes B=", s.B, " H=", s.H, " T=", s.T, " Dk=", s.Dk, " Dv=", s.Dv, " chunk=", s.chunk,
             " pos0=", s.pos0);
    RN_CHECK(int64_t(gamma.size()) == s.H, op, " (CUDA): ", gamma.size(), " decays for ", s.H, " heads");
    RN_CHECK(s.B <= 65535, op, " (CUDA): batch ", s.B, " exceeds the 65535 the grid allows");
}

// the state dtype is the arithmetic type: fp32 for f32/bf16 inputs, f64 for f64
size_t state_bytes(DType dt) { return dt == DType::f64 ? 8 : 4; }

// T = 0: the final state is the initial one (or 0); d(initial state) is dS_final (or 0)
void copy_or_zero(void* dst, const void* src, size_t bytes) {
    if (!dst || bytes == 0) return;
    if (src) RN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
    else RN_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream()));
}

}  // namespace

namespace {
// the bf16 chunkwise and parallel forms go to the tensor-core kernels first (the parallel
// form as chunks of 64: the same function, one chunk ≥ T)
bool tc_path(RetentionMode mode, DType dt) { return dt == DType::bf16 && mode != RetentionMode::recurrent; }
RetentionShape tc_shape(RetentionMode mode, const RetentionShape& s) {
    RetentionShape ts = s;
    if (mode == RetentionMode::parallel) ts.chunk = kMaxChunk;
    return ts;
}
// a call with work that could go to the tensor-core kernels (their own checks follow)
bool tc_candidate(RetentionMode mode, DType dt, const RetentionShape& s) {
    return tc_path(mode, dt) && s.B > 0 && s.H > 0 && s.T > 0 && s.Dk > 0 && s.Dv > 0;
}
// (cuda/seq_rows.cuh's check_no_rows, naming the shape)
void check_shape_has_no_rows(const QkvRows* rows, const RetentionShape& s, const char* op) {
    cuda::check_no_rows(rows, op, " (shape ", s.B, "×", s.H, "×", s.T, "×", s.Dk, "/", s.Dv, ")");
}
}  // namespace

bool retention_takes_rows(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma) {
    return tc_candidate(mode, dt, s) && retention_chunkwise_tc_takes_rows(tc_shape(mode, s), gamma);
}

size_t retention_saved_states_bytes(RetentionMode mode, DType dt, const RetentionShape& s,
                                    const std::vector<double>& gamma) {
    return tc_candidate(mode, dt, s) ? retention_chunkwise_tc_saved_states_bytes(tc_shape(mode, s), gamma) : 0;
}

bool retention_forward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                       const void* q, const void* k, const void* v, const void* s0, void* out, void* s_final,
                       void* saved_states, const QkvRows* rows) {
    const char* op = "retention";
    check_shape(s, gamma, op);
    if (s.B == 0 || s.H == 0 || s.Dv == 0) return false;
    if (s.T == 0) {
        copy_or_zero(s_final, s0, size_t(s.B * s.H * s.Dk * s.Dv) * state_bytes(dt));
        return false;
    }
    if (tc_path(mode, dt) && retention_chunkwise_tc_forward(tc_shape(mode, s), gamma, q, k, v,
                                                            static_cast<const float*>(s0), out,
                                                            static_cast<float*>(s_final), saved_states, rows))
        return saved_states != nullptr;
    check_shape_has_no_rows(rows, s, op);
    dispatch_float(dt, op, [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        Scan<T, A> p{};
        p.qry = static_cast<const T*>(q);
        p.key = static_cast<const T*>(k);
        p.val = static_cast<const T*>(v);
        p.out = static_cast<T*>(out);
        p.s0 = static_cast<const A*>(s0);
        p.s0_rs = s.Dv;
        p.s0_cs = 1;
        p.sfin = static_cast<A*>(s_final);
        p.Tn = s.T;
        p.Dq = s.Dk;
        p.Dw = s.Dv;
        p.pos0 = s.pos0;
        p.H = int(s.H);
        p.flags = kLamOut;
        launch_scan(mode, p, s.B, s.chunk, gamma, op);
    });
    return false;
}

void retention_backward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                        void* dq, void* dk, void* dv, void* ds0, const void* dout, const void* ds_final, const void* q,
                        const void* k, const void* v, const void* s0, const void* saved_states,
                        const QkvRows* rows) {
    const char* op = "retention backward";
    check_shape(s, gamma, op);
    if (s.B == 0 || s.H == 0) return;
    if (s.T == 0 || s.Dv == 0 || s.Dk == 0) {
        // nothing flows through the tokens: ds0 = dS_final (T = 0) or has no elements; dq, dk, dv are 0
        if (s.T == 0) copy_or_zero(ds0, ds_final, size_t(s.B * s.H * s.Dk * s.Dv) * state_bytes(dt));
        const size_t es = dt == DType::f64 ? 8 : dt == DType::bf16 ? 2 : 4;
        copy_or_zero(dq, nullptr, size_t(s.B * s.H * s.T * s.Dk) * es);
        copy_or_zero(dk, nullptr, size_t(s.B * s.H * s.T * s.Dk) * es);
        copy_or_zero(dv, nullptr, size_t(s.B * s.H * s.T * s.Dv) * es);
        if (s.T > 0) copy_or_zero(ds0, nullptr, size_t(s.B * s.H * s.Dk * s.Dv) * state_bytes(dt));
        return;
    }
    if (!dq && !dk && !dv && !ds0) return;
    if (tc_path(mode, dt) &&
        retention_chunkwise_tc_backward(tc_shape(mode, s), gamma, dq, dk, dv, static_cast<float*>(ds0), dout,
                                        static_cast<const float*>(ds_final), q, k, v, static_cast<const float*>(s0),
                                        saved_states, rows))
        return;
    check_shape_has_no_rows(rows, s, op);
    // (the generic kernels need no chunk states: any saved ones go unread, e.g. when dout is
    // not 16-byte aligned where the forward's inputs were)
    dispatch_float(dt, op, [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        const T* qp = static_cast<const T*>(q);
        const T* kp = static_cast<const T*>(k);
        const T* vp = static_cast<const T*>(v);
        const T* dop = static_cast<const T*>(dout);
        const A* s0p = static_cast<const A*>(s0);
        const A* dsf = static_cast<const A*>(ds_final);
        Scan<T, A> base{};
        base.Tn = s.T;
        base.pos0 = s.pos0;
        base.H = int(s.H);
        // Note [One scan, four uses]
        if (dq) {  // dq_n = dŌ_n S_nᵀ: forward scan of (dŌ, v, k) from S0ᵀ, state Dv×Dk
            Scan<T, A> p = base;
            p.qry = dop, p.key = vp, p.val = kp, p.out = static_cast<T*>(dq);
            p.s0 = s0p, p.s0_rs = 1, p.s0_cs = s.Dv;
            p.Dq = s.Dv, p.Dw = s.Dk;
            p.flags = kLamQry;
            launch_scan(mode, p, s.B, s.chunk, gamma, op);
        }
        if (dk) {  // dk_n = v_n G_nᵀ: reversed scan of (v, dŌ, q) from dS_finalᵀ/γ, state Dv×Dk
            Scan<T, A> p = base;
            p.qry = vp, p.key = dop, p.val = qp, p.out = static_cast<T*>(dk);
            p.s0 = dsf, p.s0_rs = 1, p.s0_cs = s.Dv;
            p.Dq = s.Dv, p.Dw = s.Dk;
            p.flags = kReverse | kLamKey | kS0DivGamma;
            launch_scan(mode, p, s.B, s.chunk, gamma, op);
        }
        if (dv || ds0) {  // dv_n = k_n G_n: reversed scan of (k, q, dŌ) from dS_final/γ; ds0 = γ G_0
            Scan<T, A> p = base;
            p.qry = kp, p.key = qp, p.val = dop, p.out = static_cast<T*>(dv);
            p.s0 = dsf, p.s0_rs = s.Dv, p.s0_cs = 1;
            p.sfin = static_cast<A*>(ds0);
            p.Dq = s.Dk, p.Dw = s.Dv;
            p.flags = kReverse | kLamVal | kS0DivGamma | kFinTimesGamma;
            launch_scan(mode, p, s.B, s.chunk, gamma, op);
        }
    });
}

void retention_step(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma,
                    const int64_t* pos, const void* q, const void* k, const void* v, void* state, void* out) {
    const char* op = "retention_step";
    RN_CHECK(B >= 0 && H >= 0 && Dk >= 0 && Dv >= 0, op, " (CUDA): bad sizes B=", B, " H=", H, " Dk=", Dk, " Dv=", Dv);
    RN_CHECK(int64_t(gamma.size()) == H, op, " (CUDA): ", gamma.size(), " decays for ", H, " heads");
    RN_CHECK(B <= 65535, op, " (CUDA): batch ", B, " exceeds the 65535 the grid allows");
    if (B == 0 || H == 0 || Dv == 0) return;
    dispatch_float(dt, op, [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        constexpr int V = 16 / int(sizeof(A));
        const size_t smem = size_t(2 * Dk) * sizeof(A);
        const int limit = max_smem_optin();
        RN_CHECK(smem + 8 * 1024 <= size_t(limit), op, " (CUDA): Dk = ", Dk, " is too large for shared memory");
        auto launch = [&](auto kernel, int vec) {
            allow_smem(kernel, smem);
            for_head_groups(H, gamma, [&](int h0, int nh, const Decays& d) {
                const int64_t cols = int64_t(kStepColThreads) * vec;
                dim3 grid(unsigned((Dv + cols - 1) / cols), unsigned(nh), unsigned(B));
                launch_pdl(kernel, grid, dim3(kThreads), smem, static_cast<const T*>(q), static_cast<const T*>(k),
                           static_cast<const T*>(v), static_cast<A*>(state), static_cast<T*>(out), pos, int(H), h0,
                           Dk, Dv, d);
            });
        };
        // 16-byte state vectors need every row to start on a 16-byte boundary
        if (Dv % V == 0 && aligned16(state)) launch(step_kernel<T, A, V>, V);
        else launch(step_kernel<T, A, 1>, 1);
    });
}

}  // namespace rn::cuda
