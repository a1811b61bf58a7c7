// ops/dropout.cpp — dropout, its backward node and CPU kernels (cuda/dropout.cu mirrors
// them, drawing the same mask on the device). The mask is saved as 0/1 in x's dtype (exact
// in bf16 too; 1/(1-p) is not) and the scale is applied in acc_type, so forward and
// backward scale identically.
#include "ops/dropout.h"

#include <cmath>
#include <type_traits>

#include "autograd/node.h"
#include "cuda/dropout.h"
#include "ops/cpu_kernel.h"
#include "ops/op_util.h"

namespace rn {

namespace cpu {
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
}  // namespace cpu

namespace {
// d/dx dropout(x) = grad * mask / (1 - p)
struct DropoutBackward : Node {
    SavedTensor mask;  // 0/1 in x's dtype, contiguous, x's shape
    double scale = 1.0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor m = mask.get("DropoutBackward");
        Tensor dy = contiguous_nograd(g[0]);
        Tensor dx = empty_like(dy);
        if (dy.is_cuda())
            cuda::dropout_backward(dy.dtype(), dx.raw_data(), dy.raw_data(), m.raw_data(), dy.numel(), scale);
        else
            cpu::dropout_backward(dy.dtype(), dx.raw_data(), dy.raw_data(), m.raw_data(), dy.numel(), scale);
        return {dx};
    }
    void release() override { mask.reset(); }
    std::string name() const override { return "DropoutBackward"; }
};
}  // namespace

Tensor dropout(const Tensor& x_in, double p, bool training, Generator& gen) {
    check_defined(x_in, "dropout");
    // checked even in eval mode: a bad p is a bug wherever it is found
    RN_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p,
             ". HINT: p is the probability of dropping an element; p = 1 would drop everything");
    if (!training || p == 0.0) return x_in;
    check_floating(x_in, "dropout");
    Tensor x = contiguous_nograd(x_in);
    const int64_t n = x.numel();
    const double scale = 1.0 / (1.0 - p);
    const uint64_t seed = gen.seed();
    const uint64_t base = gen.advance(uint64_t(n));
    Tensor y = empty(x.shape(), x.dtype(), x.device());
    Tensor mask = empty(x.shape(), x.dtype(), x.device());
    if (x.is_cuda())
        cuda::dropout_forward(x.dtype(), y.raw_data(), mask.raw_data(), x.raw_data(), n, p, scale, seed, base);
    else
        cpu::dropout_forward(x.dtype(), y.raw_data(), mask.raw_data(), x.raw_data(), n, p, scale, seed, base);
    if (any_requires_grad({x_in})) {
        auto node = std::make_shared<DropoutBackward>();
        node->mask = SavedTensor(mask);
        node->scale = scale;
        record(node, {x_in}, {y});
    }
    return y;
}

}  // namespace rn
