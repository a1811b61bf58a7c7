// bench/bench_attention.cpp — causal attention on the GPU through the public op, bf16:
//   1. forward and forward+backward at four training shapes, the backward through autograd
//      (out.backward(dO) on leaves that require grad, gradients dropped before each
//      repetition so every one pays the same AccumulateGrad), both backward schemes of the
//      tensor-core path (dq_pass, the default, and atomic: cuda/attention_tc.cu);
//   2. one decoding step (attention_decode, Hq 32, Hkv 8, D 128) at B 1, 4, 16 and contexts
//      8K–64K, every sequence at the full context, replayed from a CUDA graph (as the
//      serving engine runs it) 20 steps per timed sample.
// Each time is the median of CUDA-event samples after a warm-up. Set beside it:
//   FLOPs (causal, the half of QKᵀ and PV that is visible): forward 2·2·B·H·T²·D/2, the
//   backward 2.5× that (five products of that size against the forward's two); TFLOP/s
//   against the bf16 GEMM rate measured in this run (cuBLASLt through rn::matmul,
//   8192³) and against the 790 TFLOP/s measured on the H200 (docs/gpu.md);
//   decode: the cache bytes read (K and V, B·Hkv·ctx·D bf16 each) per second, against the
//   device-to-device copy bandwidth measured in this run (bytes read + written), goal 80%.
// Peer: PyTorch's scaled_dot_product_attention (is_causal, the FlashAttention backend;
// default backend with enable_gqa for decode), timed by bench/torch_attention.py on the
// same GPU at the same shapes; --peer FILE reads its JSON and adds speedup columns.
// Inputs are random (never zeros).
//
// Dimension key: B, H (= Hq = Hkv for training), T, D; decode Hq, Hkv, ctx.
// Usage: bench_attention [--json PATH] [--peer torch_attention.json] [--reps N] [--only train|decode]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "cuda/device.h"
#include "ops/ops.h"

#ifdef RN_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/graph.h"
#endif

using namespace rn;
using nlohmann::json;

#ifndef RN_HAVE_CUDA
int main() {
    std::printf("bench_attention: built without CUDA (-DRN_CUDA=OFF or no nvcc); nothing to measure\n");
    return 0;
}
#else

namespace {

constexpr double kH200Gemm = 790e12;  // bf16 dense, measured on the H200 (docs/gpu.md)

struct Shape4 {
    int64_t B, T, H, D;
    std::string name() const {
        char s[64];
        std::snprintf(s, sizeof s, "B%lld T%lld H%lld D%lld", (long long)B, (long long)T, (long long)H, (long long)D);
        return s;
    }
    double flops_fwd() const { return 2.0 * 2.0 * double(B * H) * double(T) * double(T) * double(D) / 2.0; }
};

// the peer's time for key/what, or 0
double peer_ms(const json& peer, const std::string& key, const std::string& what) {
    if (!peer.is_object() || !peer.contains("results")) return 0;
    const json& r = peer["results"];
    if (!r.contains(key) || !r[key].contains(what) || !r[key][what].is_number()) return 0;
    return r[key][what].get<double>();
}

void print_header() {
    std::printf("%-20s %-5s %-10s %-18s | %9s %8s %7s %6s | %9s %8s\n", "shape", "dtype", "device", "what", "ms",
                "TFLOP/s", "x gemm", "x 790", "peer ms", "speedup");
}

// "NVIDIA H100 80GB HBM3" → "H100"
std::string short_name(const std::string& n) {
    std::string s = n.rfind("NVIDIA ", 0) == 0 ? n.substr(7) : n;
    return s.substr(0, s.find(' '));
}

}  // namespace

int main(int argc, char** argv) {
    if (cuda::device_count() == 0) {
        std::printf("bench_attention: no CUDA device on this machine; nothing to measure\n");
        return 0;
    }
    const int reps = std::max(10, std::atoi(bench::arg_value(argc, argv, "--reps", "20").c_str()));
    const std::string peer_path = bench::arg_value(argc, argv, "--peer", "");
    const std::string only = bench::arg_value(argc, argv, "--only", "");
    const bool do_train = only.empty() || only == "train", do_decode = only.empty() || only == "decode";
    json peer;
    if (!peer_path.empty()) {
        std::ifstream f(peer_path);
        if (f) peer = json::parse(f, nullptr, false);
        if (!peer.is_object()) std::printf("bench_attention: could not read the peer JSON %s\n", peer_path.c_str());
    }
    const Device gpu = Device::cuda(0);
    const std::string dev_name = cuda::device_name(0);
    Generator gen(2025);
    json out;
    out["device"] = dev_name;
    if (peer.is_object()) out["peer"] = {{"file", peer_path}, {"device", peer.value("device", "")},
                                         {"torch_version", peer.value("torch_version", "")}};

    // ---- ceilings measured here: bf16 GEMM (cuBLASLt via rn::matmul) and the copy bandwidth
    double gemm = 0;
    {
        NoGradGuard ng;
        const int64_t n = 8192;
        Tensor a = randn({n, n}, gen, DType::bf16, gpu), b = randn({n, n}, gen, DType::bf16, gpu);
        const double ms = bench::time_cuda_ms([&] { matmul(a, b); }, 3, reps);
        gemm = 2.0 * double(n) * double(n) * double(n) / (ms * 1e-3);
    }
    const double bw = bench::copy_bandwidth_Bps(size_t(1) << 30, reps);
    out["gemm_TFLOPs"] = gemm / 1e12;
    out["copy_GBps"] = bw / 1e9;
    std::printf("device %s: bf16 GEMM %.0f TFLOP/s (8192^3, measured), copy %.0f GB/s (read + written)\n",
                dev_name.c_str(), gemm / 1e12, bw / 1e9);
    if (peer.is_object())
        std::printf("peer: %s on %s (torch %s)\n", peer_path.c_str(), peer.value("device", "?").c_str(),
                    peer.value("torch_version", "?").c_str());
    std::printf("\n");
    print_header();

    // ---- 1. training shapes
    json rows = json::array();
    const Shape4 shapes[] = {{8, 2048, 12, 64}, {2, 8192, 12, 64}, {1, 32768, 12, 64}, {4, 4096, 32, 128}};
    for (const Shape4& s : shapes) {
        if (!do_train) break;
        Tensor q = randn({s.B, s.H, s.T, s.D}, gen, DType::bf16, gpu);
        Tensor k = randn({s.B, s.H, s.T, s.D}, gen, DType::bf16, gpu);
        Tensor v = randn({s.B, s.H, s.T, s.D}, gen, DType::bf16, gpu);
        Tensor dO = randn({s.B, s.H, s.T, s.D}, gen, DType::bf16, gpu);
        q.requires_grad_(true);
        k.requires_grad_(true);
        v.requires_grad_(true);
        auto emit = [&](const std::string& what, const std::string& peer_what, double ms, double flops) {
            const double tf = flops / (ms * 1e-3) / 1e12, pm = peer_ms(peer, s.name(), peer_what);
            char pc[40] = "        -        -";
            if (pm > 0) std::snprintf(pc, sizeof pc, "%9.3f %7.2fx", pm, pm / ms);
            std::printf("%-20s %-5s %-10s %-18s | %9.3f %8.1f %6.0f%% %5.0f%% | %s\n", s.name().c_str(), "bf16",
                        short_name(dev_name).c_str(), what.c_str(), ms, tf, 100 * tf * 1e12 / gemm,
                        100 * tf * 1e12 / kH200Gemm, pc);
            std::fflush(stdout);
            json j = {{"shape", s.name()}, {"B", s.B},   {"T", s.T},         {"H", s.H},
                      {"D", s.D},          {"dtype", "bf16"}, {"what", what}, {"ms", ms},
                      {"TFLOPs", tf},      {"frac_of_gemm", tf * 1e12 / gemm}, {"frac_of_790", tf * 1e12 / kH200Gemm}};
            if (pm > 0) {
                j["peer_ms"] = pm;
                j["speedup_vs_peer"] = pm / ms;
            }
            rows.push_back(j);
        };
        const double f_fwd = s.flops_fwd();
        const double t_f = bench::time_cuda_ms(
            [&] {
                NoGradGuard ng;
                attention(q, k, v);
            },
            3, reps);
        emit("fwd", "fwd", t_f, f_fwd);
        for (const char* scheme : {"dq_pass", "atomic"}) {
            setenv("RN_ATTENTION_BWD", scheme, 1);
            const double t_fb = bench::time_cuda_ms(
                [&] {
                    q.zero_grad();
                    k.zero_grad();
                    v.zero_grad();
                    attention(q, k, v).backward(dO);
                },
                3, reps);
            emit(std::string("fwd+bwd ") + scheme, "fwdbwd", t_fb, 3.5 * f_fwd);
        }
        unsetenv("RN_ATTENTION_BWD");
        RN_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
    }
    out["train"] = rows;

    // ---- 2. decode: one step over full caches, from a CUDA graph, 20 steps a sample
    std::printf("\n%-34s | %9s %9s %7s | %9s %8s   (goal: 80%% of copy bandwidth)\n", "decode Hq32 Hkv8 D128 bf16",
                "us/step", "GB/s", "x copy", "peer us", "speedup");
    json drows = json::array();
    const int64_t Hq = 32, Hkv = 8, D = 128, kSteps = 20;
    for (int64_t ctx : {int64_t(8192), int64_t(16384), int64_t(32768), int64_t(65536)})
        for (int64_t B : {int64_t(1), int64_t(4), int64_t(16)}) {
            if (!do_decode) break;
            NoGradGuard ng;
            Tensor kc = randn({B, Hkv, ctx, D}, gen, DType::bf16, gpu), vc = randn({B, Hkv, ctx, D}, gen, DType::bf16, gpu);
            Tensor q = randn({B, Hq, D}, gen, DType::bf16, gpu);
            Tensor lengths = full({B}, double(ctx), DType::i64, gpu);
            attention_decode(q, kc, vc, lengths);  // eager first (occupancy query, module load)
            cuda::Graph graph(0);
            Tensor o;
            std::string why;
            if (!graph.capture([&] { o = attention_decode(q, kc, vc, lengths); }, &why)) {
                std::printf("decode B%lld ctx%lld: capture failed: %s\n", (long long)B, (long long)ctx, why.c_str());
                continue;
            }
            const double ms = bench::time_cuda_ms(
                                  [&] {
                                      for (int i = 0; i < kSteps; ++i) graph.replay();
                                  },
                                  3, reps) /
                              kSteps;
            const double bytes = 2.0 * double(B * Hkv * ctx * D) * 2.0;
            const double gbs = bytes / (ms * 1e-3) / 1e9;
            char name[64];
            std::snprintf(name, sizeof name, "decode B%lld Hq32 Hkv8 D128 ctx%lld", (long long)B, (long long)ctx);
            const double pm = peer_ms(peer, name, "ms");
            char pc[40] = "        -        -";
            if (pm > 0) std::snprintf(pc, sizeof pc, "%9.1f %7.2fx", pm * 1e3, pm / ms);
            std::printf("%-34s | %9.1f %9.0f %6.0f%% | %s\n", name, ms * 1e3, gbs, 100 * gbs * 1e9 / bw, pc);
            std::fflush(stdout);
            json j = {{"shape", name}, {"B", B},           {"Hq", Hq},   {"Hkv", Hkv},        {"D", D},
                      {"ctx", ctx},    {"us_per_step", ms * 1e3}, {"GBps", gbs}, {"frac_of_copy", gbs * 1e9 / bw}};
            if (pm > 0) {
                j["peer_us"] = pm * 1e3;
                j["speedup_vs_peer"] = pm / ms;
            }
            drows.push_back(j);
        }
    out["decode"] = drows;
    bench::write_json(bench::json_path(argc, argv, "bench_attention.json"), out);
    return 0;
}
#endif
