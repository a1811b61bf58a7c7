// cuda/attention_tc_kernels.cuh — bf16 causal attention on tensor cores, the device code:
// the forward and backward kernels (mma.sync m16n8k16: bf16 operands, fp32 accumulators;
// sm_80+), head dim D ∈ {64, 128}: the FlashAttention-2 scheme (Dao, 2023).
// cuda/attention_tc.cu launches them; tests/test_emu_attention_tc.cpp runs the same kernels
// on the CPU (tests/cuda_emu/), so CI checks their index arithmetic without a GPU.
//
// Dimension key: B batch, Hq query heads, Hkv kv heads, G = Hq/Hkv (query head h reads kv
// head h/G), Tq queries, Tk keys, off = Tk − Tq (query i sees keys j ≤ i + off), D head
// dim. q, out, dout, dq [B,Hq,Tq,D]; k, v, dk, dv [B,Hkv,Tk,D] (bf16), each row where its
// cuda::Rows says (contiguous, or the model's [B,T,H,D] projections read in place: see
// cuda/seq_rows.cuh); lse, dvec [B,Hq,Tq] (f32, contiguous). s the softmax scale, s₂ = s·log₂e. Tiles: 64·MT query rows (MT strips of 16 a
// warp, 4 warps; MT = 1 or 2, see fwd_strips below) × 64 keys; the last tile of either is
// ragged, its missing rows zero-filled by cp.async.
//
//   forward     grid (B·Hq, ⌈Tq/(64·MT)⌉), the query tile with the most keys first
//               (blockIdx.y counts down from the last tile): each warp keeps its 16·MT rows
//               of Q as A fragments (re-read from shared memory per key tile where they do
//               not fit: D·MT > 128), its fp32 O (16·MT × D) and the row max m and sum l in
//               registers;
//               per key tile S = QKᵀ, P = exp2(s₂S − s₂m) (online softmax), O += PV with P
//               fed back as A fragments straight from S's accumulators (no shared memory).
//               Writes O/l (bf16) and lse = s·m + ln l (f32, natural log like the CPU's).
//   backward    Dᵢ = rowsum(dO ⊙ O) (cuda/attention.cu, f32), then
//     dK, dV    grid (B·Hkv, ⌈Tk/(16·KW)⌉), KW = 4 warps (64 keys; 8 and 128 keys opt-in,
//               RN_ATTENTION_BWD_KEYS), the key tile with the most queries (the first) first:
//               each warp keeps 16 keys' dK, dV (fp32) in registers and loops over the query
//               tiles of every head of its kv group (GQA summed in registers: no atomics
//               for dk/dv): Sᵀ = KQᵀ, Pᵀ = exp2(s₂Sᵀ − log₂e·lse), dV += PᵀdO,
//               dPᵀ = VdOᵀ, dSᵀ = Pᵀ ⊙ (dPᵀ − D), dK += dSᵀQ; dK·s at the end. dS takes P
//               as the bf16 A fragments already built for dV (16 registers instead of 32
//               fp32: at D = 128 that cut ptxas's spills from 148 to 24 bytes).
//     dQ        one of two schemes (bwd_atomic below):
//               dq_pass (default): a second kernel, grid (B·Hq, ⌈Tq/(64·MT)⌉) like the forward,
//                 recomputes S, P, dP per key tile and accumulates dQ = s·Σ dS K in
//                 registers. Deterministic; costs two more products per tile pair (7
//                 instead of 5 m16n8k16 passes over each 64 × 64 block).
//               atomic (FlashAttention-2's): the dK/dV kernel stages dS (bf16) in shared
//                 memory and adds dS K for its 16·KW keys into an f32 dq buffer with
//                 atomicAdd (red.global.add.v2.f32 on sm_90); a last kernel scales and
//                 rounds it to bf16. Fewer products; the sum order, hence the last bits
//                 of dq, change from run to run.
//               Measured (H100, forward + backward through autograd): at D = 64 atomic is
//               1–3% faster (B8 T2048 H12: 0.932 against 0.947 ms; B1 T32768 H12: 24.7
//               against 25.5 ms), at D = 128 18% slower (B4 T4096 H32: 11.4 against
//               9.35 ms; its kernel spills 64 bytes): dq_pass stays the default.
//
// Causality: a key tile that lies wholly at or before every row's limit (k0 + 63 ≤ q0 + off)
// is unmasked; only the one or two tiles on the diagonal compare indices. Keys past Tk only
// ever sit in a diagonal tile for every valid query row (j ≥ Tk > Tq − 1 + off ≥ i + off),
// so the causal mask removes them too; rows past Tq compute on zeros and are never stored.
//
// Measured on an H100 against PyTorch 2.11's FlashAttention backend (bench/bench_attention,
// bf16, causal): forward 236–284 TFLOP/s, 0.86–1.18× of it; forward + backward 190–226
// TFLOP/s, 0.75–1.11×: the gap is at D = 128 and long T. mma.sync only; a wgmma (sm_90a)
// path is the next step for the matrix-bound shapes.
//
// Shared-memory tiles have no padding: row r's 16-byte chunk c lives at chunk c ^ (r & 7)
// (D/8 ≥ 8 chunks a row), so the eight row addresses of each ldmatrix phase, and the
// eight rows a warp's accumulator stores touch, fall in eight distinct bank groups. No
// padding keeps the backward's six 64 × 128 tiles at 96 KiB: two blocks a multiprocessor.
#pragma once
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cuda/math.cuh"
#include "cuda/mma.cuh"
#include "cuda/seq_rows.cuh"
#include "cuda/vec.cuh"

// (an unnamed namespace inside: kernels with internal linkage, as when they lived in the
// .cu, so the .cu and a test that includes this header never define the same symbol)
namespace rn::cuda::attn_tc {
namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kBQ = 64;        // query rows of a strip a warp each (16 a warp): 64·MT a tile
constexpr int kBK = 64;        // keys of a tile
constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------- device helpers
using namespace mma;  // cp.async, ldmatrix, mma.sync wrappers (cuda/mma.cuh)

// Element (r, c) of a swizzled tile of W bf16 columns (W/8 ≥ 8 chunks a row).
template <int W>
__device__ __forceinline__ int swz(int r, int c) {
    static_assert(W % 64 == 0, "a swizzled row needs at least 8 chunks");
    return r * W + ((((c >> 3) ^ (r & 7)) << 3) | (c & 7));
}

// Fragment loads from a swizzled tile of W columns. "mk": A stored [m][k]; "km": A stored
// [k][m]; "nk": B stored [n][k]; "kn": B stored [k][n]. B loads cover n16 × k16: r[0], r[1]
// are (b0, b1) of columns n0..n0+7 and r[2], r[3] those of n0+8..n0+15. Every lane address
// is the start of a 16-byte chunk (m0, n0, k0 multiples of 8).
template <int W>
__device__ __forceinline__ void lda_mk(uint32_t (&a)[4], const bf16_t* s, int m0, int k0, int lane) {
    ldsm_x4(a, s + swz<W>(m0 + (lane & 15), k0 + ((lane >> 4) << 3)));
}
template <int W>
__device__ __forceinline__ void lda_km(uint32_t (&a)[4], const bf16_t* s, int m0, int k0, int lane) {
    ldsm_x4_t(a, s + swz<W>(k0 + (lane & 7) + ((lane >> 4) << 3), m0 + (((lane >> 3) & 1) << 3)));
}
template <int W>
__device__ __forceinline__ void ldb_nk(uint32_t (&b)[4], const bf16_t* s, int n0, int k0, int lane) {
    ldsm_x4(b, s + swz<W>(n0 + (lane & 7) + ((lane >> 4) << 3), k0 + (((lane >> 3) & 1) << 3)));
}
template <int W>
__device__ __forceinline__ void ldb_kn(uint32_t (&b)[4], const bf16_t* s, int n0, int k0, int lane) {
    ldsm_x4_t(b, s + swz<W>(k0 + (lane & 7) + (((lane >> 3) & 1) << 3), n0 + ((lane >> 4) << 3)));
}


// The accumulators of a 16 × 64 strip (8 n-tiles) as the bf16 A fragments of the 4 k steps
// of a product over its 64 columns: n-tiles 2kk and 2kk+1 form k step kk.
__device__ __forceinline__ void to_a_frags(uint32_t (&pa)[4][4], const Acc<8>& s) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

// The two products of the kernels, for MT strips of 16 rows a warp (the forward's and the
// dQ pass's 16·MT rows; one in the dK/dV kernel): every B fragment loaded feeds all MT
// strips. The S = Q Kᵀ shape: acc[mt] (16 × 64) += A_mt · Bᵀ, B stored [n][k];
// a_frag(mt, kk, frag) provides strip mt's A fragment of k step kk.
template <int WB, int KS, int MT, int UNROLL = KS, typename AFrag>
__device__ __forceinline__ void mma_strips_nk(Acc<8> (&acc)[MT], AFrag a_frag, const bf16_t* sb, int lane) {
#pragma unroll UNROLL
    for (int kk = 0; kk < KS; ++kk) {
        uint32_t af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) a_frag(mt, kk, af[mt]);
#pragma unroll
        for (int nb = 0; nb < 4; ++nb) {
            uint32_t b[4];
            ldb_nk<WB>(b, sb, 16 * nb, 16 * kk, lane);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma16816(acc[mt][2 * nb], af[mt], b[0], b[1]);
                mma16816(acc[mt][2 * nb + 1], af[mt], b[2], b[3]);
            }
        }
    }
}
// The O += P V shape: acc[mt] (16 × 16·NB) += pa[mt] (registers, 4 k steps) · B, B stored [k][n]
template <int WB, int NB, int MT>
__device__ __forceinline__ void mma_strips_reg_kn(Acc<2 * NB> (&acc)[MT], const uint32_t (&pa)[MT][4][4],
                                                  const bf16_t* sb, int lane) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
            uint32_t b[4];
            ldb_kn<WB>(b, sb, 16 * nb, 16 * kk, lane);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma16816(acc[mt][2 * nb], pa[mt][kk], b[0], b[1]);
                mma16816(acc[mt][2 * nb + 1], pa[mt][kk], b[2], b[3]);
            }
        }
    }
}
// One strip (the dK/dV kernel's): acc (16 × 64) += A (16 × 16·KS, from shared memory,
// stored [m][k] at rows m0..) · Bᵀ, B stored [n][k]; and acc (16 × 16·NB) += pa · B
template <int WA, int WB, int KS, int UNROLL = KS>
__device__ __forceinline__ void mma_mk_nk(Acc<8>& acc, const bf16_t* sa, int m0, const bf16_t* sb, int lane) {
    mma_strips_nk<WB, KS, 1, UNROLL>(
        reinterpret_cast<Acc<8>(&)[1]>(acc),
        [&](int, int kk, uint32_t(&af)[4]) { lda_mk<WA>(af, sa, m0, 16 * kk, lane); }, sb, lane);
}
template <int WB, int NB>
__device__ __forceinline__ void mma_reg_kn(Acc<2 * NB>& acc, const uint32_t (&pa)[4][4], const bf16_t* sb,
                                           int lane) {
    mma_strips_reg_kn<WB, NB, 1>(reinterpret_cast<Acc<2 * NB>(&)[1]>(acc),
                                 reinterpret_cast<const uint32_t(&)[1][4][4]>(pa), sb, lane);
}

// ROWS × W bf16 rows at g, ld elements apart (ld a multiple of 8), into a swizzled tile, by
// the block's NT threads, asynchronously; rows ≥ rvalid are zero-filled (g stays a valid
// address: rvalid ≥ 1 for every tile loaded).
template <int ROWS, int W, int NT = kThreads>
__device__ __forceinline__ void load_tile(bf16_t* s, const bf16_t* g, int64_t ld, int rvalid, int tid) {
    constexpr int kCpr = W / 8, kPieces = ROWS * kCpr, kRowStep = NT / kCpr;
    static_assert(kPieces % NT == 0 && NT % kCpr == 0, "tile pieces must split evenly over the threads");
    // a thread's pieces share a column and step kRowStep rows: one pointer and one stride,
    // not a precomputed 64-bit offset a piece (which made the strided kernels spill)
    const int r0 = tid / kCpr, c = (tid % kCpr) * 8;
    const bf16_t* p = g + int64_t(r0) * ld + c;
    const int64_t step = kRowStep * ld;
#pragma unroll
    for (int i = 0; i < kPieces / NT; ++i) {
        const int r = r0 + i * kRowStep;
        const bool ok = r < rvalid;
        cp_async16(s + swz<W>(r, c), ok ? p + i * step : g, ok);
    }
}

// A warp's 16 × D strip, scaled by rs[0] (row g) and rs[1] (row g+8), to global bf16 rows
// r < 16 (only rows < rvalid) at g, ld elements apart: staged through the warp's own 16
// rows of the swizzled tile st, then written as 16-byte chunks.
template <int D>
__device__ __forceinline__ void store_strip(bf16_t* g, int64_t ld, bf16_t* st, const Acc<D / 8>& acc,
                                            const float (&rs)[2], int rvalid, int lane) {
    const int r = lane >> 2, c = 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
        *reinterpret_cast<uint32_t*>(st + swz<D>(r, 8 * j + c)) = pack_bf16(acc[j][0] * rs[0], acc[j][1] * rs[0]);
        *reinterpret_cast<uint32_t*>(st + swz<D>(r + 8, 8 * j + c)) = pack_bf16(acc[j][2] * rs[1], acc[j][3] * rs[1]);
    }
    __syncwarp();
    constexpr int kCpr = D / 8, kRowStep = 32 / kCpr;
    const int r0 = lane / kCpr, cc = (lane % kCpr) * 8;  // as load_tile: one pointer, one stride
    bf16_t* p = g + int64_t(r0) * ld + cc;
    const int64_t step = kRowStep * ld;
#pragma unroll
    for (int i = 0; i < 16 * kCpr / 32; ++i) {
        const int rr = r0 + i * kRowStep;
        if (rr < rvalid) *reinterpret_cast<uint4*>(p + i * step) = *reinterpret_cast<const uint4*>(st + swz<D>(rr, cc));
    }
}

// A tensor's rows as a kernel variant sees them. S (strided): where its Rows say. Otherwise
// contiguous [B,H,T,D], every offset a compile-time multiple of D, so the contiguous
// kernels compile to what they were before rows existed (ptxas -v: runtime 64-bit strides
// doubled the forward's spills at D 128, 156 → 312 bytes).
template <bool S, int D>
struct RowsOf {
    const Rows& r;
    __device__ __forceinline__ int64_t at(int bh, int H, int T, int t) const {
        if constexpr (S) return r.at(bh, H, t);
        else return (int64_t(bh) * T + t) * D;
    }
    __device__ __forceinline__ int64_t ld() const {
        if constexpr (S) return r.st;
        else return D;
    }
};

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }

// ---------------------------------------------------------------- forward

struct FwdArgs {
    const bf16_t *q, *k, *v;  // [B,Hq,Tq,D], [B,Hkv,Tk,D] ×2
    bf16_t* out;              // [B,Hq,Tq,D]
    float* lse;               // [B,Hq,Tq]
    Rows rq, rk, rv, ro;      // where the rows of q, k, v, out lie
    int Hq, Hkv, Tq, Tk, nqt;
    float scale, scale_log2;  // s, s·log₂e
};

// shared memory: a Q tile of 64·MT rows, K and V tiles of 64 rows (no double buffer: see
// the loop)
template <int D, int MT>
constexpr int fwd_smem() { return (MT + 2) * 64 * D * 2; }

// MT strips of 16 query rows a warp: strip mt of warp w holds rows q0 + 64·mt + 16w ….
// Every K or V fragment a warp loads from shared memory feeds MT products, so MT = 2 halves
// the shared-memory reads per FLOP (FlashAttention-2 gives each warp 32 rows the same way).
// Q's A fragments stay in registers while they fit (D·MT ≤ 128); else they are reloaded
// from the Q tile at every key tile.
template <int D, int MT, bool S = false>
__global__ void __launch_bounds__(kThreads, D == 64 && MT == 1 ? 3 : 2) attn_fwd_tc(const __grid_constant__ FwdArgs a) {
    constexpr int NTD = D / 8, KSD = D / 16, BQ = kBQ * MT;
    constexpr bool kQreg = D * MT <= 128;
    RN_DYNAMIC_SMEM(smem, 128);
    bf16_t* Qs = reinterpret_cast<bf16_t*>(smem);  // [64·MT q][D]
    bf16_t* Ks = Qs + BQ * D;                       // [64 k][D]
    bf16_t* Vs = Ks + kBK * D;                      // [64 k][D]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int bh = blockIdx.x, b = bh / a.Hq, h = bh % a.Hq, hk = h / (a.Hq / a.Hkv);
    const int qt = a.nqt - 1 - int(blockIdx.y);  // the longest tiles first
    const int q0 = qt * BQ, qvalid = imin(BQ, a.Tq - q0), off = a.Tk - a.Tq;
    // key tiles this query tile needs (its last valid row sees keys ≤ q0 + qvalid − 1 + off),
    // and how many of them need no mask (every key ≤ the first row's limit q0 + off)
    const int nkt = imin((a.Tk + kBK - 1) / kBK, (q0 + qvalid - 1 + off) / kBK + 1);
    const int nfull = imin(nkt, (q0 + off + 1) / kBK);

    const RowsOf<S, D> rq{a.rq}, rk{a.rk}, rv{a.rv}, ro{a.ro};
    const bf16_t* qg = a.q + rq.at(bh, a.Hq, a.Tq, q0);
    const int bhk = b * a.Hkv + hk;
    const bf16_t* kg = a.k + rk.at(bhk, a.Hkv, a.Tk, 0);
    const bf16_t* vg = a.v + rv.at(bhk, a.Hkv, a.Tk, 0);

    load_tile<BQ, D>(Qs, qg, rq.ld(), qvalid, tid);
    load_tile<kBK, D>(Ks, kg, rk.ld(), imin(kBK, a.Tk), tid);
    cp_async_commit();

    uint32_t qf[kQreg ? MT : 1][kQreg ? KSD : 1][4];  // the warp's rows of Q as A fragments
    cp_async_wait<0>();
    __syncthreads();
    if constexpr (kQreg) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int kk = 0; kk < KSD; ++kk) lda_mk<D>(qf[mt][kk], Qs, 64 * mt + 16 * warp, 16 * kk, lane);
    }
    Acc<NTD> o[MT];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        zero(o[mt]);
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.f;
    }
    // query row of e = 0, 1 in strip mt (+8 for e = 2, 3)
    const int rbase = q0 + 16 * warp + (lane >> 2);

    // One buffer each for K and V (FlashAttention-2's pipeline): V_t loads while S = Q K_tᵀ
    // is computed, K_(t+1) while the softmax and O += P V_t are. Smaller than double
    // buffers (48 KiB at D = 128), so more blocks share a multiprocessor.
    for (int t = 0; t < nkt; ++t) {
        const int k0 = t * kBK;
        cp_async_wait<0>();
        __syncthreads();  // K_t landed; every warp is done with V_(t−1)
        load_tile<kBK, D>(Vs, vg + k0 * rv.ld(), rv.ld(), imin(kBK, a.Tk - k0), tid);
        cp_async_commit();
        Acc<8> s[MT];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) zero(s[mt]);
        // Q's fragment: a copy of registers when kQreg (the compiler drops it), else ldmatrix
        mma_strips_nk<D, KSD, MT>(
            s,
            [&](int mt, int kk, uint32_t(&af)[4]) {
                if constexpr (kQreg) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) af[i] = qf[mt][kk][i];
                } else {
                    lda_mk<D>(af, Qs, 64 * mt + 16 * warp, 16 * kk, lane);
                }
            },
            Ks, lane);
        cp_async_wait<0>();
        __syncthreads();  // V_t landed; every warp is done with K_t
        if (t + 1 < nkt) {
            load_tile<kBK, D>(Ks, kg + (k0 + kBK) * rk.ld(), rk.ld(), imin(kBK, a.Tk - k0 - kBK), tid);
            cp_async_commit();
        }
        uint32_t pa[MT][4][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            if (t >= nfull) {  // a diagonal tile: key > row + off is masked
                const int cbase = k0 + 2 * (lane & 3), r = rbase + 64 * mt;
#pragma unroll
                for (int j = 0; j < 8; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (cbase + 8 * j + (e & 1) > r + 8 * (e >> 1) + off) s[mt][j][e] = -INFINITY;
            }
            // online softmax, rows g (hf 0) and g + 8 (hf 1); a row is spread over a quad
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                float mx = m[mt][hf];
#pragma unroll
                for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fmaxf(s[mt][j][2 * hf], s[mt][j][2 * hf + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                // a row with no visible key yet keeps m = −inf; 0 stands in so no inf − inf
                const float mu = mx == -INFINITY ? 0.f : mx;
                const float corr = exp2f((m[mt][hf] - mu) * a.scale_log2), mb = mu * a.scale_log2;
                float sum = 0.f;
#pragma unroll
                for (int j = 0; j < 8; ++j)
#pragma unroll
                    for (int e = 2 * hf; e < 2 * hf + 2; ++e) {
                        const float p = exp2f(fmaf(s[mt][j][e], a.scale_log2, -mb));
                        s[mt][j][e] = p;
                        sum += p;
                    }
                l[mt][hf] = l[mt][hf] * corr + sum;  // the thread's share of the row; the quad adds them at the end
                m[mt][hf] = mx;
#pragma unroll
                for (int j = 0; j < NTD; ++j) {
                    o[mt][j][2 * hf] *= corr;
                    o[mt][j][2 * hf + 1] *= corr;
                }
            }
            to_a_frags(pa[mt], s[mt]);
        }
        mma_strips_reg_kn<D, D / 16, MT>(o, pa, Vs, lane);  // O += P V_t
    }

#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        float rs[2];
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            l[mt][hf] += __shfl_xor_sync(0xffffffffu, l[mt][hf], 1);
            l[mt][hf] += __shfl_xor_sync(0xffffffffu, l[mt][hf], 2);
            rs[hf] = l[mt][hf] > 0.f ? 1.f / l[mt][hf] : 0.f;
        }
        // the warp's own 16 rows of Qs (only it ever read them) stage its output
        const int r0 = 64 * mt + 16 * warp;
        store_strip<D>(a.out + ro.at(bh, a.Hq, a.Tq, q0 + r0), ro.ld(), Qs + r0 * D, o[mt], rs, qvalid - r0, lane);
        if ((lane & 3) == 0) {
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int row = rbase + 64 * mt + 8 * hf;
                if (row < a.Tq) a.lse[int64_t(bh) * a.Tq + row] = m[mt][hf] * a.scale + logf(l[mt][hf]);
            }
        }
    }
}

// ---------------------------------------------------------------- backward

struct BwdArgs {
    const bf16_t *q, *k, *v, *dout;  // [B,Hq,Tq,D], [B,Hkv,Tk,D] ×2, [B,Hq,Tq,D]
    const float *lse, *dvec;         // [B,Hq,Tq]
    bf16_t *dq, *dk, *dv;            // [B,Hq,Tq,D], [B,Hkv,Tk,D] ×2
    float* dq_acc;                   // [B,Hq,Tq,D] (atomic scheme), zeroed, contiguous
    Rows rq, rk, rv, rdo, rdq, rdk, rdv;  // where the rows of q, k, v, dout, dq, dk, dv lie
    int Hq, Hkv, Tq, Tk, nqt;
    float scale, scale_log2;
};

// K, V (16·KW × D each), double-buffered Q, dO (64 × D each), dS (16·KW × 64, atomic
// scheme), lse and D
template <int D, bool kAtomic, int KW = 4>
constexpr int dkdv_smem() { return (2 * 16 * KW + 4 * 64) * D * 2 + (kAtomic ? 16 * KW * 64 * 2 : 0) + 4 * 64 * 4; }

// grid (B·Hkv, ⌈Tk/(16·KW)⌉), KW warps: dK, dV of one key tile of 16·KW keys, summed over
// the G heads of its kv group. Warp w owns keys k0 + 16w … k0 + 16w + 15 (the rows of its
// Sᵀ, dPᵀ, dK, dV strips). KW = 8 (128 keys) loads each Q and dO tile for twice the keys
// and, in the atomic scheme, adds each dQ element once per 128 keys instead of per 64 —
// half the atomics per FLOP (FlashAttention-2 takes 128 × 128 tiles at D 64 for this).
template <int D, bool kAtomic, int KW = 4, bool S = false>
__global__ void __launch_bounds__(32 * KW, KW == 4 ? 2 : 1) attn_bwd_dkdv_tc(const __grid_constant__ BwdArgs a) {
    constexpr int NTD = D / 8, KSD = D / 16, kTile = 64 * D, NT = 32 * KW, BK = 16 * KW;
    constexpr int kBwdUnroll = D == 128 ? 1 : KSD;  // fewer loads hoisted: D = 128 spills less (ptxas -v)
    RN_DYNAMIC_SMEM(smem, 128);
    bf16_t* Ks = reinterpret_cast<bf16_t*>(smem);  // [BK k][D]
    bf16_t* Vs = Ks + BK * D;                       // [BK k][D]
    bf16_t* Qs = Vs + BK * D;                       // [2][64 q][D]
    bf16_t* dOs = Qs + 2 * kTile;                   // [2][64 q][D]
    bf16_t* dSs = dOs + 2 * kTile;                  // [BK k][64 q] (atomic scheme)
    float* lse_s = reinterpret_cast<float*>(dSs + (kAtomic ? BK * 64 : 0));  // [2][64]
    float* dd_s = lse_s + 2 * 64;                                            // [2][64]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int bhk = blockIdx.x, b = bhk / a.Hkv, hk = bhk % a.Hkv, G = a.Hq / a.Hkv;
    const int kt = blockIdx.y, k0 = kt * BK, kvalid = imin(BK, a.Tk - k0), off = a.Tk - a.Tq;
    // the query tiles that see any key of this tile: rows i ≥ k0 − off
    const int qt0 = imax(0, k0 - off) / kBQ, nqh = a.nqt - qt0, total = G * nqh;

    const RowsOf<S, D> rq{a.rq}, rk{a.rk}, rv{a.rv}, rdo{a.rdo}, rdk{a.rdk}, rdv{a.rdv};
    load_tile<BK, D, NT>(Ks, a.k + rk.at(bhk, a.Hkv, a.Tk, k0), rk.ld(), kvalid, tid);
    load_tile<BK, D, NT>(Vs, a.v + rv.at(bhk, a.Hkv, a.Tk, k0), rv.ld(), kvalid, tid);
    auto issue = [&](int it) {
        const int h = hk * G + it / nqh, q0 = (qt0 + it % nqh) * kBQ, qv = imin(kBQ, a.Tq - q0), buf = it & 1;
        const int bh = b * a.Hq + h;
        const int64_t row0 = int64_t(bh) * a.Tq + q0;  // of lse and dvec
        load_tile<kBQ, D, NT>(Qs + buf * kTile, a.q + rq.at(bh, a.Hq, a.Tq, q0), rq.ld(), qv, tid);
        load_tile<kBQ, D, NT>(dOs + buf * kTile, a.dout + rdo.at(bh, a.Hq, a.Tq, q0), rdo.ld(), qv, tid);
        if (tid < kBQ) {
            const bool ok = tid < qv;
            cp_async4(lse_s + buf * 64 + tid, ok ? a.lse + row0 + tid : a.lse, ok);
            cp_async4(dd_s + buf * 64 + tid, ok ? a.dvec + row0 + tid : a.dvec, ok);
        }
    };
    issue(0);
    cp_async_commit();

    Acc<NTD> dk, dv;
    zero(dk);
    zero(dv);
    const int krow = k0 + 16 * warp + (lane >> 2);  // key of e = 0, 1 (+8 for e = 2, 3)
    const int cq = 2 * (lane & 3);
    for (int it = 0; it < total; ++it) {
        if (it + 1 < total) issue(it + 1);
        cp_async_commit();  // possibly empty: "all but the newest group" is then this tile
        cp_async_wait<1>();
        __syncthreads();
        const int buf = it & 1, h = hk * G + it / nqh, q0 = (qt0 + it % nqh) * kBQ;
        const bf16_t* Q = Qs + buf * kTile;
        const bf16_t* dO = dOs + buf * kTile;
        const float* L = lse_s + buf * 64;
        const float* Dd = dd_s + buf * 64;

        // Pᵀ = exp(s·K Qᵀ − lse) (rows keys, columns queries)
        Acc<8> p;
        zero(p);
        mma_mk_nk<D, D, KSD, kBwdUnroll>(p, Ks, 16 * warp, Q, lane);
        const bool diag = q0 + off < k0 + BK - 1;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const float2 lc = *reinterpret_cast<const float2*>(L + 8 * j + cq);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float lse2 = (e & 1 ? lc.y : lc.x) * kLog2e;
                float x = exp2f(fmaf(p[j][e], a.scale_log2, -lse2));
                if (diag && krow + 8 * (e >> 1) > q0 + 8 * j + cq + (e & 1) + off) x = 0.f;
                p[j][e] = x;
            }
        }
        uint32_t pa[4][4];
        to_a_frags(pa, p);
        mma_reg_kn<D, D / 16>(dv, pa, dO, lane);  // dV += Pᵀ dO
        // dSᵀ = Pᵀ ⊙ (V dOᵀ − D)
        Acc<8> ds;
        zero(ds);
        mma_mk_nk<D, D, KSD, kBwdUnroll>(ds, Vs, 16 * warp, dO, lane);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const float2 dc = *reinterpret_cast<const float2*>(Dd + 8 * j + cq);
            __nv_bfloat162 lo, hi;
            memcpy(&lo, &pa[j >> 1][(j & 1) * 2], 4);
            memcpy(&hi, &pa[j >> 1][(j & 1) * 2 + 1], 4);
            const float2 pl = __bfloat1622float2(lo), ph = __bfloat1622float2(hi);
            ds[j][0] = pl.x * (ds[j][0] - dc.x);
            ds[j][1] = pl.y * (ds[j][1] - dc.y);
            ds[j][2] = ph.x * (ds[j][2] - dc.x);
            ds[j][3] = ph.y * (ds[j][3] - dc.y);
        }
        {  // dK += dSᵀ Q
            uint32_t sa[4][4];
            to_a_frags(sa, ds);
            mma_reg_kn<D, D / 16>(dk, sa, Q, lane);
        }
        if constexpr (kAtomic) {
            // dS (all BK keys × 64 queries) through shared memory, stored [key][query]; then
            // warp w adds dQ rows q0 + 16·(w % 4) … (all BK keys of the tile), columns
            // (w / 4)·D·4/KW … of them, into dq_acc
            const int r = 16 * warp + (lane >> 2);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                *reinterpret_cast<uint32_t*>(dSs + swz<64>(r, 8 * j + cq)) = pack_bf16(ds[j][0], ds[j][1]);
                *reinterpret_cast<uint32_t*>(dSs + swz<64>(r + 8, 8 * j + cq)) = pack_bf16(ds[j][2], ds[j][3]);
            }
            __syncthreads();
            constexpr int CW = D * 4 / KW, CC = CW < 64 ? CW : 64;  // a warp's columns; at a time
            // (KW = 4: strip = warp, one column group; spelled so, ptxas emits the code it did
            // before KW existed)
            const int strip = KW == 4 ? warp : warp & 3, cg = KW == 4 ? 0 : warp >> 2;
            const int qrow = q0 + 16 * strip + (lane >> 2);
            float* acc = a.dq_acc + (int64_t(b * a.Hq + h) * a.Tq) * D;
            // CC ≤ 64 columns of dQ at a time: ≤ 32 accumulators beside dK and dV
#pragma unroll 1
            for (int c0 = cg * CW; c0 < cg * CW + CW; c0 += CC) {
                Acc<CC / 8> dq;
                zero(dq);
#pragma unroll
                for (int kk = 0; kk < KW; ++kk) {
                    uint32_t af[4];
                    lda_km<64>(af, dSs, 16 * strip, 16 * kk, lane);  // A[m = query][k = key] = dSs[key][query]
#pragma unroll
                    for (int nb = 0; nb < CC / 16; ++nb) {
                        uint32_t bf[4];
                        ldb_kn<D>(bf, Ks, c0 + 16 * nb, 16 * kk, lane);  // B[k = key][n = d] = K[key][d]
                        mma16816(dq[2 * nb], af, bf[0], bf[1]);
                        mma16816(dq[2 * nb + 1], af, bf[2], bf[3]);
                    }
                }
#pragma unroll
                for (int hf = 0; hf < 2; ++hf) {
                    if (qrow + 8 * hf >= a.Tq) continue;
                    float* rowp = acc + int64_t(qrow + 8 * hf) * D + c0 + cq;
#pragma unroll
                    for (int j = 0; j < CC / 8; ++j) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
                        atomicAdd(reinterpret_cast<float2*>(rowp + 8 * j), make_float2(dq[j][2 * hf], dq[j][2 * hf + 1]));
#else
                        atomicAdd(rowp + 8 * j, dq[j][2 * hf]);
                        atomicAdd(rowp + 8 * j + 1, dq[j][2 * hf + 1]);
#endif
                    }
                }
            }
        }
        __syncthreads();  // this buffer (and dSs) are refilled next
    }

    // K's tile is free now: the warp's own 16 rows stage its dK, V's its dV
    const float sk[2] = {a.scale, a.scale}, one[2] = {1.f, 1.f};
    const int kw0 = k0 + 16 * warp;
    store_strip<D>(a.dk + rdk.at(bhk, a.Hkv, a.Tk, kw0), rdk.ld(), Ks + 16 * warp * D, dk, sk, kvalid - 16 * warp, lane);
    store_strip<D>(a.dv + rdv.at(bhk, a.Hkv, a.Tk, kw0), rdv.ld(), Vs + 16 * warp * D, dv, one, kvalid - 16 * warp,
                   lane);
}

// Q, dO (64·MT × D) and double-buffered K, V (64 × D)
template <int D, int MT>
constexpr int dq_smem() { return (2 * MT + 4) * 64 * D * 2; }

// grid (B·Hq, ⌈Tq/(64·MT)⌉), the longest tiles first: dQ of one query tile (the dq_pass
// scheme). Warp w owns MT strips of 16 query rows, q0 + 64·mt + 16w … (as the forward's);
// per key tile S = Q Kᵀ, P = exp(sS − lse), dP = dO Vᵀ, dS = P ⊙ (dP − D), dQ += dS K,
// each K or V fragment feeding every strip; dQ·s at the end.
template <int D, int MT, bool S = false>
__global__ void __launch_bounds__(kThreads, 2) attn_bwd_dq_tc(const __grid_constant__ BwdArgs a) {
    constexpr int NTD = D / 8, KSD = D / 16, kTile = 64 * D, BQ = kBQ * MT;
    RN_DYNAMIC_SMEM(smem, 128);
    bf16_t* Qs = reinterpret_cast<bf16_t*>(smem);  // [64·MT q][D]
    bf16_t* dOs = Qs + BQ * D;                      // [64·MT q][D]
    bf16_t* Ks = dOs + BQ * D;                      // [2][64 k][D]
    bf16_t* Vs = Ks + 2 * kTile;                    // [2][64 k][D]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int bh = blockIdx.x, b = bh / a.Hq, h = bh % a.Hq, hk = h / (a.Hq / a.Hkv);
    const int qt = a.nqt - 1 - int(blockIdx.y);
    const int q0 = qt * BQ, qvalid = imin(BQ, a.Tq - q0), off = a.Tk - a.Tq;
    const int nkt = imin((a.Tk + kBK - 1) / kBK, (q0 + qvalid - 1 + off) / kBK + 1);
    const int nfull = imin(nkt, (q0 + off + 1) / kBK);

    const int bhk = b * a.Hkv + hk;
    const RowsOf<S, D> rq{a.rq}, rk{a.rk}, rv{a.rv}, rdo{a.rdo}, rdq{a.rdq};
    load_tile<BQ, D>(Qs, a.q + rq.at(bh, a.Hq, a.Tq, q0), rq.ld(), qvalid, tid);
    load_tile<BQ, D>(dOs, a.dout + rdo.at(bh, a.Hq, a.Tq, q0), rdo.ld(), qvalid, tid);
    auto issue = [&](int t) {
        const int k0 = t * kBK, kv = imin(kBK, a.Tk - k0), buf = t & 1;
        load_tile<kBK, D>(Ks + buf * kTile, a.k + rk.at(bhk, a.Hkv, a.Tk, k0), rk.ld(), kv, tid);
        load_tile<kBK, D>(Vs + buf * kTile, a.v + rv.at(bhk, a.Hkv, a.Tk, k0), rv.ld(), kv, tid);
    };
    issue(0);
    cp_async_commit();

    const int rbase = q0 + 16 * warp + (lane >> 2), cq = 2 * (lane & 3);  // strip mt: + 64·mt
    float lse2[MT][2], dd[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            const int row = rbase + 64 * mt + 8 * hf;
            lse2[mt][hf] = row < a.Tq ? a.lse[int64_t(bh) * a.Tq + row] * kLog2e : 0.f;
            dd[mt][hf] = row < a.Tq ? a.dvec[int64_t(bh) * a.Tq + row] : 0.f;
        }
    Acc<NTD> dq[MT];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) zero(dq[mt]);
    // acc[mt] (16 × 64) += strip mt of A (stored [m][k] in sa, D wide) · Bᵀ (stored [n][k])
    // (k steps not unrolled at MT = 2: ptxas then keeps the 64 × 64 S, dP and dQ strips in
    // registers without spilling)
    auto strips_nk = [&](Acc<8>(&acc)[MT], const bf16_t* sa, const bf16_t* sb) {
        mma_strips_nk<D, KSD, MT, MT == 1 ? KSD : 1>(
            acc, [&](int mt, int kk, uint32_t(&af)[4]) { lda_mk<D>(af, sa, 64 * mt + 16 * warp, 16 * kk, lane); },
            sb, lane);
    };
    for (int t = 0; t < nkt; ++t) {
        if (t + 1 < nkt) issue(t + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const int k0 = t * kBK, buf = t & 1;
        const bf16_t* K = Ks + buf * kTile;
        const bf16_t* V = Vs + buf * kTile;
        Acc<8> p[MT];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) zero(p[mt]);
        strips_nk(p, Qs, K);
        const bool diag = t >= nfull;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    float x = exp2f(fmaf(p[mt][j][e], a.scale_log2, -lse2[mt][e >> 1]));
                    if (diag && k0 + 8 * j + cq + (e & 1) > rbase + 64 * mt + 8 * (e >> 1) + off) x = 0.f;
                    p[mt][j][e] = x;
                }
        Acc<8> ds[MT];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) zero(ds[mt]);
        strips_nk(ds, dOs, V);
        uint32_t sa[MT][4][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) ds[mt][j][e] = p[mt][j][e] * (ds[mt][j][e] - dd[mt][e >> 1]);
            to_a_frags(sa[mt], ds[mt]);
        }
        mma_strips_reg_kn<D, D / 16, MT>(dq, sa, K, lane);  // dQ += dS K: B[k = key][n = d] = K[key][d]
        __syncthreads();  // this buffer is refilled next
    }
    const float sq[2] = {a.scale, a.scale};
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        const int r0 = 64 * mt + 16 * warp;  // the warp's own rows of Qs stage its dQ
        store_strip<D>(a.dq + rdq.at(bh, a.Hq, a.Tq, q0 + r0), rdq.ld(), Qs + r0 * D, dq[mt], sq, qvalid - r0, lane);
    }
}

// dq (bf16, its rows where rdq says) = s · dq_acc (f32, contiguous [B,Hq,Tq,D]), 8 elements
// (of one row: D a multiple of 8) a thread and step
__global__ void dq_convert_kernel(bf16_t* __restrict__ dq, Rows rdq, int Hq, int Tq, int D,
                                  const float* __restrict__ acc, int64_t n8, float scale) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n8; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t row = 8 * i / D, col = 8 * i % D;
        const Pack<float, 8> x = load_pack<float, 8>(acc + 8 * i);
        Pack<bf16_t, 8> y;
#pragma unroll
        for (int e = 0; e < 8; ++e) y.v[e] = __float2bfloat16(x.v[e] * scale);
        store_pack(dq + rdq.at(row / Tq, Hq, row % Tq) + col, y);
    }
}

}  // namespace
}  // namespace rn::cuda::attn_tc
