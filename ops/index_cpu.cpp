// ops/index_cpu.cpp — CPU kernels for index_select (and so embedding) and gather (OpenMP).
// Forwards are plain copies, any dtype. Backwards scatter-add without atomics:
//  - index_select groups the K indices by value (a counting sort into CSR buckets), then
//    one thread owns each destination row dx[o, n, :] and sums its bucket in index order;
//  - gather's destinations of distinct fibers (all coordinates but `dim`) are disjoint,
//    so one thread owns a fiber and walks it in order.
// Either way no two threads write one element, and the summation order does not depend on
// the thread count: results are bit-identical run to run.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ops/cpu_kernel.h"
#include "ops/index.h"

namespace rn::cpu {

namespace {
// Walks the fibers of idx_shape along `dim`: for fiber f, the element offsets of its start
// in a contiguous idx (and out) and in a contiguous x. Fibers are numbered row-major over
// the dims other than `dim`.
struct FiberMap {
    std::vector<int64_t> sizes, idx_strides, x_strides;  // over the dims other than dim
    int64_t count = 1;
    FiberMap(const Shape& x_shape, const Shape& idx_shape, int64_t dim) {
        Shape xs = contiguous_strides(x_shape), is = contiguous_strides(idx_shape);
        for (size_t d = 0; d < idx_shape.size(); ++d) {
            if (int64_t(d) == dim) continue;
            sizes.push_back(idx_shape[d]);
            idx_strides.push_back(is[d]);
            x_strides.push_back(xs[d]);
            count *= idx_shape[d];
        }
    }
    void offsets(int64_t f, int64_t& idx_off, int64_t& x_off) const {
        idx_off = 0;
        x_off = 0;
        for (int64_t d = int64_t(sizes.size()) - 1; d >= 0; --d) {
            int64_t c = f % sizes[size_t(d)];
            f /= sizes[size_t(d)];
            idx_off += c * idx_strides[size_t(d)];
            x_off += c * x_strides[size_t(d)];
        }
    }
};
}  // namespace

void index_select_forward(DType dt, void* out, const void* x, const int64_t* idx, int64_t O, int64_t N,
                          int64_t K, int64_t I) {
    const size_t es = dtype_size(dt);
    const size_t row_bytes = size_t(I) * es;
    auto* op = static_cast<char*>(out);
    const auto* xp = static_cast<const char*>(x);
#pragma omp parallel for schedule(static) if (O * K * I > kParallelMin && O * K > 1)
    for (int64_t r = 0; r < O * K; ++r) {
        int64_t o = r / K, k = r % K;
        std::memcpy(op + size_t(r) * row_bytes, xp + size_t(o * N + idx[k]) * row_bytes, row_bytes);
    }
}

void index_select_backward(DType dt, void* dx, const void* dout, const int64_t* idx, int64_t O, int64_t N,
                           int64_t K, int64_t I) {
    // CSR buckets: positions k with idx[k] == n are order[start[n] .. start[n+1]), ascending
    std::vector<int64_t> start(static_cast<size_t>(N) + 1, 0), order(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) ++start[size_t(idx[k]) + 1];
    for (int64_t n = 0; n < N; ++n) start[size_t(n) + 1] += start[size_t(n)];
    {
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        for (int64_t k = 0; k < K; ++k) order[size_t(fill[size_t(idx[k])]++)] = k;
    }
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        if constexpr (std::is_floating_point_v<A>) {
            T* dxp = static_cast<T*>(dx);
            const T* gp = static_cast<const T*>(dout);
            const bool parallel = O * N > 1 && (O * N + O * K) * I > kParallelMin;
#pragma omp parallel if (parallel)
            {
                std::vector<A> acc(static_cast<size_t>(I));  // one row, accumulated in acc_type (float for bf16)
#pragma omp for schedule(dynamic, 16)
                for (int64_t r = 0; r < O * N; ++r) {
                    int64_t o = r / N, n = r % N;
                    T* dst = dxp + r * I;
                    int64_t b = start[size_t(n)], e = start[size_t(n) + 1];
                    if (b == e) {
                        std::memset(static_cast<void*>(dst), 0, size_t(I) * sizeof(T));
                        continue;
                    }
                    std::fill(acc.begin(), acc.end(), A(0));
                    for (int64_t q = b; q < e; ++q) {
                        const T* src = gp + (o * K + order[size_t(q)]) * I;
                        for (int64_t i = 0; i < I; ++i) acc[size_t(i)] += ld(src[i]);
                    }
                    for (int64_t i = 0; i < I; ++i) dst[i] = st<T>(acc[size_t(i)]);
                }
            }
        } else {
            RN_FAIL("index_select backward: expected a floating dtype, got ", dt);
        }
    });
}

void gather_forward(DType dt, void* out, const void* x, const int64_t* idx, const Shape& x_shape,
                    const Shape& idx_shape, int64_t dim) {
    FiberMap fm(x_shape, idx_shape, dim);
    const int64_t K = idx_shape[size_t(dim)];
    const int64_t is = contiguous_strides(idx_shape)[size_t(dim)];
    const int64_t xs = contiguous_strides(x_shape)[size_t(dim)];
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        T* op = static_cast<T*>(out);
        const T* xp = static_cast<const T*>(x);
#pragma omp parallel for schedule(static) if (fm.count * K > kParallelMin && fm.count > 1)
        for (int64_t f = 0; f < fm.count; ++f) {
            int64_t io, xo;
            fm.offsets(f, io, xo);
            for (int64_t j = 0; j < K; ++j) op[io + j * is] = xp[xo + idx[io + j * is] * xs];
        }
    });
}

void gather_backward(DType dt, void* dx, const void* dout, const int64_t* idx, const Shape& x_shape,
                     const Shape& idx_shape, int64_t dim) {
    FiberMap fm(x_shape, idx_shape, dim);
    const int64_t K = idx_shape[size_t(dim)];
    const int64_t is = contiguous_strides(idx_shape)[size_t(dim)];
    const int64_t xs = contiguous_strides(x_shape)[size_t(dim)];
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        if constexpr (std::is_floating_point_v<A>) {
            T* dxp = static_cast<T*>(dx);
            const T* gp = static_cast<const T*>(dout);
            std::memset(dx, 0, size_t(numel_of(x_shape)) * sizeof(T));
            // bf16 rounds after each add here; a repeated index within one fiber is rare
            // (a vocabulary-sized buffer per fiber would cost more than it saves)
#pragma omp parallel for schedule(static) if (fm.count * K > kParallelMin && fm.count > 1)
            for (int64_t f = 0; f < fm.count; ++f) {
                int64_t io, xo;
                fm.offsets(f, io, xo);
                for (int64_t j = 0; j < K; ++j) {
                    T& d = dxp[xo + idx[io + j * is] * xs];
                    d = st<T>(ld(d) + ld(gp[io + j * is]));
                }
            }
        } else {
            RN_FAIL("gather backward: expected a floating dtype, got ", dt);
        }
    });
}

}  // namespace rn::cpu
