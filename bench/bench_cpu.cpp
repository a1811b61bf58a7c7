// bench/bench_cpu.cpp — CPU throughput: f32 matmul through rn::matmul next to a direct
// cblas_sgemm call on the same buffers (the overhead of our wrapper, if any) and next to our
// own tiled kernel; and one elementwise op's memory bandwidth (rn::add, with and without
// the allocation of its output) next to a plain memcpy measured in the same run as the
// ceiling.
//
// Every number is the median of several timed runs after one warm-up. GFLOP/s counts
// 2·M·N·K; GB/s counts bytes moved (add: read a + read b + write out; memcpy: read + write).
// rn::matmul and rn::add allocate their output on every call, as users see them; the
// direct calls write into buffers allocated once. The difference is real: glibc serves
// blocks of 128 KiB and up with fresh mmap'd pages, faulted in on first write, so a new
// 1 MiB output can cost more than the 512³ product written into it.
//
//   bench_cpu [--json PATH] [--quick]     (default JSON path: bench_cpu.json in the cwd)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "ops/matmul.h"

#ifdef RN_HAVE_BLAS
#include <cblas.h>
#endif

using namespace rn;

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median seconds of `fn` over enough runs to fill about `budget_s` (at least min_reps, at
// most max_reps), after warm-up calls that last at least `settle_s`. The settling matters:
// after an OpenBLAS call its worker threads keep spinning for a while (OpenBLAS's
// THREAD_TIMEOUT, ~0.1 s), and OpenMP threads timed during that window fight them for
// the cores — measured on 16 cores, our tiled 256³ GEMM ran at 2 GFLOP/s instead of 460
// right after a cblas_sgemm.
double median_time(const std::function<void()>& fn, double budget_s, double settle_s, int min_reps = 3,
                   int max_reps = 25) {
    double warm = 1e30;
    const double start = now_s();
    do {
        const double t0 = now_s();
        fn();
        warm = std::min(warm, now_s() - t0);
    } while (now_s() - start < settle_s);
    const int reps = std::clamp(int(budget_s / std::max(warm, 1e-6)), min_reps, max_reps);
    std::vector<double> ts;
    for (int r = 0; r < reps; ++r) {
        const double t0 = now_s();
        fn();
        ts.push_back(now_s() - t0);
    }
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) {
            auto p = line.find(':');
            return p == std::string::npos ? line : line.substr(p + 2);
        }
    return "unknown CPU";
}

// /proc/loadavg's 1-minute figure: on a shared machine, the context every number needs
double load_average() {
    std::ifstream f("/proc/loadavg");
    double l = NAN;
    f >> l;
    return l;
}

// a table cell: v with `decimals` decimals, or "n/a" where there is no number
std::string cell(double v, int decimals) {
    if (!std::isfinite(v)) return "n/a";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string json_num(double v) {
    if (!std::isfinite(v)) return "null";
    std::ostringstream os;
    os.precision(6);
    os << v;
    return os.str();
}

struct MatmulRow {
    int64_t M, N, K;
    double ours_gflops, direct_gflops, tiled_gflops, max_rel_diff;
};

}  // namespace

int main(int argc, char** argv) {
    std::string json_path = "bench_cpu.json";
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--json" && i + 1 < argc) json_path = argv[++i];
        else if (a == "--quick") quick = true;
        else {
            std::fprintf(stderr, "usage: %s [--json PATH] [--quick]\n", argv[0]);
            return 2;
        }
    }
    const double budget = quick ? 0.2 : 0.8;  // seconds of timed runs per measurement
    const double settle = quick ? 0.1 : 0.25;  // seconds of warm-up calls before them
    const int threads = omp_get_max_threads();
    int blas_threads = 0;
#ifdef RN_HAVE_BLAS
    blas_threads = openblas_get_num_threads();
#endif
    const std::string device = "CPU: " + cpu_model();
    const double load_start = load_average();
    std::printf("bench_cpu — %s, load average %.2f at start\n", device.c_str(), load_start);
    std::printf("threads: OpenMP %d, OpenBLAS %s; rn::matmul backend: %s; tiled micro-kernel: %s; dtype f32\n\n",
                threads, cpu::have_blas() ? std::to_string(blas_threads).c_str() : "absent",
                cpu::gemm_backend_name(cpu::gemm_backend()), cpu::gemm_tiled_isa());

    // ---- matmul: C [M, N] = A [M, K] · B [K, N], all row-major f32
    struct Size { int64_t M, N, K; };
    std::vector<Size> sizes = {{256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048},
                               {2048, 768, 768}};
    if (quick) sizes = {{256, 256, 256}, {512, 512, 512}, {2048, 768, 768}};
    Generator gen(1);
    {
        // wake both thread pools (OpenMP's and OpenBLAS's), fault in their buffers and let
        // the clock ramp up before anything is timed
        Tensor a = uniform({512, 512}, -1, 1, gen), c = empty({512, 512});
        const double t0 = now_s();
        while (now_s() - t0 < (quick ? 0.1 : 0.3)) {
            matmul(a, a);
            cpu::gemm_tiled(DType::f32, false, false, 512, 512, 512, 1.0, a.raw_data(), 512, a.raw_data(), 512, 0.0,
                            c.raw_data(), 512);
        }
    }
    std::vector<MatmulRow> rows;
    std::printf("%-20s %14s %14s %8s %14s\n", "matmul f32 MxNxK", "rn::matmul", "cblas_sgemm", "ours/", "tiled kernel");
    std::printf("%-20s %14s %14s %8s %14s\n", "", "GFLOP/s", "GFLOP/s", "direct", "GFLOP/s");
    for (const Size& s : sizes) {
        Tensor a = uniform({s.M, s.K}, -1, 1, gen), b = uniform({s.K, s.N}, -1, 1, gen);
        Tensor c_direct = empty({s.M, s.N}), c_tiled = empty({s.M, s.N});
        const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
        Tensor c_ours;
        const double t_ours = median_time([&] { c_ours = matmul(a, b); }, budget, settle);
        double t_direct = NAN, diff = NAN;
#ifdef RN_HAVE_BLAS
        t_direct = median_time(
            [&] {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(s.M), int(s.N), int(s.K), 1.0f,
                            a.data<float>(), int(s.K), b.data<float>(), int(s.N), 0.0f, c_direct.data<float>(),
                            int(s.N));
            },
            budget, settle);
#endif
        const double t_tiled = median_time(
            [&] {
                cpu::gemm_tiled(DType::f32, false, false, s.M, s.N, s.K, 1.0, a.raw_data(), s.K, b.raw_data(), s.N,
                                0.0, c_tiled.raw_data(), s.N);
            },
            budget, settle);
        // the timed calls computed the same product: compare them (a benchmark of wrong
        // answers is worth nothing)
        const Tensor& ref = cpu::have_blas() ? c_direct : c_tiled;
        {
            auto x = c_ours.to_vector<float>(), y = ref.to_vector<float>(), z = c_tiled.to_vector<float>();
            double m = 0;
            for (size_t i = 0; i < x.size(); ++i)
                m = std::max({m, std::abs(double(x[i]) - y[i]) / (1 + std::abs(double(y[i]))),
                              std::abs(double(z[i]) - y[i]) / (1 + std::abs(double(y[i])))});
            diff = m;
        }
        MatmulRow r{s.M, s.N, s.K, flops / t_ours / 1e9, flops / t_direct / 1e9, flops / t_tiled / 1e9, diff};
        rows.push_back(r);
        char label[64];
        std::snprintf(label, sizeof label, "%lldx%lldx%lld", (long long)s.M, (long long)s.N, (long long)s.K);
        std::printf("%-20s %14.1f %14s %8s %14.1f\n", label, r.ours_gflops, cell(r.direct_gflops, 1).c_str(),
                    cell(r.ours_gflops / r.direct_gflops, 2).c_str(), r.tiled_gflops);
        if (!(diff < 1e-4)) std::printf("  WARNING: results differ (max rel diff %g)\n", diff);
    }

    // ---- bandwidth: rn::add on 2^24 f32 as users call it (a fresh output each call, so the
    // pages of the output are faulted in every time), the same kernel into an output
    // allocated once (cpu::binary_forward), and a memcpy of the same size as the ceiling
    // (each thread copies its own contiguous share, so it uses every core like the kernel)
    const int64_t n = int64_t(1) << (quick ? 22 : 24);
    Tensor x = uniform({n}, -1, 1, gen), y = uniform({n}, -1, 1, gen);
    Tensor z, z_pre = zeros({n});
    const double t_add = median_time([&] { z = add(x, y); }, budget, settle, 5);
    const double t_kernel = median_time(
        [&] {
            cpu::binary_forward(BinaryOp::add, DType::f32, z_pre.raw_data(), x.raw_data(), y.raw_data(), {n}, {1},
                                {1});
        },
        budget, settle, 5);
    {
        auto zv = z.to_vector<float>(), zp = z_pre.to_vector<float>();
        auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
        for (int64_t i = 0; i < n; i += n / 97)
            if (zv[size_t(i)] != xv[size_t(i)] + yv[size_t(i)] || zp[size_t(i)] != zv[size_t(i)])
                std::printf("  WARNING: add gave a wrong value at %lld\n", (long long)i);
    }
    std::vector<float> src(size_t(n), 1.5f), dst(size_t(n), 0.0f);
    const double t_copy = median_time(
        [&] {
#pragma omp parallel
            {
                const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
                const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
                std::memcpy(dst.data() + lo, src.data() + lo, size_t(hi - lo) * sizeof(float));
            }
        },
        budget, settle, 5);
    const double bytes_add = 3.0 * double(n) * 4, bytes_copy = 2.0 * double(n) * 4;
    const double add_gbs = bytes_add / t_add / 1e9, kernel_gbs = bytes_add / t_kernel / 1e9,
                 copy_gbs = bytes_copy / t_copy / 1e9;
    std::printf("\n%-44s %8s %8s %10s\n", ("bandwidth, f32 [" + std::to_string(n) + "]").c_str(), "GB/s", "ms",
                "of memcpy");
    std::printf("%-44s %8.1f %8.2f %10.2f\n", "rn::add (allocates its output)", add_gbs, t_add * 1e3, add_gbs / copy_gbs);
    std::printf("%-44s %8.1f %8.2f %10.2f\n", "add kernel, preallocated output", kernel_gbs, t_kernel * 1e3,
                kernel_gbs / copy_gbs);
    std::printf("%-44s %8.1f %8.2f %10.2f\n", "memcpy (ceiling)", copy_gbs, t_copy * 1e3, 1.0);

    const double load_end = load_average();
    std::printf("load average %.2f at end%s\n", load_end,
                load_end > 0.5 ? " (other processes were running: expect noise, threaded numbers most)" : "");

    // ---- JSON
    std::ofstream js(json_path);
    if (!js) {
        std::fprintf(stderr, "bench_cpu: cannot write %s\n", json_path.c_str());
        return 1;
    }
    js << "{\n  \"bench\": \"bench_cpu\",\n  \"device\": \"" << device << "\",\n  \"omp_threads\": " << threads
       << ",\n  \"blas\": " << (cpu::have_blas() ? "true" : "false") << ",\n  \"blas_threads\": " << blas_threads
       << ",\n  \"matmul_backend\": \"" << cpu::gemm_backend_name(cpu::gemm_backend()) << "\",\n  \"tiled_isa\": \""
       << cpu::gemm_tiled_isa() << "\",\n  \"load_average_start\": " << json_num(load_start)
       << ",\n  \"load_average_end\": " << json_num(load_end) << ",\n  \"statistic\": \"median\",\n  \"matmul\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        js << "    {\"M\": " << r.M << ", \"N\": " << r.N << ", \"K\": " << r.K << ", \"dtype\": \"f32\""
           << ", \"rn_matmul_gflops\": " << json_num(r.ours_gflops) << ", \"cblas_sgemm_gflops\": "
           << json_num(r.direct_gflops) << ", \"ratio_ours_over_direct\": "
           << json_num(r.ours_gflops / r.direct_gflops) << ", \"tiled_gflops\": " << json_num(r.tiled_gflops)
           << ", \"max_rel_diff\": " << json_num(r.max_rel_diff) << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    js << "  ],\n  \"bandwidth\": {\"op\": \"add\", \"dtype\": \"f32\", \"numel\": " << n
       << ", \"bytes_per_call\": " << 3 * n * 4 << ", \"add_gbs\": " << json_num(add_gbs)
       << ", \"add_kernel_preallocated_gbs\": " << json_num(kernel_gbs) << ", \"memcpy_gbs\": " << json_num(copy_gbs)
       << ", \"ratio_add_over_memcpy\": " << json_num(add_gbs / copy_gbs)
       << ", \"ratio_kernel_over_memcpy\": " << json_num(kernel_gbs / copy_gbs) << "}\n}\n";
    std::printf("\nwrote %s\n", json_path.c_str());
    return 0;
}
