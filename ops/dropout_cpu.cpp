// ops/dropout_cpu.cpp — CPU kernels of dropout (declared in ops/dropout.h; cuda/dropout.cu
// mirrors them, drawing the same mask on the device). The mask is saved as 0/1 in x's dtype
// (exact in bf16 too; 1/(1-p) is not) and the scale is applied in acc_type, so forward and
// backward scale identically.
#include <cstdint>

#include "core/random.h"
#include "ops/cpu_kernel.h"
#include "ops/dropout.h"

namespace rn::cpu {

void dropout_forward(DType dt, void* y, void* mask, const void* x, int64_t n, double p, double scale, uint64_t seed,
                     uint64_t base) {
    dispatch_floating(dt, "dropout", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T* yp = static_cast<T*>(y);
        T* mp = static_cast<T*>(mask);
        const T* xp = static_cast<const T*>(x);
        const A s = A(scale);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
            bool keep = Generator::uniform(seed, base + uint64_t(i)) >= p;
            mp[i] = st<T>(keep ? A(1) : A(0));
            yp[i] = st<T>(keep ? ld(xp[i]) * s : A(0));
        }
    });
}

void dropout_backward(DType dt, void* dx, const void* dy, const void* mask, int64_t n, double scale) {
    dispatch_floating(dt, "dropout backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T* dxp = static_cast<T*>(dx);
        const T* dyp = static_cast<const T*>(dy);
        const T* mp = static_cast<const T*>(mask);
        const A s = A(scale);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) dxp[i] = st<T>(ld(dyp[i]) * ld(mp[i]) * s);
    });
}

}  // namespace rn::cpu
