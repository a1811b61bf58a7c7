// bench/bench_gemv.cpp — the products of a decode step: x · Wᵀ with a few rows of x
// (batch 1 … 8, one token each) and the `small` preset's weights (bf16): cuda/gemv.h's
// kernel (called directly, for every M it supports) against cuBLAS (rn::matmul with the
// kernel switched off); the last column says which of the two rn::matmul runs. Both
// against the weight-read floor: bytes of W / the HBM rate of a device-to-device copy
// measured in the same run (bytes read + written per second).
//
// As in decoding, each call reads a different weight: the calls cycle through a pool of
// copies larger than L2 (≥ 256 MB), so W comes from HBM, not from a warm L2. And as in
// decoding (serving/engine.cpp), the calls are replayed from a CUDA graph: launched one by
// one from the host, a 2 µs kernel would time the host's dispatch, not the kernel.
//
//   bench_gemv [--json PATH] [--reps N]      (default JSON: bench_gemv.json)
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "cuda/device.h"
#include "ops/matmul.h"
#include "ops/ops.h"

#ifdef RN_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/context.h"
#include "cuda/gemv.h"
#include "cuda/graph.h"
#include "cuda/matmul.h"
#endif

using namespace rn;
using json = nlohmann::json;

#ifndef RN_HAVE_CUDA
int main() {
    std::printf("bench_gemv: built without CUDA; nothing to measure\n");
    return 0;
}
#else
int main(int argc, char** argv) {
    if (cuda::device_count() == 0) {
        std::printf("bench_gemv: no CUDA device; nothing to measure\n");
        return 0;
    }
    const int reps = std::max(20, std::atoi(bench::arg_value(argc, argv, "--reps", "30").c_str()));
    const Device gpu = Device::cuda(0);
    NoGradGuard no_grad;
    const double bw = bench::copy_bandwidth_Bps();
    json out;
    out["device"] = cuda::device_name(0);
    out["copy_GBps"] = bw / 1e9;
    out["dtype"] = "bf16";
    std::printf("bench_gemv: %s, bf16, copy bandwidth %.0f GB/s (read + write); floor = bytes of W / that rate\n\n",
                cuda::device_name(0).c_str(), bw / 1e9);

    struct Shape2 {
        const char* name;
        int64_t N, K;
    };
    // the small preset (d 768, value dim 1296, FFN 1296, vocab 32000) as the decode step
    // multiplies: QKVG and fc1+gate stacked (RetNetLM::fuse_for_decoding), out and fc2, head
    const std::vector<Shape2> shapes = {{"QKVG stacked", 4128, 768}, {"out_proj / fc2", 768, 1296},
                                        {"fc1+gate stacked", 2592, 768}, {"LM head", 32000, 768}};
    std::printf("%-18s %5s %6s %6s | %9s %9s %7s | %9s %7s | %7s  %s\n", "product", "M", "N", "K", "floor us",
                "gemv us", "% floor", "cuBLAS us", "% floor", "speedup", "rn::matmul runs");
    json rows = json::array();
    Generator gen(5);
    const bool was = cuda::gemv_enabled();
    for (const Shape2& s : shapes) {
        const double wbytes = double(s.N) * double(s.K) * 2;
        const int pool = int(std::max(2.0, std::ceil(256e6 / wbytes)));
        std::vector<Tensor> ws;
        for (int i = 0; i < pool; ++i) ws.push_back(randn({s.N, s.K}, gen, DType::bf16, gpu));
        for (int64_t M : {1, 2, 4, 8}) {
            Tensor x = randn({M, s.K}, gen, DType::bf16, gpu);
            // one sample = a pass over the whole pool (every call reads its W from HBM),
            // recorded once as a graph and replayed
            auto time_pass = [&](bool gemv) {
                cuda::set_gemv_enabled(false);
                cuda::Graph g(0);
                std::vector<Tensor> ys(static_cast<size_t>(pool));  // destroyed before the graph's memory
                auto pass = [&] {
                    for (int i = 0; i < pool; ++i) {
                        if (!gemv) {
                            ys[size_t(i)] = matmul(x, ws[size_t(i)].t());
                            continue;
                        }
                        ys[size_t(i)] = empty({M, s.N}, DType::bf16, gpu);
                        RN_CHECK(cuda::gemv_rows(DType::bf16, M, s.N, s.K, 1.0, x.raw_data(), s.K, ws[size_t(i)].raw_data(),
                                                 s.K, ys[size_t(i)].raw_data(), s.N),
                                 "bench_gemv: the kernel refused M ", M);
                    }
                };
                pass();  // eager once: plans and kernels loaded before the capture
                ys.assign(ys.size(), Tensor());
                std::string why;
                RN_CHECK(g.capture(pass, &why), "bench_gemv: capture failed: ", why);
                return bench::time_cuda_ms([&] { g.replay(); }, 2, reps) * 1e3 / pool;
            };
            const double t_gemv = time_pass(true);
            const double t_blas = time_pass(false);
            cuda::set_gemv_enabled(true);  // which one rn::matmul picks for this product
            const int64_t before = cuda::gemm_stats().gemv_calls;
            (void)matmul(x, ws[0].t());
            const bool took = cuda::gemm_stats().gemv_calls > before;
            const double floor_us = wbytes / bw * 1e6;
            std::printf("%-18s %5lld %6lld %6lld | %9.2f %9.2f %6.0f%% | %9.2f %6.0f%% | %6.2fx  %s\n", s.name,
                        (long long)M, (long long)s.N, (long long)s.K, floor_us, t_gemv, 100 * floor_us / t_gemv, t_blas,
                        100 * floor_us / t_blas, t_blas / t_gemv, took ? "gemv" : "cuBLAS");
            rows.push_back({{"product", s.name}, {"M", M}, {"N", s.N}, {"K", s.K}, {"weight_bytes", wbytes},
                            {"floor_us", floor_us}, {"gemv_us", t_gemv}, {"cublas_us", t_blas},
                            {"rn_matmul_runs_gemv", took}});
        }
    }
    cuda::set_gemv_enabled(was);
    out["rows"] = rows;
    bench::write_json(bench::json_path(argc, argv, "bench_gemv.json"), out);
    return 0;
}
#endif
