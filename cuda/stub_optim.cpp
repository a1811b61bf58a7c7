// cuda/stub_optim.cpp — the fused AdamW's CUDA entry when built without CUDA.
#include "core/error.h"
#include "cuda/optim.h"

namespace rn::cuda {
void adamw_step(float*, const float*, float*, float*, int64_t, float, float, float, float, float, float, float, float) {
    RN_FAIL("adamw on CUDA: retnet.cpp was built without CUDA");
}
void sum_squares_accumulate(const float*, int64_t, double*) {
    RN_FAIL("gradient norm on CUDA: retnet.cpp was built without CUDA");
}
}  // namespace rn::cuda
