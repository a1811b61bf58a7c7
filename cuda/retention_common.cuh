// cuda/retention_common.cuh — what the retention kernels share (cuda/retention.cu: the
// scans and the decoding step; cuda/retention_decode.cu: the fused decoding step): the
// per-head decays passed as kernel parameters, λ_n, and the step kernels' block layout.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace rn::cuda {

constexpr int kMaxHeads = 64;  // decays one launch carries as kernel parameters

// Per-head decays of one launch's head group (heads h0 .. h0+63), as kernel parameters:
// no device buffer to upload or cache, nothing that can go stale.
struct Decays {
    double g[kMaxHeads];   // γ
    double lg[kMaxHeads];  // log γ
    double om[kMaxHeads];  // 1 − γ
};

inline Decays make_decays(const std::vector<double>& gamma, int h0, int nh) {
    Decays d{};
    for (int h = 0; h < nh; ++h) {
        const double g = gamma[size_t(h0 + h)];
        d.g[h] = g;
        d.lg[h] = std::log(g);
        d.om[h] = 1.0 - g;
    }
    return d;
}

// λ_n = 1/sqrt(c_n), c_n = −expm1((n+1)·log γ)/(1−γ): the CPU's formula, in double
__device__ __forceinline__ double lambda_at(double lg, double om, int64_t n) {
    return 1.0 / ::sqrt(-::expm1(double(n + 1) * lg) / om);
}

// The decoding step's block (cuda/retention.cu, "decoding step kernel"): 8 column threads
// × 32 row groups, each thread a 16-byte column vector of every 32nd state row, 4 rows in
// flight.
constexpr int kStepRowGroups = 32;
constexpr int kStepColThreads = 8;
constexpr int kStepUnroll = 4;

template <typename A, int V>
struct alignas(sizeof(A) * V) Vec {
    A v[V];
};

}  // namespace rn::cuda
