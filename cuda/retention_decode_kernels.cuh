// cuda/retention_decode_kernels.cuh — the fused decode step's kernel (launched by
// cuda/retention_decode.cu, which describes it; run on the CPU by
// tests/test_emu_retention_decode.cpp through tests/cuda_emu/).
#pragma once
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "cuda/math.cuh"
#include "cuda/pdl.cuh"
#include "cuda/retention_common.cuh"
#include "cuda/vec.cuh"

// (an unnamed namespace inside: kernels with internal linkage, as when they lived in the
// .cu, so the .cu and a test that includes this header never define the same symbol)
namespace rn::cuda::step_tc {
namespace {

constexpr int V = 4;                                         // f32 state: one 16-byte vector a row
// dynamic shared memory of step_gated_kernel: the rotation's cos and sin (float2, Dk/2),
// then q and k of the head (float, Dk each)
inline size_t step_gated_smem(int Dk) { return size_t(Dk / 2) * sizeof(float2) + size_t(2 * Dk) * sizeof(float); }
constexpr double kTwoPi = 6.283185307179586;

template <typename T>
struct StepGated {
    const T* y;  // [B, ldy]: q | k | v | g
    int64_t ldy;
    const int64_t* pos;  // [B]
    float* state;        // [B, H, Dk, Dv]
    T* scratch;          // [B, H, Dv]: o, read back by the head's last block
    T* z;                // [B, H·Dv]; null: stop after o (the norm runs in the next product)
    int* count;          // [B·H]: blocks of (b, h) done; zero between launches (unused without z)
    int H, Dk, Dv;
    float k_scale, eps;
    bool early_angles = true;  // the angles and λ before the PDL wait (RN_STEP_EARLY_ANGLES=0: after, for A/B runs)
};

__device__ __forceinline__ float load_l2(const float* p) { return __ldcg(p); }
__device__ __forceinline__ __nv_bfloat16 load_l2(const __nv_bfloat16* p) {
    const unsigned short u = __ldcg(reinterpret_cast<const unsigned short*>(p));
    return *reinterpret_cast<const __nv_bfloat16*>(&u);
}

template <typename T, int CT, int U>
__global__ void __launch_bounds__(kStepRowGroups * CT) step_gated_kernel(StepGated<T> p, Decays d) {
    using A = float;
    constexpr int kThreads = kStepRowGroups * CT;
    RN_DYNAMIC_SMEM(smem_raw, 16);
    float2* rot = reinterpret_cast<float2*>(smem_raw);  // [Dk/2]: cos, sin of pair j's angle at pos[b]
    A* qs = reinterpret_cast<A*>(rot + p.Dk / 2);        // [Dk]
    A* ks = qs + p.Dk;                                     // [Dk]
    __shared__ A red[kStepRowGroups][CT * V];
    __shared__ A lam_s, nred[kThreads / 32];
    __shared__ bool last_s;

    const int tid = threadIdx.x, tx = tid % CT, ty = tid / CT;
    const int h = blockIdx.y, Dk = p.Dk, Dv = p.Dv, H = p.H;
    const int64_t b = blockIdx.z, bh = b * H + h;
    const int64_t jb = int64_t(blockIdx.x) * CT * V + int64_t(tx) * V;
    const bool cols = jb < Dv;  // Dv % V == 0: the whole vector is in range
    float* S = p.state + bh * Dk * Dv + jb;

    Vec<A, V> s[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {  // the first rows, before the wait
        const int64_t i = ty + int64_t(u) * kStepRowGroups;
        if (cols && i < Dk) {
            const float4 f = __ldcg(reinterpret_cast<const float4*>(S + i * Dv));
            s[u].v[0] = f.x, s[u].v[1] = f.y, s[u].v[2] = f.z, s[u].v[3] = f.w;
        }
    }
    const int half = Dk / 2, kd = H * Dk;
    // The angles and λ depend only on the position, so their double-precision exp, sincos
    // and expm1 run before the wait, beside the previous kernel's tail. pos is safe to read
    // here: the kernel just before this one (the layer's QKVG product) does not write it,
    // and whatever did (the engine's copy, or a kernel at least two launches back) has
    // finished, since that product passed its own wait before this kernel could start
    // (cuda/pdl.h). Each thread reads back only the angles it wrote, so no barrier.
    auto angles = [&] {
        const int64_t n = p.pos[b];
        for (int j = tid; j < half; j += kThreads) {
            const double frac = half > 1 ? double(j) / double(half - 1) : 0.0;
            double a = double(n) * ::exp(-frac * 9.210340371976184);  // n · 10000^(−frac), as cuda/rotary.cu forms it
            a -= kTwoPi * rint(a * (1.0 / kTwoPi));
            float sn, cs;
            sincosf(float(a), &sn, &cs);
            rot[j] = make_float2(cs, sn);
        }
        if (tid == 0) lam_s = A(lambda_at(d.lg[h], d.om[h], n));  // read after the barrier below
    };
    if (p.early_angles) angles();  // uniform over the grid
    pdl_wait();
    pdl_trigger();
    if (!p.early_angles) angles();

    const T* yr = p.y + b * p.ldy;
    for (int j = tid; j < half; j += kThreads) {  // pair j of the head: columns 2j, 2j+1
        const float cs = rot[j].x, sn = rot[j].y;
        const int c = h * Dk + 2 * j;
        {
            const A x0 = ld(yr[c]), x1 = ld(yr[c + 1]);
            qs[2 * j] = ld(st<T>(x0 * cs - x1 * sn));
            qs[2 * j + 1] = ld(st<T>(x1 * cs + x0 * sn));
        }
        {
            const A snk = sn * p.k_scale, csk = cs * p.k_scale;
            const A x0 = ld(yr[kd + c]), x1 = ld(yr[kd + c + 1]);
            ks[2 * j] = ld(st<T>(x0 * csk - x1 * snk));
            ks[2 * j + 1] = ld(st<T>(x1 * csk + x0 * snk));
        }
    }
    const T* vr = yr + 2 * kd + int64_t(h) * Dv;
    A vv[V], acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
        vv[e] = cols ? ld(vr[jb + e]) : A(0);
        acc[e] = A(0);
    }
    const A g = A(d.g[h]);
    __syncthreads();

    if (cols) step_update_column<A, V, U>(S, Dk, Dv, ty, qs, ks, vv, g, s, true, acc);
#pragma unroll
    for (int e = 0; e < V; ++e) red[ty][tx * V + e] = acc[e];
    __syncthreads();
    T* orow = p.scratch + bh * Dv;
    if (tid < CT * V) {
        const int64_t j = int64_t(blockIdx.x) * CT * V + tid;
        if (j < Dv) orow[j] = st<T>(lam_s * step_column_sum<A, CT * V>(red, tid));  // o = λ q S, rounded as the step op rounds it
    }
    // o only: the product after this kernel normalises and gates each head's row in its
    // prologue (cuda/gemv.h, kGroupGate), behind its PDL wait, which sees every write of
    // this grid; no fence, counter or tail here (the branch is uniform over the grid)
    if (!p.z) return;
    // count this block in; the head's last block goes on (the classic threadfence reduction)
    __threadfence();
    __syncthreads();
    if (tid == 0) last_s = atomicAdd(p.count + bh, 1) == int(gridDim.x) - 1;
    __syncthreads();
    if (!last_s) return;
    __threadfence();

    A ss = A(0);
    for (int j = tid; j < Dv; j += kThreads) {
        const A o = ld(load_l2(orow + j));
        ss += o * o;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if ((tid & 31) == 0) nred[tid >> 5] = ss;
    __syncthreads();
    A tot = A(0);
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) tot += nred[w];
    const A rs = A(1) / sqrtf(tot / A(Dv) + p.eps);
    const T* gr = yr + 2 * kd + int64_t(H) * Dv + int64_t(h) * Dv;
    T* zr = p.z + b * int64_t(H) * Dv + int64_t(h) * Dv;
    for (int j = tid; j < Dv; j += kThreads) {
        A v = ld(load_l2(orow + j)) * rs;
        const A gx = ld(gr[j]);
        v *= gx * sigm(gx);
        zr[j] = st<T>(v);
    }
    if (tid == 0) p.count[bh] = 0;  // ready for the next launch (or graph replay)
}

}  // namespace
}  // namespace rn::cuda::step_tc
