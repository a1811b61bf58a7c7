// bench/bench_retention.cpp — retention on the GPU through the public op, bf16:
//   1. chunkwise (C = 64) forward and forward+backward at six shapes, the backward through
//      autograd (out.backward(dO) on leaves that require grad, gradients dropped before each
//      repetition so every one pays the same AccumulateGrad copy);
//   2. the parallel form at T ≤ 4096;
//   3. retention_step latency (one decoding step, state updated in place) at H16 Dk256
//      Dv512 for batch 1 and 64.
// Each time is the median of CUDA-event samples after a warm-up, set next to two floors:
//   memory floor = bytes / copy bandwidth measured in this run (cudaMemcpyAsync D2D,
//                  bytes read + written); bytes: read q, k, v once and write o; the
//                  backward adds reading dO and writing dq, dk, dv; a step reads q, k, v
//                  and reads and writes the fp32 state;
//   FLOP floor   = FLOPs / 790 TFLOP/s (bf16 dense matmul measured on the H200); chunkwise
//                  per chunk 2·C²·Dk (QKᵀ) + 2·C²·Dv (PV) + 2·C·Dk·Dv (QH) + 2·C·Dk·Dv
//                  (state update); the backward counted as twice the forward. The
//                  parallel mode computes the same function, so its floor is the same
//                  (the least work that gives the result); the parallel form's own count,
//                  T²·(Dk + Dv) per (b, h) (the causal half of QKᵀ and PV), is in the JSON
//                  as parallel_form_flop_ms. On CUDA bf16 the dispatch runs the parallel
//                  mode through the chunkwise tensor-core kernels (cuda/retention.cu).
// and the peer column: flash-linear-attention's chunk_retention on the H200 (figures given
// to this project), with our speedup over it.
// Inputs are random (never zeros); γ_h = 1 − exp(linspace(log 1/32, log 1/512, H)), the
// paper's setting, all < 1 in fp32.
//
// Dimension key: B, H, T, Dk, Dv (ops/retention.h).
// Usage: bench_retention [--json PATH] [--reps N]       (default JSON: bench_retention.json)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "cuda/device.h"
#include "ops/ops.h"
#include "ops/retention.h"

#ifdef RN_HAVE_CUDA
#include <cuda_runtime.h>

#include "autograd/grad_mode.h"
#include "core/random.h"
#include "cuda/check.h"
#include "cuda/context.h"
#endif

using namespace rn;
using nlohmann::json;

#ifndef RN_HAVE_CUDA
int main() {
    std::printf("bench_retention: built without CUDA (-DRN_CUDA=OFF or no nvcc); nothing to measure\n");
    return 0;
}
#else

namespace {

constexpr double kMatmulFlops = 790e12;  // bf16 dense, measured on the H200 (docs/gpu.md §4)
constexpr int64_t kC = 64;

std::vector<double> paper_gammas(int64_t H) {
    std::vector<double> g;
    for (int64_t h = 0; h < H; ++h) {
        const double t = H > 1 ? double(h) / double(H - 1) : 0.0;
        g.push_back(1.0 - std::exp(std::log(1.0 / 32) + t * (std::log(1.0 / 512) - std::log(1.0 / 32))));
    }
    return g;
}

struct Case {
    int64_t B, T, H, Dk, Dv;
    double peer_fwd_ms, peer_fwdbwd_ms;  // fla chunk_retention; 0: no figure
    std::string name() const {
        char s[96];
        if (Dk == Dv)
            std::snprintf(s, sizeof s, "B%lld T%lld H%lld D%lld", (long long)B, (long long)T, (long long)H, (long long)Dk);
        else
            std::snprintf(s, sizeof s, "B%lld T%lld H%lld Dk%lld Dv%lld", (long long)B, (long long)T, (long long)H,
                          (long long)Dk, (long long)Dv);
        return s;
    }
    double nq() const { return double(B * H * T * Dk); }
    double nv() const { return double(B * H * T * Dv); }
    double bytes_fwd() const { return 2.0 * (2 * nq() + 2 * nv()); }                 // q, k, v in; o out
    double bytes_fwdbwd() const { return bytes_fwd() + 2.0 * (nv() + 2 * nq() + nv()); }  // + dO in; dq, dk, dv out
    double flops_chunk() const {
        const double NC = double((T + kC - 1) / kC), C = double(kC);
        return double(B * H) * NC * (2 * C * C * Dk + 2 * C * C * Dv + 4 * C * Dk * Dv);
    }
    double flops_parallel() const { return double(B * H) * double(T) * double(T) * double(Dk + Dv); }
};

struct Timed {
    double ms, mem_ms, flop_ms, peer_ms;
};

json row_json(const std::string& what, const Case& s, const Timed& t) {
    json j = {{"what", what},       {"shape", s.name()},   {"B", s.B},           {"T", s.T},
              {"H", s.H},           {"Dk", s.Dk},          {"Dv", s.Dv},         {"ms", t.ms},
              {"mem_floor_ms", t.mem_ms}, {"flop_floor_ms", t.flop_ms}, {"x_mem_floor", t.ms / t.mem_ms},
              {"x_flop_floor", t.ms / t.flop_ms}};
    if (t.peer_ms > 0) {
        j["fla_ms"] = t.peer_ms;
        j["speedup_vs_fla"] = t.peer_ms / t.ms;
    }
    return j;
}

void print_row(const std::string& what, const std::string& shape, const Timed& t) {
    char peer[48] = "      -        -";
    if (t.peer_ms > 0) std::snprintf(peer, sizeof peer, "%8.3f %7.2fx", t.peer_ms, t.peer_ms / t.ms);
    std::printf("%-22s %-10s | %9.4f | %8.4f %6.1fx | %8.4f %6.1fx | %s\n", shape.c_str(), what.c_str(), t.ms, t.mem_ms,
                t.ms / t.mem_ms, t.flop_ms, t.ms / t.flop_ms, peer);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    if (cuda::device_count() == 0) {
        std::printf("bench_retention: no CUDA device on this machine; nothing to measure\n");
        return 0;
    }
    const int reps = std::max(20, std::atoi(bench::arg_value(argc, argv, "--reps", "30").c_str()));
    const Device gpu = Device::cuda(0);
    Generator gen(2024);
    json out;
    out["device"] = cuda::device_name(0);

    // ---- the memory ceiling: device-to-device copy, bytes read + written
    const double bw = bench::copy_bandwidth_Bps(size_t(1) << 30, reps);
    out["copy_GBps"] = bw / 1e9;
    out["matmul_TFLOPs_assumed"] = kMatmulFlops / 1e12;
    std::printf("device %s, copy bandwidth %.0f GB/s, FLOP ceiling %.0f TFLOP/s (bf16)\n\n",
                cuda::device_name(0).c_str(), bw / 1e9, kMatmulFlops / 1e12);
    std::printf("%-22s %-10s | %9s | %8s %7s | %8s %7s | %8s %8s\n", "shape", "what", "ms", "mem ms", "x", "flop ms", "x",
                "fla ms", "speedup");

    json rows = json::array();
    auto run_shape = [&](const Case& s, RetentionMode mode) {
        const std::vector<double> gamma = paper_gammas(s.H);
        Tensor q = randn({s.B, s.H, s.T, s.Dk}, gen, DType::bf16, gpu);
        Tensor k = uniform({s.B, s.H, s.T, s.Dk}, -std::sqrt(3.0 / double(s.Dk)), std::sqrt(3.0 / double(s.Dk)), gen,
                           DType::bf16, gpu);  // the model scales k by Dk^(-1/2)
        Tensor v = randn({s.B, s.H, s.T, s.Dv}, gen, DType::bf16, gpu);
        Tensor dO = randn({s.B, s.H, s.T, s.Dv}, gen, DType::bf16, gpu);
        q.requires_grad_(true);
        k.requires_grad_(true);
        v.requires_grad_(true);
        RetentionOptions opt;
        opt.mode = mode;
        opt.chunk = kC;
        const double t_f = bench::time_cuda_ms(
            [&] {
                NoGradGuard ng;
                retention(q, k, v, gamma, opt);
            },
            3, reps);
        const double t_fb = bench::time_cuda_ms(
            [&] {
                q.zero_grad();
                k.zero_grad();
                v.zero_grad();
                Tensor o = retention(q, k, v, gamma, opt).out;
                o.backward(dO);
            },
            3, reps);
        RN_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
        const bool chunk = mode == RetentionMode::chunkwise;
        const double fl = s.flops_chunk();
        const std::string tag = chunk ? "chunk" : "parallel";
        Timed f{t_f, s.bytes_fwd() / bw * 1e3, fl / kMatmulFlops * 1e3, chunk ? s.peer_fwd_ms : 0};
        Timed fb{t_fb, s.bytes_fwdbwd() / bw * 1e3, 3 * fl / kMatmulFlops * 1e3, chunk ? s.peer_fwdbwd_ms : 0};
        print_row(tag + " fwd", s.name(), f);
        print_row(tag + " f+b", s.name(), fb);
        rows.push_back(row_json(tag + " fwd", s, f));
        rows.push_back(row_json(tag + " fwd+bwd", s, fb));
        if (!chunk) {
            rows[rows.size() - 2]["parallel_form_flop_ms"] = s.flops_parallel() / kMatmulFlops * 1e3;
            rows[rows.size() - 1]["parallel_form_flop_ms"] = 3 * s.flops_parallel() / kMatmulFlops * 1e3;
        }
    };

    // ---- 1. chunkwise, the six shapes with fla's figures
    const Case chunk_shapes[] = {
        {8, 2048, 16, 128, 128, 0.565, 1.94}, {4, 4096, 64, 128, 128, 1.09, 4.45},
        {1, 8192, 96, 128, 128, 0.846, 3.51}, {4, 8192, 8, 256, 256, 0.766, 4.58},
        {8, 2048, 32, 256, 256, 1.54, 8.51},  {4, 8192, 16, 256, 512, 2.41, 15.5},
    };
    for (const Case& s : chunk_shapes) run_shape(s, RetentionMode::chunkwise);

    // ---- 2. the parallel form (O(T²) memory), T ≤ 4096
    const Case par_shapes[] = {{8, 2048, 16, 128, 128, 0, 0}, {4, 4096, 16, 128, 128, 0, 0}};
    for (const Case& s : par_shapes) run_shape(s, RetentionMode::parallel);

    // ---- 3. retention_step latency, H16 Dk256 Dv512
    std::printf("\n%-22s %-10s | %9s | %8s %7s | %8s %8s   (goal < 20 us)\n", "step", "", "us", "mem us", "x", "fla us",
                "speedup");
    json steps = json::array();
    for (int64_t B : {int64_t(1), int64_t(64)}) {
        const int64_t H = 16, Dk = 256, Dv = 512;
        const std::vector<double> gamma = paper_gammas(H);
        NoGradGuard ng;
        Tensor q = randn({B, H, Dk}, gen, DType::bf16, gpu), k = randn({B, H, Dk}, gen, DType::bf16, gpu);
        Tensor v = randn({B, H, Dv}, gen, DType::bf16, gpu);
        Tensor state = randn({B, H, Dk, Dv}, gen, DType::f32, gpu);
        Tensor pos = randint(0, 4096, {B}, gen, DType::i64, gpu);
        const double ms = bench::time_cuda_ms([&] { retention_step(q, k, v, gamma, state, pos); }, 5, std::max(reps, 50));
        const double bytes = 2.0 * double(B * H * (2 * Dk + 2 * Dv)) + 8.0 * double(B * H * Dk * Dv);
        const double mem_us = bytes / bw * 1e6, us = ms * 1e3;
        const double peer_us = B == 1 ? 250.0 : 480.0;
        char name[48];
        std::snprintf(name, sizeof name, "B%lld H16 Dk256 Dv512", (long long)B);
        std::printf("%-22s %-10s | %9.2f | %8.2f %6.1fx | %8.1f %7.1fx\n", name, "step", us, mem_us, us / mem_us, peer_us,
                    peer_us / us);
        steps.push_back({{"shape", name}, {"B", B}, {"us", us}, {"mem_floor_us", mem_us}, {"x_mem_floor", us / mem_us},
                         {"fla_us", peer_us}, {"speedup_vs_fla", peer_us / us}, {"goal_us", 20.0}});
    }
    out["rows"] = rows;
    out["step"] = steps;
    bench::write_json(bench::json_path(argc, argv, "bench_retention.json"), out);
    return 0;
}
#endif
