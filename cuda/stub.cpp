// cuda/stub.cpp — compiled instead of cuda/*.cu and the other cuda/*.cpp when CUDA is off
// (-DRN_CUDA=OFF or no nvcc; CMake globs cuda/stub*.cpp for CPU-only builds): every entry
// point declared in cuda/*.h, so the op wrappers and tools link and need no #ifdef.
// device_count() is 0 and graph capture fails saying why, so callers take their CPU path;
// everything else that would touch a GPU throws "built without CUDA". Ops call kernels only
// for CUDA tensors, which such a build cannot make, so a kernel's throw marks a bug rather
// than a user error. A new cuda:: entry point gets its stub here, in its family's section.
#include "core/error.h"
#include "cuda/attention.h"
#include "cuda/device.h"
#include "cuda/dropout.h"
#include "cuda/elementwise.h"
#include "cuda/gemv.h"
#include "cuda/logits_stats.h"
#include "cuda/graph.h"
#include "cuda/index.h"
#include "cuda/matmul.h"
#include "cuda/memory.h"
#include "cuda/norm.h"
#include "cuda/pdl.h"
#include "cuda/optim.h"
#include "cuda/reduce.h"
#include "cuda/retention.h"
#include "cuda/retention_decode.h"
#include "cuda/rotary.h"
#include "cuda/softmax.h"
#include "cuda/swiglu.h"
#include "cuda/tensor_math.h"
#include "cuda/where.h"

namespace rn::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
    RN_FAIL(what, ": retnet.cpp was built without CUDA. HINT: install the CUDA toolkit and "
                  "reconfigure with -DRN_CUDA=ON");
}
}  // namespace

// --- runtime and memory (cuda/device.h, cuda/memory.h, cuda/tensor_math.h)
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
uint64_t begin_graph_memory(int) { return 0; }
void end_graph_memory(int) {}
void release_graph_memory(int, uint64_t) {}
void fill(const Tensor&, double) { no_cuda("fill"); }
void copy_strided(const Tensor&, const Tensor&) { no_cuda("copy"); }
void accumulate(const Tensor&, const Tensor&) { no_cuda("accumulate"); }
void sum_contiguous(const Tensor&, const Tensor&, const Tensor&) { no_cuda("sum_contiguous"); }

// --- programmatic dependent launch (cuda/pdl.h): never active without a GPU
void set_pdl_enabled(bool) {}
bool pdl_enabled() { return false; }
bool pdl_supported() { return false; }
bool pdl_active() { return false; }
PdlScope::PdlScope() = default;
PdlScope::~PdlScope() = default;

// --- graphs (cuda/graph.h): capture() always fails, saying why, so callers run eagerly
Graph::Graph(int device) : device_(device) {}
Graph::~Graph() = default;
void Graph::reset() {}
bool Graph::capture(const std::function<void()>&, std::string* why) {
    if (why) *why = "retnet.cpp was built without CUDA";
    return false;
}
void Graph::replay() { no_cuda("cuda::Graph::replay"); }
bool stream_capturing() { return false; }

// --- elementwise (cuda/elementwise.h)
void unary_forward(UnaryOp, DType, void*, const void*, int64_t, double, double) { no_cuda("unary op"); }
void unary_backward(UnaryOp, DType, void*, const void*, const void*, const void*, int64_t, double, double) {
    no_cuda("unary op");
}
void binary_forward(BinaryOp, DType, void*, const void*, const void*, const Shape&, const Shape&, const Shape&) {
    no_cuda("binary op");
}

// --- reduce (cuda/reduce.h)
void reduce_rows(ReduceOp, DType, void*, int64_t*, const void*, int64_t, int64_t) { no_cuda("reduction"); }
void reduce_cols(DType, void*, const void*, int64_t, int64_t, int64_t) { no_cuda("reduction"); }
void scatter_rows(DType, void*, const int64_t*, const void*, int64_t, int64_t) { no_cuda("max backward"); }

// --- where (cuda/where.h)
void where_forward(DType, DType, void*, const void*, const void*, const void*, const Shape&, const Shape&,
                   const Shape&, const Shape&) {
    no_cuda("where");
}

// --- dropout (cuda/dropout.h)
void dropout_forward(DType, void*, void*, const void*, int64_t, double, double, uint64_t, uint64_t) {
    no_cuda("dropout");
}
void dropout_backward(DType, void*, const void*, const void*, int64_t, double) { no_cuda("dropout backward"); }

// --- index (cuda/index.h)
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

// --- matmul (cuda/matmul.h, cuda/gemv.h)
void gemm(DType, bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, double,
          void*, int64_t) {
    no_cuda("cuda::gemm");
}
void gemm_bf16_f32(bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, double,
                   float*, int64_t) {
    no_cuda("cuda::gemm_bf16_f32");
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
void set_gemm_tune(int) {}  // nothing to tune without cuBLAS
int gemm_tune() { return 1; }
std::string gemm_tuned_export() { no_cuda("cuda::gemm_tuned_export"); }
int64_t gemm_tuned_import(const std::string&, const std::string&, std::string*) { no_cuda("cuda::gemm_tuned_import"); }
void set_gemm_use_lt(bool) { no_cuda("cuda::set_gemm_use_lt"); }
bool gemm_use_lt() { no_cuda("cuda::gemm_use_lt"); }
void set_gemv_enabled(bool) { no_cuda("cuda::set_gemv_enabled"); }
bool gemv_enabled() { no_cuda("cuda::gemv_enabled"); }
bool gemv_rows(DType, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, void*, int64_t) {
    no_cuda("cuda::gemv_rows");
}
bool gemv_preferred(DType, int64_t, int64_t, int64_t) { no_cuda("cuda::gemv_preferred"); }
bool gemv_rows_prologue(DType, int64_t, int64_t, int64_t, const GemvPrologue&, const void*, int64_t, void*, int64_t) {
    no_cuda("cuda::gemv_rows_prologue");
}
bool gemv_prologue_applies(DType, int64_t, int64_t, int64_t, const GemvPrologue&, const void*, int64_t) {
    no_cuda("cuda::gemv_prologue_applies");
}
int64_t gemv_prologue_calls() { return 0; }
bool retention_step_gated(DType, int64_t, int64_t, int64_t, int64_t, const std::vector<double>&, const int64_t*,
                          const void*, int64_t, double, double, void*, void*, void*) {
    no_cuda("cuda::retention_step_gated");
}
int64_t retention_step_gated_calls() { return 0; }
int set_retention_step_col_threads(int) { return 0; }
bool logits_stats(DType, const void*, int64_t, int64_t, bool, float*, float*) { no_cuda("cuda::logits_stats"); }

// --- norm (cuda/norm.h)
void layer_norm_forward(DType, void*, void*, void*, const void*, const void*, const void*, int64_t, int64_t, double) {
    no_cuda("layer_norm");
}
void layer_norm_backward(DType, void*, void*, void*, const void*, const void*, const void*, const void*, const void*,
                         int64_t, int64_t) {
    no_cuda("layer_norm backward");
}
void rms_norm_forward(DType, void*, void*, const void*, const void*, int64_t, int64_t, double) { no_cuda("rms_norm"); }
void add_rms_norm_forward(DType, void*, void*, const void*, const void*, const void*, int64_t, int64_t, double) {
    no_cuda("add_rms_norm");
}
void gated_rms_norm_forward(DType, void*, const void*, const void*, int64_t, int64_t, double, void*) {
    no_cuda("gated_rms_norm");
}
void gated_rms_norm_backward(DType, void*, void*, const void*, const void*, const void*, const void*, int64_t,
                             int64_t) {
    no_cuda("gated_rms_norm backward");
}
void rms_norm_backward(DType, void*, void*, const void*, const void*, const void*, const void*, int64_t, int64_t) {
    no_cuda("rms_norm backward");
}

// --- softmax (cuda/softmax.h)
void softmax_forward(DType, void*, const void*, int64_t, int64_t, bool) { no_cuda("softmax"); }
void softmax_backward(DType, void*, const void*, const void*, int64_t, int64_t, bool) { no_cuda("softmax backward"); }
void cross_entropy_forward(DType, void*, double*, int64_t*, const void*, const int64_t*, int64_t, int64_t, int64_t) {
    no_cuda("cross_entropy");
}
void cross_entropy_rows(DType, double*, double*, const void*, const int64_t*, int64_t, int64_t, int64_t) {
    no_cuda("cross_entropy");
}
void cross_entropy_total(DType, void*, int64_t*, const double*, const int64_t*, int64_t, int64_t, int64_t) {
    no_cuda("cross_entropy");
}
void cross_entropy_backward(DType, void*, const void*, const void*, const double*, const int64_t*, const int64_t*,
                            int64_t, int64_t, int64_t) {
    no_cuda("cross_entropy backward");
}

// --- swiglu (cuda/swiglu.h)
void silu_mul_forward(DType, void*, const void*, const void*, int64_t) { no_cuda("silu_mul"); }
void silu_mul_backward_recompute(DType, void*, void*, void*, const void*, const void*, int64_t) {
    no_cuda("silu_mul backward");
}
void silu_mul_backward(DType, void*, void*, const void*, const void*, const void*, int64_t) {
    no_cuda("silu_mul backward");
}

// --- rotary (cuda/rotary.h)
void xpos_rotate(DType, void*, const void*, const int64_t*, int64_t, int64_t, int64_t, int64_t, int, double, int64_t,
                 double) {
    no_cuda("xpos_rotate");
}
void rope_rotate(DType, void*, const void*, const int64_t*, int64_t, int64_t, int64_t, int64_t, double, int) {
    no_cuda("rope_rotate");
}

// --- retention (cuda/retention.h)
bool retention_takes_rows(RetentionMode, DType, const RetentionShape&, const std::vector<double>&) { return false; }
size_t retention_saved_states_bytes(RetentionMode, DType, const RetentionShape&, const std::vector<double>&) {
    return 0;
}
bool retention_forward(RetentionMode, DType, const RetentionShape&, const std::vector<double>&, const void*,
                       const void*, const void*, const void*, void*, void*, void*, const QkvRows*) {
    no_cuda("retention");
}
void retention_backward(RetentionMode, DType, const RetentionShape&, const std::vector<double>&, void*, void*, void*,
                        void*, const void*, const void*, const void*, const void*, const void*, const void*,
                        const void*, const QkvRows*) {
    no_cuda("retention backward");
}
void retention_step(DType, int64_t, int64_t, int64_t, int64_t, const std::vector<double>&, const int64_t*,
                    const void*, const void*, const void*, void*, void*) {
    no_cuda("retention_step");
}

// --- attention (cuda/attention.h)
bool attention_takes_rows(DType, const AttentionShape&) { return false; }
void attention_forward(DType, const AttentionShape&, double, void*, void*, const void*, const void*, const void*,
                       const QkvRows*) {
    no_cuda("attention");
}
void attention_backward(DType, const AttentionShape&, double, void*, void*, void*, const void*, const void*,
                        const void*, const void*, const void*, const void*, const QkvRows*) {
    no_cuda("attention backward");
}
void attention_decode(DType, int64_t, int64_t, int64_t, int64_t, int64_t, double, void*, const void*, const void*,
                      const void*, const int64_t*) {
    no_cuda("attention_decode");
}
void kv_cache_write(DType, int64_t, int64_t, int64_t, int64_t, int64_t, void*, const void*, const int64_t*) {
    no_cuda("kv_cache_write");
}

// --- optimiser (cuda/optim.h)
void adamw_step(float*, const float*, float*, float*, int64_t, float, float, float, float, float, float, float, float) {
    no_cuda("adamw on CUDA");
}
void adamw_step_multi(const AdamWTensor*, int, float, float, float, float, float, float, float) {
    no_cuda("adamw on CUDA");
}
void sum_squares_accumulate_multi(const float* const*, const int64_t*, int, double*) {
    no_cuda("gradient norm on CUDA");
}

}  // namespace rn::cuda
