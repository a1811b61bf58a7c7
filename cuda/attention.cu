// cuda/attention.cu — causal attention on CUDA: the entry points of cuda/attention.h for the
// forward and the backward, the backward's preprocess Dᵢ = rowsum(dO ⊙ O), and a generic
// kernel family for every dtype and any head dim D ≤ 256 (f32, f64, and bf16 heads other
// than 64 and 128, computed in f32). bf16 with D ∈ {64, 128} goes to the tensor-core kernels
// of cuda/attention_tc.cu; the decode step and the KV-cache write are in
// cuda/attention_decode.cu.
//
// Dimension key: B, Hq, Hkv, G = Hq/Hkv, Tq, Tk, off = Tk − Tq, D as in ops/attention.h
// (query i sees keys j ≤ i + off; query head h reads kv head h/G). T the storage type, A its
// arithmetic type (float; double for f64), lse and D in A.
//
// The generic kernels are plain and exact rather than fast (they serve the tests, f32
// training of small models and odd head dims): blocks of 4 warps, 4 rows a warp, operands
// staged in shared memory as A, one key (or query) a lane for the dot products — no
// shuffles there — and one output dim a lane (D/32 a lane) for the sums of rows:
//   forward   rows = 16 queries, tiles of 32 keys: s = scale·q·k, online softmax (exp in A),
//             o = Σ p v / l, lse = m + ln l;
//   dq        rows = 16 queries, tiles of 32 keys: p = exp(s − lse), ds = p (dO·v − D),
//             dq = scale Σ ds k;
//   dk, dv    rows = 16 keys, tiles of 32 queries over the G heads of the kv group (summed in
//             registers, so no atomics): dv = Σ p dO, dk = scale Σ ds q.
// All three are deterministic. The rows a lane's dot product reads are padded by one
// element, so the 32 lanes of a warp fall in 32 different banks.
#include "cuda/attention.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/seq_rows.cuh"

namespace rn::cuda {

// The bf16 tensor-core path (cuda/attention_tc.cu; no header of its own: this file is its
// only caller). attention_tc_takes: the sizes it takes; the other two return false for a
// shape, alignment or row layout they do not take (rows null: contiguous tensors).
bool attention_tc_takes(const AttentionShape& s);
bool attention_tc_forward(const AttentionShape& s, double scale, void* out, float* lse, const void* q, const void* k,
                          const void* v, const QkvRows* rows);
bool attention_tc_backward(const AttentionShape& s, double scale, void* dq, void* dk, void* dv, const void* dout,
                           const void* q, const void* k, const void* v, const float* lse, const float* dvec,
                           const QkvRows* rows);

namespace {

constexpr int kThreads = 128;   // 4 warps
constexpr int kRows = 4;        // rows a warp
constexpr int kBR = 16;         // rows a block
constexpr int kBT = 32;         // keys (queries for dk/dv) a tile: one a lane
constexpr int kMaxD = 256;
constexpr int kDpl = kMaxD / 32;  // output dims a lane, at most
constexpr int kMaxGridY = 65535;

template <typename A>
__device__ __forceinline__ A neg_inf() {
    return -A(INFINITY);
}

// n rows of a contiguous [·, D] matrix of T at g into a shared [n][lds] array of A
// (rows ≥ rvalid zero), by the whole block
template <typename T, typename A>
__device__ __forceinline__ void stage_rows(A* s, int lds, const T* g, int n, int rvalid, int D) {
    for (int i = threadIdx.x; i < n * D; i += blockDim.x) {
        const int r = i / D, d = i - r * D;
        s[r * lds + d] = r < rvalid ? ld(g[int64_t(r) * D + d]) : A(0);
    }
}

// Σ_d x[d]·y[d] over D from shared memory
template <typename A>
__device__ __forceinline__ A dot(const A* x, const A* y, int D) {
    A s = A(0);
    for (int d = 0; d < D; ++d) s += x[d] * y[d];
    return s;
}

// ---------------------------------------------------------------- forward

// grid (B·Hq, min(⌈Tq/16⌉, 65535)) striding over query tiles, the longest first.
// Shared: Qs [16][D], Ks [32][D+1], Vs [32][D], Ps [4 warps][4 rows][32].
template <typename T>
__global__ void __launch_bounds__(kThreads)
attn_fwd_generic(T* __restrict__ out, typename acc_of<T>::type* __restrict__ lse, const T* __restrict__ q,
                 const T* __restrict__ k, const T* __restrict__ v, int Hq, int Hkv, int Tq, int Tk, int D,
                 typename acc_of<T>::type scale) {
    using A = typename acc_of<T>::type;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    A* Qs = reinterpret_cast<A*>(smem_raw);
    A* Ks = Qs + kBR * D;
    A* Vs = Ks + kBT * (D + 1);
    A* Ps = Vs + kBT * D;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int bh = blockIdx.x, b = bh / Hq, h = bh % Hq, hk = h / (Hq / Hkv), off = Tk - Tq;
    const int ntiles = (Tq + kBR - 1) / kBR;
    const T* kg = k + int64_t(b * Hkv + hk) * Tk * D;
    const T* vg = v + int64_t(b * Hkv + hk) * Tk * D;
    A* pw = Ps + warp * kRows * kBT;
    for (int yt = blockIdx.y; yt < ntiles; yt += gridDim.y) {
        const int q0 = (ntiles - 1 - yt) * kBR, qvalid = min(kBR, Tq - q0);
        const int64_t row0 = int64_t(bh) * Tq + q0;
        const int nkeys = min(Tk, q0 + qvalid + off);  // the last row sees keys < q0 + qvalid + off
        __syncthreads();  // the previous tile's readers are done
        stage_rows(Qs, D, q + row0 * D, kBR, qvalid, D);
        A acc[kRows][kDpl], m[kRows], l[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            m[r] = neg_inf<A>();
            l[r] = A(0);
#pragma unroll
            for (int i = 0; i < kDpl; ++i) acc[r][i] = A(0);
        }
        for (int k0 = 0; k0 < nkeys; k0 += kBT) {
            __syncthreads();
            const int kvalid = min(kBT, Tk - k0);
            stage_rows(Ks, D + 1, kg + int64_t(k0) * D, kBT, kvalid, D);
            stage_rows(Vs, D, vg + int64_t(k0) * D, kBT, kvalid, D);
            __syncthreads();
            const int key = k0 + lane;
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                const int row = q0 + warp * kRows + r;
                A s = dot(Qs + (warp * kRows + r) * D, Ks + lane * (D + 1), D) * scale;
                if (key >= Tk || key > row + off) s = neg_inf<A>();
                const A mx = warp_max(s);
                const A mnew = mx > m[r] ? mx : m[r];
                const A mu = mnew == neg_inf<A>() ? A(0) : mnew;  // no inf − inf while nothing is visible
                const A corr = d_exp(m[r] - mu), p = d_exp(s - mu);
                l[r] = l[r] * corr + warp_sum(p);
                m[r] = mnew;
#pragma unroll
                for (int i = 0; i < kDpl; ++i) acc[r][i] *= corr;
                pw[r * kBT + lane] = p;
            }
            __syncwarp();
            for (int j = 0; j < kBT; ++j) {
#pragma unroll
                for (int i = 0; i < kDpl; ++i) {
                    const int d = lane + 32 * i;
                    if (d < D) {
                        const A vj = Vs[j * D + d];
#pragma unroll
                        for (int r = 0; r < kRows; ++r) acc[r][i] += pw[r * kBT + j] * vj;
                    }
                }
            }
            __syncwarp();
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int rr = warp * kRows + r;
            if (rr >= qvalid) continue;
            const A inv = A(1) / l[r];
#pragma unroll
            for (int i = 0; i < kDpl; ++i) {
                const int d = lane + 32 * i;
                if (d < D) out[(row0 + rr) * D + d] = st<T>(acc[r][i] * inv);
            }
            if (lane == 0) lse[row0 + rr] = m[r] + d_log(l[r]);
        }
    }
}

// ---------------------------------------------------------------- backward

// dvec[row] = Σ_d dout[row, d]·out[row, d] (A), a warp a row; row = bh·Tq + t, the rows of
// dout and out where rdo and ro say
template <typename T>
__global__ void __launch_bounds__(256)
attn_bwd_preprocess(typename acc_of<T>::type* __restrict__ dvec, const T* __restrict__ dout, Rows rdo,
                    const T* __restrict__ out, Rows ro, int Hq, int Tq, int64_t rows, int D) {
    using A = typename acc_of<T>::type;
    const int lane = threadIdx.x & 31;
    const int64_t w0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    const int64_t nw = (int64_t(gridDim.x) * blockDim.x) >> 5;
    for (int64_t r = w0; r < rows; r += nw) {
        const T* gd = dout + rdo.at(r / Tq, Hq, r % Tq);
        const T* go = out + ro.at(r / Tq, Hq, r % Tq);
        A s = A(0);
        for (int d = lane; d < D; d += 32) s += ld(gd[d]) * ld(go[d]);
        s = warp_sum(s);
        if (lane == 0) dvec[r] = s;
    }
}

// dq: grid (B·Hq, min(⌈Tq/16⌉, 65535)), the longest tiles first.
// Shared: Qs, dOs [16][D], Ks, Vs [32][D+1], Ps [4][4][32].
template <typename T>
__global__ void __launch_bounds__(kThreads)
attn_bwd_dq_generic(T* __restrict__ dq, const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                    const T* __restrict__ v, const typename acc_of<T>::type* __restrict__ lse,
                    const typename acc_of<T>::type* __restrict__ dvec, int Hq, int Hkv, int Tq, int Tk, int D,
                    typename acc_of<T>::type scale) {
    using A = typename acc_of<T>::type;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    A* Qs = reinterpret_cast<A*>(smem_raw);
    A* dOs = Qs + kBR * D;
    A* Ks = dOs + kBR * D;
    A* Vs = Ks + kBT * (D + 1);
    A* Ps = Vs + kBT * (D + 1);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int bh = blockIdx.x, b = bh / Hq, h = bh % Hq, hk = h / (Hq / Hkv), off = Tk - Tq;
    const int ntiles = (Tq + kBR - 1) / kBR;
    const T* kg = k + int64_t(b * Hkv + hk) * Tk * D;
    const T* vg = v + int64_t(b * Hkv + hk) * Tk * D;
    A* pw = Ps + warp * kRows * kBT;
    for (int yt = blockIdx.y; yt < ntiles; yt += gridDim.y) {
        const int q0 = (ntiles - 1 - yt) * kBR, qvalid = min(kBR, Tq - q0);
        const int64_t row0 = int64_t(bh) * Tq + q0;
        const int nkeys = min(Tk, q0 + qvalid + off);
        __syncthreads();
        stage_rows(Qs, D, q + row0 * D, kBR, qvalid, D);
        stage_rows(dOs, D, dout + row0 * D, kBR, qvalid, D);
        A acc[kRows][kDpl], L[kRows], Dd[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int rr = warp * kRows + r;
            L[r] = rr < qvalid ? lse[row0 + rr] : A(0);
            Dd[r] = rr < qvalid ? dvec[row0 + rr] : A(0);
#pragma unroll
            for (int i = 0; i < kDpl; ++i) acc[r][i] = A(0);
        }
        for (int k0 = 0; k0 < nkeys; k0 += kBT) {
            __syncthreads();
            const int kvalid = min(kBT, Tk - k0);
            stage_rows(Ks, D + 1, kg + int64_t(k0) * D, kBT, kvalid, D);
            stage_rows(Vs, D + 1, vg + int64_t(k0) * D, kBT, kvalid, D);
            __syncthreads();
            const int key = k0 + lane;
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                const int rr = warp * kRows + r, row = q0 + rr;
                A ds = A(0);
                if (rr < qvalid && key < Tk && key <= row + off) {
                    const A s = dot(Qs + rr * D, Ks + lane * (D + 1), D) * scale;
                    const A dp = dot(dOs + rr * D, Vs + lane * (D + 1), D);
                    ds = d_exp(s - L[r]) * (dp - Dd[r]);
                }
                pw[r * kBT + lane] = ds;
            }
            __syncwarp();
            for (int j = 0; j < kBT; ++j) {
#pragma unroll
                for (int i = 0; i < kDpl; ++i) {
                    const int d = lane + 32 * i;
                    if (d < D) {
                        const A kj = Ks[j * (D + 1) + d];
#pragma unroll
                        for (int r = 0; r < kRows; ++r) acc[r][i] += pw[r * kBT + j] * kj;
                    }
                }
            }
            __syncwarp();
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int rr = warp * kRows + r;
            if (rr >= qvalid) continue;
#pragma unroll
            for (int i = 0; i < kDpl; ++i) {
                const int d = lane + 32 * i;
                if (d < D) dq[(row0 + rr) * D + d] = st<T>(acc[r][i] * scale);
            }
        }
    }
}

// dk, dv: grid (B·Hkv, min(⌈Tk/16⌉, 65535)), the first key tiles (seen by the most queries)
// first. Shared: Ks, Vs [16][D], Qs, dOs [32][D+1], Ls, Ds [32], Ps, DSs [4][4][32].
template <typename T>
__global__ void __launch_bounds__(kThreads)
attn_bwd_dkdv_generic(T* __restrict__ dk, T* __restrict__ dv, const T* __restrict__ dout, const T* __restrict__ q,
                      const T* __restrict__ k, const T* __restrict__ v,
                      const typename acc_of<T>::type* __restrict__ lse,
                      const typename acc_of<T>::type* __restrict__ dvec, int Hq, int Hkv, int Tq, int Tk, int D,
                      typename acc_of<T>::type scale) {
    using A = typename acc_of<T>::type;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    A* Ks = reinterpret_cast<A*>(smem_raw);
    A* Vs = Ks + kBR * D;
    A* Qs = Vs + kBR * D;
    A* dOs = Qs + kBT * (D + 1);
    A* Ls = dOs + kBT * (D + 1);
    A* Ds = Ls + kBT;
    A* Ps = Ds + kBT;
    A* DSs = Ps + 4 * kRows * kBT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int bhk = blockIdx.x, b = bhk / Hkv, hk = bhk % Hkv, G = Hq / Hkv, off = Tk - Tq;
    const int ntiles = (Tk + kBR - 1) / kBR;
    A* pw = Ps + warp * kRows * kBT;
    A* dsw = DSs + warp * kRows * kBT;
    for (int kt = blockIdx.y; kt < ntiles; kt += gridDim.y) {
        const int k0 = kt * kBR, kvalid = min(kBR, Tk - k0);
        const int64_t krow0 = int64_t(bhk) * Tk + k0;
        __syncthreads();
        stage_rows(Ks, D, k + krow0 * D, kBR, kvalid, D);
        stage_rows(Vs, D, v + krow0 * D, kBR, kvalid, D);
        A ak[kRows][kDpl], av[kRows][kDpl];
#pragma unroll
        for (int r = 0; r < kRows; ++r)
#pragma unroll
            for (int i = 0; i < kDpl; ++i) ak[r][i] = av[r][i] = A(0);
        const int qstart = max(0, k0 - off);  // the first query that sees key k0
        for (int hg = 0; hg < G; ++hg) {
            const int64_t qrow = int64_t(b * Hq + hk * G + hg) * Tq;
            for (int qs = qstart; qs < Tq; qs += kBT) {
                __syncthreads();
                const int qvalid = min(kBT, Tq - qs);
                stage_rows(Qs, D + 1, q + (qrow + qs) * D, kBT, qvalid, D);
                stage_rows(dOs, D + 1, dout + (qrow + qs) * D, kBT, qvalid, D);
                if (threadIdx.x < kBT) {
                    const bool ok = int(threadIdx.x) < qvalid;
                    Ls[threadIdx.x] = ok ? lse[qrow + qs + threadIdx.x] : A(0);
                    Ds[threadIdx.x] = ok ? dvec[qrow + qs + threadIdx.x] : A(0);
                }
                __syncthreads();
                const int qi = qs + lane;
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    const int rr = warp * kRows + r, key = k0 + rr;
                    A p = A(0), ds = A(0);
                    if (rr < kvalid && qi < Tq && key <= qi + off) {
                        const A s = dot(Ks + rr * D, Qs + lane * (D + 1), D) * scale;
                        const A dp = dot(Vs + rr * D, dOs + lane * (D + 1), D);
                        p = d_exp(s - Ls[lane]);
                        ds = p * (dp - Ds[lane]);
                    }
                    pw[r * kBT + lane] = p;
                    dsw[r * kBT + lane] = ds;
                }
                __syncwarp();
                for (int j = 0; j < kBT; ++j) {
#pragma unroll
                    for (int i = 0; i < kDpl; ++i) {
                        const int d = lane + 32 * i;
                        if (d < D) {
                            const A oj = dOs[j * (D + 1) + d], qj = Qs[j * (D + 1) + d];
#pragma unroll
                            for (int r = 0; r < kRows; ++r) {
                                av[r][i] += pw[r * kBT + j] * oj;
                                ak[r][i] += dsw[r * kBT + j] * qj;
                            }
                        }
                    }
                }
                __syncwarp();
            }
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int rr = warp * kRows + r;
            if (rr >= kvalid) continue;
#pragma unroll
            for (int i = 0; i < kDpl; ++i) {
                const int d = lane + 32 * i;
                if (d < D) {
                    dk[(krow0 + rr) * D + d] = st<T>(ak[r][i] * scale);
                    dv[(krow0 + rr) * D + d] = st<T>(av[r][i]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- host side

template <typename K>
void prepare_smem(K kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        RN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

void check_shape(const AttentionShape& s, const char* what) {
    RN_CHECK(s.B >= 0 && s.Hq >= 0 && s.Hkv >= 1 && s.Tq >= 0 && s.Tk >= s.Tq && s.D >= 1, what,
             " (CUDA): bad sizes B ", s.B, " Hq ", s.Hq, " Hkv ", s.Hkv, " Tq ", s.Tq, " Tk ", s.Tk, " D ", s.D,
             " (expected Tk >= Tq, D >= 1)");
    RN_CHECK(s.Hq % s.Hkv == 0, what, " (CUDA): Hq = ", s.Hq, " is not a multiple of Hkv = ", s.Hkv);
    RN_CHECK(s.D <= kMaxD, what, " (CUDA): head dim ", s.D, " > ", kMaxD, " is not supported");
    RN_CHECK(s.Tk < (int64_t(1) << 31) && s.B * s.Hq < (int64_t(1) << 31), what, " (CUDA): sizes past int range");
}

// (cuda/seq_rows.cuh's check_no_rows, naming the shape)
void check_shape_has_no_rows(const QkvRows* rows, const AttentionShape& s, const char* op) {
    cuda::check_no_rows(rows, op, " (B ", s.B, " Hq ", s.Hq, " Hkv ", s.Hkv, " Tq ", s.Tq, " Tk ", s.Tk, " D ", s.D,
                        ")");
}

double resolve_scale(double scale, int64_t D) { return scale != 0.0 ? scale : 1.0 / std::sqrt(double(D)); }

template <typename T>
void forward_generic(const AttentionShape& s, double scale, void* out, void* lse, const void* q, const void* k,
                     const void* v) {
    using A = typename acc_of<T>::type;
    const int D = int(s.D);
    const size_t smem = size_t(kBR * D + kBT * (D + 1) + kBT * D + 4 * kRows * kBT) * sizeof(A);
    prepare_smem(attn_fwd_generic<T>, smem);
    const dim3 grid(unsigned(s.B * s.Hq), unsigned(std::min<int64_t>((s.Tq + kBR - 1) / kBR, kMaxGridY)));
    attn_fwd_generic<T><<<grid, kThreads, smem, stream()>>>(
        static_cast<T*>(out), static_cast<A*>(lse), static_cast<const T*>(q), static_cast<const T*>(k),
        static_cast<const T*>(v), int(s.Hq), int(s.Hkv), int(s.Tq), int(s.Tk), D, A(scale));
    RN_CUDA_CHECK_LAUNCH();
}

template <typename T>
void backward_generic(const AttentionShape& s, double scale, void* dq, void* dk, void* dv, const void* dout,
                      const void* q, const void* k, const void* v, const void* lse, const void* dvec) {
    using A = typename acc_of<T>::type;
    const int D = int(s.D);
    cudaStream_t st = stream();
    const size_t smem_kv = size_t(2 * kBR * D + 2 * kBT * (D + 1) + 2 * kBT + 2 * 4 * kRows * kBT) * sizeof(A);
    prepare_smem(attn_bwd_dkdv_generic<T>, smem_kv);
    const dim3 grid_kv(unsigned(s.B * s.Hkv), unsigned(std::min<int64_t>((s.Tk + kBR - 1) / kBR, kMaxGridY)));
    attn_bwd_dkdv_generic<T><<<grid_kv, kThreads, smem_kv, st>>>(
        static_cast<T*>(dk), static_cast<T*>(dv), static_cast<const T*>(dout), static_cast<const T*>(q),
        static_cast<const T*>(k), static_cast<const T*>(v), static_cast<const A*>(lse), static_cast<const A*>(dvec),
        int(s.Hq), int(s.Hkv), int(s.Tq), int(s.Tk), D, A(scale));
    RN_CUDA_CHECK_LAUNCH();
    const size_t smem_q = size_t(2 * kBR * D + 2 * kBT * (D + 1) + 4 * kRows * kBT) * sizeof(A);
    prepare_smem(attn_bwd_dq_generic<T>, smem_q);
    const dim3 grid_q(unsigned(s.B * s.Hq), unsigned(std::min<int64_t>((s.Tq + kBR - 1) / kBR, kMaxGridY)));
    attn_bwd_dq_generic<T><<<grid_q, kThreads, smem_q, st>>>(
        static_cast<T*>(dq), static_cast<const T*>(dout), static_cast<const T*>(q), static_cast<const T*>(k),
        static_cast<const T*>(v), static_cast<const A*>(lse), static_cast<const A*>(dvec), int(s.Hq), int(s.Hkv),
        int(s.Tq), int(s.Tk), D, A(scale));
    RN_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_takes_rows(DType dt, const AttentionShape& s) { return dt == DType::bf16 && attention_tc_takes(s); }

void attention_forward(DType dt, const AttentionShape& s, double scale, void* out, void* lse, const void* q,
                       const void* k, const void* v, const QkvRows* rows) {
    check_shape(s, "attention");
    if (s.B == 0 || s.Hq == 0 || s.Tq == 0) return;
    scale = resolve_scale(scale, s.D);
    if (dt == DType::bf16 && attention_tc_forward(s, scale, out, static_cast<float*>(lse), q, k, v, rows)) return;
    check_shape_has_no_rows(rows, s, "attention");
    dispatch_float(dt, "attention", [&](auto tag) { forward_generic<decltype(tag)>(s, scale, out, lse, q, k, v); });
}

void attention_backward(DType dt, const AttentionShape& s, double scale, void* dq, void* dk, void* dv,
                        const void* dout, const void* q, const void* k, const void* v, const void* out,
                        const void* lse, const QkvRows* rows) {
    check_shape(s, "attention backward");
    const int dev = current_device();
    cudaStream_t st = stream();
    const size_t es = dtype_size(dt);
    const size_t nq = size_t(s.B * s.Hq * s.Tq * s.D), nkv = size_t(s.B * s.Hkv * s.Tk * s.D);
    if (s.B == 0 || s.Hq == 0 || s.Tq == 0) {  // no queries: no gradient reaches k or v
        check_shape_has_no_rows(rows, s, "attention backward");  // (the op gives no rows for empty shapes)
        if (dk && nkv) RN_CUDA_CHECK(cudaMemsetAsync(dk, 0, nkv * es, st));
        if (dv && nkv) RN_CUDA_CHECK(cudaMemsetAsync(dv, 0, nkv * es, st));
        return;
    }
    scale = resolve_scale(scale, s.D);
    // a gradient the caller does not want is computed into scratch and dropped (freed once
    // queued: Note [One compute stream], cuda/context.h)
    // (scratch is contiguous: rows given for a gradient not wanted are dropped)
    QkvRows wanted_rows = rows ? *rows : QkvRows{};
    if (!dq) wanted_rows.dq = {};
    if (!dk) wanted_rows.dk = {};
    if (!dv) wanted_rows.dv = {};
    if (rows) rows = &wanted_rows;
    Tensor dq_tmp = dq ? Tensor() : empty({int64_t(nq)}, dt, Device::cuda(dev));
    Tensor dk_tmp = dk ? Tensor() : empty({int64_t(nkv)}, dt, Device::cuda(dev));
    Tensor dv_tmp = dv ? Tensor() : empty({int64_t(nkv)}, dt, Device::cuda(dev));
    if (!dq) dq = dq_tmp.raw_data();
    if (!dk) dk = dk_tmp.raw_data();
    if (!dv) dv = dv_tmp.raw_data();
    // D = rowsum(dO ⊙ O), in A ([B,Hq,Tq])
    const int64_t nrows = s.B * s.Hq * s.Tq;
    const DType adt = dt == DType::f64 ? DType::f64 : DType::f32;
    Tensor dvec = empty({nrows}, adt, Device::cuda(dev));
    const CallRows r(rows, s.Hq, s.Tq, s.Hkv, s.Tk, s.D, s.D);
    dispatch_float(dt, "attention backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        attn_bwd_preprocess<T><<<grid_for(nrows * 32, 256), 256, 0, st>>>(
            static_cast<A*>(dvec.raw_data()), static_cast<const T*>(dout), r.dout, static_cast<const T*>(out), r.out,
            int(s.Hq), int(s.Tq), nrows, int(s.D));
        RN_CUDA_CHECK_LAUNCH();
        if constexpr (std::is_same_v<T, bf16_t>) {
            if (attention_tc_backward(s, scale, dq, dk, dv, dout, q, k, v, static_cast<const float*>(lse),
                                      static_cast<const float*>(dvec.raw_data()), rows))
                return;
        }
        check_shape_has_no_rows(rows, s, "attention backward");
        backward_generic<T>(s, scale, dq, dk, dv, dout, q, k, v, lse, dvec.raw_data());
    });
}

}  // namespace rn::cuda
