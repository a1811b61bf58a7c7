// cuda/stub_rotary.cpp — the rotation's CUDA entry when built without CUDA.
#include "core/error.h"
#include "cuda/rotary.h"

namespace rn::cuda {
void xpos_rotate(DType, void*, const void*, const int64_t*, int64_t, int64_t, int64_t, int64_t, int, double, int64_t,
                 double) {
    RN_FAIL("xpos_rotate on CUDA: retnet.cpp was built without CUDA");
}
}  // namespace rn::cuda
