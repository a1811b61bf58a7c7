// cuda/gemv_kernels.cuh — the few-row product kernels (launched by cuda/gemv.cu, which
// describes them; cuda/gemv.h for what they compute), in a header so that tests run them
// on the CPU through the emulator of tests/cuda_emu/ (tests/test_emu_gemv.cpp).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gemv.h"
#include "cuda/math.cuh"
#include "cuda/pdl.cuh"
#include "cuda/vec.cuh"

// (an unnamed namespace inside: kernels with internal linkage, as when they lived in the
// .cu, so the .cu and a test that includes this header never define the same symbol)
namespace rn::cuda::gemv_k {
namespace {

constexpr int kWarps = 8;  // output columns per block

__device__ __forceinline__ void unpack(const uint4& v, float (&f)[4]) {
    f[0] = __uint_as_float(v.x), f[1] = __uint_as_float(v.y), f[2] = __uint_as_float(v.z), f[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void unpack(const uint4& v, float (&f)[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 p = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
        f[2 * i] = p.x, f[2 * i + 1] = p.y;
    }
}
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// W is read once: no L1 allocation for it (x, read by every warp, keeps L1 to itself).
// The CPU emulator runs no inline PTX: there it is a plain 16-byte load.
__device__ __forceinline__ uint4 load_stream(const void* p) {
#ifdef RN_CUDA_EMU
    return *static_cast<const uint4*>(p);
#else
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
#endif
}

// the end of both products: each row's sum over the warp's lanes, lane m writing row m
template <int M, typename T>
__device__ __forceinline__ void reduce_store(float (&acc)[M], T* C, int64_t ldc, int n, int lane, bool live,
                                             float alpha) {
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], off);
#pragma unroll
    for (int m = 0; m < M; ++m)
        if (live && lane == m) store(C + int64_t(m) * ldc + n, alpha * acc[m]);
}

template <typename T, int M, int U>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T* __restrict__ A, int64_t lda,
                                                          const T* __restrict__ W, int64_t ldw, T* __restrict__ C,
                                                          int64_t ldc, int N, int K, float alpha) {
    constexpr int V = 16 / sizeof(T);  // elements per 16-byte piece
    const int lane = threadIdx.x & 31;
    // a warp past the last column still waits: griddepcontrol must be reached by every
    // thread of a block or none (it returns at once when the launch was an ordinary one)
    const int n = min(int(blockIdx.x) * kWarps + int(threadIdx.x >> 5), N - 1);
    const bool live = int(blockIdx.x) * kWarps + int(threadIdx.x >> 5) < N;
    const T* w = W + int64_t(n) * ldw;
    const int pieces = K / V;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;

    auto fma_piece = [&](const uint4& wv, int i) {
        float wf[V];
        unpack(wv, wf);
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float xf[V];
            unpack(__ldg(reinterpret_cast<const uint4*>(A + int64_t(m) * lda) + i), xf);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[m] = fmaf(wf[e], xf[e], acc[m]);
        }
    };
    // all of a round's loads are issued before any is used: at K = 768 (bf16) a lane has
    // only 3 pieces, and a loop that took them one at a time paid three round trips.
    // The first round's weight loads go out before pdl_wait (cuda/pdl.h): launched early
    // in a decode step, the product streams its weight while the kernel before it ends.
    uint4 wv[U];
    auto load_round = [&](int i) {
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (i + 32 * u < pieces) wv[u] = load_stream(reinterpret_cast<const uint4*>(w) + i + 32 * u);
    };
    load_round(lane);
    pdl_wait();
    pdl_trigger();
    for (int i = lane; i < pieces; i += 32 * U) {
        if (i != lane) load_round(i);
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (i + 32 * u < pieces) fma_piece(wv[u], i + 32 * u);
    }

    reduce_store<M>(acc, C, ldc, n, lane, live, alpha);
}


// ---------------------------------------------------------------- products with a prologue
//
// The same product, with its x rows formed by the block itself in shared memory from what
// the kernel before would have written (cuda/gemv.h, GemvPrologue): an RMSNorm of x + res
// (a decode step's residual add and norm before QKVG, fc1/gate and the head) or silu(a) ⊙ b
// (SwiGLU before fc2) or a retention layer's gated group norm (before out_proj). Every
// block forms all M rows — K ≤ a few thousand values, from L2 — which costs less than the
// launch of a kernel that would write them once. The rows are rounded to T exactly as the
// unfused kernels round their outputs; only the norm's sum of squares adds in another order.
constexpr int kThreadsPro = kWarps * 32;

// Shared memory past the rows that kGroupGate takes: a float a 16-byte piece of x (its sum
// of squares), then a float a group (its 1/rms)
inline size_t group_gate_extra_smem(int64_t M, int64_t K, int64_t group, int64_t elem) {
    return size_t(M * (K * elem / 16) + M * (K / group)) * sizeof(float);
}

// kGroupGate: x_m = o_m / rms(o_m over its group) ⊙ silu(g_m), the group (a head's Dv
// values) a multiple of the piece; o = pro.x, g = pro.res. As the fused retention step's last
// block wrote it (cuda/retention_decode_kernels.cuh): v = o · rs, v ·= g·σ(g) in float,
// rounded once. The rows of all M sequences are formed together (one round trip to L2 for
// o and g, not one a row). Each group's sum is deterministic: a thread writes each of its
// pieces' sums of squares to `part`, then one warp adds a group's pieces in a fixed order
// (lane-strided, then the xor shuffle), whatever the timing.
template <typename T, int M>
__device__ __forceinline__ void group_gate_rows(const GemvPrologue& pro, T* xs, int K, float* part, float* rs) {
    constexpr int V = 16 / sizeof(T);
    constexpr int kHeld = 4;  // pieces of g a thread keeps in registers from the first pass
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = int(pro.group), pieces = K / V, items = M * pieces, gp = group / V, groups = M * (K / group);
    const T* o = static_cast<const T*>(pro.x);
    const T* g = static_cast<const T*>(pro.res);
    // item j: piece i = j mod pieces of row m = j / pieces; its group is j / gp (rows are
    // whole groups, so the pieces of a group are consecutive items)
    auto at = [&](const T* base, int64_t ld, int j) {
        const int m = j / pieces;
        return base + int64_t(m) * ld + int64_t(j - m * pieces) * V;
    };
    Pack<T, V> gv[kHeld];
#pragma unroll
    for (int t = 0; t < kHeld; ++t) {  // g's loads go out with o's, before the reduction
        const int j = tid + t * kThreadsPro;
        if (j < items) gv[t] = load_pack<T, V>(at(g, pro.ldr, j));
    }
    for (int j = tid; j < items; j += kThreadsPro) {
        const Pack<T, V> v = load_pack<T, V>(at(o, pro.ldx, j));
        float ss = 0.f;
#pragma unroll
        for (int e = 0; e < V; ++e) ss += ld(v.v[e]) * ld(v.v[e]);
        part[j] = ss;
        store_pack(xs + int64_t(j) * V, v);  // row m at m·K: j·V = m·K + i·V
    }
    __syncthreads();
    for (int q = warp; q < groups; q += kWarps) {  // uniform over the warp: the shuffle sees all lanes
        float ss = 0.f;
        for (int i = lane; i < gp; i += 32) ss += part[q * gp + i];
        ss = warp_sum(ss);
        if (lane == 0) rs[q] = 1.f / sqrtf(ss / float(group) + pro.eps);
    }
    __syncthreads();
    auto finish = [&](int j, const Pack<T, V>& gk) {  // a piece this thread wrote
        Pack<T, V> v = load_pack<T, V>(xs + int64_t(j) * V);
        const float r = rs[j / gp];
#pragma unroll
        for (int e = 0; e < V; ++e) {
            float y = ld(v.v[e]) * r;
            const float gx = ld(gk.v[e]);
            y *= gx * sigm(gx);
            v.v[e] = st<T>(y);
        }
        store_pack(xs + int64_t(j) * V, v);
    };
#pragma unroll
    for (int t = 0; t < kHeld; ++t) {
        const int j = tid + t * kThreadsPro;
        if (j < items) finish(j, gv[t]);
    }
    for (int j = tid + kHeld * kThreadsPro; j < items; j += kThreadsPro) finish(j, load_pack<T, V>(at(g, pro.ldr, j)));
}

template <typename T, int M, int PRO, int U>
__global__ void __launch_bounds__(kThreadsPro) gemv_prologue_kernel(GemvPrologue pro, const T* __restrict__ W,
                                                                   int64_t ldw, T* __restrict__ C, int64_t ldc, int N,
                                                                   int K, float alpha) {
    constexpr int V = 16 / sizeof(T);
    RN_DYNAMIC_SMEM_OF(uint4, xs_raw);
    T* xs = reinterpret_cast<T*>(xs_raw);  // [M, K]
    __shared__ float red[kWarps];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n = min(int(blockIdx.x) * kWarps + warp, N - 1);
    const bool live = int(blockIdx.x) * kWarps + warp < N;
    const T* w = W + int64_t(n) * ldw;
    const int pieces = K / V;

    uint4 wv[U];
    auto load_round = [&](int i) {
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (i + 32 * u < pieces) wv[u] = load_stream(reinterpret_cast<const uint4*>(w) + i + 32 * u);
    };
    load_round(lane);  // the weight does not depend on the kernel before (cuda/pdl.h)
    pdl_wait();
    pdl_trigger();

    const T* x = static_cast<const T*>(pro.x);
    const T* r = static_cast<const T*>(pro.res);
    if constexpr (PRO == GemvPrologue::kGroupGate) {
        float* part = reinterpret_cast<float*>(xs + int64_t(M) * K);
        group_gate_rows<T, M>(pro, xs, K, part, part + M * pieces);
    }
    for (int m = 0; m < M; ++m) {  // (kGroupGate: nothing left to do a row)
        T* xm = xs + int64_t(m) * K;
        if constexpr (PRO == GemvPrologue::kRmsNorm) {
            const T* nw = static_cast<const T*>(pro.norm_w);
            T* sum = blockIdx.x == 0 ? static_cast<T*>(pro.sum) : nullptr;  // one block writes x + res
            float ss = 0.f;
            for (int i = tid; i < pieces; i += kThreadsPro) {
                Pack<T, V> v = load_pack<T, V>(x + int64_t(m) * pro.ldx + int64_t(i) * V);
                if (r) {
                    const Pack<T, V> h = load_pack<T, V>(r + int64_t(m) * pro.ldr + int64_t(i) * V);
#pragma unroll
                    for (int e = 0; e < V; ++e) v.v[e] = st<T>(ld(v.v[e]) + ld(h.v[e]));
                    if (sum) store_pack(sum + int64_t(m) * pro.lds + int64_t(i) * V, v);
                }
#pragma unroll
                for (int e = 0; e < V; ++e) ss += ld(v.v[e]) * ld(v.v[e]);
                store_pack(xm + int64_t(i) * V, v);
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
            if (lane == 0) red[warp] = ss;
            __syncthreads();
            float tot = 0.f;
#pragma unroll
            for (int j = 0; j < kWarps; ++j) tot += red[j];
            const float rs = 1.f / sqrtf(tot / float(K) + pro.eps);
            for (int i = tid; i < pieces; i += kThreadsPro) {  // the pieces this thread wrote
                Pack<T, V> v = load_pack<T, V>(xm + int64_t(i) * V);
                Pack<T, V> wn{};
                if (nw) wn = load_pack<T, V>(nw + int64_t(i) * V);
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    float y = ld(v.v[e]) * rs;
                    if (nw) y *= ld(wn.v[e]);
                    v.v[e] = st<T>(y);
                }
                store_pack(xm + int64_t(i) * V, v);
            }
            __syncthreads();  // red is reused by the next row
        } else if constexpr (PRO == GemvPrologue::kSiluMul) {  // silu(a) ⊙ b
            for (int i = tid; i < pieces; i += kThreadsPro) {
                const Pack<T, V> a = load_pack<T, V>(x + int64_t(m) * pro.ldx + int64_t(i) * V);
                const Pack<T, V> b = load_pack<T, V>(r + int64_t(m) * pro.ldr + int64_t(i) * V);
                Pack<T, V> y;
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    const float av = ld(a.v[e]);
                    y.v[e] = st<T>(av * sigm(av) * ld(b.v[e]));
                }
                store_pack(xm + int64_t(i) * V, y);
            }
        }
    }
    __syncthreads();

    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;
    for (int i = lane; i < pieces; i += 32 * U) {
        if (i != lane) load_round(i);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int piece = i + 32 * u;
            if (piece < pieces) {
                float wf[V];
                unpack(wv[u], wf);
#pragma unroll
                for (int m = 0; m < M; ++m) {
                    float xf[V];
                    unpack(reinterpret_cast<const uint4*>(xs + int64_t(m) * K)[piece], xf);
#pragma unroll
                    for (int e = 0; e < V; ++e) acc[m] = fmaf(wf[e], xf[e], acc[m]);
                }
            }
        }
    }
    reduce_store<M>(acc, C, ldc, n, lane, live, alpha);
}

}  // namespace
}  // namespace rn::cuda::gemv_k
