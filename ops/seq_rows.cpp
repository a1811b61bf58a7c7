// ops/seq_rows.cpp — the strided-rows helpers of ops/seq_rows.h.
#include "ops/seq_rows.h"

#include <cstdint>

#include "core/tensor_math.h"

namespace rn {

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0; }

bool rows_readable(const Tensor& t) {
    const int64_t align = 16 / int64_t(dtype_size(t.dtype()));
    if (t.dim() != 4) return false;
    if (t.stride(3) != 1 && t.size(3) > 1) return false;
    for (int d = 0; d < 3; ++d)
        if (t.size(d) > 1 && t.stride(d) % align) return false;
    return aligned16(t);
}

SeqRows rows_of(const Tensor& t) {
    if (!t.defined()) return {};
    auto st = [&](int d) { return t.size(d) > 1 ? t.stride(d) : int64_t(0); };
    return {st(0), st(1), st(2), true};
}

Tensor fresh_copy(const Tensor& t) {
    Tensor c = empty(t.shape(), t.dtype(), t.device());
    copy_nograd(c, t);
    return c;
}

Tensor readable_or_copy(const Tensor& t) { return rows_readable(t) ? t : fresh_copy(t); }

Tensor empty_bthd(int64_t B, int64_t H, int64_t T, int64_t D, DType dt, Device dev) {
    return empty({B, T, H, D}, dt, dev).permute({0, 2, 1, 3});
}

Tensor empty_laid_out_as(const Tensor& t) {
    if (t.is_contiguous()) return empty(t.shape(), t.dtype(), t.device());
    return empty_bthd(t.size(0), t.size(1), t.size(2), t.size(3), t.dtype(), t.device());
}

}  // namespace rn
