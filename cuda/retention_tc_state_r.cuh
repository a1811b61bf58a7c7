// cuda/retention_tc_state_r.cuh — the state pass that also makes R_c = Q_c H_c, so that the
// two-pass forward for 128 < Dk ≤ 256 never materialises the chunk states for its output
// pass. Included after cuda/retention_tc_kernels.cuh (its helpers, constants and the output
// pass that reads R: chunk_out_rows_kernel<false, true>); cuda/retention_tc.cu launches it,
// tests/test_emu_retention_tc.cpp runs it on the CPU. Why and what it measured:
// docs/retention-kernels.md, "v7".
//
// The two-pass forward wrote every H_c (bf16, Dk × Dv a chunk) and the output pass read it
// back to form Q_c H_c: at Dk 256 / Dv 512 that is 4 KiB a token each way, more than q, k, v
// and o together. Here a block holds the whole Dk height of a Dv tile of the state, so it
// can contract over Dk itself: R_c (64 tokens × the tile, bf16) is all that leaves, Dv·2
// bytes a token. The output pass then adds the intra-chunk part, as before.
#pragma once

namespace rn::cuda::ret_tc {
namespace {

struct StateRArgs {
    const bf16_t *q, *k;  // [BH,T,Dk]
    const bf16_t* v;      // [BH,T,Dv]
    const float* init;    // [BH,Dk,Dv] s0, or null: zeros
    bf16_t* r;            // [BH,T,Dv] R_t = q_t H_c(t), contiguous (the output pass's input)
    bf16_t* states;       // [BH,NC,Dk,Dv] H_c when the caller keeps them for the backward, or null
    float* fin;           // [BH,Dk,Dv] s_final, or null
    Rows rq, rk, rv;      // where the rows of q, k and v lie
    int H, T, Dk, Dv, NC;
    Decay d;
};

constexpr int kStateRThreads = 512;  // 16 warps: warp w holds state rows 16w.. (Dk ≤ 256)

// Q [64][kLdQ], K [2 stages][64][kLdQ], V [2][64][64·NV + 8], H_c [256][64·NV + 8] (bf16),
// then the token weights b_t [2][64] (fp32). 201.5 KiB at NV = 2, 153.5 KiB at NV = 1: one
// block a multiprocessor either way, 16 warps.
template <int NV>
constexpr size_t state_r_smem_bytes() {
    return (3 * size_t(kC) * kLdQ + (2 * size_t(kC) + kRowsDk) * size_t(kC * NV + 8)) * 2 + 2 * kC * sizeof(float);
}

// grid (⌈Dv/(64·NV)⌉, B·H): the state tile Dk × 64·NV (fp32) of one (b, h) in registers
// across the chunks, warp w holding rows 16w.. and all 64·NV columns. Per chunk c:
//   stage H_c (bf16) in shared memory; S ← γ^L S                      (registers)
//   [A] R_c = Q_c H_c → r: warp w the rows 16·(w%4).., columns 16·NV·(w/4)..
//       (with `states`: H_c → states, 16 bytes a thread and piece)
//   [B] issue Q_(c+1) (one Q buffer: it lands while the state update runs)
//       S += (b ⊙ K_c)ᵀ V_c, b_t = γ^(L−1−t)                          (registers)
//   [C] the next chunk's K, V and H_c go where this chunk's were
// K and V of chunk c+1 are loaded during chunk c. The state's arithmetic is the state pass's
// (state_pass_kernel: the same fragments, scales and mma order per element), so H_c and
// s_final come out bit for bit the same, and a backward that reads the kept H_c is unchanged.
template <int NV>
__global__ void __launch_bounds__(kStateRThreads, 1) state_r_pass_kernel(const __grid_constant__ StateRArgs a) {
    constexpr int kW = kC * NV, kLdV = kW + 8, kQT = kC * kLdQ, kVT = kC * kLdV;
    RN_DYNAMIC_SMEM(smem, 16);
    bf16_t* qs = reinterpret_cast<bf16_t*>(smem);       // [64 t][kLdQ]         (cols: Dk)
    bf16_t* ks = qs + kQT;                               // [2][64 t][kLdQ]      (cols: Dk)
    bf16_t* vs = ks + 2 * kQT;                           // [2][64 t][kLdV]      (cols: Dv tile)
    bf16_t* hst = vs + 2 * kVT;                          // [256 dk][kLdV]       (H_c, bf16)
    float* wts = reinterpret_cast<float*>(hst + kRowsDk * kLdV);  // [2][64] b_t

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int srow = 16 * warp;                           // this warp's state rows
    const int rm = 16 * (warp & 3), rn = 16 * NV * (warp >> 2);  // this warp's strip of R_c
    const int v0 = blockIdx.x * kW;
    const int64_t bh = blockIdx.y;
    const int h = int(bh % a.H);
    const float lg = a.d.lg[h];
    const int vvalid = imin(kW, a.Dv - v0);
    const bool has_rows = srow < a.Dk;
    const bf16_t* qg = a.q + a.rq.at(bh, a.H, 0);
    const bf16_t* kg = a.k + a.rk.at(bh, a.H, 0);
    const bf16_t* vg = a.v + a.rv.at(bh, a.H, 0) + v0;
    const int64_t sbase = bh * a.Dk * a.Dv + v0;  // tile origin in a [Dk,Dv] state

    Acc<8 * NV> acc;
    load_strip_f32<8 * NV>(acc, a.init ? a.init + sbase : nullptr, a.Dv, srow, a.Dk, vvalid, lane);

    auto issue_kv = [&](int c) {
        const int L = imin(kC, a.T - c * kC), buf = c & 1;
        load_rows<kRowsDk, kStateRThreads>(ks + buf * kQT, kLdQ, kg + int64_t(c) * kC * a.rk.st, a.rk.st, L, a.Dk, tid);
        load_rows<kW, kStateRThreads>(vs + buf * kVT, kLdV, vg + int64_t(c) * kC * a.rv.st, a.rv.st, L, vvalid, tid);
        if (tid < kC) wts[buf * kC + tid] = tid < L ? ::expf(float(L - 1 - tid) * lg) : 0.f;
    };
    auto issue_q = [&](int c) {
        const int L = imin(kC, a.T - c * kC);
        load_rows<kRowsDk, kStateRThreads>(qs, kLdQ, qg + int64_t(c) * kC * a.rq.st, a.rq.st, L, a.Dk, tid);
    };

    // cp.async groups, oldest first: Q_0, KV_0; then per chunk KV_(c+1) and Q_(c+1). At [A]
    // all but the newest (KV_(c+1)) must have landed.
    issue_q(0);
    cp_async_commit();
    issue_kv(0);
    cp_async_commit();
    const int ksteps = (a.Dk + 15) / 16;
    for (int c = 0; c < a.NC; ++c) {
        const int L = imin(kC, a.T - c * kC), buf = c & 1;
        if (c + 1 < a.NC) issue_kv(c + 1);
        cp_async_commit();
        if (has_rows) strip_to_smem<8 * NV>(hst, kLdV, acc, srow, 0, lane);  // H_c, entering chunk c
        const float dec = ::expf(float(L) * lg);
        scale_rows<8 * NV>(acc, dec, dec);
        cp_async_wait<1>();
        __syncthreads();  // [A] Q_c, K_c, V_c, b and H_c are in shared memory

        if (a.states) {  // H_c → global, 16 bytes a thread and piece
            bf16_t* sg = a.states + (bh * a.NC + c) * a.Dk * a.Dv + v0;
            constexpr int kPer = kW / 8;  // 16-byte pieces of one row
#pragma unroll
            for (int i = 0; i < kRowsDk * kPer / kStateRThreads; ++i) {
                const int idx = tid + i * kStateRThreads, r = idx / kPer, col = (idx % kPer) * 8;
                if (r < a.Dk && col < vvalid)
                    *reinterpret_cast<uint4*>(sg + int64_t(r) * a.Dv + col) =
                        *reinterpret_cast<const uint4*>(hst + r * kLdV + col);
            }
        }
        {  // R_c = Q_c H_c over all of Dk
            Acc<2 * NV> accR;
            zero(accR);
#pragma unroll
            for (int kk = 0; kk < kRowsDk / 16; ++kk) {
                if (kk >= ksteps) continue;
                uint32_t af[4];
                lda_mk(af, qs, kLdQ, rm, 16 * kk, lane);                 // A[m = t][k = d] = Q[t][d]
                mma_kstep<true, NV>(accR, af, hst, kLdV, rn, kk, lane);  // B[k = d][n = v] = H_c[d][v]
            }
            store_strip_bf16<2 * NV>(a.r + (bh * a.T + int64_t(c) * kC) * a.Dv + v0 + rn, a.Dv, accR, rm, L,
                                     vvalid - rn, lane);
        }
        __syncthreads();  // [B] everyone is done with Q_c
        if (c + 1 < a.NC) issue_q(c + 1);
        cp_async_commit();

        if (has_rows) {  // S += (b ⊙ K_c)ᵀ V_c
            const bf16_t* K = ks + buf * kQT;
            const bf16_t* V = vs + buf * kVT;
            const float* w = wts + buf * kC;
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                if (16 * kk >= L) continue;
                uint32_t af[4];
                lda_km(af, K, kLdQ, srow, 16 * kk, lane);  // A[m = dk][k = t] = K[t][dk]
                scale_a_by_k(af, w, 16 * kk, lane);
                mma_kstep<true, 4 * NV>(acc, af, V, kLdV, 0, kk, lane);  // B[k = t][n = v] = V[t][v]
            }
        }
        __syncthreads();  // [C] this chunk's K, V buffer and H_c are refilled next
    }
    cp_async_wait<0>();

    if (a.fin) store_strip_f32<8 * NV>(a.fin + sbase, a.Dv, acc, srow, a.Dk, vvalid, lane);
}

}  // namespace
}  // namespace rn::cuda::ret_tc
