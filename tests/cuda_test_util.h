// tests/cuda_test_util.h — for test_cuda_*.cpp: without a GPU the whole binary reports
// itself skipped (exit code 77, which CTest shows as "Skipped") and says why; and the one
// way a CUDA result is compared with the CPU's: tol_for(dtype), check_close, check_exact.
// At exit each binary prints the largest relative error it saw under each tolerance, so
// the margins are in the log.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "cuda/device.h"
#include "test_util.h"

namespace rn::test {
struct RequireGpu {
    RequireGpu() {
        if (!cuda::built_with_cuda()) {
            std::printf("SKIPPED: built without CUDA (-DRN_CUDA=OFF or no nvcc); CUDA tests not run\n");
            std::exit(77);
        }
        if (cuda::device_count() == 0) {
            std::printf("SKIPPED: no CUDA device or driver on this machine; CUDA tests not run\n");
            std::exit(77);
        }
    }
};

// The bound on ‖got − want‖ / ‖want‖ (per tensor) for a CUDA result against the CPU's on
// the same inputs. bf16 inputs are compared through f32 (cpu_ref_input): the CPU computes
// on the same bf16-rounded values, the GPU reads bf16, computes in fp32 and rounds its
// result to bf16.
//   f64  1e-12: the same math in a different order (tree sums, fused multiply-adds);
//   f32  1e-5:  fp32 accumulation on the GPU against the CPU's, which is often double;
//   bf16 1e-2:  about two bf16 ulps (2^-8 = 3.9e-3 each), the output's one rounding and
//               the rounding of intermediates some kernels keep in bf16.
// A test that needs a looser bound (a long f32 sum, a kernel with more roundings) passes
// its own number to check_close and says why beside it.
inline double tol_for(DType dt) {
    switch (dt) {
        case DType::f64: return 1e-12;
        case DType::f32: return 1e-5;
        case DType::bf16: return 1e-2;
        default: return 0.0;  // integers: exact
    }
}

// x as the CPU reference takes it: bf16 through f32 (the same, exactly representable values)
inline Tensor cpu_ref_input(const Tensor& x) {
    return x.defined() && x.dtype() == DType::bf16 ? x.to(DType::f32) : x;
}

// largest relative error seen per tolerance, printed at exit (see ReportMargins)
inline std::map<double, double>& worst_errors() {
    static std::map<double, double> w;
    return w;
}

// A contiguous tensor on the GPU whose data starts one element past a 16-byte boundary: the
// kernels must take their unvectorised path.
inline Tensor misaligned_gpu(const Tensor& x) {
    Tensor base = zeros({x.numel() + 1}, x.dtype(), Device::cuda(0));
    Tensor v = base.narrow(0, 1, x.numel()).view(x.shape());
    v.copy_(x);
    return v;
}

// how a test places an input on the GPU: as is, as a non-contiguous view, or misaligned
enum class GpuLayout { contiguous, noncontiguous, misaligned };
inline const char* gpu_layout_name(GpuLayout l) {
    return l == GpuLayout::contiguous ? "contiguous" : l == GpuLayout::noncontiguous ? "noncontiguous" : "misaligned";
}

// got (from CUDA) against want (the CPU reference): same shape, every value finite, and
// ‖got − want‖ / ‖want‖ ≤ tol. Tensors that agree to within 1e-30 everywhere pass whatever
// their size (values both sides make tiny, e.g. silu(−100) ≈ 1e-42, a subnormal on the CPU
// and 0 from the GPU's fast exp, are equal in every way that matters but 100% apart
// relatively).
inline void check_close(const Tensor& got_gpu, const Tensor& want_cpu, double tol, const std::string& what) {
    BOOST_REQUIRE_MESSAGE(got_gpu.defined(), what << ": undefined result from CUDA");
    BOOST_REQUIRE_MESSAGE(want_cpu.defined(), what << ": undefined reference");
    BOOST_TEST(got_gpu.is_cuda(), what << ": result is not on the GPU");
    BOOST_REQUIRE_MESSAGE(got_gpu.shape() == want_cpu.shape(),
                          what << ": shape " << got_gpu.shape() << " vs " << want_cpu.shape());
    Tensor got = got_gpu.to(Device::cpu()).to(DType::f64);
    Tensor want = want_cpu.to(Device::cpu()).to(DType::f64);
    int64_t bad = 0;
    for (double e : got.to_vector<double>()) bad += !std::isfinite(e);
    BOOST_REQUIRE_MESSAGE(bad == 0, what << ": " << bad << " non-finite values from CUDA");
    const double abs_diff = max_abs_diff(got, want);
    const double e = abs_diff < 1e-30 ? 0.0 : rel_err(got, want);
    BOOST_TEST(e <= tol, what << ": relative error " << e << " > " << tol << " (max abs diff " << abs_diff << ")");
    double& w = worst_errors()[tol];
    w = std::max(w, e);
}

// element-for-element equality (NaN equals NaN), dtype included: for kernels that only move
// values (index, gather, where, dropout's mask). Values of every dtype fit a double exactly.
inline void check_exact(const Tensor& got_gpu, const Tensor& want_cpu, const std::string& what) {
    BOOST_REQUIRE_MESSAGE(got_gpu.defined(), what << ": undefined result from CUDA");
    BOOST_TEST(got_gpu.is_cuda(), what << ": result is not on the GPU");
    BOOST_REQUIRE_MESSAGE(got_gpu.shape() == want_cpu.shape(),
                          what << ": shape " << got_gpu.shape() << " vs " << want_cpu.shape());
    BOOST_TEST(got_gpu.dtype() == want_cpu.dtype(), what << ": dtype");
    auto g = got_gpu.to(Device::cpu()).to_vector<double>();
    auto w = want_cpu.to_vector<double>();
    int64_t bad = 0, first = -1;
    for (size_t i = 0; i < g.size(); ++i)
        if (!(g[i] == w[i] || (std::isnan(g[i]) && std::isnan(w[i])))) {
            if (first < 0) first = int64_t(i);
            ++bad;
        }
    BOOST_TEST(bad == 0, what << ": " << bad << " of " << g.size() << " elements differ, first at " << first
                              << (first >= 0 ? ": " + std::to_string(g[size_t(first)]) + " vs " +
                                                   std::to_string(w[size_t(first)])
                                             : std::string()));
}

struct ReportMargins {
    ~ReportMargins() {
        for (auto [tol, e] : worst_errors())
            std::printf("largest relative error under tolerance %g: %.3g\n", tol, e);
    }
};
}  // namespace rn::test

using rn::test::RequireGpu;
BOOST_TEST_GLOBAL_FIXTURE(RequireGpu);
using rn::test::ReportMargins;
BOOST_TEST_GLOBAL_FIXTURE(ReportMargins);
