// bench/paper_inference.cpp — `bench_paper inference`: the RetNet paper's inference claims
// (§1, Figure 1: decoding a 7B model after an 8K-token input costs 3.4× less memory, gives
// 8.4× the throughput and 15.6× lower latency than a Transformer with a KV cache; Figure 6:
// cost against input length and batch size), measured with our generation engine
// (serving/engine.h: CUDA graphs, bf16 weights, the flash decode kernel for the
// Transformer's cache) on both models at each preset, random weights (a step costs the
// same whatever they are).
//   length curve: batch 1, input 2K … 64K, then decoding: median per-token latency, the
//     device memory live while decoding and its peak (weights + state + workspace);
//   batch curve: input 8K, batch 1, 2, 4, … and the largest batch that fits (from the free
//     memory and the state per sequence; on an out-of-memory, 3/4 of it, up to 3 tries):
//     per-step latency and tokens/s. Sequences join one at a time and the timing happens
//     each time the batch reaches a point, so the contexts drift up by a few hundred tokens
//     over the curve (the JSON has each point's mean context). A RetNet's newcomers share
//     the same prompt through the engine's prefix-state cache (they prefill only the last
//     512 tokens; their state is the one a full prefill gives), a Transformer's each
//     prefill all 8K — the decoding cost measured is the same either way.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>

#include "bench/decode_util.h"
#include "bench/paper.h"
#include "core/error.h"
#include "cuda/device.h"
#include "nn/model_config.h"

namespace rn::bench::paper {
namespace {
using json = nlohmann::json;

struct Setup {
    Device dev;
    std::string device, dtype;
    DType compute;
    int64_t vocab, input, steps, max_batch, max_context, min_context, prefill_chunk;
};

tools::EngineOptions engine_options(const Setup& s, int64_t slots, int64_t max_context, int64_t prefill_chunk) {
    tools::EngineOptions o;
    o.max_slots = slots;
    o.prefill_chunk = prefill_chunk;
    o.device = s.device;
    o.dtype = s.dtype;
    o.max_context = max_context;
    return o;  // CUDA graphs on (ignored on the CPU); eos −1: every sequence runs its full length
}

tools::SamplingParams greedy() {
    tools::SamplingParams p;
    p.temperature = 0;
    return p;
}

// the median wall time of `steps` engine steps, each ending with the ids on the host
double time_steps(tools::Engine& e, int64_t steps) {
    std::vector<double> t;
    for (int64_t i = 0; i < steps; ++i) {
        auto a = Clock::now();
        e.step();
        t.push_back(ms_since(a));
    }
    return median(t);
}

// bytes the device can still give: free in the driver plus what our allocator holds unused
double free_device_bytes(const Device& d) {
#ifdef RN_HAVE_CUDA
    if (d.is_cuda()) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        auto s = cuda::memory_stats(d.index);
        return double(fr) + double(s.reserved - s.allocated);
    }
#endif
    (void)d;
    return 0;
}

// batch 1: prefill ctx tokens, then time the decode steps
json length_point(const std::shared_ptr<nn::LanguageModel>& m, const Setup& s, int64_t ctx) {
    const int64_t max_ctx = ctx + s.steps + 16;
    tools::Engine e(m, engine_options(s, 1, max_ctx, s.prefill_chunk));
    e.add(random_prompt(ctx, s.vocab, uint64_t(ctx)), greedy(), s.steps + 8);
    prefill_all(e, 1, ("to " + std::to_string(ctx)).c_str());
    for (int i = 0; i < 3; ++i) e.step();  // warm-up (the graph is captured on the second)
    sync_device(s.dev);
    reset_peak(s.dev);
    const double ms = time_steps(e, s.steps);
    sync_device(s.dev);
    const Mem mem = memory(s.dev);
    return {{"context", ctx},
            {"ms_per_token", ms},
            {"tokens_per_s", 1e3 / ms},
            {"live_mib", mem.live_mib},
            {"peak_mib", mem.peak_mib},
            {"state_bytes", e.state_bytes()},
            {"state_bytes_in_use", e.state_bytes_in_use()},
            {"cuda_graphs", e.cuda_graphs()}};
}

// the batch curve at input s.input with `slots` slots; throws on an out-of-memory
json batch_curve(const std::shared_ptr<nn::LanguageModel>& m, const Setup& s, int64_t slots, int64_t max_ctx) {
    const bool kv = m->state_grows_with_context();
    const int64_t chunk = kv ? s.prefill_chunk : std::min<int64_t>(512, s.prefill_chunk);
    tools::EngineOptions o = engine_options(s, slots, max_ctx, chunk);
    // room for the two longest prefixes of the shared prompt (the LRU keeps the newest)
    if (!kv) o.prefix_cache_bytes = size_t(2.5 * double(m->state_bytes(1, s.compute, 0)));
    tools::Engine e(m, o);
    std::vector<int64_t> targets;
    for (int64_t b = 1; b < slots; b *= 2) targets.push_back(b);
    targets.push_back(slots);
    const std::vector<int32_t> prompt = random_prompt(s.input, s.vocab, 42);
    const int64_t max_new = max_ctx - s.input - 1;
    json pts = json::array();
    std::vector<int64_t> ids;
    for (int64_t b : targets) {
        while (int64_t(ids.size()) < b) {
            ids.push_back(e.add(prompt, greedy(), max_new));
            prefill_all(e, int64_t(ids.size()), "a newcomer");
        }
        for (int i = 0; i < 3; ++i) e.step();
        sync_device(s.dev);
        reset_peak(s.dev);
        const double ms = time_steps(e, s.steps);
        sync_device(s.dev);
        const Mem mem = memory(s.dev);
        double ctx = 0;
        for (int64_t id : ids) ctx += double(e.history(id).size());
        ctx /= double(ids.size());
        pts.push_back({{"batch", b}, {"ms_per_step", ms}, {"tokens_per_s", double(b) * 1e3 / ms},
                       {"live_mib", mem.live_mib}, {"peak_mib", mem.peak_mib}, {"mean_context", ctx},
                       {"state_bytes", e.state_bytes()}});
        std::printf("    batch %5lld  %9.3f ms/step  %10.0f tokens/s  live %9.0f MiB  context %.0f\n", (long long)b, ms,
                    double(b) * 1e3 / ms, mem.live_mib, ctx);
        std::fflush(stdout);
    }
    json r = {{"points", pts}, {"prefill_chunk", chunk}, {"prefix_cache", !kv}};
    if (!kv) {
        auto ps = e.prefix_cache_stats();
        r["prefix_cache_hits"] = ps.hits;
        r["prefix_cache_bytes"] = ps.bytes;
    }
    return r;
}

json measure_model(const nn::ModelConfig& cfg, const Setup& s) {
    auto t0 = Clock::now();
    std::shared_ptr<nn::LanguageModel> m = nn::make_model(cfg, 1);
    NoGradGuard no_grad;
    const double params = double(m->num_parameters());
    const bool kv = m->state_grows_with_context();
    std::printf("\n== %s %s: %.1fM parameters, %lld layers, d %lld (built in %.0f s)\n", cfg.arch.c_str(),
                cfg.preset.c_str(), params / 1e6, (long long)cfg.n_layers, (long long)cfg.d_model, ms_since(t0) / 1e3);
    json r = {{"arch", cfg.arch}, {"preset", cfg.preset}, {"parameters", params}, {"n_layers", cfg.n_layers},
              {"d_model", cfg.d_model}, {"n_heads", cfg.n_heads}, {"state_grows", kv},
              {"state_bytes_per_sequence_at_input", m->state_bytes(1, s.compute, s.input)}};
    if (cfg.is_transformer()) r["n_kv_heads"] = cfg.kv_heads();
    // ---- the length curve (batch 1)
    json len = json::array();
    for (int64_t ctx = s.min_context; ctx <= s.max_context; ctx *= 2) {
        try {
            json p = length_point(m, s, ctx);
            std::printf("    input %6lld  %9.3f ms/token  live %9.0f MiB  peak %9.0f MiB\n", (long long)ctx,
                        p["ms_per_token"].get<double>(), p["live_mib"].get<double>(), p["peak_mib"].get<double>());
            std::fflush(stdout);
            len.push_back(p);
        } catch (const std::exception& ex) {
            std::printf("    input %6lld  failed: %s\n", (long long)ctx, ex.what());
            len.push_back({{"context", ctx}, {"error", ex.what()}, {"oom", is_out_of_memory(ex)}});
            if (s.dev.is_cuda()) cuda::empty_cache(s.dev.index);
        }
    }
    r["length"] = len;
    // the claim itself, checked on every run: a KV cache grows with the input, RetNet's
    // state does not (a violation is a bug in the model or the engine, not a result)
    double first = -1, prev = -1;
    for (const auto& p : len) {
        if (p.contains("error")) continue;
        const double b = p["state_bytes_in_use"].get<double>();
        RN_CHECK(kv ? b > prev : (first < 0 || b == first), "bench_paper inference: ", cfg.arch, " state in use ",
                 b, " bytes at input ", p["context"].get<int64_t>(), " after ", prev,
                 kv ? " (a KV cache must grow)" : " (a RetNet state must not grow)");
        if (first < 0) first = b;
        prev = b;
    }
    // ---- the batch curve at the input length; the largest batch from the memory left
    const int64_t growth = s.max_batch + 14 * (s.steps + 3) + 16;  // tokens each sequence may add
    const int64_t max_ctx = s.input + growth;
    const double per_seq = double(m->state_bytes(1, s.compute, max_ctx)) + 16.0 * double(s.vocab);  // + logits rows
    int64_t slots = s.max_batch;
    if (s.dev.is_cuda()) {
        const double budget = free_device_bytes(s.dev) * 0.92 - 1.5 * double(1 << 30) -
                              (kv ? 0.0 : 2.5 * double(m->state_bytes(1, s.compute, 0)));
        slots = std::max<int64_t>(1, std::min<int64_t>(s.max_batch, int64_t(budget / per_seq)));
    }
    for (int attempt = 0; attempt < 3; ++attempt) {
        try {
            std::printf("  batch curve at input %lld, up to %lld sequences (%.1f MiB of state each):\n",
                        (long long)s.input, (long long)slots, per_seq / (1 << 20));
            json bc = batch_curve(m, s, slots, max_ctx);
            bc["largest_batch"] = slots;
            bc["limited_by"] = slots == s.max_batch ? "--max-batch" : "memory";
            r["batch"] = bc;
            break;
        } catch (const std::exception& ex) {
            std::printf("    %lld sequences failed: %s\n", (long long)slots, ex.what());
            if (s.dev.is_cuda()) cuda::empty_cache(s.dev.index);
            if (!is_out_of_memory(ex) || slots == 1) {
                r["batch"] = {{"error", ex.what()}};
                break;
            }
            slots = std::max<int64_t>(1, slots * 3 / 4);
        }
    }
    return r;
}
}  // namespace

json run_inference(const Args& a) {
    Setup s;
    const Target t = resolve_target(a);
    s.device = t.device, s.dtype = t.dtype;
    s.dev = Device::parse(s.device);
    s.compute = dtype_from_name(s.dtype);
    s.vocab = a.vocab > 0 ? a.vocab : a.quick ? 512 : 32000;
    s.input = a.input > 0 ? a.input : a.quick ? 256 : 8192;
    s.steps = a.steps > 0 ? a.steps : a.quick ? 6 : 40;
    s.max_batch = a.max_batch > 0 ? a.max_batch : a.quick ? 8 : 512;
    s.max_context = a.max_context > 0 ? a.max_context : a.quick ? 1024 : 65536;
    s.min_context = std::max<int64_t>(s.max_context / 32, 1);
    s.prefill_chunk = a.quick ? 256 : 8192;
    std::vector<std::string> presets = a.presets;
    if (presets.empty()) presets = a.quick ? std::vector<std::string>{"tiny"} : std::vector<std::string>{"small", "medium", "7b"};
    std::printf("bench_paper inference: %s %s, vocab %lld, input %lld, %lld timed steps per point, lengths %lld … %lld, "
                "batches up to %lld%s\n", s.device.c_str(), s.dtype.c_str(), (long long)s.vocab, (long long)s.input,
                (long long)s.steps, (long long)s.min_context, (long long)s.max_context, (long long)s.max_batch,
                a.quick ? " (--quick)" : "");
    json out = {{"part", "inference"}, {"device", s.device}, {"device_name", device_label(s.device)},
                {"dtype", s.dtype},    {"vocab", s.vocab},   {"input", s.input},
                {"steps", s.steps},    {"quick", a.quick},   {"models", json::array()}};
    for (const std::string& p : presets)
        for (const std::string arch : {"retnet", "transformer"}) {
            out["models"].push_back(measure_model(nn::ModelConfig::from_preset(p, s.vocab, arch), s));
            if (s.dev.is_cuda()) cuda::empty_cache(s.dev.index);
            save_partial(a, "inference", out);
        }
    return out;
}

}  // namespace rn::bench::paper
