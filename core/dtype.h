// core/dtype.h — run-time element types and the bf16 storage type.
// f64 exists for gradcheck, bf16 for GPU compute (stored as the top 16 bits of an f32,
// converted with round-to-nearest-even), i32/i64 for indices and token ids.
#pragma once
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>

namespace rn {

enum class DType : uint8_t { f32, f64, bf16, i32, i64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // throws on unknown names
inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// bfloat16: 1 sign, 8 exponent, 7 mantissa bits. Plain struct so it is trivially copyable
// into any buffer; arithmetic happens in float.
struct bf16 {
    uint16_t bits = 0;
    bf16() = default;
    explicit bf16(float f) : bits(from_float(f)) {}
    explicit operator float() const { return to_float(bits); }

    static uint16_t from_float(float f) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
        return uint16_t(u >> 16);
    }
    static float to_float(uint16_t b) {
        uint32_t u = uint32_t(b) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
};

// C++ type → DType, for templated kernels and from_vector.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };

// Conversions used by kernels: every type goes through double/float for arithmetic.
template <typename T> inline double to_double(T v) { return double(v); }
template <> inline double to_double<bf16>(bf16 v) { return double(float(v)); }
template <typename T> inline T from_double(double v) { return T(v); }
template <> inline bf16 from_double<bf16>(double v) { return bf16(float(v)); }

// The type arithmetic on T is done in: bf16 computes in float.
template <typename T> struct acc_type { using type = T; };
template <> struct acc_type<bf16> { using type = float; };

// dispatch(dtype, f): calls f(T{}) with T the C++ type of dtype. Kept as a function
// template (not a macro table) so the call site reads as ordinary code.
template <typename F>
decltype(auto) dispatch_all(DType t, F&& f) {
    switch (t) {
        case DType::f32: return f(float{});
        case DType::f64: return f(double{});
        case DType::bf16: return f(bf16{});
        case DType::i32: return f(int32_t{});
        case DType::i64: return f(int64_t{});
    }
    return f(float{});
}

}  // namespace rn
