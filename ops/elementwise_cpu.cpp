// ops/elementwise_cpu.cpp — CPU kernels for pointwise ops (OpenMP). Arithmetic in
// acc_type<T>: float for f32/bf16, double for f64; integers compute as themselves.
#include <cmath>
#include <string>
#include <type_traits>

#include "core/strided.h"
#include "ops/cpu_kernel.h"
#include "ops/elementwise.h"

namespace rn::cpu {

namespace {
template <typename A>
inline A unary_f(UnaryOp op, A x, A alpha, A beta) {
    switch (op) {
        case UnaryOp::neg: return -x;
        case UnaryOp::exp: return std::exp(x);
        case UnaryOp::log: return std::log(x);
        case UnaryOp::sqrt: return std::sqrt(x);
        case UnaryOp::rsqrt: return A(1) / std::sqrt(x);
        case UnaryOp::abs: return std::abs(x);
        case UnaryOp::tanh: return std::tanh(x);
        case UnaryOp::sigmoid: return x >= 0 ? A(1) / (A(1) + std::exp(-x)) : std::exp(x) / (A(1) + std::exp(x));
        case UnaryOp::silu: return x * (x >= 0 ? A(1) / (A(1) + std::exp(-x)) : std::exp(x) / (A(1) + std::exp(x)));
        case UnaryOp::gelu: return A(0.5) * x * (A(1) + std::erf(x * A(0.70710678118654752440)));
        case UnaryOp::relu: return x > 0 ? x : A(0);
        case UnaryOp::affine: return alpha * x + beta;
        case UnaryOp::pow_scalar: return std::pow(x, alpha);
    }
    return x;
}

// f'(x) times dy; y = f(x) where cheaper
template <typename A>
inline A unary_df(UnaryOp op, A dy, A x, A y, A alpha) {
    switch (op) {
        case UnaryOp::neg: return -dy;
        case UnaryOp::exp: return dy * y;
        case UnaryOp::log: return dy / x;
        case UnaryOp::sqrt: return dy * A(0.5) / y;
        case UnaryOp::rsqrt: return dy * A(-0.5) * y * y * y;
        case UnaryOp::abs: return x > 0 ? dy : (x < 0 ? -dy : A(0));
        case UnaryOp::tanh: return dy * (A(1) - y * y);
        case UnaryOp::sigmoid: return dy * y * (A(1) - y);
        case UnaryOp::silu: {
            A s = x >= 0 ? A(1) / (A(1) + std::exp(-x)) : std::exp(x) / (A(1) + std::exp(x));
            return dy * s * (A(1) + x * (A(1) - s));
        }
        case UnaryOp::gelu: {
            A cdf = A(0.5) * (A(1) + std::erf(x * A(0.70710678118654752440)));
            A pdf = std::exp(A(-0.5) * x * x) * A(0.39894228040143267794);
            return dy * (cdf + x * pdf);
        }
        case UnaryOp::relu: return x > 0 ? dy : A(0);
        case UnaryOp::affine: return dy * alpha;
        case UnaryOp::pow_scalar: return dy * alpha * std::pow(x, alpha - A(1));
    }
    return dy;
}

template <typename A>
inline A binary_f(BinaryOp op, A a, A b) {
    switch (op) {
        case BinaryOp::add: return a + b;
        case BinaryOp::sub: return a - b;
        case BinaryOp::mul: return a * b;
        case BinaryOp::div: return a / b;
        case BinaryOp::pow:
            if constexpr (std::is_floating_point_v<A>) return std::pow(a, b);
            else return A(std::pow(double(a), double(b)));
    }
    return a;
}

}  // namespace

void unary_forward(UnaryOp op, DType dt, void* y, const void* x, int64_t n, double alpha, double beta) {
    dispatch_floating(dt, unary_name(op), [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T* yp = static_cast<T*>(y);
        const T* xp = static_cast<const T*>(x);
        const A al = A(alpha), be = A(beta);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) yp[i] = st<T>(unary_f<A>(op, ld(xp[i]), al, be));
    });
}

void unary_backward(UnaryOp op, DType dt, void* dx, const void* dy, const void* x, const void* y, int64_t n,
                    double alpha, double) {
    dispatch_floating(dt, std::string(unary_name(op)) + " backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T* dxp = static_cast<T*>(dx);
        const T* dyp = static_cast<const T*>(dy);
        const T* xp = static_cast<const T*>(x);
        const T* yp = static_cast<const T*>(y);
        const A al = A(alpha);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i)
            dxp[i] = st<T>(unary_df<A>(op, ld(dyp[i]), xp ? ld(xp[i]) : A(0), yp ? ld(yp[i]) : A(0), al));
    });
}

void binary_forward(BinaryOp op, DType dt, void* out, const void* a, const void* b, const Shape& out_shape,
                    const Shape& a_strides, const Shape& b_strides) {
    Shape o_strides = contiguous_strides(out_shape);
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        T* op_ = static_cast<T*>(out);
        const T* ap = static_cast<const T*>(a);
        const T* bp = static_cast<const T*>(b);
        strided_rows<3>(out_shape, {o_strides, a_strides, b_strides},
                        [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& s) {
                            T* o = op_ + off[0];
                            const T* x = ap + off[1];
                            const T* y = bp + off[2];
                            if (s[1] == 1 && s[2] == 1) {
                                for (int64_t i = 0; i < n; ++i) o[i] = st<T>(binary_f<A>(op, ld(x[i]), ld(y[i])));
                            } else {
                                for (int64_t i = 0; i < n; ++i)
                                    o[i * s[0]] = st<T>(binary_f<A>(op, ld(x[i * s[1]]), ld(y[i * s[2]])));
                            }
                        });
    });
}

}  // namespace rn::cpu
