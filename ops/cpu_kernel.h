// ops/cpu_kernel.h — what every CPU kernel file (ops/*_cpu.cpp) shares: the stored-type ⇄
// arithmetic-type conversions, the floating dtype switch, and the one OpenMP threshold.
// cuda/math.cuh and cuda/vec.cuh are the CUDA side's counterparts (same names ld/st there).
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"

namespace rn::cpu {

// A stored value in its arithmetic type and back: acc_type<T> is float for f32 and bf16,
// double for f64, the type itself for integers (bf16's explicit conversions to and from
// float make the one template right for it). Kernels that accumulate in double whatever the
// dtype (the norms) use to_double/from_double from core/dtype.h instead.
template <typename T> inline typename acc_type<T>::type ld(T v) { return typename acc_type<T>::type(v); }
template <typename T> inline T st(typename acc_type<T>::type v) { return T(v); }

// Calls f(T{}) with T the storage type of a floating dtype (float, double, bf16); for an
// integer dtype throws "<what>: expected a floating dtype (f32, f64, bf16), got <dt>".
// `what` is anything RN_FAIL can print (the op's name, or a name built at the call).
template <typename W, typename F>
void dispatch_floating(DType dt, const W& what, F&& f) {
    switch (dt) {
        case DType::f32: f(float{}); return;
        case DType::f64: f(double{}); return;
        case DType::bf16: f(bf16{}); return;
        default: RN_FAIL(what, ": expected a floating dtype (f32, f64, bf16), got ", dt);
    }
}

// OpenMP threshold: a loop goes to the thread team only when it has more than kParallelMin
// units of work, one unit being about one cheap element operation (~1 ns). Below that,
// forking and joining the team (a few µs) costs more than the threads save. Loops whose
// element costs more say so by counting it more than once (see worth_row_threads).
constexpr int64_t kParallelMin = 32768;

// Row kernels (softmax, cross-entropy, the norms): one row a thread, and each element is
// visited in two or three passes (max or mean, then the exp-sum or variance, then the
// write), so an element counts twice; a single row never splits.
inline bool worth_row_threads(int64_t rows, int64_t cols) { return rows > 1 && 2 * rows * cols > kParallelMin; }

}  // namespace rn::cpu
