// cuda/retention_tc_kernels.cuh — bf16 chunkwise retention on tensor cores, the device code
// (mma.sync m16n8k16: bf16 operands, fp32 accumulators; sm_80+), forward and backward,
// chunk C = 64. cuda/retention_tc.cu launches these kernels; tests/test_emu_retention_tc.cpp
// runs them on the CPU through tests/cuda_emu/ (CI has no GPU).
//
// Dimension key: B batch, H heads, T tokens, Dk, Dv head dims (multiples of 16, ≤ 512),
// C = 64 the chunk, NC = ⌈T/C⌉ chunks, L ≤ C the length of one chunk (only the last may
// be shorter), t/s local token indices in a chunk. q, k [B,H,T,Dk]; v, out, dout
// [B,H,T,Dv] (bf16); s0, s_final, ds0, ds_final [B,H,Dk,Dv] (fp32); scratch chunk states
// [B,H,NC,Dk,Dv] (bf16). Math: docs/model.md §1 (chunkwise), a_t = γ^(t+1), b_t = γ^(L−1−t),
// Γ_ts = γ^(t−s) (t ≥ s), λ_n = 1/sqrt(Σ_{j≤n} γ^j) at the absolute position n = pos0 + ·.
//
// Organisation (after flash-linear-attention's chunk kernels): a sequential state pass
// that is parallel over (b, h, Dk tile, Dv tile), then passes that are parallel over
// every chunk. Under autograd the two-pass forward hands its chunk states H_c to the
// backward ([B,H,NC,Dk,Dv] bf16, cuda/retention_tc.cu); otherwise (the fused forward, or
// RN_RETENTION_SAVE_STATES=0) the backward makes them again with the same state pass.
//
//   forward, Dk ≤ 128   fused: grid (Dv/64, B·H), H (Dk × 64 fp32) in registers across the
//                       chunks, O_c = λ ⊙ [a ⊙ (Q_c H_c) + ((Q_c K_cᵀ) ⊙ Γ) V_c] then
//                       H ← γ^L H + (b ⊙ K_c)ᵀ V_c; no chunk states in device memory
//   forward, Dk > 128   state pass   H_(c+1) = γ^L H_c + (b ⊙ K_c)ᵀ V_c, every H_c stored
//                                    bf16 (the output pass feeds it to tensor cores); or,
//                                    Dk ≤ 256, the state pass that makes R_c = Q_c H_c itself
//                                    (cuda/retention_tc_state_r.cuh) and stores H_c only when
//                                    the backward keeps them
//                       output pass  O_c as above: one block a chunk (Dk ≤ 256, Dv > 128) or
//                                    grid (Dv/128, NC, B·H)
//   backward            state pass   H_c as above (only when dq is wanted and none were kept)
//                       reverse pass U_(c−1) = γ^L U_c + (a ⊙ Q_c)ᵀ (λ ⊙ dO_c); U_c = ∂L/∂H_(c+1),
//                                    U_(NC−1) = ds_final (or 0), the U left at the end is ds0
//                       dV pass      dV_c = b ⊙ (K_c U_c) + ((K_c Q_cᵀ) ⊙ Γᵀ ⊙ λ_col) dO_c
//                                    (the output pass with the roles of q/k swapped: one kernel)
//                       dQ/dK pass   dS = ((λ ⊙ dO_c) V_cᵀ) ⊙ Γ,   dQ = aλ ⊙ (dO_c H_cᵀ) + dS K_c,
//                                    dK = b ⊙ (V_c U_cᵀ) + dSᵀ Q_c
// Measured times and the versions tried: docs/retention-kernels.md.
//
// Work split: every 64-row tile of an output is split into 16-row strips, one per warp,
// each warp holding fp32 accumulators of 8 columns an mma n-tile. Operands are staged in
// shared memory by cp.async (zero-filled beyond T, Dk, Dv, so partial chunks and tiles need
// no special code in the math), double-buffered over the contraction or chunk loop, and
// read into fragments with ldmatrix (.trans for the operands stored the other way round).
// Tile rows are padded by 8 bf16 (16 bytes), so the 8 row addresses of an ldmatrix fall in
// 8 distinct bank groups.
//
// Decay powers are exp(e·log γ) with 0 ≤ e ≤ 64 only (never γ^(−m)); rows past the end
// of a partial chunk get scale 0, never a negative exponent.
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
namespace rn::cuda::ret_tc {
namespace {

constexpr int kC = 64;                 // chunk length, and the edge of every tile
constexpr int kLd = kC + 8;            // shared-memory row stride of a tile, in bf16
constexpr int kTile = kC * kLd;        // bf16 elements of one tile
constexpr int kTileBytes = kTile * 2;  // 9216
constexpr int kThreads = 128;
constexpr int kMaxHeads = 256;
constexpr int kMaxDim = 512;

// Per-head decay constants, passed by value in the kernel arguments (2 KiB).
struct Decay {
    float lg[kMaxHeads];   // log γ
    float omg[kMaxHeads];  // 1 − γ (from double: exact enough for γ near 1)
};

// ---------------------------------------------------------------- device helpers

using namespace mma;  // cp.async, ldmatrix, mma.sync wrappers (cuda/mma.cuh)

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

// Fragment loads from a tile with row stride ld (bf16 elements). "mk": A stored [m][k];
// "km": A stored [k][m]; "nk": B stored [n][k]; "kn": B stored [k][n]. The B loads cover
// n16 × k16: r[0], r[1] are (b0, b1) of columns n0..n0+7 and r[2], r[3] those of n0+8..n0+15.
// Row strides are ≡ 16 bytes mod 128 (an odd number of 16-byte units), so the 8 row
// addresses of each 8 × 8 matrix fall in 8 distinct bank groups.
__device__ __forceinline__ void lda_mk(uint32_t (&a)[4], const bf16_t* s, int ld, int m0, int k0, int lane) {
    ldsm_x4(a, s + (m0 + (lane & 15)) * ld + k0 + ((lane >> 4) << 3));
}
__device__ __forceinline__ void lda_km(uint32_t (&a)[4], const bf16_t* s, int ld, int m0, int k0, int lane) {
    ldsm_x4_t(a, s + (k0 + (lane & 7) + ((lane >> 4) << 3)) * ld + m0 + (((lane >> 3) & 1) << 3));
}
__device__ __forceinline__ void ldb_nk(uint32_t (&b)[4], const bf16_t* s, int ld, int n0, int k0, int lane) {
    ldsm_x4(b, s + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ld + k0 + (((lane >> 3) & 1) << 3));
}
__device__ __forceinline__ void ldb_kn(uint32_t (&b)[4], const bf16_t* s, int ld, int n0, int k0, int lane) {
    ldsm_x4_t(b, s + (k0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * ld + n0 + ((lane >> 4) << 3));
}

__device__ __forceinline__ uint32_t scale_bf16x2(uint32_t x, float s0, float s1) {
    __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162*>(&x);
    float2 f = __bfloat1622float2(h);
    return pack_bf16(f.x * s0, f.y * s1);
}
// an A fragment whose k index is the token: element (·, k) times w[k]
__device__ __forceinline__ void scale_a_by_k(uint32_t (&a)[4], const float* w, int k0, int lane) {
    const int t = k0 + 2 * (lane & 3);
    const float w0 = w[t], w1 = w[t + 1], w8 = w[t + 8], w9 = w[t + 9];
    a[0] = scale_bf16x2(a[0], w0, w1);
    a[1] = scale_bf16x2(a[1], w0, w1);
    a[2] = scale_bf16x2(a[2], w8, w9);
    a[3] = scale_bf16x2(a[3], w8, w9);
}

// rows g and g+8 of the strip scaled by s_lo and s_hi
template <int NT>
__device__ __forceinline__ void scale_rows(Acc<NT>& a, float s_lo, float s_hi) {
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        a[j][0] *= s_lo;
        a[j][1] *= s_lo;
        a[j][2] *= s_hi;
        a[j][3] *= s_hi;
    }
}

// acc (16 × 16·NB, columns n0 ...) += A (16 × 16, the kk-th k step) · B (k step kk, columns
// n0 ...); B stored [k][n] (kBKN) or [n][k]. Blocks nb outside [nb_lo, nb_hi] are skipped
// (warp-uniform: causal blocks that are all zero).
template <bool kBKN, int NB>
__device__ __forceinline__ void mma_kstep(Acc<2 * NB>& acc, const uint32_t (&a)[4], const bf16_t* sb, int ld, int n0,
                                          int kk, int lane, int nb_lo = 0, int nb_hi = NB - 1) {
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
        if (nb < nb_lo || nb > nb_hi) continue;
        uint32_t b[4];
        if (kBKN) ldb_kn(b, sb, ld, n0 + nb * 16, kk * 16, lane);
        else ldb_nk(b, sb, ld, n0 + nb * 16, kk * 16, lane);
        mma16816(acc[2 * nb], a, b[0], b[1]);
        mma16816(acc[2 * nb + 1], a, b[2], b[3]);
    }
}

// Rows [0, 64) × cols [0, W) of a row-major bf16 matrix (row stride ld, origin g) into
// shared memory (row stride lds), by NTHREADS threads; rows ≥ rvalid or cols ≥ cvalid (a
// multiple of 8) are zero-filled.
template <int W, int NTHREADS>
__device__ __forceinline__ void load_rows(bf16_t* s, int lds, const bf16_t* g, int64_t ld, int rvalid, int cvalid,
                                          int tid) {
    constexpr int kPer = W / 8, kPieces = kC * kPer, kRowStep = NTHREADS / kPer;
    static_assert(kPieces % NTHREADS == 0 && NTHREADS % kPer == 0, "tile pieces must split evenly over the threads");
    // a thread's pieces share a column and step kRowStep rows: one pointer and one stride,
    // not a 64-bit offset a piece (fewer registers held across the unrolled loads)
    const int r0 = tid / kPer, col = (tid % kPer) * 8;
    const bf16_t* p = g + int64_t(r0) * ld + col;
    const int64_t step = kRowStep * ld;
#pragma unroll
    for (int i = 0; i < kPieces / NTHREADS; ++i) {
        const int r = r0 + i * kRowStep;
        const bool ok = r < rvalid && col < cvalid;
        cp_async16(s + r * lds + col, ok ? p + i * step : g, ok);
    }
}
// the common 64 × 64 tile (row stride kLd) by the 128 threads of a 4-warp block
__device__ __forceinline__ void load_tile(bf16_t* s, const bf16_t* g, int64_t ld, int rvalid, int cvalid, int tid) {
    load_rows<kC, kThreads>(s, kLd, g, ld, rvalid, cvalid, tid);
}

// A strip to global bf16 [rows × ld] at origin g: strip row row0 + g (+8), column 8j + 2q;
// only rows < rvalid and columns < cvalid.
template <int NT>
__device__ __forceinline__ void store_strip_bf16(bf16_t* g, int64_t ld, const Acc<NT>& a, int row0, int rvalid,
                                                 int cvalid, int lane) {
    const int r = row0 + (lane >> 2), c = 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const int col = 8 * j + c;
        if (col >= cvalid) continue;
        if (r < rvalid) *reinterpret_cast<uint32_t*>(g + r * ld + col) = pack_bf16(a[j][0], a[j][1]);
        if (r + 8 < rvalid) *reinterpret_cast<uint32_t*>(g + (r + 8) * ld + col) = pack_bf16(a[j][2], a[j][3]);
    }
}
// A strip to a shared-memory bf16 tile (row stride lds) at rows row0 + g (+8), columns col0 + 8j + 2q
template <int NT>
__device__ __forceinline__ void strip_to_smem(bf16_t* s, int lds, const Acc<NT>& a, int row0, int col0, int lane) {
    const int r = row0 + (lane >> 2), c = col0 + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        *reinterpret_cast<uint32_t*>(s + r * lds + c + 8 * j) = pack_bf16(a[j][0], a[j][1]);
        *reinterpret_cast<uint32_t*>(s + (r + 8) * lds + c + 8 * j) = pack_bf16(a[j][2], a[j][3]);
    }
}
// fp32 state strip from/to global [Dk × Dv] at origin g (row stride ld)
template <int NT>
__device__ __forceinline__ void load_strip_f32(Acc<NT>& a, const float* g, int64_t ld, int row0, int rvalid,
                                               int cvalid, int lane) {
    const int r = row0 + (lane >> 2), c = 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            const int row = r + 8 * hf, col = 8 * j + c;
            float2 p = make_float2(0.f, 0.f);
            if (g && row < rvalid && col < cvalid) p = *reinterpret_cast<const float2*>(g + row * ld + col);
            a[j][2 * hf] = p.x;
            a[j][2 * hf + 1] = p.y;
        }
}
template <int NT>
__device__ __forceinline__ void store_strip_f32(float* g, int64_t ld, const Acc<NT>& a, int row0, int rvalid,
                                                int cvalid, int lane) {
    const int r = row0 + (lane >> 2), c = 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const int col = 8 * j + c;
        if (col >= cvalid) continue;
        if (r < rvalid) *reinterpret_cast<float2*>(g + r * ld + col) = make_float2(a[j][0], a[j][1]);
        if (r + 8 < rvalid) *reinterpret_cast<float2*>(g + (r + 8) * ld + col) = make_float2(a[j][2], a[j][3]);
    }
}

__device__ __forceinline__ float lambda_at(float lg, float omg, int64_t n) {
    // λ_n = 1/sqrt(c_n), c_n = (1 − γ^(n+1)) / (1 − γ); expm1 keeps it exact for γ near 1
    return ::sqrtf(omg / -::expm1f(float(n + 1) * lg));
}

// The state update's weight of token t (< L) of chunk c: b_t = γ^(L−1−t) forward, a_t·λ_t
// in reverse; 0 past the chunk's end. Every kernel that updates a state takes it from here,
// so their states agree bit for bit.
template <bool kReverse>
__device__ __forceinline__ float state_weight(float lg, float omg, int64_t pos0, int c, int L, int t) {
    if (t >= L) return 0.f;
    return kReverse ? ::expf(float(t + 1) * lg) * lambda_at(lg, omg, pos0 + int64_t(c) * kC + t)
                    : ::expf(float(L - 1 - t) * lg);
}

// Rows [0, ROWS) × cols [0, W) of a shared-memory bf16 tile (row stride lds) to global (row
// stride ld), 16 bytes a thread and piece, so that every 32-byte sector is written whole;
// rows ≥ rvalid or cols ≥ cvalid are left alone.
template <int ROWS, int W, int NTHREADS>
__device__ __forceinline__ void store_rows(bf16_t* g, int64_t ld, const bf16_t* s, int lds, int rvalid, int cvalid,
                                           int tid) {
    constexpr int kPer = W / 8, kPieces = ROWS * kPer, kRowStep = NTHREADS / kPer;
    static_assert(kPieces % NTHREADS == 0 && NTHREADS % kPer == 0, "tile pieces must split evenly over the threads");
    // as load_rows: a thread's pieces share a column and step kRowStep rows
    const int r0 = tid / kPer, col = (tid % kPer) * 8;
    if (col >= cvalid) return;
    bf16_t* p = g + int64_t(r0) * ld + col;
    const int64_t step = kRowStep * ld;
#pragma unroll
    for (int i = 0; i < kPieces / NTHREADS; ++i) {
        const int r = r0 + i * kRowStep;
        if (r < rvalid) *reinterpret_cast<uint4*>(p + i * step) = *reinterpret_cast<const uint4*>(s + r * lds + col);
    }
}

// ---------------------------------------------------------------- state pass

struct StateArgs {
    const bf16_t* x;   // [BH,T,Dk]  k (forward) or q (reverse)
    const bf16_t* y;   // [BH,T,Dv]  v (forward) or dout (reverse)
    const float* init; // [BH,Dk,Dv] s0 (forward) / ds_final (reverse), or null: zeros
    bf16_t* states;    // [BH,NC,Dk,Dv] H_c (forward) / U_c (reverse), or null
    float* fin;        // [BH,Dk,Dv] s_final (forward) / ds0 (reverse), or null
    Rows rx, ry;       // where x's and y's rows lie
    int H, T, Dk, Dv, NC;
    int64_t pos0;
    Decay d;
};

constexpr int kStateThreads = 256;  // 8 warps: a 64 (Dk) × 128 (Dv) state tile
constexpr int kStateStages = 2;     // chunks of k/v in shared memory (1 in flight while 1 is used)

// grid (⌈Dv/128⌉, ⌈Dk/64⌉, B·H): one 64 × 128 fp32 state tile per block, carried in
// registers over all chunks (forward: c = 0 → NC−1; reverse: NC−1 → 0); warp w holds rows
// 16·(w%4).. of the tile and the 64 columns 64·(w/4).. . Per chunk: store the entering state
// (bf16, staged in shared memory so the global writes are whole 16-byte pieces), then
// S ← γ^L S + (w ⊙ X_c)ᵀ Y_c with the per-token weight w_t = b_t (forward) or a_t λ_t
// (reverse), applied to the A fragments in registers.
//
// The state pass is a chain of NC dependent steps; what bounds it is how many steps run at
// once over the chip and how long one waits for its loads. A block twice as wide as the
// 64 × 64 one halves the number of blocks (fewer waves of the chain) and reads X once per
// 128 columns instead of 64.
//
// MT = 2 makes the tile 128 (Dk) × 128 (Dv), each warp holding two 16-row strips (rows
// 16·(w%4) and 64 + 16·(w%4)): Y is then read once per 128 rows of Dk instead of 64, and
// at B4 T8192 H16 Dk256 Dv512 the 512 blocks fill two waves of two blocks a
// multiprocessor, where the 1024 blocks of the 64-row tile need four (its registers allow
// two blocks a multiprocessor as well). Measured there: 1.16 → 1.13 ms, forward 2.38–2.45
// → 2.32–2.34 ms. Taken where the blocks still fill at least one wave (state_mt): forced
// everywhere it costs the shapes with few (b, h) up to 17 %.
//
// kMinBlocks: blocks a multiprocessor must fit (the launch bound). The 64-row tile takes
// 113–120 registers unbounded, so two blocks a multiprocessor; at 3 ptxas fits it in 80
// (no spills forward, 16 bytes reverse; sm_90 -O3) and its 72.5 KiB of shared memory fit
// three times too: the `small` preset's 384 blocks (B8 H3 Dk256 Dv512) then run in one
// wave of 396 instead of two of 264. The chain's steps are latency-bound, so the lower
// register cap should cost little; RN_RETENTION_TC_STATE_BLOCKS=3 picks it (state_blocks).
// Measured on an H100: +0.6% for `small`'s training step, up to 6% slower fwd+bwd where
// many (b, h) chains fill the chip anyway, so it is not the default
// (docs/retention-kernels.md).
template <bool kReverse, int MT, int kMinBlocks = (MT == 2 ? 2 : 1)>
__global__ void __launch_bounds__(kStateThreads, kMinBlocks) state_pass_kernel(const __grid_constant__ StateArgs a) {
    constexpr int kDkT = kC * MT, kLdX = kDkT + 8, kXT = kC * kLdX, kHT = kDkT * kLd;
    RN_DYNAMIC_SMEM(smem, 16);
    bf16_t* xs = reinterpret_cast<bf16_t*>(smem);  // [stages][64 t][kLdX]       (cols: Dk tile)
    bf16_t* ys = xs + kStateStages * kXT;           // [stages][2][64 t][kLd]     (cols: Dv tile halves)
    bf16_t* hst = ys + 2 * kStateStages * kTile;    // [2][kDkT dk][kLd]          (staging of the state)
    float* wts = reinterpret_cast<float*>(hst + 2 * kHT);  // [stages][64]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int ms = warp & 3, nh = warp >> 2;  // rows 16·ms (+64·mt), columns 64·nh of the tile
    const int v0 = blockIdx.x * 2 * kC, d0 = blockIdx.y * kDkT;
    const int64_t bh = blockIdx.z;
    const int h = int(bh % a.H);
    const float lg = a.d.lg[h], omg = a.d.omg[h];
    const int dvalid = imin(kDkT, a.Dk - d0), vvalid = imin(2 * kC, a.Dv - v0);
    const int vvalid_w = vvalid - kC * nh;  // columns of this warp's half (may be ≤ 0)
    const bf16_t* xg = a.x + a.rx.at(bh, a.H, 0) + d0;
    const bf16_t* yg = a.y + a.ry.at(bh, a.H, 0) + v0;
    const int64_t sbase = bh * a.Dk * a.Dv + int64_t(d0) * a.Dv + v0;  // tile origin in a [Dk,Dv] state

    Acc<8> acc[MT];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
        load_strip_f32<8>(acc[mt], a.init ? a.init + sbase + kC * nh : nullptr, a.Dv, 16 * ms + kC * mt, dvalid,
                          vvalid_w, lane);

    auto chunk_of = [&](int i) { return kReverse ? a.NC - 1 - i : i; };
    auto issue = [&](int i) {
        const int c = chunk_of(i), L = imin(kC, a.T - c * kC), buf = i % kStateStages;
        load_rows<kDkT, kStateThreads>(xs + buf * kXT, kLdX, xg + int64_t(c) * kC * a.rx.st, a.rx.st, L, dvalid, tid);
#pragma unroll
        for (int hf = 0; hf < 2; ++hf)
            load_rows<kC, kStateThreads>(ys + (2 * buf + hf) * kTile, kLd, yg + int64_t(c) * kC * a.ry.st + kC * hf, a.ry.st,
                                         L, vvalid - kC * hf, tid);
        if (tid < kC) wts[buf * kC + tid] = state_weight<kReverse>(lg, omg, a.pos0, c, L, tid);
    };

#pragma unroll
    for (int i = 0; i < kStateStages - 1; ++i) {
        if (i < a.NC) issue(i);
        cp_async_commit();
    }
    for (int i = 0; i < a.NC; ++i) {
        const int c = chunk_of(i), L = imin(kC, a.T - c * kC), buf = i % kStateStages;
        if (i + kStateStages - 1 < a.NC) issue(i + kStateStages - 1);
        cp_async_commit();  // possibly empty: keeps "all but the newest kStateStages − 1 groups" = this chunk
        const float dec = ::expf(float(L) * lg);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            if (a.states) strip_to_smem<8>(hst + nh * kHT, kLd, acc[mt], 16 * ms + kC * mt, 0, lane);  // entering c
            scale_rows<8>(acc[mt], dec, dec);
        }
        cp_async_wait<kStateStages - 1>();
        __syncthreads();
        if (a.states) {  // the staged state → global
            bf16_t* sg = a.states + (bh * a.NC + c) * a.Dk * a.Dv + int64_t(d0) * a.Dv + v0;
#pragma unroll
            for (int hf = 0; hf < 2; ++hf)
                store_rows<kDkT, kC, kStateThreads>(sg + kC * hf, a.Dv, hst + hf * kHT, kLd, dvalid, vvalid - kC * hf, tid);
        }
        const bf16_t* X = xs + buf * kXT;
        const bf16_t* Y = ys + (2 * buf + nh) * kTile;
        const float* w = wts + buf * kC;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            if (16 * kk >= L) continue;
            uint32_t af[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                lda_km(af[mt], X, kLdX, 16 * ms + kC * mt, 16 * kk, lane);  // A[m = dk][k = t] = X[t][dk]
                scale_a_by_k(af[mt], w, 16 * kk, lane);
            }
#pragma unroll
            for (int nb = 0; nb < 4; ++nb) {  // each B fragment once for all m strips
                uint32_t b[4];
                ldb_kn(b, Y, kLd, 16 * nb, 16 * kk, lane);  // B[k = t][n = dv] = Y[t][dv]
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(acc[mt][2 * nb], af[mt], b[0], b[1]);
                    mma16816(acc[mt][2 * nb + 1], af[mt], b[2], b[3]);
                }
            }
        }
        __syncthreads();  // this buffer and the staging tile are refilled by the next iteration
    }

    if (a.fin)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
            store_strip_f32<8>(a.fin + sbase + kC * nh, a.Dv, acc[mt], 16 * ms + kC * mt, dvalid, vvalid_w, lane);
}

// ---------------------------------------------------------------- output pass / dV pass

// Per-chunk constants of the output and dV passes, in shared memory: pw[e] = γ^e; rs
// scales R's rows (a_t forward, b_s dV), fs the result's rows (λ_t forward, 1 dV), cs A's
// columns (1 forward, λ_t of the query column dV).
struct OutScales {
    float pw[kC + 1], rs[kC], fs[kC], cs[kC];

    template <bool kDv, int NTHREADS>
    __device__ __forceinline__ void fill(float lg, float omg, int64_t n0, int L, int tid) {
        for (int e = tid; e <= kC; e += NTHREADS) pw[e] = ::expf(float(e) * lg);
        if (tid < kC) {
            const bool in = tid < L;
            const float lam = in ? lambda_at(lg, omg, n0 + tid) : 0.f;
            if (!kDv) {
                rs[tid] = in ? ::expf(float(tid + 1) * lg) : 0.f;  // a_t
                fs[tid] = lam;                                     // λ_t
                cs[tid] = 1.f;
            } else {
                rs[tid] = in ? ::expf(float(L - 1 - tid) * lg) : 0.f;  // b_s
                fs[tid] = 1.f;
                cs[tid] = lam;  // λ_t of the query column
            }
        }
    }
    // A's strip (rows 16·ms.., all 64 columns) masked by Γ (forward) or Γᵀ ⊙ λ_col (dV), as
    // bf16 A fragments: n-tiles 2kk, 2kk+1 form the k step kk
    template <bool kDv>
    __device__ __forceinline__ void mask(uint32_t (&pa)[4][4], const Acc<8>& acc, int ms, int lane) const {
        const int r = 16 * ms + (lane >> 2), cq = 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            float p[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = r + ((e >> 1) << 3), col = 8 * j + cq + (e & 1);
                float m;
                if (!kDv) m = row >= col ? pw[row - col] : 0.f;
                else m = col >= row ? pw[col - row] * cs[col] : 0.f;
                p[e] = acc[j][e] * m;
            }
            pa[j >> 1][(j & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
            pa[j >> 1][(j & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
        }
    }
    // the strip's result (rows 16·ms.., 64 columns) = (row scale) ⊙ (rs ⊙ R + A' Z), with A' the
    // masked fragments and Z [64 s][ldz] from column col0; stored to g (row stride ld), rows
    // < L and columns < cvalid. R is left scaled: the caller zeroes it if it goes on.
    template <bool kDv>
    __device__ __forceinline__ void finish(Acc<8>& acc, const uint32_t (&pa)[4][4], const bf16_t* Z, int ldz,
                                           int col0, int ms, int L, bf16_t* g, int64_t ld, int cvalid,
                                           int lane) const {
        const int r = 16 * ms + (lane >> 2);
        const int nb_lo = kDv ? ms : 0, nb_hi = kDv ? 3 : ms;  // key / query blocks that can be non-zero
        scale_rows(acc, rs[r], rs[r + 8]);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            if (kk < nb_lo || kk > nb_hi || 16 * kk >= L) continue;
            mma_kstep<true, 4>(acc, pa[kk], Z, ldz, col0, kk, lane);  // B[k = s][n = v] = Z[s][v]
        }
        if (!kDv) scale_rows(acc, fs[r], fs[r + 8]);
        store_strip_bf16(g, ld, acc, 16 * ms, L, cvalid, lane);
    }
};

struct OutArgs {
    const bf16_t* x;  // [BH,T,Dk] q (forward) / k (dV)
    const bf16_t* y;  // [BH,T,Dk] k (forward) / q (dV)
    const bf16_t* s;  // [BH,NC,Dk,Dv] H_c (forward) / U_c (dV)
    const bf16_t* z;  // [BH,T,Dv] v (forward) / dout (dV)
    bf16_t* out;      // [BH,T,Dv] out (forward) / dv (dV)
    Rows rx, ry, rz, ro;  // where the rows of x, y, z and out lie
    int H, T, Dk, Dv, NC;
    int64_t pos0;
    Decay d;
    const bf16_t* r = nullptr;  // [BH,T,Dv] R = X S made by the state pass, contiguous (chunk_out_rows_kernel<·, true>; s unused)
};

// grid (⌈Dv/(64·NW)⌉, NC, B·H): a 64 × 64·NW output tile of one chunk, 4·NW warps; warp w
// owns rows 16·(w%4).. and the 64 columns 64·(w/4).. . Loops over Dk in 64-wide slices
// accumulating A = X Yᵀ (64 × 64) and R = X S (64 × Dv tile), then
//   forward: out = λ_t ⊙ [a_t ⊙ R + (A ⊙ Γ) Z]               rows t queries, cols s keys
//   dV:      out = b_s ⊙ R + (A ⊙ Γᵀ ⊙ λ_col) Z               rows s keys, cols t queries
// A stays in registers: its accumulator fragments are the A fragments of the next product.
// NW = 2 (128-wide Dv tiles) halves how often X and Y are read per output column: with
// 64-wide tiles at Dk 256 / Dv 512 the kernel was bound by L2 throughput (ncu: L2 88 %,
// DRAM 48 %, SM 41 %), X and Y being re-read by all Dv/64 blocks of a chunk. The two warps
// of a row strip both compute that strip of A (tensor-core time is not what binds here).
// Measured (H200, B4 T8192 H16 Dk256 Dv512): forward 2.78 → 2.67 ms, forward+backward
// 9.81 → 9.39 ms against 64-wide tiles.
template <bool kDv, int NW>
__global__ void __launch_bounds__(128 * NW, NW == 2 ? 2 : 3) chunk_out_kernel(const __grid_constant__ OutArgs a) {
    constexpr int kW = kC * NW, kLdW = kW + 8, kNT = 128 * NW;  // tile width, its row stride, threads
    RN_DYNAMIC_SMEM(smem, 16);
    bf16_t* xs = reinterpret_cast<bf16_t*>(smem);  // [2][64 t][kLd] (cols: Dk slice)
    bf16_t* ys = xs + 2 * kTile;                   // [2][64 t][kLd] (cols: Dk slice)
    bf16_t* ss = ys + 2 * kTile;                   // [2][64 dk][kLdW] (cols: Dv tile)
    bf16_t* zs = ss + 2 * kC * kLdW;               // [64 t][kLdW] (cols: Dv tile)
    __shared__ OutScales sc;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int ms = warp & 3, nh = warp >> 2;  // rows 16·ms, columns 64·nh of the tile
    const int v0 = blockIdx.x * kW, c = blockIdx.y;
    const int64_t bh = blockIdx.z;
    const int h = int(bh % a.H);
    const float lg = a.d.lg[h], omg = a.d.omg[h];
    const int L = imin(kC, a.T - c * kC), vvalid = imin(kW, a.Dv - v0);
    const int64_t t0 = int64_t(c) * kC;  // first token of this chunk
    const bf16_t* xg = a.x + a.rx.at(bh, a.H, t0);
    const bf16_t* yg = a.y + a.ry.at(bh, a.H, t0);
    const bf16_t* sg = a.s + (bh * a.NC + c) * a.Dk * a.Dv + v0;
    const bf16_t* zg = a.z + a.rz.at(bh, a.H, t0) + v0;

    sc.fill<kDv, kNT>(lg, omg, a.pos0 + int64_t(c) * kC, L, tid);

    const int nsl = (a.Dk + kC - 1) / kC;
    auto issue = [&](int i) {
        const int k0 = i * kC, kw = imin(kC, a.Dk - k0), buf = i & 1;
        load_rows<kC, kNT>(xs + buf * kTile, kLd, xg + k0, a.rx.st, L, kw, tid);
        load_rows<kC, kNT>(ys + buf * kTile, kLd, yg + k0, a.ry.st, L, kw, tid);
        load_rows<kW, kNT>(ss + buf * kC * kLdW, kLdW, sg + int64_t(k0) * a.Dv, a.Dv, kw, vvalid, tid);
    };
    issue(0);
    load_rows<kW, kNT>(zs, kLdW, zg, a.rz.st, L, vvalid, tid);
    cp_async_commit();

    // causal structure: forward rows t of strip ms need key blocks nb ≤ ms; dV rows s need
    // query blocks nb ≥ ms. Blocks outside are exactly zero after the mask: skip them.
    const int nb_lo = kDv ? ms : 0, nb_hi = kDv ? 3 : ms;
    Acc<8> accA, accR;
    zero(accA);
    zero(accR);
    for (int i = 0; i < nsl; ++i) {
        const int kw = imin(kC, a.Dk - i * kC), buf = i & 1;
        if (i + 1 < nsl) issue(i + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16_t* X = xs + buf * kTile;
        const bf16_t* Y = ys + buf * kTile;
        const bf16_t* S = ss + buf * kC * kLdW;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            if (16 * kk >= kw) continue;
            uint32_t af[4];
            lda_mk(af, X, kLd, 16 * ms, 16 * kk, lane);                      // A[m = t][k = d] = X[t][d]
            mma_kstep<false, 4>(accA, af, Y, kLd, 0, kk, lane, nb_lo, nb_hi);  // B[k = d][n = s] = Y[s][d]
            mma_kstep<true, 4>(accR, af, S, kLdW, kC * nh, kk, lane);         // B[k = d][n = v] = S[d][v]
        }
        __syncthreads();
    }

    uint32_t pa[4][4];
    sc.mask<kDv>(pa, accA, ms, lane);
    sc.finish<kDv>(accR, pa, zs, kLdW, kC * nh, ms, L, a.out + a.ro.at(bh, a.H, t0) + v0 + kC * nh, a.ro.st,
                   vvalid - kC * nh, lane);
}

// The same product for a whole chunk in one block (Dk ≤ 256, Dv > 128): grid (NC, B·H),
// 8 warps. X and Y are read once for all of Dv instead of once per 128-wide Dv tile, and
// the masked A is computed once: it stays in registers (as bf16 A fragments) while the
// block walks the Dv tiles one after another, streaming S in 64-row slices:
//   phase 1  X, Y (all Dk) and Z's first tile → shared memory; A = X Yᵀ; mask → fragments
//   phase 2  for each Dv tile j, for each Dk slice: R += X[:, slice] S[slice, tile j];
//            after the last slice out_j = (row scale) ⊙ (rs ⊙ R + A' Z_j)
// Y's place is reused for the S slices once A is known, so the block needs 101 KiB: two
// blocks a multiprocessor, as the tiled kernel. With 128-wide tiles at Dk 256 / Dv 512
// the tiled kernel read X and Y four times a chunk and was L2-bound (84 %).
constexpr int kRowsDk = 256;                    // widest Dk held whole
constexpr int kLdQ = kRowsDk + 8;               // row stride of the whole-Dk X and Y tiles
constexpr int kLdR = 2 * kC + 8;                // row stride of a 128-wide S slice or Z tile
constexpr int kSlice = kC * kLdR;               // bf16 elements of one S slice / Z tile
static_assert(2 * kSlice >= kC * kLdQ, "two S slices must fit where Y was");
constexpr size_t kRowsSmem = (size_t(kC) * kLdQ + 4 * size_t(kSlice)) * 2;

// kReadR: R = X S (Q_c H_c forward, K_c U_c for dV) comes made, from state_r_pass_kernel
// (cuda/retention_tc_state_r.cuh), so phase 2 only loads each Dv tile's R rows where the S
// slices went, instead of streaming S and multiplying.
template <bool kDv, bool kReadR = false>
__global__ void __launch_bounds__(256, 2) chunk_out_rows_kernel(const __grid_constant__ OutArgs a) {
    constexpr int kNT = 256, kW = 2 * kC;
    RN_DYNAMIC_SMEM(smem, 16);
    bf16_t* xs = reinterpret_cast<bf16_t*>(smem);  // [64 t][kLdQ]          (cols: Dk)
    bf16_t* ys = xs + kC * kLdQ;                    // [64 s][kLdQ]          (cols: Dk), phase 1
    bf16_t* ss = ys;                                // [2][64 dk][kLdR]      (cols: Dv tile), phase 2
    bf16_t* zs = ss + 2 * kSlice;                   // [2][64 s][kLdR]       (cols: Dv tile)
    __shared__ OutScales sc;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int ms = warp & 3, nh = warp >> 2;  // rows 16·ms, columns 64·nh of each Dv tile
    const int c = blockIdx.x;
    const int64_t bh = blockIdx.y;
    const int h = int(bh % a.H);
    const float lg = a.d.lg[h], omg = a.d.omg[h];
    const int L = imin(kC, a.T - c * kC);
    const int64_t t0 = int64_t(c) * kC;  // first token of this chunk
    const bf16_t* sg = kReadR ? nullptr : a.s + (bh * a.NC + c) * a.Dk * a.Dv;
    const bf16_t* zg = a.z + a.rz.at(bh, a.H, t0);

    sc.fill<kDv, kNT>(lg, omg, a.pos0 + int64_t(c) * kC, L, tid);

    // phase 1: A = X Yᵀ over all of Dk
    load_rows<kRowsDk, kNT>(xs, kLdQ, a.x + a.rx.at(bh, a.H, t0), a.rx.st, L, a.Dk, tid);
    load_rows<kRowsDk, kNT>(ys, kLdQ, a.y + a.ry.at(bh, a.H, t0), a.ry.st, L, a.Dk, tid);
    load_rows<kW, kNT>(zs, kLdR, zg, a.rz.st, L, imin(kW, a.Dv), tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    const int nb_lo = kDv ? ms : 0, nb_hi = kDv ? 3 : ms;  // key / query blocks that can be non-zero
    const int ksteps = (a.Dk + 15) / 16;
    uint32_t pa[4][4];  // masked A of the strip, bf16 A fragments of k step kk
    {
        Acc<8> accA;
        zero(accA);
#pragma unroll
        for (int kk = 0; kk < kRowsDk / 16; ++kk) {
            if (kk >= ksteps) continue;
            uint32_t af[4];
            lda_mk(af, xs, kLdQ, 16 * ms, 16 * kk, lane);                      // A[m = t][k = d] = X[t][d]
            mma_kstep<false, 4>(accA, af, ys, kLdQ, 0, kk, lane, nb_lo, nb_hi);  // B[k = d][n = s] = Y[s][d]
        }
        sc.mask<kDv>(pa, accA, ms, lane);
    }
    __syncthreads();  // Y's place now takes the S slices

    // phase 2: stage i = (Dv tile j, Dk slice sl); with kReadR one stage a tile, its R rows
    const int nsl = kReadR ? 1 : (a.Dk + kC - 1) / kC, ntiles = (a.Dv + kW - 1) / kW, nst = nsl * ntiles;
    auto issue = [&](int i) {
        const int j = i / nsl, sl = i % nsl, k0 = sl * kC, v0 = j * kW;
        const int kw = imin(kC, a.Dk - k0), vw = imin(kW, a.Dv - v0);
        if (kReadR)
            load_rows<kW, kNT>(ss + (i & 1) * kSlice, kLdR, a.r + (bh * a.T + t0) * a.Dv + v0, a.Dv, L, vw, tid);
        else
            load_rows<kW, kNT>(ss + (i & 1) * kSlice, kLdR, sg + int64_t(k0) * a.Dv + v0, a.Dv, kw, vw, tid);
        if (sl == 0 && j > 0) load_rows<kW, kNT>(zs + (j & 1) * kSlice, kLdR, zg + v0, a.rz.st, L, vw, tid);
    };
    issue(0);
    cp_async_commit();
    Acc<8> accR;
    zero(accR);
    for (int i = 0; i < nst; ++i) {
        const int j = i / nsl, sl = i % nsl, k0 = sl * kC, kw = imin(kC, a.Dk - k0);
        if (i + 1 < nst) issue(i + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16_t* S = ss + (i & 1) * kSlice;
        if (kReadR) {  // the strip's R: rows 16·ms + g (+8), columns 64·nh + 8j + 2q
            const bf16_t* rp = S + (16 * ms + (lane >> 2)) * kLdR + kC * nh + 2 * (lane & 3);
#pragma unroll
            for (int jn = 0; jn < 8; ++jn) {
                const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(rp + 8 * jn));
                const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(rp + 8 * kLdR + 8 * jn));
                accR[jn][0] = lo.x;
                accR[jn][1] = lo.y;
                accR[jn][2] = hi.x;
                accR[jn][3] = hi.y;
            }
        } else {
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                if (16 * kk >= kw) continue;
                uint32_t af[4];
                lda_mk(af, xs, kLdQ, 16 * ms, k0 + 16 * kk, lane);         // A[m = t][k = d] = X[t][k0 + d]
                mma_kstep<true, 4>(accR, af, S, kLdR, kC * nh, kk, lane);  // B[k = d][n = v] = S[k0 + d][v]
            }
        }
        if (sl == nsl - 1) {  // tile j complete: out_j = (row scale) ⊙ (rs ⊙ R + A' Z_j)
            const int v0 = j * kW, vw = imin(kW, a.Dv - v0);
            sc.finish<kDv>(accR, pa, zs + (j & 1) * kSlice, kLdR, kC * nh, ms, L,
                           a.out + a.ro.at(bh, a.H, t0) + v0 + kC * nh, a.ro.st, vw - kC * nh, lane);
            zero(accR);
        }
        __syncthreads();  // this S buffer (and, after a tile, its Z buffer) is refilled next
    }
}

// ---------------------------------------------------------------- fused forward (Dk ≤ 256)

struct FusedArgs {
    const bf16_t *q, *k;  // [BH,T,Dk]
    const bf16_t* v;      // [BH,T,Dv]
    const float* s0;      // [BH,Dk,Dv] or null
    bf16_t* out;          // [BH,T,Dv]
    float* s_final;       // [BH,Dk,Dv] or null
    Rows rq, rk, rv, ro;  // where the rows of q, k, v and out lie
    int H, T, Dk, Dv, NC;
    int64_t pos0;
    Decay d;
    bf16_t* states = nullptr;  // [BH,NC,Dk,Dv] H_c for the backward to keep, or null
};

constexpr int kFusedThreads = 256;  // 8 warps

template <int MT>
constexpr size_t fused_smem_bytes() {
    // Q, K tiles [2 stages][64][128·MT + 8], V tiles [2][64][kLd], H_c / P [128·MT][kLd], λ [2][64]
    return (4 * size_t(kC) * (128 * MT + 8) + 2 * size_t(kTile) + size_t(128 * MT) * kLd) * 2 + 2 * kC * sizeof(float);
}

// grid (⌈Dv/64⌉, B·H): the whole forward for one 64-wide Dv tile of one (b, h), the state
// H (Dk × 64, fp32) in registers across the chunks, so H_c never goes to device memory.
// Warp w owns state rows 16·MT·w .. (Dk ≤ 128·MT) and the output strip rows 16·(w%4),
// columns 32·(w/4). Per chunk c (loads of chunk c+1 in flight meanwhile):
//   H_c → shared memory (bf16); S = Q_c K_cᵀ and R = Q_c H_c for the warp's strip;
//   P = S ⊙ Γ → shared memory (over H_c's place); H ← γ^L H + (b ⊙ K_c)ᵀ V_c (registers);
//   O = λ ⊙ (a ⊙ R + P V_c) → out.
// With `states` it also stores each staged H_c, for a backward that keeps them (the state
// update is state_pass_kernel's per element, so they are that pass's bits).
// MT = 1 serves Dk ≤ 128 (107 KiB of shared memory: two blocks a multiprocessor). MT = 2
// (Dk ≤ 256, 187 KiB, one block) works and was measured, but lost to the two passes at
// shapes of 64+ (b, h) chains; it is dispatched only on request (RN_RETENTION_TC_FUSED=256,
// see retention_chunkwise_tc_forward).
template <int MT>
__global__ void __launch_bounds__(kFusedThreads) fused_fwd_kernel(const __grid_constant__ FusedArgs a) {
    constexpr int KW = 128 * MT, LK = KW + 8, kQK = kC * LK;
    RN_DYNAMIC_SMEM(smem, 16);
    bf16_t* qs = reinterpret_cast<bf16_t*>(smem);  // [2][64 t][LK]   (cols: Dk)
    bf16_t* ks = qs + 2 * kQK;                      // [2][64 s][LK]   (cols: Dk)
    bf16_t* vs = ks + 2 * kQK;                      // [2][64 s][kLd]  (cols: Dv tile)
    bf16_t* hs = vs + 2 * kTile;                    // [KW dk][kLd] H_c; later [64 t][kLd] P
    float* lam = reinterpret_cast<float*>(hs + KW * kLd);  // [2][64] λ of the chunk's tokens
    __shared__ float pw[kC + 1];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int ms = warp & 3, nh = warp >> 2;  // output strip: rows 16·ms, columns 32·nh
    const int sr0 = warp * 16 * MT;           // first state row of this warp
    const int v0 = blockIdx.x * kC;
    const int64_t bh = blockIdx.y;
    const int h = int(bh % a.H);
    const float lg = a.d.lg[h], omg = a.d.omg[h];
    const int vvalid = imin(kC, a.Dv - v0);
    const int r = lane >> 2, cq = 2 * (lane & 3);
    const int64_t sbase = bh * a.Dk * a.Dv + v0;

    for (int e = tid; e <= kC; e += kFusedThreads) pw[e] = ::expf(float(e) * lg);

    Acc<8> hreg[MT];  // the state, fp32
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
        load_strip_f32<8>(hreg[mt], a.s0 ? a.s0 + sbase : nullptr, a.Dv, sr0 + 16 * mt, a.Dk, vvalid, lane);

    auto issue = [&](int c) {
        const int L = imin(kC, a.T - c * kC), buf = c & 1;
        const int64_t t0 = int64_t(c) * kC;
        load_rows<KW, kFusedThreads>(qs + buf * kQK, LK, a.q + a.rq.at(bh, a.H, t0), a.rq.st, L, a.Dk, tid);
        load_rows<KW, kFusedThreads>(ks + buf * kQK, LK, a.k + a.rk.at(bh, a.H, t0), a.rk.st, L, a.Dk, tid);
        load_rows<kC, kFusedThreads>(vs + buf * kTile, kLd, a.v + a.rv.at(bh, a.H, t0) + v0, a.rv.st, L, vvalid, tid);
        if (tid < kC) lam[buf * kC + tid] = tid < L ? lambda_at(lg, omg, a.pos0 + int64_t(c) * kC + tid) : 0.f;
    };

    issue(0);
    cp_async_commit();
    const int ksteps = (a.Dk + 15) / 16;
    for (int c = 0; c < a.NC; ++c) {
        const int L = imin(kC, a.T - c * kC), buf = c & 1;
        if (c + 1 < a.NC) issue(c + 1);
        cp_async_commit();
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) strip_to_smem<8>(hs, kLd, hreg[mt], sr0 + 16 * mt, 0, lane);  // H_c
        cp_async_wait<1>();
        __syncthreads();  // [A] chunk c's tiles and H_c are in shared memory
        if (a.states)  // H_c → global for the backward
            store_rows<KW, kC, kFusedThreads>(a.states + (bh * a.NC + c) * a.Dk * a.Dv + v0, a.Dv, hs, kLd, a.Dk, vvalid,
                                              tid);

        const bf16_t* Q = qs + buf * kQK;
        const bf16_t* K = ks + buf * kQK;
        const bf16_t* V = vs + buf * kTile;
        // S = Q Kᵀ (key blocks ≤ the strip's row block only) and R = Q H_c, over Dk
        Acc<4> accS, accR;
        zero(accS);
        zero(accR);
        const int nb_hi = ms - 2 * nh;  // last 16-column key block at or below the diagonal
#pragma unroll
        for (int kk = 0; kk < KW / 16; ++kk) {
            if (kk >= ksteps) continue;
            uint32_t af[4];
            lda_mk(af, Q, LK, 16 * ms, 16 * kk, lane);                      // A[m = t][k = d]
            if (nb_hi >= 0) mma_kstep<false, 2>(accS, af, K, LK, 32 * nh, kk, lane, 0, nb_hi);  // B = K[s][d]
            mma_kstep<true, 2>(accR, af, hs, kLd, 32 * nh, kk, lane);       // B = H_c[d][v]
        }
        __syncthreads();  // [B] everyone is done with H_c: its place takes P

        // P = S ⊙ Γ (rows t, columns s; zero above the diagonal) → shared memory
        Acc<4> p;
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = 16 * ms + r + ((e >> 1) << 3), col = 32 * nh + 8 * j + cq + (e & 1);
                p[j][e] = row >= col ? accS[j][e] * pw[row - col] : 0.f;
            }
        strip_to_smem<4>(hs, kLd, p, 16 * ms, 32 * nh, lane);

        // H ← γ^L H + (b ⊙ K)ᵀ V, b_t = γ^(L−1−t) (0 past the chunk's end)
        {
            const float dec = pw[L];
            float bw[4][4];  // b at this lane's token columns of each k step
#pragma unroll
            for (int kk = 0; kk < 4; ++kk)
#pragma unroll
                for (int u = 0; u < 4; ++u) {
                    const int t = 16 * kk + cq + (u & 1) + ((u >> 1) << 3);
                    bw[kk][u] = t < L ? pw[L - 1 - t] : 0.f;
                }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                scale_rows<8>(hreg[mt], dec, dec);
                if (sr0 + 16 * mt >= a.Dk) continue;  // rows past Dk stay zero
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) {
                    if (16 * kk >= L) continue;
                    uint32_t af[4];
                    lda_km(af, K, LK, sr0 + 16 * mt, 16 * kk, lane);  // A[m = dk][k = t] = K[t][dk]
                    af[0] = scale_bf16x2(af[0], bw[kk][0], bw[kk][1]);
                    af[1] = scale_bf16x2(af[1], bw[kk][0], bw[kk][1]);
                    af[2] = scale_bf16x2(af[2], bw[kk][2], bw[kk][3]);
                    af[3] = scale_bf16x2(af[3], bw[kk][2], bw[kk][3]);
                    mma_kstep<true, 4>(hreg[mt], af, V, kLd, 0, kk, lane);  // B[k = t][n = v] = V[t][v]
                }
            }
        }
        __syncthreads();  // [C] P is complete

        // O = λ ⊙ (a ⊙ R + P V), a_t = γ^(t+1)
        const int t0 = 16 * ms + r;
        scale_rows<4>(accR, pw[t0 + 1], pw[t0 + 9]);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            if (kk > ms || 16 * kk >= L) continue;  // P[t][s] = 0 for s > t
            uint32_t af[4];
            lda_mk(af, hs, kLd, 16 * ms, 16 * kk, lane);                // A[m = t][k = s] = P[t][s]
            mma_kstep<true, 2>(accR, af, V, kLd, 32 * nh, kk, lane);    // B[k = s][n = v] = V[s][v]
        }
        scale_rows<4>(accR, lam[buf * kC + t0], lam[buf * kC + t0 + 8]);
        store_strip_bf16<4>(a.out + a.ro.at(bh, a.H, int64_t(c) * kC) + v0 + 32 * nh, a.ro.st, accR, 16 * ms, L,
                            vvalid - 32 * nh, lane);
        __syncthreads();  // [D] the next chunk's loads and H_c go where this chunk's were
    }

    if (a.s_final)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
            store_strip_f32<8>(a.s_final + sbase, a.Dv, hreg[mt], sr0 + 16 * mt, a.Dk, vvalid, lane);
}

// ---------------------------------------------------------------- dQ / dK pass

struct DqkArgs {
    const bf16_t *q, *k;   // [BH,T,Dk]
    const bf16_t *v, *dout;// [BH,T,Dv]
    const bf16_t* hs;      // [BH,NC,Dk,Dv] H_c, or null when dq is not wanted
    const bf16_t* us;      // [BH,NC,Dk,Dv] U_c, or null when dk is not wanted
    bf16_t *dq, *dk;       // [BH,T,Dk], either may be null
    Rows rq, rk, rv, rdo, rdq, rdk;  // where the rows of each lie
    int H, T, Dk, Dv, NC;
    int64_t pos0;
    Decay d;
};

// grid (⌈Dk/64⌉, NC, B·H): dq and dk of one chunk and one 64-wide Dk tile. Loops over Dv in
// 64-wide slices accumulating dS' = dO Vᵀ, dQ' = dO Hᵀ and dK' = V Uᵀ, then
//   dS = dS' ⊙ Γ ⊙ λ_row (to shared memory, bf16), dQ = aλ ⊙ dQ' + dS K, dK = b ⊙ dK' + dSᵀ Q.
__global__ void __launch_bounds__(kThreads) chunk_dqk_kernel(const __grid_constant__ DqkArgs a) {
    RN_DYNAMIC_SMEM(smem, 16);
    bf16_t* dos = reinterpret_cast<bf16_t*>(smem);  // [2][64 t][kLd]  (cols: Dv slice)
    bf16_t* vs = dos + 2 * kTile;                   // [2][64 s][kLd]  (cols: Dv slice)
    bf16_t* hsm = vs + 2 * kTile;                   // [2][64 dk][kLd] (cols: Dv slice)
    bf16_t* usm = hsm + 2 * kTile;                  // [2][64 dk][kLd] (cols: Dv slice)
    bf16_t* qs = usm + 2 * kTile;                   // [64 t][kLd]     (cols: Dk tile)
    bf16_t* ks = qs + kTile;                        // [64 s][kLd]     (cols: Dk tile)
    bf16_t* dss = ks + kTile;                       // [64 t][kLd]     (cols: s)
    __shared__ float pw[kC + 1], rq[kC], rk[kC], lam[kC];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int d0 = blockIdx.x * kC, c = blockIdx.y;
    const int64_t bh = blockIdx.z;
    const int h = int(bh % a.H);
    const float lg = a.d.lg[h], omg = a.d.omg[h];
    const int L = imin(kC, a.T - c * kC), dvalid = imin(kC, a.Dk - d0);
    const bool want_dq = a.dq != nullptr, want_dk = a.dk != nullptr;
    const int64_t t0 = int64_t(c) * kC;  // first token of this chunk
    const bf16_t* dog = a.dout + a.rdo.at(bh, a.H, t0);
    const bf16_t* vg = a.v + a.rv.at(bh, a.H, t0);
    const int64_t st0 = ((bh * a.NC + c) * a.Dk + d0) * a.Dv;  // this Dk tile of state c

    for (int e = tid; e <= kC; e += kThreads) pw[e] = ::expf(float(e) * lg);
    if (tid < kC) {
        const bool in = tid < L;
        const float l = in ? lambda_at(lg, omg, a.pos0 + int64_t(c) * kC + tid) : 0.f;
        lam[tid] = l;
        rq[tid] = in ? ::expf(float(tid + 1) * lg) * l : 0.f;  // a_t λ_t
        rk[tid] = in ? ::expf(float(L - 1 - tid) * lg) : 0.f;  // b_s
    }

    const int nsl = (a.Dv + kC - 1) / kC;
    auto issue = [&](int i) {
        const int v0 = i * kC, vw = imin(kC, a.Dv - v0), buf = i & 1;
        load_tile(dos + buf * kTile, dog + v0, a.rdo.st, L, vw, tid);
        load_tile(vs + buf * kTile, vg + v0, a.rv.st, L, vw, tid);
        if (want_dq) load_tile(hsm + buf * kTile, a.hs + st0 + v0, a.Dv, dvalid, vw, tid);
        if (want_dk) load_tile(usm + buf * kTile, a.us + st0 + v0, a.Dv, dvalid, vw, tid);
    };
    issue(0);
    load_tile(qs, a.q + a.rq.at(bh, a.H, t0) + d0, a.rq.st, L, dvalid, tid);
    load_tile(ks, a.k + a.rk.at(bh, a.H, t0) + d0, a.rk.st, L, dvalid, tid);
    cp_async_commit();

    Acc<8> accS, accQ, accK;
    zero(accS);
    zero(accQ);
    zero(accK);
    for (int i = 0; i < nsl; ++i) {
        const int vw = imin(kC, a.Dv - i * kC), buf = i & 1;
        if (i + 1 < nsl) issue(i + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16_t* DO = dos + buf * kTile;
        const bf16_t* V = vs + buf * kTile;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            if (16 * kk >= vw) continue;
            uint32_t af[4];
            lda_mk(af, DO, kLd, 16 * warp, 16 * kk, lane);                // A[m = t][k = v] = dO[t][v]
            mma_kstep<false, 4>(accS, af, V, kLd, 0, kk, lane, 0, warp);  // B[k = v][n = s] = V[s][v]
            if (want_dq) mma_kstep<false, 4>(accQ, af, hsm + buf * kTile, kLd, 0, kk, lane);  // B = H[dk][v]
            if (want_dk) {
                lda_mk(af, V, kLd, 16 * warp, 16 * kk, lane);             // A[m = s][k = v] = V[s][v]
                mma_kstep<false, 4>(accK, af, usm + buf * kTile, kLd, 0, kk, lane);  // B = U[dk][v]
            }
        }
        __syncthreads();
    }

    // dS (rows t, cols s) to shared memory as bf16
    const int r = 16 * warp + (lane >> 2), cq = 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        float p[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int row = r + ((e >> 1) << 3), col = 8 * j + cq + (e & 1);
            p[e] = row >= col ? accS[j][e] * pw[row - col] * lam[row] : 0.f;
        }
        *reinterpret_cast<uint32_t*>(dss + r * kLd + 8 * j + cq) = pack_bf16(p[0], p[1]);
        *reinterpret_cast<uint32_t*>(dss + (r + 8) * kLd + 8 * j + cq) = pack_bf16(p[2], p[3]);
    }
    scale_rows(accQ, rq[r], rq[r + 8]);
    scale_rows(accK, rk[r], rk[r + 8]);
    __syncthreads();

#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        if (16 * kk >= L) continue;
        uint32_t af[4];
        if (want_dq && kk <= warp) {  // dQ[t][·] += Σ_{s ≤ t} dS[t][s] K[s][·]
            lda_mk(af, dss, kLd, 16 * warp, 16 * kk, lane);
            mma_kstep<true, 4>(accQ, af, ks, kLd, 0, kk, lane);
        }
        if (want_dk && kk >= warp) {  // dK[s][·] += Σ_{t ≥ s} dS[t][s] Q[t][·]
            lda_km(af, dss, kLd, 16 * warp, 16 * kk, lane);
            mma_kstep<true, 4>(accK, af, qs, kLd, 0, kk, lane);
        }
    }
    if (want_dq) store_strip_bf16(a.dq + a.rdq.at(bh, a.H, t0) + d0, a.rdq.st, accQ, 16 * warp, L, dvalid, lane);
    if (want_dk) store_strip_bf16(a.dk + a.rdk.at(bh, a.H, t0) + d0, a.rdk.st, accK, 16 * warp, L, dvalid, lane);
}

// ---------------------------------------------------------------- shared memory a launch

// X stages [stages][64][64·MT + 8], Y stages [stages][2][64][kLd], staging [2][64·MT][kLd], weights
template <int MT>
constexpr size_t state_smem_bytes() {
    return (size_t(kStateStages) * kC * (kC * MT + 8) + 2 * kStateStages * size_t(kTile) + 2 * size_t(kC * MT) * kLd) *
               2 +
           kStateStages * kC * sizeof(float);
}
// Q/K slices [2][64][kLd] each, then H slices [2] and V, each 64 rows of 64·NW + 8
template <int NW>
constexpr size_t out_smem_bytes() { return 4 * size_t(kTileBytes) + 3 * size_t(kC) * (kC * NW + 8) * 2; }
constexpr size_t kDqkSmem = 11 * size_t(kTileBytes);

}  // namespace
}  // namespace rn::cuda::ret_tc
