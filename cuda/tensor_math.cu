// cuda/tensor_math.cu — fill, strided copy with dtype conversion, accumulate (acc += g).
// Dimension key: N = number of elements; up to 8 dims, geometry passed by value.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "core/shape.h"
#include "core/tensor_math.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/device.h"
#include "cuda/tensor_math.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {
constexpr int kMaxDims = 8;

struct Geometry {
    int nd;
    int64_t sizes[kMaxDims];
    int64_t dst_st[kMaxDims];
    int64_t src_st[kMaxDims];
};

// Conversions go through double only where a side is f64 (or an integer wider than float's
// 24-bit mantissa): double arithmetic is slow on the GPU and float is exact for the rest.
template <typename T>
constexpr bool needs_double = std::is_same_v<T, double> || (std::is_integral_v<T> && sizeof(T) >= 4);
template <typename D, typename S>
using via_t = std::conditional_t<needs_double<D> || needs_double<S>, double, float>;

template <typename W, typename T> __device__ __forceinline__ W to_w(T v) { return W(v); }
template <> __device__ __forceinline__ float to_w<float, __nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ double to_w<double, __nv_bfloat16>(__nv_bfloat16 v) { return double(__bfloat162float(v)); }
template <typename T, typename W> __device__ __forceinline__ T from_w(W v) { return T(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_w<__nv_bfloat16, float>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_w<__nv_bfloat16, double>(double v) { return __float2bfloat16(float(v)); }

template <typename D, typename S> __device__ __forceinline__ D convert(S v) {
    using W = via_t<D, S>;
    return from_w<D>(to_w<W>(v));
}
// acc + g in float, or double where a side needs it
template <typename A, typename G> __device__ __forceinline__ A add_conv(A a, G g) {
    using W = via_t<A, G>;
    return from_w<A>(to_w<W>(a) + to_w<W>(g));
}

// The general strided copy: I is uint32_t when every index fits (64-bit division is an
// emulated, ~10× slower instruction sequence on the GPU).
template <typename D, typename S, typename I>
__global__ void copy_kernel(D* dst, const S* src, Geometry g, I n) {
    for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
        I rem = i;
        int64_t od = 0, os = 0;
        for (int d = g.nd - 1; d >= 0; --d) {
            const I sz = I(g.sizes[d]);
            const I q = rem / sz, k = rem - q * sz;
            rem = q;
            od += int64_t(k) * g.dst_st[d];
            os += int64_t(k) * g.src_st[d];
        }
        dst[od] = convert<D>(src[os]);
    }
}

// Both sides contiguous, dtypes differ (the weight casts of mixed precision): flat, four
// elements per thread.
template <typename D, typename S>
__global__ void convert_flat_kernel(D* __restrict__ dst, const S* __restrict__ src, int64_t n) {
    const int64_t n4 = n / 4;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
        S a[4];
        D b[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) a[j] = src[4 * i + j];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = convert<D>(a[j]);
#pragma unroll
        for (int j = 0; j < 4; ++j) dst[4 * i + j] = b[j];
    }
    for (int64_t i = 4 * n4 + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = convert<D>(src[i]);
}

// The innermost dim is contiguous on both sides (permute(0,2,1,3).contiguous() and most
// other layout changes of the model): one warp per row of `inner` elements, the row's two
// offsets computed once per row; V = 16-byte vectors when dtypes match and rows are aligned.
template <typename D, typename S, bool VEC>
__global__ void copy_rows_kernel(D* dst, const S* src, Geometry g, int64_t rows, int64_t inner) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
    for (int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
        int64_t rem = r, od = 0, os = 0;
        for (int d = g.nd - 2; d >= 0; --d) {  // dims above the innermost
            const int64_t k = rem % g.sizes[d];
            rem /= g.sizes[d];
            od += k * g.dst_st[d];
            os += k * g.src_st[d];
        }
        if constexpr (VEC) {
            const uint4* s4 = reinterpret_cast<const uint4*>(src + os);
            uint4* d4 = reinterpret_cast<uint4*>(dst + od);
            const int64_t nv = inner * int64_t(sizeof(S)) / 16;
            for (int64_t j = lane; j < nv; j += 32) d4[j] = s4[j];
        } else {
            for (int64_t j = lane; j < inner; j += 32) dst[od + j] = convert<D>(src[os + j]);
        }
    }
}

// Merge adjacent dims that are one run in both tensors and drop size-1 dims, so that a
// permuted copy has as few, and as long, dims as its layout allows.
Geometry coalesce(const Geometry& in) {
    Geometry g{};
    g.nd = 0;
    for (int d = 0; d < in.nd; ++d) {
        if (in.sizes[d] == 1) continue;
        if (g.nd > 0) {
            int p = g.nd - 1;
            // previous (outer) dim p and this dim d form one run if stride[p] == size[d]·stride[d]
            if (g.dst_st[p] == in.sizes[d] * in.dst_st[d] && g.src_st[p] == in.sizes[d] * in.src_st[d]) {
                g.sizes[p] *= in.sizes[d];
                g.dst_st[p] = in.dst_st[d];
                g.src_st[p] = in.src_st[d];
                continue;
            }
        }
        g.sizes[g.nd] = in.sizes[d];
        g.dst_st[g.nd] = in.dst_st[d];
        g.src_st[g.nd] = in.src_st[d];
        ++g.nd;
    }
    if (g.nd == 0) {  // a single element
        g.nd = 1;
        g.sizes[0] = 1;
        g.dst_st[0] = g.src_st[0] = 1;
    }
    return g;
}

template <typename T>
__global__ void fill_flat_kernel(T* __restrict__ dst, int64_t n, T v) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) dst[i] = v;
}

template <typename T>
__global__ void fill_kernel(T* dst, Geometry g, int64_t n, T v) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t rem = i, od = 0;
        for (int d = g.nd - 1; d >= 0; --d) {
            int64_t k = rem % g.sizes[d];
            rem /= g.sizes[d];
            od += k * g.dst_st[d];
        }
        dst[od] = v;
    }
}

// out = acc + g over contiguous operands of the same shape, no index arithmetic (gradient
// sums); out may be acc (accumulate in place), so neither pointer is __restrict__. With V > 1
// (same dtypes, 16-byte aligned) V elements move as one 16-byte access and the last n % V
// one by one: the scalar form moved bf16 two bytes at a time.
template <typename A, typename G, int V>
__global__ void add_flat_kernel(A* out, const A* acc, const G* g, int64_t n) {
    const int64_t nv = n / V, step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nv; i += step) {
        if constexpr (V > 1) {
            Pack<A, V> a = load_pack<A, V>(acc + i * V);
            const Pack<G, V> b = load_pack<G, V>(g + i * V);
#pragma unroll
            for (int e = 0; e < V; ++e) a.v[e] = add_conv(a.v[e], b.v[e]);
            store_pack<A, V>(out + i * V, a);
        } else {
            out[i] = add_conv(acc[i], g[i]);
        }
    }
    for (int64_t i = nv * V + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += step)
        out[i] = add_conv(acc[i], g[i]);
}

template <typename A, typename G>
__global__ void accumulate_kernel(A* acc, const G* g, Geometry geo, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t oa, og;
        strided_offsets(i, geo.nd, geo.sizes, geo.dst_st, geo.src_st, oa, og);
        acc[oa] = add_conv(acc[oa], g[og]);
    }
}

Geometry make_geometry(const Tensor& dst, const Tensor* src) {
    Geometry g{};
    g.nd = int(dst.dim());
    RN_CHECK(g.nd <= kMaxDims, "CUDA strided kernels take at most ", kMaxDims, " dims, got ", g.nd);
    const Shape src_st = src ? broadcast_strides(*src, dst.shape()) : Shape();
    for (int d = 0; d < g.nd; ++d) {
        g.sizes[d] = dst.shape()[d];
        g.dst_st[d] = dst.strides()[d];
        g.src_st[d] = src ? src_st[size_t(d)] : 0;
    }
    return g;
}

int blocks_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, int64_t(sm_count()) * 32)); }
}  // namespace

void fill(const Tensor& t, double value) {
    int64_t n = t.numel();
    if (n == 0) return;
    set_device(t.device().index);
    Geometry g = make_geometry(t, nullptr);
    dispatch_any(t.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T v;
        if constexpr (std::is_same_v<T, __nv_bfloat16>) v = __float2bfloat16(float(value));
        else v = T(value);
        if (t.is_contiguous())
            fill_flat_kernel<T><<<blocks_for(n), 256, 0, stream()>>>(static_cast<T*>(t.raw_data()), n, v);
        else
            fill_kernel<T><<<blocks_for(n), 256, 0, stream()>>>(static_cast<T*>(t.raw_data()), g, n, v);
        RN_CUDA_CHECK_LAUNCH();
    });
}

void copy_strided(const Tensor& dst, const Tensor& src) {
    int64_t n = dst.numel();
    if (n == 0) return;
    set_device(dst.device().index);
    if (dst.dtype() == src.dtype() && dst.shape() == src.shape() && dst.is_contiguous() && src.is_contiguous()) {
        // the common case (gradients, .contiguous() of a contiguous view): a plain device copy
        RN_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDeviceToDevice, stream()));
        return;
    }
    Geometry g = coalesce(make_geometry(dst, &src));
    const bool both_contig = dst.is_contiguous() && src.is_contiguous() && dst.shape() == src.shape();
    const int64_t inner = g.sizes[g.nd - 1];
    const bool rows = g.nd >= 2 && g.dst_st[g.nd - 1] == 1 && g.src_st[g.nd - 1] == 1 && inner >= 16;
    dispatch_any(dst.dtype(), [&](auto dtag) {
        dispatch_any(src.dtype(), [&](auto stag) {
            using D = decltype(dtag);
            using S = decltype(stag);
            D* d = static_cast<D*>(dst.raw_data());
            const S* sp = static_cast<const S*>(src.raw_data());
            if (both_contig) {
                convert_flat_kernel<D, S><<<blocks_for((n + 3) / 4), 256, 0, stream()>>>(d, sp, n);
            } else if (rows) {
                const int64_t nrows = n / inner;
                const int blocks = int(std::min<int64_t>((nrows + 7) / 8, int64_t(sm_count()) * 64));
                bool vec = std::is_same_v<D, S> && (inner * int64_t(sizeof(S))) % 16 == 0 && aligned16(d) && aligned16(sp);
                for (int k = 0; k + 1 < g.nd && vec; ++k)
                    vec = (g.dst_st[k] * int64_t(sizeof(D))) % 16 == 0 && (g.src_st[k] * int64_t(sizeof(S))) % 16 == 0;
                if (vec)
                    copy_rows_kernel<D, S, true><<<blocks, 256, 0, stream()>>>(d, sp, g, nrows, inner);
                else
                    copy_rows_kernel<D, S, false><<<blocks, 256, 0, stream()>>>(d, sp, g, nrows, inner);
            } else if (n < (int64_t(1) << 31)) {
                copy_kernel<D, S, uint32_t><<<blocks_for(n), 256, 0, stream()>>>(d, sp, g, uint32_t(n));
            } else {
                copy_kernel<D, S, uint64_t><<<blocks_for(n), 256, 0, stream()>>>(d, sp, g, uint64_t(n));
            }
            RN_CUDA_CHECK_LAUNCH();
        });
    });
}

namespace {
// out = acc + g, all three contiguous with one shape (out may be acc)
void add_flat(const Tensor& out, const Tensor& acc, const Tensor& g) {
    const int64_t n = acc.numel();
    dispatch_any(acc.dtype(), [&](auto atag) {
        dispatch_any(g.dtype(), [&](auto gtag) {
            using A = decltype(atag);
            using G = decltype(gtag);
            A* o = static_cast<A*>(out.raw_data());
            const A* a = static_cast<const A*>(acc.raw_data());
            const G* gp = static_cast<const G*>(g.raw_data());
            constexpr int V = 16 / int(sizeof(A));
            if constexpr (std::is_same_v<A, G> && V > 1) {
                if (aligned16(o) && aligned16(a) && aligned16(gp)) {
                    add_flat_kernel<A, G, V><<<blocks_for((n + V - 1) / V), 256, 0, stream()>>>(o, a, gp, n);
                    RN_CUDA_CHECK_LAUNCH();
                    return;
                }
            }
            add_flat_kernel<A, G, 1><<<blocks_for(n), 256, 0, stream()>>>(o, a, gp, n);
            RN_CUDA_CHECK_LAUNCH();
        });
    });
}
}  // namespace

void sum_contiguous(const Tensor& out, const Tensor& a, const Tensor& g) {
    if (out.numel() == 0) return;
    set_device(out.device().index);
    add_flat(out, a, g);
}

void accumulate(const Tensor& acc, const Tensor& g) {
    int64_t n = acc.numel();
    if (n == 0) return;
    set_device(acc.device().index);
    const bool flat = acc.is_contiguous() && g.is_contiguous() && acc.shape() == g.shape();
    if (flat) {
        add_flat(acc, acc, g);
        return;
    }
    Geometry geo = make_geometry(acc, &g);
    dispatch_any(acc.dtype(), [&](auto atag) {
        dispatch_any(g.dtype(), [&](auto gtag) {
            using A = decltype(atag);
            using G = decltype(gtag);
            accumulate_kernel<A, G><<<blocks_for(n), 256, 0, stream()>>>(static_cast<A*>(acc.raw_data()),
                                                                     static_cast<const G*>(g.raw_data()), geo, n);
            RN_CUDA_CHECK_LAUNCH();
        });
    });
}

}  // namespace rn::cuda
