// bench/bench_cuda_ops.cpp — the CUDA backend's memory-bound ops on the GPU.
//   1. elementwise ops and reductions at a large size: achieved GB/s against the device
//      copy bandwidth measured in the same run (goals: ≥ 80% elementwise, ≥ 70% reductions
//      and norms);
//   2. softmax, rms_norm and cross-entropy, forward + backward, against PyTorch measured on
//      the same GPU in the same command (bench/torch_ops.py writes its JSON first; pass it
//      with --torch PATH). Goal: no slower.
// Usage: bench_cuda_ops [--json out.json] [--torch torch_ops.json]
#include <cstdio>

#include "bench_util.h"
#include "cuda/device.h"
#include "cuda/elementwise.h"
#include "cuda/softmax.h"
#include "ops/ops.h"

using namespace rn;
using nlohmann::json;

#ifndef RN_HAVE_CUDA
int main() {
    std::printf("bench_cuda_ops: built without CUDA; nothing to measure\n");
    return 0;
}
#else
int main(int argc, char** argv) {
    if (cuda::device_count() == 0) {
        std::printf("bench_cuda_ops: no CUDA device; nothing to measure\n");
        return 0;
    }
    const Device gpu = Device::cuda(0);
    Generator gen(7);
    json out;
    out["device"] = cuda::device_name(0);

    // ---- the ceiling: device-to-device copy, bytes read + written
    const int64_t N = int64_t(1) << 28;  // 2^28 elements (the ops' size too): 1 GiB in f32, far beyond L2
    const double copy_gbs = bench::copy_bandwidth_Bps(size_t(N) * 4, 30) / 1e9;
    out["copy_GBps"] = copy_gbs;
    std::printf("device %s, copy bandwidth %.0f GB/s (read+write of %.1f GiB)\n\n", cuda::device_name(0).c_str(),
                copy_gbs, N * 4.0 / (1 << 30));

    std::printf("%-28s %-6s %-14s %10s %10s %8s %6s\n", "op", "dtype", "shape", "ms", "GB/s", "of copy", "goal");
    json rows = json::array();
    auto row = [&](const std::string& op, DType dt, const std::string& shape, double ms, double bytes, double goal) {
        double gbs = bytes / (ms * 1e6);
        std::printf("%-28s %-6s %-14s %10.3f %10.0f %7.1f%% %5.0f%%\n", op.c_str(), dtype_name(dt), shape.c_str(), ms,
                    gbs, 100 * gbs / copy_gbs, 100 * goal);
        rows.push_back({{"op", op}, {"dtype", dtype_name(dt)}, {"shape", shape}, {"ms", ms}, {"GBps", gbs},
                        {"fraction_of_copy", gbs / copy_gbs}, {"goal", goal}});
    };
    NoGradGuard no_grad;
    for (DType dt : {DType::f32, DType::bf16}) {
        const double es = double(dtype_size(dt));
        Tensor a = randn({N}, gen, DType::f32, gpu).to(dt), b = randn({N}, gen, DType::f32, gpu).to(dt);
        std::string sh = "[2^28]";
        row("add", dt, sh, bench::time_cuda_ms([&] { add(a, b); }), 3 * N * es, 0.8);
        row("mul", dt, sh, bench::time_cuda_ms([&] { mul(a, b); }), 3 * N * es, 0.8);
        row("silu", dt, sh, bench::time_cuda_ms([&] { silu(a); }), 2 * N * es, 0.8);
        row("exp", dt, sh, bench::time_cuda_ms([&] { exp(a); }), 2 * N * es, 0.8);
        row("x * 2 + 1 (affine)", dt, sh, bench::time_cuda_ms([&] { affine(a, 2.0, 1.0); }), 2 * N * es, 0.8);
        Tensor bias = randn({4096}, gen, DType::f32, gpu).to(dt);
        Tensor a2 = a.view({N / 4096, 4096});
        row("add row-broadcast", dt, "[65536,4096]+[4096]", bench::time_cuda_ms([&] { add(a2, bias); }), 2 * N * es, 0.8);
        Tensor rs = randn({N / 4096, 1}, gen, DType::f32, gpu).to(dt);
        row("mul per-row scalar", dt, "[65536,4096]*[65536,1]", bench::time_cuda_ms([&] { mul(a2, rs); }), 2 * N * es,
            0.8);
        row("sum (all)", dt, sh, bench::time_cuda_ms([&] { sum(a); }), N * es, 0.7);
        row("sum (last dim)", dt, "[65536,4096]", bench::time_cuda_ms([&] { sum(a2, {1}); }), N * es, 0.7);
        row("mean (last dim)", dt, "[65536,4096]", bench::time_cuda_ms([&] { mean(a2, {1}); }), N * es, 0.7);
        row("max (last dim)", dt, "[65536,4096]", bench::time_cuda_ms([&] { max(a2, {1}); }), N * es, 0.7);
        // a bias gradient's shape: Σ over the rows, read in place by the column kernel
        row("sum (dim 0)", dt, "[65536,4096]", bench::time_cuda_ms([&] { sum(a2, {0}); }), N * es, 0.7);
        Tensor a3 = a.view({N / 256, 256});
        row("sum (last dim)", dt, "[2^20,256]", bench::time_cuda_ms([&] { sum(a3, {1}); }), N * es, 0.7);
        // backward kernels called directly (no graph): silu reads dy and x, writes dx
        Tensor dx = empty({N}, dt, gpu);
        row("silu backward", dt, sh, bench::time_cuda_ms([&] {
                cuda::unary_backward(UnaryOp::silu, dt, dx.raw_data(), b.raw_data(), a.raw_data(), nullptr, N, 0, 0);
            }),
            3 * N * es, 0.8);
        Tensor w = ones({4096}, dt, gpu);
        row("rms_norm fwd", dt, "[65536,4096]", bench::time_cuda_ms([&] { rms_norm(a2, w, 1e-6); }), 2 * N * es, 0.7);
        row("layer_norm fwd", dt, "[65536,4096]", bench::time_cuda_ms([&] { layer_norm(a2, w, Tensor(), 1e-5); }),
            2 * N * es, 0.7);
        row("softmax fwd", dt, "[65536,4096]", bench::time_cuda_ms([&] { softmax(a2, -1); }), 2 * N * es, 0.7);
        // softmax backward reads dy and y, writes dx (b stands in for y: the bytes are the same)
        row("softmax bwd", dt, "[65536,4096]", bench::time_cuda_ms([&] {
                cuda::softmax_backward(dt, dx.raw_data(), a.raw_data(), b.raw_data(), N / 4096, 4096, false);
            }),
            3 * N * es, 0.7);
    }
    out["memory_bound"] = rows;

    // ---- forward + backward against PyTorch
    json torch_results;
    std::string torch_path = bench::arg_value(argc, argv, "--torch");
    if (!torch_path.empty()) {
        std::ifstream f(torch_path);
        if (f) torch_results = json::parse(f, nullptr, false);
        if (torch_results.is_discarded()) torch_results = json();
    }
    auto torch_ms = [&](const std::string& key) -> double {
        if (torch_results.contains("results") && torch_results["results"].contains(key))
            return torch_results["results"][key].get<double>();
        return -1;
    };
    std::printf("\nforward+backward vs PyTorch %s (same GPU, same command; median ms)\n",
                (torch_results.is_object() ? torch_results.value("torch_version", std::string("?")) : std::string("(not run)")).c_str());
    std::printf("%-34s %-6s %10s %10s %8s\n", "op", "dtype", "ours", "torch", "ratio");
    json cmp = json::array();
    auto cmp_row = [&](const std::string& key, DType dt, double ms) {
        double t = torch_ms(key + "_" + dtype_name(dt));
        std::printf("%-34s %-6s %10.3f %10.3f %8s\n", key.c_str(), dtype_name(dt), ms, t,
                    t > 0 ? (std::to_string(t / ms).substr(0, 5) + "x").c_str() : "-");
        cmp.push_back({{"op", key}, {"dtype", dtype_name(dt)}, {"ours_ms", ms}, {"torch_ms", t},
                       {"speedup", t > 0 ? t / ms : 0.0}});
    };
    EnableGradGuard grad_on;
    for (DType dt : {DType::f32, DType::bf16}) {
        // shapes shared with bench/torch_ops.py: keep them in sync
        {
            Tensor x = randn({16384, 4096}, gen, DType::f32, gpu).to(dt).requires_grad_();
            Tensor g = randn({16384, 4096}, gen, DType::f32, gpu).to(dt);
            cmp_row("softmax [16384,4096]", dt, bench::time_cuda_ms([&] { softmax(x, -1).backward(g); x.zero_grad(); }));
        }
        {
            Tensor x = randn({16384, 768}, gen, DType::f32, gpu).to(dt).requires_grad_();
            Tensor w = ones({768}, dt, gpu).requires_grad_();
            Tensor g = randn({16384, 768}, gen, DType::f32, gpu).to(dt);
            cmp_row("rms_norm [16384,768]", dt, bench::time_cuda_ms([&] {
                        rms_norm(x, w, 1e-6).backward(g);
                        x.zero_grad();
                        w.zero_grad();
                    }));
        }
        {
            Tensor x = randn({16384, 32000}, gen, DType::f32, gpu).to(dt).requires_grad_();
            Tensor t = randint(0, 32000, {16384}, gen, DType::i64, gpu);
            cmp_row("cross_entropy [16384,32000]", dt, bench::time_cuda_ms([&] {
                        cross_entropy(x, t).backward();
                        x.zero_grad();
                    }));
        }
    }
    out["vs_torch"] = cmp;
    if (!torch_results.is_null()) out["torch"] = torch_results;
    bench::write_json(bench::json_path(argc, argv, "bench_cuda_ops.json"), out);
    return 0;
}
#endif
