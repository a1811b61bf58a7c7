// cuda/stub_swiglu.cpp — silu_mul's CUDA entries when built without CUDA (never reached:
// such a build cannot make CUDA tensors).
#include "core/error.h"
#include "cuda/swiglu.h"

namespace rn::cuda {
void silu_mul_forward(DType, void*, const void*, const void*, int64_t) {
    RN_FAIL("silu_mul on CUDA: retnet.cpp was built without CUDA");
}
void silu_mul_backward(DType, void*, void*, const void*, const void*, const void*, int64_t) {
    RN_FAIL("silu_mul on CUDA: retnet.cpp was built without CUDA");
}
}  // namespace rn::cuda
