// cuda/optim.cu — fused AdamW: one read of p, g, m, v and one write of p, m, v per element,
// 16-byte vectors where aligned. Dimension key: N elements of one parameter.
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/optim.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {
__device__ __forceinline__ void adam1(float& p, float g, float& m, float& v, float lr, float b1, float b2, float eps,
                                      float wd, float bc1, float bc2, float gs) {
    g *= gs;
    m = b1 * m + (1.f - b1) * g;
    v = b2 * v + (1.f - b2) * g * g;
    p -= lr * ((m / bc1) / (sqrtf(v / bc2) + eps) + wd * p);
}

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, float lr, float b1, float b2, float eps, float wd,
                             float bc1, float bc2, float gs, bool vec) {
    int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    int64_t nv = vec ? n / 4 : 0;
    for (int64_t i = tid; i < nv; i += stride) {
        float4 P = reinterpret_cast<float4*>(p)[i], G = reinterpret_cast<const float4*>(g)[i];
        float4 M = reinterpret_cast<float4*>(m)[i], V = reinterpret_cast<float4*>(v)[i];
        adam1(P.x, G.x, M.x, V.x, lr, b1, b2, eps, wd, bc1, bc2, gs);
        adam1(P.y, G.y, M.y, V.y, lr, b1, b2, eps, wd, bc1, bc2, gs);
        adam1(P.z, G.z, M.z, V.z, lr, b1, b2, eps, wd, bc1, bc2, gs);
        adam1(P.w, G.w, M.w, V.w, lr, b1, b2, eps, wd, bc1, bc2, gs);
        reinterpret_cast<float4*>(p)[i] = P;
        reinterpret_cast<float4*>(m)[i] = M;
        reinterpret_cast<float4*>(v)[i] = V;
    }
    for (int64_t i = nv * 4 + tid; i < n; i += stride) adam1(p[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, bc1, bc2, gs);
}

__global__ void sum_squares_kernel(const float* __restrict__ g, int64_t n, double* acc) {
    double s = 0;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const double x = g[i];
        s += x * x;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    __shared__ double part[8];
    if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < int(blockDim.x / 32); ++w) t += part[w];
        atomicAdd(acc, t);
    }
}
}  // namespace

void sum_squares_accumulate(const float* g, int64_t n, double* acc) {
    if (n == 0) return;
    sum_squares_kernel<<<std::min(grid_for(n), 2 * sm_count()), 256, 0, stream()>>>(g, n, acc);
    RN_CUDA_CHECK_LAUNCH();
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2, float gscale) {
    if (n == 0) return;
    bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
    adamw_kernel<<<grid_for(vec ? n / 4 + 1 : n), 256, 0, stream()>>>(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale, vec);
    RN_CUDA_CHECK_LAUNCH();
}

}  // namespace rn::cuda
