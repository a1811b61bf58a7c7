// cuda/optim.cu — fused AdamW: one read of p, g, m, v and one write of p, m, v per element,
// 16-byte vectors where aligned, per tensor (ZeRO's shards) and over many tensors a launch
// (nn::AdamW); and the gradient norm's Σg² in f64 over many tensors a launch
// (nn::grad_norm). Dimension key: N elements of one parameter.
#include <algorithm>
#include <cstdint>

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
// the same on a 16-byte vector of each
__device__ __forceinline__ void adam4(float4& P, const float4& G, float4& M, float4& V, float lr, float b1, float b2,
                                      float eps, float wd, float bc1, float bc2, float gs) {
    adam1(P.x, G.x, M.x, V.x, lr, b1, b2, eps, wd, bc1, bc2, gs);
    adam1(P.y, G.y, M.y, V.y, lr, b1, b2, eps, wd, bc1, bc2, gs);
    adam1(P.z, G.z, M.z, V.z, lr, b1, b2, eps, wd, bc1, bc2, gs);
    adam1(P.w, G.w, M.w, V.w, lr, b1, b2, eps, wd, bc1, bc2, gs);
}

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, float lr, float b1, float b2, float eps, float wd,
                             float bc1, float bc2, float gs, bool vec) {
    int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    int64_t nv = vec ? n / 4 : 0;
    for (int64_t i = tid; i < nv; i += stride) {
        float4 P = reinterpret_cast<float4*>(p)[i], G = reinterpret_cast<const float4*>(g)[i];
        float4 M = reinterpret_cast<float4*>(m)[i], V = reinterpret_cast<float4*>(v)[i];
        adam4(P, G, M, V, lr, b1, b2, eps, wd, bc1, bc2, gs);
        reinterpret_cast<float4*>(p)[i] = P;
        reinterpret_cast<float4*>(m)[i] = M;
        reinterpret_cast<float4*>(v)[i] = V;
    }
    for (int64_t i = nv * 4 + tid; i < n; i += stride) adam1(p[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, bc1, bc2, gs);
}

// ---- many tensors a launch: each block takes one chunk of kChunk elements of one tensor;
// block0[t] is tensor t's first block (host-side prefix sums), so a block finds its tensor
// by a scan of at most kMultiTensors entries of the kernel's parameter block.
constexpr int kMultiThreads = 256;
constexpr int64_t kChunk = 16 * kMultiThreads;  // 4 float4 a thread

struct MultiArgs {
    float* p[kMultiTensors];
    const float* g[kMultiTensors];
    float* m[kMultiTensors];
    float* v[kMultiTensors];
    int64_t n[kMultiTensors];
    float wd[kMultiTensors];
    int block0[kMultiTensors + 1];
    int count;
};

__device__ __forceinline__ int tensor_of_block(const MultiArgs& a) {
    int t = 0;
    while (t + 1 < a.count && int(blockIdx.x) >= a.block0[t + 1]) ++t;
    return t;
}

__global__ void __launch_bounds__(kMultiThreads) adamw_multi_kernel(const __grid_constant__ MultiArgs a, float lr,
                                                                    float b1, float b2, float eps, float bc1,
                                                                    float bc2, float gs) {
    const int t = tensor_of_block(a);
    const int64_t c0 = int64_t(int(blockIdx.x) - a.block0[t]) * kChunk, end = min(c0 + kChunk, a.n[t]);
    float *p = a.p[t], *m = a.m[t], *v = a.v[t];
    const float* g = a.g[t];
    const float wd = a.wd[t];
    const bool vec = ((reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(g) |
                       reinterpret_cast<uintptr_t>(m) | reinterpret_cast<uintptr_t>(v)) & 15) == 0;
    int64_t i = c0 + 4 * int64_t(threadIdx.x);
    if (vec)  // c0 is a multiple of 4: 16-byte pieces up to the last whole one
        for (; i + 3 < end; i += 4 * kMultiThreads) {
            float4 P = *reinterpret_cast<float4*>(p + i), G = *reinterpret_cast<const float4*>(g + i);
            float4 M = *reinterpret_cast<float4*>(m + i), V = *reinterpret_cast<float4*>(v + i);
            adam4(P, G, M, V, lr, b1, b2, eps, wd, bc1, bc2, gs);
            *reinterpret_cast<float4*>(p + i) = P;
            *reinterpret_cast<float4*>(m + i) = M;
            *reinterpret_cast<float4*>(v + i) = V;
        }
    // the rest one element at a time: a misaligned tensor's chunk, or a tensor's last < 4
    const int64_t rest = vec ? c0 + ((end - c0) / 4) * 4 : c0;
    for (int64_t j = rest + threadIdx.x; j < end; j += kMultiThreads)
        adam1(p[j], g[j], m[j], v[j], lr, b1, b2, eps, wd, bc1, bc2, gs);
}

__global__ void __launch_bounds__(kMultiThreads) sum_squares_multi_kernel(const __grid_constant__ MultiArgs a,
                                                                          double* acc) {
    const int t = tensor_of_block(a);
    const int64_t c0 = int64_t(int(blockIdx.x) - a.block0[t]) * kChunk, end = min(c0 + kChunk, a.n[t]);
    const float* g = a.g[t];
    double s = 0;
    for (int64_t i = c0 + threadIdx.x; i < end; i += kMultiThreads) {
        const double x = g[i];
        s += x * x;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    __shared__ double part[kMultiThreads / 32];
    if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0;
        for (int w = 0; w < kMultiThreads / 32; ++w) tot += part[w];
        atomicAdd(acc, tot);
    }
}

// fills a's block table for tensors [first, first + a.count) of ns; returns the blocks
int64_t plan_blocks(MultiArgs& a, const int64_t* ns) {
    int64_t blocks = 0;
    for (int t = 0; t < a.count; ++t) {
        a.block0[t] = int(blocks);
        a.n[t] = ns[t];
        blocks += (ns[t] + kChunk - 1) / kChunk;
    }
    a.block0[a.count] = int(blocks);
    return blocks;
}

}  // namespace

// Tensors are taken kMultiTensors a launch; a batch whose blocks would pass the int range of
// block0 (≈ 8.8e12 elements) cannot occur on any card, so it is only checked.
void adamw_step_multi(const AdamWTensor* ts, int count, float lr, float b1, float b2, float eps, float bc1, float bc2,
                      float gscale) {
    for (int first = 0; first < count; first += kMultiTensors) {
        MultiArgs a{};
        a.count = std::min(kMultiTensors, count - first);
        int64_t ns[kMultiTensors];
        for (int t = 0; t < a.count; ++t) {
            const AdamWTensor& x = ts[first + t];
            a.p[t] = x.p, a.g[t] = x.g, a.m[t] = x.m, a.v[t] = x.v, a.wd[t] = x.wd;
            ns[t] = x.n;
        }
        const int64_t blocks = plan_blocks(a, ns);
        RN_CHECK(blocks < (int64_t(1) << 31), "adamw_step_multi: ", blocks, " blocks in one launch");
        if (blocks == 0) continue;
        adamw_multi_kernel<<<unsigned(blocks), kMultiThreads, 0, stream()>>>(a, lr, b1, b2, eps, bc1, bc2, gscale);
        RN_CUDA_CHECK_LAUNCH();
    }
}

void sum_squares_accumulate_multi(const float* const* gs, const int64_t* ns, int count, double* acc) {
    for (int first = 0; first < count; first += kMultiTensors) {
        MultiArgs a{};
        a.count = std::min(kMultiTensors, count - first);
        for (int t = 0; t < a.count; ++t) a.g[t] = gs[first + t];
        const int64_t blocks = plan_blocks(a, ns + first);
        RN_CHECK(blocks < (int64_t(1) << 31), "sum_squares_accumulate_multi: ", blocks, " blocks in one launch");
        if (blocks == 0) continue;
        sum_squares_multi_kernel<<<unsigned(blocks), kMultiThreads, 0, stream()>>>(a, acc);
        RN_CUDA_CHECK_LAUNCH();
    }
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2, float gscale) {
    if (n == 0) return;
    bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
    adamw_kernel<<<grid_for(vec ? n / 4 + 1 : n), 256, 0, stream()>>>(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale, vec);
    RN_CUDA_CHECK_LAUNCH();
}

}  // namespace rn::cuda
