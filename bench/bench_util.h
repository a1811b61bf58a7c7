// bench/bench_util.h — shared by the benchmarks: median timing (CPU clock, or CUDA events
// after a warm-up), a small table printer, and JSON output through nlohmann-json.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#ifdef RN_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/context.h"
#endif

namespace rn::bench {

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// median wall time in ms of f() over `reps` runs after `warmup` runs
inline double time_cpu_ms(const std::function<void()>& f, int warmup = 2, int reps = 7) {
    for (int i = 0; i < warmup; ++i) f();
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        auto a = std::chrono::steady_clock::now();
        f();
        auto b = std::chrono::steady_clock::now();
        t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
    }
    return median(t);
}

#ifdef RN_HAVE_CUDA
// median device time in ms of f() (work enqueued on the compute stream), by CUDA events
inline double time_cuda_ms(const std::function<void()>& f, int warmup = 5, int reps = 30) {
    cudaStream_t s = rn::cuda::stream();
    for (int i = 0; i < warmup; ++i) f();
    cudaStreamSynchronize(s);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        cudaEventRecord(a, s);
        f();
        cudaEventRecord(b, s);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return median(t);
}

// the memory ceiling: device-to-device copy of `bytes` (default 1 GiB, far beyond L2),
// bytes read + written per second, median of `reps`
inline double copy_bandwidth_Bps(size_t bytes = size_t(1) << 30, int reps = 20) {
    void *src = nullptr, *dst = nullptr;
    RN_CUDA_CHECK(cudaMalloc(&src, bytes));
    RN_CUDA_CHECK(cudaMalloc(&dst, bytes));
    RN_CUDA_CHECK(cudaMemset(src, 1, bytes));
    const double ms = time_cuda_ms(
        [&] { RN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, rn::cuda::stream())); }, 3, reps);
    RN_CUDA_CHECK(cudaFree(src));
    RN_CUDA_CHECK(cudaFree(dst));
    return 2.0 * double(bytes) / (ms * 1e-3);
}
#endif

// --json PATH from argv, or the default
inline std::string json_path(int argc, char** argv, const std::string& def) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--json") return argv[i + 1];
    return def;
}
// whether a flag without a value (--quick) is on the command line
inline bool has_flag(int argc, char** argv, const std::string& flag) {
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == flag) return true;
    return false;
}
inline std::string arg_value(int argc, char** argv, const std::string& flag, const std::string& def = "") {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == flag) return argv[i + 1];
    return def;
}

inline void write_json(const std::string& path, const nlohmann::json& j) {
    std::ofstream f(path);
    f << j.dump(2) << "\n";
    std::printf("wrote %s\n", path.c_str());
}

}  // namespace rn::bench
