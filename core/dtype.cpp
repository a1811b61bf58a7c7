// core/dtype.cpp — names and sizes of the run-time element types.
#include "core/dtype.h"

#include "core/error.h"

namespace rn {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32: return 4;
        case DType::f64: return 8;
        case DType::bf16: return 2;
        case DType::i32: return 4;
        case DType::i64: return 8;
    }
    RN_FAIL("dtype_size: unknown dtype ", int(t));
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "f32";
        case DType::f64: return "f64";
        case DType::bf16: return "bf16";
        case DType::i32: return "i32";
        case DType::i64: return "i64";
    }
    return "?";
}

DType dtype_from_name(const std::string& n) {
    if (n == "f32" || n == "float32" || n == "fp32") return DType::f32;
    if (n == "f64" || n == "float64" || n == "fp64") return DType::f64;
    if (n == "bf16" || n == "bfloat16") return DType::bf16;
    if (n == "i32" || n == "int32") return DType::i32;
    if (n == "i64" || n == "int64") return DType::i64;
    RN_FAIL("unknown dtype '", n, "': expected one of f32, f64, bf16, i32, i64");
}

}  // namespace rn
