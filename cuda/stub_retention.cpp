// cuda/stub_retention.cpp — the retention CUDA entries when built without CUDA.
#include "core/error.h"
#include "cuda/retention.h"

namespace rn::cuda {

void retention_forward(RetentionMode, DType, const cpu::RetentionShape&, const std::vector<double>&, const void*,
                       const void*, const void*, const void*, void*, void*) {
    RN_FAIL("retention on CUDA: retnet.cpp was built without CUDA");
}
void retention_backward(RetentionMode, DType, const cpu::RetentionShape&, const std::vector<double>&, void*, void*,
                        void*, void*, const void*, const void*, const void*, const void*, const void*, const void*) {
    RN_FAIL("retention backward on CUDA: retnet.cpp was built without CUDA");
}
void retention_step(DType, int64_t, int64_t, int64_t, int64_t, const std::vector<double>&, const int64_t*, const void*,
                    const void*, const void*, void*, void*) {
    RN_FAIL("retention_step on CUDA: retnet.cpp was built without CUDA");
}

}  // namespace rn::cuda
