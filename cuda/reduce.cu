// cuda/reduce.cu — reductions: rows (mirror of ops/reduce_cpu.cpp), columns (a sum over a
// middle dim, e.g. a bias gradient summed over the batch), and the max-backward scatter.
//
// Rows. Dimension key: R rows × C cols, row-major, contiguous. The unit of work is one warp
// on one row chunk, so a short row never idles a 256-thread block and a row of 4096 f32
// still has 32 × 16-byte loads a lane. Many rows: a warp a row, chunk = the whole row, one
// pass writing the result. Few long rows (a full sum, R = 1): every row is split into S
// chunks so that R·S ≈ 2 warps per resident warp slot; pass 1 writes R·S partial (value,
// index) pairs in fp32 (f64 for f64), pass 2 reduces each row's S partials with one block.
// No atomics: the result is the same bits on every run. Short rows (≤ 128 vectors: 512 f32,
// 1024 bf16) take reduce_short_rows_kernel instead: 4, 8 or 16 lanes a row, up to 8 vectors
// a lane loaded at once, so that a warp has several rows (2-4 KB) in flight.
//
// Loads are 16 bytes (4 f32, 8 bf16, 2 f64) whatever the alignment of the row: each chunk is
// split into scalar head up to the first 16-byte boundary, the vector body (4 vectors a
// lane in flight per iteration) and a scalar tail, so a view with an odd offset or an odd C
// is vectorised too.
//
// Columns (sum only). Dimension key: x [O, Rd, I] contiguous → out [O, I]. A block is 32 × 8
// threads: the 32 lanes of a warp read 32 consecutive 16-byte vectors of one row (512
// contiguous bytes, coalesced), the 8 warps take rows r, r + 8, ...; Rd is split over
// blockIdx.y so that the grid fills the GPU, partials [S, O, I] then summed in order by a
// second tiny pass. Vector loads need I % V == 0 and a 16-byte-aligned x, else V = 1.
//
// Sums accumulate in fp32 (f64 for f64); max keeps the first index of the maximum, NaN
// winning as on the CPU.
#include <cstring>

#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/device.h"
#include "cuda/math.cuh"
#include "cuda/reduce.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {
constexpr int kThreads = 256;             // 8 warps a block in the row kernels
constexpr int kFinal = 1024;              // threads of the pass-2 block
constexpr int64_t kEmpty = INT64_MAX;     // index of an accumulator that has seen nothing

// V elements from a 16-byte-aligned p (one 128-bit load), or one element for V = 1
template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* p, T (&out)[V]) {
    if constexpr (V == 1) {
        out[0] = p[0];
    } else {
        static_assert(sizeof(T) * V == 16, "vectors are 16 bytes");
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
        memcpy(out, &u, 16);
    }
}

// (v, i) beats (bv, bi): NaN first, then the larger value, ties to the earlier index
template <typename A>
__device__ __forceinline__ bool better(A v, int64_t i, A bv, int64_t bi) {
    bool vn = isnan(v), bn = isnan(bv);
    if (vn != bn) return vn;  // NaN wins
    if (v != bv && !vn) return v > bv;
    return i < bi;  // ties (and NaN vs NaN): the first position
}

template <typename A>
struct Acc {
    A v;
    int64_t i;  // max only: position of v, kEmpty before the first element
};

template <typename A, bool MAX>
__device__ __forceinline__ Acc<A> identity() {
    return {MAX ? A(-INFINITY) : A(0), kEmpty};
}

// one element at position c; a thread sees its elements in increasing c, so for max a tie
// keeps the earlier one by the strict comparison alone. Taken: a value above the running max
// (which starts at −inf), or the first NaN. So −inf is never taken and an accumulator that
// saw only −inf stays empty: a row whose max is −inf holds only −inf, and its first
// position, 0, is what an empty result reports.
template <bool MAX, typename A>
__device__ __forceinline__ void take(Acc<A>& a, A v, int64_t c) {
    if constexpr (MAX) {
        // !(v <= m): v > m or v NaN; m == m: the running max is not already NaN
        if (!(v <= a.v) && a.v == a.v) a = {v, c};
    } else {
        a.v += v;
    }
}

// merge of two accumulators of any positions (empty ones lose)
template <bool MAX, typename A>
__device__ __forceinline__ void merge(Acc<A>& a, const Acc<A>& b) {
    if constexpr (MAX) {
        if (b.i != kEmpty && (a.i == kEmpty || better(b.v, b.i, a.v, a.i))) a = b;
    } else {
        a.v += b.v;
    }
}

template <bool MAX, typename A>
__device__ __forceinline__ Acc<A> warp_merge(Acc<A> a) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        Acc<A> b{__shfl_xor_sync(0xffffffffu, a.v, o), MAX ? __shfl_xor_sync(0xffffffffu, a.i, o) : kEmpty};
        merge<MAX>(a, b);
    }
    return a;
}

// over the block (blockDim.x a multiple of 32); thread 0 gets the result
template <bool MAX, typename A>
__device__ Acc<A> block_merge(Acc<A> a) {
    __shared__ A sv[32];
    __shared__ int64_t si[32];
    a = warp_merge<MAX>(a);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();  // the previous row's readers are done with sv/si
    if (lane == 0) {
        sv[warp] = a.v;
        si[warp] = a.i;
    }
    __syncthreads();
    if (warp == 0) {
        a = lane < nw ? Acc<A>{sv[lane], si[lane]} : identity<A, MAX>();
        a = warp_merge<MAX>(a);
    }
    return a;
}

// this lane's share (lane of 32) of row[c0, c1): scalar head to the 16-byte boundary,
// 16-byte vectors four at a time, scalar tail
template <typename T, int V, bool MAX, typename A>
__device__ __forceinline__ void scan_range(const T* __restrict__ row, int64_t c0, int64_t c1, int lane, Acc<A>& a) {
    const T* p = row + c0;
    const int64_t n = c1 - c0;
    int64_t head = 0;
    if constexpr (V > 1) {
        const int mis = int((reinterpret_cast<uintptr_t>(p) & 15) / sizeof(T));
        head = mis ? (n < V - mis ? n : V - mis) : 0;
    }
    if (lane < head) take<MAX>(a, A(ld(p[lane])), c0 + lane);
    const T* body = p + head;  // 16-byte aligned when V > 1
    const int64_t nvec = (n - head) / V;
    int64_t i = lane;
    for (; i + 3 * 32 < nvec; i += 4 * 32) {
        T buf[4][V];
#pragma unroll
        for (int k = 0; k < 4; ++k) load_vec<T, V>(body + (i + k * 32) * V, buf[k]);
#pragma unroll
        for (int k = 0; k < 4; ++k)
#pragma unroll
            for (int e = 0; e < V; ++e) take<MAX>(a, A(ld(buf[k][e])), c0 + head + (i + k * 32) * V + e);
    }
    for (; i < nvec; i += 32) {
        T buf[V];
        load_vec<T, V>(body + i * V, buf);
#pragma unroll
        for (int e = 0; e < V; ++e) take<MAX>(a, A(ld(buf[e])), c0 + head + i * V + e);
    }
    const int64_t t0 = head + nvec * V;  // tail: < V elements
    if (lane < n - t0) take<MAX>(a, A(ld(p[t0 + lane])), c0 + t0 + lane);
}

// pass 1: warp w of the grid takes units u = w, w + warps, ...; unit u is row u / S, chunk
// u % S = columns [chunk·per, min(C, (chunk + 1)·per)). S = 1 writes out/argmax directly,
// else the partials pv/pi [R·S].
template <typename T, typename A, bool MAX>
__global__ void __launch_bounds__(kThreads)
reduce_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t cols, int64_t splits, int64_t per,
                   T* __restrict__ out, int64_t* __restrict__ argmax, A* __restrict__ pv, int64_t* __restrict__ pi) {
    constexpr int V = 16 / int(sizeof(T));
    const int lane = threadIdx.x & 31;
    const int64_t wpb = blockDim.x >> 5;
    const int64_t units = rows * splits;
    for (int64_t u = blockIdx.x * wpb + (threadIdx.x >> 5); u < units; u += int64_t(gridDim.x) * wpb) {
        const int64_t row = u / splits, chunk = u - row * splits;
        const int64_t c0 = chunk * per, c1 = c0 + per < cols ? c0 + per : cols;
        Acc<A> a = identity<A, MAX>();
        if (c0 < c1) scan_range<T, V, MAX>(x + row * cols, c0, c1, lane, a);
        a = warp_merge<MAX>(a);
        if (lane == 0) {
            if (splits == 1) {
                out[row] = st<T>(a.v);
                if (MAX && argmax) argmax[row] = a.i == kEmpty ? 0 : a.i;
            } else {
                pv[u] = a.v;
                if (MAX) pi[u] = a.i;
            }
        }
    }
}

// Short rows (≤ 16 · kShortVecs vectors): LANES lanes a row (4, 8 or 16), 32 / LANES rows a
// warp. A warp a row gave a row of 256 elements one or two vectors a lane (512 B in flight
// a warp in bf16) and a lane-0 merge and store per 512 B: 40-62% of copy. Here each lane
// issues up to kShortVecs 16-byte loads (its vectors lane, lane + LANES, ...) before the
// first use, so a warp has 2-4 KB in flight, and the merge is a segmented xor butterfly
// (offsets < LANES stay inside the row's lanes; all 32 lanes take part, the row loop being
// uniform over the warp). A lane sees its elements in increasing position (head, vectors,
// tail), so max's first-index rule holds as in scan_range.
constexpr int kShortVecs = 8;
template <typename T, typename A, bool MAX, int LANES>
__global__ void __launch_bounds__(kThreads)
reduce_short_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t cols, T* __restrict__ out,
                         int64_t* __restrict__ argmax) {
    constexpr int V = 16 / int(sizeof(T));
    constexpr int RPW = 32 / LANES;  // rows a warp
    const int lane = threadIdx.x & (LANES - 1), sub = (threadIdx.x & 31) / LANES;
    const int64_t wpb = blockDim.x >> 5;
    const int64_t gw = blockIdx.x * wpb + (threadIdx.x >> 5), nwarps = int64_t(gridDim.x) * wpb;
    for (int64_t rb = gw * RPW; rb < rows; rb += nwarps * RPW) {  // uniform over the warp
        const int64_t row = rb + sub;
        Acc<A> a = identity<A, MAX>();
        if (row < rows) {
            const T* p = x + row * cols;  // [C]
            int64_t head = 0;             // scalars up to the first 16-byte boundary (< V)
            if constexpr (V > 1) {
                const int mis = int((reinterpret_cast<uintptr_t>(p) & 15) / sizeof(T));
                head = mis ? (cols < V - mis ? cols : V - mis) : 0;
            }
            const T* body = p + head;  // 16-byte aligned when V > 1
            const int64_t nvec = (cols - head) / V;  // ≤ LANES · kShortVecs (the launcher)
            T buf[kShortVecs][V];
#pragma unroll
            for (int k = 0; k < kShortVecs; ++k) {
                const int64_t i = lane + k * LANES;
                if (i < nvec) load_vec<T, V>(body + i * V, buf[k]);
            }
            for (int64_t j = lane; j < head; j += LANES) take<MAX>(a, A(ld(p[j])), j);
#pragma unroll
            for (int k = 0; k < kShortVecs; ++k) {
                const int64_t i = lane + k * LANES;
                if (i < nvec) {
#pragma unroll
                    for (int e = 0; e < V; ++e) take<MAX>(a, A(ld(buf[k][e])), head + i * V + e);
                }
            }
            for (int64_t j = head + nvec * V + lane; j < cols; j += LANES) take<MAX>(a, A(ld(p[j])), j);
        }
#pragma unroll
        for (int o = LANES / 2; o > 0; o >>= 1) {
            Acc<A> b{__shfl_xor_sync(0xffffffffu, a.v, o), MAX ? __shfl_xor_sync(0xffffffffu, a.i, o) : kEmpty};
            merge<MAX>(a, b);
        }
        if (lane == 0 && row < rows) {
            out[row] = st<T>(a.v);
            if (MAX && argmax) argmax[row] = a.i == kEmpty ? 0 : a.i;
        }
    }
}

// pass 2: one block a row over its S partials
template <typename T, typename A, bool MAX>
__global__ void __launch_bounds__(kFinal)
reduce_partials_kernel(const A* __restrict__ pv, const int64_t* __restrict__ pi, int64_t rows, int64_t splits,
                       T* __restrict__ out, int64_t* __restrict__ argmax) {
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        Acc<A> a = identity<A, MAX>();
        for (int64_t s = threadIdx.x; s < splits; s += blockDim.x)
            merge<MAX>(a, Acc<A>{pv[row * splits + s], MAX ? pi[row * splits + s] : kEmpty});
        a = block_merge<MAX>(a);
        if (threadIdx.x == 0) {
            out[row] = st<T>(a.v);
            if (MAX && argmax) argmax[row] = a.i == kEmpty ? 0 : a.i;
        }
    }
}

// columns, pass 1: block (32, 8); blockIdx.x = o · tiles + tile (tile: 32 vectors of I),
// blockIdx.y = the row split s over Rd ([s·per, min(Rd, (s + 1)·per))).
template <typename T, typename A, int V>
__global__ void __launch_bounds__(256)
reduce_cols_kernel(const T* __restrict__ x, int64_t outer, int64_t red, int64_t inner, int64_t tiles, int64_t per,
                   T* __restrict__ out, A* __restrict__ part) {
    __shared__ A sh[8][32][V];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t o = blockIdx.x / tiles, tile = blockIdx.x - o * tiles;
    const int64_t c = (tile * 32 + tx) * V;  // first column of this thread's vector
    const int64_t r0 = int64_t(blockIdx.y) * per, r1 = r0 + per < red ? r0 + per : red;
    A acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = A(0);
    if (c < inner) {  // V > 1: inner % V == 0, so the whole vector is in range
        const T* base = x + o * red * inner + c;  // [Rd] with stride I
        int64_t r = r0 + ty;
        for (; r + 3 * 8 < r1; r += 4 * 8) {
            T buf[4][V];
#pragma unroll
            for (int k = 0; k < 4; ++k) load_vec<T, V>(base + (r + k * 8) * inner, buf[k]);
#pragma unroll
            for (int k = 0; k < 4; ++k)
#pragma unroll
                for (int e = 0; e < V; ++e) acc[e] += A(ld(buf[k][e]));
        }
        for (; r < r1; r += 8) {
            T buf[V];
            load_vec<T, V>(base + r * inner, buf);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[e] += A(ld(buf[e]));
        }
    }
#pragma unroll
    for (int e = 0; e < V; ++e) sh[ty][tx][e] = acc[e];
    __syncthreads();
    if (ty == 0 && c < inner) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
            A s = sh[0][tx][e];
#pragma unroll
            for (int k = 1; k < 8; ++k) s += sh[k][tx][e];
            if (part) part[(int64_t(blockIdx.y) * outer + o) * inner + c + e] = s;
            else out[o * inner + c + e] = st<T>(s);
        }
    }
}

// columns, pass 2: out[j] = Σ_s part[s, j] in order, j over O·I
template <typename T, typename A>
__global__ void reduce_cols_final_kernel(const A* __restrict__ part, int64_t n, int64_t splits, T* __restrict__ out) {
    for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
        A s = A(0);
        for (int64_t k = 0; k < splits; ++k) s += part[k * n + j];
        out[j] = st<T>(s);
    }
}

template <typename T>
__global__ void scatter_rows_kernel(T* dx, const int64_t* idx, const T* g, int64_t rows, int64_t cols) {
    for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x)
        dx[r * cols + idx[r]] = g[r];
}

// blocks of `threads` that fit on the whole GPU at once (registers and shared memory allow);
// the per-SM count is asked once per kernel
template <auto Kernel>
int64_t resident_blocks(int threads, int dev) {
    static const int per_sm = [&] {
        int nb = 0;
        RN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, Kernel, threads, 0));
        return nb > 0 ? nb : 1;
    }();
    return int64_t(per_sm) * sm_count(dev);
}
}  // namespace

void reduce_rows(ReduceOp op, DType dt, void* out, int64_t* argmax, const void* x, int64_t rows, int64_t cols) {
    if (rows == 0) return;
    const int dev = current_device();
    dispatch_float(dt, op == ReduceOp::sum ? "sum" : "max", [&](auto tag) {
        using T = decltype(tag);
        using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
        constexpr int V = 16 / int(sizeof(T));
        const auto* xp = static_cast<const T*>(x);
        T* op_ = static_cast<T*>(out);
        // Split rows when there are fewer than 4 units a resident warp: then the grid is exactly
        // the resident blocks and every warp gets (at most) 4 equal chunks, so no partial last
        // wave idles most of the GPU. A chunk has at least 8 vectors a lane, so that splitting
        // never makes warps that only pay for the merge.
        const int64_t res_blocks = resident_blocks<reduce_rows_kernel<T, A, true>>(kThreads, dev);
        const int64_t target = res_blocks * (kThreads / 32) * 4;
        const int64_t min_chunk = 32 * V * 8;
        int64_t splits = 1;
        if (rows < target && cols > 2 * min_chunk)
            splits = std::max<int64_t>(1, std::min<int64_t>(target / rows, (cols + min_chunk - 1) / min_chunk));
        // chunk length a multiple of V, so that chunks of one row share its alignment
        int64_t per = cols;
        if (splits > 1) {
            per = ((cols + splits - 1) / splits + V - 1) / V * V;
            splits = (cols + per - 1) / per;
        }
        // short rows (never split: splitting needs C > 512 vectors): LANES lanes a row
        const int64_t nvb = (cols + V - 1) / V;  // bounds every row's vector count
        if (splits == 1 && nvb <= 16 * kShortVecs) {
            auto short_rows = [&](auto is_max, auto lanes) {
                constexpr bool MAX = decltype(is_max)::value;
                constexpr int L = decltype(lanes)::value;
                const int64_t rows_per_block = (kThreads / 32) * (32 / L);
                const int g = int(std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, int64_t(1) << 30));
                reduce_short_rows_kernel<T, A, MAX, L><<<g, kThreads, 0, stream()>>>(xp, rows, cols, op_, argmax);
                RN_CUDA_CHECK_LAUNCH();
            };
            auto pick = [&](auto is_max) {
                if (nvb <= 4 * kShortVecs) short_rows(is_max, std::integral_constant<int, 4>{});
                else if (nvb <= 8 * kShortVecs) short_rows(is_max, std::integral_constant<int, 8>{});
                else short_rows(is_max, std::integral_constant<int, 16>{});
            };
            if (op == ReduceOp::max) pick(std::true_type{});
            else pick(std::false_type{});
            return;
        }
        const int64_t units = rows * splits;
        // many rows: a warp a row, blocks scheduled as they finish; split rows: resident blocks
        const int grid = int(std::min<int64_t>((units + kThreads / 32 - 1) / (kThreads / 32),
                                               splits > 1 ? res_blocks : int64_t(1) << 30));
        Tensor pv, pi;
        A* pvp = nullptr;
        int64_t* pip = nullptr;
        if (splits > 1) {
            pv = empty({units}, std::is_same_v<A, double> ? DType::f64 : DType::f32, Device::cuda(dev));
            pvp = static_cast<A*>(pv.raw_data());
            if (op == ReduceOp::max) {
                pi = empty({units}, DType::i64, Device::cuda(dev));
                pip = pi.data<int64_t>();
            }
        }
        auto launch = [&](auto is_max) {
            constexpr bool MAX = decltype(is_max)::value;
            reduce_rows_kernel<T, A, MAX><<<grid, kThreads, 0, stream()>>>(xp, rows, cols, splits, per, op_, argmax,
                                                                         pvp, pip);
            RN_CUDA_CHECK_LAUNCH();
            if (splits > 1) {
                const int g2 = int(std::min<int64_t>(rows, int64_t(1) << 30));
                reduce_partials_kernel<T, A, MAX><<<g2, kFinal, 0, stream()>>>(pvp, pip, rows, splits, op_, argmax);
                RN_CUDA_CHECK_LAUNCH();
            }
        };
        if (op == ReduceOp::max) launch(std::true_type{});
        else launch(std::false_type{});
    });
}

void reduce_cols(DType dt, void* out, const void* x, int64_t outer, int64_t red, int64_t inner) {
    if (outer == 0 || inner == 0) return;
    const int dev = current_device();
    dispatch_float(dt, "sum", [&](auto tag) {
        using T = decltype(tag);
        using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
        constexpr int VV = 16 / int(sizeof(T));
        const auto* xp = static_cast<const T*>(x);
        T* op_ = static_cast<T*>(out);
        auto run = [&](auto vtag) {
            constexpr int V = decltype(vtag)::value;
            const int64_t tiles_v = ((inner + V - 1) / V + 31) / 32;  // tiles of 32 vectors
            const int64_t gx = outer * tiles_v;
            RN_CHECK(gx <= INT32_MAX, "sum (CUDA): too many column tiles: ", outer, " x ", tiles_v);
            // split Rd so that the grid is at most 4 waves of resident blocks (rounded down: a
            // nearly empty last wave would cost a whole wave), each thread keeping ≥ 4 rows' loads
            const int64_t target = resident_blocks<reduce_cols_kernel<T, A, V>>(256, dev) * 4;
            int64_t splits = std::max<int64_t>(1, target / gx);
            splits = std::min<int64_t>(std::min<int64_t>(splits, (red + 31) / 32), 65535);
            splits = std::max<int64_t>(splits, 1);
            const int64_t per = (red + splits - 1) / splits;
            splits = red > 0 ? (red + per - 1) / per : 1;
            Tensor part;
            A* pp = nullptr;
            if (splits > 1) {
                part = empty({splits * outer * inner}, std::is_same_v<A, double> ? DType::f64 : DType::f32,
                             Device::cuda(dev));
                pp = static_cast<A*>(part.raw_data());
            }
            const dim3 grid{unsigned(gx), unsigned(splits), 1u};
            reduce_cols_kernel<T, A, V><<<grid, dim3(32, 8), 0, stream()>>>(xp, outer, red, inner, tiles_v,
                                                                             std::max<int64_t>(per, 1), op_, pp);
            RN_CUDA_CHECK_LAUNCH();
            if (splits > 1) {
                reduce_cols_final_kernel<T, A><<<grid_for(outer * inner), 256, 0, stream()>>>(pp, outer * inner, splits,
                                                                                               op_);
                RN_CUDA_CHECK_LAUNCH();
            }
        };
        if (inner % VV == 0 && aligned16(x)) run(std::integral_constant<int, VV>{});
        else run(std::integral_constant<int, 1>{});
    });
}

void scatter_rows(DType dt, void* dx, const int64_t* argmax, const void* g, int64_t rows, int64_t cols) {
    if (rows == 0) return;
    dispatch_float(dt, "max backward", [&](auto tag) {
        using T = decltype(tag);
        scatter_rows_kernel<T><<<grid_for(rows), 256, 0, stream()>>>(static_cast<T*>(dx), argmax,
                                                                    static_cast<const T*>(g), rows, cols);
        RN_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace rn::cuda
