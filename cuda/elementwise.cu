// cuda/elementwise.cu — pointwise kernels (mirror of ops/elementwise_cpu.cpp).
// Dimension key: N elements. Contiguous, 16-byte-aligned operands move as 16-byte vectors
// (4 f32, 8 bf16, 2 f64 a thread and iteration); broadcast or strided operands go through
// up-to-8-dim index arithmetic after merging dims that are contiguous in every operand.
#include "core/strided.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/elementwise.h"
#include "cuda/math.cuh"

namespace rn::cuda {

namespace {
template <typename A>
__device__ __forceinline__ A sigm(A x) {
    return x >= A(0) ? A(1) / (A(1) + d_exp(-x)) : d_exp(x) / (A(1) + d_exp(x));
}

template <typename A>
__device__ __forceinline__ A unary_f(UnaryOp op, A x, A alpha, A beta) {
    switch (op) {
        case UnaryOp::neg: return -x;
        case UnaryOp::exp: return d_exp(x);
        case UnaryOp::log: return d_log(x);
        case UnaryOp::sqrt: return d_sqrt(x);
        case UnaryOp::rsqrt: return A(1) / d_sqrt(x);
        case UnaryOp::abs: return d_abs(x);
        case UnaryOp::tanh: return d_tanh(x);
        case UnaryOp::sigmoid: return sigm(x);
        case UnaryOp::silu: return x * sigm(x);
        case UnaryOp::gelu: return A(0.5) * x * (A(1) + d_erf(x * A(0.70710678118654752440)));
        case UnaryOp::relu: return x > A(0) ? x : A(0);
        case UnaryOp::affine: return alpha * x + beta;
        case UnaryOp::pow_scalar: return d_pow(x, alpha);
    }
    return x;
}

template <typename A>
__device__ __forceinline__ A unary_df(UnaryOp op, A dy, A x, A y, A alpha) {
    switch (op) {
        case UnaryOp::neg: return -dy;
        case UnaryOp::exp: return dy * y;
        case UnaryOp::log: return dy / x;
        case UnaryOp::sqrt: return dy * A(0.5) / y;
        case UnaryOp::rsqrt: return dy * A(-0.5) * y * y * y;
        case UnaryOp::abs: return x > A(0) ? dy : (x < A(0) ? -dy : A(0));
        case UnaryOp::tanh: return dy * (A(1) - y * y);
        case UnaryOp::sigmoid: return dy * y * (A(1) - y);
        case UnaryOp::silu: {
            A s = sigm(x);
            return dy * s * (A(1) + x * (A(1) - s));
        }
        case UnaryOp::gelu: {
            A cdf = A(0.5) * (A(1) + d_erf(x * A(0.70710678118654752440)));
            A pdf = d_exp(A(-0.5) * x * x) * A(0.39894228040143267794);
            return dy * (cdf + x * pdf);
        }
        case UnaryOp::relu: return x > A(0) ? dy : A(0);
        case UnaryOp::affine: return dy * alpha;
        case UnaryOp::pow_scalar: return dy * alpha * d_pow(x, alpha - A(1));
    }
    return dy;
}

template <typename A>
__device__ __forceinline__ A binary_f(BinaryOp op, A a, A b) {
    switch (op) {
        case BinaryOp::add: return a + b;
        case BinaryOp::sub: return a - b;
        case BinaryOp::mul: return a * b;
        case BinaryOp::div: return a / b;
        case BinaryOp::pow:
            if constexpr (std::is_floating_point_v<A>) return d_pow(a, b);
            else return A(::pow(double(a), double(b)));
    }
    return a;
}

template <typename T, int V>
struct alignas(16) Pack {
    T v[V];
};

template <typename T, int V>
__global__ void unary_kernel(UnaryOp op, T* __restrict__ y, const T* __restrict__ x, int64_t n,
                             typename acc_of<T>::type alpha, typename acc_of<T>::type beta) {
    int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
        Pack<T, V> p = reinterpret_cast<const Pack<T, V>*>(x)[i], q;
#pragma unroll
        for (int k = 0; k < V; ++k) q.v[k] = st<T>(unary_f(op, ld(p.v[k]), alpha, beta));
        reinterpret_cast<Pack<T, V>*>(y)[i] = q;
    }
    for (int64_t i = nv * V + tid; i < n; i += stride) y[i] = st<T>(unary_f(op, ld(x[i]), alpha, beta));
}

template <typename T, int V>
__global__ void unary_backward_kernel(UnaryOp op, T* __restrict__ dx, const T* __restrict__ dy,
                                      const T* __restrict__ x, const T* __restrict__ y, int64_t n,
                                      typename acc_of<T>::type alpha) {
    using A = typename acc_of<T>::type;
    int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
        Pack<T, V> g = reinterpret_cast<const Pack<T, V>*>(dy)[i], px{}, py{}, out;
        if (x) px = reinterpret_cast<const Pack<T, V>*>(x)[i];
        if (y) py = reinterpret_cast<const Pack<T, V>*>(y)[i];
#pragma unroll
        for (int k = 0; k < V; ++k)
            out.v[k] = st<T>(unary_df(op, ld(g.v[k]), x ? ld(px.v[k]) : A(0), y ? ld(py.v[k]) : A(0), alpha));
        reinterpret_cast<Pack<T, V>*>(dx)[i] = out;
    }
    for (int64_t i = nv * V + tid; i < n; i += stride)
        dx[i] = st<T>(unary_df(op, ld(dy[i]), x ? ld(x[i]) : A(0), y ? ld(y[i]) : A(0), alpha));
}

template <typename T, int V>
__global__ void binary_flat_kernel(BinaryOp op, T* __restrict__ out, const T* __restrict__ a,
                                   const T* __restrict__ b, int64_t n, bool a_scalar, bool b_scalar) {
    int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    int64_t nv = n / V;
    auto A0 = ld(a[0]);
    auto B0 = ld(b[0]);
    for (int64_t i = tid; i < nv; i += stride) {
        Pack<T, V> pa{}, pb{}, q;
        if (!a_scalar) pa = reinterpret_cast<const Pack<T, V>*>(a)[i];
        if (!b_scalar) pb = reinterpret_cast<const Pack<T, V>*>(b)[i];
#pragma unroll
        for (int k = 0; k < V; ++k)
            q.v[k] = st<T>(binary_f(op, a_scalar ? A0 : ld(pa.v[k]), b_scalar ? B0 : ld(pb.v[k])));
        reinterpret_cast<Pack<T, V>*>(out)[i] = q;
    }
    for (int64_t i = nv * V + tid; i < n; i += stride)
        out[i] = st<T>(binary_f(op, a_scalar ? A0 : ld(a[i]), b_scalar ? B0 : ld(b[i])));
}

constexpr int kMaxDims = 8;
struct Geo3 {
    int nd;
    int64_t size[kMaxDims];
    int64_t sa[kMaxDims];
    int64_t sb[kMaxDims];
};

template <typename T>
__global__ void binary_strided_kernel(BinaryOp op, T* __restrict__ out, const T* __restrict__ a,
                                      const T* __restrict__ b, int64_t n, Geo3 g) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t rem = i, oa = 0, ob = 0;
        for (int d = g.nd - 1; d >= 0; --d) {
            int64_t k = rem % g.size[d];
            rem /= g.size[d];
            oa += k * g.sa[d];
            ob += k * g.sb[d];
        }
        out[i] = st<T>(binary_f(op, ld(a[oa]), ld(b[ob])));
    }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
}  // namespace

void unary_forward(UnaryOp op, DType dt, void* y, const void* x, int64_t n, double alpha, double beta) {
    if (n == 0) return;
    dispatch_float(dt, unary_name(op), [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        constexpr int V = 16 / sizeof(T);
        if (aligned16(x) && aligned16(y))
            unary_kernel<T, V><<<grid_for(n / V + 1), 256, 0, stream()>>>(op, static_cast<T*>(y), static_cast<const T*>(x), n, A(alpha), A(beta));
        else
            unary_kernel<T, 1><<<grid_for(n), 256, 0, stream()>>>(op, static_cast<T*>(y), static_cast<const T*>(x), n, A(alpha), A(beta));
        RN_CUDA_CHECK_LAUNCH();
    });
}

void unary_backward(UnaryOp op, DType dt, void* dx, const void* dy, const void* x, const void* y, int64_t n,
                    double alpha, double) {
    if (n == 0) return;
    dispatch_float(dt, unary_name(op), [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        constexpr int V = 16 / sizeof(T);
        bool al = aligned16(dx) && aligned16(dy) && (!x || aligned16(x)) && (!y || aligned16(y));
        auto* dxp = static_cast<T*>(dx);
        auto* dyp = static_cast<const T*>(dy);
        auto* xp = static_cast<const T*>(x);
        auto* yp = static_cast<const T*>(y);
        if (al) unary_backward_kernel<T, V><<<grid_for(n / V + 1), 256, 0, stream()>>>(op, dxp, dyp, xp, yp, n, A(alpha));
        else unary_backward_kernel<T, 1><<<grid_for(n), 256, 0, stream()>>>(op, dxp, dyp, xp, yp, n, A(alpha));
        RN_CUDA_CHECK_LAUNCH();
    });
}

void binary_forward(BinaryOp op, DType dt, void* out, const void* a, const void* b, const Shape& out_shape,
                    const Shape& a_strides, const Shape& b_strides) {
    int64_t n = numel_of(out_shape);
    if (n == 0) return;
    StridedLayout<3> L = coalesce<3>(out_shape, {contiguous_strides(out_shape), a_strides, b_strides});
    dispatch_any(dt, [&](auto tag) {
        using T = decltype(tag);
        constexpr int V = 16 / sizeof(T);
        auto* o = static_cast<T*>(out);
        auto* ap = static_cast<const T*>(a);
        auto* bp = static_cast<const T*>(b);
        bool flat = L.sizes.size() == 1;
        bool a_ok = flat && (L.strides[1][0] == 1 || L.strides[1][0] == 0);
        bool b_ok = flat && (L.strides[2][0] == 1 || L.strides[2][0] == 0);
        if (a_ok && b_ok) {
            bool as = L.strides[1][0] == 0, bs = L.strides[2][0] == 0;
            if (aligned16(o) && (as || aligned16(ap)) && (bs || aligned16(bp)))
                binary_flat_kernel<T, V><<<grid_for(n / V + 1), 256, 0, stream()>>>(op, o, ap, bp, n, as, bs);
            else
                binary_flat_kernel<T, 1><<<grid_for(n), 256, 0, stream()>>>(op, o, ap, bp, n, as, bs);
        } else {
            RN_CHECK(L.sizes.size() <= size_t(kMaxDims), binary_name(op), ": at most ", kMaxDims,
                     " non-mergeable dims on CUDA, got ", L.sizes.size());
            Geo3 g{};
            g.nd = int(L.sizes.size());
            for (int d = 0; d < g.nd; ++d) {
                g.size[d] = L.sizes[size_t(d)];
                g.sa[d] = L.strides[1][size_t(d)];
                g.sb[d] = L.strides[2][size_t(d)];
            }
            binary_strided_kernel<T><<<grid_for(n), 256, 0, stream()>>>(op, o, ap, bp, n, g);
        }
        RN_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace rn::cuda
