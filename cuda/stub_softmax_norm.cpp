// cuda/stub_softmax_norm.cpp — compiled instead of cuda/softmax.cu and cuda/norm.cu when CUDA
// is off (-DRN_CUDA=OFF or no nvcc): every entry throws "built without CUDA", as in
// cuda/stub.cpp, so the op wrappers need no #ifdef.
#include "core/error.h"
#include "cuda/norm.h"
#include "cuda/softmax.h"

namespace rn::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
    RN_FAIL(what, ": retnet.cpp was built without CUDA. HINT: install the CUDA toolkit and "
                  "reconfigure with -DRN_CUDA=ON");
}
}  // namespace

void softmax_forward(DType, void*, const void*, int64_t, int64_t, bool) { no_cuda("softmax"); }
void softmax_backward(DType, void*, const void*, const void*, int64_t, int64_t, bool) { no_cuda("softmax backward"); }
void cross_entropy_forward(DType, void*, double*, int64_t*, const void*, const int64_t*, int64_t, int64_t, int64_t) {
    no_cuda("cross_entropy");
}
void cross_entropy_backward(DType, void*, const void*, const void*, const double*, const int64_t*, const int64_t*,
                            int64_t, int64_t, int64_t) {
    no_cuda("cross_entropy backward");
}

void layer_norm_forward(DType, void*, void*, void*, const void*, const void*, const void*, int64_t, int64_t, double) {
    no_cuda("layer_norm");
}
void layer_norm_backward(DType, void*, void*, void*, const void*, const void*, const void*, const void*, const void*,
                         int64_t, int64_t) {
    no_cuda("layer_norm backward");
}
void rms_norm_forward(DType, void*, void*, const void*, const void*, int64_t, int64_t, double) { no_cuda("rms_norm"); }
void gated_rms_norm_forward(DType, void*, const void*, const void*, int64_t, int64_t, double) {
    no_cuda("gated_rms_norm");
}
void add_rms_norm_forward(DType, void*, void*, const void*, const void*, const void*, int64_t, int64_t, double) {
    no_cuda("add_rms_norm");
}
void rms_norm_backward(DType, void*, void*, const void*, const void*, const void*, const void*, int64_t, int64_t) {
    no_cuda("rms_norm backward");
}

}  // namespace rn::cuda
