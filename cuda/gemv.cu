// cuda/gemv.cu — x · Wᵀ for a few rows of x (cuda/gemv.h): one warp per output column n
// streams row n of W (contiguous, 16-byte loads, four in flight per lane) and multiplies it
// with every row of x, which all warps of the launch read and L1 keeps. The sums over K
// end with a warp shuffle reduction; lane m writes row m of the output.
//
// Floors (H200, 4.2 TB/s copy): the `small` preset's stacked QKVG weight (4128 × 768 bf16,
// 6.3 MB) is 1.5 µs, the LM head (32000 × 768, 49 MB) 11.7 µs; bench/bench_cuda_matmul's
// "gemv" rows measure this kernel and cuBLAS against them.
#include "cuda/gemv.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

constexpr int kWarps = 8;   // output columns per block
constexpr int kUnroll = 4;  // 16-byte pieces of W in flight per lane

__device__ __forceinline__ void unpack(const uint4& v, float (&f)[4]) {
    f[0] = __uint_as_float(v.x), f[1] = __uint_as_float(v.y), f[2] = __uint_as_float(v.z), f[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void unpack(const uint4& v, float (&f)[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 p = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
        f[2 * i] = p.x, f[2 * i + 1] = p.y;
    }
}
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// W is read once: no L1 allocation for it (x, read by every warp, keeps L1 to itself)
__device__ __forceinline__ uint4 load_stream(const void* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

template <typename T, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T* __restrict__ A, int64_t lda,
                                                          const T* __restrict__ W, int64_t ldw, T* __restrict__ C,
                                                          int64_t ldc, int N, int K, float alpha) {
    constexpr int V = 16 / sizeof(T);  // elements per 16-byte piece
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (n >= N) return;  // warp-uniform
    const T* w = W + int64_t(n) * ldw;
    const int pieces = K / V;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;

    auto fma_piece = [&](const uint4& wv, int i) {
        float wf[V];
        unpack(wv, wf);
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float xf[V];
            unpack(__ldg(reinterpret_cast<const uint4*>(A + int64_t(m) * lda) + i), xf);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[m] = fmaf(wf[e], xf[e], acc[m]);
        }
    };
    // all of a round's loads are issued before any is used: at K = 768 (bf16) a lane has
    // only 3 pieces, and a loop that took them one at a time paid three round trips
    for (int i = lane; i < pieces; i += 32 * kUnroll) {
        uint4 wv[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
            if (i + 32 * u < pieces) wv[u] = load_stream(reinterpret_cast<const uint4*>(w) + i + 32 * u);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
            if (i + 32 * u < pieces) fma_piece(wv[u], i + 32 * u);
    }

#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], off);
#pragma unroll
    for (int m = 0; m < M; ++m)
        if (lane == m) store(C + int64_t(m) * ldc + n, alpha * acc[m]);
}

template <typename T>
void launch(int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda, const void* W, int64_t ldw,
            void* C, int64_t ldc) {
    auto a = static_cast<const T*>(A);
    auto w = static_cast<const T*>(W);
    auto c = static_cast<T*>(C);
    const dim3 grid(unsigned((N + kWarps - 1) / kWarps)), block(kWarps * 32);
    cudaStream_t s = stream();
    const int n = int(N), k = int(K);
    switch (M) {
        case 1: gemv_kernel<T, 1><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
        case 2: gemv_kernel<T, 2><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
        case 3: gemv_kernel<T, 3><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
        case 4: gemv_kernel<T, 4><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
        case 5: gemv_kernel<T, 5><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
        case 6: gemv_kernel<T, 6><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
        case 7: gemv_kernel<T, 7><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
        default: gemv_kernel<T, 8><<<grid, block, 0, s>>>(a, lda, w, ldw, c, ldc, n, k, alpha); break;
    }
    RN_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool gemv_preferred(DType dt, int64_t M, int64_t N, int64_t K) {
    const double mib = double(N) * double(K) * double(dtype_size(dt)) / double(1 << 20);
    return M == 1 || (M == 2 && mib <= 16) || (M <= 4 && mib <= 4);
}

bool gemv_rows(DType dt, int64_t M, int64_t N, int64_t K, double alpha, const void* A, int64_t lda, const void* W,
               int64_t ldw, void* C, int64_t ldc) {
    if (dt != DType::f32 && dt != DType::bf16) return false;
    const int64_t v = dt == DType::f32 ? 4 : 8;
    if (M < 1 || M > kGemvMaxRows || N < 1 || K < v || N > (int64_t(1) << 30) || K > (int64_t(1) << 30)) return false;
    if (K % v || lda % v || ldw % v || !aligned16(A) || !aligned16(W)) return false;
    if (dt == DType::f32) launch<float>(M, N, K, float(alpha), A, lda, W, ldw, C, ldc);
    else launch<__nv_bfloat16>(M, N, K, float(alpha), A, lda, W, ldw, C, ldc);
    return true;
}

}  // namespace rn::cuda
