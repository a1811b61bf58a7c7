// serving/sampling.h — choosing the next token from a row of logits: logit bias, greedy,
// temperature, top-k, top-p (nucleus) and a CTRL-style repetition penalty, reproducible
// from a seed.
//
// Determinism: draw i of a Sampler is Generator::uniform(seed, i) (core/random.h), a pure
// function of the seed and how many tokens this sampler has chosen so far. A sequence's
// tokens therefore never depend on what else shares its batch, on thread counts or on
// the machine: the same request with the same seed gives the same text.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rn::tools {

struct SamplingParams {
    double temperature = 1.0;         // 0 = greedy (argmax; ties go to the lowest id)
    int64_t top_k = 0;                // keep the k most likely tokens; 0 = off
    double top_p = 1.0;               // keep the smallest set whose probability reaches p; 1 = off
    double repetition_penalty = 1.0;  // CTRL (Keskar et al. 2019) on every token seen in prompt + output:
                                      // a positive logit is divided by it, a negative one multiplied; 1 = off
    uint64_t seed = 0;
    // (token id, bias) added to the raw logits before every other step (OpenAI's
    // logit_bias; a bias in [-100, 100]). Ids at or past the vocabulary are ignored here;
    // Engine::add refuses them.
    std::vector<std::pair<int32_t, float>> logit_bias;
    // vLLM's ignore_eos: the end-of-text token does not end the sequence (read by the
    // engine, not the sampler)
    bool ignore_eos = false;
    // the engine reports this many most likely alternatives (with their log-probabilities
    // under the raw logits) with each sampled token; 0: none (read by the engine)
    int64_t top_logprobs = 0;

    // throws rn::Error naming the bad field, the range it must lie in and the value that came
    void validate() const;
    std::string to_string() const;  // "temperature=0.8 top_k=40 ..." for logs
};

class Sampler {
public:
    explicit Sampler(const SamplingParams& params);  // validates
    // logits: `vocab` floats (any scale; NaN is refused); history: prompt and output so far
    // (ids outside [0, vocab) are ignored by the penalty). Returns an id in [0, vocab).
    int32_t sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history);
    const SamplingParams& params() const { return p_; }
    // The distribution sample() draws from, dense over the vocabulary: 0 outside the top-k /
    // top-p set; for temperature 0, 1 at the greedy choice. Does not advance the counter.
    // Speculative decoding (serving/speculative.h) needs it to accept or reject a draft.
    void distribution(const float* logits, int64_t vocab, const std::vector<int32_t>& history, std::vector<double>& p);
    // this sampler's next uniform draw in [0, 1), counted like a sample() call
    double next_uniform();
    bool greedy() const { return p_.temperature == 0; }
    // plain greedy (temperature 0, no penalty): the choice needs no draw, so a caller may
    // make it elsewhere (the engine does, on the GPU) and record it here with advance()
    bool plain_greedy() const { return p_.temperature == 0 && p_.repetition_penalty == 1.0 && p_.logit_bias.empty(); }
    void advance() { ++calls_; }  // counts a choice made elsewhere, keeping the counter in step
    uint64_t draws() const { return calls_; }  // tokens chosen so far (the next draw's counter)

private:
    SamplingParams p_;
    uint64_t calls_ = 0;
    std::vector<double> work_;        // penalised, tempered logits (reused between calls)
    std::vector<int32_t> order_;      // candidate ids, most likely first
    // bias, penalty and temperature into work_, then the top-k / top-p candidates into
    // order_ (the first `kept` of them, sum of exp(work_ − mx) over them z_kept); returns
    // the greedy choice for temperature 0 (kept = 0), else −1
    int32_t candidates(const float* logits, int64_t vocab, const std::vector<int32_t>& history, size_t& kept,
                       double& mx, double& z_kept);
};

// draws from dense probabilities p (need not sum to 1: a draw u in [0,1) is scaled by
// their sum); the last positive entry if rounding leaves u past the end
int32_t draw(const std::vector<double>& p, double u);

// argmax of a row, ties to the lowest id (what temperature 0 picks without a penalty)
int32_t argmax(const float* logits, int64_t vocab);

}  // namespace rn::tools
