// cuda/softmax.cu — softmax, log_softmax and cross-entropy row kernels (mirror of
// ops/softmax_cpu.cpp). Dimension key: N rows, C columns (softmax dim / vocabulary), both
// contiguous; T the storage type (float, double, bf16), A its arithmetic type (float for
// f32 and bf16, double for f64).
//
// Shapes of work: a short row goes to 8 lanes of a warp (C ≤ 8·8·V elements: 32 rows a
// 256-thread block, so that a warp has four rows' loads in flight), a row of C ≤ 32·8·V to
// a whole warp (8 rows a block), both grid-striding over rows; a longer row (a 32000
// vocabulary) to one block of ≤ 512 threads. Rows move in 16-byte vectors (V = 16 /
// sizeof(T) elements): a row that does not start on a 16-byte boundary (odd C) is split
// into a scalar head up to the boundary, the vector body and a scalar tail, so odd
// vocabularies are vectorised too. When the operands of one kernel are not congruent mod
// 16 bytes, the kernel falls back to scalar accesses (V = 1).
//
// Statistics: the max and Σ exp(x − max) come from one read pass ("online softmax": a
// running max, and the running sum rescaled by exp(old max − new max) when the max
// grows), merged across lanes and warps in a fixed tree, so results are deterministic.
// The softmax forward keeps the row in registers when it fits (up to 16 vectors a thread:
// C ≤ 32768 f32 / bf16, 8192 f64), so x is read from memory exactly once; the other kernels
// re-read the row for their second pass (from L1/L2) or need only one.
//
// Block rows (C past the warp kernels' limit) of operands congruent mod 16 bytes take the
// register kernels, softmax_forward_reg_kernel and softmax_backward_reg_kernel: a thread
// holds exactly K vectors of its row (about 16 values, K fixed at compile time, the block
// sized to the row), so every operand is read once and written once; the forward takes a
// plain block max first and then one exp per element (no online rescaling). Rows longer
// than 512 threads · KMAX vectors (16384 f32, 8192 bf16, 4096 f64), and operands not
// congruent mod 16 bytes, keep the generic kernels.
//
// Cross-entropy never syncs with the host: the forward writes lse [N] and a per-row loss
// term, then one small block reduces them in a fixed order into the mean loss and the
// count of non-ignored rows, both left on the device; the backward reads the upstream
// gradient and the count from device memory and writes dlogits in one pass.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/softmax.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

constexpr int kCache = 8;        // vectors a thread aims at in the streaming kernels
constexpr int kWarpBlock = 256;  // threads of a block in lanes-per-row mode (8 or 32 rows)
constexpr int kMaxBlock = 512;   // block size cap of the block-per-row kernels (≤ 128 registers)
constexpr int kFinalThreads = 1024;

// N contiguous elements from p (N = V: one 16-byte load), as arithmetic values
template <int N, typename T, typename A>
__device__ __forceinline__ void load_n(const T* p, A (&out)[N]) {
    const Pack<T, N> q = ldg_pack<T, N>(p);
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = ld(q.v[k]);
}
template <int N, typename T, typename A>
__device__ __forceinline__ void store_n(T* p, const A (&in)[N]) {
    Pack<T, N> q;
#pragma unroll
    for (int k = 0; k < N; ++k) q.v[k] = st<T>(in[k]);
    stwb_pack(p, q);
}

// V arithmetic values → one storage pack; bf16 converts pairs with one cvt.rn.bf16x2.f32
// (the same round-to-nearest-even as two single conversions, half the instructions)
template <typename T, int V, typename A>
__device__ __forceinline__ Pack<T, V> to_pack(const A (&in)[V]) {
    Pack<T, V> q;
    if constexpr (std::is_same_v<T, bf16_t> && V % 2 == 0) {
#pragma unroll
        for (int e = 0; e < V; e += 2) reinterpret_cast<__nv_bfloat162*>(q.v)[e / 2] = __floats2bfloat162_rn(in[e], in[e + 1]);
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) q.v[e] = st<T>(in[e]);
    }
    return q;
}

// One row seen as: head scalars up to the first 16-byte boundary, V-wide vectors, tail scalars.
struct RowSplit {
    int head;      // < V
    int64_t nvec;  // vectors after the head
    int tail;      // < V
};
template <int V, typename T>
__device__ __forceinline__ RowSplit split_row(const T* row, int64_t cols) {
    RowSplit s{0, cols, 0};
    if constexpr (V > 1) {
        const int mis = int((reinterpret_cast<uintptr_t>(row) & 15) / sizeof(T));
        const int to_boundary = mis ? V - mis : 0;
        s.head = int(cols < to_boundary ? cols : to_boundary);
        s.nvec = (cols - s.head) / V;
        s.tail = int(cols - s.head - s.nvec * V);
    }
    return s;
}

// calls f(c, Width<N>) for each piece [c, c + N) of the row this lane owns; head and tail
// go one scalar each to lanes 0.. (head, tail < V ≤ 8 ≤ the group size)
template <int V, typename F>
__device__ __forceinline__ void visit_row(const RowSplit& s, int lane, int nth, F&& f) {
    if (lane < s.head) f(int64_t(lane), Width<1>{});
#pragma unroll 4
    for (int64_t i = lane; i < s.nvec; i += nth) f(s.head + i * V, Width<V>{});
    if (lane < s.tail) f(s.head + s.nvec * V + lane, Width<1>{});
}

// running max m and Σ exp(x − m) of the values seen so far
template <typename A>
struct MaxSum {
    A m, s;
};

template <typename A>
__device__ __forceinline__ MaxSum<A> merge(MaxSum<A> a, MaxSum<A> b) {
    const A m = a.m > b.m ? a.m : b.m;
    if (m == A(-INFINITY)) return {m, A(0)};  // both empty or all −inf: exp(−inf − −inf) would be NaN
    return {m, a.s * d_exp(a.m - m) + b.s * d_exp(b.m - m)};
}

// exp for the softmax forward: FAST (f32 and bf16 storage) takes __expf, ex2.approx of
// x·log2 e: two instructions instead of the accurate expf's range reduction, which made the
// forward compute-bound (bf16 at 45% of copy bandwidth, f32 68%). Its error, 2 + ⌊1.16·|x|⌋
// ulp, is ≤ 7 ulp (4e-7 relative) for the arguments x − max ∈ [−5, 0] that carry the
// probability mass and underflows to 0 as the accurate one does; far below a bf16 ulp
// (4e-3) and the f32 test tolerance (1e-5). f64 keeps the accurate exp.
template <bool FAST, typename A>
__device__ __forceinline__ A sm_exp(A x) {
    if constexpr (FAST && std::is_same_v<A, float>) return __expf(x);
    else return d_exp(x);
}

// folds N values into the running (max, sum): one rescale per N values, not per value.
// NaN never becomes the max (comparisons with NaN are false) but reaches the sum through
// exp(NaN − m), so a row holding NaN comes out all NaN, as on the CPU.
template <int N, bool FAST = false, typename A>
__device__ __forceinline__ void online(MaxSum<A>& ms, const A (&v)[N]) {
    A vm = ms.m;
#pragma unroll
    for (int k = 0; k < N; ++k) vm = v[k] > vm ? v[k] : vm;
    if (vm == A(-INFINITY)) return;  // nothing but −inf so far
    A acc = ms.s * sm_exp<FAST>(ms.m - vm);
#pragma unroll
    for (int k = 0; k < N; ++k) acc += sm_exp<FAST>(v[k] - vm);
    ms = {vm, acc};
}

// Over an aligned group of LANES lanes of a warp (xor with o < LANES stays in the group).
// mask names the group's lanes only: the groups of one warp work on different rows, and a
// group past the last row has left the row loop while the others still shuffle.
template <int LANES, typename A>
__device__ __forceinline__ A lanes_sum(A v, unsigned mask) {
#pragma unroll
    for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
    return v;
}
template <int LANES, typename A>
__device__ __forceinline__ MaxSum<A> lanes_merge(MaxSum<A> v, unsigned mask) {
    // xor butterfly: merge is commutative bit for bit, so every lane ends with the same pair
#pragma unroll
    for (int o = LANES / 2; o > 0; o >>= 1) {
        MaxSum<A> w{__shfl_xor_sync(mask, v.m, o), __shfl_xor_sync(mask, v.s, o)};
        v = merge(v, w);
    }
    return v;
}

// The threads that share one row: LANES lanes of a warp (8 or 32), or the whole block
// (LANES = 0). Every thread of a group gets the reductions' result.
template <int LANES>
struct Group {
    int lane, nth;
    unsigned mask;  // this group's lanes in its warp (the whole warp for a block)
    int64_t row0, rstride;
    __device__ Group() {
        if constexpr (LANES > 0 && LANES < 32) mask = ((1u << LANES) - 1) << ((threadIdx.x & 31) & ~(LANES - 1));
        else mask = 0xffffffffu;
        if constexpr (LANES > 0) {
            const int per_block = blockDim.x / LANES;
            lane = threadIdx.x % LANES;
            nth = LANES;
            row0 = int64_t(blockIdx.x) * per_block + threadIdx.x / LANES;
            rstride = int64_t(gridDim.x) * per_block;
        } else {
            lane = threadIdx.x;
            nth = blockDim.x;
            row0 = blockIdx.x;
            rstride = gridDim.x;
        }
    }
    template <typename A>
    __device__ A sum(A v) const {
        if constexpr (LANES > 0) return lanes_sum<LANES>(v, mask);
        else return block_sum(v);
    }
    template <typename A>
    __device__ MaxSum<A> max_sum(MaxSum<A> v) const {
        v = lanes_merge<(LANES > 0 ? LANES : 32)>(v, mask);
        if constexpr (LANES == 0) {
            __shared__ A pm[32], ps[32];
            const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
            __syncthreads();  // the previous row's readers are done with pm/ps
            if (lane % 32 == 0) { pm[w] = v.m; ps[w] = v.s; }
            __syncthreads();
            const int l = threadIdx.x & 31;
            v = l < nw ? MaxSum<A>{pm[l], ps[l]} : MaxSum<A>{A(-INFINITY), A(0)};
            v = lanes_merge<32>(v, 0xffffffffu);
        }
        return v;
    }
};

// ---------------------------------------------------------------- softmax forward

// y = exp(x − m) / s, or (x − m) − log s. CACHE > 0: the row lives in registers between the
// statistics pass and the write pass (the launcher guarantees nvec ≤ nth · CACHE).
template <typename T, int V, int LANES, int CACHE>
__global__ void __launch_bounds__(LANES ? kWarpBlock : kMaxBlock)
softmax_forward_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t rows, int64_t cols, bool log) {
    using A = typename acc_of<T>::type;
    constexpr bool FAST = std::is_same_v<A, float>;
    const Group<LANES> g;
    for (int64_t r = g.row0; r < rows; r += g.rstride) {
        const T* xr = x + r * cols;  // [C]
        T* yr = y + r * cols;        // [C]
        const RowSplit sp = split_row<V>(xr, cols);
        MaxSum<A> ms{A(-INFINITY), A(0)};
        if constexpr (CACHE > 0) {
            Pack<T, V> buf[CACHE];
            A hv[1] = {A(0)}, tv[1] = {A(0)};
            const bool has_h = g.lane < sp.head, has_t = g.lane < sp.tail;
            const int64_t tail0 = sp.head + sp.nvec * V;
            if (has_h) hv[0] = ld(xr[g.lane]);
            if (has_t) tv[0] = ld(xr[tail0 + g.lane]);
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                const int64_t i = g.lane + int64_t(k) * g.nth;
                if (i < sp.nvec) buf[k] = ldg_pack<T, V>(xr + sp.head + i * V);
            }
            if (has_h) online<1, FAST>(ms, hv);
            if (has_t) online<1, FAST>(ms, tv);
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                const int64_t i = g.lane + int64_t(k) * g.nth;
                if (i < sp.nvec) {
                    A v[V];
#pragma unroll
                    for (int e = 0; e < V; ++e) v[e] = ld(buf[k].v[e]);
                    online<V, FAST>(ms, v);
                }
            }
            ms = g.max_sum(ms);
            const A inv = A(1) / ms.s, ls = d_log(ms.s);
            auto f = [&](A v) { return log ? (v - ms.m) - ls : sm_exp<FAST>(v - ms.m) * inv; };
            if (has_h) yr[g.lane] = st<T>(f(hv[0]));
            if (has_t) yr[tail0 + g.lane] = st<T>(f(tv[0]));
#pragma unroll
            for (int k = 0; k < CACHE; ++k) {
                const int64_t i = g.lane + int64_t(k) * g.nth;
                if (i < sp.nvec) {
                    Pack<T, V> o;
#pragma unroll
                    for (int e = 0; e < V; ++e) o.v[e] = st<T>(f(ld(buf[k].v[e])));
                    stwb_pack(yr + sp.head + i * V, o);
                }
            }
        } else {
            // the row does not fit in registers: read it twice (the second read mostly hits L2)
            visit_row<V>(sp, g.lane, g.nth, [&](int64_t c, auto w) {
                constexpr int N = decltype(w)::value;
                A v[N];
                load_n<N>(xr + c, v);
                online<N, FAST>(ms, v);
            });
            ms = g.max_sum(ms);
            const A inv = A(1) / ms.s, ls = d_log(ms.s);
            visit_row<V>(sp, g.lane, g.nth, [&](int64_t c, auto w) {
                constexpr int N = decltype(w)::value;
                A v[N];
                load_n<N>(xr + c, v);
#pragma unroll
                for (int k = 0; k < N; ++k) v[k] = log ? (v[k] - ms.m) - ls : sm_exp<FAST>(v[k] - ms.m) * inv;
                store_n<N>(yr + c, v);
            });
        }
    }
}

// Block a row with the row in registers, for operands congruent mod 16 bytes (V > 1): the
// forward of the [N, 4096] rows that missed the bandwidth goal in the generic kernel above
// (f32 67% of copy, bf16 45%). There each value paid two exps (the online statistics' and
// the write's) plus a rescale exp per vector, and the CACHE = 16 variant reserved registers
// for 16 packs whatever the row's length, which limited occupancy. Here a thread holds
// exactly K vectors (the launcher picks K and the block size from the row length: about 16
// values a thread), read once; the row max is a block max of plain comparisons, then one
// exp per value is kept in place (softmax) and summed; the write multiplies by 1 / Σ. One
// read of x, one write of y, one exp per element, two block barriers per row.
// Shared memory: per-warp maxima and sums in separate arrays, so a warp that runs ahead to
// the next row cannot overwrite what a slower warp still reads (it must first pass the
// other array's barrier, which the slow warp reaches only after reading).
template <typename T, int V, int K, int MINB, bool LOG>
__global__ void __launch_bounds__(kMaxBlock, MINB)
softmax_forward_reg_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t rows, int64_t cols) {
    constexpr bool log = LOG;
    using A = typename acc_of<T>::type;
    constexpr bool FAST = std::is_same_v<A, float>;
    __shared__ A part_m[32], part_s[32];
    const int tid = threadIdx.x, nth = blockDim.x, lane = tid & 31, warp = tid >> 5, nw = nth >> 5;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform over the block
        const T* xr = x + r * cols;  // [C]
        T* yr = y + r * cols;        // [C]
        // offsets inside the row in int (C ≤ kMaxBlock · K · V, the launcher): 64-bit indices
        // kept alive across the barriers cost this kernel 83 registers for 16 values
        const RowSplit sp = split_row<V>(xr, cols);
        const int head = sp.head, nvec = int(sp.nvec), tail0 = head + nvec * V;
        const int mine = tid < nvec ? (nvec - tid + nth - 1) / nth : 0;  // vectors of this thread
        const bool has_h = tid < head, has_t = tid < sp.tail;  // head, tail < V ≤ 8 < nth
        const T* xb = xr + head + tid * V;  // this thread's vector k at xb + k·nth·V
        A v[K][V];
        A hv = A(-INFINITY), tv = A(-INFINITY);
        {
            Pack<T, V> buf[K];
#pragma unroll
            for (int k = 0; k < K; ++k)  // all K loads in flight before the first use
                if (k < mine) buf[k] = ldg_pack<T, V>(xb + k * nth * V);
            if (has_h) hv = ld(xr[tid]);
            if (has_t) tv = ld(xr[tail0 + tid]);
#pragma unroll
            for (int k = 0; k < K; ++k)
#pragma unroll
                for (int e = 0; e < V; ++e) v[k][e] = k < mine ? ld(buf[k].v[e]) : A(-INFINITY);
        }
        // max: NaN never wins a comparison, so it never becomes the max (it reaches the sum
        // through exp(NaN − m) and makes the row NaN, as on the CPU); unused slots are −inf
        A m = A(-INFINITY);
        m = hv > m ? hv : m;
        m = tv > m ? tv : m;
#pragma unroll
        for (int k = 0; k < K; ++k)
#pragma unroll
            for (int e = 0; e < V; ++e) m = v[k][e] > m ? v[k][e] : m;
        m = warp_max(m);
        if (lane == 0) part_m[warp] = m;
        __syncthreads();
        m = warp_max(lane < nw ? part_m[lane] : A(-INFINITY));
        // Σ exp(x − m); a row of only −inf has m = −inf and comes out NaN, as before
        A s = A(0);
        if (has_h) s += sm_exp<FAST>(hv - m);
        if (has_t) s += sm_exp<FAST>(tv - m);
#pragma unroll
        for (int k = 0; k < K; ++k) {
            if (k < mine) {
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    const A ex = sm_exp<FAST>(v[k][e] - m);
                    if (!log) v[k][e] = ex;
                    s += ex;
                }
            }
        }
        s = warp_sum(s);
        if (lane == 0) part_s[warp] = s;
        __syncthreads();
        s = warp_sum(lane < nw ? part_s[lane] : A(0));  // xor butterfly: every lane the same bits
        const A inv = A(1) / s, ls = d_log(s);
        auto f = [&](A xv) { return log ? (xv - m) - ls : sm_exp<FAST>(xv - m) * inv; };
        if (has_h) yr[tid] = st<T>(f(hv));
        if (has_t) yr[tail0 + tid] = st<T>(f(tv));
        T* yb = yr + head + tid * V;
#pragma unroll
        for (int k = 0; k < K; ++k) {
            if (k < mine) {
                A o[V];
#pragma unroll
                for (int e = 0; e < V; ++e) o[e] = log ? (v[k][e] - m) - ls : v[k][e] * inv;
                stwb_pack(yb + k * nth * V, to_pack<T, V>(o));
            }
        }
    }
}

// ---------------------------------------------------------------- softmax backward

// softmax:     dx = y ⊙ (dy − Σ dy⊙y)
// log_softmax: dx = dy − exp(y) ⊙ Σ dy
template <typename T, int V, int LANES>
__global__ void __launch_bounds__(LANES ? kWarpBlock : kMaxBlock)
softmax_backward_kernel(T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ y, int64_t rows,
                        int64_t cols, bool log) {
    using A = typename acc_of<T>::type;
    const Group<LANES> g;
    for (int64_t r = g.row0; r < rows; r += g.rstride) {
        const T* dyr = dy + r * cols;  // [C]
        const T* yr = y + r * cols;    // [C]
        T* dxr = dx + r * cols;        // [C]
        const RowSplit sp = split_row<V>(yr, cols);
        A s = A(0);
        visit_row<V>(sp, g.lane, g.nth, [&](int64_t c, auto w) {
            constexpr int N = decltype(w)::value;
            A a[N], b[N];
            load_n<N>(dyr + c, a);
            if (log) {
#pragma unroll
                for (int k = 0; k < N; ++k) s += a[k];
            } else {
                load_n<N>(yr + c, b);
#pragma unroll
                for (int k = 0; k < N; ++k) s += a[k] * b[k];
            }
        });
        s = g.sum(s);
        visit_row<V>(sp, g.lane, g.nth, [&](int64_t c, auto w) {
            constexpr int N = decltype(w)::value;
            A a[N], b[N];
            load_n<N>(dyr + c, a);
            load_n<N>(yr + c, b);
#pragma unroll
            for (int k = 0; k < N; ++k) a[k] = log ? a[k] - d_exp(b[k]) * s : b[k] * (a[k] - s);
            store_n<N>(dxr + c, a);
        });
    }
}

// Block a row with dy and y in registers (operands congruent mod 16 bytes): each read once,
// dx written once. The generic kernel above reads both twice; for [65536, 4096] f32 the
// second read of 32 KB rows by all resident blocks overflowed L2 and went back to memory
// (61% of copy). The vectors stay in storage type (bf16 packs: 4 registers for 8 values)
// and are converted where used. One block sum a row; its shared partials alternate between
// two arrays by row parity, so a warp that runs ahead to the next row never overwrites
// partials a slower warp still reads (it must first pass the barrier of the row between).
template <typename T, int V, int K, int MINB, bool LOG>
__global__ void __launch_bounds__(kMaxBlock, MINB)
softmax_backward_reg_kernel(T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ y, int64_t rows,
                            int64_t cols) {
    constexpr bool log = LOG;
    using A = typename acc_of<T>::type;
    __shared__ A part[2][32];
    const int tid = threadIdx.x, nth = blockDim.x, lane = tid & 31, warp = tid >> 5, nw = nth >> 5;
    int parity = 0;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x, parity ^= 1) {  // uniform over the block
        const T* dyr = dy + r * cols;  // [C]
        const T* yr = y + r * cols;    // [C]
        T* dxr = dx + r * cols;        // [C]
        // dy and dx share y's alignment; offsets in int (C ≤ kMaxBlock · K · V, the launcher)
        const RowSplit sp = split_row<V>(yr, cols);
        const int head = sp.head, nvec = int(sp.nvec), tail0 = head + nvec * V;
        const int mine = tid < nvec ? (nvec - tid + nth - 1) / nth : 0;  // vectors of this thread
        const bool has_h = tid < head, has_t = tid < sp.tail;
        const int o0 = head + tid * V;  // this thread's vector k at o0 + k·nth·V
        Pack<T, V> pd[K], py[K];
#pragma unroll
        for (int k = 0; k < K; ++k) {
            if (k < mine) {
                pd[k] = ldg_pack<T, V>(dyr + o0 + k * nth * V);
                py[k] = ldg_pack<T, V>(yr + o0 + k * nth * V);
            }
        }
        A hd = A(0), hy = A(0), td = A(0), ty = A(0);
        if (has_h) { hd = ld(dyr[tid]); hy = ld(yr[tid]); }
        if (has_t) { td = ld(dyr[tail0 + tid]); ty = ld(yr[tail0 + tid]); }
        // s = Σ dy·y (softmax) or Σ dy (log_softmax); absent head/tail values are 0
        A s = log ? hd + td : hd * hy + td * ty;
#pragma unroll
        for (int k = 0; k < K; ++k) {
            if (k < mine) {
#pragma unroll
                for (int e = 0; e < V; ++e) s += log ? ld(pd[k].v[e]) : ld(pd[k].v[e]) * ld(py[k].v[e]);
            }
        }
        s = warp_sum(s);
        if (lane == 0) part[parity][warp] = s;
        __syncthreads();
        s = warp_sum(lane < nw ? part[parity][lane] : A(0));  // every lane the same bits
        auto f = [&](A g, A yv) { return log ? g - d_exp(yv) * s : yv * (g - s); };
        if (has_h) dxr[tid] = st<T>(f(hd, hy));
        if (has_t) dxr[tail0 + tid] = st<T>(f(td, ty));
#pragma unroll
        for (int k = 0; k < K; ++k) {
            if (k < mine) {
                A o[V];
#pragma unroll
                for (int e = 0; e < V; ++e) o[e] = f(ld(pd[k].v[e]), ld(py[k].v[e]));
                stwb_pack(dxr + o0 + k * nth * V, to_pack<T, V>(o));
            }
        }
    }
}

// ---------------------------------------------------------------- cross-entropy

// lse[n] = log Σ exp(x[n, :]); term[n] = lse[n] − x[n, t[n]] for a valid target, 0 otherwise
// (an out-of-range target is never dereferenced; the finishing kernel flags it)
template <typename T, int V, int LANES>
__global__ void __launch_bounds__(LANES ? kWarpBlock : kMaxBlock)
cross_entropy_lse_kernel(double* __restrict__ lse, double* __restrict__ term, const T* __restrict__ x,
                         const int64_t* __restrict__ targets, int64_t rows, int64_t cols, int64_t ignore_index) {
    using A = typename acc_of<T>::type;
    const Group<LANES> g;
    for (int64_t r = g.row0; r < rows; r += g.rstride) {
        const T* xr = x + r * cols;  // [C]
        const RowSplit sp = split_row<V>(xr, cols);
        MaxSum<A> ms{A(-INFINITY), A(0)};
        visit_row<V>(sp, g.lane, g.nth, [&](int64_t c, auto w) {
            constexpr int N = decltype(w)::value;
            A v[N];
            load_n<N>(xr + c, v);
            online(ms, v);
        });
        ms = g.max_sum(ms);
        if (g.lane == 0) {
            // max + log Σ in double: lse ≈ 1000 rounded to f32 would be off by 6e-5
            const double l = double(ms.m) + ::log(double(ms.s));
            lse[r] = l;
            const int64_t t = targets[r];
            term[r] = (t != ignore_index && t >= 0 && t < cols) ? l - double(ld(xr[t])) : 0.0;
        }
    }
}

__device__ __forceinline__ long long warp_min_ll(long long v) {
    for (int o = 16; o > 0; o >>= 1) {
        long long w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w < v ? w : v;
    }
    return v;
}

// One block: loss = Σ term / count over non-ignored rows (0 when none), count, and the
// first bad target's row (term null: the count and the check alone, loss 0). Each thread sums a fixed strided subset of rows in order, then a
// fixed tree: the same inputs give the same bits on every run.
template <typename T>
__global__ void __launch_bounds__(kFinalThreads)
cross_entropy_finish_kernel(typename acc_of<T>::type* __restrict__ loss, int64_t* __restrict__ count, const double* __restrict__ term,
                            const int64_t* __restrict__ targets, int64_t rows, int64_t cols, int64_t ignore_index) {
    using A = typename acc_of<T>::type;
    double total = 0;
    long long n = 0, bad = LLONG_MAX;
    auto take = [&](int64_t r, int64_t t, double v) {
        if (t == ignore_index) return;
        if (t < 0 || t >= cols) {
            bad = r < bad ? r : bad;
            return;
        }
        ++n;
        total += v;
    };
    // four rows an iteration: eight independent loads in flight before the first use
    const int64_t step = blockDim.x;
    int64_t r = threadIdx.x;
    for (; r + 3 * step < rows; r += 4 * step) {
        int64_t t[4];
        double v[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            t[k] = targets[r + k * step];
            v[k] = term ? term[r + k * step] : 0.0;
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) take(r + k * step, t[k], v[k]);
    }
    for (; r < rows; r += step) take(r, targets[r], term ? term[r] : 0.0);
    total = block_sum(total);
    n = block_sum(n);
    __shared__ long long pbad[32];
    bad = warp_min_ll(bad);
    if ((threadIdx.x & 31) == 0) pbad[threadIdx.x >> 5] = bad;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 0; w < int(blockDim.x >> 5); ++w) bad = pbad[w] < bad ? pbad[w] : bad;
        if (bad != LLONG_MAX) {
            *loss = std::numeric_limits<A>::quiet_NaN();
            *count = -1 - bad;
        } else {
            // the loss in A (f32 for bf16 logits): double → A, the CPU's rounding path
            *loss = A(n > 0 ? total / double(n) : 0.0);
            *count = n;
        }
    }
}

// dlogits = (exp(x − lse) − onehot(t)) · dloss / count
template <typename T, int V, int LANES>
__global__ void __launch_bounds__(LANES ? kWarpBlock : kMaxBlock)
cross_entropy_backward_kernel(T* __restrict__ dx, const typename acc_of<T>::type* __restrict__ dloss,
                              const T* __restrict__ x,
                              const double* __restrict__ lse, const int64_t* __restrict__ targets,
                              const int64_t* __restrict__ count, int64_t rows, int64_t cols, int64_t ignore_index) {
    using A = typename acc_of<T>::type;
    const Group<LANES> g;
    const int64_t cnt = *count;
    // count == 0: the loss was the constant 0, so every gradient is 0
    const A scale = A(cnt > 0 ? double(*dloss) / double(cnt) : 0.0);
    for (int64_t r = g.row0; r < rows; r += g.rstride) {
        const T* xr = x + r * cols;  // [C]
        T* dxr = dx + r * cols;      // [C]
        const RowSplit sp = split_row<V>(xr, cols);
        const int64_t t = targets[r];
        if (cnt < 0 || t == ignore_index || scale == A(0)) {
            // a bad target somewhere (cnt < 0): NaN, as the loss; otherwise zeros
            const A fillv = cnt < 0 ? std::numeric_limits<A>::quiet_NaN() : A(0);
            visit_row<V>(sp, g.lane, g.nth, [&](int64_t c, auto w) {
                constexpr int N = decltype(w)::value;
                A v[N];
#pragma unroll
                for (int k = 0; k < N; ++k) v[k] = fillv;
                store_n<N>(dxr + c, v);
            });
            continue;
        }
        const double l = lse[r];
        visit_row<V>(sp, g.lane, g.nth, [&](int64_t c, auto w) {
            constexpr int N = decltype(w)::value;
            A v[N];
            load_n<N>(xr + c, v);
#pragma unroll
            for (int k = 0; k < N; ++k) {
                // x − lse in double (as on the CPU), exp in A
                const A p = d_exp(A(double(v[k]) - l));
                v[k] = (c + k == t ? p - A(1) : p) * scale;
            }
            store_n<N>(dxr + c, v);
        });
    }
}

// ---------------------------------------------------------------- launch planning

bool congruent16(const void* a, const void* b) {
    return ((reinterpret_cast<uintptr_t>(a) ^ reinterpret_cast<uintptr_t>(b)) & 15) == 0;
}

int pow2_at_least(int64_t n) {
    int p = 1;
    while (p < n && p < (1 << 30)) p <<= 1;
    return p;
}

struct Plan {
    int lanes;  // 8 or 32: that many lanes a row, kWarpBlock / lanes rows a block; 0: a block a row
    int threads, blocks;
};

// 8 lanes a row, then 32, while a lane has at most lane_vecs vectors (short rows: more rows,
// so more loads, in flight a warp); else a block a row, sized so that each thread has about
// kCache vectors, between 128 and max_threads
Plan plan_rows(int64_t rows, int64_t cols, int v, int max_threads, int lane_vecs = kCache) {
    const int sms = sm_count();
    const int64_t nvec = (cols + v - 1) / v;
    for (int lanes : {8, 32}) {
        if (nvec > int64_t(lanes) * lane_vecs) continue;
        const int per_block = kWarpBlock / lanes;
        const int64_t need = (rows + per_block - 1) / per_block;
        return {lanes, kWarpBlock, int(std::min<int64_t>(need, int64_t(sms) * 8))};
    }
    const int t = std::min(max_threads, std::max(128, pow2_at_least((nvec + kCache - 1) / kCache)));
    return {0, t, int(std::min<int64_t>(rows, int64_t(sms) * 64))};
}

// Block size and vectors a thread for the register kernels: KT vectors a thread (about 16
// values: enough loads in flight, few registers) with a power-of-two block of 64..kMaxBlock
// threads; a row longer than kMaxBlock·KT vectors takes KMAX a thread; longer still: none
// (k = 0, the generic kernels). nvec bounds every row's vector count (its head ≥ 0).
struct RegPlan {
    int threads, k;
};
RegPlan plan_reg(int64_t nvec, int kt, int kmax) {
    const int64_t t = std::max<int64_t>(64, pow2_at_least((nvec + kt - 1) / kt));
    if (t <= kMaxBlock) return {int(t), kt};
    if (nvec <= int64_t(kMaxBlock) * kmax) return {kMaxBlock, kmax};
    return {0, 0};
}

// Vectors a thread of the register kernels: KT about 16 values (f32 4 vectors, bf16 2; f64
// 2, 4 doubles), KMAX twice that for longer rows. KT variants are built for 2
// blocks of 512 a multiprocessor (≤ 64 registers: 4 blocks of 256 threads resident, 64 KB
// of loads in flight), KMAX ones for 1 (≤ 128). f64 KT = 4 spilled under the 64 cap.
template <typename T>
struct RegK {
    static constexpr int KT = sizeof(T) == 4 ? 4 : 2, KMAX = 2 * KT;
};
// calls f(Width<K>, Width<MINB>, bool_constant<LOG>) for the plan's variant
template <typename T, typename F>
void with_reg_variant(const RegPlan& rp, bool log, F&& f) {
    constexpr int KT = RegK<T>::KT, KMAX = RegK<T>::KMAX;
    constexpr int MINB = sizeof(T) == 8 ? 1 : 2;
    auto go = [&](auto lg) {
        if (rp.k == KT) f(Width<KT>{}, Width<MINB>{}, lg);
        else f(Width<KMAX>{}, Width<1>{}, lg);
    };
    if (log) go(std::true_type{});
    else go(std::false_type{});
}

// calls f(Width<V or 1>, Width<lanes>): the kernel variant the plan and the operands'
// alignment ask for
template <int V, typename F>
void with_variant(const Plan& p, bool vec, F&& f) {
    auto pick = [&](auto v) {
        if (p.lanes == 8) f(v, Width<8>{});
        else if (p.lanes == 32) f(v, Width<32>{});
        else f(v, Width<0>{});
    };
    if (vec) pick(Width<V>{});
    else pick(Width<1>{});
}

}  // namespace

void softmax_forward(DType dt, void* y, const void* x, int64_t rows, int64_t cols, bool log) {
    if (rows == 0 || cols == 0) return;
    RN_CHECK(rows > 0 && cols > 0, "softmax (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, log ? "log_softmax" : "softmax", [&](auto tag) {
        using T = decltype(tag);
        constexpr int V = 16 / int(sizeof(T));
        const bool vec = congruent16(x, y);
        const int v = vec ? V : 1;
        auto* yp = static_cast<T*>(y);
        auto* xp = static_cast<const T*>(x);
        const int64_t nvec = (cols + v - 1) / v;
        // registers for the cached row: 32 f32 a lane in a warp, 64 in a block (bf16 and f64
        // keep fewer: nvcc holds bf16 rows converted to float, and f64 needs two registers)
        constexpr int WC = sizeof(T) == 4 ? 8 : 4, BC = sizeof(T) == 4 ? 16 : 8;
        const Plan p = plan_rows(rows, cols, v, kMaxBlock, WC);
        cudaStream_t s = stream();
        const bool cached = nvec <= int64_t(p.threads) * BC;  // a 32000 vocabulary is, in f32 and bf16
        // block rows of congruent operands: the register kernel, K vectors a thread (RegK)
        const RegPlan rp = p.lanes == 0 && vec ? plan_reg(nvec, RegK<T>::KT, RegK<T>::KMAX) : RegPlan{0, 0};
        if (rp.k > 0) {
            const int blocks = int(std::min<int64_t>(rows, int64_t(sm_count()) * 64));
            with_reg_variant<T>(rp, log, [&](auto k, auto minb, auto lg) {
                softmax_forward_reg_kernel<T, V, decltype(k)::value, decltype(minb)::value, decltype(lg)::value>
                    <<<blocks, rp.threads, 0, s>>>(yp, xp, rows, cols);
            });
            RN_CUDA_CHECK_LAUNCH();
            return;
        }
        with_variant<V>(p, vec, [&](auto w, auto lanes) {
            constexpr int VV = decltype(w)::value, L = decltype(lanes)::value;
            if constexpr (L > 0) softmax_forward_kernel<T, VV, L, WC><<<p.blocks, p.threads, 0, s>>>(yp, xp, rows, cols, log);
            else if (cached) softmax_forward_kernel<T, VV, 0, BC><<<p.blocks, p.threads, 0, s>>>(yp, xp, rows, cols, log);
            else softmax_forward_kernel<T, VV, 0, 0><<<p.blocks, p.threads, 0, s>>>(yp, xp, rows, cols, log);
        });
        RN_CUDA_CHECK_LAUNCH();
    });
}

void softmax_backward(DType dt, void* dx, const void* dy, const void* y, int64_t rows, int64_t cols, bool log) {
    if (rows == 0 || cols == 0) return;
    RN_CHECK(rows > 0 && cols > 0, "softmax backward (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = congruent16(dx, dy) && congruent16(dx, y);
        constexpr int V = 16 / int(sizeof(T));
        const Plan p = plan_rows(rows, cols, vec ? V : 1, kMaxBlock);
        // block rows of congruent operands: the register kernel (dy and y held as packs, K
        // vectors of each a thread: RegK)
        const RegPlan rp =
            p.lanes == 0 && vec ? plan_reg((cols + V - 1) / V, RegK<T>::KT, RegK<T>::KMAX) : RegPlan{0, 0};
        if (rp.k > 0) {
            const int blocks = int(std::min<int64_t>(rows, int64_t(sm_count()) * 64));
            auto* dxp = static_cast<T*>(dx);
            auto* dyp = static_cast<const T*>(dy);
            auto* yp = static_cast<const T*>(y);
            with_reg_variant<T>(rp, log, [&](auto k, auto minb, auto lg) {
                softmax_backward_reg_kernel<T, V, decltype(k)::value, decltype(minb)::value, decltype(lg)::value>
                    <<<blocks, rp.threads, 0, stream()>>>(dxp, dyp, yp, rows, cols);
            });
            RN_CUDA_CHECK_LAUNCH();
            return;
        }
        with_variant<V>(p, vec, [&](auto w, auto lanes) {
            softmax_backward_kernel<T, decltype(w)::value, decltype(lanes)::value><<<p.blocks, p.threads, 0, stream()>>>(
                static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(y), rows, cols, log);
        });
        RN_CUDA_CHECK_LAUNCH();
    });
}

void cross_entropy_rows(DType dt, double* lse, double* term, const void* logits, const int64_t* targets,
                        int64_t rows, int64_t cols, int64_t ignore_index) {
    RN_CHECK(rows >= 0 && cols > 0, "cross_entropy (CUDA): bad sizes ", rows, " x ", cols);
    if (rows == 0) return;
    dispatch_float(dt, "cross_entropy", [&](auto tag) {
        using T = decltype(tag);
        // one [N, C] operand: the head/tail split always aligns it
        constexpr int V = 16 / int(sizeof(T));
        const Plan p = plan_rows(rows, cols, V, kMaxBlock);
        with_variant<V>(p, true, [&](auto w, auto lanes) {
            cross_entropy_lse_kernel<T, decltype(w)::value, decltype(lanes)::value>
                <<<p.blocks, p.threads, 0, stream()>>>(lse, term, static_cast<const T*>(logits), targets, rows, cols,
                                                       ignore_index);
        });
        RN_CUDA_CHECK_LAUNCH();
    });
}

void cross_entropy_total(DType dt, void* loss, int64_t* count, const double* term, const int64_t* targets,
                         int64_t rows, int64_t cols, int64_t ignore_index) {
    RN_CHECK(rows >= 0 && cols > 0, "cross_entropy (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "cross_entropy", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        cross_entropy_finish_kernel<T><<<1, kFinalThreads, 0, stream()>>>(static_cast<A*>(loss), count, term, targets,
                                                                          rows, cols, ignore_index);
        RN_CUDA_CHECK_LAUNCH();
    });
}

void cross_entropy_forward(DType dt, void* loss, double* lse, int64_t* count, const void* logits,
                           const int64_t* targets, int64_t rows, int64_t cols, int64_t ignore_index) {
    RN_CHECK(rows >= 0 && cols > 0, "cross_entropy (CUDA): bad sizes ", rows, " x ", cols);
    // per-row loss terms [N] f64, reduced by the finishing kernel (the caching allocator
    // hands this block to the next request only after both kernels: one stream)
    Tensor term = empty({std::max<int64_t>(rows, 1)}, DType::f64, Device::cuda(current_device()));
    cross_entropy_rows(dt, lse, term.data<double>(), logits, targets, rows, cols, ignore_index);
    cross_entropy_total(dt, loss, count, term.data<double>(), targets, rows, cols, ignore_index);
}

void cross_entropy_backward(DType dt, void* dlogits, const void* dloss, const void* logits, const double* lse,
                            const int64_t* targets, const int64_t* count, int64_t rows, int64_t cols,
                            int64_t ignore_index) {
    if (rows == 0) return;
    RN_CHECK(rows > 0 && cols > 0, "cross_entropy backward (CUDA): bad sizes ", rows, " x ", cols);
    dispatch_float(dt, "cross_entropy backward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = congruent16(dlogits, logits);
        constexpr int V = 16 / int(sizeof(T));
        const Plan p = plan_rows(rows, cols, vec ? V : 1, kMaxBlock);
        with_variant<V>(p, vec, [&](auto w, auto lanes) {
            cross_entropy_backward_kernel<T, decltype(w)::value, decltype(lanes)::value>
                <<<p.blocks, p.threads, 0, stream()>>>(static_cast<T*>(dlogits),
                                                       static_cast<const typename acc_of<T>::type*>(dloss),
                                                       static_cast<const T*>(logits), lse, targets, count, rows, cols,
                                                       ignore_index);
        });
        RN_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace rn::cuda
