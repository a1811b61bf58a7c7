// cuda/dropout.cu — dropout mask, forward and backward on CUDA (mirror of the CPU kernels
// in ops/dropout.cpp).
//
// Dimension key: N elements, contiguous. Contiguous 16-byte-aligned operands move as 16-byte
// vectors (4 f32, 8 bf16, 2 f64 a thread and iteration), a scalar tail after; misaligned
// views take the scalar kernel.
//
// The mask must equal the CPU's bit for bit for one generator state, so d_bits/d_uniform
// below repeat Generator::bits/uniform (core/random.cpp) with the same 64-bit integer
// arithmetic (wrapping unsigned multiply, shifts, xors — identical on host and device) and
// the same exact conversion: (bits >> 11) has 53 bits, so double() and the × 2^-53 are
// exact, and `u >= p` is compared in double as on the CPU. The scale is applied in the
// CPU's acc_type (float for f32 and bf16, double for f64) in the same order, so y and dx
// match the CPU exactly too.
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/dropout.h"
#include "cuda/math.cuh"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {
constexpr int kThreads = 256;

// Generator::bits, verbatim
__device__ __forceinline__ uint64_t d_bits(uint64_t seed, uint64_t counter) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    z = (z ^ (z >> 32)) * 0xD6E8FEB86659FD93ull;
    return z ^ (z >> 32);
}
// Generator::uniform, verbatim: [0, 1) with 53 bits
__device__ __forceinline__ double d_uniform(uint64_t seed, uint64_t counter) {
    return double(d_bits(seed, counter) >> 11) * 0x1.0p-53;
}

template <typename T, int V>
__global__ void dropout_forward_kernel(T* __restrict__ y, T* __restrict__ mask, const T* __restrict__ x, int64_t n,
                                       double p, typename acc_of<T>::type s, uint64_t seed, uint64_t base) {
    using A = typename acc_of<T>::type;
    const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    const int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
        Pack<T, V> px = reinterpret_cast<const Pack<T, V>*>(x)[i], py, pm;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            bool keep = d_uniform(seed, base + uint64_t(i * V + k)) >= p;
            pm.v[k] = st<T>(keep ? A(1) : A(0));
            py.v[k] = st<T>(keep ? ld(px.v[k]) * s : A(0));
        }
        reinterpret_cast<Pack<T, V>*>(y)[i] = py;
        reinterpret_cast<Pack<T, V>*>(mask)[i] = pm;
    }
    for (int64_t i = nv * V + tid; i < n; i += stride) {
        bool keep = d_uniform(seed, base + uint64_t(i)) >= p;
        mask[i] = st<T>(keep ? A(1) : A(0));
        y[i] = st<T>(keep ? ld(x[i]) * s : A(0));
    }
}

template <typename T, int V>
__global__ void dropout_backward_kernel(T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ mask,
                                        int64_t n, typename acc_of<T>::type s) {
    const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    const int64_t nv = n / V;
    for (int64_t i = tid; i < nv; i += stride) {
        Pack<T, V> g = reinterpret_cast<const Pack<T, V>*>(dy)[i], m = reinterpret_cast<const Pack<T, V>*>(mask)[i], o;
#pragma unroll
        for (int k = 0; k < V; ++k) o.v[k] = st<T>(ld(g.v[k]) * ld(m.v[k]) * s);  // (dy · mask) · scale, as the CPU
        reinterpret_cast<Pack<T, V>*>(dx)[i] = o;
    }
    for (int64_t i = nv * V + tid; i < n; i += stride) dx[i] = st<T>(ld(dy[i]) * ld(mask[i]) * s);
}

}  // namespace

void dropout_forward(DType dt, void* y, void* mask, const void* x, int64_t n, double p, double scale, uint64_t seed,
                     uint64_t base) {
    if (n == 0) return;
    dispatch_float(dt, "dropout", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        constexpr int V = 16 / sizeof(T);
        auto* yp = static_cast<T*>(y);
        auto* mp = static_cast<T*>(mask);
        auto* xp = static_cast<const T*>(x);
        if (aligned16(y) && aligned16(mask) && aligned16(x))
            dropout_forward_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, stream()>>>(yp, mp, xp, n, p,
                                                                                                  A(scale), seed, base);
        else
            dropout_forward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(yp, mp, xp, n, p, A(scale),
                                                                                          seed, base);
        RN_CUDA_CHECK_LAUNCH();
    });
}

void dropout_backward(DType dt, void* dx, const void* dy, const void* mask, int64_t n, double scale) {
    if (n == 0) return;
    dispatch_float(dt, "dropout backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        constexpr int V = 16 / sizeof(T);
        auto* dxp = static_cast<T*>(dx);
        auto* dyp = static_cast<const T*>(dy);
        auto* mp = static_cast<const T*>(mask);
        if (aligned16(dx) && aligned16(dy) && aligned16(mask))
            dropout_backward_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, stream()>>>(dxp, dyp, mp, n,
                                                                                                   A(scale));
        else
            dropout_backward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dxp, dyp, mp, n, A(scale));
        RN_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace rn::cuda
