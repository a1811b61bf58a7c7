// ops/reduce_cpu.cpp — CPU kernels of the reductions (declared in ops/reduce.h; cuda/reduce.cu
// mirrors them): a row reduction over contiguous rows (OpenMP over rows) and the scatter
// that max's backward uses.
#include <cmath>

#include "ops/cpu_kernel.h"
#include "ops/reduce.h"

namespace rn::cpu {
void reduce_rows(ReduceOp op, DType dt, void* out, int64_t* argmax, const void* x, int64_t rows, int64_t cols) {
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        const T* xp = static_cast<const T*>(x);
        T* op_ = static_cast<T*>(out);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin && rows > 1)
        for (int64_t r = 0; r < rows; ++r) {
            const T* row = xp + r * cols;
            if (op == ReduceOp::sum) {
                double acc = 0;  // double accumulation: f32 sums of millions stay exact enough
                for (int64_t c = 0; c < cols; ++c) acc += to_double(row[c]);
                op_[r] = from_double<T>(acc);
            } else {
                int64_t best = 0;
                double bv = cols ? to_double(row[0]) : 0;
                for (int64_t c = 1; c < cols; ++c) {
                    double v = to_double(row[c]);
                    if (v > bv || (std::isnan(v) && !std::isnan(bv))) { bv = v; best = c; }
                }
                op_[r] = from_double<T>(bv);
                if (argmax) argmax[r] = best;
            }
        }
    });
}

void scatter_rows(DType dt, void* dx, const int64_t* argmax, const void* g, int64_t rows, int64_t cols) {
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        const T* gp = static_cast<const T*>(g);
        T* rp = static_cast<T*>(dx);
        for (int64_t r = 0; r < rows; ++r) rp[r * cols + argmax[r]] = gp[r];
    });
}

}  // namespace rn::cpu
