// cuda/math.cuh — device-side helpers shared by the .cu files: bf16 ⇄ float loads and
// stores, float/double overloads of the math functions, warp and block reductions, the
// dtype switch for kernels, and the grid size of grid-stride loops. Header-only, included
// by .cu files only (vector loads and stores: cuda/vec.cuh).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"  // throw_error (dispatch_float)
#include "cuda/context.h"

namespace rn::cuda {

using bf16_t = __nv_bfloat16;

// A kernel's dynamic shared memory, `unsigned char name[]` aligned to `align` bytes (the
// CPU emulator of tests/cuda_emu/ gives a pointer to its own buffer instead);
// RN_DYNAMIC_SMEM_OF declares it as an array of `type` (cuda/gemv_kernels.cuh: the
// element type of the declaration changes nvcc's code for the kernel)
#ifdef RN_CUDA_EMU
#define RN_DYNAMIC_SMEM(name, align) unsigned char* name = ::rn_emu::dynamic_smem()
#define RN_DYNAMIC_SMEM_OF(type, name) type* name = reinterpret_cast<type*>(::rn_emu::dynamic_smem())
#else
#define RN_DYNAMIC_SMEM(name, align) extern __shared__ __align__(align) unsigned char name[]
#define RN_DYNAMIC_SMEM_OF(type, name) extern __shared__ type name[]
#endif

// arithmetic type of a storage type: bf16 computes in float
template <typename T> struct acc_of { using type = T; };
template <> struct acc_of<bf16_t> { using type = float; };

template <typename T> __device__ __forceinline__ typename acc_of<T>::type ld(T v) { return v; }
template <> __device__ __forceinline__ float ld<bf16_t>(bf16_t v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T st(typename acc_of<T>::type v) { return T(v); }
template <> __device__ __forceinline__ bf16_t st<bf16_t>(float v) { return __float2bfloat16(v); }

__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return ::exp(x); }
// σ(x) from exp of −|x| (≤ 1: no overflow on either side); float takes the fast exp
template <typename A> __device__ __forceinline__ A sigm(A x) {
    const A e = d_exp(-::fabs(x));
    return x >= A(0) ? A(1) / (A(1) + e) : e / (A(1) + e);
}
template <> __device__ __forceinline__ float sigm<float>(float x) {
    const float e = __expf(-fabsf(x));
    return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
}
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return ::log(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float d_rsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ double d_rsqrt(double x) { return ::rsqrt(x); }
__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float d_erf(float x) { return erff(x); }
__device__ __forceinline__ double d_erf(double x) { return ::erf(x); }
__device__ __forceinline__ float d_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double d_pow(double x, double y) { return ::pow(x, y); }
__device__ __forceinline__ float d_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double d_abs(double x) { return ::fabs(x); }

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename A> __device__ __forceinline__ A warp_max(A v) {
    for (int o = 16; o > 0; o >>= 1) {
        A w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}
// sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result
template <typename A> __device__ A block_sum(A v) {
    __shared__ A part[32];
    v = warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = lane < nw ? part[lane] : A(0);
    return warp_sum(v);
}
template <typename A> __device__ A block_max(A v) {
    __shared__ A part[32];
    v = warp_max(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = lane < nw ? part[lane] : -INFINITY;
    return warp_max(v);
}

// run-time dtype → device storage type, floating types only
template <typename F>
void dispatch_float(DType t, const char* op, F&& f) {
    switch (t) {
        case DType::f32: f(float{}); return;
        case DType::f64: f(double{}); return;
        case DType::bf16: f(bf16_t{}); return;
        default: break;
    }
    ::rn::detail::throw_error(__FILE__, __LINE__, op, ": expected a floating dtype on CUDA, got ", dtype_name(t));
}

// run-time dtype → device storage type, integers included (copies, binary ops)
template <typename F>
void dispatch_any(DType t, F&& f) {
    switch (t) {
        case DType::f32: f(float{}); break;
        case DType::f64: f(double{}); break;
        case DType::bf16: f(bf16_t{}); break;
        case DType::i32: f(int32_t{}); break;
        case DType::i64: f(int64_t{}); break;
    }
}

// Blocks for a grid-stride loop over n items, one a thread: at most 16 blocks an SM of the
// current device (enough resident warps to hide memory latency; past that the stride loop
// does the rest). sm_count() asks the driver once per device and keeps the answer
// (cuda/context.cpp), so this costs a few ns and is safe inside CUDA-graph capture.
inline int grid_for(int64_t n, int threads = 256) {
    const int64_t cap = int64_t(sm_count()) * 16;
    const int64_t b = (n + threads - 1) / threads;
    return int(b < cap ? (b < 1 ? 1 : b) : cap);
}

// The offsets of flat (row-major) index i in two strided views of one shape: dims nd−1 … 0,
// sizes `size`, strides st_a and st_b (elements). The broadcasting and accumulating kernels
// walk non-contiguous operands with it.
__device__ __forceinline__ void strided_offsets(int64_t i, int nd, const int64_t* size, const int64_t* st_a,
                                                const int64_t* st_b, int64_t& oa, int64_t& ob) {
    int64_t rem = i;
    oa = 0;
    ob = 0;
    for (int d = nd - 1; d >= 0; --d) {
        const int64_t k = rem % size[d];
        rem /= size[d];
        oa += k * st_a[d];
        ob += k * st_b[d];
    }
}

}  // namespace rn::cuda
