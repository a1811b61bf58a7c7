// bench/bench_prefix_cache.cpp — the generation engine's prefix-state cache
// (serving/engine.h, EngineOptions::prefix_cache_bytes): what it saves when many prompts
// share a long beginning (a system prompt, a document asked several questions):
//   1. time to first token (TTFT) of a Q-token question (default 128) after a P-token shared
//      prefix (default 8192), at batch 1: cold with the cache off, cold with it on (an
//      empty cache: the prefill also copies a state into it at every boundary), and cached
//      (a request with the same prefix and another question has run before, on the same
//      engine). Medians of --repeats runs, interleaved; the prefill tokens each one really ran
//      (Engine::prefill_tokens) show the reuse.
//   2. a server's throughput: --clients sequences (default 32, max_slots = clients), each an
//      S-token system prompt (default 2048, the same for all) and its own question
//      (default 64 tokens), generating N tokens each (default 64, ignore_eos), all added at
//      once: wall time until the last finishes, generated tokens/s and TTFT (from the common
//      start), with the cache off, on but without this system prompt in it, and on after one
//      request holding the system prompt has run (warm). Medians of --repeats rounds (the
//      three engines taking turns, each round with a system prompt of its own).
// A cached prefix must end on a boundary, a multiple of the engine's granularity
// (lcm(prefill_chunk, model chunk), or --granularity rounded up to a multiple of it): P and S
// should be multiples of it (the default sizes are), else only the boundary below is reused.
// TTFT is the wall time from Engine::add to the step that returns the first token (on the
// host, so the device work is done). Weights are random unless --checkpoint (the cost is the
// same); prompts are random ids from a fixed seed. Prints tables and writes JSON.
//
// Usage: bench_prefix_cache [--quick] [--preset small|tiny|...] [--checkpoint PATH] [--vocab N]
//                           [--device cuda|cpu] [--dtype f32|bf16] [--prefix P] [--question Q]
//                           [--system S] [--client-question Q] [--clients C] [--new N]
//                           [--repeats R] [--prefill-chunk N] [--granularity N] [--cache-mb M]
//                           [--no-cuda-graphs] [--json PATH]
// Defaults as bench_decode: the small preset, cuda bf16 on a GPU; without one, the tiny
// preset on the CPU, f32 (same token counts). --quick: a tiny model and small sizes (prefix
// 512, question 32, system 256, 8 clients, 8 new tokens, 3 repeats), seconds on the CPU.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "bench/decode_util.h"
#include "cuda/device.h"
#include "nn/checkpoint.h"
#include "nn/lm.h"
#include "serving/engine.h"

using namespace rn;
using json = nlohmann::json;

namespace {
using bench::Clock;
using bench::ms_since;
using bench::random_prompt;

struct Setup {
    std::string preset, checkpoint, device, dtype;
    int64_t vocab, prefix, question, system, client_question, clients, new_tokens, repeats;
    int64_t prefill_chunk, granularity, cache_mb;
    bool graphs = true;
};

tools::EngineOptions engine_options(const Setup& s, int64_t slots, bool cache) {
    tools::EngineOptions o;
    o.max_slots = slots;
    o.prefill_chunk = s.prefill_chunk;
    o.device = s.device;
    o.dtype = s.dtype;
    o.cuda_graphs = s.graphs ? 1 : 0;
    o.prefix_cache_bytes = cache ? size_t(s.cache_mb) << 20 : 0;
    o.prefix_cache_granularity = s.granularity;
    return o;  // eos_id −1 (and ignore_eos below): every sequence runs its full length
}

tools::SamplingParams greedy() {
    tools::SamplingParams p;
    p.temperature = 0;
    p.ignore_eos = true;
    return p;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// one request at batch 1 (max_new_tokens 1: it finishes at its first token):
// TTFT in ms and the prompt tokens the engine prefilled for it
struct Ttft {
    double ms = 0;
    int64_t prefilled = 0;
};
Ttft first_token(tools::Engine& e, const std::vector<int32_t>& prompt) {
    const int64_t p0 = e.prefill_tokens();
    const auto t0 = Clock::now();
    const int64_t id = e.add(prompt, greedy(), 1);
    for (;;) {
        for (const tools::EngineEvent& ev : e.step())
            if (ev.seq == id && ev.token >= 0) {
                Ttft r{ms_since(t0), e.prefill_tokens() - p0};
                while (!e.idle()) e.step();  // (already finished: max_new_tokens 1)
                return r;
            }
        RN_CHECK(!e.idle(), "bench_prefix_cache: sequence ", id, " ended without a token");
    }
}

// the throughput round: every client added at t0, stepped until all have finished
struct Round {
    double wall_ms = 0, mean_ttft_ms = 0, median_ttft_ms = 0, max_ttft_ms = 0;
    int64_t generated = 0, prefilled = 0;
    tools::PrefixCacheStats before, after;
};
Round serve_round(tools::Engine& e, const std::vector<std::vector<int32_t>>& prompts, int64_t new_tokens) {
    Round r;
    r.before = e.prefix_cache_stats();
    const int64_t p0 = e.prefill_tokens();
    std::map<int64_t, double> ttft;  // by seq id
    const auto t0 = Clock::now();
    for (const auto& p : prompts) ttft.emplace(e.add(p, greedy(), new_tokens), -1.0);
    while (!e.idle())
        for (const tools::EngineEvent& ev : e.step()) {
            if (ev.token < 0) continue;
            ++r.generated;
            double& t = ttft.at(ev.seq);
            if (t < 0) t = ms_since(t0);
        }
    r.wall_ms = ms_since(t0);
    r.prefilled = e.prefill_tokens() - p0;
    r.after = e.prefix_cache_stats();
    std::vector<double> t;
    for (const auto& [id, ms] : ttft) t.push_back(ms);
    r.mean_ttft_ms = std::accumulate(t.begin(), t.end(), 0.0) / double(std::max<size_t>(t.size(), 1));
    r.median_ttft_ms = bench::median(t);
    r.max_ttft_ms = t.empty() ? 0 : *std::max_element(t.begin(), t.end());
    return r;
}

json stats_json(const tools::PrefixCacheStats& st) {
    return {{"hits", st.hits},       {"misses", st.misses},       {"entries", st.entries},
            {"inserts", st.inserts}, {"evictions", st.evictions}, {"tokens_reused", st.tokens_reused},
            {"bytes", st.bytes},     {"capacity", st.capacity}};
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = bench::has_flag(argc, argv, "--quick");
    const bool gpu = !quick && cuda::device_count() > 0;
    auto num = [&](const char* flag, const char* quick_def, const char* def) {
        return std::stoll(bench::arg_value(argc, argv, flag, quick ? quick_def : def));
    };
    Setup s;
    s.preset = bench::arg_value(argc, argv, "--preset", quick ? "tiny" : gpu ? "small" : "tiny");
    s.checkpoint = bench::arg_value(argc, argv, "--checkpoint", "");
    s.vocab = num("--vocab", "512", "32000");
    s.device = bench::arg_value(argc, argv, "--device", gpu ? "cuda" : "cpu");
    s.dtype = bench::arg_value(argc, argv, "--dtype", Device::parse(s.device).is_cuda() ? "bf16" : "f32");
    s.prefix = num("--prefix", "512", "8192");
    s.question = num("--question", "32", "128");
    s.system = num("--system", "256", "2048");
    s.client_question = num("--client-question", "32", "64");
    s.clients = num("--clients", "8", "32");
    s.new_tokens = num("--new", "8", "64");
    s.repeats = num("--repeats", "3", "5");
    s.prefill_chunk = num("--prefill-chunk", "256", "256");  // serve's default
    s.granularity = num("--granularity", "0", "0");          // 0: the engine's, lcm(prefill_chunk, model chunk)
    s.cache_mb = num("--cache-mb", "256", "256");             // serve's default
    s.graphs = !bench::has_flag(argc, argv, "--no-cuda-graphs") && Device::parse(s.device).is_cuda();
    const std::string json_out = bench::json_path(argc, argv, "bench_prefix_cache.json");
    RN_CHECK(s.prefix >= 1 && s.question >= 1 && s.system >= 1 && s.client_question >= 1 && s.clients >= 1 &&
                 s.new_tokens >= 1 && s.repeats >= 1 && s.cache_mb >= 1,
             "bench_prefix_cache: --prefix, --question, --system, --client-question, --clients, --new, --repeats "
             "and --cache-mb must be >= 1");

    std::shared_ptr<nn::LanguageModel> model;
    if (!s.checkpoint.empty()) {
        model = nn::load_model(s.checkpoint).model;
        s.preset = "(checkpoint)";
    } else {
        model = nn::make_model(nn::ModelConfig::from_preset(s.preset, s.vocab), 1);
    }
    const nn::ModelConfig cfg = model->config();
    s.vocab = cfg.vocab_size;
    RN_CHECK(!model->state_grows_with_context(), "bench_prefix_cache: the model's state grows with the context (",
             "a Transformer's KV cache), where the engine keeps no prefix cache; expected a RetNet");
    const size_t entry_bytes = model->state_bytes(1, dtype_from_name(s.dtype), 0);
    NoGradGuard no_grad;

    // the granularity the engine settles on (and a first engine: the model moves to the device)
    int64_t G = 0;
    {
        tools::Engine e(model, engine_options(s, 1, true));
        G = e.prefix_cache_granularity();
    }
    std::printf("bench_prefix_cache: preset %s%s%s (%lld layers, d %lld, %lld heads, chunk %lld, %.1fM parameters), "
                "vocab %lld, %s %s%s%s\n", s.preset.c_str(), s.checkpoint.empty() ? "" : " ", s.checkpoint.c_str(),
                (long long)cfg.n_layers, (long long)cfg.d_model, (long long)cfg.n_heads, (long long)cfg.chunk,
                double(model->num_parameters()) / 1e6, (long long)s.vocab, s.device.c_str(), s.dtype.c_str(),
                s.graphs ? ", CUDA graphs" : "", quick ? " (--quick)" : "");
    std::printf("prefill chunk %lld, cache granularity %lld, cache budget %lld MiB, %.2f MiB per cached state\n",
                (long long)s.prefill_chunk, (long long)G, (long long)s.cache_mb, double(entry_bytes) / (1 << 20));
    for (auto [what, n] : {std::pair<const char*, int64_t>{"prefix", s.prefix}, {"system prompt", s.system}})
        if (n < G)
            std::printf("note: the %s (%lld tokens) is shorter than the granularity %lld: none of it can come from "
                        "the cache\n", what, (long long)n, (long long)G);
        else if (n % G != 0)
            std::printf("note: the %s (%lld tokens) is not a multiple of the granularity %lld: only its first %lld "
                        "tokens can come from the cache\n", what, (long long)n, (long long)G, (long long)(n / G * G));
    json out = {{"preset", s.preset},
                {"checkpoint", s.checkpoint},
                {"vocab", s.vocab},
                {"device", s.device},
                {"dtype", s.dtype},
                {"quick", quick},
                {"n_layers", cfg.n_layers},
                {"d_model", cfg.d_model},
                {"n_heads", cfg.n_heads},
                {"model_chunk", cfg.chunk},
                {"parameters", model->num_parameters()},
                {"cuda_graphs", s.graphs},
                {"prefill_chunk", s.prefill_chunk},
                {"granularity", G},
                {"cache_bytes", size_t(s.cache_mb) << 20},
                {"state_bytes_per_entry", entry_bytes}};

    // ---- 1: TTFT after a shared prefix, at batch 1
    const std::vector<int32_t> prefix = random_prompt(s.prefix, s.vocab, 11);
    auto question = [&](uint64_t k) { return random_prompt(s.question, s.vocab, 1000 + k); };
    std::vector<double> off_ms, cold_ms, hit_ms;
    int64_t off_pf = 0, cold_pf = 0, hit_pf = 0;
    tools::PrefixCacheStats ttft_stats;
    // repeat −1 is a warm-up of the whole path (first-use costs on the device), not kept;
    // the three cases take turns so that drift in the machine's speed touches each alike
    for (int64_t rep = -1; rep < s.repeats; ++rep) {
        const uint64_t q = uint64_t(2 * (rep + 1));
        Ttft off, cold, hit;
        {
            tools::Engine e(model, engine_options(s, 1, false));
            off = first_token(e, concat(prefix, question(q)));
        }
        {
            tools::Engine e(model, engine_options(s, 1, true));  // an empty cache
            cold = first_token(e, concat(prefix, question(q)));
            hit = first_token(e, concat(prefix, question(q + 1)));  // another question, same prefix
            ttft_stats = e.prefix_cache_stats();
        }
        if (rep < 0) continue;
        off_ms.push_back(off.ms), cold_ms.push_back(cold.ms), hit_ms.push_back(hit.ms);
        off_pf = off.prefilled, cold_pf = cold.prefilled, hit_pf = hit.prefilled;
    }
    const double off_med = bench::median(off_ms), cold_med = bench::median(cold_ms), hit_med = bench::median(hit_ms);
    std::printf("\nTTFT: prefix %lld + question %lld tokens, batch 1, median of %lld\n", (long long)s.prefix,
                (long long)s.question, (long long)s.repeats);
    std::printf("%-26s  %10s  %15s  %10s\n", "case", "TTFT ms", "prefill tokens", "÷ cached");
    auto row = [&](const char* name, double ms, int64_t pf) {
        std::printf("%-26s  %10.2f  %15lld  %10.2f\n", name, ms, (long long)pf, hit_med > 0 ? ms / hit_med : 0.0);
    };
    row("cold, cache off", off_med, off_pf);
    row("cold, cache on (empty)", cold_med, cold_pf);
    row("cached (same prefix)", hit_med, hit_pf);
    std::printf("cached TTFT is %.1f× faster than cold (cache off); %lld of %lld prompt tokens reused; "
                "cache: %lld hit(s), %lld entries, %.1f MiB\n", hit_med > 0 ? off_med / hit_med : 0.0,
                (long long)(cold_pf - hit_pf), (long long)cold_pf, (long long)ttft_stats.hits,
                (long long)ttft_stats.entries, double(ttft_stats.bytes) / (1 << 20));
    if (cold_pf - hit_pf != s.prefix / G * G)
        std::printf("note: expected %lld reused tokens (the prefix's last boundary); the budget may hold too few "
                    "states\n", (long long)(s.prefix / G * G));
    out["ttft"] = {{"prefix_tokens", s.prefix},
                   {"question_tokens", s.question},
                   {"repeats", s.repeats},
                   {"cold_cache_off_ms", off_med},
                   {"cold_cache_on_ms", cold_med},
                   {"cached_ms", hit_med},
                   {"cold_cache_off_ms_all", off_ms},
                   {"cold_cache_on_ms_all", cold_ms},
                   {"cached_ms_all", hit_ms},
                   {"prefill_tokens_cold_cache_off", off_pf},
                   {"prefill_tokens_cold_cache_on", cold_pf},
                   {"prefill_tokens_cached", hit_pf},
                   {"speedup_cached_vs_cold_off", hit_med > 0 ? off_med / hit_med : 0.0},
                   {"speedup_cached_vs_cold_on", hit_med > 0 ? cold_med / hit_med : 0.0},
                   {"cache_stats", stats_json(ttft_stats)}};

    // ---- 2: many clients sharing one system prompt
    auto client_prompts = [&](uint64_t sys_seed, uint64_t q_seed) {
        const std::vector<int32_t> sys = random_prompt(s.system, s.vocab, sys_seed);
        std::vector<std::vector<int32_t>> p;
        for (int64_t c = 0; c < s.clients; ++c)
            p.push_back(concat(sys, random_prompt(s.client_question, s.vocab, q_seed + uint64_t(c))));
        return p;
    };
    std::printf("\nthroughput: %lld clients, system prompt %lld + question %lld tokens each, %lld new tokens each, "
                "all added at once (max_slots %lld)\n", (long long)s.clients, (long long)s.system,
                (long long)s.client_question, (long long)s.new_tokens, (long long)s.clients);
    std::printf("%-22s  %10s  %10s  %13s  %13s  %12s  %15s  %5s  %6s  %9s\n", "cache", "wall ms", "tokens/s",
                "mean TTFT ms", "p50 TTFT ms", "max TTFT ms", "prefill tokens", "hits", "misses", "cache MiB");
    struct Mode {
        const char* name;
        bool cache, warm;
    };
    const std::vector<Mode> modes = {{"off", false, false}, {"on, prompt not cached", true, false},
                                     {"on, warm", true, true}};
    // an engine per mode, each first through an untimed round of the same shape (first-use
    // costs, the CUDA graphs of the batch sizes met); then --repeats rounds per mode, taking
    // turns, each with a system prompt of its own (so "not cached" is never cached)
    std::vector<std::unique_ptr<tools::Engine>> engines(modes.size());
    std::vector<std::vector<Round>> by_mode(modes.size());
    std::vector<std::string> errors(modes.size());
    for (int64_t rep = -1; rep < s.repeats; ++rep) {
        const auto prompts = client_prompts(uint64_t(100 + rep), uint64_t(10000 + 1000 * (rep + 1)));
        for (size_t i = 0; i < modes.size(); ++i) {
            if (!errors[i].empty()) continue;
            try {
                if (!engines[i])
                    engines[i] = std::make_unique<tools::Engine>(model, engine_options(s, s.clients, modes[i].cache));
                tools::Engine& e = *engines[i];
                if (modes[i].warm) {  // one request holding the system prompt (another question), run to its end
                    const std::vector<int32_t> sys(prompts[0].begin(), prompts[0].begin() + s.system);
                    e.add(concat(sys, random_prompt(s.client_question, s.vocab, 7)), greedy(), 1);
                    while (!e.idle()) e.step();
                }
                Round r = serve_round(e, prompts, s.new_tokens);
                if (rep >= 0) by_mode[i].push_back(r);
            } catch (const std::exception& ex) {
                errors[i] = ex.what();
                engines[i].reset();
            }
        }
    }
    engines.clear();
    json rounds = json::array();
    double off_tps = 0;
    for (size_t i = 0; i < modes.size(); ++i) {
        const Mode& m = modes[i];
        if (!errors[i].empty()) {
            std::printf("%-22s  failed: %s\n", m.name, errors[i].c_str());
            rounds.push_back({{"cache", m.name}, {"error", errors[i]}});
            continue;
        }
        // medians over the rounds, figure by figure; the counts are the same in every round
        std::vector<double> wall, tps_all, mean_t, med_t, max_t;
        for (const Round& r : by_mode[i]) {
            wall.push_back(r.wall_ms), tps_all.push_back(double(r.generated) * 1e3 / r.wall_ms);
            mean_t.push_back(r.mean_ttft_ms), med_t.push_back(r.median_ttft_ms), max_t.push_back(r.max_ttft_ms);
        }
        const Round& r = by_mode[i].back();
        const double tps = bench::median(tps_all);
        if (!m.cache) off_tps = tps;
        const int64_t hits = r.after.hits - r.before.hits, misses = r.after.misses - r.before.misses;
        std::printf("%-22s  %10.1f  %10.1f  %13.2f  %13.2f  %12.2f  %15lld  %5lld  %6lld  %9.1f\n", m.name,
                    bench::median(wall), tps, bench::median(mean_t), bench::median(med_t), bench::median(max_t),
                    (long long)r.prefilled, (long long)hits, (long long)misses, double(r.after.bytes) / (1 << 20));
        rounds.push_back({{"cache", m.name},
                          {"prefix_cache_on", m.cache},
                          {"warmed_with_system_prompt", m.warm},
                          {"wall_ms", bench::median(wall)},
                          {"wall_ms_all", wall},
                          {"generated_tokens", r.generated},
                          {"tokens_per_s", tps},
                          {"speedup_vs_cache_off", off_tps > 0 ? tps / off_tps : 0.0},
                          {"mean_ttft_ms", bench::median(mean_t)},
                          {"median_ttft_ms", bench::median(med_t)},
                          {"max_ttft_ms", bench::median(max_t)},
                          {"prefill_tokens", r.prefilled},
                          {"hits", hits},
                          {"misses", misses},
                          {"tokens_reused", r.after.tokens_reused - r.before.tokens_reused},
                          {"cache_stats_after", stats_json(r.after)}});
    }
    std::printf("medians of %lld rounds per row (after an untimed one), each with its own system prompt. \"on, "
                "warm\": one request with the system prompt ran before the round, so every client finds it cached; "
                "\"on, prompt not cached\": the first client prefills it (and caches it) while the others wait in "
                "the queue. hits, misses: this round's; cache MiB: held after it.\n", (long long)s.repeats);
    out["throughput"] = {{"clients", s.clients},
                         {"repeats", s.repeats},
                         {"system_tokens", s.system},
                         {"question_tokens", s.client_question},
                         {"new_tokens", s.new_tokens},
                         {"rounds", rounds}};
    bench::write_json(json_out, out);
    return 0;
}
