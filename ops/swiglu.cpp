// ops/swiglu.cpp — silu_mul: the op, its backward node and the CPU kernels (ops/swiglu.h;
// cuda/swiglu.cu mirrors the kernels). Math in acc_type (float for f32/bf16, double for
// f64), σ computed on the stable side of the exponent.
#include "ops/swiglu.h"

#include <cmath>
#include <type_traits>

#include "autograd/node.h"
#include "cuda/swiglu.h"
#include "ops/cpu_kernel.h"
#include "ops/op_util.h"

namespace rn {

namespace cpu {
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

void silu_mul_backward(DType dt, void* da, void* db, const void* dy, const void* a, const void* b, int64_t n) {
    dispatch_floating(dt, "silu_mul backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T *dap = static_cast<T*>(da), *dbp = static_cast<T*>(db);
        const T *gp = static_cast<const T*>(dy), *ap = static_cast<const T*>(a), *bp = static_cast<const T*>(b);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
            const A x = ld(ap[i]), g = ld(gp[i]), s = sigmoid(x);
            if (dap) dap[i] = st<T>(g * ld(bp[i]) * s * (A(1) + x * (A(1) - s)));
            if (dbp) dbp[i] = st<T>(g * x * s);
        }
    });
}
}  // namespace cpu

namespace {
struct SiluMulBackward : Node {
    SavedTensor a, b;  // contiguous inputs
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor av = a.get("SiluMulBackward"), bv = b.get("SiluMulBackward");
        Tensor dy = contiguous_nograd(g[0]);
        const bool need_a = needs_input_grad(0), need_b = needs_input_grad(1);
        Tensor da = need_a ? empty_like(av) : Tensor(), db = need_b ? empty_like(bv) : Tensor();
        void* dap = need_a ? da.raw_data() : nullptr;
        void* dbp = need_b ? db.raw_data() : nullptr;
        if (dy.is_cuda())
            cuda::silu_mul_backward(dy.dtype(), dap, dbp, dy.raw_data(), av.raw_data(), bv.raw_data(), dy.numel());
        else
            cpu::silu_mul_backward(dy.dtype(), dap, dbp, dy.raw_data(), av.raw_data(), bv.raw_data(), dy.numel());
        return {da, db};
    }
    std::string name() const override { return "SiluMulBackward"; }
};
}  // namespace

Tensor silu_mul(const Tensor& a_in, const Tensor& b_in) {
    const char* op = "silu_mul";
    check_same_dtype_device(a_in, b_in, op);
    check_floating(a_in, op);
    RN_CHECK(a_in.shape() == b_in.shape(), op, ": a and b must have the same shape, got ", a_in.shape(), " and ",
             b_in.shape());
    Tensor a = contiguous_nograd(a_in), b = contiguous_nograd(b_in);
    Tensor y = empty_like(a);
    if (a.is_cuda())
        cuda::silu_mul_forward(a.dtype(), y.raw_data(), a.raw_data(), b.raw_data(), a.numel());
    else
        cpu::silu_mul_forward(a.dtype(), y.raw_data(), a.raw_data(), b.raw_data(), a.numel());
    if (any_requires_grad({a_in, b_in})) {
        auto n = std::make_shared<SiluMulBackward>();
        n->a = SavedTensor(a);
        n->b = SavedTensor(b);
        record(n, {a_in, b_in}, {y});
    }
    return y;
}

}  // namespace rn
