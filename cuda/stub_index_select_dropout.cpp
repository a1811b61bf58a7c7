// cuda/stub_index_select_dropout.cpp — compiled instead of cuda/index.cu, cuda/select.cu
// and cuda/dropout.cu when CUDA is off (CMake globs cuda/stub*.cpp for CPU-only builds):
// every entry throws "built without CUDA". Ops call these only for CUDA tensors, which such
// a build cannot make, so the throw marks a bug rather than a user error.
#include "core/error.h"
#include "cuda/dropout.h"
#include "cuda/index.h"
#include "cuda/select.h"

namespace rn::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
    RN_FAIL(what, ": retnet.cpp was built without CUDA. HINT: install the CUDA toolkit and "
                  "reconfigure with -DRN_CUDA=ON");
}
}  // namespace

void index_select_forward(DType, void*, const void*, const int64_t*, int64_t, int64_t, int64_t, int64_t) {
    no_cuda("index_select");
}
void index_select_backward(DType, void*, const void*, const int64_t*, int64_t, int64_t, int64_t, int64_t) {
    no_cuda("index_select backward");
}
void gather_forward(DType, void*, const void*, const int64_t*, const Shape&, const Shape&, int64_t) {
    no_cuda("gather");
}
void gather_backward(DType, void*, const void*, const int64_t*, const Shape&, const Shape&, int64_t) {
    no_cuda("gather backward");
}
int64_t find_out_of_range(const int64_t*, int64_t, int64_t, int64_t*) { no_cuda("index check"); }

void where_forward(DType, DType, void*, const void*, const void*, const void*, const Shape&, const Shape&,
                   const Shape&, const Shape&) {
    no_cuda("where");
}

void dropout_forward(DType, void*, void*, const void*, int64_t, double, double, uint64_t, uint64_t) {
    no_cuda("dropout");
}
void dropout_backward(DType, void*, const void*, const void*, int64_t, double) { no_cuda("dropout backward"); }

}  // namespace rn::cuda
