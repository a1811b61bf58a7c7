// cuda/rotary.cu — the rotations: RetNet's xPos rotation (times an optional scale, another
// one from column `split` on: [q | k] in one pass), and the Transformer's half-split RoPE
// (at the end of the file). Dimension key: B, T, C = H·Dk.
// xPos: one thread per 16-byte vector (4 pairs in bf16, 2 in f32; one pair where rows are not
// 16-byte aligned). The angle n·θ is formed and reduced modulo 2π in double — in fp32, n·θ
// at n = 65,536 would already be off by ~4e-3 rad — and the reduced angle, |a| ≤ π, goes to
// the fp32 sincosf (error ~1e-7, the size of fp32 rounding); f64 tensors keep double sincos.
// θ_i is computed once per block into shared memory.
#include <cmath>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/pdl.cuh"
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
    pdl_wait();  // θ depends on nothing earlier: computed while the kernel before ends (cuda/pdl.h)
    pdl_trigger();
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
        launch_pdl(rotate_kernel<T, VE, VEC, uint32_t>, dim3(unsigned(grid_for(n_vec))), dim3(256), smem, y, x, pos,
                   uint32_t(B * T_), uint32_t(T_), uint32_t(C), int(Dk), float(sign), float(scale), uint32_t(split),
                   float(scale_hi));
    else
        launch_pdl(rotate_kernel<T, VE, VEC, uint64_t>, dim3(unsigned(grid_for(n_vec))), dim3(256), smem, y, x, pos,
                   uint64_t(B * T_), uint64_t(T_), uint64_t(C), int(Dk), float(sign), float(scale), uint64_t(split),
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

// ---------------------------------------------------------------- half-split RoPE
// One thread per VE consecutive pair indices i of one head: it reads x[i .. i+VE) and
// x[i+D/2 .. i+D/2+VE) (two 16-byte vectors where the halves allow, VE = 8 bf16, 4 f32,
// 2 f64; one pair otherwise) and writes both.
// The frequencies inv_freq_i = θ^(−2i/D) come from the host, computed by the same
// expression as the CPU's (rope_inv_freq: std::pow in double), passed by value in the
// launch (a __grid_constant__ parameter: nothing to copy to the device, so the launch stays
// capturable) and staged in shared memory. Bit-identical frequencies matter: the angle
// n·inv_freq amplifies a one-ulp difference by n, ~1e-10 rad at position 10^6, which is
// above the f64 tolerance against the CPU.
// The angle a = n·inv_freq_i is formed in double. For fp32/bf16 it is reduced modulo 2π in
// double (n·inv_freq_0 = n rad, and fp32 holds 65,536 only to ~4e-3 rad, so an fp32 product
// would already move the first pairs' rotation by that much at 64K) and the reduced |a| ≤ π
// goes to sincosf (~1e-7, fp32's own rounding). f64 gives the unreduced angle to double
// sincos, whose own reduction is exact (reducing by the rounded 2π would add k·2.4e-16 rad
// for k turns).
namespace {
constexpr int kRopeMaxPairs = 512;  // head dims up to 1024; the parameter is then 4 KB
struct RopeFreqs {
    double v[kRopeMaxPairs];
};

template <typename T, int VE, bool VEC, typename I>
__global__ void rope_kernel(T* __restrict__ y, const T* __restrict__ x, const int64_t* __restrict__ pos, I rows,
                            I T_, I C, int D, const __grid_constant__ RopeFreqs freqs, float sign) {
    __shared__ double inv_freq[kRopeMaxPairs];
    const int half = D / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) inv_freq[i] = freqs.v[i];
    __syncthreads();
    using A = typename acc_of<T>::type;
    const I groups = I(half / VE), per_row = (C / I(D)) * groups, n_items = rows * per_row;
    for (I v = blockIdx.x * I(blockDim.x) + threadIdx.x; v < n_items; v += I(gridDim.x) * blockDim.x) {
        const I r = v / per_row, rem = v - r * per_row;
        const I h = rem / groups, i0 = (rem - h * groups) * I(VE);
        const I b = r / T_, t = r - b * T_;
        const double n = double(pos[b] + int64_t(t));
        const int64_t base = int64_t(r) * int64_t(C) + int64_t(h) * D + int64_t(i0);
        alignas(16) T lo[VE], hi[VE], olo[VE], ohi[VE];
        if constexpr (VEC) {
            *reinterpret_cast<uint4*>(lo) = *reinterpret_cast<const uint4*>(x + base);
            *reinterpret_cast<uint4*>(hi) = *reinterpret_cast<const uint4*>(x + base + half);
        } else {
#pragma unroll
            for (int j = 0; j < VE; ++j) lo[j] = x[base + j], hi[j] = x[base + half + j];
        }
#pragma unroll
        for (int j = 0; j < VE; ++j) {
            double a = n * inv_freq[int(i0) + j];
            A sn, cs;
            if constexpr (std::is_same_v<A, double>) {
                ::sincos(a, &sn, &cs);
            } else {
                a -= kTwoPi * rint(a * (1.0 / kTwoPi));
                sincosf(float(a), &sn, &cs);
            }
            sn *= A(sign);
            const A x0 = ld(lo[j]), x1 = ld(hi[j]);
            olo[j] = st<T>(x0 * cs - x1 * sn);
            ohi[j] = st<T>(x1 * cs + x0 * sn);
        }
        if constexpr (VEC) {
            *reinterpret_cast<uint4*>(y + base) = *reinterpret_cast<const uint4*>(olo);
            *reinterpret_cast<uint4*>(y + base + half) = *reinterpret_cast<const uint4*>(ohi);
        } else {
#pragma unroll
            for (int j = 0; j < VE; ++j) y[base + j] = olo[j], y[base + half + j] = ohi[j];
        }
    }
}

template <typename T, int VE, bool VEC>
void rope_launch(T* y, const T* x, const int64_t* pos, int64_t B, int64_t T_, int64_t C, int64_t D,
                 const RopeFreqs& f, int sign) {
    const int64_t n_items = B * T_ * (C / 2) / VE;
    if (n_items < (int64_t(1) << 31) && B * T_ * C < (int64_t(1) << 31))
        rope_kernel<T, VE, VEC, uint32_t><<<grid_for(n_items), 256, 0, stream()>>>(
            y, x, pos, uint32_t(B * T_), uint32_t(T_), uint32_t(C), int(D), f, float(sign));
    else
        rope_kernel<T, VE, VEC, uint64_t><<<grid_for(n_items), 256, 0, stream()>>>(
            y, x, pos, uint64_t(B * T_), uint64_t(T_), uint64_t(C), int(D), f, float(sign));
    RN_CUDA_CHECK_LAUNCH();
}
}  // namespace

void rope_rotate(DType dt, void* y, const void* x, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, double theta, int sign) {
    if (B * T * C == 0) return;
    RN_CHECK(head_dim >= 2 && head_dim / 2 <= kRopeMaxPairs, "rope_rotate (CUDA): head_dim ", head_dim,
             " is more than the ", 2 * kRopeMaxPairs, " this kernel supports");
    RopeFreqs f{};
    // the expression of rope_inv_freq (ops/rotary.cpp), on the host: the CPU's exact bits
    for (int64_t i = 0; i < head_dim / 2; ++i) f.v[i] = std::pow(theta, -2.0 * double(i) / double(head_dim));
    dispatch_float(dt, "rope_rotate", [&](auto tag) {
        using Tp = decltype(tag);
        constexpr int kVec = 16 / int(sizeof(Tp));  // 8 bf16, 4 f32, 2 f64 per 16 bytes
        Tp* yp = static_cast<Tp*>(y);
        const Tp* xp = static_cast<const Tp*>(x);
        // both halves of every head start on a 16-byte boundary when D/2 is a multiple of kVec
        const bool vec = (head_dim / 2) % kVec == 0 && aligned16(yp) && aligned16(xp);
        if (vec)
            rope_launch<Tp, kVec, true>(yp, xp, pos, B, T, C, head_dim, f, sign);
        else
            rope_launch<Tp, 1, false>(yp, xp, pos, B, T, C, head_dim, f, sign);
    });
}

}  // namespace rn::cuda
