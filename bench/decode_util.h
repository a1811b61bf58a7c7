// bench/decode_util.h — what bench_decode and bench_paper share to measure decoding with
// the generation engine: device memory (live and peak), random prompts, the copy-bandwidth
// ceiling on the CPU, the bytes a decode step must move (its floor), and driving an engine
// until its sequences decode.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/random.h"
#include "core/storage.h"
#include "core/tensor_math.h"
#include "cuda/memory.h"
#include "nn/lm.h"
#include "ops/ops.h"
#include "serving/engine.h"

namespace rn::bench {

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Mem {
    double live_mib = 0, peak_mib = 0;
};
inline void sync_device(const Device& d) {
    if (d.is_cuda()) cuda::synchronize(d.index);
}
inline void reset_peak(const Device& d) {
    if (d.is_cuda()) cuda::reset_peak_stats(d.index);
    else reset_cpu_peak();
}
inline Mem memory(const Device& d) {
    Mem m;
    if (d.is_cuda()) {
        auto s = cuda::memory_stats(d.index);
        m.live_mib = double(s.allocated) / (1 << 20);
        m.peak_mib = double(s.peak_allocated) / (1 << 20);
    } else {
        auto s = cpu_memory_stats();
        m.live_mib = double(s.allocated) / (1 << 20);
        m.peak_mib = double(s.peak) / (1 << 20);
    }
    return m;
}

inline std::vector<int32_t> random_prompt(int64_t n, int64_t vocab, uint64_t seed) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) p[size_t(i)] = int32_t(Generator::bits(seed, uint64_t(i)) % uint64_t(vocab));
    return p;
}

// the memory ceiling on the CPU: our own copy kernel over 2 × 256 MiB (far beyond the
// caches), bytes read + written per second — the counterpart of bench::copy_bandwidth_Bps
inline double cpu_copy_bandwidth_Bps() {
    const int64_t n = int64_t(1) << 26;
    Tensor a = full({n}, 1.0, DType::f32, Device::cpu()), b = zeros({n}, DType::f32, Device::cpu());
    const double ms = time_cpu_ms([&] { copy_nograd(b, a); }, 2, 7);
    return 2.0 * double(a.nbytes()) / (ms * 1e-3);
}

// the weights a decode step reads, in elements: all but the input embedding, which is
// looked up (a row per sequence) unless tied to the head
inline double weights_read(const nn::LanguageModel& m) {
    double n = 0;
    for (const auto& [name, p] : m.named_parameters())
        if (m.config().tie_embeddings || name.rfind("embed_tokens", 0) != 0) n += double(p.numel());
    return n;
}

// bytes a decode step of `batch` sequences must move at `ctx` tokens of context each: the
// weights in the compute dtype (`weights` from weights_read, plus one embedding row per
// sequence), and the state — RetNet's read and written (2 · state_bytes), a KV cache read
// at ctx tokens (the one token written is left out)
inline double step_bytes(const nn::LanguageModel& m, double weights, DType compute, int64_t batch, int64_t ctx) {
    const double w = (weights + double(batch * m.config().d_model)) * double(dtype_size(compute));
    const double state = m.state_grows_with_context() ? double(m.state_bytes(batch, compute, ctx))
                                                      : 2.0 * double(m.state_bytes(batch, compute, 0));
    return w + state;
}

// steps until n sequences decode (prefill done); prints progress for long prefills
inline void prefill_all(tools::Engine& e, int64_t n, const char* what) {
    auto t0 = Clock::now();
    double last = 0;
    while (e.decoding() < n) {
        e.step();
        if (ms_since(t0) - last > 2000) {
            last = ms_since(t0);
            std::fprintf(stderr, "  prefilling %s ... %.0f s\n", what, last / 1e3);
        }
    }
}

}  // namespace rn::bench
