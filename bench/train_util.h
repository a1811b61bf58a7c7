// bench/train_util.h — what bench_train and bench_paper share to measure training: the
// FLOPs a model does per token (for MFU by the work actually done) and one timed optimizer
// step (forward, cross-entropy, backward, clip, AdamW with fp32 master weights, zero_grad)
// on a fixed random batch, median over the timed steps after a warm-up.
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

#include "bench/bench_util.h"
#include "core/random.h"
#include "core/storage.h"
#include "cuda/memory.h"
#include "nn/lm.h"
#include "nn/optim.h"
#include "ops/ops.h"
#ifdef RN_HAVE_CUDA
#include <cuda_profiler_api.h>
#endif

namespace rn::bench {

inline double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// RetNet: forward matmul + retention FLOPs per token (the backward costs twice this)
inline double retnet_forward_flops_per_token(const nn::ModelConfig& c, int64_t T, int64_t chunk, bool chunkwise) {
    const double d = double(c.d_model), vd = double(c.value_dim), f = double(c.ffn_dim), H = double(c.n_heads);
    const double Dk = double(c.head_dim()), Dv = double(c.value_head_dim());
    double proj = 2 * d * d + 2 * d * vd + vd * d + 3 * d * f;  // q,k (d×d), v,g (d×vd), out, fc1, gate, fc2
    double ret;
    if (chunkwise) {
        double C = double(std::min(chunk, T));
        // per token: intra-chunk q·kᵀ and P·v over ~C/2 keys (counted in full, as the kernels
        // compute the whole C×C tile), the inter-chunk q·S and the state update kᵀ·v
        ret = H * (2 * C * Dk + 2 * C * Dv + 2 * Dk * Dv + 2 * Dk * Dv);
    } else {
        ret = H * (2 * double(T) * Dk + 2 * double(T) * Dv) / 2;  // causal: half the T×T work
    }
    return double(c.n_layers) * (2 * proj + ret) + 2 * d * double(c.vocab_size);
}

// the Transformer's forward FLOPs per token at sequence length T: 2 per multiply-add of the
// matmul parameters (per layer q, o: d·H·D; k, v: d·Hkv·D; gate, up, down: d·f; plus the
// head d·V — not the embedding, a lookup), and the attention products q·kᵀ and p·v over
// the causal half of the T×T scores (the same formula is in bench/torch_transformer.py)
inline double transformer_forward_flops_per_token(const nn::ModelConfig& c, int64_t T) {
    const double d = double(c.d_model), f = double(c.ffn_dim), H = double(c.n_heads), Hkv = double(c.kv_heads());
    const double D = double(c.head_dim()), L = double(c.n_layers), V = double(c.vocab_size);
    const double matmul_params = L * (2 * d * H * D + 2 * d * Hkv * D + 3 * d * f) + d * V;
    const double attn = 2 * 2 * double(T) * D * H * L / 2;  // q·kᵀ and p·v, causal half
    return 2 * matmul_params + attn;
}

inline double forward_flops_per_token(const nn::ModelConfig& c, int64_t T, const nn::ForwardOptions& fo) {
    return c.is_transformer() ? transformer_forward_flops_per_token(c, T)
                              : retnet_forward_flops_per_token(c, T, fo.chunk, fo.mode == RetentionMode::chunkwise);
}

struct TrainStepTimes {
    double step_s = 0, tokens_per_s = 0, peak_gib = 0;  // median step; peak memory over the timed steps
    double fwd_s = 0, bwd_s = 0, opt_s = 0;             // one synchronised step's phases
    double loss = 0;
    std::vector<double> steps_s;
};

// Times training steps of `model` (already on its device) on random tokens [B, T+1] from a
// fixed seed. Phase times need a sync between phases, so they come from one separate,
// synchronised step after the unsynchronised timed ones.
// With `profiled` set (CUDA builds), one more step runs between cudaProfilerStart/Stop after
// the timed ones, for `ncu --profile-from-start off` (a per-kernel breakdown of one step).
inline TrainStepTimes time_train_steps(nn::LanguageModel& model, int64_t B, int64_t T, const nn::ForwardOptions& fo,
                                       int64_t steps, int64_t warmup, Device dev, bool profiled = false) {
    const int64_t V = model.config().vocab_size;
    nn::AdamW opt(model.named_parameters(), nn::AdamWOptions{});
    Generator gen(7);
    Tensor batch = randint(0, V, {B, T + 1}, gen, DType::i64);
    Tensor inputs = batch.narrow(1, 0, T).contiguous().to(dev), targets = batch.narrow(1, 1, T).contiguous().to(dev);
    auto sync = [&] {
        if (dev.is_cuda()) cuda::synchronize(dev.index);
    };
    TrainStepTimes r;
    auto step = [&](bool phases) {
        double a = now_s();
        Tensor loss = model.loss(inputs, targets, fo);
        if (phases) sync();
        double b = now_s();
        loss.backward();
        if (phases) sync();
        double c = now_s();
        // clipping folded into the update: the norm (fused kernels), then AdamW with g·scale
        const double scale = nn::clip_scale(nn::grad_norm(model.parameters()), 2.0);
        opt.step(3e-4, scale);
        model.zero_grad();
        r.loss = loss.item();  // syncs: the step is complete
        double e = now_s();
        if (phases) r.fwd_s = b - a, r.bwd_s = c - b, r.opt_s = e - c;
    };
    for (int64_t i = 0; i < warmup; ++i) step(false);
    if (dev.is_cuda()) cuda::reset_peak_stats(dev.index);
    else reset_cpu_peak();
    for (int64_t i = 0; i < steps; ++i) {
        double a = now_s();
        step(false);
        r.steps_s.push_back(now_s() - a);
    }
    r.peak_gib = double(dev.is_cuda() ? cuda::memory_stats(dev.index).peak_allocated : cpu_memory_stats().peak) /
                 double(1 << 30);
    step(true);
    if (profiled && dev.is_cuda()) {
#ifdef RN_HAVE_CUDA
        cudaProfilerStart();
#endif
        step(false);
#ifdef RN_HAVE_CUDA
        cudaProfilerStop();
#endif
    }
    r.step_s = median(r.steps_s);
    r.tokens_per_s = double(B * T) / r.step_s;
    return r;
}

}  // namespace rn::bench
