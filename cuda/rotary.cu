// cuda/rotary.cu — xPos rotation, one thread per (even, odd) pair. Dimension key: B, T,
// C = H·Dk. The angle n·θ is formed and reduced in double: in fp32, n·θ at n = 65,536
// would already be off by ~4e-3 rad.
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/rotary.h"

namespace rn::cuda {

namespace {
template <typename T>
__global__ void rotate_kernel(T* __restrict__ y, const T* __restrict__ x, const int64_t* __restrict__ pos, int64_t B,
                              int64_t T_, int64_t C, int64_t Dk, int sign) {
    const int64_t pairs = B * T_ * (C / 2);
    const int64_t half = Dk / 2;
    for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < pairs; p += int64_t(gridDim.x) * blockDim.x) {
        int64_t c = (p % (C / 2)) * 2;
        int64_t bt = p / (C / 2);
        int64_t b = bt / T_, t = bt % T_;
        int64_t i = (c % Dk) / 2;
        double frac = half > 1 ? double(i) / double(half - 1) : 0.0;
        double theta = ::exp(-frac * 9.210340371976184);  // 10000^(−frac)
        double sn, cs;
        ::sincos(double(pos[b] + t) * theta, &sn, &cs);
        using A = typename acc_of<T>::type;
        A s = A(sign) * A(sn), co = A(cs);
        A x0 = ld(x[bt * C + c]), x1 = ld(x[bt * C + c + 1]);
        y[bt * C + c] = st<T>(x0 * co - x1 * s);
        y[bt * C + c + 1] = st<T>(x1 * co + x0 * s);
    }
}
}  // namespace

void xpos_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, int sign) {
    int64_t pairs = B * T * (C / 2);
    if (pairs == 0) return;
    dispatch_float(dt, "xpos_rotate", [&](auto tag) {
        using Tp = decltype(tag);
        rotate_kernel<Tp><<<grid_for(pairs), 256, 0, stream()>>>(static_cast<Tp*>(y), static_cast<const Tp*>(x), pos,
                                                                 B, T, C, head_dim, sign);
        RN_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace rn::cuda
