// cuda/norm.cu — layer_norm and rms_norm kernels (mirror of ops/norm_cpu.cpp). Dimension
// key: N rows, C the normalised (last) dim, every buffer contiguous; T the storage type
// (float, double, bf16), A its arithmetic and statistics type (float, or double for f64).
//
// RMSNorm is LayerNorm without centring, so one forward and one backward kernel serve both
// (`centered`). With x̂ = (x − μ)·rstd (μ = 0 for rms), ĝ = dout ⊙ w:
//   dx = rstd · (ĝ − mean_c(ĝ) − x̂ · mean_c(ĝ ⊙ x̂))     (no mean_c(ĝ) term for rms)
//   dw = Σ_rows dout ⊙ x̂,  db = Σ_rows dout
// With a gate (gated_rms_norm: out = x̂ ⊙ silu(gate), no weight) ĝ = dout ⊙ silu(gate) and
//   dgate = dout ⊙ x̂ ⊙ silu'(gate),  silu'(z) = σ(z)·(1 + z·(1 − σ(z)))
//
// Shapes of work: a row of C ≤ 32·K·V elements goes to one warp (8 rows a 256-thread
// block), a longer one to a whole block (≤ 512 threads); K vectors of V = 16 / sizeof(T)
// elements a thread stay in registers between the passes over a row, so x (and dout) are
// read from memory once; rows too long for that (C > 16384 f32 forward) are re-read from
// L2. Thread j owns the columns of vectors j, j + nth, ...; vectors are used only when C is
// a multiple of V and every operand is 16-byte aligned (else V = 1), so that ownership is
// the same on every row — the backward needs that for dw/db.
//
// dw/db without atomics, deterministic: each thread adds its rows' dout ⊙ x̂ and dout for
// the columns it owns — in registers when the row is cached, else in shared memory (or,
// past 2·C accumulators of shared memory, in the block's row of the partials in global
// memory), never sharing a column, so no races. A block's warps then add theirs in warp
// order into the block's row of a partials buffer [G, C] (G blocks), and a second kernel
// sums the G partials of each column in a fixed tree.
// The variance is two-pass (Σ(x − μ)², not Σx² − μ²) over the registers, as on the CPU.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/env.h"
#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/pdl.cuh"
#include "cuda/math.cuh"
#include "cuda/norm.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

constexpr int kWarpBlock = 256;  // threads of a block in warp-per-row mode (8 rows)
constexpr int kMaxBlock = 512;   // block size cap of the block-per-row kernels
constexpr int kSumCols = 32;     // column-sum kernel: 32 columns × 32 partial rows a block
constexpr int kSumRows = 32;

// The threads that share one row: a warp (WARP) or the whole block.
template <bool WARP>
struct Group {
    int lane, nth, gi;  // gi: which group of its block
    int64_t row0, rstride;
    __device__ Group() {
        if constexpr (WARP) {
            lane = threadIdx.x & 31;
            nth = 32;
            gi = threadIdx.x >> 5;
            row0 = int64_t(blockIdx.x) * (blockDim.x >> 5) + gi;
            rstride = int64_t(gridDim.x) * (blockDim.x >> 5);
        } else {
            lane = threadIdx.x;
            nth = blockDim.x;
            gi = 0;
            row0 = blockIdx.x;
            rstride = gridDim.x;
        }
    }
    template <typename A>
    __device__ A sum(A v) const {
        if constexpr (WARP) return warp_sum(v);
        else return block_sum(v);
    }
};

// one output vector: (x − μ)·rstd ⊙ w + b, times silu(gate) when a gate row is given
template <typename T, int V, typename A>
__device__ __forceinline__ Pack<T, V> norm_out(const Pack<T, V>& xv, const T* w, const T* b, int64_t i, A mu, A rs,
                                               const T* gate = nullptr) {
    Pack<T, V> o, wv{}, bv{}, gv{};
    if (w) wv = load_pack<T, V>(w + i * V);
    if (b) bv = load_pack<T, V>(b + i * V);
    if (gate) gv = load_pack<T, V>(gate + i * V);
#pragma unroll
    for (int e = 0; e < V; ++e) {
        A v = (ld(xv.v[e]) - mu) * rs;
        if (w) v *= ld(wv.v[e]);
        if (b) v += ld(bv.v[e]);
        if (gate) {
            const A gx = ld(gv.v[e]);
            v *= gx * sigm(gx);
        }
        o.v[e] = st<T>(v);
    }
    return o;
}

// ---------------------------------------------------------------- forward

// x + res rounded to T (as the unfused add rounds it), the vector the norm then reads
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> add_packs(const Pack<T, V>& a, const Pack<T, V>& b) {
    Pack<T, V> o;
#pragma unroll
    for (int e = 0; e < V; ++e) o.v[e] = st<T>(ld(a.v[e]) + ld(b.v[e]));
    return o;
}

// out [N, C], mean [N] (may be null), rstd [N]; CACHE vectors a thread kept in registers
// (the launcher guarantees C / V ≤ nth · CACHE), CACHE = 0: three reads of the row.
// res (may be null): the row normalised is x + res, also written to sum [N, C] — a residual
// add fused into the norm after it (a decode step's launches: ops/norm.h add_rms_norm).
// gate (may be null) [N, C]: the output is multiplied by silu(gate) (ops/norm.h gated_rms_norm).
template <typename T, int V, bool WARP, int CACHE>
__global__ void __launch_bounds__(WARP ? kWarpBlock : kMaxBlock)
norm_forward_kernel(T* __restrict__ out, typename acc_of<T>::type* __restrict__ mean,
                    typename acc_of<T>::type* __restrict__ rstd, const T* __restrict__ x, const T* __restrict__ w,
                    const T* __restrict__ b, int64_t rows, int64_t cols, typename acc_of<T>::type eps,
                    bool centered, const T* __restrict__ res, T* __restrict__ sum, const T* __restrict__ gate) {
    using A = typename acc_of<T>::type;
    using P = Pack<T, V>;
    const Group<WARP> g;
    const int64_t nvec = cols / V;
    pdl_wait();  // a decode step's launches overlap (cuda/pdl.h); nothing is read before
    pdl_trigger();
    for (int64_t r = g.row0; r < rows; r += g.rstride) {
        const T* xr = x + r * cols;  // [C]
        T* outr = out + r * cols;    // [C]
        A mu = A(0), ss = A(0);
        if constexpr (CACHE > 0) {
            P buf[CACHE];
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                const int64_t i = g.lane + int64_t(k) * g.nth;
                if (i < nvec) {
                    buf[k] = load_pack<T, V>(xr + i * V);
                    if (res) {
                        buf[k] = add_packs<T, V>(buf[k], load_pack<T, V>(res + r * cols + i * V));
                        store_pack(sum + r * cols + i * V, buf[k]);
                    }
                }
            }
            if (centered) {
                A s = A(0);
#pragma unroll
                for (int k = 0; k < CACHE; ++k) {
                    if (g.lane + int64_t(k) * g.nth < nvec) {
#pragma unroll
                        for (int e = 0; e < V; ++e) s += ld(buf[k].v[e]);
                    }
                }
                mu = g.sum(s) / A(cols);
            }
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                if (g.lane + int64_t(k) * g.nth < nvec) {
#pragma unroll
                    for (int e = 0; e < V; ++e) {
                        const A d = ld(buf[k].v[e]) - mu;
                        ss += d * d;
                    }
                }
            }
            const A rs = A(1) / d_sqrt(g.sum(ss) / A(cols) + eps);
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                const int64_t i = g.lane + int64_t(k) * g.nth;
                if (i < nvec) store_pack(outr + i * V, norm_out<T, V>(buf[k], w, b, i, mu, rs, gate ? gate + r * cols : nullptr));
            }
            if (g.lane == 0) {
                if (mean) mean[r] = mu;
                if (rstd) rstd[r] = rs;  // null: a forward-only caller (the fused forms)
            }
        } else {
            // vector i of the row normalised: x, or x + res recomputed at every pass (never read
            // back from sum, which this kernel writes: x and res may be read through the
            // non-coherent path)
            auto row_vec = [&](int64_t i) {
                const P v = load_pack<T, V>(xr + i * V);
                return res ? add_packs<T, V>(v, load_pack<T, V>(res + r * cols + i * V)) : v;
            };
            if (centered) {
                A s = A(0);
                for (int64_t i = g.lane; i < nvec; i += g.nth) {
                    const P v = row_vec(i);
#pragma unroll
                    for (int e = 0; e < V; ++e) s += ld(v.v[e]);
                }
                mu = g.sum(s) / A(cols);
            }
            for (int64_t i = g.lane; i < nvec; i += g.nth) {
                const P v = row_vec(i);
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    const A d = ld(v.v[e]) - mu;
                    ss += d * d;
                }
            }
            const A rs = A(1) / d_sqrt(g.sum(ss) / A(cols) + eps);
            for (int64_t i = g.lane; i < nvec; i += g.nth) {
                const P v = row_vec(i);
                if (res) store_pack(sum + r * cols + i * V, v);
                store_pack(outr + i * V, norm_out<T, V>(v, w, b, i, mu, rs, gate ? gate + r * cols : nullptr));
            }
            if (g.lane == 0) {
                if (mean) mean[r] = mu;
                if (rstd) rstd[r] = rs;  // null: a forward-only caller (the fused forms)
            }
        }
    }
}

// ---------------------------------------------------------------- backward

// Per vector of one row: ĝ = dout ⊙ w (⊙ silu(gate) with a gate row) and x̂, the inputs of
// every backward formula.
template <typename T, int V, typename A>
__device__ __forceinline__ void grad_terms(const Pack<T, V>& xv, const Pack<T, V>& gv, const T* w, const T* gate,
                                           int64_t i, A mu, A rs, A (&gw)[V], A (&xh)[V]) {
    Pack<T, V> wv{}, zv{};
    if (w) wv = load_pack<T, V>(w + i * V);
    if (gate) zv = load_pack<T, V>(gate + i * V);
#pragma unroll
    for (int e = 0; e < V; ++e) {
        gw[e] = w ? ld(gv.v[e]) * ld(wv.v[e]) : ld(gv.v[e]);
        if (gate) {
            const A z = ld(zv.v[e]);
            gw[e] *= z * sigm(z);
        }
        xh[e] = (ld(xv.v[e]) - mu) * rs;
    }
}

// dx [N, C] (may be null); part_w / part_b [gridDim.x, C] (null when dw / db are not
// wanted) get this block's sums over its rows. The group's accumulators [C] live in
// registers (CACHE > 0: K vectors a thread, the columns it owns) or are read and written
// every row (CACHE = 0) in `acc`: the dynamic shared memory when acc_in_smem (groups ×
// (dw?, db?) × C of A), else straight in the block's rows of part_w / part_b. A warp-per-row
// block always stages through shared memory, to add its warps' sums in warp order.
// gate (may be null; then no w, part_w, part_b) [N, C]: the forward multiplied by silu(gate);
// dgate (may be null) [N, C] gets that product's gradient.
// NA: which register accumulators the cached path keeps (1 dw, 2 db, 3 both or either): an
// RMSNorm (1) or a gated norm (0) holds no db (and no dw) sums live across the rows.
template <typename T, int V, bool WARP, int CACHE, int NA = 3>
__global__ void __launch_bounds__(WARP ? kWarpBlock : kMaxBlock)
norm_backward_kernel(T* __restrict__ dx, typename acc_of<T>::type* __restrict__ part_w,
                     typename acc_of<T>::type* __restrict__ part_b, const T* __restrict__ dout,
                     const T* __restrict__ x, const T* __restrict__ w, const typename acc_of<T>::type* __restrict__ mean,
                     const typename acc_of<T>::type* __restrict__ rstd, int64_t rows, int64_t cols, bool centered,
                     bool acc_in_smem, const T* __restrict__ gate, T* __restrict__ dgate) {
    using A = typename acc_of<T>::type;
    using P = Pack<T, V>;
    using PA = Pack<A, V>;
    extern __shared__ __align__(32) unsigned char smem_raw[];
    const Group<WARP> g;
    const int64_t nvec = cols / V;
    const int nacc = (part_w != nullptr) + (part_b != nullptr);

    // this group's accumulators [C] in memory (only the vectors it owns are ever touched)
    A* aw = nullptr;  // [C]
    A* ab = nullptr;  // [C]
    if (nacc) {
        if (acc_in_smem) {
            A* base = reinterpret_cast<A*>(smem_raw) + int64_t(g.gi) * nacc * cols;
            aw = part_w ? base : nullptr;
            ab = part_b ? base + (part_w ? cols : 0) : nullptr;
        } else {
            aw = part_w ? part_w + int64_t(blockIdx.x) * cols : nullptr;
            ab = part_b ? part_b + int64_t(blockIdx.x) * cols : nullptr;
        }
        if constexpr (CACHE == 0) {
            for (int64_t i = g.lane; i < nvec; i += g.nth) {
                if (aw) store_pack(aw + i * V, PA{});
                if (ab) store_pack(ab + i * V, PA{});
            }
        }
    }
    // CACHE > 0: the accumulators of the thread's K vectors, in registers across all rows
    constexpr int KR = CACHE > 0 ? CACHE : 1;
    PA rw[KR], rb[KR];
#pragma unroll
    for (int k = 0; k < KR; ++k) rw[k] = rb[k] = PA{};

    // dx (and dgate) of one vector, once the row sums are known; leaves x̂ for the dw sum
    auto write_dx = [&](const P& xv, const P& gv, int64_t i, A mu, A rs, A mean_g, A mean_gx, T* dxr, const T* gtr,
                        T* dgr, A (&xh)[V]) {
        A gw[V];
        grad_terms<T, V>(xv, gv, w, gtr, i, mu, rs, gw, xh);
        if (dxr) {
            P o;
#pragma unroll
            for (int e = 0; e < V; ++e) o.v[e] = st<T>(rs * (gw[e] - mean_g - xh[e] * mean_gx));
            store_pack(dxr + i * V, o);
        }
        if (dgr) {
            const P zv = load_pack<T, V>(gtr + i * V);
            P o;
#pragma unroll
            for (int e = 0; e < V; ++e) {
                const A z = ld(zv.v[e]), sz = sigm(z);
                o.v[e] = st<T>(ld(gv.v[e]) * xh[e] * sz * (A(1) + z * (A(1) - sz)));
            }
            store_pack(dgr + i * V, o);
        }
    };

    for (int64_t r = g.row0; r < rows; r += g.rstride) {
        const T* xr = x + r * cols;             // [C]
        const T* gr = dout + r * cols;          // [C]
        T* dxr = dx ? dx + r * cols : nullptr;  // [C]
        const T* gtr = gate ? gate + r * cols : nullptr;
        T* dgr = dgate ? dgate + r * cols : nullptr;
        const A mu = centered ? mean[r] : A(0), rs = rstd[r];
        A sg = A(0), sgx = A(0);  // Σ ĝ, Σ ĝ x̂
        if constexpr (CACHE > 0) {
            P xb[CACHE], gb[CACHE];
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                const int64_t i = g.lane + int64_t(k) * g.nth;
                if (i < nvec) {
                    xb[k] = load_pack<T, V>(xr + i * V);
                    gb[k] = load_pack<T, V>(gr + i * V);
                }
            }
            if (dx) {
#pragma unroll
                for (int k = 0; k < CACHE; ++k) {
                    const int64_t i = g.lane + int64_t(k) * g.nth;
                    if (i < nvec) {
                        A gw[V], xh[V];
                        grad_terms<T, V>(xb[k], gb[k], w, gtr, i, mu, rs, gw, xh);
#pragma unroll
                        for (int e = 0; e < V; ++e) {
                            sg += gw[e];
                            sgx += gw[e] * xh[e];
                        }
                    }
                }
                if (centered) sg = g.sum(sg);
                sgx = g.sum(sgx);
            }
            const A mean_g = centered ? sg / A(cols) : A(0), mean_gx = sgx / A(cols);
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                const int64_t i = g.lane + int64_t(k) * g.nth;
                if (i < nvec) {
                    A xh[V];
                    write_dx(xb[k], gb[k], i, mu, rs, mean_g, mean_gx, dxr, gtr, dgr, xh);
#pragma unroll
                    for (int e = 0; e < V; ++e) {
                        if constexpr ((NA & 1) != 0) rw[k].v[e] += ld(gb[k].v[e]) * xh[e];
                        if constexpr ((NA & 2) != 0) rb[k].v[e] += ld(gb[k].v[e]);
                    }
                }
            }
        } else {
            if (dx) {
                for (int64_t i = g.lane; i < nvec; i += g.nth) {
                    A gw[V], xh[V];
                    grad_terms<T, V>(load_pack<T, V>(xr + i * V), load_pack<T, V>(gr + i * V), w, gtr, i, mu, rs, gw,
                                     xh);
#pragma unroll
                    for (int e = 0; e < V; ++e) {
                        sg += gw[e];
                        sgx += gw[e] * xh[e];
                    }
                }
                if (centered) sg = g.sum(sg);
                sgx = g.sum(sgx);
            }
            const A mean_g = centered ? sg / A(cols) : A(0), mean_gx = sgx / A(cols);
            for (int64_t i = g.lane; i < nvec; i += g.nth) {
                const P gv = load_pack<T, V>(gr + i * V);
                A xh[V];
                write_dx(load_pack<T, V>(xr + i * V), gv, i, mu, rs, mean_g, mean_gx, dxr, gtr, dgr, xh);
                if (aw) {
                    PA a = load_pack<A, V>(aw + i * V);
#pragma unroll
                    for (int e = 0; e < V; ++e) a.v[e] += ld(gv.v[e]) * xh[e];
                    store_pack(aw + i * V, a);
                }
                if (ab) {
                    PA a = load_pack<A, V>(ab + i * V);
#pragma unroll
                    for (int e = 0; e < V; ++e) a.v[e] += ld(gv.v[e]);
                    store_pack(ab + i * V, a);
                }
            }
        }
    }
    if constexpr (CACHE > 0) {  // the register sums out, once
#pragma unroll
        for (int k = 0; k < CACHE; ++k) {
            const int64_t i = g.lane + int64_t(k) * g.nth;
            if (i < nvec) {
                if constexpr ((NA & 1) != 0)
                    if (aw) store_pack(aw + i * V, rw[k]);
                if constexpr ((NA & 2) != 0)
                    if (ab) store_pack(ab + i * V, rb[k]);
            }
        }
    }

    // staged in shared memory: the block's partial sums are its groups' added in group order
    if (nacc && acc_in_smem) {
        __syncthreads();
        const int groups = WARP ? int(blockDim.x >> 5) : 1;
        const A* sm = reinterpret_cast<const A*>(smem_raw);
        for (int j = 0; j < nacc; ++j) {
            A* dst = (j == 0 && part_w ? part_w : part_b) + int64_t(blockIdx.x) * cols;
            for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
                A s = A(0);
                for (int q = 0; q < groups; ++q) s += sm[(int64_t(q) * nacc + j) * cols + c];
                dst[c] = s;
            }
        }
    }
}

// out[c] = Σ_p part[p, c] over nparts partial rows, in a fixed order: each of 32 threads of
// a column sums a strided subset of the rows, then thread row 0 adds the 32 sums in order
template <typename T>
__global__ void __launch_bounds__(kSumCols * kSumRows)
column_sum_kernel(T* __restrict__ out, const typename acc_of<T>::type* __restrict__ part, int64_t nparts,
                  int64_t cols) {
    using A = typename acc_of<T>::type;
    __shared__ A red[kSumRows][kSumCols + 1];
    const int tx = threadIdx.x % kSumCols, ty = threadIdx.x / kSumCols;
    const int64_t c = int64_t(blockIdx.x) * kSumCols + tx;
    A s = A(0);
    if (c < cols) {
#pragma unroll 4
        for (int64_t p = ty; p < nparts; p += kSumRows) s += part[p * cols + c];
    }
    red[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < cols) {
        A t = A(0);
#pragma unroll
        for (int q = 0; q < kSumRows; ++q) t += red[q][tx];
        out[c] = st<T>(t);
    }
}

// ---------------------------------------------------------------- launch planning

int pow2_at_least(int64_t n) {
    int p = 1;
    while (p < n && p < (1 << 30)) p <<= 1;
    return p;
}

struct Plan {
    bool warp;    // a warp per row (8 a block), else a block per row
    bool cached;  // the row's vectors fit in `cache` registers a thread
    int threads;
};

// warp per row while a lane's share is ≤ cache vectors; else the smallest block (≥ 128
// threads) whose threads' share is ≤ cache vectors, or 512 threads re-reading the row
Plan plan_norm(int64_t cols, int v, int cache) {
    const int64_t nvec = cols / v;
    if (nvec <= 32 * cache) return {true, true, kWarpBlock};
    const int t = std::max(128, pow2_at_least((nvec + cache - 1) / cache));
    if (t <= kMaxBlock) return {false, true, t};
    return {false, false, kMaxBlock};
}

// calls f(Width<V or 1>, bool_constant<warp>, Width<CACHE or 0>): the kernel variant the plan
// and the operands' alignment ask for
template <int V, int CACHE, typename F>
void with_variant(const Plan& p, bool vec, F&& f) {
    auto pick = [&](auto v) {
        if (p.warp) f(v, std::true_type{}, Width<CACHE>{});
        else if (p.cached) f(v, std::false_type{}, Width<CACHE>{});
        else f(v, std::false_type{}, Width<0>{});
    };
    if (vec) pick(Width<V>{});
    else pick(Width<1>{});
}

template <typename T>
void norm_forward(bool centered, void* out, void* mean, void* rstd, const void* x, const void* w, const void* b,
                  int64_t rows, int64_t cols, double eps, const void* res = nullptr, void* sum = nullptr,
                  const void* gate = nullptr) {
    using A = typename acc_of<T>::type;
    constexpr int V = 16 / int(sizeof(T));
    // vectors a thread keeps: 32 registers of f32/f64 data; bf16 rows 32 floats (nvcc
    // keeps the converted values live between the passes)
    constexpr int K = sizeof(T) == 2 ? 4 : 8;
    const bool vec = cols % V == 0 && aligned16(out) && aligned16(x) && (!w || aligned16(w)) && (!b || aligned16(b)) &&
                     (!res || (aligned16(res) && aligned16(sum))) && (!gate || aligned16(gate));
    const Plan p = plan_norm(cols, vec ? V : 1, K);
    const int gpb = p.warp ? p.threads / 32 : 1;
    const int grid = int(std::min<int64_t>((rows + gpb - 1) / gpb, int64_t(sm_count()) * 32));
    with_variant<V, K>(p, vec, [&](auto v, auto warp, auto cache) {
        launch_pdl(norm_forward_kernel<T, decltype(v)::value, decltype(warp)::value, decltype(cache)::value>,
                   dim3(unsigned(grid)), dim3(unsigned(p.threads)), 0, static_cast<T*>(out), static_cast<A*>(mean),
                   static_cast<A*>(rstd), static_cast<const T*>(x), static_cast<const T*>(w),
                   static_cast<const T*>(b), rows, cols, A(eps), centered, static_cast<const T*>(res),
                   static_cast<T*>(sum), static_cast<const T*>(gate));
    });
}

// The backward's vectors a thread keeps (two arrays, x and dout: half the forward's share).
// bf16: 2 unless RN_NORM_BWD_CACHE=3 (read at every call, for A/B runs). At C = 768 (the
// `small` preset) 2 gives 96 vectors > 64 a warp, so a block of 128 threads takes each row
// (one vector a thread, 32 idle, a block-wide sum a row), while the forward (4) runs a warp
// a row; 3 keeps the backward warp-per-row there too. On an H200 (2026-12-07, `small`
// training, B8 T2048) 3 gave 409.8K/408.7K tokens/s against 405.9K–410.7K for six runs with
// 2: no measurable gain, so 2 stays.
int bwd_cache_choice() { return env_choice("RN_NORM_BWD_CACHE", {2, 3}, 2); }

template <typename T, int K>
void norm_backward_k(bool centered, void* dx, void* dw, void* db, const void* dout, const void* x, const void* w,
                     const void* mean, const void* rstd, int64_t rows, int64_t cols, const void* gate, void* dgate) {
    using A = typename acc_of<T>::type;
    constexpr int V = 16 / int(sizeof(T));
    const int dev = current_device();
    cudaStream_t s = stream();
    if (rows == 0) {  // Σ over no rows
        if (dw) RN_CUDA_CHECK(cudaMemsetAsync(dw, 0, size_t(cols) * sizeof(T), s));
        if (db) RN_CUDA_CHECK(cudaMemsetAsync(db, 0, size_t(cols) * sizeof(T), s));
        return;
    }
    const bool vec = cols % V == 0 && aligned16(dout) && aligned16(x) && (!dx || aligned16(dx)) &&
                     (!w || aligned16(w)) && (!gate || aligned16(gate)) && (!dgate || aligned16(dgate));
    const Plan p = plan_norm(cols, vec ? V : 1, K);
    const int gpb = p.warp ? p.threads / 32 : 1;
    const int nacc = (dw != nullptr) + (db != nullptr);
    const size_t optin = smem_per_block_optin(dev);
    // accumulators: a warp-per-row block stages its warps' sums in shared memory (C ≤ 32·K·V:
    // 8 warps take ≤ 32 KB); a cached block-per-row kernel keeps them in registers and writes
    // its partials row once; a streaming one adds into shared memory while 2·C fit (1 KB left
    // for the static shared memory of block_sum), else into its partials row in place
    size_t smem = size_t(nacc) * size_t(gpb) * size_t(cols) * sizeof(A);
    const bool in_smem = nacc > 0 && (p.warp || (!p.cached && smem + 1024 <= optin));
    RN_CHECK(!in_smem || smem + 1024 <= optin, "norm backward (CUDA): ", smem,
             " bytes of accumulators for C = ", cols);
    if (!in_smem) smem = 0;
    // bf16 (the training dtype): a kernel without the register sums a call does not want
    const int na = sizeof(T) != 2 ? 3 : db ? 3 : dw ? 1 : 0;
    auto with_sums = [&](auto f) {
        if constexpr (sizeof(T) == 2) {
            if (na == 0) return f(Width<0>{});
            if (na == 1) return f(Width<1>{});
        }
        f(Width<3>{});
    };
    with_variant<V, K>(p, vec, [&](auto v, auto warp, auto cache) { with_sums([&](auto sums) {
        auto kern = norm_backward_kernel<T, decltype(v)::value, decltype(warp)::value, decltype(cache)::value,
                                         decltype(sums)::value>;
        if (smem > 48 * 1024)
            RN_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
        // as many blocks as fit at once (each writes one partials row), grid-striding over rows
        int occ = 0;
        RN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, p.threads, smem));
        const int64_t need = (rows + gpb - 1) / gpb;
        const int grid = int(std::min<int64_t>(need, int64_t(sm_count(dev)) * std::max(occ, 1)));
        const DType sdt = std::is_same_v<A, double> ? DType::f64 : DType::f32;
        // [grid, C] partial sums (freed after the column sums are queued: one stream, see
        // Note [One compute stream])
        Tensor pw = dw ? empty({grid, cols}, sdt, Device::cuda(dev)) : Tensor();
        Tensor pb = db ? empty({grid, cols}, sdt, Device::cuda(dev)) : Tensor();
        A* pwp = dw ? static_cast<A*>(pw.raw_data()) : nullptr;
        A* pbp = db ? static_cast<A*>(pb.raw_data()) : nullptr;
        kern<<<grid, p.threads, smem, s>>>(static_cast<T*>(dx), pwp, pbp, static_cast<const T*>(dout),
                                           static_cast<const T*>(x), static_cast<const T*>(w),
                                           static_cast<const A*>(mean), static_cast<const A*>(rstd), rows, cols,
                                           centered, in_smem, static_cast<const T*>(gate), static_cast<T*>(dgate));
        RN_CUDA_CHECK_LAUNCH();
        const int sum_blocks = int((cols + kSumCols - 1) / kSumCols);
        if (dw) {
            column_sum_kernel<T><<<sum_blocks, kSumCols * kSumRows, 0, s>>>(static_cast<T*>(dw), pwp, grid, cols);
            RN_CUDA_CHECK_LAUNCH();
        }
        if (db) {
            column_sum_kernel<T><<<sum_blocks, kSumCols * kSumRows, 0, s>>>(static_cast<T*>(db), pbp, grid, cols);
            RN_CUDA_CHECK_LAUNCH();
        }
    }); });
}

template <typename T>
void norm_backward(bool centered, void* dx, void* dw, void* db, const void* dout, const void* x, const void* w,
                   const void* mean, const void* rstd, int64_t rows, int64_t cols, const void* gate = nullptr,
                   void* dgate = nullptr) {
    if constexpr (sizeof(T) == 2) {
        const int k = bwd_cache_choice();
        if (k == 3) return norm_backward_k<T, 3>(centered, dx, dw, db, dout, x, w, mean, rstd, rows, cols, gate, dgate);
        return norm_backward_k<T, 2>(centered, dx, dw, db, dout, x, w, mean, rstd, rows, cols, gate, dgate);
    } else {
        return norm_backward_k<T, 4>(centered, dx, dw, db, dout, x, w, mean, rstd, rows, cols, gate, dgate);
    }
}

}  // namespace

void layer_norm_forward(DType dt, void* out, void* mean, void* rstd, const void* x, const void* w_or_null,
                        const void* b_or_null, int64_t rows, int64_t cols, double eps) {
    if (rows == 0 || cols == 0) return;
    RN_CHECK(rows > 0 && cols > 0, "layer_norm (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "layer_norm", [&](auto tag) {
        norm_forward<decltype(tag)>(true, out, mean, rstd, x, w_or_null, b_or_null, rows, cols, eps);
    });
}

void layer_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, void* db_or_null, const void* dout,
                         const void* x, const void* w_or_null, const void* mean, const void* rstd, int64_t rows,
                         int64_t cols) {
    if (cols == 0 || (!dx_or_null && !dw_or_null && !db_or_null)) return;
    RN_CHECK(rows >= 0 && cols > 0, "layer_norm backward (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "layer_norm backward", [&](auto tag) {
        norm_backward<decltype(tag)>(true, dx_or_null, dw_or_null, db_or_null, dout, x, w_or_null, mean, rstd, rows,
                                     cols);
    });
}

void rms_norm_forward(DType dt, void* out, void* rstd, const void* x, const void* w_or_null, int64_t rows,
                      int64_t cols, double eps) {
    if (rows == 0 || cols == 0) return;
    RN_CHECK(rows > 0 && cols > 0, "rms_norm (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "rms_norm", [&](auto tag) {
        norm_forward<decltype(tag)>(false, out, nullptr, rstd, x, w_or_null, nullptr, rows, cols, eps);
    });
}

void add_rms_norm_forward(DType dt, void* out, void* sum, const void* x, const void* res, const void* w_or_null,
                          int64_t rows, int64_t cols, double eps) {
    if (rows == 0 || cols == 0) return;
    RN_CHECK(rows > 0 && cols > 0, "add_rms_norm (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "add_rms_norm", [&](auto tag) {
        norm_forward<decltype(tag)>(false, out, nullptr, nullptr, x, w_or_null, nullptr, rows, cols, eps, res, sum);
    });
}

void gated_rms_norm_forward(DType dt, void* out, const void* x, const void* gate, int64_t rows, int64_t cols,
                            double eps, void* rstd) {
    if (rows == 0 || cols == 0) return;
    RN_CHECK(rows > 0 && cols > 0, "gated_rms_norm (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "gated_rms_norm", [&](auto tag) {
        norm_forward<decltype(tag)>(false, out, nullptr, rstd, x, nullptr, nullptr, rows, cols, eps, nullptr,
                                    nullptr, gate);
    });
}

void gated_rms_norm_backward(DType dt, void* dx_or_null, void* dgate_or_null, const void* dout, const void* x,
                             const void* gate, const void* rstd, int64_t rows, int64_t cols) {
    if (rows == 0 || cols == 0 || (!dx_or_null && !dgate_or_null)) return;
    RN_CHECK(rows > 0 && cols > 0, "gated_rms_norm backward (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "gated_rms_norm backward", [&](auto tag) {
        norm_backward<decltype(tag)>(false, dx_or_null, nullptr, nullptr, dout, x, nullptr, nullptr, rstd, rows, cols,
                                     gate, dgate_or_null);
    });
}

void rms_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, const void* dout, const void* x,
                       const void* w_or_null, const void* rstd, int64_t rows, int64_t cols) {
    if (cols == 0 || (!dx_or_null && !dw_or_null)) return;
    RN_CHECK(rows >= 0 && cols > 0, "rms_norm backward (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "rms_norm backward", [&](auto tag) {
        norm_backward<decltype(tag)>(false, dx_or_null, dw_or_null, nullptr, dout, x, w_or_null, nullptr, rstd, rows,
                                     cols);
    });
}

}  // namespace rn::cuda
