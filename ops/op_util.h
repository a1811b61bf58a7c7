// ops/op_util.h — checks shared by the op wrappers: matching dtypes and devices, a
// floating dtype, CPU-only paths. Each throws naming the op and what came.
#pragma once
#include "core/tensor.h"
#include "core/tensor_math.h"

namespace rn {

inline void check_defined(const Tensor& t, const char* op, const char* what = "input") {
    RN_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
}

inline void check_same_dtype_device(const Tensor& a, const Tensor& b, const char* op) {
    check_defined(a, op);
    check_defined(b, op);
    RN_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ: ", a.dtype(), " vs ", b.dtype(),
             ". HINT: cast one side with .to(dtype)");
    RN_CHECK(a.device() == b.device(), op, ": tensors on different devices: ", a.device(), " vs ",
             b.device());
}

inline void check_floating(const Tensor& t, const char* op) {
    RN_CHECK(is_floating(t.dtype()), op, ": expected a floating tensor (f32, f64, bf16), got ", t.dtype());
}

inline void check_index_dtype(const Tensor& t, const char* op) {
    RN_CHECK(t.dtype() == DType::i32 || t.dtype() == DType::i64, op,
             ": expected integer indices (i32 or i64), got ", t.dtype());
}

// Until a CUDA kernel exists for an op, its CUDA call says so plainly.
inline void check_cpu(const Tensor& t, const char* op) {
    RN_CHECK(t.is_cpu(), op, ": no CUDA kernel for this op in this build; got a tensor on ", t.device(),
             ". HINT: move it to the CPU with .to(Device::cpu())");
}

}  // namespace rn
