// cuda/stub_matmul.cpp — CPU-only builds: every rn::cuda GEMM entry (cuda/matmul.h, cuda/gemv.h) throws
// "built without CUDA" (set_allow_tf32 / allow_tf32 keep a flag that nothing reads). Never reached through rn::matmul, which sends only CUDA tensors
// here and cannot have any in such a build; it keeps the link whole without #ifdefs.
#include "core/error.h"
#include "cuda/gemv.h"
#include "cuda/matmul.h"

namespace rn::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
    RN_FAIL(what, ": retnet.cpp was built without CUDA. HINT: install the CUDA toolkit and "
                  "reconfigure with -DRN_CUDA=ON");
}
}  // namespace

void gemm(DType, bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, double,
          void*, int64_t) {
    no_cuda("cuda::gemm");
}
void gemm_strided_batched(DType, bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, int64_t,
                          const void*, int64_t, int64_t, double, void*, int64_t, int64_t, int64_t) {
    no_cuda("cuda::gemm_strided_batched");
}
void gemm_batched(DType, bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, const int64_t*,
                  const void*, int64_t, const int64_t*, double, void*, int64_t, const int64_t*, int64_t) {
    no_cuda("cuda::gemm_batched");
}
// a flag, not a feature: without CUDA there is no f32 GPU product for it to change
namespace {
bool tf32_flag = false;
}
void set_allow_tf32(bool on) { tf32_flag = on; }
bool allow_tf32() { return tf32_flag; }
GemmStats gemm_stats() { no_cuda("cuda::gemm_stats"); }
void clear_gemm_cache() { no_cuda("cuda::clear_gemm_cache"); }
void set_gemm_use_lt(bool) { no_cuda("cuda::set_gemm_use_lt"); }
bool gemm_use_lt() { no_cuda("cuda::gemm_use_lt"); }
void set_gemv_enabled(bool) { no_cuda("cuda::set_gemv_enabled"); }
bool gemv_rows(DType, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, void*, int64_t) {
    no_cuda("cuda::gemv_rows");
}
bool gemv_preferred(DType, int64_t, int64_t, int64_t) { no_cuda("cuda::gemv_preferred"); }
bool gemv_enabled() { no_cuda("cuda::gemv_enabled"); }

}  // namespace rn::cuda
