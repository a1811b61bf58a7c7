// cuda/retention_decode.cu — the fused decode step of a retention layer (cuda/
// retention_decode.h). The block layout is the decoding step kernel's (cuda/retention.cu),
// its width a parameter: block = (4·CT state columns, head, sequence), 32·CT threads = CT
// column threads × 32 row groups (CT = 8 by default, step_col_threads()). Before it waits for the kernel before (cuda/pdl.h) a block loads its first rows
// of the state, which only this layer's step of the previous token wrote, through L2
// (ld.global.cg: no L1 line that could be stale). Then it rotates the head's q and k
// itself (Dk/2 angles, as cuda/rotary.cu forms them: in double, reduced modulo 2π, then
// sincosf), updates its state columns and reduces q·S. The gated norm needs the head's
// whole output row: the blocks of a head count themselves in, and the last one reads the
// row back from `scratch` (through L2 again) and writes z. Without z the kernel ends at o
// and the out_proj product normalises in its prologue (ops/decode_fused.h,
// retention_step_gated_linear): the whole head no longer waits on the fence and count.
#include "cuda/retention_decode.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/env.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/graph.h"
#include "cuda/math.cuh"
#include "cuda/pdl.cuh"
#include "cuda/retention_decode_kernels.cuh"
#include "cuda/retention_common.cuh"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

using namespace step_tc;

constexpr int kDefaultColThreads = 8;

// The counters: zeroed device ints, one per (b, h), kept for the process (a captured
// graph bakes their address in). Grown only outside a capture.
struct Counters {
    int* ptr = nullptr;
    int64_t size = 0;
};
Counters counters[16];
std::atomic<int64_t> calls{0};

int* counters_for(int64_t n) {
    const int dev = current_device();
    if (dev >= 16) return nullptr;
    Counters& c = counters[dev];
    if (c.size >= n) return c.ptr;
    if (stream_capturing()) return nullptr;
    const int64_t size = std::max<int64_t>(n, int64_t(1) << 16);  // 256 KiB: batches up to 65,536 sequence-heads never regrow
    if (c.ptr) {
        RN_CUDA_CHECK(cudaStreamSynchronize(stream()));  // no launch may still use the old ones
        RN_CUDA_CHECK(cudaFree(c.ptr));
        c.ptr = nullptr, c.size = 0;
    }
    RN_CUDA_CHECK(cudaMalloc(&c.ptr, size_t(size) * sizeof(int)));
    RN_CUDA_CHECK(cudaMemsetAsync(c.ptr, 0, size_t(size) * sizeof(int), stream()));
    c.size = size;
    return c.ptr;
}

// Column threads a block: 8 (32 columns, 256 threads) gives `small` at batch 1 only 42
// blocks for 132 SMs; narrower tiles spread one head's state over more SMs, but measured
// slower (each block rotates the whole head and joins the count: docs/generation.md,
// "The step's tile"), so 8 stays the default. Every column
// sums its rows in the same order whatever the width (step_column_sum), so the width
// changes no bit of o or of the state (only the norm's sum of squares, which adds over the
// block's threads). RN_STEP_COLS=2|4|8 picks it for A/B runs; tests set it.
std::atomic<int> col_threads_set{0};

// State rows a thread loads at once: 8 (default) or 4 (RN_STEP_UNROLL=4, A/B runs)
int step_unroll() {
    static const int u = env_choice("RN_STEP_UNROLL", {4, 8}, 8);
    return u;
}

// The angles and λ before the PDL wait (default) or after it (RN_STEP_EARLY_ANGLES=0, A/B
// runs): the same values either way
bool early_angles() {
    static const bool v = env_choice("RN_STEP_EARLY_ANGLES", {0, 1}, 1) == 1;
    return v;
}

int step_col_threads() {
    static const int from_env = env_choice("RN_STEP_COLS", {2, 4, 8}, kDefaultColThreads);
    const int v = col_threads_set.load(std::memory_order_relaxed);
    return v ? v : from_env;
}

}  // namespace

bool retention_step_gated(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma,
                          const int64_t* pos, const void* y, int64_t ldy, double k_scale, double eps, void* state,
                          void* scratch, void* z) {
    if (dt != DType::f32 && dt != DType::bf16) return false;
    if (B < 1 || B > 65535 || H < 1 || H > kMaxHeads || Dk < 2 || Dk % 2 || Dv < V || Dv % V) return false;
    if (int64_t(gamma.size()) != H || !aligned16(state)) return false;
    const size_t smem = step_tc::step_gated_smem(Dk);
    if (smem > 40 * 1024) return false;  // within the default 48 KiB with the static arrays
    int* count = z ? counters_for(B * H) : nullptr;  // o only: no count, so no counters
    if (z && !count) return false;
    const Decays d = make_decays(gamma, 0, int(H));
    const int ct = step_col_threads();
    const int64_t cols = int64_t(ct) * V;
    const dim3 grid(unsigned((Dv + cols - 1) / cols), unsigned(H), unsigned(B));
    auto run = [&](auto tag) {
        using T = decltype(tag);
        StepGated<T> p;
        p.y = static_cast<const T*>(y), p.ldy = ldy, p.pos = pos, p.state = static_cast<float*>(state);
        p.scratch = static_cast<T*>(scratch), p.z = static_cast<T*>(z), p.count = count;
        p.H = int(H), p.Dk = int(Dk), p.Dv = int(Dv), p.k_scale = float(k_scale), p.eps = float(eps);
        p.early_angles = early_angles();
        const dim3 block(unsigned(kStepRowGroups * ct));
        // every row of a thread in flight at once where Dk ≤ 256 (8 rows: all loaded before
        // the wait, while the product before still runs), else 4 at a time
        auto go = [&](auto u) {
            constexpr int U = decltype(u)::value;
            if (ct == 2) launch_pdl(step_gated_kernel<T, 2, U>, grid, block, smem, p, d);
            else if (ct == 4) launch_pdl(step_gated_kernel<T, 4, U>, grid, block, smem, p, d);
            else launch_pdl(step_gated_kernel<T, 8, U>, grid, block, smem, p, d);
        };
        if (step_unroll() == 8 && Dk <= 8 * kStepRowGroups) go(std::integral_constant<int, 8>{});
        else go(std::integral_constant<int, kStepUnroll>{});
    };
    if (dt == DType::f32) run(float{});
    else run(__nv_bfloat16{});
    calls.fetch_add(1, std::memory_order_relaxed);
    return true;
}

int64_t retention_step_gated_calls() { return calls.load(); }

int set_retention_step_col_threads(int ct) {
    if (ct != 0 && ct != 2 && ct != 4 && ct != 8)
        throw std::invalid_argument("set_retention_step_col_threads: expected 0, 2, 4 or 8 column threads, got " +
                                    std::to_string(ct));
    return col_threads_set.exchange(ct);
}

}  // namespace rn::cuda
