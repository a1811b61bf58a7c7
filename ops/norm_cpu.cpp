// ops/norm_cpu.cpp — CPU kernels for layer_norm and rms_norm (OpenMP over rows).
// Dimension key: N rows, C the normalised (last) dim; every buffer contiguous.
//
// RMSNorm is LayerNorm without centring, so one forward and one backward template serve
// both (`centered`). With x̂ = (x − μ)·rstd (μ = 0 for rms), ĝ = dout ⊙ w:
//   dx = rstd · (ĝ − mean_c(ĝ) − x̂ · mean_c(ĝ ⊙ x̂))     (drop the mean_c(ĝ) term for rms)
//   dw = Σ_rows dout ⊙ x̂,  db = Σ_rows dout
// Row sums accumulate in double; the variance is computed in two passes (Σ(x − μ)², not
// Σx² − μ²), which stays accurate when |μ| ≫ σ.
#include <cmath>
#include <vector>

#include <omp.h>

#include "ops/cpu_kernel.h"
#include "ops/norm.h"

namespace rn::cpu {

namespace {
// S: the statistics' type (float for f32/bf16, double for f64)
template <typename T, typename S = typename acc_type<T>::type>
void norm_forward(bool centered, T* out, S* mean, S* rstd, const T* x, const T* w, const T* b, int64_t rows,
                  int64_t cols, double eps) {
#pragma omp parallel for schedule(static) if (worth_row_threads(rows, cols))
    for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * cols;  // [C]
        T* outr = out + r * cols;    // [C]
        double mu = 0;
        if (centered) {
            for (int64_t c = 0; c < cols; ++c) mu += to_double(xr[c]);
            mu = cols ? mu / double(cols) : 0.0;
        }
        double ss = 0;
        for (int64_t c = 0; c < cols; ++c) {
            double d = to_double(xr[c]) - mu;
            ss += d * d;
        }
        const double rs = 1.0 / std::sqrt((cols ? ss / double(cols) : 0.0) + eps);
        for (int64_t c = 0; c < cols; ++c) {
            double v = (to_double(xr[c]) - mu) * rs;
            if (w) v *= to_double(w[c]);
            if (b) v += to_double(b[c]);
            outr[c] = from_double<T>(v);
        }
        if (mean) mean[r] = S(mu);
        rstd[r] = S(rs);
    }
}

template <typename T, typename S = typename acc_type<T>::type>
void norm_backward(bool centered, T* dx, T* dw, T* db, const T* dout, const T* x, const T* w, const S* mean,
                   const S* rstd, int64_t rows, int64_t cols) {
    const bool par = worth_row_threads(rows, cols);
    const bool want_params = dw || db;
    // dw/db: each thread sums its rows into a private [C] slice of `partial` (no atomics;
    // deterministic for a fixed thread count), then the slices are added column by column.
    const int nt = par ? omp_get_max_threads() : 1;
    std::vector<double> partial_w(want_params && dw ? size_t(nt) * size_t(cols) : 0, 0.0);
    std::vector<double> partial_b(want_params && db ? size_t(nt) * size_t(cols) : 0, 0.0);
#pragma omp parallel if (par)
    {
        const int tid = omp_get_thread_num();
        double* pw = dw ? partial_w.data() + size_t(tid) * size_t(cols) : nullptr;  // [C]
        double* pb = db ? partial_b.data() + size_t(tid) * size_t(cols) : nullptr;  // [C]
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            const T* xr = x + r * cols;     // [C]
            const T* gr = dout + r * cols;  // [C]
            const double mu = centered ? double(mean[r]) : 0.0;
            const double rs = double(rstd[r]);
            if (dx) {
                double sum_g = 0, sum_gx = 0;  // Σ ĝ, Σ ĝ x̂
                for (int64_t c = 0; c < cols; ++c) {
                    double g = to_double(gr[c]) * (w ? to_double(w[c]) : 1.0);
                    sum_g += g;
                    sum_gx += g * (to_double(xr[c]) - mu) * rs;
                }
                const double mean_g = centered && cols ? sum_g / double(cols) : 0.0;
                const double mean_gx = cols ? sum_gx / double(cols) : 0.0;
                T* dxr = dx + r * cols;  // [C]
                for (int64_t c = 0; c < cols; ++c) {
                    double g = to_double(gr[c]) * (w ? to_double(w[c]) : 1.0);
                    double xh = (to_double(xr[c]) - mu) * rs;
                    dxr[c] = from_double<T>(rs * (g - mean_g - xh * mean_gx));
                }
            }
            if (pw)
                for (int64_t c = 0; c < cols; ++c) pw[c] += to_double(gr[c]) * (to_double(xr[c]) - mu) * rs;
            if (pb)
                for (int64_t c = 0; c < cols; ++c) pb[c] += to_double(gr[c]);
        }
    }
    if (!want_params) return;
    // the column pass is nt adds a column: only wide rows pay for a second team start
#pragma omp parallel for schedule(static) if (par && cols > 1024)
    for (int64_t c = 0; c < cols; ++c) {
        double sw = 0, sb = 0;
        for (int t = 0; t < nt; ++t) {
            if (dw) sw += partial_w[size_t(t) * size_t(cols) + size_t(c)];
            if (db) sb += partial_b[size_t(t) * size_t(cols) + size_t(c)];
        }
        if (dw) dw[c] = from_double<T>(sw);
        if (db) db[c] = from_double<T>(sb);
    }
}
}  // namespace

void layer_norm_forward(DType dt, void* out, void* mean, void* rstd, const void* x, const void* w_or_null,
                        const void* b_or_null, int64_t rows, int64_t cols, double eps) {
    dispatch_floating(dt, "layer_norm", [&](auto tag) {
        using T = decltype(tag);
        using S = typename acc_type<T>::type;
        norm_forward<T>(true, static_cast<T*>(out), static_cast<S*>(mean), static_cast<S*>(rstd),
                        static_cast<const T*>(x), static_cast<const T*>(w_or_null), static_cast<const T*>(b_or_null),
                        rows, cols, eps);
    });
}

void layer_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, void* db_or_null, const void* dout,
                         const void* x, const void* w_or_null, const void* mean, const void* rstd, int64_t rows,
                         int64_t cols) {
    dispatch_floating(dt, "layer_norm backward", [&](auto tag) {
        using T = decltype(tag);
        using S = typename acc_type<T>::type;
        norm_backward<T>(true, static_cast<T*>(dx_or_null), static_cast<T*>(dw_or_null), static_cast<T*>(db_or_null),
                         static_cast<const T*>(dout), static_cast<const T*>(x), static_cast<const T*>(w_or_null),
                         static_cast<const S*>(mean), static_cast<const S*>(rstd), rows, cols);
    });
}

void rms_norm_forward(DType dt, void* out, void* rstd, const void* x, const void* w_or_null, int64_t rows,
                      int64_t cols, double eps) {
    dispatch_floating(dt, "rms_norm", [&](auto tag) {
        using T = decltype(tag);
        using S = typename acc_type<T>::type;
        norm_forward<T>(false, static_cast<T*>(out), static_cast<S*>(nullptr), static_cast<S*>(rstd),
                        static_cast<const T*>(x), static_cast<const T*>(w_or_null), nullptr, rows, cols, eps);
    });
}

void rms_norm_backward(DType dt, void* dx_or_null, void* dw_or_null, const void* dout, const void* x,
                       const void* w_or_null, const void* rstd, int64_t rows, int64_t cols) {
    dispatch_floating(dt, "rms_norm backward", [&](auto tag) {
        using T = decltype(tag);
        using S = typename acc_type<T>::type;
        norm_backward<T>(false, static_cast<T*>(dx_or_null), static_cast<T*>(dw_or_null), nullptr,
                         static_cast<const T*>(dout), static_cast<const T*>(x), static_cast<const T*>(w_or_null),
                         static_cast<const S*>(nullptr), static_cast<const S*>(rstd), rows, cols);
    });
}

}  // namespace rn::cpu
