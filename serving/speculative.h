// serving/speculative.h — speculative decoding for the generation engine (serving/engine.h):
// a cheap proposer guesses k tokens, the model scores all of them in one chunkwise pass from
// its saved state, the longest acceptable prefix is kept, and the state is rolled back to
// just after it by copying a fixed-size state (LanguageModel::verify / rollback) — never a
// re-prefill. Proposers: a draft model (a smaller model with the same tokenizer), or n-gram
// lookup in the sequence's own context (no second model).
//
// Acceptance is the standard speculative-sampling rule (Leviathan et al. 2023; Chen et al.
// 2023), applied to the distribution the sequence's Sampler would draw from (after logit
// bias, penalty, temperature, top-k and top-p): draft token d, drawn from q, is kept with
// probability min(1, p(d)/q(d)); at the first rejection a token is drawn from max(0, p − q)
// renormalised; if all k are kept, one more is drawn from p after them. The output is then
// distributed exactly as the target's own sampling. A greedy sequence (temperature 0) keeps
// a draft token iff it is the target's greedy choice, so its text is the same as plain
// decoding's. n-gram proposals are point masses (q = 1 at d). Derivation: docs/generation.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "serving/sampling.h"

namespace rn::nn {
class LanguageModel;
}

namespace rn::tools {

struct SpeculativeOptions {
    // a draft model: same vocabulary (the same tokenizer); null: none
    std::shared_ptr<nn::LanguageModel> draft;
    // draft-free: propose what followed the latest earlier occurrence of the context's last
    // n tokens (n from ngram_max down to ngram_min)
    bool ngram = false;
    int64_t k = 4;  // tokens proposed per step and sequence
    int64_t ngram_min = 2, ngram_max = 4;
    // Measure the tokens/s of speculative rounds and of plain batched steps (per batch-size
    // octave, as a moving average) and take the faster path, trying the other now and then:
    // on a GPU a plain step replays one CUDA graph, and speculation pays only where
    // proposals are often kept and a verification costs little more than a step. Either
    // path samples from the model's distribution, so the text's law is the same. `generate`
    // and `serve` turn it on; off, every step speculates.
    bool adaptive = false;
    bool on() const { return draft != nullptr || ngram; }
    void validate() const;  // throws rn::Error naming the bad field
};

struct SpeculativeStats {
    int64_t rounds = 0;     // sequence-steps that verified a proposal
    int64_t proposed = 0;   // draft tokens scored
    int64_t accepted = 0;   // of those, kept
    int64_t emitted = 0;    // tokens those rounds produced (accepted + one corrected/bonus each, unless a sequence ended)
    int64_t plain_steps = 0;  // decoding steps that ran plainly (adaptive choice, or nothing proposed)
    double acceptance() const { return proposed ? double(accepted) / double(proposed) : 0.0; }
};

// What `generate` and `serve` pass: --draft CKPT (loaded here; its tokenizer must be the
// target's, byte for byte), --speculate-ngram, --speculative-k. `who` prefixes errors.
// --speculative-always turns the adaptive choice (SpeculativeOptions::adaptive) off.
SpeculativeOptions speculative_from_flags(const std::string& draft_checkpoint, bool ngram, int64_t k, bool always,
                                          const std::string& target_tokenizer, const std::string& who);

// k tokens that followed the most recent earlier occurrence of the last n tokens of
// `context` (the longest n in [nmin, nmax] that has one), the copy running on into its own
// output where it reaches the end (a period-p repetition continues); empty when none does
std::vector<int32_t> ngram_propose(const std::vector<int32_t>& context, int64_t k, int64_t nmin, int64_t nmax);

struct Verdict {
    int64_t accepted = 0;  // draft tokens kept (a prefix of the proposal)
    int32_t next = -1;     // the token after them: the correction at the first rejection, or the bonus
};

// The acceptance rule above for one sequence. logits: k+1 rows of `vocab` f32, row i the
// target's logits after the context and drafts[0..i−1]; q: k rows of the draft's
// distributions (dense, as Sampler::distribution gives), or empty for point masses (n-gram).
// Draws come from `target` (its counter advances), history grows by the kept tokens.
Verdict speculative_accept(Sampler& target, const float* logits, int64_t vocab, std::vector<int32_t> history,
                           const std::vector<int32_t>& drafts, const std::vector<std::vector<double>>& q);

}  // namespace rn::tools
