// cuda/elementwise.cu — pointwise kernels (mirror of ops/elementwise_cpu.cpp).
// Dimension key: N elements; R rows × D cols for the broadcast path. Contiguous,
// 16-byte-aligned operands move as 16-byte vectors (4 f32, 8 bf16, 2 f64 a thread and
// iteration, two vectors in flight a thread). Unary ops on that path are compiled per op
// (the op a template argument, so each kernel holds one op's code and its few registers,
// not a switch over all of them); bf16 ones use the fast __expf / __fdividef, whose error
// (≈1e-6 relative) is far below a bf16 ulp (4e-3); f32 and f64 keep the accurate functions.
// A binary op whose dims merge to two, [R, D], with every operand either varying along D
// with unit stride or constant along it (the bias row [D] broadcast over rows, the per-row
// scalar [R, 1], a full [R, D] with any row stride), goes through a rows kernel: a thread
// owns one column vector and walks rows (2 rows' loads in flight, 3 for bf16), so a row
// operand is loaded once and there is no index arithmetic per element. Anything else goes
// through up-to-8-dim index arithmetic after merging dims that are contiguous in every operand.
#include <cstring>

#include "core/strided.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/elementwise.h"
#include "cuda/math.cuh"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {
template <typename A>
__device__ __forceinline__ A sigm(A x) {
    return x >= A(0) ? A(1) / (A(1) + d_exp(-x)) : d_exp(x) / (A(1) + d_exp(x));
}

// FAST (bf16 storage only): exp(x) by __expf, and 1 / (1 + e^−x) by __fdividef, which
// returns 0 when e^−x overflows (the right limit: sigmoid → 0, silu → −0)
template <bool FAST, typename A>
__device__ __forceinline__ A exp_f(A x) {
    if constexpr (FAST && std::is_same_v<A, float>) return __expf(x);
    else return d_exp(x);
}
template <bool FAST, typename A>
__device__ __forceinline__ A sigm_f(A x) {
    if constexpr (FAST && std::is_same_v<A, float>) return __fdividef(1.0f, 1.0f + __expf(-x));
    else return sigm(x);
}

template <typename A, bool FAST = false>
__device__ __forceinline__ A unary_f(UnaryOp op, A x, A alpha, A beta) {
    switch (op) {
        case UnaryOp::neg: return -x;
        case UnaryOp::exp: return exp_f<FAST>(x);
        case UnaryOp::log: return d_log(x);
        case UnaryOp::sqrt: return d_sqrt(x);
        case UnaryOp::rsqrt: return A(1) / d_sqrt(x);
        case UnaryOp::abs: return d_abs(x);
        case UnaryOp::tanh: return d_tanh(x);
        case UnaryOp::sigmoid: return sigm_f<FAST>(x);
        case UnaryOp::silu:
            // x / (1 + e^−x): one exponential and no branch; e^−x = inf gives −0, as x·σ(x)
            if constexpr (FAST && std::is_same_v<A, float>) return __fdividef(x, 1.0f + __expf(-x));
            else if constexpr (std::is_same_v<A, float>) return x / (1.0f + d_exp(-x));
            else return x * sigm(x);
        case UnaryOp::gelu: return A(0.5) * x * (A(1) + d_erf(x * A(0.70710678118654752440)));
        case UnaryOp::relu: return x > A(0) ? x : A(0);
        case UnaryOp::affine: return alpha * x + beta;
        case UnaryOp::pow_scalar: return d_pow(x, alpha);
    }
    return x;
}

template <typename A, bool FAST = false>
__device__ __forceinline__ A unary_df(UnaryOp op, A dy, A x, A y, A alpha) {
    switch (op) {
        case UnaryOp::neg: return -dy;
        case UnaryOp::exp: return dy * y;
        case UnaryOp::log: return dy / x;
        case UnaryOp::sqrt: return dy * A(0.5) / y;
        case UnaryOp::rsqrt: return dy * A(-0.5) * y * y * y;
        case UnaryOp::abs: return x > A(0) ? dy : (x < A(0) ? -dy : A(0));
        case UnaryOp::tanh: return dy * (A(1) - y * y);
        case UnaryOp::sigmoid: return dy * y * (A(1) - y);
        case UnaryOp::silu: {
            A s = sigm_f<FAST>(x);
            return dy * s * (A(1) + x * (A(1) - s));
        }
        case UnaryOp::gelu: {
            A cdf = A(0.5) * (A(1) + d_erf(x * A(0.70710678118654752440)));
            A pdf = d_exp(A(-0.5) * x * x) * A(0.39894228040143267794);
            return dy * (cdf + x * pdf);
        }
        case UnaryOp::relu: return x > A(0) ? dy : A(0);
        case UnaryOp::affine: return dy * alpha;
        case UnaryOp::pow_scalar: return dy * alpha * d_pow(x, alpha - A(1));
    }
    return dy;
}

template <typename A>
__device__ __forceinline__ A binary_f(BinaryOp op, A a, A b) {
    switch (op) {
        case BinaryOp::add: return a + b;
        case BinaryOp::sub: return a - b;
        case BinaryOp::mul: return a * b;
        case BinaryOp::div: return a / b;
        case BinaryOp::pow:
            if constexpr (std::is_floating_point_v<A>) return d_pow(a, b);
            else return A(::pow(double(a), double(b)));
    }
    return a;
}

// OP ≥ 0: the op fixed at compile time (the switch folds away), −1: the run-time op.
// Grid-stride over 16-byte vectors, two a thread in flight, then the < V tail elements.
template <typename T, int V, int OP>
__global__ void __launch_bounds__(256)
unary_kernel(UnaryOp op_rt, T* __restrict__ y, const T* __restrict__ x, int64_t n,
             typename acc_of<T>::type alpha, typename acc_of<T>::type beta) {
    constexpr bool FAST = std::is_same_v<T, bf16_t>;
    const UnaryOp op = OP >= 0 ? UnaryOp(OP) : op_rt;
    using P = Pack<T, V>;
    auto f = [&](const P& p) {
        P q;
#pragma unroll
        for (int k = 0; k < V; ++k) q.v[k] = st<T>(unary_f<typename acc_of<T>::type, FAST>(op, ld(p.v[k]), alpha, beta));
        return q;
    };
    const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    const int64_t nv = n / V;
    const P* xv = reinterpret_cast<const P*>(x);
    P* yv = reinterpret_cast<P*>(y);
    int64_t i = tid;
    for (; i + stride < nv; i += 2 * stride) {
        const P p0 = xv[i], p1 = xv[i + stride];
        yv[i] = f(p0);
        yv[i + stride] = f(p1);
    }
    if (i < nv) yv[i] = f(xv[i]);
    for (int64_t j = nv * V + tid; j < n; j += stride)
        y[j] = st<T>(unary_f<typename acc_of<T>::type, FAST>(op, ld(x[j]), alpha, beta));
}

template <typename T, int V, int OP>
__global__ void __launch_bounds__(256)
unary_backward_kernel(UnaryOp op_rt, T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ x,
                      const T* __restrict__ y, int64_t n, typename acc_of<T>::type alpha) {
    using A = typename acc_of<T>::type;
    constexpr bool FAST = std::is_same_v<T, bf16_t>;
    const UnaryOp op = OP >= 0 ? UnaryOp(OP) : op_rt;
    using P = Pack<T, V>;
    const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    const int64_t nv = n / V;
    auto one = [&](int64_t i) {
        P g = reinterpret_cast<const P*>(dy)[i], px{}, py{}, out;
        if (x) px = reinterpret_cast<const P*>(x)[i];
        if (y) py = reinterpret_cast<const P*>(y)[i];
#pragma unroll
        for (int k = 0; k < V; ++k)
            out.v[k] = st<T>(unary_df<A, FAST>(op, ld(g.v[k]), x ? ld(px.v[k]) : A(0), y ? ld(py.v[k]) : A(0), alpha));
        reinterpret_cast<P*>(dx)[i] = out;
    };
    for (int64_t i = tid; i < nv; i += stride) one(i);
    for (int64_t i = nv * V + tid; i < n; i += stride)
        dx[i] = st<T>(unary_df<A, FAST>(op, ld(dy[i]), x ? ld(x[i]) : A(0), y ? ld(y[i]) : A(0), alpha));
}

template <typename T, int V>
__global__ void binary_flat_kernel(BinaryOp op, T* __restrict__ out, const T* __restrict__ a,
                                   const T* __restrict__ b, int64_t n, bool a_scalar, bool b_scalar) {
    int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
    int64_t nv = n / V;
    auto A0 = ld(a[0]);
    auto B0 = ld(b[0]);
    for (int64_t i = tid; i < nv; i += stride) {
        Pack<T, V> pa{}, pb{}, q;
        if (!a_scalar) pa = reinterpret_cast<const Pack<T, V>*>(a)[i];
        if (!b_scalar) pb = reinterpret_cast<const Pack<T, V>*>(b)[i];
#pragma unroll
        for (int k = 0; k < V; ++k)
            q.v[k] = st<T>(binary_f(op, a_scalar ? A0 : ld(pa.v[k]), b_scalar ? B0 : ld(pb.v[k])));
        reinterpret_cast<Pack<T, V>*>(out)[i] = q;
    }
    for (int64_t i = nv * V + tid; i < n; i += stride)
        out[i] = st<T>(binary_f(op, a_scalar ? A0 : ld(a[i]), b_scalar ? B0 : ld(b[i])));
}

// out [R, D] contiguous; operand k's element (r, c) at p[r·s0 + c·s1] with s1 ∈ {0, 1}
// (vec = s1 == 1). Thread t owns column vector t % cp (cp = min(D/V, threads)) and rows
// t / cp, + step, ... (step = threads / cp): consecutive threads read consecutive vectors of
// a row (coalesced), an operand constant over rows (s0 = 0: the bias row) is loaded once
// per column vector, and the index arithmetic is one division per thread. V > 1 needs
// D % V == 0, a 16-byte-aligned out, and for each vec operand an aligned base and s0 % V == 0.
// one operand's V values of a row: a raw 16-byte pack (vec) or one scalar repeated; kept in
// storage type until used, so that a bf16 row pair costs 4 registers a pack, not 8
template <typename T, int V>
struct Operand {
    Pack<T, V> p;
    typename acc_of<T>::type s;
    __device__ __forceinline__ void load(const T* __restrict__ base, int64_t off, bool vec) {
        if (vec) {
            // 16-byte packs through a uint4: a bf16 Pack loaded as a struct stayed in local
            // memory (a 240-byte stack frame), the uint4 + memcpy form stays in registers
            if constexpr (sizeof(T) * V == 16) {
                const uint4 w = *reinterpret_cast<const uint4*>(base + off);
                memcpy(&p, &w, 16);
            } else {
                p = *reinterpret_cast<const Pack<T, V>*>(base + off);
            }
        } else {
            s = ld(base[off]);
        }
    }
    __device__ __forceinline__ typename acc_of<T>::type at(int k, bool vec) const { return vec ? ld(p.v[k]) : s; }
};

// U rows' loads in flight a thread: 2 for 4- and 8-byte types (f32 at 92-93% of copy), 3
// for bf16 (78% at 2: the same 16 bytes a load but twice the conversion work a byte; 4 no
// longer fits the 64-register cap without spilling). bf16 results are converted in pairs
// (one cvt.rn.bf16x2.f32, the same rounding as two single conversions).
// OP ≥ 0: the op fixed at compile time (the vector variants of add, sub, mul, div: no
// switch and no powf calls in the loop, which the 64-register cap made spill around), −1:
// the run-time op (V = 1, and pow at any alignment).
template <typename T, int V, int OP>
__global__ void __launch_bounds__(256, 4)
binary_rows_kernel(BinaryOp op_rt, T* __restrict__ out, const T* __restrict__ a, const T* __restrict__ b, int64_t R,
                   int64_t D, int64_t sa0, bool a_vec, int64_t sb0, bool b_vec) {
    constexpr int U = sizeof(T) == 2 ? 3 : 2;
    using A = typename acc_of<T>::type;
    const BinaryOp op = OP >= 0 ? BinaryOp(OP) : op_rt;
    const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, nth = int64_t(gridDim.x) * blockDim.x;
    const int64_t DV = D / V;
    const int64_t cp = DV < nth ? DV : nth;
    const int64_t step = nth / cp;
    if (tid >= cp * step) return;
    const int64_t cv0 = tid % cp, r0 = tid / cp;
    const bool a_const = sa0 == 0, b_const = sb0 == 0;  // the same for every row: load once
    for (int64_t cv = cv0; cv < DV; cv += cp) {
        const int64_t c = cv * V;
        const int64_t ca = a_vec ? c : 0, cb = b_vec ? c : 0;  // column offset inside a row
        Operand<T, V> ao[U], bo[U];
        if (a_const) ao[0].load(a, ca, a_vec);
        if (b_const) bo[0].load(b, cb, b_vec);
#pragma unroll
        for (int u = 1; u < U; ++u) {
            ao[u] = ao[0];
            bo[u] = bo[0];
        }
        auto put = [&](int64_t r, const Operand<T, V>& x, const Operand<T, V>& y) {
            A o[V];
#pragma unroll
            for (int k = 0; k < V; ++k) o[k] = binary_f(op, x.at(k, a_vec), y.at(k, b_vec));
            Pack<T, V> q;
            if constexpr (std::is_same_v<T, bf16_t> && V % 2 == 0) {
#pragma unroll
                for (int k = 0; k < V; k += 2)
                    reinterpret_cast<__nv_bfloat162*>(q.v)[k / 2] = __floats2bfloat162_rn(o[k], o[k + 1]);
            } else {
#pragma unroll
                for (int k = 0; k < V; ++k) q.v[k] = st<T>(o[k]);
            }
            if constexpr (sizeof(T) * V == 16) {
                uint4 w;
                memcpy(&w, &q, 16);
                *reinterpret_cast<uint4*>(out + r * D + c) = w;
            } else {
                *reinterpret_cast<Pack<T, V>*>(out + r * D + c) = q;
            }
        };
        int64_t r = r0;
        for (; r + (U - 1) * step < R; r += U * step) {  // U rows' loads in flight
#pragma unroll
            for (int u = 0; u < U; ++u) {
                if (!a_const) ao[u].load(a, (r + u * step) * sa0 + ca, a_vec);
                if (!b_const) bo[u].load(b, (r + u * step) * sb0 + cb, b_vec);
            }
#pragma unroll
            for (int u = 0; u < U; ++u) put(r + u * step, ao[u], bo[u]);
        }
        for (; r < R; r += step) {
            if (!a_const) ao[0].load(a, r * sa0 + ca, a_vec);
            if (!b_const) bo[0].load(b, r * sb0 + cb, b_vec);
            put(r, ao[0], bo[0]);
        }
    }
}

constexpr int kMaxDims = 8;
struct Geo3 {
    int nd;
    int64_t size[kMaxDims];
    int64_t sa[kMaxDims];
    int64_t sb[kMaxDims];
};

template <typename T>
__global__ void binary_strided_kernel(BinaryOp op, T* __restrict__ out, const T* __restrict__ a,
                                      const T* __restrict__ b, int64_t n, Geo3 g) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t oa, ob;
        strided_offsets(i, g.nd, g.size, g.sa, g.sb, oa, ob);
        out[i] = st<T>(binary_f(op, ld(a[oa]), ld(b[ob])));
    }
}

// f(integral_constant<int, OP>): the hot ops compiled one by one, the rest as the run-time op (−1)
template <typename F>
void with_unary_op(UnaryOp op, F&& f) {
    switch (op) {
        case UnaryOp::neg: f(std::integral_constant<int, int(UnaryOp::neg)>{}); return;
        case UnaryOp::exp: f(std::integral_constant<int, int(UnaryOp::exp)>{}); return;
        case UnaryOp::tanh: f(std::integral_constant<int, int(UnaryOp::tanh)>{}); return;
        case UnaryOp::sigmoid: f(std::integral_constant<int, int(UnaryOp::sigmoid)>{}); return;
        case UnaryOp::silu: f(std::integral_constant<int, int(UnaryOp::silu)>{}); return;
        case UnaryOp::gelu: f(std::integral_constant<int, int(UnaryOp::gelu)>{}); return;
        case UnaryOp::relu: f(std::integral_constant<int, int(UnaryOp::relu)>{}); return;
        case UnaryOp::affine: f(std::integral_constant<int, int(UnaryOp::affine)>{}); return;
        default: f(std::integral_constant<int, -1>{}); return;
    }
}
}  // namespace

void unary_forward(UnaryOp op, DType dt, void* y, const void* x, int64_t n, double alpha, double beta) {
    if (n == 0) return;
    dispatch_float(dt, unary_name(op), [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        constexpr int V = 16 / sizeof(T);
        auto* yp = static_cast<T*>(y);
        auto* xp = static_cast<const T*>(x);
        if (aligned16(x) && aligned16(y)) {
            with_unary_op(op, [&](auto opc) {
                unary_kernel<T, V, decltype(opc)::value><<<grid_for(n / V + 1), 256, 0, stream()>>>(op, yp, xp, n, A(alpha),
                                                                                                   A(beta));
            });
        } else {
            unary_kernel<T, 1, -1><<<grid_for(n), 256, 0, stream()>>>(op, yp, xp, n, A(alpha), A(beta));
        }
        RN_CUDA_CHECK_LAUNCH();
    });
}

void unary_backward(UnaryOp op, DType dt, void* dx, const void* dy, const void* x, const void* y, int64_t n,
                    double alpha, double) {
    if (n == 0) return;
    dispatch_float(dt, unary_name(op), [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_of<T>::type;
        constexpr int V = 16 / sizeof(T);
        bool al = aligned16(dx) && aligned16(dy) && (!x || aligned16(x)) && (!y || aligned16(y));
        auto* dxp = static_cast<T*>(dx);
        auto* dyp = static_cast<const T*>(dy);
        auto* xp = static_cast<const T*>(x);
        auto* yp = static_cast<const T*>(y);
        if (al) {
            with_unary_op(op, [&](auto opc) {
                unary_backward_kernel<T, V, decltype(opc)::value><<<grid_for(n / V + 1), 256, 0, stream()>>>(
                    op, dxp, dyp, xp, yp, n, A(alpha));
            });
        } else {
            unary_backward_kernel<T, 1, -1><<<grid_for(n), 256, 0, stream()>>>(op, dxp, dyp, xp, yp, n, A(alpha));
        }
        RN_CUDA_CHECK_LAUNCH();
    });
}

void binary_forward(BinaryOp op, DType dt, void* out, const void* a, const void* b, const Shape& out_shape,
                    const Shape& a_strides, const Shape& b_strides) {
    int64_t n = numel_of(out_shape);
    if (n == 0) return;
    StridedLayout<3> L = coalesce<3>(out_shape, {contiguous_strides(out_shape), a_strides, b_strides});
    dispatch_any(dt, [&](auto tag) {
        using T = decltype(tag);
        constexpr int V = 16 / sizeof(T);
        auto* o = static_cast<T*>(out);
        auto* ap = static_cast<const T*>(a);
        auto* bp = static_cast<const T*>(b);
        bool flat = L.sizes.size() == 1;
        bool a_ok = flat && (L.strides[1][0] == 1 || L.strides[1][0] == 0);
        bool b_ok = flat && (L.strides[2][0] == 1 || L.strides[2][0] == 0);
        if (a_ok && b_ok) {
            bool as = L.strides[1][0] == 0, bs = L.strides[2][0] == 0;
            if (aligned16(o) && (as || aligned16(ap)) && (bs || aligned16(bp)))
                binary_flat_kernel<T, V><<<grid_for(n / V + 1), 256, 0, stream()>>>(op, o, ap, bp, n, as, bs);
            else
                binary_flat_kernel<T, 1><<<grid_for(n), 256, 0, stream()>>>(op, o, ap, bp, n, as, bs);
        } else if (L.sizes.size() == 2 && L.strides[0][1] == 1 && L.strides[0][0] == L.sizes[1] &&
                   (L.strides[1][1] == 0 || L.strides[1][1] == 1) && (L.strides[2][1] == 0 || L.strides[2][1] == 1)) {
            // [R, D] with each operand unit-stride or constant along D: the rows kernel
            const int64_t R = L.sizes[0], D = L.sizes[1];
            const int64_t sa0 = L.strides[1][0], sb0 = L.strides[2][0];
            const bool av = L.strides[1][1] == 1, bv = L.strides[2][1] == 1;
            const bool vec = V > 1 && D % V == 0 && aligned16(o) && (!av || (aligned16(ap) && sa0 % V == 0)) &&
                             (!bv || (aligned16(bp) && sb0 % V == 0));
            auto vec_op = [&](auto opc) {
                binary_rows_kernel<T, V, decltype(opc)::value>
                    <<<grid_for(R * (D / V)), 256, 0, stream()>>>(op, o, ap, bp, R, D, sa0, av, sb0, bv);
            };
            if (vec && op == BinaryOp::add) vec_op(std::integral_constant<int, int(BinaryOp::add)>{});
            else if (vec && op == BinaryOp::sub) vec_op(std::integral_constant<int, int(BinaryOp::sub)>{});
            else if (vec && op == BinaryOp::mul) vec_op(std::integral_constant<int, int(BinaryOp::mul)>{});
            else if (vec && op == BinaryOp::div) vec_op(std::integral_constant<int, int(BinaryOp::div)>{});
            else
                binary_rows_kernel<T, 1, -1><<<grid_for(R * D), 256, 0, stream()>>>(op, o, ap, bp, R, D, sa0, av, sb0, bv);
        } else {
            RN_CHECK(L.sizes.size() <= size_t(kMaxDims), binary_name(op), ": at most ", kMaxDims,
                     " non-mergeable dims on CUDA, got ", L.sizes.size());
            Geo3 g{};
            g.nd = int(L.sizes.size());
            for (int d = 0; d < g.nd; ++d) {
                g.size[d] = L.sizes[size_t(d)];
                g.sa[d] = L.strides[1][size_t(d)];
                g.sb[d] = L.strides[2][size_t(d)];
            }
            binary_strided_kernel<T><<<grid_for(n), 256, 0, stream()>>>(op, o, ap, bp, n, g);
        }
        RN_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace rn::cuda
