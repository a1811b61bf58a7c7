// bench/bench_retention_tc_check.cpp — the tensor-core chunkwise retention path
// (cuda/retention_tc.cu) called directly, without the op or the generic CUDA kernels:
//   1. correctness against the CPU reference kernels (rn::cpu::retention_forward/backward
//      in f32, which accumulate in double) on odd shapes: partial chunks, T = 1, Dk ≠ Dv,
//      Dk/Dv not multiples of 64, Dv = 432, 512 × 512, pos0 > 0, initial / final states and
//      their gradients, subsets of the gradients, γ near 1 and far from it. Inputs are
//      random bf16 values (the reference sees the same rounded values); outputs are
//      poisoned with NaN first, so an unwritten element fails. Error: ‖gpu − ref‖/‖ref‖.
//   2. timing of forward and forward+backward at the benchmark shapes (median of CUDA
//      events), with a prefix of one (b, h) slice checked against the CPU as well.
// It links only the CPU retention kernels and the CUDA plumbing, so it builds and runs
// while the rest of the CUDA backend is in flux:
//   nvcc -O3 -std=c++17 -arch=sm_90 -I. -DRN_HAVE_CUDA=1 -Xcompiler -fopenmp \
//     bench/bench_retention_tc_check.cpp cuda/retention_tc.cu cuda/context.cpp \
//     cuda/allocator.cpp cuda/runtime.cu ops/retention_cpu.cpp -lcublas -lcublasLt
// Usage: bench_retention_tc_check [--json PATH] [--no-time] [--no-check] [--profile N (one fwd+bwd of shape N, for ncu)]
// Dimension key: B, H, T, Dk, Dv as in ops/retention.h.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "ops/retention.h"

#ifdef RN_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/device.h"
#include "cuda/retention_tc.h"
#endif

using namespace rn;

#ifndef RN_HAVE_CUDA
int main() {
    std::printf("bench_retention_tc_check: built without CUDA; nothing to check\n");
    return 0;
}
#else

namespace {

// deterministic N(0,1) by index (splitmix64 + Box–Muller), fast enough for 10^8 values
uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
float normal(uint64_t seed, uint64_t i) {
    const uint64_t a = mix(seed * 0x100000001b3ull + 2 * i), b = mix(seed * 0x100000001b3ull + 2 * i + 1);
    const double u1 = (double(a >> 11) + 1.0) / 9007199254740993.0, u2 = double(b >> 11) / 9007199254740992.0;
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

// random values rounded to bf16: f holds the rounded floats, h the bf16 bits
struct HostBf16 {
    std::vector<float> f;
    std::vector<uint16_t> h;
};
HostBf16 random_bf16(size_t n, uint64_t seed, float scale) {
    HostBf16 r;
    r.f.resize(n);
    r.h.resize(n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < int64_t(n); ++i) {
        const uint16_t b = bf16::from_float(normal(seed, uint64_t(i)) * scale);
        r.h[size_t(i)] = b;
        r.f[size_t(i)] = bf16::to_float(b);
    }
    return r;
}
std::vector<float> random_f32(size_t n, uint64_t seed, float scale) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = normal(seed, i) * scale;
    return v;
}

template <typename T>
T* dev_upload(const std::vector<T>& v) {
    T* p = nullptr;
    RN_CUDA_CHECK(cudaMalloc(&p, v.size() * sizeof(T) + 16));
    RN_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
void* dev_poisoned(size_t bytes) {  // 0xFF bytes: NaN in bf16 and in f32
    void* p = nullptr;
    RN_CUDA_CHECK(cudaMalloc(&p, bytes + 16));
    RN_CUDA_CHECK(cudaMemset(p, 0xFF, bytes));
    return p;
}
std::vector<float> dev_bf16_to_host(const void* p, size_t n) {
    std::vector<uint16_t> h(n);
    RN_CUDA_CHECK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = bf16::to_float(h[i]);
    return f;
}
std::vector<float> dev_f32_to_host(const void* p, size_t n) {
    std::vector<float> f(n);
    RN_CUDA_CHECK(cudaMemcpy(f.data(), p, n * 4, cudaMemcpyDeviceToHost));
    return f;
}

// ‖a − b‖/‖b‖ over n elements (a from the GPU); NaN anywhere gives NaN
double rel_err(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        if (std::isnan(a[i]) || std::isinf(a[i])) return NAN;
        const double d = double(a[i]) - double(b[i]);
        num += d * d;
        den += double(b[i]) * double(b[i]);
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::vector<double> paper_gammas(int64_t H) {  // 1 − exp(linspace(log 1/32, log 1/512, H))
    std::vector<double> g(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; ++h) {
        const double t = H > 1 ? double(h) / double(H - 1) : 0.0;
        g[size_t(h)] = 1.0 - std::exp(std::log(1.0 / 32) + t * (std::log(1.0 / 512) - std::log(1.0 / 32)));
    }
    return g;
}

struct Case {
    const char* name;
    int64_t B, H, T, Dk, Dv, pos0;
    bool s0, sfin, dsfin;
    bool dq, dk, dv, ds0;
    double gmin = 0;  // > 0: use γ from gmin upward instead of the paper's
};

constexpr double kTol = 2e-2;

struct Errors {
    double out = 0, sfin = 0, dq = 0, dk = 0, dv = 0, ds0 = 0;
    bool supported = true;
};

Errors run_case(const Case& c, nlohmann::json& log) {
    const int64_t BH = c.B * c.H, nq = BH * c.T * c.Dk, nv = BH * c.T * c.Dv, ns = BH * c.Dk * c.Dv;
    std::vector<double> gamma = paper_gammas(c.H);
    if (c.gmin > 0)
        for (int64_t h = 0; h < c.H; ++h) gamma[size_t(h)] = c.gmin + (0.999 - c.gmin) * double(h) / double(std::max<int64_t>(1, c.H - 1));
    const uint64_t seed = uint64_t(c.T * 131 + c.Dk * 7 + c.Dv);
    HostBf16 q = random_bf16(size_t(nq), seed + 1, 1.0f), k = random_bf16(size_t(nq), seed + 2, 1.0f / std::sqrt(float(c.Dk)));
    HostBf16 v = random_bf16(size_t(nv), seed + 3, 1.0f), dO = random_bf16(size_t(nv), seed + 4, 1.0f);
    std::vector<float> s0 = c.s0 ? random_f32(size_t(ns), seed + 5, 0.5f) : std::vector<float>();
    std::vector<float> dsT = c.dsfin ? random_f32(size_t(ns), seed + 6, 1.0f) : std::vector<float>();

    // reference (CPU, f32 storage, double accumulation)
    RetentionShape sh{c.B, c.H, c.T, c.Dk, c.Dv, 64, c.pos0};
    auto zeros = [](int64_t n) { return std::vector<float>(static_cast<size_t>(n)); };
    std::vector<float> r_out = zeros(nv), r_sT = zeros(ns), r_dq = zeros(nq), r_dk = zeros(nq), r_dv = zeros(nv),
                       r_ds0 = zeros(ns);
    cpu::retention_forward(RetentionMode::chunkwise, DType::f32, sh, gamma, q.f.data(), k.f.data(), v.f.data(),
                           c.s0 ? s0.data() : nullptr, r_out.data(), r_sT.data());
    cpu::retention_backward(RetentionMode::chunkwise, DType::f32, sh, gamma, r_dq.data(), r_dk.data(),
                            r_dv.data(), r_ds0.data(), dO.f.data(), c.dsfin ? dsT.data() : nullptr, q.f.data(),
                            k.f.data(), v.f.data(), c.s0 ? s0.data() : nullptr);

    // GPU
    void *dq_ = dev_upload(q.h), *dk_ = dev_upload(k.h), *dv_ = dev_upload(v.h), *ddO = dev_upload(dO.h);
    float* ds0in = c.s0 ? dev_upload(s0) : nullptr;
    float* ddsT = c.dsfin ? dev_upload(dsT) : nullptr;
    void* g_out = dev_poisoned(size_t(nv) * 2);
    float* g_sT = c.sfin ? static_cast<float*>(dev_poisoned(size_t(ns) * 4)) : nullptr;
    void* g_dq = c.dq ? dev_poisoned(size_t(nq) * 2) : nullptr;
    void* g_dk = c.dk ? dev_poisoned(size_t(nq) * 2) : nullptr;
    void* g_dv = c.dv ? dev_poisoned(size_t(nv) * 2) : nullptr;
    float* g_ds0 = c.ds0 ? static_cast<float*>(dev_poisoned(size_t(ns) * 4)) : nullptr;
    Errors e;
    e.supported = cuda::retention_chunkwise_tc_forward(sh, gamma, dq_, dk_, dv_, ds0in, g_out, g_sT);
    if (e.supported)
        e.supported = cuda::retention_chunkwise_tc_backward(sh, gamma, g_dq, g_dk, g_dv, g_ds0, ddO, ddsT, dq_, dk_,
                                                            dv_, ds0in);
    RN_CUDA_CHECK(cudaDeviceSynchronize());
    if (e.supported) {
        e.out = rel_err(dev_bf16_to_host(g_out, size_t(nv)).data(), r_out.data(), size_t(nv));
        if (c.sfin) e.sfin = rel_err(dev_f32_to_host(g_sT, size_t(ns)).data(), r_sT.data(), size_t(ns));
        if (c.dq) e.dq = rel_err(dev_bf16_to_host(g_dq, size_t(nq)).data(), r_dq.data(), size_t(nq));
        if (c.dk) e.dk = rel_err(dev_bf16_to_host(g_dk, size_t(nq)).data(), r_dk.data(), size_t(nq));
        if (c.dv) e.dv = rel_err(dev_bf16_to_host(g_dv, size_t(nv)).data(), r_dv.data(), size_t(nv));
        if (c.ds0) e.ds0 = rel_err(dev_f32_to_host(g_ds0, size_t(ns)).data(), r_ds0.data(), size_t(ns));
    }
    for (void* p : {dq_, dk_, dv_, ddO, static_cast<void*>(ds0in), static_cast<void*>(ddsT), g_out,
                    static_cast<void*>(g_sT), g_dq, g_dk, g_dv, static_cast<void*>(g_ds0)})
        if (p) cudaFree(p);
    log.push_back({{"case", c.name}, {"B", c.B}, {"H", c.H}, {"T", c.T}, {"Dk", c.Dk}, {"Dv", c.Dv}, {"pos0", c.pos0},
                   {"supported", e.supported}, {"out", e.out}, {"s_final", e.sfin}, {"dq", e.dq}, {"dk", e.dk},
                   {"dv", e.dv}, {"ds0", e.ds0}});
    return e;
}

bool ok(double e) { return !std::isnan(e) && e <= kTol; }

struct Shape6 {
    int64_t B, T, H, Dk, Dv;
    double fla_fwd, fla_fwdbwd;
};

}  // namespace

int main(int argc, char** argv) {
    if (cuda::device_count() == 0) {
        std::printf("bench_retention_tc_check: no CUDA device; nothing to check\n");
        return 0;
    }
    const bool do_time = !bench::has_flag(argc, argv, "--no-time");
    const bool do_check = !bench::has_flag(argc, argv, "--no-check");
    // --profile N: only run shape N's forward and backward once each (for ncu), no checks
    const int profile = std::atoi(bench::arg_value(argc, argv, "--profile", "-1").c_str());
    nlohmann::json out;
    out["device"] = cuda::device_name(0);

    // ---- 1. correctness
    const Case all_cases[] = {
        {"small full", 1, 2, 128, 64, 64, 0, false, true, false, true, true, true, true},
        {"partial chunk, s0", 2, 3, 200, 64, 64, 0, true, true, true, true, true, true, true},
        {"T=1", 1, 2, 1, 64, 64, 0, true, true, true, true, true, true, true},
        {"T=65 pos0", 1, 2, 65, 32, 48, 1000, false, true, false, true, true, true, true},
        {"Dk80 Dv48", 1, 2, 300, 80, 48, 7, true, true, true, true, true, true, true},
        {"Dk16 Dv16", 2, 2, 150, 16, 16, 0, true, true, true, true, true, true, true},
        {"D128", 1, 2, 520, 128, 128, 0, false, false, false, true, true, true, false},
        {"Dk256 Dv432", 1, 2, 333, 256, 432, 3, true, true, true, true, true, true, true},
        {"Dk512 Dv512", 1, 1, 130, 512, 512, 0, true, true, true, true, true, true, true},
        {"Dk160 Dv320", 2, 3, 130, 160, 320, 5, true, true, true, true, true, true, true},
        {"Dk192 Dv48 s0", 1, 3, 263, 192, 48, 77, true, true, true, true, true, true, true},
        {"Dk256 T65", 2, 1, 65, 256, 128, 0, false, true, false, true, true, true, true},
        {"Dk256 small gamma", 1, 2, 300, 256, 64, 0, true, true, true, true, true, true, true, 0.05},
        {"dq only", 1, 2, 190, 64, 128, 0, true, false, false, true, false, false, false},
        {"dk dv only", 1, 2, 190, 128, 64, 0, false, false, true, false, true, true, false},
        {"ds0 only", 1, 2, 190, 64, 64, 0, true, false, true, false, false, false, true},
        {"small gamma", 1, 4, 250, 64, 64, 0, true, true, true, true, true, true, true, 0.05},
        {"long T", 1, 1, 3000, 64, 64, 123456, true, true, true, true, true, true, true},
    };
    std::printf("%-18s %5s %5s %5s %5s %7s | %9s %9s %9s %9s %9s %9s\n", "case", "B·H", "T", "Dk", "Dv", "pos0", "out",
                "s_final", "dq", "dk", "dv", "ds0");
    bool all_ok = true;
    nlohmann::json checks = nlohmann::json::array();
    for (const Case& c : all_cases) {
        if (profile >= 0 || !do_check) break;
        Errors e = run_case(c, checks);
        const bool pass = e.supported && ok(e.out) && ok(e.sfin) && ok(e.dq) && ok(e.dk) && ok(e.dv) && ok(e.ds0);
        all_ok = all_ok && pass;
        std::printf("%-18s %5lld %5lld %5lld %5lld %7lld | %9.2e %9.2e %9.2e %9.2e %9.2e %9.2e  %s\n", c.name,
                    (long long)(c.B * c.H), (long long)c.T, (long long)c.Dk, (long long)c.Dv, (long long)c.pos0, e.out,
                    e.sfin, e.dq, e.dk, e.dv, e.ds0, !e.supported ? "UNSUPPORTED" : pass ? "ok" : "FAIL");
        std::fflush(stdout);
    }
    // unsupported shapes must say so (and leave the work to the generic kernels)
    if (profile < 0 && do_check) {
        std::vector<double> g = paper_gammas(2);
        RetentionShape bad1{1, 2, 64, 64, 64, 32, 0}, bad2{1, 2, 64, 72, 64, 64, 0}, bad3{1, 2, 64, 64, 1024, 64, 0};
        const bool r1 = cuda::retention_chunkwise_tc_forward(bad1, g, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
        const bool r2 = cuda::retention_chunkwise_tc_forward(bad2, g, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
        const bool r3 = cuda::retention_chunkwise_tc_forward(bad3, g, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
        std::printf("unsupported shapes refused: chunk 32 %s, Dk 72 %s, Dv 1024 %s\n", r1 ? "NO" : "yes",
                    r2 ? "NO" : "yes", r3 ? "NO" : "yes");
        all_ok = all_ok && !r1 && !r2 && !r3;
    }
    out["checks"] = checks;
    out["all_ok"] = all_ok;
    std::printf("correctness: %s\n", all_ok ? "ALL OK" : "FAILURES");
    std::fflush(stdout);

    if (do_time) {
        // ---- 2. timing at the benchmark shapes
        const Shape6 shapes[] = {
            {8, 2048, 16, 128, 128, 0.565, 1.94}, {4, 4096, 64, 128, 128, 1.09, 4.45},
            {1, 8192, 96, 128, 128, 0.846, 3.51}, {4, 8192, 8, 256, 256, 0.766, 4.58},
            {8, 2048, 32, 256, 256, 1.54, 8.51},  {4, 8192, 16, 256, 512, 2.41, 15.5},
        };
        // copy bandwidth (bytes read + written) in this run
        const double bw = bench::copy_bandwidth_Bps();  // bytes/s
        std::printf("\ncopy bandwidth %.0f GB/s\n", bw / 1e9);
        std::printf("%-28s | %8s %8s %6s %6s | %8s %8s %6s %6s | %6s\n", "shape", "fwd ms", "fla", "x", "fl%",
                    "f+b ms", "fla", "x", "mem%", "slice");
        nlohmann::json rows = nlohmann::json::array();
        for (int si = 0; si < 6; ++si) {
            const Shape6& s = shapes[si];
            if (profile >= 0 && si != profile) continue;
            const int64_t BH = s.B * s.H, nq = BH * s.T * s.Dk, nv = BH * s.T * s.Dv;
            std::vector<double> gamma = paper_gammas(s.H);
            HostBf16 q = random_bf16(size_t(nq), 11, 1.0f), k = random_bf16(size_t(nq), 12, 1.0f / std::sqrt(float(s.Dk)));
            HostBf16 v = random_bf16(size_t(nv), 13, 1.0f), dO = random_bf16(size_t(nv), 14, 1.0f);
            void *gq = dev_upload(q.h), *gk = dev_upload(k.h), *gv = dev_upload(v.h), *gdo = dev_upload(dO.h);
            void *go = dev_poisoned(size_t(nv) * 2), *gdq = dev_poisoned(size_t(nq) * 2),
                 *gdk = dev_poisoned(size_t(nq) * 2), *gdv = dev_poisoned(size_t(nv) * 2);
            RetentionShape sh{s.B, s.H, s.T, s.Dk, s.Dv, 64, 0};
            auto fwd = [&] {
                RN_CHECK(cuda::retention_chunkwise_tc_forward(sh, gamma, gq, gk, gv, nullptr, go, nullptr), "unsupported");
            };
            auto bwd = [&] {
                RN_CHECK(cuda::retention_chunkwise_tc_backward(sh, gamma, gdq, gdk, gdv, nullptr, gdo, nullptr, gq, gk,
                                                               gv, nullptr),
                         "unsupported");
            };
            if (profile >= 0) {
                fwd();
                bwd();
                RN_CUDA_CHECK(cudaDeviceSynchronize());
                std::printf("profiled shape %d\n", si);
                break;
            }
            const double t_f = bench::time_cuda_ms(fwd, 3, 20);
            const double t_b = bench::time_cuda_ms(bwd, 3, 20);
            const double t_fb = t_f + t_b;
            RN_CUDA_CHECK(cudaDeviceSynchronize());
            // a prefix of the last (b, h) slice against the CPU (outputs of a prefix depend on it alone)
            const int64_t Tp = std::min<int64_t>(s.T, 512), bh = BH - 1, h = s.H - 1;
            std::vector<float> pq(static_cast<size_t>(Tp * s.Dk)), pk(static_cast<size_t>(Tp * s.Dk)),
                pv(static_cast<size_t>(Tp * s.Dv)), pr(static_cast<size_t>(Tp * s.Dv));
            std::memcpy(pq.data(), q.f.data() + bh * s.T * s.Dk, pq.size() * 4);
            std::memcpy(pk.data(), k.f.data() + bh * s.T * s.Dk, pk.size() * 4);
            std::memcpy(pv.data(), v.f.data() + bh * s.T * s.Dv, pv.size() * 4);
            RetentionShape one{1, 1, Tp, s.Dk, s.Dv, 64, 0};
            cpu::retention_forward(RetentionMode::chunkwise, DType::f32, one, {gamma[size_t(h)]}, pq.data(),
                                   pk.data(), pv.data(), nullptr, pr.data(), nullptr);
            std::vector<float> full = dev_bf16_to_host(go, size_t(nv));
            const double slice_err = rel_err(full.data() + bh * s.T * s.Dv, pr.data(), pr.size());
            // floors
            const double NC = double((s.T + 63) / 64), C = 64;
            const double flops = double(BH) * NC * (2 * C * C * s.Dk + 2 * C * C * s.Dv + 4 * C * s.Dk * s.Dv);
            // read q, k, v and write o; fwd+bwd also reads dO and writes dq, dk, dv
            const double bytes_f = 2.0 * double(2 * nq + 2 * nv), bytes_b = 2.0 * double(nv + 2 * nq + nv);
            const double floor_f = std::max(flops / 790e12, bytes_f / bw) * 1e3;
            const double floor_fb = std::max(3 * flops / 790e12, (bytes_f + bytes_b) / bw) * 1e3;
            char name[64];
            std::snprintf(name, sizeof name, "B%lld T%lld H%lld Dk%lld Dv%lld", (long long)s.B, (long long)s.T,
                          (long long)s.H, (long long)s.Dk, (long long)s.Dv);
            std::printf("%-28s | %8.3f %8.3f %6.2f %6.1f | %8.3f %8.3f %6.2f %6.1f | %6.1e\n", name, t_f, s.fla_fwd,
                        s.fla_fwd / t_f, 100 * floor_f / t_f, t_fb, s.fla_fwdbwd, s.fla_fwdbwd / t_fb,
                        100 * floor_fb / t_fb, slice_err);
            std::fflush(stdout);
            rows.push_back({{"shape", name}, {"fwd_ms", t_f}, {"bwd_ms", t_b}, {"fwdbwd_ms", t_fb}, {"fla_fwd_ms", s.fla_fwd},
                            {"fla_fwdbwd_ms", s.fla_fwdbwd}, {"floor_fwd_ms", floor_f}, {"floor_fwdbwd_ms", floor_fb},
                            {"slice_rel_err", slice_err}});
            all_ok = all_ok && ok(slice_err);
            for (void* p : {gq, gk, gv, gdo, go, gdq, gdk, gdv}) cudaFree(p);
        }
        out["copy_GBps"] = bw / 1e9;
        out["timing"] = rows;
    }
    bench::write_json(bench::json_path(argc, argv, "bench_retention_tc_check.json"), out);
    return all_ok ? 0 : 1;
}
#endif
