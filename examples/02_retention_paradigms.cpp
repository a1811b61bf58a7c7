// examples/02_retention_paradigms.cpp — one function, three ways to compute it.
//
// Retention (ops/retention.h, derivation in docs/retention.md) can be evaluated
//   parallel:   O = diag(λ)((QKᵀ) ⊙ D)V           — all tokens at once, O(T²) work
//   recurrent:  S ← γS + kᵀv, o = λ q S            — one token at a time, O(1) state
//   chunkwise:  parallel inside chunks of C, recurrent across them — O(T·C) work
// This program runs all three on the same random input, shows that they agree to float
// rounding (outputs and gradients), and prints how time and peak tensor memory grow with
// T, on the CPU and, when present, on the GPU.
// Run: ./build/example_02_retention_paradigms
#include <chrono>
#include <cmath>
#include <cstdio>

#include "cuda/memory.h"
#include "ops/ops.h"

using namespace rn;

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// forward + backward of one paradigm; returns (output, dq) and fills time and memory
struct Run {
    Tensor out, dq;
    double ms = 0;
    double peak_mib = 0;
};

Run run(RetentionMode mode, const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<double>& gamma,
        const Tensor& dO) {
    Device dev = q.device();
    if (dev.is_cuda()) {
        cuda::synchronize(dev.index);
        cuda::reset_peak_stats(dev.index);
    } else {
        reset_cpu_peak();
    }
    size_t base = dev.is_cuda() ? cuda::memory_stats(dev.index).allocated : cpu_memory_stats().allocated;
    Tensor ql = q.detach().requires_grad_();
    auto t0 = std::chrono::steady_clock::now();
    RetentionOptions opt;
    opt.mode = mode;
    opt.chunk = 64;
    Tensor out = retention(ql, k, v, gamma, opt).out;
    out.backward(dO);
    if (dev.is_cuda()) cuda::synchronize(dev.index);
    Run r;
    r.ms = ms_since(t0);
    size_t peak = dev.is_cuda() ? cuda::memory_stats(dev.index).peak_allocated : cpu_memory_stats().peak;
    r.peak_mib = double(peak - base) / (1 << 20);
    r.out = out.detach();
    r.dq = ql.grad();
    return r;
}

double rel_diff(const Tensor& a, const Tensor& b) {
    auto x = a.to_vector<double>(), y = b.to_vector<double>();
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        num += (x[i] - y[i]) * (x[i] - y[i]);
        den += y[i] * y[i];
    }
    return std::sqrt(num / den);
}

void sweep(Device dev, const std::vector<int64_t>& lengths, int64_t parallel_max) {
    const int64_t B = 1, H = 4, D = 64;
    std::vector<double> gamma;  // torchscale's decays: 1 − 2^(−5−h)
    for (int64_t h = 0; h < H; ++h) gamma.push_back(1.0 - std::pow(2.0, -5.0 - double(h)));
    std::printf("\n%s, f32, B=%lld H=%lld Dk=Dv=%lld, forward+backward\n", dev.str().c_str(), (long long)B,
                (long long)H, (long long)D);
    std::printf("%7s  %-10s %10s %12s %22s\n", "T", "paradigm", "ms", "peak MiB", "rel. diff vs recurrent");
    Generator g(1);
    for (int64_t T : lengths) {
        Tensor q = randn({B, H, T, D}, g, DType::f32, dev), k = randn({B, H, T, D}, g, DType::f32, dev) * 0.125;
        Tensor v = randn({B, H, T, D}, g, DType::f32, dev), dO = randn({B, H, T, D}, g, DType::f32, dev);
        Run ref = run(RetentionMode::recurrent, q, k, v, gamma, dO);
        std::printf("%7lld  %-10s %10.1f %12.1f %22s\n", (long long)T, "recurrent", ref.ms, ref.peak_mib, "(reference)");
        for (RetentionMode m : {RetentionMode::chunkwise, RetentionMode::parallel}) {
            if (m == RetentionMode::parallel && T > parallel_max) {
                std::printf("%7lld  %-10s %10s %12s %22s\n", (long long)T, "parallel", "-", "-", "skipped: O(T²)");
                continue;
            }
            Run r = run(m, q, k, v, gamma, dO);
            std::printf("%7lld  %-10s %10.1f %12.1f %11.1e / dq %.1e\n", (long long)T, retention_mode_name(m), r.ms,
                        r.peak_mib, rel_diff(r.out, ref.out), rel_diff(r.dq, ref.dq));
        }
    }
}
}  // namespace

int main() {
    std::printf("Retention computed three ways. Outputs and gradients agree to float rounding (the CPU\n"
                "accumulates in double, so its f32 results are usually bit-identical: a diff of 0);\n"
                "time grows like T² for parallel and like T for the other two. Peak MiB counts tensor\n"
                "memory (inputs' gradients, outputs, saved states), not a kernel's own scratch.\n");
    sweep(Device::cpu(), {256, 1024, 4096}, 2048);
    if (cuda::device_count() > 0) sweep(Device::cuda(0), {1024, 4096, 16384, 65536}, 16384);
    else std::printf("\n(no CUDA device: GPU rows skipped)\n");
    return 0;
}
