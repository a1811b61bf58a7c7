// bench/bench_decode.cpp — decoding with the generation engine (serving/engine.h), the
// numbers behind RetNet's promise of O(1) inference, and the same for the Llama-style
// Transformer baseline (--arch transformer), whose KV cache grows with the context:
//   1. per-token decode latency at batch 1 against context length (each sequence is first
//      prefilled, chunkwise, to that context): goal flat within 5% from 512 to 65,536;
//   2. device memory against context length (live bytes while decoding, and the peak
//      during the timed steps): goal constant;
//   3. per-step latency and throughput against batch size 1 … 256: goal batch 64 ≥ 25×
//      the batch-1 throughput;
//   4. prefill tokens/s for an 8K prompt.
// "engine" times are medians of whole Engine::step() calls as a user sees them (the
// recurrent step, the greedy choice — on the GPU there — and the ids to the host), after a
// warm-up of the whole path; "model" times are LanguageModel::step alone (CUDA events on the
// GPU). Weights are random (a decode step costs the same whatever they are).
//
// "floor": a decode step must read every weight once and the decoding state, so
//   floor ms = bytes / copy bandwidth (bytes read + written per second, measured in this run:
//              a device-to-device cudaMemcpy on the GPU, our copy kernel on the CPU)
//   bytes    = the weights in the compute dtype (the input embedding only as `batch` rows:
//              a lookup reads no more, unless it is tied to the head)
//            + RetNet: the state, read and written (2 · state_bytes);
//              Transformer: the KV cache read at that context, 2·L·Hkv·ctx·D·bytes·batch
//              (LanguageModel::state_bytes at ctx tokens; the one token written is left out),
// with ctx the mean context during the timed steps; "× floor" is the engine step over it.
// "state MiB" is Engine::state_bytes() (a KV cache is preallocated for the engine's
// max_context in every slot) and "in use MiB" Engine::state_bytes_in_use().
// Prints a table, writes JSON and an SVG plot of the three curves. A point that fails (a
// cache that does not fit) is reported and skipped.
//
// Usage: bench_decode [--quick] [--arch retnet|transformer] [--preset small|7b|...]
//                     [--vocab 32000] [--device cuda|cpu] [--dtype f32|bf16] [--steps N]
//                     [--max-context N] [--max-batch N] [--prefill N] [--prefill-chunk N]
//                     [--no-cuda-graphs] [--json PATH] [--svg PATH] [--profile]
// Defaults: on a GPU the sizes (small preset, contexts 512 … 65,536, batches
// 1 … 256, 8K prefill, bf16); without one, CPU sizes that finish in a minute or two;
// --quick: a tiny model and a few seconds on the CPU (for tests of this program).
// --profile: only two steps at batch 1 and two at batch 64, each pair between
// cudaProfilerStart/Stop, for `ncu --profile-from-start off` (a per-kernel breakdown).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench/decode_util.h"
#include "bench/svg_chart.h"
#include "cuda/device.h"
#include "cuda/memory.h"
#include "nn/lm.h"
#include "ops/ops.h"
#include "serving/engine.h"

#ifdef RN_HAVE_CUDA
#include <cuda_profiler_api.h>
#endif

using namespace rn;
using json = nlohmann::json;

namespace {
using bench::Clock;
using bench::Mem;
using bench::memory;
using bench::ms_since;
using bench::prefill_all;
using bench::random_prompt;
using bench::step_bytes;
using bench::reset_peak;
using bench::Series;
using bench::svg_chart;
using bench::weights_read;

struct Setup {
    std::string arch, preset, device, dtype;
    int64_t vocab, steps, max_context, max_batch, prefill, min_context, prefill_chunk;
    bool graphs = true;  // the engine replays each decode step as a CUDA graph (--no-cuda-graphs: eager)
};

void sync(const Device& d) { bench::sync_device(d); }

tools::EngineOptions engine_options(const Setup& s, int64_t slots, int64_t max_context) {
    tools::EngineOptions o;
    o.max_slots = slots;
    o.prefill_chunk = s.prefill_chunk;
    o.device = s.device;
    o.dtype = s.dtype;
    o.max_context = max_context;
    o.cuda_graphs = s.graphs ? 1 : 0;
    return o;  // eos_id −1: every sequence runs its full length
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = bench::has_flag(argc, argv, "--quick");
    const bool gpu = !quick && cuda::device_count() > 0;
    Setup s;
    s.arch = bench::arg_value(argc, argv, "--arch", "retnet");
    s.preset = bench::arg_value(argc, argv, "--preset", quick ? "tiny" : gpu ? "small" : "tiny");
    s.vocab = std::stoll(bench::arg_value(argc, argv, "--vocab", quick ? "512" : "32000"));
    s.device = bench::arg_value(argc, argv, "--device", gpu ? "cuda" : "cpu");
    s.dtype = bench::arg_value(argc, argv, "--dtype", Device::parse(s.device).is_cuda() ? "bf16" : "f32");
    s.steps = std::stoll(bench::arg_value(argc, argv, "--steps", quick ? "8" : gpu ? "200" : "32"));
    s.max_context = std::stoll(bench::arg_value(argc, argv, "--max-context", quick ? "1024" : gpu ? "65536" : "8192"));
    s.max_batch = std::stoll(bench::arg_value(argc, argv, "--max-batch", quick ? "16" : gpu ? "256" : "64"));
    s.prefill = std::stoll(bench::arg_value(argc, argv, "--prefill", quick ? "512" : gpu ? "8192" : "2048"));
    s.min_context = quick ? 64 : 512;
    s.prefill_chunk = std::stoll(bench::arg_value(argc, argv, "--prefill-chunk", quick ? "256" : "8192"));
    s.graphs = !bench::has_flag(argc, argv, "--no-cuda-graphs") && Device::parse(s.device).is_cuda();
    const std::string json_out = bench::json_path(argc, argv, "bench_decode.json");
    const std::string svg_out = bench::arg_value(argc, argv, "--svg", "bench_decode.svg");
    const Device dev = Device::parse(s.device);

    const DType compute = dtype_from_name(s.dtype);

    // the ceiling first, before the model takes device memory
    double bw = 0;
#ifdef RN_HAVE_CUDA
    if (dev.is_cuda()) bw = bench::copy_bandwidth_Bps();
#endif
    if (!dev.is_cuda()) bw = bench::cpu_copy_bandwidth_Bps();

    const nn::ModelConfig cfg = nn::ModelConfig::from_preset(s.preset, s.vocab, s.arch);
    std::shared_ptr<nn::LanguageModel> model = nn::make_model(cfg, 1);
    const bool kv = model->state_grows_with_context();
    std::printf("bench_decode: %s preset %s (%lld layers, d %lld, %lld heads", s.arch.c_str(), s.preset.c_str(),
                (long long)cfg.n_layers, (long long)cfg.d_model, (long long)cfg.n_heads);
    if (cfg.is_transformer()) std::printf(", %lld kv heads of %lld", (long long)cfg.kv_heads(), (long long)cfg.head_dim());
    std::printf(", %.1fM parameters), vocab %lld, %s %s%s%s; copy bandwidth %.0f GB/s\n",
                double(model->num_parameters()) / 1e6, (long long)s.vocab, s.device.c_str(), s.dtype.c_str(),
                s.graphs ? ", CUDA graphs" : "", quick ? " (--quick)" : "", bw / 1e9);
    json out = {{"arch", s.arch},       {"preset", s.preset},     {"vocab", s.vocab},
                {"device", s.device},   {"dtype", s.dtype},       {"steps", s.steps},
                {"parameters", model->num_parameters()},          {"quick", quick},
                {"n_layers", cfg.n_layers}, {"d_model", cfg.d_model}, {"n_heads", cfg.n_heads},
                {"cuda_graphs", s.graphs},  {"copy_bandwidth_Bps", bw}};
    if (cfg.is_transformer()) out["n_kv_heads"] = cfg.kv_heads(), out["ffn_dim"] = cfg.ffn_dim;
    // counted once, before an engine casts or fuses the weights (their number stays the same)
    const double w_elems = weights_read(*model);
    auto floor_ms = [&](int64_t batch, int64_t ctx) {
        return step_bytes(*model, w_elems, compute, batch, ctx) / bw * 1e3;
    };
    NoGradGuard no_grad;

    if (bench::has_flag(argc, argv, "--profile")) {
        for (int64_t b : {int64_t(1), int64_t(64)}) {
            tools::Engine e(model, engine_options(s, b, 16 + 64 + 16));
            for (int64_t i = 0; i < b; ++i) {
                tools::SamplingParams greedy;
                greedy.temperature = 0;
                e.add(random_prompt(16, s.vocab, uint64_t(1000 + i)), greedy, 64);
            }
            prefill_all(e, b, "batch");
            for (int i = 0; i < 5; ++i) e.step();
            sync(dev);
#ifdef RN_HAVE_CUDA
            cudaProfilerStart();
#endif
            for (int i = 0; i < 2; ++i) e.step();
            sync(dev);
#ifdef RN_HAVE_CUDA
            cudaProfilerStop();
#endif
            std::printf("profiled 2 steps at batch %lld\n", (long long)b);
        }
        return 0;
    }

    // ---- 1 + 2: batch 1 against context length
    std::printf("\n%9s  %14s  %14s  %9s  %8s  %10s  %10s  %10s  %10s\n", "context", "engine ms/tok", "model ms/tok",
                "floor ms", "× floor", "live MiB", "peak MiB", "state MiB", "in use MiB");
    json by_ctx = json::array();
    Series lat_e{"engine step", "#1f77b4", {}}, lat_m{"model step", "#ff7f0e", {}}, lat_f{"memory floor", "#7f7f7f", {}},
        mem_live{"live", "#2ca02c", {}}, mem_peak{"peak while decoding", "#d62728", {}},
        mem_state{"engine state", "#17becf", {}};
    size_t state_per_seq = 0;
    {
        // A warm-up of the whole path before the first timed context: without it the first
        // contexts measured (512, 1K) came out 10–40% slower than the rest in some runs (the
        // host and the GPU ramping up their clocks, first-use plan caches), which read as a
        // latency that grows or shrinks with context when it is the order of measurement.
        tools::Engine e(model, engine_options(s, 1, s.min_context + 4 * s.steps + 16));
        tools::SamplingParams greedy;
        greedy.temperature = 0;
        e.add(random_prompt(s.min_context, s.vocab, 7), greedy, 4 * s.steps);
        prefill_all(e, 1, "for the warm-up");
        const auto w0 = Clock::now();
        for (int64_t i = 0; i < 4 * s.steps && ms_since(w0) < 2000; ++i) e.step();
        sync(dev);
    }
    for (int64_t ctx = s.min_context; ctx <= s.max_context; ctx *= 2) {
        // room for the prompt, the 3 warm-up steps and the timed ones; a Transformer's cache
        // is allocated for exactly this many tokens
        const int64_t max_ctx = ctx + s.steps + 16;
        const int64_t mean_ctx = ctx + 4 + s.steps / 2;  // tokens held, on average, while timed
        double engine_ms = 0, engine_mean_ms = 0, model_ms = 0;
        size_t state_all = 0, state_used = 0;
        bool graphs_active = false;
        Mem mem;
        try {
            {
                tools::Engine e(model, engine_options(s, 1, max_ctx));
                tools::SamplingParams greedy;
                greedy.temperature = 0;
                e.add(random_prompt(ctx, s.vocab, uint64_t(ctx)), greedy, s.steps + 8);
                prefill_all(e, 1, ("to " + std::to_string(ctx)).c_str());
                for (int i = 0; i < 3; ++i) e.step();  // warm-up
                sync(dev);
                reset_peak(dev);
                // each step ends with the chosen ids on the host (a sync), so a wall clock per
                // step times it whole; the median, robust to a stray slow step, is the figure
                std::vector<double> step_ms;
                auto t0 = Clock::now();
                for (int64_t i = 0; i < s.steps; ++i) {
                    auto ts = Clock::now();
                    e.step();
                    step_ms.push_back(ms_since(ts));
                }
                sync(dev);
                engine_mean_ms = ms_since(t0) / double(s.steps);
                engine_ms = bench::median(step_ms);
                mem = memory(dev);
                state_all = e.state_bytes();
                state_used = e.state_bytes_in_use();
                graphs_active = e.cuda_graphs();
            }  // the engine's state goes back before the model-only one is made (a 7B cache at 64K is 34 GB)
            // the model's step alone, on a state of the same shape (its cost does not depend
            // on the values), so that host work (logits copy, sampling) shows apart
            std::vector<Tensor> st = model->init_states(1, dev, compute, max_ctx);
            Tensor tok = full({1}, 5.0, DType::i64, dev), pos = full({1}, double(ctx), DType::i64, dev);
            auto fn = [&] { model->step(tok, st, pos, compute); };
#ifdef RN_HAVE_CUDA
            if (dev.is_cuda()) model_ms = bench::time_cuda_ms(fn, 5, int(std::max<int64_t>(s.steps, 10)));
            else
#endif
                model_ms = bench::time_cpu_ms(fn, 2, int(std::max<int64_t>(s.steps / 2, 5)));
        } catch (const std::exception& ex) {
            std::printf("%9lld  failed: %s\n", (long long)ctx, ex.what());
            by_ctx.push_back({{"context", ctx}, {"error", ex.what()}});
            continue;
        }
        state_per_seq = state_all;
        const double fl = floor_ms(1, mean_ctx);
        std::printf("%9lld  %14.4f  %14.4f  %9.4f  %8.2f  %10.2f  %10.2f  %10.2f  %10.2f\n", (long long)ctx, engine_ms,
                    model_ms, fl, engine_ms / fl, mem.live_mib, mem.peak_mib, double(state_all) / (1 << 20),
                    double(state_used) / (1 << 20));
        by_ctx.push_back({{"context", ctx}, {"cuda_graphs_active", graphs_active}, {"engine_ms_per_token", engine_ms},
                          {"engine_mean_ms_per_token", engine_mean_ms},
                          {"model_ms_per_token", model_ms}, {"floor_ms_per_token", fl},
                          {"engine_over_floor", engine_ms / fl},
                          {"live_mib", mem.live_mib}, {"peak_mib_decoding", mem.peak_mib},
                          {"engine_max_context", max_ctx}, {"state_bytes", state_all},
                          {"state_bytes_in_use", state_used}});
        lat_e.pts.push_back({double(ctx), engine_ms});
        lat_m.pts.push_back({double(ctx), model_ms});
        lat_f.pts.push_back({double(ctx), fl});
        mem_live.pts.push_back({double(ctx), mem.live_mib});
        mem_peak.pts.push_back({double(ctx), mem.peak_mib});
        mem_state.pts.push_back({double(ctx), double(state_all) / (1 << 20)});
    }
    auto spread = [](const Series& se) {
        double lo = 1e300, hi = 0;
        for (auto& p : se.pts) lo = std::min(lo, p.second), hi = std::max(hi, p.second);
        return lo > 0 ? (hi - lo) / lo : 0.0;
    };
    const double flat = spread(lat_e), mem_flat = spread(mem_live);
    std::printf("latency spread over contexts (max/min − 1): %.1f%% (goal ≤ 5%%); live memory spread %.1f%%; "
                "state %.1f KiB per sequence%s\n", 100 * flat, 100 * mem_flat, double(state_per_seq) / 1024,
                kv ? " at the largest context (a KV cache: it grows with the context)" : "");
    out["by_context"] = by_ctx;
    out["latency_spread"] = flat;
    out["memory_spread"] = mem_flat;
    out["state_bytes_per_sequence"] = state_per_seq;

    // ---- 3: throughput against batch size (short prompts, every slot decoding)
    std::printf("\n%7s  %14s  %14s  %10s  %9s  %8s  %10s\n", "batch", "ms/step", "tokens/s", "× batch 1", "floor ms",
                "× floor", "state MiB");
    json by_batch = json::array();
    Series thr{"tokens/s", "#9467bd", {}}, step_ms{"ms per step", "#8c564b", {}};
    double tps1 = 0, speedup64 = 0;
    const int64_t batch_ctx = 16 + s.steps + 32;     // prompt 16 + 3 warm-up + steps + 8, and room
    const int64_t batch_mean_ctx = 16 + 4 + s.steps / 2;
    for (int64_t b = 1; b <= s.max_batch; b *= 2) {
        double ms = 0;
        size_t state_all = 0;
        try {
            tools::Engine e(model, engine_options(s, b, batch_ctx));
            state_all = e.state_bytes();
            for (int64_t i = 0; i < b; ++i) {
                tools::SamplingParams greedy;
                greedy.temperature = 0;
                e.add(random_prompt(16, s.vocab, uint64_t(1000 + i)), greedy, s.steps + 8);
            }
            prefill_all(e, b, "batch");
            for (int i = 0; i < 3; ++i) e.step();
            sync(dev);
            auto t0 = Clock::now();
            for (int64_t i = 0; i < s.steps; ++i) e.step();
            sync(dev);
            ms = ms_since(t0) / double(s.steps);
        } catch (const std::exception& ex) {
            std::printf("%7lld  failed: %s\n", (long long)b, ex.what());
            by_batch.push_back({{"batch", b}, {"error", ex.what()}});
            continue;
        }
        const double tps = double(b) * 1e3 / ms;
        if (b == 1) tps1 = tps;
        const double rel = tps1 > 0 ? tps / tps1 : 0.0;
        if (b == 64) speedup64 = rel;
        const double fl = floor_ms(b, batch_mean_ctx);
        std::printf("%7lld  %14.4f  %14.0f  %10.1f  %9.4f  %8.2f  %10.2f\n", (long long)b, ms, tps, rel, fl, ms / fl,
                    double(state_all) / (1 << 20));
        by_batch.push_back({{"batch", b}, {"ms_per_step", ms}, {"tokens_per_s", tps}, {"speedup_vs_batch1", rel},
                            {"floor_ms_per_step", fl}, {"step_over_floor", ms / fl}, {"state_bytes", state_all}});
        thr.pts.push_back({double(b), tps});
        step_ms.pts.push_back({double(b), ms});
    }
    if (speedup64 > 0) std::printf("batch 64 throughput = %.1f× batch 1 (goal ≥ 25×)\n", speedup64);
    out["by_batch"] = by_batch;
    out["speedup_batch64"] = speedup64;

    // ---- 4: prefill of one long prompt in one engine step (the second run is timed)
    double prefill_tps = 0;
    try {
        for (int rep = 0; rep < 2; ++rep) {
            tools::EngineOptions o = engine_options(s, 1, s.prefill + 16);
            o.prefill_chunk = s.prefill;
            tools::Engine e(model, o);
            tools::SamplingParams greedy;
            greedy.temperature = 0;
            e.add(random_prompt(s.prefill, s.vocab, 77), greedy, 4);
            sync(dev);
            auto t0 = Clock::now();
            e.step();
            sync(dev);
            prefill_tps = double(s.prefill) * 1e3 / ms_since(t0);
        }
        std::printf("\nprefill of a %lld-token prompt: %.0f tokens/s\n", (long long)s.prefill, prefill_tps);
    } catch (const std::exception& ex) {
        std::printf("\nprefill of a %lld-token prompt failed: %s\n", (long long)s.prefill, ex.what());
        out["prefill_error"] = ex.what();
    }
    out["prefill_tokens"] = s.prefill;
    out["prefill_tokens_per_s"] = prefill_tps;
    bench::write_json(json_out, out);

    // ---- the plot: three panels side by side
    std::ofstream f(svg_out);
    const double W = 1260, H = 380;
    bench::svg_open(f, W, H);
    svg_chart(f, 0, 0, 420, H, "decode latency, batch 1", "context (tokens)", "ms per token", {lat_e, lat_m, lat_f},
              false, true);
    svg_chart(f, 420, 0, 420, H, "memory while decoding", "context (tokens)", "MiB", {mem_live, mem_peak, mem_state},
              false, true);
    svg_chart(f, 840, 0, 420, H, "throughput", "batch size", "tokens/s (log)", {thr}, true, false);
    bench::svg_close(f);
    std::printf("wrote %s\n", svg_out.c_str());
    return 0;
}
