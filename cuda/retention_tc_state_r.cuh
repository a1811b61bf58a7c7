// cuda/retention_tc_state_r.cuh — the state pass that also makes R_c = Q_c H_c, so that the
// two-pass forward for 128 < Dk ≤ 256 never materialises the chunk states for its output
// pass; and in reverse R_c = K_c U_c for the dV pass. Included after
// cuda/retention_tc_kernels.cuh (its helpers, constants, and the output/dV pass that reads R:
// chunk_out_rows_kernel<kDv, true>); cuda/retention_tc.cu launches it,
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
    const bf16_t* x;    // [BH,T,Dk] k (forward) / q (reverse): the state update's left factor
    const bf16_t* y;    // [BH,T,Dv] v (forward) / dout (reverse)
    const bf16_t* z;    // [BH,T,Dk] q (forward: R_c = Q_c H_c) / k (reverse: R_c = K_c U_c)
    const float* init;  // [BH,Dk,Dv] s0 / ds_final, or null: zeros
    bf16_t* r;          // [BH,T,Dv] R, contiguous (the output or dV pass's input)
    bf16_t* states;     // [BH,NC,Dk,Dv] H_c / U_c when something else reads them, or null
    float* fin;         // [BH,Dk,Dv] s_final / ds0, or null
    Rows rx, ry, rz;    // where the rows of x, y and z lie
    int H, T, Dk, Dv, NC;
    int64_t pos0;
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
// across the chunks (forward c = 0 → NC−1, reverse NC−1 → 0), warp w holding rows 16w.. and
// all 64·NV columns. Per chunk c, with S the state entering it (H_c, or U_c in reverse):
//   stage S (bf16) in shared memory; S ← γ^L S                        (registers)
//   [A] R_c = Z_c S → r: warp w the rows 16·(w%4).., columns 16·NV·(w/4)..
//       (with `states`: the staged S → states, 16 bytes a thread and piece)
//   [B] issue Z of the next chunk (one Z buffer: it lands while the state update runs)
//       S += (w ⊙ X_c)ᵀ Y_c                                           (registers)
//   [C] the next chunk's X, Y and S go where this chunk's were
// with w_t = b_t = γ^(L−1−t) forward and a_t λ_t in reverse, as the state pass. X and Y of
// the next chunk are loaded during this one. The state's arithmetic is state_pass_kernel's
// (the same fragments, scales and mma order per element), so the stored states and the final
// state come out bit for bit the same: a backward reading the kept H_c is unchanged, and the
// dQ/dK pass reads these U_c as it read that pass's.
//   reverse: U_(c−1) = γ^L U_c + (a ⊙ Q_c)ᵀ (λ ⊙ dO_c), R_c = K_c U_c, which the dV pass
//            scales by b and adds to ((K_c Q_cᵀ) ⊙ Γᵀ ⊙ λ_col) dO_c.
template <int NV, bool kReverse>
__global__ void __launch_bounds__(kStateRThreads, 1) state_r_pass_kernel(const __grid_constant__ StateRArgs a) {
    constexpr int kW = kC * NV, kLdV = kW + 8, kQT = kC * kLdQ, kVT = kC * kLdV;
    RN_DYNAMIC_SMEM(smem, 16);
    bf16_t* zs = reinterpret_cast<bf16_t*>(smem);       // [64 t][kLdQ]         (cols: Dk)
    bf16_t* xs = zs + kQT;                               // [2][64 t][kLdQ]      (cols: Dk)
    bf16_t* ys = xs + 2 * kQT;                           // [2][64 t][kLdV]      (cols: Dv tile)
    bf16_t* hst = ys + 2 * kVT;                          // [256 dk][kLdV]       (the state, bf16)
    float* wts = reinterpret_cast<float*>(hst + kRowsDk * kLdV);  // [2][64] w_t

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int srow = 16 * warp;                           // this warp's state rows
    const int rm = 16 * (warp & 3), rn = 16 * NV * (warp >> 2);  // this warp's strip of R_c
    const int v0 = blockIdx.x * kW;
    const int64_t bh = blockIdx.y;
    const int h = int(bh % a.H);
    const float lg = a.d.lg[h], omg = a.d.omg[h];
    const int vvalid = imin(kW, a.Dv - v0);
    const bool has_rows = srow < a.Dk;
    const bf16_t* zg = a.z + a.rz.at(bh, a.H, 0);
    const bf16_t* xg = a.x + a.rx.at(bh, a.H, 0);
    const bf16_t* yg = a.y + a.ry.at(bh, a.H, 0) + v0;
    const int64_t sbase = bh * a.Dk * a.Dv + v0;  // tile origin in a [Dk,Dv] state

    Acc<8 * NV> acc;
    load_strip_f32<8 * NV>(acc, a.init ? a.init + sbase : nullptr, a.Dv, srow, a.Dk, vvalid, lane);

    auto chunk_of = [&](int i) { return kReverse ? a.NC - 1 - i : i; };
    auto issue_xy = [&](int i) {
        const int c = chunk_of(i), L = imin(kC, a.T - c * kC), buf = i & 1;
        load_rows<kRowsDk, kStateRThreads>(xs + buf * kQT, kLdQ, xg + int64_t(c) * kC * a.rx.st, a.rx.st, L, a.Dk, tid);
        load_rows<kW, kStateRThreads>(ys + buf * kVT, kLdV, yg + int64_t(c) * kC * a.ry.st, a.ry.st, L, vvalid, tid);
        if (tid < kC) wts[buf * kC + tid] = state_weight<kReverse>(lg, omg, a.pos0, c, L, tid);
    };
    auto issue_z = [&](int i) {
        const int c = chunk_of(i), L = imin(kC, a.T - c * kC);
        load_rows<kRowsDk, kStateRThreads>(zs, kLdQ, zg + int64_t(c) * kC * a.rz.st, a.rz.st, L, a.Dk, tid);
    };

    // cp.async groups, oldest first: Z_0, XY_0; then per chunk XY of the next and Z of the
    // next. At [A] all but the newest (the next XY) must have landed.
    issue_z(0);
    cp_async_commit();
    issue_xy(0);
    cp_async_commit();
    const int ksteps = (a.Dk + 15) / 16;
    for (int i = 0; i < a.NC; ++i) {
        const int c = chunk_of(i), L = imin(kC, a.T - c * kC), buf = i & 1;
        if (i + 1 < a.NC) issue_xy(i + 1);
        cp_async_commit();
        if (has_rows) strip_to_smem<8 * NV>(hst, kLdV, acc, srow, 0, lane);  // the state entering chunk c
        const float dec = ::expf(float(L) * lg);
        scale_rows<8 * NV>(acc, dec, dec);
        cp_async_wait<1>();
        __syncthreads();  // [A] Z_c, X_c, Y_c, w and the staged state are in shared memory

        if (a.states)  // the staged state → global
            store_rows<kRowsDk, kW, kStateRThreads>(a.states + (bh * a.NC + c) * a.Dk * a.Dv + v0, a.Dv, hst, kLdV, a.Dk,
                                                    vvalid, tid);
        {  // R_c = Z_c S over all of Dk
            Acc<2 * NV> accR;
            zero(accR);
#pragma unroll
            for (int kk = 0; kk < kRowsDk / 16; ++kk) {
                if (kk >= ksteps) continue;
                uint32_t af[4];
                lda_mk(af, zs, kLdQ, rm, 16 * kk, lane);                 // A[m = t][k = d] = Z[t][d]
                mma_kstep<true, NV>(accR, af, hst, kLdV, rn, kk, lane);  // B[k = d][n = v] = S[d][v]
            }
            store_strip_bf16<2 * NV>(a.r + (bh * a.T + int64_t(c) * kC) * a.Dv + v0 + rn, a.Dv, accR, rm, L,
                                     vvalid - rn, lane);
        }
        __syncthreads();  // [B] everyone is done with Z_c
        if (i + 1 < a.NC) issue_z(i + 1);
        cp_async_commit();

        if (has_rows) {  // S += (w ⊙ X_c)ᵀ Y_c
            const bf16_t* X = xs + buf * kQT;
            const bf16_t* Y = ys + buf * kVT;
            const float* w = wts + buf * kC;
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                if (16 * kk >= L) continue;
                uint32_t af[4];
                lda_km(af, X, kLdQ, srow, 16 * kk, lane);  // A[m = dk][k = t] = X[t][dk]
                scale_a_by_k(af, w, 16 * kk, lane);
                mma_kstep<true, 4 * NV>(acc, af, Y, kLdV, 0, kk, lane);  // B[k = t][n = v] = Y[t][v]
            }
        }
        __syncthreads();  // [C] this chunk's X, Y buffer and the staging tile are refilled next
    }
    cp_async_wait<0>();

    if (a.fin) store_strip_f32<8 * NV>(a.fin + sbase, a.Dv, acc, srow, a.Dk, vvalid, lane);
}

}  // namespace
}  // namespace rn::cuda::ret_tc
