// cuda/matmul.cpp — cuBLAS / cuBLASLt behind rn::cuda::gemm (cuda/matmul.h). Host code only:
// no kernels of our own, so this is plain C++ that links the CUDA libraries.
// Dims key: C [M, N] = alpha · op(A) [M, K] · op(B) [K, N] + beta · C, row-major.
//
// Row-major to column-major: cuBLAS is column-major, and a row-major matrix [R, C] with
// leading dim ld is the same bytes as a column-major [C, R] with the same ld. So the
// row-major product C = op(A)·op(B) is, read column-major, Cᵀ = op(B)ᵀ·op(A)ᵀ: we call
// cuBLAS with the operands swapped (B first, then A), m = N, n = M, and the transpose flags
// unchanged. No data moves; a transposed view reaches cuBLAS as a flag.
//
// Note [Lt plans]: cublasLtMatmul needs a matmul descriptor, three layouts and an algorithm
// from cublasLtMatmulAlgoGetHeuristic. The heuristic query costs tens of microseconds,
// comparable to a whole small GEMM, so a plan (descriptors + algorithm) is built once per
// (device, shape, transposes, leading dims, batch strides, pointer alignment) and reused.
// Alignment is part of the key because the heuristic's default assumes 256-byte aligned
// pointers; a view that starts mid-buffer (a sliced column block) needs an algorithm that
// accepts less, so we tell the heuristic the real alignment. The cache is bounded (cleared
// when it reaches kMaxPlans; a training run uses a handful of shapes) and never destroyed
// at exit, so no descriptor outlives the library that made it in a static destructor.
//
// Note [Tuned plans]: the heuristic's first algorithm is a guess from the shape alone.
// RN_GEMM_TUNE=N (2–16) asks it for N and, on a plan's first call, times each on that
// call's own A and B writing a scratch C (one warm-up and three runs, CUDA events), keeping
// the fastest. Off by default: it costs a few milliseconds per new shape and a stream
// synchronisation, and the pick can differ from run to run, so the last bits of a product
// may too (as with PyTorch's cudnn.benchmark). Nothing can be timed inside a CUDA graph
// capture: a captured call takes the heuristic's first, and the first later call tunes.
// `retnet train` turns it on (set_gemm_tune, --gemm-tune) and keeps the picks beside its
// checkpoints (gemm_tuned_export, core/gemm_pins.h); a resumed run imports them, which pins
// each listed shape to its algorithm (checked with cublasLtMatmulAlgoCheck; one that fails
// falls back to the heuristic), so the resumed products are the same bits as before.
// cublasLt.h promises that much: the algorithm struct "can be trivially serialized and
// later restored for use with the same version of cuBLAS library"; the pins name the
// version and the GPU, and another's are not used.
#include "cuda/matmul.h"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/gemm_pins.h"
#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/device.h"
#include "cuda/gemv.h"

namespace rn::cuda {

namespace {

// One GEMM problem, for cache keys and error messages.
struct Problem {
    DType dt;
    bool ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    int64_t sA, sB, sC, batch;  // batch strides (elements) and count
};

std::string describe(const Problem& p) {
    std::ostringstream os;
    os << p.dt << " M=" << p.M << " N=" << p.N << " K=" << p.K << " transA=" << p.ta << " transB=" << p.tb
       << " lda=" << p.lda << " ldb=" << p.ldb << " ldc=" << p.ldc;
    if (p.batch != 1)
        os << " batch=" << p.batch << " strides A/B/C=" << p.sA << "/" << p.sB << "/" << p.sC;
    return os.str();
}

const char* blas_hint(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_ALLOC_FAILED: return " HINT: the GPU is out of memory; free tensors or empty_cache()";
        case CUBLAS_STATUS_EXECUTION_FAILED:
            return " HINT: a kernel failed, possibly an earlier one; rerun with CUDA_LAUNCH_BLOCKING=1 or under "
                   "compute-sanitizer (with RN_CUDA_NO_CACHE=1)";
        case CUBLAS_STATUS_NOT_SUPPORTED:
            return " HINT: cuBLAS does not support this combination; try contiguous inputs or f32";
        case CUBLAS_STATUS_ARCH_MISMATCH: return " HINT: this GPU lacks the instructions this dtype needs";
        default: return "";
    }
}

// Every cuBLAS status is checked here, naming the call and the problem.
#define RN_BLAS_CHECK(name, prob, call)                                                                    \
    do {                                                                                                    \
        cublasStatus_t s_ = (call);                                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            ::rn::detail::throw_error(__FILE__, __LINE__, "cuda::gemm: ", name, " failed with ",           \
                                      cublasGetStatusName(s_), " (", cublasGetStatusString(s_), ") for ",  \
                                      describe(prob), ".", blas_hint(s_));                                  \
    } while (0)

std::atomic<int64_t> n_lt{0}, n_ex{0}, n_heur{0}, n_noalgo{0}, n_gemv{0}, n_tuned{0}, n_pinned{0}, n_pin_failed{0};
std::atomic<bool> use_gemv{true};
std::atomic<bool> use_lt{true};

cublasOperation_t op_of(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Largest power of two ≤ 256 dividing the address of every matrix of the batch.
uint32_t alignment(const void* p, int64_t stride_elems, int64_t batch, size_t es) {
    uintptr_t v = reinterpret_cast<uintptr_t>(p);
    if (batch > 1) v |= uintptr_t(stride_elems) * es;
    uint32_t a = 256;
    while (a > 1 && v % a != 0) a >>= 1;
    return a;
}

// ---- Lt plan cache (Note [Lt plans])

struct PlanKey {
    int device;
    Problem p;
    uint32_t align_a, align_b, align_c;
    bool operator==(const PlanKey& o) const {
        return device == o.device && p.dt == o.p.dt && p.ta == o.p.ta && p.tb == o.p.tb && p.M == o.p.M &&
               p.N == o.p.N && p.K == o.p.K && p.lda == o.p.lda && p.ldb == o.p.ldb && p.ldc == o.p.ldc &&
               p.sA == o.p.sA && p.sB == o.p.sB && p.sC == o.p.sC && p.batch == o.p.batch &&
               align_a == o.align_a && align_b == o.align_b && align_c == o.align_c;
    }
};

struct PlanKeyHash {
    size_t operator()(const PlanKey& k) const {
        size_t h = 1469598103934665603ull;
        auto mix = [&h](int64_t v) { h = (h ^ std::hash<int64_t>()(v)) * 1099511628211ull; };
        mix(k.device);
        mix(int64_t(k.p.dt) | int64_t(k.p.ta) << 8 | int64_t(k.p.tb) << 9);
        for (int64_t v : {k.p.M, k.p.N, k.p.K, k.p.lda, k.p.ldb, k.p.ldc, k.p.sA, k.p.sB, k.p.sC, k.p.batch}) mix(v);
        mix(int64_t(k.align_a) | int64_t(k.align_b) << 16 | int64_t(k.align_c) << 32);
        return h;
    }
};

// Lt's operands in Lt's (column-major) terms: Lt's A is our B, Lt's B is our A, D = C.
struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool have_algo = false;
    // Note [Tuned plans]: the heuristic's algorithms beyond the first, to be timed on first
    // use (empty: nothing to tune, or tuned already; guarded by tune_mu). needs_tune says
    // untimed is not empty, so that an untuned call (the default) takes no lock; algo is
    // written before it turns false.
    std::vector<cublasLtMatmulAlgo_t> untimed;
    std::atomic<bool> needs_tune{false};
    bool picked = false;  // algo was picked by timing or pinned by an import: exported (under tune_mu)
    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {  // statuses ignored: nothing useful to do with a failed free
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (c) cublasLtMatrixLayoutDestroy(c);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
};

constexpr size_t kMaxPlans = 1024;
std::mutex plans_mu, tune_mu;
// leaked on purpose (Note [Lt plans]): outlives every static destructor
auto& plans = *new std::unordered_map<PlanKey, std::shared_ptr<Plan>, PlanKeyHash>();

// Pinned algorithms (gemm_tuned_import), guarded by plans_mu; a plan built for a listed
// shape takes its algorithm.
auto& pins = *new std::vector<GemmPin>();
std::atomic<int> tune_set{0};  // set_gemm_tune (0: not set, the environment decides)

GemmShape shape_of(const PlanKey& k) {
    const Problem& p = k.p;
    GemmShape g;
    g.dt = p.dt, g.ta = p.ta, g.tb = p.tb, g.M = p.M, g.N = p.N, g.K = p.K, g.lda = p.lda, g.ldb = p.ldb;
    g.ldc = p.ldc, g.sA = p.sA, g.sB = p.sB, g.sC = p.sC, g.batch = p.batch;
    g.align_a = k.align_a, g.align_b = k.align_b, g.align_c = k.align_c;
    return g;
}

// How many algorithms to time for a new shape (1: the heuristic's first): set_gemm_tune,
// else RN_GEMM_TUNE
int tune_candidates() {
    if (const int n = tune_set.load(std::memory_order_relaxed); n > 0) return n;
    const char* e = std::getenv("RN_GEMM_TUNE");
    if (!e) return 1;
    const int n = std::atoi(e);
    return n < 1 ? 1 : n > 16 ? 16 : n;
}

cublasLtMatrixLayout_t make_layout(const Problem& p, uint64_t rows, uint64_t cols, int64_t ld, int64_t stride) {
    cublasLtMatrixLayout_t l = nullptr;
    RN_BLAS_CHECK("cublasLtMatrixLayoutCreate", p, cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, rows, cols, ld));
    if (p.batch > 1) {
        const int32_t count = int32_t(p.batch);
        RN_BLAS_CHECK("cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)", p,
                      cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
        RN_BLAS_CHECK("cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)", p,
                      cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                       sizeof(stride)));
    }
    return l;
}

std::unique_ptr<Plan> make_plan(const PlanKey& k, cublasLtHandle_t lt, size_t ws_bytes) {
    const Problem& p = k.p;
    auto plan = std::make_unique<Plan>();
    // fp32 accumulation and fp32 alpha/beta, bf16 in and out
    RN_BLAS_CHECK("cublasLtMatmulDescCreate", p, cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t opa = op_of(p.tb), opb = op_of(p.ta);
    RN_BLAS_CHECK("cublasLtMatmulDescSetAttribute(TRANSA)", p,
                  cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    RN_BLAS_CHECK("cublasLtMatmulDescSetAttribute(TRANSB)", p,
                  cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    // Stored matrices, column-major rows × cols: our B ([K, N] row-major = [N, K] column-major,
    // or with transB [K, N]); our A ([K, M], or with transA [M, K]); C is [N, M].
    plan->a = make_layout(p, p.tb ? p.K : p.N, p.tb ? p.N : p.K, p.ldb, p.sB);
    plan->b = make_layout(p, p.ta ? p.M : p.K, p.ta ? p.K : p.M, p.lda, p.sA);
    plan->c = make_layout(p, p.N, p.M, p.ldc, p.sC);

    cublasLtMatmulPreference_t pref = nullptr;
    RN_BLAS_CHECK("cublasLtMatmulPreferenceCreate", p, cublasLtMatmulPreferenceCreate(&pref));
    std::unique_ptr<void, void (*)(void*)> pref_guard(
        pref, [](void* q) { cublasLtMatmulPreferenceDestroy(static_cast<cublasLtMatmulPreference_t>(q)); });
    const uint64_t ws = ws_bytes;
    RN_BLAS_CHECK("cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)", p,
                  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const struct {
        cublasLtMatmulPreferenceAttributes_t attr;
        uint32_t bytes;
    } aligns[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, k.align_b},  // Lt's A is our B
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, k.align_a},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, k.align_c},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, k.align_c}};
    for (const auto& al : aligns)
        RN_BLAS_CHECK("cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)", p,
                      cublasLtMatmulPreferenceSetAttribute(pref, al.attr, &al.bytes, sizeof(al.bytes)));

    const int want = tune_candidates();
    std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(want));
    int found = 0;
    n_heur.fetch_add(1, std::memory_order_relaxed);
    const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt, plan->desc, plan->a, plan->b, plan->c, plan->c, pref,
                                                            want, results.data(), &found);
    // NOT_SUPPORTED (or no result) means "no Lt kernel for this problem": cublasGemmEx runs
    // it. Anything else is a real error (a bad layout is our bug) and is reported.
    if (s != CUBLAS_STATUS_NOT_SUPPORTED) RN_BLAS_CHECK("cublasLtMatmulAlgoGetHeuristic", p, s);
    if (s == CUBLAS_STATUS_SUCCESS)
        for (int i = 0; i < found; ++i) {
            const cublasLtMatmulHeuristicResult_t& r = results[size_t(i)];
            if (r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > ws_bytes) continue;
            if (!plan->have_algo) plan->algo = r.algo, plan->have_algo = true;  // the heuristic's first
            else plan->untimed.push_back(r.algo);
        }
    if (!plan->have_algo) n_noalgo.fetch_add(1, std::memory_order_relaxed);
    if (plan->have_algo) {  // a pinned shape (plans_mu is held: get_plan)
        const GemmShape shape = shape_of(k);
        for (const GemmPin& pin : pins) {
            if (!(pin.shape == shape)) continue;
            cublasLtMatmulAlgo_t algo;
            static_assert(sizeof(algo.data) == sizeof(pin.algo), "cuBLASLt's algorithm is 8 words");
            std::memcpy(algo.data, pin.algo.data(), sizeof(algo.data));
            cublasLtMatmulHeuristicResult_t check{};
            if (cublasLtMatmulAlgoCheck(lt, plan->desc, plan->a, plan->b, plan->c, plan->c, &algo, &check) ==
                    CUBLAS_STATUS_SUCCESS &&
                check.state == CUBLAS_STATUS_SUCCESS && check.workspaceSize <= ws_bytes) {
                plan->algo = algo;
                plan->untimed.clear();
                plan->picked = true;
                n_pinned.fetch_add(1, std::memory_order_relaxed);
            } else {
                n_pin_failed.fetch_add(1, std::memory_order_relaxed);
            }
            break;
        }
    }
    plan->needs_tune.store(!plan->untimed.empty(), std::memory_order_relaxed);  // published with the plan
    return plan;
}

// The plan for this problem, built on first use. Shared ownership: a call keeps its plan
// alive even if another thread clears the cache meanwhile.
std::shared_ptr<Plan> get_plan(const PlanKey& k, cublasLtHandle_t lt, size_t ws_bytes) {
    std::lock_guard<std::mutex> lock(plans_mu);
    auto it = plans.find(k);
    if (it != plans.end()) return it->second;
    if (plans.size() >= kMaxPlans) plans.clear();
    std::shared_ptr<Plan> plan = make_plan(k, lt, ws_bytes);
    plans.emplace(k, plan);
    return plan;
}

// Note [Tuned plans]: times the heuristic's first algorithm and each untimed one on this
// call's A and B into a scratch C, and keeps the fastest. Called with tune_mu held, outside
// any stream capture.
void tune(Plan& plan, const Problem& p, cublasLtHandle_t lt, float al, float be, const void* A, const void* B,
          void* ws, size_t ws_bytes, cudaStream_t st, int dev) {
    // scratch C covering every element the product writes (zeroed: beta may read it)
    const int64_t span = (p.batch - 1) * p.sC + (p.M - 1) * p.ldc + p.N;
    Tensor scratch = empty({span}, DType::bf16, Device::cuda(dev));
    RN_CUDA_CHECK(cudaMemsetAsync(scratch.raw_data(), 0, size_t(span) * 2, st));
    void* C = scratch.raw_data();
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    RN_CUDA_CHECK(cudaEventCreate(&e0));
    RN_CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<cublasLtMatmulAlgo_t> all = {plan.algo};
    all.insert(all.end(), plan.untimed.begin(), plan.untimed.end());
    float best = 0;
    size_t best_i = 0;
    bool any = false;
    for (size_t i = 0; i < all.size(); ++i) {
        auto launch = [&] {
            return cublasLtMatmul(lt, plan.desc, &al, B, plan.a, A, plan.b, &be, C, plan.c, C, plan.c, &all[i], ws,
                                  ws_bytes, st);
        };
        if (launch() != CUBLAS_STATUS_SUCCESS) continue;  // an algorithm that declines the pointers: not a candidate
        RN_CUDA_CHECK(cudaEventRecord(e0, st));
        bool ok = true;
        for (int r = 0; r < 3 && ok; ++r) ok = launch() == CUBLAS_STATUS_SUCCESS;
        RN_CUDA_CHECK(cudaEventRecord(e1, st));
        RN_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        RN_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (ok && (!any || ms < best)) best = ms, best_i = i, any = true;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (any) plan.algo = all[best_i], plan.picked = true;
    plan.untimed.clear();
    plan.needs_tune.store(false, std::memory_order_release);
    n_tuned.fetch_add(1, std::memory_order_relaxed);
}

// ---- the three paths

void check_args(const Problem& p) {
    RN_CHECK(p.dt == DType::f32 || p.dt == DType::f64 || p.dt == DType::bf16,
             "cuda::gemm: takes f32, f64 or bf16, got ", p.dt);
    RN_CHECK(p.M >= 0 && p.N >= 0 && p.K >= 0 && p.batch >= 0, "cuda::gemm: negative size in ", describe(p));
    RN_CHECK(p.lda >= std::max<int64_t>(1, p.ta ? p.M : p.K), "cuda::gemm: lda=", p.lda, " is below ",
             p.ta ? "M" : "K", " in ", describe(p));
    RN_CHECK(p.ldb >= std::max<int64_t>(1, p.tb ? p.K : p.N), "cuda::gemm: ldb=", p.ldb, " is below ",
             p.tb ? "K" : "N", " in ", describe(p));
    RN_CHECK(p.ldc >= std::max<int64_t>(1, p.N), "cuda::gemm: ldc=", p.ldc, " is below N in ", describe(p));
    RN_CHECK(p.sA >= 0 && p.sB >= 0 && p.sC >= 0, "cuda::gemm: negative batch stride in ", describe(p));
    RN_CHECK(p.batch <= 1 || p.sC > 0, "cuda::gemm: batch outputs overlap (strideC=0) in ", describe(p));
}

cudaDataType cuda_type(DType dt) {
    return dt == DType::f64 ? CUDA_R_64F : dt == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
}

// f32, f64, and bf16 when Lt has no algorithm: the classic (64-bit index) API.
void run_classic(const Problem& p, double alpha, const void* A, const void* B, double beta, void* C) {
    cublasHandle_t h = cublas_handle();  // bound to the device's stream in cuda/context.cpp
    n_ex.fetch_add(1, std::memory_order_relaxed);
    const cublasOperation_t opa = op_of(p.tb), opb = op_of(p.ta);  // swapped operands (see top)
    if (p.dt == DType::f64) {
        const double al = alpha, be = beta;
        auto a = static_cast<const double*>(B), b = static_cast<const double*>(A);
        auto c = static_cast<double*>(C);
        if (p.batch == 1)
            RN_BLAS_CHECK("cublasDgemm", p,
                          cublasDgemm_v2_64(h, opa, opb, p.N, p.M, p.K, &al, a, p.ldb, b, p.lda, &be, c, p.ldc));
        else
            RN_BLAS_CHECK("cublasDgemmStridedBatched", p,
                          cublasDgemmStridedBatched_64(h, opa, opb, p.N, p.M, p.K, &al, a, p.ldb, p.sB, b, p.lda, p.sA,
                                                       &be, c, p.ldc, p.sC, p.batch));
        return;
    }
    // f32: exact fp32 unless TF32 was opted into; bf16: fp32 accumulation. alpha/beta are
    // float for both (the scale type of CUBLAS_COMPUTE_32F*).
    const cublasComputeType_t ct =
        p.dt == DType::f32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float al = float(alpha), be = float(beta);
    const cudaDataType t = cuda_type(p.dt);
    if (p.batch == 1)
        RN_BLAS_CHECK("cublasGemmEx", p,
                      cublasGemmEx_64(h, opa, opb, p.N, p.M, p.K, &al, B, t, p.ldb, A, t, p.lda, &be, C, t, p.ldc, ct,
                                      CUBLAS_GEMM_DEFAULT));
    else
        RN_BLAS_CHECK("cublasGemmStridedBatchedEx", p,
                      cublasGemmStridedBatchedEx_64(h, opa, opb, p.N, p.M, p.K, &al, B, t, p.ldb, p.sB, A, t, p.lda,
                                                    p.sA, &be, C, t, p.ldc, p.sC, p.batch, ct, CUBLAS_GEMM_DEFAULT));
}

// bf16 through cuBLASLt with a cached plan; false when Lt has no algorithm for it.
bool run_lt(const Problem& p, double alpha, const void* A, const void* B, double beta, void* C) {
    const int dev = current_device();
    size_t ws_bytes = 0;
    void* ws = cublaslt_workspace(dev, &ws_bytes);
    cublasLtHandle_t lt = cublaslt_handle(dev);
    const size_t es = 2;
    const PlanKey key{dev, p, alignment(A, p.sA, p.batch, es), alignment(B, p.sB, p.batch, es),
                      alignment(C, p.sC, p.batch, es)};
    const std::shared_ptr<Plan> plan = get_plan(key, lt, ws_bytes);
    if (!plan->have_algo) return false;
    const float al = float(alpha), be = float(beta);
    cudaStream_t st = stream(dev);
    cublasLtMatmulAlgo_t algo;
    if (plan->needs_tune.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lock(tune_mu);
        if (!plan->untimed.empty()) {
            cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
            RN_CUDA_CHECK(cudaStreamIsCapturing(st, &cs));
            if (cs == cudaStreamCaptureStatusNone) tune(*plan, p, lt, al, be, A, B, ws, ws_bytes, st, dev);
        }
        algo = plan->algo;
    } else {
        algo = plan->algo;
    }
    // beta = 0: C is not read (cuBLASLt, like BLAS, skips the load), so garbage there is fine.
    // The workspace is shared by every Lt call on this device; they all run in order on
    // the one stream (Note [One compute stream]), so none overlaps another's use of it.
    RN_BLAS_CHECK("cublasLtMatmul", p,
                  cublasLtMatmul(lt, plan->desc, &al, B, plan->a, A, plan->b, &be, C, plan->c, C, plan->c, &algo, ws,
                                 ws_bytes, st));
    n_lt.fetch_add(1, std::memory_order_relaxed);
    return true;
}

// C = 0 for an empty sum (K = 0, beta = 0), without reading C.
void zero_c(const Problem& p, void* C) {
    const size_t es = dtype_size(p.dt);
    cudaStream_t s = stream();
    for (int64_t i = 0; i < p.batch; ++i)
        RN_CUDA_CHECK(cudaMemset2DAsync(static_cast<char*>(C) + size_t(i * p.sC) * es, size_t(p.ldc) * es, 0,
                                        size_t(p.N) * es, size_t(p.M), s));
}

void run(const Problem& p, double alpha, const void* A, const void* B, double beta, void* C) {
    check_args(p);
    if (p.M == 0 || p.N == 0 || p.batch == 0) return;
    if (p.K == 0 && beta == 0.0) return zero_c(p, C);
    // x · Wᵀ for a few rows (a decode step): B is W stored [N, K]
    if (p.batch == 1 && beta == 0.0 && !p.ta && p.tb && gemv_preferred(p.dt, p.M, p.N, p.K) &&
        use_gemv.load(std::memory_order_relaxed) && gemv_rows(p.dt, p.M, p.N, p.K, alpha, A, p.lda, B, p.ldb, C, p.ldc)) {
        n_gemv.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (p.dt == DType::bf16 && p.K > 0 && use_lt.load(std::memory_order_relaxed)) {
        // Lt's batch count is an int32: very long batches go in slices
        constexpr int64_t kMaxLtBatch = INT32_MAX;
        const size_t es = 2;
        for (int64_t b0 = 0; b0 < p.batch; b0 += kMaxLtBatch) {
            Problem q = p;
            q.batch = std::min(kMaxLtBatch, p.batch - b0);
            const char* a = static_cast<const char*>(A) + size_t(b0 * p.sA) * es;
            const char* b = static_cast<const char*>(B) + size_t(b0 * p.sB) * es;
            char* c = static_cast<char*>(C) + size_t(b0 * p.sC) * es;
            if (!run_lt(q, alpha, a, b, beta, c)) run_classic(q, alpha, a, b, beta, c);
        }
        return;
    }
    run_classic(p, alpha, A, B, beta, C);
}

}  // namespace

void gemm(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc) {
    run(Problem{dt, transA, transB, M, N, K, lda, ldb, ldc, 0, 0, 0, 1}, alpha, A, B, beta, C);
}

void gemm_bf16_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                   int64_t lda, const void* B, int64_t ldb, double beta, float* C, int64_t ldc) {
    const Problem p{DType::bf16, transA, transB, M, N, K, lda, ldb, ldc, 0, 0, 0, 1};
    check_args(p);
    if (M == 0 || N == 0) return;
    if (K == 0 && beta == 0.0) {
        RN_CUDA_CHECK(cudaMemset2DAsync(C, size_t(ldc) * 4, 0, size_t(N) * 4, size_t(M), stream()));
        return;
    }
    n_ex.fetch_add(1, std::memory_order_relaxed);
    const float al = float(alpha), be = float(beta);
    // row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: B goes first (see the top of this file)
    RN_BLAS_CHECK("cublasGemmEx (bf16 in, f32 out)", p,
                  cublasGemmEx_64(cublas_handle(), op_of(transB), op_of(transA), N, M, K, &al, B, CUDA_R_16BF, ldb, A,
                                  CUDA_R_16BF, lda, &be, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm_strided_batched(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                          const void* A, int64_t lda, int64_t strideA, const void* B, int64_t ldb,
                          int64_t strideB, double beta, void* C, int64_t ldc, int64_t strideC, int64_t batch) {
    if (batch == 1) strideA = strideB = strideC = 0;  // irrelevant: one key per shape, not per stride
    run(Problem{dt, transA, transB, M, N, K, lda, ldb, ldc, strideA, strideB, strideC, batch}, alpha, A, B, beta, C);
}

void gemm_batched(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                  const void* A, int64_t lda, const int64_t* a_off, const void* B, int64_t ldb,
                  const int64_t* b_off, double beta, void* C, int64_t ldc, const int64_t* c_off, int64_t batch) {
    const size_t es = dtype_size(dt);
    auto at = [es](const void* base, int64_t off) { return static_cast<const char*>(base) + size_t(off) * es; };
    // Greedy runs of evenly spaced offsets: [i, j) with constant steps sa, sb, sc (sa, sb ≥ 0
    // as cuBLAS wants; sc > 0 so no two outputs coincide).
    for (int64_t i = 0; i < batch;) {
        int64_t j = i + 1, sa = 0, sb = 0, sc = 0;
        if (j < batch) {
            sa = a_off[j] - a_off[i];
            sb = b_off[j] - b_off[i];
            sc = c_off[j] - c_off[i];
            if (sa >= 0 && sb >= 0 && sc > 0) {
                while (j + 1 < batch && a_off[j + 1] - a_off[j] == sa && b_off[j + 1] - b_off[j] == sb &&
                       c_off[j + 1] - c_off[j] == sc)
                    ++j;
                ++j;  // j is now one past the run's last matrix
            }
        }
        gemm_strided_batched(dt, transA, transB, M, N, K, alpha, at(A, a_off[i]), lda, sa, at(B, b_off[i]), ldb, sb,
                             beta, const_cast<char*>(at(C, c_off[i])), ldc, sc, j - i);
        i = j;
    }
}

GemmStats gemm_stats() {
    GemmStats s;
    s.lt_calls = n_lt.load();
    s.gemm_ex_calls = n_ex.load();
    s.gemv_calls = n_gemv.load();
    s.heuristic_queries = n_heur.load();
    s.lt_no_algorithm = n_noalgo.load();
    s.tuned_shapes = n_tuned.load();
    s.pinned_shapes = n_pinned.load();
    s.pins_failed = n_pin_failed.load();
    std::lock_guard<std::mutex> lock(plans_mu);
    s.cached_shapes = int64_t(plans.size());
    return s;
}

void clear_gemm_cache() {
    std::lock_guard<std::mutex> lock(plans_mu);
    plans.clear();
}

void set_gemm_tune(int candidates) {
    RN_CHECK(candidates >= 0 && candidates <= 16, "set_gemm_tune: 1 (off) to 16 algorithms, or 0 (RN_GEMM_TUNE "
             "decides); got ", candidates);
    tune_set.store(candidates);
}
int gemm_tune() { return tune_candidates(); }

std::string gemm_tuned_export() {
    GemmPins out;
    const int dev = current_device();
    out.device = device_name(dev);
    out.cublaslt_version = int64_t(cublasLtGetVersion());
    std::lock_guard<std::mutex> lock(plans_mu);
    std::lock_guard<std::mutex> tlock(tune_mu);  // plan.algo and picked are written under it
    out.pins = pins;  // imported, whether or not a plan used them yet
    for (const auto& [key, plan] : plans) {
        if (!plan->picked || key.device != dev) continue;
        GemmPin pin;
        pin.shape = shape_of(key);
        bool listed = false;
        for (const GemmPin& q : out.pins) listed = listed || q.shape == pin.shape;
        if (listed) continue;
        std::memcpy(pin.algo.data(), plan->algo.data, sizeof(plan->algo.data));
        out.pins.push_back(pin);
    }
    return format_gemm_pins(out);
}

int64_t gemm_tuned_import(const std::string& text, const std::string& source, std::string* why) {
    GemmPins in = parse_gemm_pins(text, source);
    const std::string here = device_name(current_device());
    const int64_t version = int64_t(cublasLtGetVersion());
    std::string reason;
    if (in.device != here)
        reason = "picked on a " + in.device + ", this is a " + here;
    else if (in.cublaslt_version != version)
        reason = "picked with cuBLASLt " + std::to_string(in.cublaslt_version) + ", this is " + std::to_string(version);
    if (!reason.empty()) {
        if (why) *why = reason;
        return 0;
    }
    std::lock_guard<std::mutex> lock(plans_mu);
    pins = std::move(in.pins);
    plans.clear();  // plans built before now were not pinned
    return int64_t(pins.size());
}

void set_gemm_use_lt(bool on) { use_lt.store(on); }
bool gemm_use_lt() { return use_lt.load(); }
void set_gemv_enabled(bool on) { use_gemv.store(on); }
bool gemv_enabled() { return use_gemv.load(); }

}  // namespace rn::cuda
