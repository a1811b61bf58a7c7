// cuda/rotary.cu — xPos rotation (times an optional scale, another one from column `split`
// on: [q | k] in one pass). Dimension key: B, T, C = H·Dk.
// One thread per 16-byte vector (4 pairs in bf16, 2 in f32; one pair where rows are not
// 16-byte aligned). The angle n·θ is formed and reduced modulo 2π in double — in fp32, n·θ
// at n = 65,536 would already be off by ~4e-3 rad — and the reduced angle, |a| ≤ π, goes to
// the fp32 sincosf (error ~1e-7, the size of fp32 rounding); f64 tensors keep double sincos.
// θ_i is computed once per block into shared memory.
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/rotary.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {
constexpr double kTwoPi = 6.283185307179586;

template <typename T, int VE, bool VEC, typename I>  // VE elements per thread (even); VEC: 16-byte loads
__global__ void rotate_kernel(T* __restrict__ y, const T* __restrict__ x, const int64_t* __restrict__ pos, I rows,
                              I T_, I C, int Dk, float sign, float scale, I split, float scale_hi) {
    extern __shared__ double theta[];  // [Dk/2]
    const int half = Dk / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double frac = half > 1 ? double(i) / double(half - 1) : 0.0;
        theta[i] = ::exp(-frac * 9.210340371976184);  // 10000^(−frac)
    }
    __syncthreads();
    using A = typename acc_of<T>::type;
    const I per_row = C / VE, n_vec = rows * per_row;
    for (I v = blockIdx.x * I(blockDim.x) + threadIdx.x; v < n_vec; v += I(gridDim.x) * blockDim.x) {
        const I r = v / per_row, c0 = (v - r * per_row) * VE;
        const I b = r / T_, t = r - b * T_;
        const double n = double(pos[b] + int64_t(t));
        const int64_t base = int64_t(r) * int64_t(C) + int64_t(c0);
        alignas(16) T in[VE];
        alignas(16) T out[VE];
        if constexpr (VEC) {
            *reinterpret_cast<uint4*>(in) = *reinterpret_cast<const uint4*>(x + base);
        } else {
#pragma unroll
            for (int j = 0; j < VE; ++j) in[j] = x[base + j];
        }
#pragma unroll
        for (int j = 0; j < VE; j += 2) {
            const int i = int((c0 + I(j)) % I(Dk)) / 2;
            double a = n * theta[i];
            a -= kTwoPi * rint(a * (1.0 / kTwoPi));
            A sn, cs;
            if constexpr (std::is_same_v<A, double>) {
                ::sincos(a, &sn, &cs);
            } else {
                sincosf(float(a), &sn, &cs);
            }
            const A s = c0 + I(j) < split ? A(scale) : A(scale_hi);
            sn *= A(sign) * s;
            cs *= s;
            const A x0 = ld(in[j]), x1 = ld(in[j + 1]);
            out[j] = st<T>(x0 * cs - x1 * sn);
            out[j + 1] = st<T>(x1 * cs + x0 * sn);
        }
        if constexpr (VEC) {
            *reinterpret_cast<uint4*>(y + base) = *reinterpret_cast<const uint4*>(out);
        } else {
#pragma unroll
            for (int j = 0; j < VE; ++j) y[base + j] = out[j];
        }
    }
}

template <typename T, int VE, bool VEC>
void launch(T* y, const T* x, const int64_t* pos, int64_t B, int64_t T_, int64_t C, int64_t Dk, int sign, double scale,
            int64_t split, double scale_hi) {
    const int64_t n_vec = B * T_ * (C / VE);
    const size_t smem = size_t(Dk / 2) * sizeof(double);
    if (n_vec < (int64_t(1) << 31) && B * T_ * C < (int64_t(1) << 31))
        rotate_kernel<T, VE, VEC, uint32_t><<<grid_for(n_vec), 256, smem, stream()>>>(
            y, x, pos, uint32_t(B * T_), uint32_t(T_), uint32_t(C), int(Dk), float(sign), float(scale), uint32_t(split),
            float(scale_hi));
    else
        rotate_kernel<T, VE, VEC, uint64_t><<<grid_for(n_vec), 256, smem, stream()>>>(
            y, x, pos, uint64_t(B * T_), uint64_t(T_), uint64_t(C), int(Dk), float(sign), float(scale), uint64_t(split),
            float(scale_hi));
    RN_CUDA_CHECK_LAUNCH();
}
}  // namespace

void xpos_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, int sign, double scale, int64_t split, double scale_hi) {
    if (B * T * C == 0) return;
    if (split < 0 || split > C) split = C;
    dispatch_float(dt, "xpos_rotate", [&](auto tag) {
        using Tp = decltype(tag);
        constexpr int kVec = 16 / int(sizeof(Tp));  // 8 bf16, 4 f32, 2 f64 per 16 bytes
        Tp* yp = static_cast<Tp*>(y);
        const Tp* xp = static_cast<const Tp*>(x);
        const bool vec = C % kVec == 0 && aligned16(yp) && aligned16(xp);
        if (vec)
            launch<Tp, kVec, true>(yp, xp, pos, B, T, C, head_dim, sign, scale, split, scale_hi);
        else
            launch<Tp, 2, false>(yp, xp, pos, B, T, C, head_dim, sign, scale, split, scale_hi);
    });
}

}  // namespace rn::cuda
