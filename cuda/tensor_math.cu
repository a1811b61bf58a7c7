// cuda/tensor_math.cu — fill, strided copy with dtype conversion, accumulate (acc += g).
// Dimension key: N = number of elements; up to 8 dims, geometry passed by value.
#include <cuda_bf16.h>

#include <cstdint>

#include "core/shape.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/device.h"
#include "cuda/tensor_math.h"

namespace rn::cuda {

namespace {
constexpr int kMaxDims = 8;

struct Geometry {
    int nd;
    int64_t sizes[kMaxDims];
    int64_t dst_st[kMaxDims];
    int64_t src_st[kMaxDims];
};

template <typename T> __device__ __forceinline__ double to_d(T v) { return double(v); }
template <> __device__ __forceinline__ double to_d<__nv_bfloat16>(__nv_bfloat16 v) { return double(__bfloat162float(v)); }
template <typename T> __device__ __forceinline__ T from_d(double v) { return T(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_d<__nv_bfloat16>(double v) { return __float2bfloat16(float(v)); }

template <typename D, typename S>
__global__ void copy_kernel(D* dst, const S* src, Geometry g, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t rem = i, od = 0, os = 0;
        for (int d = g.nd - 1; d >= 0; --d) {
            int64_t k = rem % g.sizes[d];
            rem /= g.sizes[d];
            od += k * g.dst_st[d];
            os += k * g.src_st[d];
        }
        dst[od] = from_d<D>(to_d(src[os]));
    }
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

// contiguous operands of the same shape: no index arithmetic (gradient accumulation)
template <typename A, typename G>
__global__ void accumulate_flat_kernel(A* __restrict__ acc, const G* __restrict__ g, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        acc[i] = from_d<A>(to_d(acc[i]) + to_d(g[i]));
}

template <typename A, typename G>
__global__ void accumulate_kernel(A* acc, const G* g, Geometry geo, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t rem = i, oa = 0, og = 0;
        for (int d = geo.nd - 1; d >= 0; --d) {
            int64_t k = rem % geo.sizes[d];
            rem /= geo.sizes[d];
            oa += k * geo.dst_st[d];
            og += k * geo.src_st[d];
        }
        acc[oa] = from_d<A>(to_d(acc[oa]) + to_d(g[og]));
    }
}

Geometry make_geometry(const Tensor& dst, const Tensor* src) {
    Geometry g{};
    g.nd = int(dst.dim());
    RN_CHECK(g.nd <= kMaxDims, "CUDA strided kernels take at most ", kMaxDims, " dims, got ", g.nd);
    size_t lead = src ? size_t(dst.dim() - src->dim()) : 0;
    for (int d = 0; d < g.nd; ++d) {
        g.sizes[d] = dst.shape()[d];
        g.dst_st[d] = dst.strides()[d];
        g.src_st[d] = 0;
        if (src && size_t(d) >= lead) {
            int64_t sd = d - int64_t(lead);
            g.src_st[d] = src->shape()[sd] == 1 ? 0 : src->strides()[sd];
        }
    }
    return g;
}

int blocks_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 132 * 32)); }
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
    Geometry g = make_geometry(dst, &src);
    dispatch_any(dst.dtype(), [&](auto dtag) {
        dispatch_any(src.dtype(), [&](auto stag) {
            using D = decltype(dtag);
            using S = decltype(stag);
            copy_kernel<D, S><<<blocks_for(n), 256, 0, stream()>>>(static_cast<D*>(dst.raw_data()),
                                                      static_cast<const S*>(src.raw_data()), g, n);
            RN_CUDA_CHECK_LAUNCH();
        });
    });
}

void accumulate(const Tensor& acc, const Tensor& g) {
    int64_t n = acc.numel();
    if (n == 0) return;
    set_device(acc.device().index);
    const bool flat = acc.is_contiguous() && g.is_contiguous() && acc.shape() == g.shape();
    Geometry geo = make_geometry(acc, &g);
    dispatch_any(acc.dtype(), [&](auto atag) {
        dispatch_any(g.dtype(), [&](auto gtag) {
            using A = decltype(atag);
            using G = decltype(gtag);
            if (flat)
                accumulate_flat_kernel<A, G><<<blocks_for(n), 256, 0, stream()>>>(static_cast<A*>(acc.raw_data()),
                                                                              static_cast<const G*>(g.raw_data()), n);
            else
                accumulate_kernel<A, G><<<blocks_for(n), 256, 0, stream()>>>(static_cast<A*>(acc.raw_data()),
                                                                         static_cast<const G*>(g.raw_data()), geo, n);
            RN_CUDA_CHECK_LAUNCH();
        });
    });
}

}  // namespace rn::cuda
