// tests/cuda_emu/rows_layout.h — sequence tensors laid out the way the tensor-core kernels
// may read them (cuda::Rows, cuda/seq_rows.cuh), for the emulated kernel tests: a contiguous
// [B,H,T,D] tensor's values placed at the rows a layout names (NaN between them, so that a
// read past a row shows), and gathered back. Include after emu.h.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda/seq_rows.cuh"

namespace rn_emu {

// elements a layout of BH = B·H chains of T rows of D covers
inline int64_t span(int64_t BH, int64_t H, int64_t T, int64_t D, const rn::cuda::Rows& r) {
    return r.at(BH - 1, int(H), T - 1) + D;
}

template <typename E>
std::vector<E> place(const std::vector<E>& x, int64_t BH, int64_t H, int64_t T, int64_t D, const rn::cuda::Rows& r,
                     E fill) {
    std::vector<E> out(size_t(span(BH, H, T, D, r)), fill);
    for (int64_t bh = 0; bh < BH; ++bh)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t e = 0; e < D; ++e) out[size_t(r.at(bh, int(H), t) + e)] = x[size_t((bh * T + t) * D + e)];
    return out;
}

template <typename E>
std::vector<E> gather(const std::vector<E>& y, int64_t BH, int64_t H, int64_t T, int64_t D, const rn::cuda::Rows& r) {
    std::vector<E> out(size_t(BH * T * D));
    for (int64_t bh = 0; bh < BH; ++bh)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t e = 0; e < D; ++e) out[size_t((bh * T + t) * D + e)] = y[size_t(r.at(bh, int(H), t) + e)];
    return out;
}

}  // namespace rn_emu
