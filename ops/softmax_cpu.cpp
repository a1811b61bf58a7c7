// ops/softmax_cpu.cpp — CPU row kernels for softmax, log_softmax and cross-entropy
// (OpenMP over rows). Dimension key: N rows, C columns (the softmax dim), both contiguous.
//
// Stability: every row subtracts its maximum before exp, so the largest term is exp(0) = 1
// and logits of ±1000 neither overflow nor vanish. Element math is in acc_type<T> (float for
// f32/bf16, double for f64); row sums accumulate in double, which costs nothing next to exp
// and keeps a 50k-wide vocabulary row exact to f32 precision.
#include <cmath>
#include <limits>
#include <type_traits>

#include "ops/cpu_kernel.h"
#include "ops/softmax.h"

namespace rn::cpu {

namespace {
template <typename T>
inline typename acc_type<T>::type row_max(const T* x, int64_t cols) {
    using A = typename acc_type<T>::type;
    A m = -std::numeric_limits<A>::infinity();
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, ld(x[c]));
    return m;
}

// log Σ exp(x) of one row, max-subtracted
template <typename T>
inline double row_logsumexp(const T* x, int64_t cols) {
    using A = typename acc_type<T>::type;
    A m = row_max(x, cols);
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += double(std::exp(ld(x[c]) - m));
    return double(m) + std::log(s);
}
}  // namespace

void softmax_forward(DType dt, void* y, const void* x, int64_t rows, int64_t cols, bool log) {
    dispatch_floating(dt, log ? "log_softmax" : "softmax", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        const T* xp = static_cast<const T*>(x);
        T* yp = static_cast<T*>(y);
#pragma omp parallel for schedule(static) if (worth_row_threads(rows, cols))
        for (int64_t r = 0; r < rows; ++r) {
            const T* xr = xp + r * cols;  // [C]
            T* yr = yp + r * cols;        // [C]
            A m = row_max(xr, cols);
            double s = 0;
            if (log) {
                for (int64_t c = 0; c < cols; ++c) s += double(std::exp(ld(xr[c]) - m));
                // (x − m) − log s, not x − (m + log s): m + log s rounded to f32 at |m| ≈ 1000
                // would cost 6e-5 absolute on every output
                A ls = A(std::log(s));
                for (int64_t c = 0; c < cols; ++c) yr[c] = st<T>((ld(xr[c]) - m) - ls);
            } else if constexpr (std::is_same_v<T, A>) {
                // f32/f64: keep exp(x - m) in y, then scale; one exp per element
                for (int64_t c = 0; c < cols; ++c) {
                    A e = std::exp(ld(xr[c]) - m);
                    yr[c] = e;
                    s += double(e);
                }
                A inv = A(1.0 / s);
                for (int64_t c = 0; c < cols; ++c) yr[c] *= inv;
            } else {
                // bf16: rounding exp(x - m) to bf16 before scaling would lose bits, so recompute
                for (int64_t c = 0; c < cols; ++c) s += double(std::exp(ld(xr[c]) - m));
                A inv = A(1.0 / s);
                for (int64_t c = 0; c < cols; ++c) yr[c] = st<T>(std::exp(ld(xr[c]) - m) * inv);
            }
        }
    });
}

void softmax_backward(DType dt, void* dx, const void* dy, const void* y, int64_t rows, int64_t cols, bool log) {
    dispatch_floating(dt, log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        const T* dyp = static_cast<const T*>(dy);
        const T* yp = static_cast<const T*>(y);
        T* dxp = static_cast<T*>(dx);
#pragma omp parallel for schedule(static) if (worth_row_threads(rows, cols))
        for (int64_t r = 0; r < rows; ++r) {
            const T* dyr = dyp + r * cols;  // [C]
            const T* yr = yp + r * cols;    // [C]
            T* dxr = dxp + r * cols;        // [C]
            double s = 0;
            if (log) {
                for (int64_t c = 0; c < cols; ++c) s += double(ld(dyr[c]));
                A sa = A(s);
                for (int64_t c = 0; c < cols; ++c) dxr[c] = st<T>(ld(dyr[c]) - std::exp(ld(yr[c])) * sa);
            } else {
                for (int64_t c = 0; c < cols; ++c) s += double(ld(dyr[c])) * double(ld(yr[c]));
                A sa = A(s);
                for (int64_t c = 0; c < cols; ++c) dxr[c] = st<T>(ld(yr[c]) * (ld(dyr[c]) - sa));
            }
        }
    });
}

void cross_entropy_forward(DType dt, void* loss, double* lse, const void* logits, const int64_t* targets,
                           int64_t rows, int64_t cols, int64_t ignore_index, int64_t count) {
    dispatch_floating(dt, "cross_entropy", [&](auto tag) {
        using T = decltype(tag);
        const T* xp = static_cast<const T*>(logits);
        double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (worth_row_threads(rows, cols))
        for (int64_t r = 0; r < rows; ++r) {
            const T* xr = xp + r * cols;  // [C]
            lse[r] = row_logsumexp(xr, cols);
            int64_t t = targets[r];
            if (t != ignore_index) total += lse[r] - double(ld(xr[t]));
        }
        // count == 0: every token ignored; the loss is defined as 0 (see softmax.h)
        using A = typename acc_type<T>::type;
        *static_cast<A*>(loss) = from_double<A>(count > 0 ? total / double(count) : 0.0);
    });
}

void cross_entropy_backward(DType dt, void* dlogits, double dloss, const void* logits, const double* lse,
                            const int64_t* targets, int64_t rows, int64_t cols, int64_t ignore_index,
                            int64_t count) {
    dispatch_floating(dt, "cross_entropy backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        const T* xp = static_cast<const T*>(logits);
        T* dxp = static_cast<T*>(dlogits);
        // count == 0: the loss was the constant 0, so every gradient is 0
        const A scale = A(count > 0 ? dloss / double(count) : 0.0);
#pragma omp parallel for schedule(static) if (worth_row_threads(rows, cols))
        for (int64_t r = 0; r < rows; ++r) {
            const T* xr = xp + r * cols;  // [C]
            T* dxr = dxp + r * cols;      // [C]
            int64_t t = targets[r];
            if (t == ignore_index || scale == A(0)) {
                for (int64_t c = 0; c < cols; ++c) dxr[c] = st<T>(A(0));
                continue;
            }
            // x − lse in double (lse ≈ 1000 rounded to f32 would be off by 6e-5), exp in A.
            // The target's probability is read before the row is written: dlogits may be
            // logits itself (ops/linear_cross_entropy.cpp works in place).
            const double l = lse[r];
            const A pt = std::exp(A(double(ld(xr[t])) - l));
            for (int64_t c = 0; c < cols; ++c) dxr[c] = st<T>(std::exp(A(double(ld(xr[c])) - l)) * scale);
            dxr[t] = st<T>((pt - A(1)) * scale);
        }
    });
}

}  // namespace rn::cpu
