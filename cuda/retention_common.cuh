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

// One thread's share of a decoding step: its column vector S[i, jb .. jb+V) of the rows
// i = ty, ty+32, .. (S points at row 0, column jb) becomes γS + k_i v in place, and acc
// gains q_i times the new row. Four rows are loaded before any is stored (memory-level
// parallelism; the in-place update makes the compiler keep the order otherwise). With
// first_loaded, s already holds the first round's rows (loaded before the caller's
// pdl_wait); else every round is loaded here.
// U rows are in flight at a time (kStepUnroll unless the caller holds more); the rows add
// into acc in the same order whatever U.
template <typename A, int V, int U = kStepUnroll>
__device__ __forceinline__ void step_update_column(A* S, int64_t Dk, int64_t Dv, int ty, const A* qs, const A* ks,
                                                   const A (&vv)[V], A g, Vec<A, V> (&s)[U],
                                                   bool first_loaded, A (&acc)[V]) {
    for (int64_t i0 = ty; i0 < Dk; i0 += kStepRowGroups * U) {
        if (i0 != ty || !first_loaded) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int64_t i = i0 + int64_t(u) * kStepRowGroups;
                if (i < Dk) s[u] = *reinterpret_cast<const Vec<A, V>*>(S + i * Dv);
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int64_t i = i0 + int64_t(u) * kStepRowGroups;
            if (i < Dk) {
                const A ki = ks[i], qi = qs[i];
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    const A x = g * s[u].v[e] + ki * vv[e];  // S ← γS + kᵀv
                    s[u].v[e] = x;
                    acc[e] += qi * x;
                }
                *reinterpret_cast<Vec<A, V>*>(S + i * Dv) = s[u];
            }
        }
    }
}

// q·S for column c of the block's tile: the 32 row groups' partial sums, in order. The
// order depends on neither the tile's width W nor the block, so kernels that tile the
// columns differently still give every column the same bits.
template <typename A, int W>
__device__ __forceinline__ A step_column_sum(const A (&red)[kStepRowGroups][W], int c) {
    A o = A(0);
#pragma unroll 8
    for (int r = 0; r < kStepRowGroups; ++r) o += red[r][c];
    return o;
}

}  // namespace rn::cuda
