// cuda/reduce.cu — row reductions (mirror of cpu::reduce_rows) and the max-backward scatter.
// Dimension key: R rows × C cols, row-major. One block per row while there are enough
// rows to fill the GPU; otherwise each row is split over S blocks that write partial
// (value, index) pairs, and a second pass reduces the S partials. Sums accumulate in fp32
// (f64 for f64); max keeps the first index of the maximum, NaN winning as on the CPU.
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/elementwise.h"
#include "cuda/math.cuh"
#include "cuda/device.h"

namespace rn::cuda {

namespace {
constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ bool better(A v, int64_t i, A bv, int64_t bi) {
    bool vn = isnan(v), bn = isnan(bv);
    if (vn != bn) return vn;  // NaN wins
    if (v != bv && !vn) return v > bv;
    return i < bi;  // ties (and NaN vs NaN): the first position
}

// in: either raw T values (indices implicit) or partial (A, index) pairs
template <typename T, typename A, bool PARTIAL>
__global__ void reduce_kernel(ReduceOp op, const T* __restrict__ x, const A* __restrict__ pv,
                              const int64_t* __restrict__ pi, int64_t rows, int64_t cols, int64_t splits,
                              T* out_final, A* out_v, int64_t* out_i) {
    // block b handles (row = b / splits, chunk = b % splits) of the row
    int64_t nb = rows * splits;
    for (int64_t b = blockIdx.x; b < nb; b += gridDim.x) {
        int64_t row = b / splits, chunk = b % splits;
        int64_t per = (cols + splits - 1) / splits;
        int64_t c0 = chunk * per, c1 = min(cols, c0 + per);
        A acc = op == ReduceOp::sum ? A(0) : A(-INFINITY);
        int64_t idx = INT64_MAX;
        for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
            A v;
            int64_t vi;
            if constexpr (PARTIAL) {
                v = pv[row * cols + c];
                vi = pi ? pi[row * cols + c] : c;
            } else {
                v = ld(x[row * cols + c]);
                vi = c;
            }
            if (op == ReduceOp::sum) acc += v;
            else if (idx == INT64_MAX || better(v, vi, acc, idx)) { acc = v; idx = vi; }
        }
        if (op == ReduceOp::sum) {
            acc = block_sum(acc);
        } else {
            // block arg-max: warp shuffles on (value, index), then across warps in shared memory
            for (int o = 16; o > 0; o >>= 1) {
                A ov = __shfl_xor_sync(0xffffffffu, acc, o);
                int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
                if (oi != INT64_MAX && (idx == INT64_MAX || better(ov, oi, acc, idx))) { acc = ov; idx = oi; }
            }
            __shared__ A sv[32];
            __shared__ int64_t si[32];
            int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            __syncthreads();
            if (lane == 0) { sv[warp] = acc; si[warp] = idx; }
            __syncthreads();
            if (warp == 0) {
                int nw = blockDim.x >> 5;
                acc = lane < nw ? sv[lane] : A(-INFINITY);
                idx = lane < nw ? si[lane] : INT64_MAX;
                for (int o = 16; o > 0; o >>= 1) {
                    A ov = __shfl_xor_sync(0xffffffffu, acc, o);
                    int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
                    if (oi != INT64_MAX && (idx == INT64_MAX || better(ov, oi, acc, idx))) { acc = ov; idx = oi; }
                }
            }
        }
        if (threadIdx.x == 0) {
            if (out_final) {
                out_final[row] = st<T>(acc);
                if (out_i) out_i[row] = idx == INT64_MAX ? 0 : idx;
            } else {
                out_v[b] = acc;
                if (out_i) out_i[b] = idx;
            }
        }
        __syncthreads();
    }
}

template <typename T>
__global__ void scatter_rows_kernel(T* dx, const int64_t* idx, const T* g, int64_t rows, int64_t cols) {
    for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x)
        dx[r * cols + idx[r]] = g[r];
}
}  // namespace

void reduce_rows(ReduceOp op, DType dt, void* out, int64_t* argmax, const void* x, int64_t rows, int64_t cols) {
    if (rows == 0) return;
    int dev = current_device();
    dispatch_float(dt, op == ReduceOp::sum ? "sum" : "max", [&](auto tag) {
        using T = decltype(tag);
        using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
        const T* xp = static_cast<const T*>(x);
        T* op_ = static_cast<T*>(out);
        int64_t target_blocks = int64_t(sm_count(dev)) * 8;
        int64_t splits = 1;
        if (rows < target_blocks && cols > 8 * kThreads)
            splits = std::min<int64_t>((target_blocks + rows - 1) / rows, (cols + 4 * kThreads - 1) / (4 * kThreads));
        if (splits <= 1) {
            int grid = int(std::min<int64_t>(rows, 65535 * 16));
            reduce_kernel<T, A, false><<<grid, kThreads, 0, stream()>>>(op, xp, nullptr, nullptr, rows, cols, 1, op_,
                                                                       nullptr, argmax);
            RN_CUDA_CHECK_LAUNCH();
            return;
        }
        // pass 1: rows × splits partials; pass 2: reduce each row's partials
        Tensor pv = empty({rows * splits}, std::is_same_v<A, double> ? DType::f64 : DType::f32, Device::cuda(dev));
        Tensor pi = empty({rows * splits}, DType::i64, Device::cuda(dev));
        int grid = int(std::min<int64_t>(rows * splits, 65535 * 16));
        reduce_kernel<T, A, false><<<grid, kThreads, 0, stream()>>>(op, xp, nullptr, nullptr, rows, cols, splits,
                                                                   nullptr, static_cast<A*>(pv.raw_data()),
                                                                   op == ReduceOp::max ? pi.data<int64_t>() : nullptr);
        RN_CUDA_CHECK_LAUNCH();
        reduce_kernel<T, A, true><<<int(std::min<int64_t>(rows, 65535 * 16)), kThreads, 0, stream()>>>(
            op, nullptr, static_cast<const A*>(pv.raw_data()), op == ReduceOp::max ? pi.data<int64_t>() : nullptr,
            rows, splits, 1, op_, nullptr, argmax);
        RN_CUDA_CHECK_LAUNCH();
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
