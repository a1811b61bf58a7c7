// ops/swiglu_cpu.cpp — CPU kernels of silu_mul (declared in ops/swiglu.h; cuda/swiglu.cu
// mirrors them). Math in acc_type (float for f32/bf16, double for f64), σ computed on the
// stable side of the exponent.
#include <cmath>
#include <type_traits>

#include "ops/cpu_kernel.h"
#include "ops/swiglu.h"

namespace rn::cpu {

namespace {
template <typename A> inline A sigmoid(A x) { return x >= 0 ? A(1) / (A(1) + std::exp(-x)) : std::exp(x) / (A(1) + std::exp(x)); }
}  // namespace

void silu_mul_forward(DType dt, void* y, const void* a, const void* b, int64_t n) {
    dispatch_floating(dt, "silu_mul", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T* yp = static_cast<T*>(y);
        const T *ap = static_cast<const T*>(a), *bp = static_cast<const T*>(b);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
            const A x = ld(ap[i]);
            yp[i] = st<T>(x * sigmoid(x) * ld(bp[i]));
        }
    });
}

namespace {
// the backward; with WriteY also the forward's y = silu(a) ⊙ b (silu_mul_forward's
// expression: the same bits) written over dy once dy[i] is read
template <bool WriteY>
void backward(DType dt, void* da, void* db, void* dy_y, const void* a, const void* b, int64_t n) {
    dispatch_floating(dt, "silu_mul backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T *dap = static_cast<T*>(da), *dbp = static_cast<T*>(db), *gy = static_cast<T*>(dy_y);
        const T *ap = static_cast<const T*>(a), *bp = static_cast<const T*>(b);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
            const A x = ld(ap[i]), g = ld(gy[i]), s = sigmoid(x), bv = ld(bp[i]);
            if (dap) dap[i] = st<T>(g * bv * s * (A(1) + x * (A(1) - s)));
            if (dbp) dbp[i] = st<T>(g * x * s);
            if (WriteY) gy[i] = st<T>(x * s * bv);
        }
    });
}
}  // namespace

void silu_mul_backward(DType dt, void* da, void* db, const void* dy, const void* a, const void* b, int64_t n) {
    backward<false>(dt, da, db, const_cast<void*>(dy), a, b, n);  // dy is only read
}

void silu_mul_backward_recompute(DType dt, void* da, void* db, void* dy_y, const void* a, const void* b, int64_t n) {
    backward<true>(dt, da, db, dy_y, a, b, n);
}

}  // namespace rn::cpu
