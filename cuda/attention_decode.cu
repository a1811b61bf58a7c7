// cuda/attention_decode.cu — one decoding step of causal attention over a KV cache
// (attention_decode) and the cache write (kv_cache_write), for every floating dtype.
// Capturable in a CUDA graph: lengths and positions are read on the device, nothing is
// copied to the host, and the only allocation (the split workspace) has a size fixed by
// B, Hq, D and Tmax, never by the lengths' values.
//
// Dimension key: B sequences, Hq query heads, Hkv kv heads, G = Hq/Hkv, Tmax cache
// positions, D head dim, len_b = lengths[b] (clamped to [0, Tmax]; 0 gives a zero output).
// q, out [B,Hq,D]; k, v caches [S,Hkv,Tmax,D] (sequence b uses row b); x [B,Hkv,T,D].
//
// Decode is bound by reading the cache (2·len·D elements per kv head), so the kernel is
// built around that read (flash-decoding, Dao et al. 2023):
//   - one block reads a kv head's K and V once for up to GB of its G query heads (GQA);
//   - each position of the cache is read by LPR lanes as 16-byte vectors (LPR = D/V, V
//     elements a vector), 32/LPR positions a warp, U = 4 positions a lane per iteration;
//     the dot products are summed over the LPR lanes by shuffles;
//   - the 16-byte loads go through a 4-iteration cp.async ring in shared memory, three
//     iterations in flight while one is computed (see the loop);
//   - split-K: when B·Hkv blocks cannot fill the GPU, nsplit blocks share each sequence
//     (as many as still fit in one wave of resident blocks, each ≥ 128 positions of Tmax);
//     block s takes positions [len·s/nsplit, len·(s+1)/nsplit) — an even share whatever
//     len is — and writes its
//     unnormalised partial (m, l, Σ p v) to a workspace; a combine kernel rescales the
//     partials by 2^(m_s − max m) and divides by the summed l. With one split the main
//     kernel writes the output itself.
// Scores are kept in log₂ units (q pre-scaled by s·log₂e) so every exponential is exp2.
// Arithmetic is in A = float (double for f64).
#include "cuda/attention.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/mma.cuh"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kU = 4;               // positions a lane reads per iteration
constexpr int kStages = 4;          // iterations of the cp.async ring (16-byte variants)
constexpr int kMaxGB = 8;           // query heads a block
constexpr int kMaxD = 256;
constexpr int kMaxSplit = 128;
constexpr int kMinSplitLen = 128;   // positions a split should have at least (of Tmax)

__device__ __forceinline__ float d_exp2(float x) { return exp2f(x); }
__device__ __forceinline__ double d_exp2(double x) { return ::exp2(x); }

using mma::cp_async16;  // cp.async wrappers (cuda/mma.cuh)
using mma::cp_async_commit;
using mma::cp_async_wait;

template <typename T>
struct DecodeArgs {
    using A = typename acc_of<T>::type;
    const T *q, *k, *v;   // [B,Hq,D], [S,Hkv,Tmax,D] ×2
    T* out;               // [B,Hq,D]
    A* part;              // [B·Hq, nsplit, D + 2]: Σ p v (D), then m, l; null with one split
    const int64_t* lengths;
    int Hq, Hkv, G, ngr, D, Tmax, nsplit;
    A scale_log2;
};

// grid (nsplit, Hkv·ngr, B): block (s, hk·ngr + gi, b) takes query heads hk·G + gi·GB … (at
// most GB of them) over its share of the positions of sequence b. Lane: slot lane/LPR of
// its warp (one position), li = lane%LPR; its dims are (nv·LPR + li)·V … + V − 1 for
// nv < NV (D ≤ LPR·NV·V). Shared memory: the four warps' states, [4][GB][D + 2] of A.
template <typename T, int V, int NV>
constexpr bool pipelined() { return sizeof(T) * V == 16; }
// the ring: [kStages][kU][NV][k, v][kThreads] 16-byte slots, each thread's own
template <typename T, int V, int NV>
constexpr size_t ring_bytes() { return pipelined<T, V, NV>() ? size_t(kStages) * kU * NV * 2 * kThreads * 16 : 0; }
template <typename T, int V, int NV, int GB>
constexpr size_t decode_smem(int D) {
    return ring_bytes<T, V, NV>() + size_t(kWarps) * GB * size_t(D + 2) * sizeof(typename acc_of<T>::type);
}

template <typename T, int V, int LPR, int NV, int GB>
__global__ void __launch_bounds__(kThreads) attn_decode_kernel(const __grid_constant__ DecodeArgs<T> a) {
    using A = typename acc_of<T>::type;
    constexpr int RPW = 32 / LPR;         // positions a warp reads at once
    constexpr int kStep = kWarps * RPW * kU;  // positions a block reads per iteration
    constexpr bool kPipe = pipelined<T, V, NV>();
    extern __shared__ __align__(16) unsigned char smem_raw[];
    uint4* ring = reinterpret_cast<uint4*>(smem_raw);
    A* sm = reinterpret_cast<A*>(smem_raw + ring_bytes<T, V, NV>());  // [4 warps][GB][D + 2]

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, slot = lane / LPR, li = lane % LPR;
    const int s = blockIdx.x, hk = int(blockIdx.y) / a.ngr, gi = int(blockIdx.y) % a.ngr, b = blockIdx.z;
    const int h0 = hk * a.G + gi * GB, ng = min(GB, a.G - gi * GB);
    int64_t len = a.lengths[b];
    len = len < 0 ? 0 : len > a.Tmax ? a.Tmax : len;
    const int64_t p_begin = len * s / a.nsplit, p_end = len * (s + 1) / a.nsplit;
    const T* kb = a.k + int64_t(b * a.Hkv + hk) * a.Tmax * a.D;
    const T* vb = a.v + int64_t(b * a.Hkv + hk) * a.Tmax * a.D;

    // this lane's dims of each head's q, times s·log₂e
    A qf[GB][NV][V];
#pragma unroll
    for (int g = 0; g < GB; ++g)
#pragma unroll
        for (int nv = 0; nv < NV; ++nv)
#pragma unroll
            for (int e = 0; e < V; ++e) {
                const int d = (nv * LPR + li) * V + e;
                qf[g][nv][e] = g < ng && d < a.D ? ld(a.q[int64_t(b * a.Hq + h0 + g) * a.D + d]) * a.scale_log2 : A(0);
            }
    A m[GB], l[GB], acc[GB][NV][V];
#pragma unroll
    for (int g = 0; g < GB; ++g) {
        m[g] = -A(INFINITY);
        l[g] = A(0);
#pragma unroll
        for (int nv = 0; nv < NV; ++nv)
#pragma unroll
            for (int e = 0; e < V; ++e) acc[g][nv][e] = A(0);
    }

    // Iteration it reads positions base = p_begin + it·kStep …: lane (warp w, slot) takes
    // base + (w·kU + u)·RPW + slot for u < kU. 16-byte variants stage them through a ring of
    // kStages iterations in shared memory by cp.async, each thread its own slots (so no
    // barrier: a thread only ever reads what it copied), kStages − 1 iterations in flight
    // while one is computed; without that a warp waited a whole memory round trip per
    // iteration (measured on the H100: 38–60% of the copy bandwidth). Element-wise variants
    // load straight into registers.
    const int niter = int((p_end - p_begin + kStep - 1) / kStep);  // uniform over the block
    auto slot_of = [&](int stage, int u, int nv, int kv) {
        return ring + (((stage * kU + u) * NV + nv) * 2 + kv) * kThreads + threadIdx.x;
    };
    auto issue = [&](int it) {
        const int stage = it % kStages;
        const int64_t base = p_begin + int64_t(it) * kStep;
#pragma unroll
        for (int u = 0; u < kU; ++u) {
            const int64_t p = base + (warp * kU + u) * RPW + slot;
#pragma unroll
            for (int nv = 0; nv < NV; ++nv) {
                const int d0 = (nv * LPR + li) * V;
                const bool ok = p < p_end && d0 < a.D;
                cp_async16(slot_of(stage, u, nv, 0), ok ? kb + p * a.D + d0 : kb, ok);
                cp_async16(slot_of(stage, u, nv, 1), ok ? vb + p * a.D + d0 : vb, ok);
            }
        }
    };
    if constexpr (kPipe) {
#pragma unroll
        for (int i = 0; i < kStages - 1; ++i) {
            if (i < niter) issue(i);
            cp_async_commit();
        }
    }
    for (int it = 0; it < niter; ++it) {
        const int64_t base = p_begin + int64_t(it) * kStep;
        Pack<T, V> kp[kU][NV], vp[kU][NV];
        bool ok[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) ok[u] = base + (warp * kU + u) * RPW + slot < p_end;
        if constexpr (kPipe) {
            cp_async_wait<kStages - 2>();  // this thread's copies of iteration it have landed
            const int stage = it % kStages;
#pragma unroll
            for (int u = 0; u < kU; ++u)
#pragma unroll
                for (int nv = 0; nv < NV; ++nv) {
                    kp[u][nv] = load_pack<T, V>(reinterpret_cast<const T*>(slot_of(stage, u, nv, 0)));
                    vp[u][nv] = load_pack<T, V>(reinterpret_cast<const T*>(slot_of(stage, u, nv, 1)));
                }
            // refill the slots read (and used) in iteration it − 1
            if (it + kStages - 1 < niter) issue(it + kStages - 1);
            cp_async_commit();
        } else {
#pragma unroll
            for (int u = 0; u < kU; ++u) {
                const int64_t p = base + (warp * kU + u) * RPW + slot;
#pragma unroll
                for (int nv = 0; nv < NV; ++nv) {
                    const int d0 = (nv * LPR + li) * V;
                    if (ok[u] && d0 < a.D) {
                        kp[u][nv] = ldg_pack<T, V>(kb + p * a.D + d0);
                        vp[u][nv] = ldg_pack<T, V>(vb + p * a.D + d0);
                    } else {
#pragma unroll
                        for (int e = 0; e < V; ++e) kp[u][nv].v[e] = vp[u][nv].v[e] = T(0);
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < GB; ++g) {
            if (g >= ng) break;  // uniform over the block
            A sc[kU];
#pragma unroll
            for (int u = 0; u < kU; ++u) {
                A x = A(0);
#pragma unroll
                for (int nv = 0; nv < NV; ++nv)
#pragma unroll
                    for (int e = 0; e < V; ++e) x += qf[g][nv][e] * ld(kp[u][nv].v[e]);
#pragma unroll
                for (int o = LPR / 2; o >= 1; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
                sc[u] = ok[u] ? x : -A(INFINITY);
            }
            A mx = m[g];
#pragma unroll
            for (int u = 0; u < kU; ++u) mx = sc[u] > mx ? sc[u] : mx;
            if (mx == -A(INFINITY)) continue;  // no position of this slot yet (no shuffles follow)
            const A corr = d_exp2(m[g] - mx);  // 0 while m = −inf
            A p[kU], ps = A(0);
#pragma unroll
            for (int u = 0; u < kU; ++u) {
                p[u] = d_exp2(sc[u] - mx);
                ps += p[u];
            }
            l[g] = l[g] * corr + ps;
            m[g] = mx;
#pragma unroll
            for (int nv = 0; nv < NV; ++nv)
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    A y = acc[g][nv][e] * corr;
#pragma unroll
                    for (int u = 0; u < kU; ++u) y += p[u] * ld(vp[u][nv].v[e]);
                    acc[g][nv][e] = y;
                }
        }
    }

    // merge the warp's slots (xor over the slot bits of the lane), then the four warps
    auto weights = [](A m1, A m2, A& M, A& c1, A& c2) {
        M = m1 > m2 ? m1 : m2;
        c1 = m1 == -A(INFINITY) ? A(0) : d_exp2(m1 - M);
        c2 = m2 == -A(INFINITY) ? A(0) : d_exp2(m2 - M);
    };
#pragma unroll
    for (int o = LPR; o < 32; o <<= 1) {
#pragma unroll
        for (int g = 0; g < GB; ++g) {
            const A m2 = __shfl_xor_sync(0xffffffffu, m[g], o), l2 = __shfl_xor_sync(0xffffffffu, l[g], o);
            A M, c1, c2;
            weights(m[g], m2, M, c1, c2);
            m[g] = M;
            l[g] = l[g] * c1 + l2 * c2;
#pragma unroll
            for (int nv = 0; nv < NV; ++nv)
#pragma unroll
                for (int e = 0; e < V; ++e)
                    acc[g][nv][e] = acc[g][nv][e] * c1 + __shfl_xor_sync(0xffffffffu, acc[g][nv][e], o) * c2;
        }
    }
    const int W = a.D + 2;  // a state row in shared memory: acc [D], m, l
    if (slot == 0) {
#pragma unroll
        for (int g = 0; g < GB; ++g) {
            if (g >= ng) break;
            A* row = sm + (warp * GB + g) * W;
#pragma unroll
            for (int nv = 0; nv < NV; ++nv)
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    const int d = (nv * LPR + li) * V + e;
                    if (d < a.D) row[d] = acc[g][nv][e];
                }
            if (li == 0) {
                row[a.D] = m[g];
                row[a.D + 1] = l[g];
            }
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < ng * a.D; i += kThreads) {
        const int g = i / a.D, d = i - g * a.D;
        A M = -A(INFINITY);
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
            const A mw = sm[(w * GB + g) * W + a.D];
            M = mw > M ? mw : M;
        }
        A L = A(0), S = A(0);
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
            const A* row = sm + (w * GB + g) * W;
            const A c = row[a.D] == -A(INFINITY) ? A(0) : d_exp2(row[a.D] - M);
            L += row[a.D + 1] * c;
            S += row[d] * c;
        }
        const int64_t bh = int64_t(b) * a.Hq + h0 + g;
        if (a.part == nullptr) {
            a.out[bh * a.D + d] = st<T>(L > A(0) ? S / L : A(0));
        } else {
            A* pr = a.part + (bh * a.nsplit + s) * W;
            pr[d] = S;
            if (d == 0) {
                pr[a.D] = M;
                pr[a.D + 1] = L;
            }
        }
    }
}

// out[bh, d] = Σ_s acc_s[d]·2^(m_s − M) / Σ_s l_s·2^(m_s − M), M = max_s m_s; grid B·Hq
template <typename T>
__global__ void __launch_bounds__(kThreads)
attn_decode_combine(T* __restrict__ out, const typename acc_of<T>::type* __restrict__ part, int nsplit, int D) {
    using A = typename acc_of<T>::type;
    __shared__ A w[kMaxSplit];
    __shared__ A Ls;
    const int64_t bh = blockIdx.x;
    const int W = D + 2;
    const A* pb = part + bh * nsplit * W;
    if (threadIdx.x < 32) {
        A M = -A(INFINITY);
        for (int s = threadIdx.x; s < nsplit; s += 32) M = max(M, pb[int64_t(s) * W + D]);
        M = warp_max(M);
        A L = A(0);
        for (int s = threadIdx.x; s < nsplit; s += 32) {
            const A ms = pb[int64_t(s) * W + D];
            const A c = ms == -A(INFINITY) ? A(0) : d_exp2(ms - M);
            w[s] = c;
            L += pb[int64_t(s) * W + D + 1] * c;
        }
        L = warp_sum(L);
        if (threadIdx.x == 0) Ls = L;
    }
    __syncthreads();
    const A inv = Ls > A(0) ? A(1) / Ls : A(0);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        A S = A(0);
        for (int s = 0; s < nsplit; ++s) S += pb[int64_t(s) * W + d] * w[s];
        out[bh * D + d] = st<T>(S * inv);
    }
}

// x [B,Hkv,T,D] → cache [S,Hkv,Tmax,D] rows b, positions pos[b] + t (positions outside
// [0, Tmax) are skipped: the op checks them on the host where it can); V elements a thread
template <typename T, int V>
__global__ void kv_write_kernel(T* __restrict__ cache, const T* __restrict__ x, const int64_t* __restrict__ pos,
                                int64_t Hkv, int64_t T_, int64_t Tmax, int64_t D, int64_t n) {
    const int64_t nv = D / V;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t dv = i % nv, rest = i / nv, t = rest % T_, bh = rest / T_, b = bh / Hkv;
        const int64_t p = pos[b] + t;
        if (p < 0 || p >= Tmax) continue;
        store_pack(cache + (bh * Tmax + p) * D + dv * V, load_pack<T, V>(x + rest * D + dv * V));
    }
}

// ---------------------------------------------------------------- host side

int pow2_at_least(int n) {
    int p = 1;
    while (p < n) p <<= 1;
    return p;
}

template <typename T>
using DecodeKernel = void (*)(DecodeArgs<T>);

// a kernel instance, the shared memory it takes at this D, and at most (D = 256)
template <typename T>
struct Variant {
    DecodeKernel<T> kern;
    size_t smem, smem_max;
};
template <typename T, int V, int LPR, int NV, int GB>
Variant<T> variant(int D) {
    return {attn_decode_kernel<T, V, LPR, NV, GB>, decode_smem<T, V, NV, GB>(D), decode_smem<T, V, NV, GB>(kMaxD)};
}

// the (V, LPR, NV) variant: 16-byte vectors with D/V ∈ {8, 16, 32} lanes a position, else
// element by element with 32 lanes (D ≤ 256); f64 (tests only) always the latter
template <typename T, int GB>
Variant<T> pick_variant(int D, bool aligned) {
    constexpr int V = 16 / int(sizeof(T));
    if constexpr (!std::is_same_v<T, double>) {
        if (aligned && D % V == 0) {
            switch (D / V) {
                case 8: return variant<T, V, 8, 1, GB>(D);
                case 16: return variant<T, V, 16, 1, GB>(D);
                case 32: return variant<T, V, 32, 1, GB>(D);
                default: break;
            }
        }
    }
    return variant<T, 1, 32, kMaxD / 32, GB>(D);
}

// Blocks of a kernel one multiprocessor holds at this shared-memory size. The first time a
// kernel meets a device its dynamic shared-memory limit is raised to the most any D needs
// (so later calls never lower it under another D's launch); both answers are kept, so a
// decode step pays a map lookup, not the driver calls.
int resident_blocks(const void* kernel, int dev, size_t smem, size_t smem_max) {
    static std::mutex mu;
    static std::map<std::pair<const void*, int>, bool> raised;
    static std::map<std::tuple<const void*, int, size_t>, int> known;
    std::lock_guard<std::mutex> lock(mu);
    auto it = known.find({kernel, dev, smem});
    if (it != known.end()) return it->second;
    if (!raised[{kernel, dev}] && smem_max > 48 * 1024)
        RN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_max)));
    raised[{kernel, dev}] = true;
    int n = 0;
    RN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreads, smem));
    n = std::max(n, 1);
    known[{kernel, dev, smem}] = n;
    return n;
}

template <typename T>
void decode_impl(int64_t B, int64_t Hq, int64_t Hkv, int64_t Tmax, int64_t D, double scale, void* out, const void* q,
                 const void* k, const void* v, const int64_t* lengths) {
    using A = typename acc_of<T>::type;
    const int dev = current_device();
    cudaStream_t st = stream();
    const int G = int(Hq / Hkv);
    const int GB = pow2_at_least(std::min(G, kMaxGB));
    const int ngr = (G + GB - 1) / GB;
    const bool aligned = aligned16(k) && aligned16(v);
    const Variant<T> var = GB == 1   ? pick_variant<T, 1>(int(D), aligned)
                           : GB == 2 ? pick_variant<T, 2>(int(D), aligned)
                           : GB == 4 ? pick_variant<T, 4>(int(D), aligned)
                                     : pick_variant<T, 8>(int(D), aligned);
    // Splits: as many as keep the whole grid within one wave of resident blocks (every
    // block has the same share of its sequence, so a second, partly filled wave would
    // nearly double the time), each at least kMinSplitLen positions of Tmax.
    const int64_t blocks = B * Hkv * ngr;
    const int64_t wave =
        int64_t(resident_blocks(reinterpret_cast<const void*>(var.kern), dev, var.smem, var.smem_max)) * sm_count(dev);
    const int nsplit = int(std::max<int64_t>(1, std::min<int64_t>({wave / blocks, Tmax / kMinSplitLen, kMaxSplit})));
    DecodeArgs<T> a{static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                    static_cast<T*>(out), nullptr, lengths, int(Hq), int(Hkv), G, ngr, int(D), int(Tmax), nsplit,
                    A(scale * 1.4426950408889634)};
    // the split workspace: its size depends on B, Hq, D, Tmax and the device only (so a
    // captured graph stays valid for any lengths); freed once the launches are queued
    // (Note [One compute stream], cuda/context.h)
    Tensor part = nsplit > 1 ? empty({B * Hq * nsplit * (D + 2)}, std::is_same_v<A, double> ? DType::f64 : DType::f32,
                                     Device::cuda(dev))
                             : Tensor();
    if (nsplit > 1) a.part = static_cast<A*>(part.raw_data());
    const dim3 grid(unsigned(nsplit), unsigned(Hkv * ngr), unsigned(B));
    var.kern<<<grid, kThreads, var.smem, st>>>(a);
    RN_CUDA_CHECK_LAUNCH();
    if (nsplit > 1) {
        attn_decode_combine<T><<<unsigned(B * Hq), kThreads, 0, st>>>(static_cast<T*>(out), a.part, nsplit, int(D));
        RN_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace

void attention_decode(DType dt, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tmax, int64_t D, double scale,
                      void* out, const void* q, const void* k, const void* v, const int64_t* lengths) {
    RN_CHECK(B >= 0 && Hq >= 0 && Hkv >= 1 && Tmax >= 0 && D >= 1, "attention_decode (CUDA): bad sizes B ", B,
             " Hq ", Hq, " Hkv ", Hkv, " Tmax ", Tmax, " D ", D);
    RN_CHECK(Hq % Hkv == 0, "attention_decode (CUDA): Hq = ", Hq, " is not a multiple of Hkv = ", Hkv);
    RN_CHECK(D <= kMaxD, "attention_decode (CUDA): head dim ", D, " > ", kMaxD, " is not supported");
    RN_CHECK(B <= 65535 && Hq <= 65535 && Tmax < (int64_t(1) << 31), "attention_decode (CUDA): B ", B, ", Hq ", Hq,
             " or Tmax ", Tmax, " past the grid's range (65535, 65535, 2^31)");
    if (B == 0 || Hq == 0) return;
    if (scale == 0.0) scale = 1.0 / std::sqrt(double(D));
    dispatch_float(dt, "attention_decode",
                   [&](auto tag) { decode_impl<decltype(tag)>(B, Hq, Hkv, Tmax, D, scale, out, q, k, v, lengths); });
}

void kv_cache_write(DType dt, int64_t B, int64_t Hkv, int64_t T, int64_t Tmax, int64_t D, void* cache, const void* x,
                    const int64_t* pos) {
    RN_CHECK(B >= 0 && Hkv >= 0 && T >= 0 && Tmax >= 0 && D >= 1, "kv_cache_write (CUDA): bad sizes B ", B, " Hkv ",
             Hkv, " T ", T, " Tmax ", Tmax, " D ", D);
    if (B * Hkv * T == 0) return;
    dispatch_float(dt, "kv_cache_write", [&](auto tag) {
        using T_ = decltype(tag);
        constexpr int V = 16 / int(sizeof(T_));
        if (D % V == 0 && aligned16(cache) && aligned16(x)) {
            const int64_t n = B * Hkv * T * (D / V);
            kv_write_kernel<T_, V><<<grid_for(n), 256, 0, stream()>>>(static_cast<T_*>(cache),
                                                                       static_cast<const T_*>(x), pos, Hkv, T, Tmax,
                                                                       D, n);
        } else {
            const int64_t n = B * Hkv * T * D;
            kv_write_kernel<T_, 1><<<grid_for(n), 256, 0, stream()>>>(static_cast<T_*>(cache),
                                                                       static_cast<const T_*>(x), pos, Hkv, T, Tmax,
                                                                       D, n);
        }
        RN_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace rn::cuda
