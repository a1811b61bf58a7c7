// cuda/stub.cpp — compiled instead of the .cu files when CUDA is off (-DRN_CUDA=OFF or no
// nvcc). device_count() is 0; everything that would touch a GPU throws, saying so.
#include "core/error.h"
#include "cuda/device.h"
#include "cuda/elementwise.h"
#include "cuda/memory.h"
#include "cuda/tensor_math.h"

namespace rn::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
    RN_FAIL(what, ": retnet.cpp was built without CUDA. HINT: install the CUDA toolkit and "
                  "reconfigure with -DRN_CUDA=ON");
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
bool is_available() { return false; }
std::string device_name(int) { no_cuda("device_name"); }
void set_device(int) { no_cuda("set_device"); }
void synchronize(int) {}
void* device_malloc(size_t, int) { no_cuda("device memory"); }
void device_free(void*, int) {}
void memcpy_between(void*, Device, const void*, Device, size_t) { no_cuda("device copy"); }
MemoryStats memory_stats(int) { return {}; }
void reset_peak_stats(int) {}
void empty_cache(int) {}
bool caching_enabled() { return false; }
void unary_forward(UnaryOp, DType, void*, const void*, int64_t, double, double) { no_cuda("unary op"); }
void unary_backward(UnaryOp, DType, void*, const void*, const void*, const void*, int64_t, double, double) {
    no_cuda("unary op");
}
void binary_forward(BinaryOp, DType, void*, const void*, const void*, const Shape&, const Shape&, const Shape&) {
    no_cuda("binary op");
}
void reduce_rows(ReduceOp, DType, void*, int64_t*, const void*, int64_t, int64_t) { no_cuda("reduction"); }
void reduce_cols(DType, void*, const void*, int64_t, int64_t, int64_t) { no_cuda("reduction"); }
void scatter_rows(DType, void*, const int64_t*, const void*, int64_t, int64_t) { no_cuda("max backward"); }
void fill(const Tensor&, double) { no_cuda("fill"); }
void copy_strided(const Tensor&, const Tensor&) { no_cuda("copy"); }
void accumulate(const Tensor&, const Tensor&) { no_cuda("accumulate"); }

}  // namespace rn::cuda
