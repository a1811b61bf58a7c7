// bench/bench_cuda_matmul.cpp — GPU matmul throughput: rn::matmul next to direct cuBLASLt
// (cublasLtMatmul, heuristic algorithm, the same 32 MiB workspace) and cublasGemmEx calls
// on the same input buffers, so the ratio column is the cost of our wrapper (dispatch,
// output allocation, plan-cache lookup), goal ≥ 0.95.
//
// Rows: bf16 at 4096³, and the projections of a 125M RetNet (d = 768, 8 sequences of 2048
// tokens = 16384 rows): [16384,768]·[768,768], [16384,768]·[768,1296] (value / gate / GLU),
// [16384,1296]·[1296,768], and the LM head [16384,768]·[768,32000]; each as the forward
// product (x·W, and x·Wᵀ for a weight stored [out, in]) and the two backward ones
// (dx = dy·Wᵀ; dW = xᵀ·dy, whose K is the 16384 tokens). Then f32 at 4096³, exact fp32 and
// with the TF32 opt-in.
//
// Timing: CUDA events around `inner` back-to-back calls (inner chosen so one sample lasts
// ≥ 1 ms, so the host keeps the GPU queue full as it does in training), median of ≥ 20
// samples after a warm-up; TFLOP/s counts 2·M·N·K. The implementations are interleaved
// sample by sample: measured one after another, the first one ran up to 17% faster than
// the same cuBLAS kernel run later (a long bf16 run heats the card and its clock drops).
// rn::matmul is timed twice in the same rounds ("rn again"): the gap between its two
// columns is the noise against which the ratio is read. rn::matmul allocates its output on
// every call, as users see it (the caching allocator hands back the same block); the
// direct calls write into preallocated outputs. All read the same inputs, so what stays in
// L2 between calls favours none of them. Inputs are N(0,1) random, never zeros (zeros run
// faster than real data on tensor cores). Each row also checks rn::matmul's output against
// the direct Lt output (relative Frobenius difference; 0 when both ran the same algorithm).
//
//   bench_cuda_matmul [--json PATH] [--reps N] [--quick]   (default JSON: bench_cuda_matmul.json)
#include <algorithm>
#include <cmath>
#include <cstdint>  // before core/device.h, which uses uint8_t (gcc 13 no longer pulls it in)
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "ops/matmul.h"
#include "ops/ops.h"

#ifdef RN_HAVE_CUDA
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/matmul.h"
#endif

using namespace rn;

#ifndef RN_HAVE_CUDA
int main() {
    std::printf("bench_cuda_matmul: built without CUDA (-DRN_CUDA=OFF or no nvcc); nothing to measure\n");
    return 0;
}
#else

namespace {

#define BENCH_BLAS(call)                                                                                  \
    do {                                                                                                  \
        cublasStatus_t s_ = (call);                                                                       \
        RN_CHECK(s_ == CUBLAS_STATUS_SUCCESS, "bench: ", #call, " failed: ", cublasGetStatusName(s_));     \
    } while (0)

std::string json_num(double v) {
    if (!std::isfinite(v)) return "null";
    std::ostringstream os;
    os.precision(6);
    os << v;
    return os.str();
}

// One row-major product C [M, N] = op(A) [M, K] · op(B) [K, N], as rn::matmul hands it to
// cuBLAS: A stored [M, K] (or [K, M] with ta), B stored [K, N] (or [N, K] with tb), dense.
struct Problem {
    std::string name, shape;
    DType dt;
    int64_t M, N, K;
    bool ta, tb;
    bool tf32 = false;
    int64_t lda() const { return ta ? M : K; }
    int64_t ldb() const { return tb ? K : N; }
};

// The direct cuBLASLt call, set up once per problem by hand (no rn code involved): the
// same operand swap to column-major as cuda/matmul.cpp, the heuristic's first choice.
struct DirectLt {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;
    cudaDataType type;
    explicit DirectLt(const Problem& p) {
        type = p.dt == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
        const cublasComputeType_t ct = p.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        BENCH_BLAS(cublasLtMatmulDescCreate(&desc, ct, CUDA_R_32F));
        const cublasOperation_t opa = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = p.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
        BENCH_BLAS(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
        BENCH_BLAS(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
        BENCH_BLAS(cublasLtMatrixLayoutCreate(&a, type, p.tb ? p.K : p.N, p.tb ? p.N : p.K, p.ldb()));
        BENCH_BLAS(cublasLtMatrixLayoutCreate(&b, type, p.ta ? p.M : p.K, p.ta ? p.K : p.M, p.lda()));
        BENCH_BLAS(cublasLtMatrixLayoutCreate(&c, type, p.N, p.M, p.N));
        cublasLtMatmulPreference_t pref = nullptr;
        BENCH_BLAS(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws_bytes = 0;
        cuda::cublaslt_workspace(0, &ws_bytes);
        const uint64_t ws = ws_bytes;
        BENCH_BLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        cublasLtMatmulHeuristicResult_t r{};
        int found = 0;
        const cublasStatus_t s =
            cublasLtMatmulAlgoGetHeuristic(cuda::cublaslt_handle(0), desc, a, b, c, c, pref, 1, &r, &found);
        cublasLtMatmulPreferenceDestroy(pref);
        ok = s == CUBLAS_STATUS_SUCCESS && found > 0;
        if (ok) algo = r.algo;
    }
    ~DirectLt() {
        cublasLtMatrixLayoutDestroy(a);
        cublasLtMatrixLayoutDestroy(b);
        cublasLtMatrixLayoutDestroy(c);
        cublasLtMatmulDescDestroy(desc);
    }
    void run(const void* A, const void* B, void* C) const {
        const float al = 1.0f, be = 0.0f;
        size_t ws_bytes = 0;
        void* ws = cuda::cublaslt_workspace(0, &ws_bytes);
        BENCH_BLAS(cublasLtMatmul(cuda::cublaslt_handle(0), desc, &al, B, a, A, b, &be, C, c, C, c, &algo, ws, ws_bytes,
                                  cuda::stream(0)));
    }
};

void direct_gemm_ex(const Problem& p, const void* A, const void* B, void* C) {
    const float al = 1.0f, be = 0.0f;
    const cudaDataType t = p.dt == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = p.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    BENCH_BLAS(cublasGemmEx(cuda::cublas_handle(0), p.tb ? CUBLAS_OP_T : CUBLAS_OP_N, p.ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                            int(p.N), int(p.M), int(p.K), &al, B, t, int(p.ldb()), A, t, int(p.lda()), &be, C, t,
                            int(p.N), ct, CUBLAS_GEMM_DEFAULT));
}

// Median milliseconds per call of each fn. After a warm-up, `reps` rounds; each round takes
// one sample of every fn (`inner` calls between two events on the compute stream), starting
// with a different fn each round, so clock and power drift during the row (a long bf16 run
// heats the card and lowers its clock) falls on all of them alike rather than on whichever
// runs last.
std::vector<double> median_ms(const std::vector<std::function<void()>>& fns, int reps) {
    cudaStream_t s = cuda::stream(0);
    cudaEvent_t e0, e1;
    RN_CUDA_CHECK(cudaEventCreate(&e0));
    RN_CUDA_CHECK(cudaEventCreate(&e1));
    auto sample = [&](const std::function<void()>& fn, int inner) {
        RN_CUDA_CHECK(cudaEventRecord(e0, s));
        for (int i = 0; i < inner; ++i) fn();
        RN_CUDA_CHECK(cudaEventRecord(e1, s));
        RN_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        RN_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        return double(ms) / inner;
    };
    const size_t n = fns.size();
    std::vector<int> inner(n);
    for (size_t f = 0; f < n; ++f) {
        for (int i = 0; i < 3; ++i) fns[f]();
        inner[f] = std::clamp(int(std::ceil(1.0 / std::max(sample(fns[f], 1), 1e-3))), 1, 64);
    }
    std::vector<std::vector<double>> ts(n);
    for (int r = 0; r < reps; ++r)
        for (size_t k = 0; k < n; ++k) {
            const size_t f = (k + size_t(r)) % n;
            ts[f].push_back(sample(fns[f], inner[f]));
        }
    RN_CUDA_CHECK(cudaEventDestroy(e0));
    RN_CUDA_CHECK(cudaEventDestroy(e1));
    std::vector<double> med(n);
    for (size_t f = 0; f < n; ++f) {
        std::sort(ts[f].begin(), ts[f].end());
        med[f] = ts[f][ts[f].size() / 2];
    }
    return med;
}

// ‖x − y‖ / ‖y‖ computed on the GPU in f32
double rel_diff(const Tensor& x, const Tensor& y) {
    NoGradGuard ng;
    Tensor xf = x.to(DType::f32), yf = y.to(DType::f32);
    Tensor d = xf - yf;
    return std::sqrt(sum(d * d).item()) / std::max(std::sqrt(sum(yf * yf).item()), 1e-30);
}

struct Result {
    Problem p;
    double rn_tflops, rn2_tflops, lt_tflops, ex_tflops, ratio, diff;
};

Result measure(const Problem& p, Generator& gen, int reps) {
    const Device dev = Device::cuda(0);
    // operands stored as rn::matmul would receive them from a model: dense, possibly read
    // through a transposed view
    Tensor a_store = randn(p.ta ? Shape{p.K, p.M} : Shape{p.M, p.K}, gen, p.dt, dev);
    Tensor b_store = randn(p.tb ? Shape{p.N, p.K} : Shape{p.K, p.N}, gen, p.dt, dev);
    Tensor a = p.ta ? a_store.t() : a_store, b = p.tb ? b_store.t() : b_store;
    Tensor c_lt = empty({p.M, p.N}, p.dt, dev), c_ex = empty({p.M, p.N}, p.dt, dev);
    const double flops = 2.0 * double(p.M) * double(p.N) * double(p.K);
    cuda::set_allow_tf32(p.tf32);
    DirectLt lt(p);

    // rn::matmul is timed twice (two entries in the same rounds): their difference is the
    // noise floor against which the ratio is read
    Tensor c_rn;
    std::vector<std::function<void()>> fns = {
        [&] { c_rn = matmul(a, b); },
        [&] { c_rn = matmul(a, b); },
        [&] { direct_gemm_ex(p, a_store.raw_data(), b_store.raw_data(), c_ex.raw_data()); },
    };
    if (lt.ok) fns.push_back([&] { lt.run(a_store.raw_data(), b_store.raw_data(), c_lt.raw_data()); });
    const std::vector<double> t = median_ms(fns, reps);
    cuda::set_allow_tf32(false);
    RN_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(0)));
    const double diff = rel_diff(c_rn, lt.ok ? c_lt : c_ex);
    Result r{p, flops / t[0] / 1e9, flops / t[1] / 1e9, lt.ok ? flops / t[3] / 1e9 : NAN, flops / t[2] / 1e9, 0, diff};
    r.ratio = r.rn_tflops / std::max(std::isfinite(r.lt_tflops) ? r.lt_tflops : 0.0, r.ex_tflops);
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    std::string json_path = "bench_cuda_matmul.json";
    int reps = 30;
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        std::string s = argv[i];
        if (s == "--json" && i + 1 < argc) json_path = argv[++i];
        else if (s == "--reps" && i + 1 < argc) reps = std::max(20, std::atoi(argv[++i]));
        else if (s == "--quick") quick = true;
        else {
            std::fprintf(stderr, "usage: %s [--json PATH] [--reps N≥20] [--quick]\n", argv[0]);
            return 2;
        }
    }
    if (cuda::device_count() == 0) {
        std::printf("bench_cuda_matmul: no CUDA device or driver on this machine; nothing to measure\n");
        return 0;
    }
    try {
        cuda::set_device(0);
        const std::string device = cuda::device_name(0);
        std::printf("bench_cuda_matmul — %s; median of %d samples; TFLOP/s = 2·M·N·K / time\n\n", device.c_str(), reps);

        const int64_t T = 8 * 2048, d = 768;
        std::vector<Problem> probs = {{"bf16 square", "[4096,4096]x[4096,4096]", DType::bf16, 4096, 4096, 4096, false, false}};
        struct Proj {
            const char* name;
            int64_t in, out;
        };
        std::vector<Proj> projs = {{"proj d->d", d, d}, {"proj d->1296", d, 1296}, {"proj 1296->d", 1296, d},
                                   {"LM head", d, 32000}};
        for (const Proj& pr : projs) {
            auto sh = [](int64_t m, int64_t k, int64_t n, const char* tag) {
                return "[" + std::to_string(m) + "," + std::to_string(k) + "]x[" + std::to_string(k) + "," +
                       std::to_string(n) + "]" + tag;
            };
            const std::string n = pr.name;
            probs.push_back({n + " fwd x.W", sh(T, pr.in, pr.out, ""), DType::bf16, T, pr.out, pr.in, false, false});
            if (quick) continue;
            probs.push_back({n + " fwd x.W^T", sh(T, pr.in, pr.out, " B^T"), DType::bf16, T, pr.out, pr.in, false, true});
            probs.push_back({n + " bwd dy.W^T", sh(T, pr.out, pr.in, " B^T"), DType::bf16, T, pr.in, pr.out, false, true});
            probs.push_back({n + " bwd x^T.dy", sh(pr.in, T, pr.out, " A^T"), DType::bf16, pr.in, pr.out, T, true, false});
        }
        probs.push_back({"f32 square", "[4096,4096]x[4096,4096]", DType::f32, 4096, 4096, 4096, false, false});
        Problem tf = probs.back();
        tf.name = "f32 square TF32";
        tf.tf32 = true;
        probs.push_back(tf);

        Generator gen(7);
        std::vector<Result> results;
        std::printf("%-24s %-30s %9s %9s %9s %9s %8s %9s\n", "product", "shape", "rn", "rn again", "cuBLASLt",
                    "GemmEx", "rn/best", "rel diff");
        std::printf("%-24s %-30s %9s %9s %9s %9s %8s %9s\n", "", "", "TFLOP/s", "TFLOP/s", "TFLOP/s", "TFLOP/s", "",
                    "vs direct");
        bool all_ok = true;
        for (const Problem& p : probs) {
            Result r = measure(p, gen, reps);
            results.push_back(r);
            const bool ok = r.ratio >= 0.95;
            all_ok = all_ok && ok;
            std::printf("%-24s %-30s %9.1f %9.1f %9s %9.1f %7.3f%s %9.2e\n", p.name.c_str(), p.shape.c_str(),
                        r.rn_tflops, r.rn2_tflops,
                        std::isfinite(r.lt_tflops) ? json_num(std::round(r.lt_tflops * 10) / 10).c_str() : "n/a",
                        r.ex_tflops, r.ratio, ok ? " " : "!", r.diff);
            std::fflush(stdout);
        }
        const auto st = cuda::gemm_stats();
        std::printf("\ngoal rn/best ≥ 0.95: %s (rows marked ! fall short)\n", all_ok ? "met on every row" : "NOT met");
        std::printf("rn::cuda::gemm: %lld Lt calls, %lld classic calls, %lld heuristic queries, %lld shapes without an "
                    "Lt algorithm\n",
                    (long long)st.lt_calls, (long long)st.gemm_ex_calls, (long long)st.heuristic_queries,
                    (long long)st.lt_no_algorithm);

        std::ofstream js(json_path);
        if (!js) {
            std::fprintf(stderr, "bench_cuda_matmul: cannot write %s\n", json_path.c_str());
            return 1;
        }
        js << "{\n  \"device\": \"" << device << "\",\n  \"samples\": " << reps
           << ",\n  \"timing\": \"CUDA events, median per call, >=1 ms samples, implementations interleaved per round\",\n  \"goal_ratio\": 0.95,\n"
           << "  \"matmul\": [\n";
        for (size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            js << "    {\"name\": \"" << r.p.name << "\", \"shape\": \"" << r.p.shape << "\", \"dtype\": \""
               << dtype_name(r.p.dt) << "\", \"tf32\": " << (r.p.tf32 ? "true" : "false") << ", \"M\": " << r.p.M
               << ", \"N\": " << r.p.N << ", \"K\": " << r.p.K << ", \"transA\": " << (r.p.ta ? "true" : "false")
               << ", \"transB\": " << (r.p.tb ? "true" : "false") << ", \"rn_matmul_tflops\": " << json_num(r.rn_tflops)
               << ", \"rn_matmul_again_tflops\": " << json_num(r.rn2_tflops)
               << ", \"cublaslt_tflops\": " << json_num(r.lt_tflops) << ", \"gemm_ex_tflops\": "
               << json_num(r.ex_tflops) << ", \"ratio_rn_over_best_direct\": " << json_num(r.ratio)
               << ", \"rel_diff_vs_direct\": " << json_num(r.diff) << "}" << (i + 1 < results.size() ? "," : "")
               << "\n";
        }
        js << "  ]\n}\n";
        std::printf("wrote %s\n", json_path.c_str());
    } catch (const Error& e) {
        std::fprintf(stderr, "bench_cuda_matmul: %s\n", e.what());
        return 1;
    }
    return 0;
}

#endif  // RN_HAVE_CUDA
