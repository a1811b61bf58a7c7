// ops/rotary_cpu.cpp — the CPU kernels of the rotations (declared in ops/rotary.h;
// cuda/rotary.cu mirrors them): RetNet's xPos rotation and the Transformer's half-split
// RoPE. One pass each; angles in double so positions up to millions stay exact.
#include <cmath>
#include <type_traits>
#include <vector>

#include "ops/cpu_kernel.h"
#include "ops/rotary.h"

namespace rn::cpu {

void xpos_rotate(DType dt, void* y_, const void* x_, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, int sign, double scale, int64_t split, double scale_hi) {
    const int64_t half = head_dim / 2;
    if (split < 0) split = C;
    std::vector<double> theta(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) theta[size_t(i)] = xpos_theta(i, head_dim);
    dispatch_all(dt, [&](auto tag) {
        using Tp = decltype(tag);
        if constexpr (std::is_same_v<Tp, int32_t> || std::is_same_v<Tp, int64_t>) {
            RN_FAIL("xpos_rotate: expected a floating dtype, got ", dt);
        } else {
            const Tp* x = static_cast<const Tp*>(x_);
            Tp* y = static_cast<Tp*>(y_);
#pragma omp parallel for collapse(2) schedule(static) if (B * T * C > kParallelMin)
            for (int64_t b = 0; b < B; ++b)
                for (int64_t t = 0; t < T; ++t) {
                    const double n = double(pos[b] + t);
                    const Tp* xr = x + (b * T + t) * C;
                    Tp* yr = y + (b * T + t) * C;
                    for (int64_t c = 0; c < C; c += 2) {
                        double a = n * theta[size_t((c % head_dim) / 2)];
                        const double s = c < split ? scale : scale_hi;
                        double cs = s * std::cos(a), sn = s * double(sign) * std::sin(a);
                        double x0 = to_double(xr[c]), x1 = to_double(xr[c + 1]);
                        // [y0, y1] = [x0 cos − x1 sin, x1 cos + x0 sin]
                        yr[c] = from_double<Tp>(x0 * cs - x1 * sn);
                        yr[c + 1] = from_double<Tp>(x1 * cs + x0 * sn);
                    }
                }
        }
    });
}

void rope_rotate(DType dt, void* y_, const void* x_, const int64_t* pos, int64_t B, int64_t T, int64_t C,
                 int64_t head_dim, double theta, int sign) {
    const int64_t half = head_dim / 2, H = C / head_dim;
    std::vector<double> inv_freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = rope_inv_freq(i, head_dim, theta);
    dispatch_floating(dt, "rope_rotate", [&](auto tag) {
        using Tp = decltype(tag);
        const Tp* x = static_cast<const Tp*>(x_);
        Tp* y = static_cast<Tp*>(y_);
        // every head of a token turns by the same angles: cos and sin once per token
#pragma omp parallel if (B * T * C > kParallelMin)
        {
            std::vector<double> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
#pragma omp for collapse(2) schedule(static)
            for (int64_t b = 0; b < B; ++b)
                for (int64_t t = 0; t < T; ++t) {
                    const double n = double(pos[b] + t);
                    for (int64_t i = 0; i < half; ++i) {
                        const double a = n * inv_freq[size_t(i)];
                        cs[size_t(i)] = std::cos(a);
                        sn[size_t(i)] = double(sign) * std::sin(a);
                    }
                    for (int64_t h = 0; h < H; ++h) {
                        const Tp* xr = x + (b * T + t) * C + h * head_dim;
                        Tp* yr = y + (b * T + t) * C + h * head_dim;
                        for (int64_t i = 0; i < half; ++i) {
                            const double x0 = to_double(xr[i]), x1 = to_double(xr[i + half]);
                            yr[i] = from_double<Tp>(x0 * cs[size_t(i)] - x1 * sn[size_t(i)]);
                            yr[i + half] = from_double<Tp>(x1 * cs[size_t(i)] + x0 * sn[size_t(i)]);
                        }
                    }
                }
        }
    });
}

}  // namespace rn::cpu
