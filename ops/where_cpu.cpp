// ops/where_cpu.cpp — the CPU kernel behind where and masked_fill (declared in ops/where.h;
// cuda/where.cu mirrors it): a broadcasting three-operand choice, walked by strided_rows so
// broadcast and non-contiguous operands need no copies.
#include <array>

#include "core/strided.h"
#include "ops/where.h"

namespace rn::cpu {

void where_forward(DType cond_dt, DType dt, void* out, const void* cond, const void* a, const void* b,
                   const Shape& out_shape, const Shape& cond_strides, const Shape& a_strides, const Shape& b_strides) {
    Shape o_strides = contiguous_strides(out_shape);
    dispatch_all(cond_dt, [&](auto ctag) {
        using C = decltype(ctag);
        dispatch_all(dt, [&](auto tag) {
            using T = decltype(tag);
            T* op = static_cast<T*>(out);
            const C* cp = static_cast<const C*>(cond);
            const T* ap = static_cast<const T*>(a);
            const T* bp = static_cast<const T*>(b);
            strided_rows<4>(out_shape, {o_strides, cond_strides, a_strides, b_strides},
                            [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& s) {
                                T* o = op + off[0];
                                const C* c = cp + off[1];
                                const T* x = ap + off[2];
                                const T* y = bp + off[3];
                                // nonzero is true; NaN != 0 so a NaN condition is true too
                                for (int64_t i = 0; i < n; ++i)
                                    o[i * s[0]] = to_double(c[i * s[1]]) != 0.0 ? x[i * s[2]] : y[i * s[3]];
                            });
        });
    });
}

}  // namespace rn::cpu
