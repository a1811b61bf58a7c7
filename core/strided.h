// core/strided.h — walking an N-d index space over several strided operands (CPU).
// Used by copy and by broadcasting elementwise kernels: the only CPU kernels that
// understand strides. Adjacent dims that are contiguous in every operand are merged
// first, so a contiguous tensor is walked as one flat row.
#pragma once
#include <array>
#include <cstdint>

#include "core/shape.h"

namespace rn {

template <size_t K>
struct StridedLayout {
    Shape sizes;
    std::array<Shape, K> strides;
};

// Drops size-1 dims and merges dim i into i+1 where every operand allows it.
template <size_t K>
StridedLayout<K> coalesce(const Shape& sizes, const std::array<Shape, K>& strides) {
    StridedLayout<K> out;
    for (size_t d = 0; d < sizes.size(); ++d) {
        if (sizes[d] == 1) continue;
        if (!out.sizes.empty()) {
            bool mergeable = true;
            for (size_t k = 0; k < K; ++k)
                if (out.strides[k].back() != strides[k][d] * sizes[d]) mergeable = false;
            if (mergeable) {
                out.sizes.back() *= sizes[d];
                for (size_t k = 0; k < K; ++k) out.strides[k].back() = strides[k][d];
                continue;
            }
        }
        out.sizes.push_back(sizes[d]);
        for (size_t k = 0; k < K; ++k) out.strides[k].push_back(strides[k][d]);
    }
    if (out.sizes.empty()) {  // a scalar, or all dims of size 1
        out.sizes.push_back(1);
        for (size_t k = 0; k < K; ++k) out.strides[k].push_back(0);
    }
    return out;
}

// Calls row(offsets, n, inner_strides) for every innermost row, rows spread over OpenMP
// threads. offsets[k] is operand k's element offset of the row start.
template <size_t K, typename RowFn>
void strided_rows(const Shape& sizes, const std::array<Shape, K>& strides, RowFn&& row) {
    StridedLayout<K> L = coalesce<K>(sizes, strides);
    const int64_t nd = int64_t(L.sizes.size());
    const int64_t inner = L.sizes[nd - 1];
    std::array<int64_t, K> inner_st;
    for (size_t k = 0; k < K; ++k) inner_st[k] = L.strides[k][nd - 1];
    int64_t rows = 1;
    for (int64_t d = 0; d < nd - 1; ++d) rows *= L.sizes[d];
    const bool parallel = rows > 1 && rows * inner > 32768;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
        std::array<int64_t, K> off{};
        int64_t rem = r;
        for (int64_t d = nd - 2; d >= 0; --d) {
            int64_t i = rem % L.sizes[d];
            rem /= L.sizes[d];
            for (size_t k = 0; k < K; ++k) off[k] += i * L.strides[k][d];
        }
        row(off, inner, inner_st);
    }
}

}  // namespace rn
