// cuda/index.cu — index_select (and so embedding) and gather on CUDA (mirror of
// ops/index_cpu.cpp), plus the device-side range check of the indices.
//
// Dimension key: x [O, N, I] (outer, indexed dim, inner), idx [K] in [0, N), out [O, K, I];
// a "row" is one [I] slice, a "unit" the widest word (16, 8, 4 or 2 bytes) that divides a
// row and both base addresses, so forwards copy bytes whatever the dtype.
//
// Work is split into items (row, chunk of at most kChunk units/columns) handled by a group
// of G threads: G = 32 (a warp, lanes striding the chunk, coalesced) for rows of 32 units
// or more, G = 1 (a thread per row) for short rows such as I = 1. Chunking gives a few
// huge rows (index_select on dim 0 of [3, 10^6]) as much parallelism as many small ones.
//
// Backwards (scatter-add) are deterministic, without value atomics:
//  1. the destination keys (idx for index_select, the destination offset in x for gather)
//     are stably radix-sorted with their positions (cub::DeviceRadixSort, only the bits
//     the largest key needs), so equal keys form runs in ascending position;
//  2. dx is zeroed, and each run's rows are summed (fp32 for bf16) and written once:
//     - a run of at most kLongRun positions (nearly all of them) by the work item at its
//       first position, in ascending k: the CPU's order, so f32/f64 match it bit for bit;
//     - a longer run (a frequent token: thousands of repeats of "the" in a batch) by a
//       block per (run, 32-column slab) whose kSplit warps take every kSplit-th row and
//       add their partials in warp order: a fixed order, so still deterministic run to
//       run, but not the CPU's (f32 differs from it by rounding only). Summed by a lone
//       worker, R repeats would cost R dependent loads per column (~1 ms for R = 1000).
#include <cub/device/device_radix_sort.cuh>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/device.h"
#include "cuda/index.h"
#include "cuda/math.cuh"

namespace rn::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kMaxDims = 8;
constexpr int64_t kChunk = 256;  // units (forward) or columns (backward) per work item of a warp
constexpr int64_t kLongRun = 32;  // runs longer than this are split over kSplit warps
constexpr int kSplit = 8;

// Device scratch from the caching allocator, returned when the host scope ends. Returning
// it right after the launches is safe: Note [One compute stream] (cuda/context.h).
struct Scratch {
    void* p = nullptr;
    int dev = 0;
    explicit Scratch(size_t bytes) : dev(current_device()) {
        if (bytes) p = device_malloc(bytes, dev);
    }
    ~Scratch() { device_free(p, dev); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// blocks for `items` work items of G threads each
int blocks_for(int64_t items, int G) { return grid_for(items * G, kThreads); }

// ---------------------------------------------------------------- index_select forward

// out[o, k, :] = x[o, idx[k], :] in units of type U; U_row units a row
template <typename U, int G>
__global__ void index_rows_kernel(U* __restrict__ out, const U* __restrict__ x, const int64_t* __restrict__ idx,
                                  int64_t O, int64_t N, int64_t K, int64_t U_row, int64_t chunk, int64_t chunks) {
    const int lane = G == 1 ? 0 : int(threadIdx.x % G);
    const int64_t group = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / G;
    const int64_t groups = int64_t(gridDim.x) * blockDim.x / G;
    const int64_t items = O * K * chunks;
    for (int64_t w = group; w < items; w += groups) {
        int64_t r = w / chunks, c = w - r * chunks;  // row of out, chunk of that row
        int64_t o = r / K, k = r - o * K;
        const U* src = x + (o * N + idx[k]) * U_row;
        U* dst = out + r * U_row;
        int64_t u1 = c * chunk + chunk < U_row ? c * chunk + chunk : U_row;
        for (int64_t u = c * chunk + lane; u < u1; u += G) dst[u] = src[u];
    }
}

template <typename U>
void launch_index_rows(void* out, const void* x, const int64_t* idx, int64_t O, int64_t N, int64_t K,
                       int64_t U_row) {
    auto* o = static_cast<U*>(out);
    auto* xp = static_cast<const U*>(x);
    if (U_row >= 32) {
        int64_t chunks = (U_row + kChunk - 1) / kChunk;
        index_rows_kernel<U, 32><<<blocks_for(O * K * chunks, 32), kThreads, 0, stream()>>>(o, xp, idx, O, N, K,
                                                                                            U_row, kChunk, chunks);
    } else {
        index_rows_kernel<U, 1><<<blocks_for(O * K, 1), kThreads, 0, stream()>>>(o, xp, idx, O, N, K, U_row, U_row,
                                                                                1);
    }
    RN_CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- scatter-add (backwards)

__global__ void iota_kernel(int64_t* __restrict__ p, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        p[i] = i;
}

// One past the last position of the run of key n that starts at j (keys sorted): galloping
// then bisection, O(log R) loads for a run of R, so a long run is not walked serially.
__device__ __forceinline__ int64_t run_end(const uint64_t* __restrict__ key, int64_t j, int64_t K, uint64_t n) {
    int64_t lo = j, hi = j + 1, step = 1;  // key[lo] == n; hi is past the run or not yet known
    while (hi < K && key[hi] == n) {
        lo = hi;
        step *= 2;
        hi = j + step;
    }
    if (hi > K) hi = K;
    while (hi - lo > 1) {  // key[lo] == n, and hi == K or key[hi] != n
        int64_t mid = lo + (hi - lo) / 2;
        if (key[mid] == n) lo = mid;
        else hi = mid;
    }
    return hi;
}

// Short runs: dx[o, key[j], :] = Σ_{q in run of j} dout[o, pos[q], :] in ascending q, for j
// the first position of a run of at most kLongRun equal sorted keys; dx is [O, N, I] and
// zero-filled beforehand, dout is [O, K, I]. Longer runs are left to long_run_sum_kernel.
template <typename T, int G>
__global__ void run_sum_kernel(T* __restrict__ dx, const T* __restrict__ dout, const uint64_t* __restrict__ key,
                               const int64_t* __restrict__ pos, int64_t O, int64_t N, int64_t K, int64_t I,
                               int64_t chunk, int64_t chunks) {
    using A = typename acc_of<T>::type;
    const int lane = G == 1 ? 0 : int(threadIdx.x % G);
    const int64_t group = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / G;
    const int64_t groups = int64_t(gridDim.x) * blockDim.x / G;
    const int64_t items = O * K * chunks;
    for (int64_t w = group; w < items; w += groups) {
        int64_t r = w / chunks, c = w - r * chunks;
        int64_t o = r / K, j = r - o * K;
        const uint64_t n = key[j];
        if (j > 0 && key[j - 1] == n) continue;           // not the first of its run
        if (j + kLongRun < K && key[j + kLongRun] == n) continue;  // a long run
        const int64_t end = run_end(key, j, K, n);
        const T* src = dout + o * K * I;
        T* dst = dx + (o * N + int64_t(n)) * I;
        int64_t i1 = c * chunk + chunk < I ? c * chunk + chunk : I;
        for (int64_t i = c * chunk + lane; i < i1; i += G) {
            A acc = A(0);
            // the trip count is known, so the unrolled loads issue together; the adds stay in order
#pragma unroll 4
            for (int64_t q = j; q < end; ++q) acc += ld(src[pos[q] * I + i]);
            dst[i] = st<T>(acc);
        }
    }
}

// Long runs: a block of kSplit warps per (run, o, slab of 32 columns). Warp w sums rows
// j + w, j + w + kSplit, ... of the run (lane = column); warp 0 then adds the kSplit
// partials in warp order. blockIdx.x strides over run starts, blockIdx.y over (o, slab).
template <typename T>
__global__ void __launch_bounds__(kSplit * 32)
    long_run_sum_kernel(T* __restrict__ dx, const T* __restrict__ dout, const uint64_t* __restrict__ key,
                        const int64_t* __restrict__ pos, int64_t O, int64_t N, int64_t K, int64_t I, int64_t slabs) {
    using A = typename acc_of<T>::type;
    __shared__ A part[kSplit][32];
    const int lane = int(threadIdx.x & 31), warp = int(threadIdx.x >> 5);
    for (int64_t y = blockIdx.y; y < O * slabs; y += gridDim.y) {
        const int64_t o = y / slabs, i = (y - o * slabs) * 32 + lane;
        const T* src = dout + o * K * I;
        for (int64_t j = blockIdx.x; j < K; j += gridDim.x) {
            // uniform across the block: every thread takes the same branches (safe barriers)
            const uint64_t n = key[j];
            if (j > 0 && key[j - 1] == n) continue;
            if (!(j + kLongRun < K && key[j + kLongRun] == n)) continue;  // short: run_sum_kernel's
            const int64_t end = run_end(key, j, K, n);
            A acc = A(0);
            if (i < I) {
#pragma unroll 4
                for (int64_t q = j + warp; q < end; q += kSplit) acc += ld(src[pos[q] * I + i]);
            }
            part[warp][lane] = acc;
            __syncthreads();
            if (warp == 0 && i < I) {
                A sum = part[0][lane];
#pragma unroll
                for (int w = 1; w < kSplit; ++w) sum += part[w][lane];
                dx[(o * N + int64_t(n)) * I + i] = st<T>(sum);
            }
            __syncthreads();  // part[] is reused by the next run
        }
    }
}

int key_bits(uint64_t max_key) {
    int b = 0;
    while (b < 64 && (max_key >> b) != 0) ++b;
    return b < 1 ? 1 : b;
}

// dx [O, N, I] = zeros, then for every k: dx[o, key[k], :] += dout[o, k, :] in ascending k.
// keys are device values in [0, N) (validated by the caller); K < 2^31 (cub's item count).
template <typename T>
void scatter_add_rows(T* dx, const T* dout, const uint64_t* keys, int64_t O, int64_t N, int64_t K, int64_t I) {
    cudaStream_t s = stream();
    RN_CUDA_CHECK(cudaMemsetAsync(dx, 0, size_t(O * N * I) * sizeof(T), s));  // all-zero bits are +0.0
    if (K == 0 || O * I == 0) return;
    RN_CHECK(K < (int64_t(1) << 31), "scatter-add on CUDA: at most 2^31 - 1 indices, got ", K);
    const int bits = key_bits(uint64_t(N - 1));
    size_t sort_bytes = 0;
    RN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys, static_cast<uint64_t*>(nullptr),
                                                  static_cast<const int64_t*>(nullptr),
                                                  static_cast<int64_t*>(nullptr), int(K), 0, bits, s));
    const size_t kb = align256(size_t(K) * 8);
    Scratch scratch(3 * kb + sort_bytes);
    char* base = static_cast<char*>(scratch.p);
    auto* sorted_keys = reinterpret_cast<uint64_t*>(base);
    auto* pos_in = reinterpret_cast<int64_t*>(base + kb);
    auto* pos = reinterpret_cast<int64_t*>(base + 2 * kb);
    void* temp = base + 3 * kb;
    iota_kernel<<<grid_for(K, kThreads), kThreads, 0, s>>>(pos_in, K);
    RN_CUDA_CHECK_LAUNCH();
    // LSD radix sort is stable: equal keys keep ascending positions, the CPU's summation order
    RN_CUDA_CHECK(
        cub::DeviceRadixSort::SortPairs(temp, sort_bytes, keys, sorted_keys, pos_in, pos, int(K), 0, bits, s));
    if (I >= 32) {
        int64_t chunks = (I + kChunk - 1) / kChunk;
        run_sum_kernel<T, 32><<<blocks_for(O * K * chunks, 32), kThreads, 0, s>>>(dx, dout, sorted_keys, pos, O, N, K,
                                                                                 I, kChunk, chunks);
    } else {
        run_sum_kernel<T, 1><<<blocks_for(O * K, 1), kThreads, 0, s>>>(dx, dout, sorted_keys, pos, O, N, K, I, I, 1);
    }
    RN_CUDA_CHECK_LAUNCH();
    if (K > kLongRun) {
        // Long runs are rare, so the x blocks each scan a stretch of run starts (cached key
        // loads) and y spreads one run's columns: a hot run gets O · I / 32 blocks at once.
        const int64_t slabs = (I + 31) / 32;
        const int64_t gy = O * slabs < 65535 ? O * slabs : 65535;
        int64_t gx = 4096 / gy;
        gx = gx < 1 ? 1 : gx > K ? K : gx;
        long_run_sum_kernel<T><<<dim3(unsigned(gx), unsigned(gy)), kSplit * 32, 0, s>>>(dx, dout, sorted_keys, pos, O,
                                                                                         N, K, I, slabs);
        RN_CUDA_CHECK_LAUNCH();
    }
}

// ---------------------------------------------------------------- gather

// idx's shape and x's contiguous strides; out/idx element e has coordinates in `size`
struct GatherGeo {
    int nd, dim;
    int64_t size[kMaxDims];
    int64_t xs[kMaxDims];
};

GatherGeo make_gather_geo(const Shape& x_shape, const Shape& idx_shape, int64_t dim) {
    RN_CHECK(idx_shape.size() <= size_t(kMaxDims), "gather on CUDA: at most ", kMaxDims, " dims, got ",
             idx_shape.size());
    GatherGeo g{};
    g.nd = int(idx_shape.size());
    g.dim = int(dim);
    Shape xs = contiguous_strides(x_shape);
    for (int d = 0; d < g.nd; ++d) {
        g.size[d] = idx_shape[size_t(d)];
        g.xs[d] = xs[size_t(d)];
    }
    return g;
}

// element offset in x of element e of idx: its coordinates with idx[e] at `dim`
__device__ __forceinline__ int64_t gather_offset(const GatherGeo& g, int64_t e, int64_t index) {
    int64_t rem = e, off = 0;
    for (int d = g.nd - 1; d >= 0; --d) {
        int64_t c = rem % g.size[d];
        rem /= g.size[d];
        off += (d == g.dim ? index : c) * g.xs[d];
    }
    return off;
}

// E = an unsigned type of the element's size: the forward copies bits
template <typename E>
__global__ void gather_kernel(E* __restrict__ out, const E* __restrict__ x, const int64_t* __restrict__ idx,
                              int64_t n, GatherGeo g) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
        out[e] = x[gather_offset(g, e, idx[e])];
}

__global__ void gather_keys_kernel(uint64_t* __restrict__ keys, const int64_t* __restrict__ idx, int64_t n,
                                   GatherGeo g) {
    for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
        keys[e] = uint64_t(gather_offset(g, e, idx[e]));
}

// ---------------------------------------------------------------- range check

__global__ void find_bad_kernel(const int64_t* __restrict__ idx, int64_t n, int64_t bound,
                                unsigned long long* first) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t v = idx[i];
        if (v < 0 || v >= bound) atomicMin(first, static_cast<unsigned long long>(i));
    }
}

// copies by element size; index ops never do arithmetic on forward values
template <typename F>
void dispatch_bits(DType dt, F&& f) {
    switch (dtype_size(dt)) {
        case 2: f(uint16_t{}); return;
        case 4: f(uint32_t{}); return;
        case 8: f(uint64_t{}); return;
        default: break;
    }
    RN_FAIL("index kernels on CUDA: unsupported element size ", dtype_size(dt), " of ", dt);
}

bool aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }
}  // namespace

void index_select_forward(DType dt, void* out, const void* x, const int64_t* idx, int64_t O, int64_t N,
                          int64_t K, int64_t I) {
    if (O * K * I == 0) return;
    const size_t row = size_t(I) * dtype_size(dt);
    // the widest unit that divides a row and both bases: 16-byte vectors for D = 768 in f32/bf16
    size_t w = 16;
    while (w > 1 && (row % w != 0 || !aligned(out, w) || !aligned(x, w))) w /= 2;
    const int64_t u_row = int64_t(row / w);
    switch (w) {
        case 16: launch_index_rows<uint4>(out, x, idx, O, N, K, u_row); break;
        case 8: launch_index_rows<uint2>(out, x, idx, O, N, K, u_row); break;
        case 4: launch_index_rows<uint32_t>(out, x, idx, O, N, K, u_row); break;
        case 2: launch_index_rows<uint16_t>(out, x, idx, O, N, K, u_row); break;
        default: launch_index_rows<uint8_t>(out, x, idx, O, N, K, u_row); break;
    }
}

void index_select_backward(DType dt, void* dx, const void* dout, const int64_t* idx, int64_t O, int64_t N,
                           int64_t K, int64_t I) {
    if (O * N * I == 0) return;
    dispatch_float(dt, "index_select backward", [&](auto tag) {
        using T = decltype(tag);
        // idx holds validated values in [0, N): as unsigned keys they sort the same
        scatter_add_rows<T>(static_cast<T*>(dx), static_cast<const T*>(dout), reinterpret_cast<const uint64_t*>(idx),
                            O, N, K, I);
    });
}

void gather_forward(DType dt, void* out, const void* x, const int64_t* idx, const Shape& x_shape,
                    const Shape& idx_shape, int64_t dim) {
    const int64_t n = numel_of(idx_shape);
    if (n == 0) return;
    GatherGeo g = make_gather_geo(x_shape, idx_shape, dim);
    dispatch_bits(dt, [&](auto tag) {
        using E = decltype(tag);
        gather_kernel<E><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<E*>(out),
                                                                          static_cast<const E*>(x), idx, n, g);
        RN_CUDA_CHECK_LAUNCH();
    });
}

void gather_backward(DType dt, void* dx, const void* dout, const int64_t* idx, const Shape& x_shape,
                     const Shape& idx_shape, int64_t dim) {
    const int64_t nx = numel_of(x_shape), n = numel_of(idx_shape);
    if (nx == 0) return;
    GatherGeo g = make_gather_geo(x_shape, idx_shape, dim);
    dispatch_float(dt, "gather backward", [&](auto tag) {
        using T = decltype(tag);
        // gather's scatter-add is a row scatter-add with I = 1 whose keys are the
        // destination offsets in x: distinct fibers never share a key, and within a fiber
        // the stable sort keeps ascending j, the CPU's order
        Scratch keys(size_t(n) * sizeof(uint64_t));
        auto* kp = static_cast<uint64_t*>(keys.p);
        if (n > 0) {
            gather_keys_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(kp, idx, n, g);
            RN_CUDA_CHECK_LAUNCH();
        }
        scatter_add_rows<T>(static_cast<T*>(dx), static_cast<const T*>(dout), kp, 1, nx, n, 1);
    });
}

int64_t find_out_of_range(const int64_t* idx, int64_t n, int64_t bound, int64_t* value) {
    if (n == 0) return -1;
    cudaStream_t s = stream();
    Scratch slot(sizeof(unsigned long long));
    auto* first = static_cast<unsigned long long*>(slot.p);
    RN_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), s));  // "none yet" = all ones
    find_bad_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(idx, n, bound, first);
    RN_CUDA_CHECK_LAUNCH();
    // the one host sync: the op must throw here, at the call, with the CPU's message
    unsigned long long host = 0;
    RN_CUDA_CHECK(cudaMemcpyAsync(&host, first, sizeof(host), cudaMemcpyDeviceToHost, s));
    RN_CUDA_CHECK(cudaStreamSynchronize(s));
    if (host == ~0ull) return -1;
    const int64_t pos = int64_t(host);
    RN_CUDA_CHECK(cudaMemcpyAsync(value, idx + pos, sizeof(int64_t), cudaMemcpyDeviceToHost, s));
    RN_CUDA_CHECK(cudaStreamSynchronize(s));
    return pos;
}

}  // namespace rn::cuda
