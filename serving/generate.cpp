// serving/generate.cpp — `retnet generate` (see serving/generate.h): checkpoint → model and
// tokenizer → Engine, stepping it until every prompt is done, with incremental
// detokenisation and stop strings per prompt (serving/text_stream.h).
#include "serving/generate.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <optional>

#include "core/error.h"
#include "nn/checkpoint.h"
#include "serving/engine.h"
#include "serving/text_stream.h"
#include "text/tokenizer.h"

namespace rn::tools {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void write(std::FILE* out, const std::string& s) {
    if (!out || s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), out);
    std::fflush(out);  // streaming: the user sees each token as it comes
}
}  // namespace

void validate_generate_options(const GenerateOptions& o) {
    // each message: the option as typed on the command line, its value, what is allowed
    // (the sampling ones keep SamplingParams' wording, which the server's errors share)
    RN_CHECK(!o.prompts.empty(), "generate: no prompt given. HINT: --prompt \"In the beginning\"");
    RN_CHECK(o.max_tokens >= 1, "generate: --max-tokens ", o.max_tokens, ": must be >= 1");
    const SamplingParams& p = o.sampling;
    RN_CHECK(std::isfinite(p.temperature) && p.temperature >= 0, "generate: --temperature ", p.temperature,
             ": temperature must be a finite number >= 0 (0 = greedy)");
    RN_CHECK(p.top_k >= 0, "generate: --top-k ", p.top_k, ": top_k must be >= 0 (0 = off)");
    RN_CHECK(p.top_p > 0 && p.top_p <= 1, "generate: --top-p ", p.top_p, ": top_p must lie in (0, 1] (1 = off)");
    RN_CHECK(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0, "generate: --repetition-penalty ",
             p.repetition_penalty, ": repetition_penalty must be a finite number > 0 (1 = off)");
    p.validate();  // whatever else the sampler requires
    RN_CHECK(o.prefill_chunk >= 1, "generate: --prefill-chunk ", o.prefill_chunk, ": must be >= 1");
    RN_CHECK(o.prefix_cache_mb >= 0, "generate: --prefix-cache-mb ", o.prefix_cache_mb, ": must be >= 0 (0: off)");
    RN_CHECK(o.speculative_k >= 1 && o.speculative_k <= 32, "generate: --speculative-k ", o.speculative_k,
             ": must lie in [1, 32]");
    RN_CHECK(o.draft.empty() || !o.speculate_ngram, "generate: --draft and --speculate-ngram both given; pick one");
    Device dev;
    try {
        dev = Device::parse(o.device);
    } catch (const Error&) {
        RN_FAIL("generate: --device '", o.device, "': expected cpu, cuda or cuda:N");
    }
    RN_CHECK(dev.index >= 0, "generate: --device '", o.device, "': expected cpu, cuda or cuda:N with N >= 0");
    DType dt = DType::i64;  // anything but f32/bf16 is refused below
    try {
        dt = dtype_from_name(o.dtype);
    } catch (const Error&) {
    }
    RN_CHECK(dt == DType::f32 || (dt == DType::bf16 && dev.is_cuda()), "generate: --dtype '", o.dtype,
             "': expected f32", dev.is_cuda() ? ", or bf16" : " (bf16 needs --device cuda)");
    StopMatcher probe(o.stop);  // refuses empty stop strings
}

GenerateResult generate(const GenerateOptions& o, std::FILE* out) {
    validate_generate_options(o);  // all of it before the model is loaded

    std::optional<Tokenizer> checked_tok;  // built by the check, before the model is built
    nn::LoadModelOptions lo;
    lo.check = [&](const nn::Checkpoint& ckpt) {
        RN_CHECK(!ckpt.tokenizer.empty(), "generate: ", o.checkpoint, " holds no tokenizer. HINT: checkpoints "
                 "written by `retnet train` carry theirs; this one was saved without");
        checked_tok.emplace(Tokenizer::from_serialized(ckpt.tokenizer));
        RN_CHECK(checked_tok->vocab_size() <= ckpt.config.vocab_size, "generate: the tokenizer has ",
                 checked_tok->vocab_size(), " ids but the model only ", ckpt.config.vocab_size);
    };
    nn::LoadedModel loaded = nn::load_model(o.checkpoint, lo);
    std::shared_ptr<nn::LanguageModel> model = std::move(loaded.model);
    Tokenizer tok = std::move(*checked_tok);

    EngineOptions eo;
    eo.max_slots = int64_t(o.prompts.size());
    eo.prefill_chunk = o.prefill_chunk;
    eo.max_context = o.max_context;
    eo.prefix_cache_bytes = size_t(o.prefix_cache_mb) << 20;
    if (!o.draft.empty() || o.speculate_ngram)
        eo.speculative = speculative_from_flags(o.draft, o.speculate_ngram, o.speculative_k, o.speculative_always,
                                                loaded.tokenizer, "generate");
    eo.device = o.device;
    eo.dtype = o.dtype;
    eo.cuda_graphs = o.cuda_graphs ? 1 : 0;
    eo.eos_id = o.ignore_eos ? -1 : tok.eos_id();
    Engine engine(model, eo);

    const size_t n = o.prompts.size();
    GenerateResult r;
    r.texts.resize(n);
    r.tokens.resize(n);
    r.finish_reasons.resize(n);
    r.state_bytes = engine.state_bytes();
    std::vector<int64_t> ids(n);
    std::vector<TextStream> streams;
    std::vector<StopMatcher> stops;
    for (size_t i = 0; i < n; ++i) {
        std::vector<int32_t> p = tok.encode(o.prompts[i]);
        if (o.bos) p.insert(p.begin(), tok.bos_id());
        RN_CHECK(!p.empty(), "generate: prompt ", i, " is empty and --no-bos leaves nothing to start from");
        r.prompt_tokens.push_back(p);
        ids[i] = engine.add(p, o.sampling, o.max_tokens);
        streams.emplace_back(tok);
        stops.emplace_back(o.stop);
    }
    const bool streaming = n == 1;
    if (streaming) write(out, o.prompts[0]);

    auto index_of = [&](int64_t seq) {
        for (size_t i = 0; i < n; ++i)
            if (ids[i] == seq) return i;
        RN_FAIL("generate: event for unknown sequence ", seq);
    };
    auto emit = [&](size_t i, const std::string& text) {
        r.texts[i] += text;
        if (streaming) write(out, text);
    };
    const auto t0 = Clock::now();
    size_t started = 0;
    std::vector<bool> done(n, false);
    while (!engine.idle()) {
        for (const EngineEvent& ev : engine.step()) {
            const size_t i = index_of(ev.seq);
            if (done[i]) continue;  // a stop string already ended it (its cancel event)
            if (r.tokens[i].empty() && ++started == n) r.first_token_seconds = since(t0);
            r.tokens[i].push_back(ev.token);
            ++r.generated;
            // the end-of-text token itself is not text
            if (!(ev.finished && ev.finish_reason == "stop")) emit(i, stops[i].push(streams[i].push(ev.token)));
            if (stops[i].stopped()) {
                engine.cancel(ev.seq);  // freed at the next step
                r.finish_reasons[i] = "stop";
                done[i] = true;
            } else if (ev.finished) {
                emit(i, stops[i].push(streams[i].flush()));
                emit(i, stops[i].flush());
                r.finish_reasons[i] = ev.finish_reason;
                done[i] = true;
            }
        }
    }
    r.seconds = since(t0);
    r.speculative = engine.speculative_on();
    r.speculative_stats = engine.speculative_stats();
    if (streaming) write(out, "\n");
    else
        for (size_t i = 0; i < n; ++i)
            if (out) std::fprintf(out, "--- %zu (%s, %zu tokens)\n%s%s\n", i, r.finish_reasons[i].c_str(),
                                  r.tokens[i].size(), o.prompts[i].c_str(), r.texts[i].c_str());
    return r;
}

int run_generate(const GenerateOptions& o) {
    GenerateResult r = generate(o, stdout);
    int64_t prompt = 0;
    for (const auto& p : r.prompt_tokens) prompt += int64_t(p.size());
    std::fprintf(stderr, "%lld prompt(s), %lld prompt tokens, %lld new tokens in %.2f s: %.1f tokens/s "
                 "(all first tokens after %.0f ms; state %.1f KiB per sequence, constant)\n",
                 (long long)r.prompt_tokens.size(), (long long)prompt, (long long)r.generated, r.seconds,
                 r.seconds > 0 ? double(r.generated) / r.seconds : 0.0, r.first_token_seconds * 1e3,
                 double(r.state_bytes) / 1024.0 / double(r.prompt_tokens.size()));
    if (r.speculative) {
        const SpeculativeStats& s = r.speculative_stats;
        std::fprintf(stderr, "speculative: %lld of %lld proposed tokens kept (%.0f%%) in %lld rounds, %lld plain steps\n",
                     (long long)s.accepted, (long long)s.proposed, 100.0 * s.acceptance(), (long long)s.rounds,
                     (long long)s.plain_steps);
    }
    return 0;
}

}  // namespace rn::tools
