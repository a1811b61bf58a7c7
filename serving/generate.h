// serving/generate.h — `retnet generate`: load a checkpoint (its tokenizer included), encode
// the prompts, and let the engine (serving/engine.h) prefill them chunkwise and decode them
// token by token, all prompts in one batch; text streams out as it comes.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "serving/sampling.h"
#include "serving/speculative.h"

namespace rn::tools {

struct GenerateOptions {
    std::string checkpoint;            // .h5 written by `retnet train` (holds the tokenizer)
    std::vector<std::string> prompts;  // several: one batch; each gets the same seed, so each
                                       // completion is what that prompt gives alone
    int64_t max_tokens = 128;          // new tokens per prompt
    SamplingParams sampling;
    std::vector<std::string> stop;     // a completion ends before the first of these
    bool bos = true;                   // start every prompt with the tokenizer's <s>, as training does
    bool ignore_eos = false;           // keep going past </s> (benchmarks, tests of random models)
    std::string device = "cpu";
    std::string dtype = "f32";
    bool cuda_graphs = true;   // on CUDA, decode steps replay CUDA graphs (EngineOptions::cuda_graphs)
    int64_t prefill_chunk = 256;
    int64_t max_context = 0;  // tokens per sequence; 0: the model's default (EngineOptions)
    int64_t prefix_cache_mb = 0;  // MiB for the prefix-state cache (EngineOptions::prefix_cache_bytes); 0: off
    // speculative decoding (serving/speculative.h): a draft checkpoint with the same
    // tokenizer, or n-gram lookup in the context; k tokens proposed per step
    std::string draft;
    bool speculate_ngram = false;
    int64_t speculative_k = 4;
    bool speculative_always = false;  // speculate every step, not only when measured faster
};

struct GenerateResult {
    std::vector<std::string> texts;                  // completions (prompt excluded), cut at a stop string
    std::vector<std::vector<int32_t>> prompt_tokens; // as fed to the model (with <s> when bos)
    std::vector<std::vector<int32_t>> tokens;        // generated ids (through the stop string, if any)
    std::vector<std::string> finish_reasons;         // "length", "stop" (eos or a stop string)
    int64_t generated = 0;                           // all new tokens
    double seconds = 0, first_token_seconds = 0;     // wall time in all, and until every prompt had its first token
    size_t state_bytes = 0;                          // the engine's preallocated state
    bool speculative = false;                        // --draft or --speculate-ngram was on
    SpeculativeStats speculative_stats;              // then: rounds, proposals kept, plain steps
};

// Checks every option (names them as typed on the command line: --top-p, --max-tokens,
// ...) and throws rn::Error with the value and the allowed range; generate() calls it first.
void validate_generate_options(const GenerateOptions& opt);

// Runs the generation; writes the streamed text (one prompt) or each completion in turn
// (several) to `out` (null: silent). Throws rn::Error on bad input.
GenerateResult generate(const GenerateOptions& opt, std::FILE* out);

// The subcommand: generate() to stdout, then a tokens/s line on stderr. Returns the exit status.
int run_generate(const GenerateOptions& opt);

}  // namespace rn::tools
