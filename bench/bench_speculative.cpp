// bench/bench_speculative.cpp — speculative decoding (serving/speculative.h) against plain
// decoding, with the generation engine as `generate` and `serve` run it: tokens/s at batch 1
// and 16 for a trained target with (a) a trained draft model and (b) n-gram lookup, the
// acceptance rate, tokens per verification, and the speedup over plain decoding measured in
// the same run on the same device. Prompts are slices of the prepared data's validation
// shard (real text); the n-gram rows also use a "repetitive" prompt (a slice said three
// times, as a document quoting itself), where lookup has something to find. Greedy by
// default, so every speculative run must give plain decoding's tokens: the table says
// whether it did (with --temperature > 0 the text differs, the distribution does not).
// "+a" rows: adaptive (SpeculativeOptions::adaptive, the default of generate and serve):
// speculative rounds only while measured faster than plain steps.
// Each configuration runs once to warm up (CUDA graphs for plain decoding are captured
// then) and is timed on a second run, from the moment every prompt is prefilled.
//
// Usage: bench_speculative --target CKPT [--draft CKPT] --data DIR [--batches 1,16]
//                          [--new 128] [--prompt-len 64] [--k 4] [--device cuda|cpu]
//                          [--dtype bf16|f32] [--temperature 0] [--json PATH]
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench/decode_util.h"
#include "cuda/device.h"
#include "nn/checkpoint.h"
#include "serving/engine.h"
#include "text/shard_file.h"

using namespace rn;
using namespace rn::bench;

namespace {

std::shared_ptr<nn::LanguageModel> load(const std::string& path) { return nn::load_model(path).model; }

struct Result {
    double seconds = 0;
    int64_t tokens = 0;
    tools::SpeculativeStats spec;
    std::map<int64_t, std::vector<int32_t>> out;  // by prompt index
};

// one timed pass: every prompt added, prefilled, then decoded to the end
Result run(tools::Engine& e, const std::vector<std::vector<int32_t>>& prompts, const tools::SamplingParams& sp,
           int64_t n_new) {
    Result r;
    std::map<int64_t, int64_t> index;
    for (size_t i = 0; i < prompts.size(); ++i) index[e.add(prompts[i], sp, n_new)] = int64_t(i);
    auto collect = [&](const std::vector<tools::EngineEvent>& evs) {
        for (const auto& ev : evs)
            if (ev.token >= 0) r.out[index[ev.seq]].push_back(ev.token);
    };
    while (e.decoding() < int64_t(prompts.size()) && !e.idle()) collect(e.step());
    const tools::SpeculativeStats before = e.speculative_stats();
    int64_t tokens = 0;
    for (const auto& [i, t] : r.out) tokens += int64_t(t.size());
    sync_device(e.device());
    const auto t0 = Clock::now();
    while (!e.idle()) collect(e.step());
    sync_device(e.device());
    r.seconds = ms_since(t0) / 1e3;
    for (const auto& [i, t] : r.out) r.tokens += int64_t(t.size());
    r.tokens -= tokens;
    r.spec = e.speculative_stats();
    r.spec.rounds -= before.rounds, r.spec.proposed -= before.proposed, r.spec.accepted -= before.accepted;
    r.spec.emitted -= before.emitted;
    r.spec.plain_steps -= before.plain_steps;
    return r;
}

std::vector<int64_t> parse_list(const std::string& s) {
    std::vector<int64_t> v;
    std::stringstream ss(s);
    for (std::string x; std::getline(ss, x, ',');) v.push_back(std::stoll(x));
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const std::string target = arg_value(argc, argv, "--target"), draft = arg_value(argc, argv, "--draft");
        const std::string data = arg_value(argc, argv, "--data");
        RN_CHECK(!target.empty() && !data.empty(), "bench_speculative: --target CKPT and --data DIR are required");
        const bool gpu = cuda::device_count() > 0;
        const std::string device = arg_value(argc, argv, "--device", gpu ? "cuda" : "cpu");
        const std::string dtype = arg_value(argc, argv, "--dtype", device == "cpu" ? "f32" : "bf16");
        const std::vector<int64_t> batches = parse_list(arg_value(argc, argv, "--batches", "1,16"));
        const int64_t n_new = std::stoll(arg_value(argc, argv, "--new", "128"));
        const int64_t plen = std::stoll(arg_value(argc, argv, "--prompt-len", "64"));
        const int64_t k = std::stoll(arg_value(argc, argv, "--k", "4"));
        tools::SamplingParams sp;
        sp.temperature = std::stod(arg_value(argc, argv, "--temperature", "0"));
        sp.ignore_eos = true;
        const std::string json = json_path(argc, argv, "bench_speculative.json");

        tools::ShardReader val(data + "/val.bin");
        const int64_t max_b = *std::max_element(batches.begin(), batches.end());
        RN_CHECK(int64_t(val.size()) > (max_b + 1) * 1000 + 3 * plen, "bench_speculative: ", data,
                 "/val.bin is too short for ", max_b, " prompts");
        std::vector<std::vector<int32_t>> natural, repetitive;
        for (int64_t i = 0; i < max_b; ++i) {
            natural.push_back(val.read(uint64_t(i * 1000), uint64_t(plen)));
            std::vector<int32_t> once = val.read(uint64_t(i * 1000 + 500), uint64_t(plen / 2)), r;
            for (int rep = 0; rep < 3; ++rep) r.insert(r.end(), once.begin(), once.end());
            repetitive.push_back(r);
        }
        std::printf("bench_speculative: target %s, draft %s, %s %s, greedy=%s, %lld new tokens per sequence, k %lld\n",
                    target.c_str(), draft.empty() ? "(none)" : draft.c_str(), device.c_str(), dtype.c_str(),
                    sp.temperature == 0 ? "yes" : "no", (long long)n_new, (long long)k);
        std::printf("%-6s %-11s %-8s %10s %10s %10s %8s %8s %6s\n", "batch", "prompts", "mode", "tokens/s",
                    "ms/token", "accepted", "tok/round", "speedup", "same");
        nlohmann::json rows = nlohmann::json::array();
        for (int64_t B : batches) {
            for (const char* kind : {"natural", "repetitive"}) {
                std::vector<std::vector<int32_t>> prompts((std::string(kind) == "natural" ? natural : repetitive).begin(),
                                                          (std::string(kind) == "natural" ? natural : repetitive).begin() + B);
                std::vector<std::string> modes = {"plain", "ngram", "ngram+a"};
                if (!draft.empty()) modes.insert(modes.begin() + 1, {"draft", "draft+a"});
                Result plain;
                for (const std::string& mode : modes) {
                    tools::EngineOptions eo;
                    eo.max_slots = B;
                    eo.device = device;
                    eo.dtype = dtype;
                    eo.max_context = plen * 2 + n_new + 8;
                    if (mode.rfind("draft", 0) == 0) eo.speculative.draft = load(draft);
                    eo.speculative.ngram = mode.rfind("ngram", 0) == 0;
                    eo.speculative.adaptive = mode.find("+a") != std::string::npos;
                    eo.speculative.k = k;
                    tools::Engine e(load(target), eo);
                    run(e, prompts, sp, n_new);  // warm-up (graphs, plans)
                    Result r = run(e, prompts, sp, n_new);
                    if (mode == "plain") plain = r;
                    const double tps = double(r.tokens) / r.seconds;
                    const double speedup = tps / (double(plain.tokens) / plain.seconds);
                    const bool same = r.out == plain.out;
                    const double acc = r.spec.acceptance();
                    const double per_round = r.spec.rounds ? double(r.spec.emitted) / double(r.spec.rounds) : 1.0;
                    std::printf("%-6lld %-11s %-8s %10.1f %10.3f %9.1f%% %8.2f %7.2fx %6s\n", (long long)B, kind,
                                mode.c_str(), tps, 1e3 * r.seconds * double(B) / double(r.tokens), 100 * acc,
                                per_round, speedup, sp.temperature == 0 ? (same ? "yes" : "NO") : "-");
                    std::fflush(stdout);
                    rows.push_back({{"batch", B}, {"prompts", kind}, {"mode", mode}, {"tokens_per_s", tps},
                                    {"ms_per_token_per_sequence", 1e3 * r.seconds * double(B) / double(r.tokens)},
                                    {"acceptance", acc}, {"proposed", r.spec.proposed}, {"accepted", r.spec.accepted},
                                    {"rounds", r.spec.rounds}, {"plain_steps", r.spec.plain_steps},
                                    {"tokens_per_round", per_round},
                                    {"speedup_vs_plain", speedup}, {"same_tokens_as_plain", same}});
                }
            }
        }
        write_json(json, {{"benchmark", "speculative"}, {"target", target}, {"draft", draft}, {"device", device},
                          {"device_name", gpu && device != "cpu" ? cuda::device_name(0) : std::string("cpu")},
                          {"dtype", dtype}, {"k", k}, {"new_tokens", n_new}, {"prompt_len", plen},
                          {"temperature", sp.temperature}, {"rows", rows}});
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_speculative: %s\n", e.what());
        return 2;
    }
}
