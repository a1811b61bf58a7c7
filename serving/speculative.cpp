// serving/speculative.cpp — speculative decoding (serving/speculative.h): the proposers
// (draft model, n-gram lookup), the acceptance rule, and the engine's speculative round.
// A round, for the n decoding sequences in slots 0..n−1:
//   1. each sequence may propose up to k tokens, fewer near max_new_tokens or max_context;
//   2. proposals: k+1 batched one-token steps of the draft (the last only feeds the k-th
//      proposal), snapshotting the draft's states after each, or n-gram lookup;
//   3. per sequence, one chunkwise pass of the model over [pending token, proposals] from
//      its slot (LanguageModel::verify), the acceptance rule on the logits, the kept tokens
//      and the correction/bonus emitted, and both states rolled back to just after the kept
//      ones by a copy (LanguageModel::rollback; the draft's snapshot).
#include "serving/speculative.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/tensor_math.h"
#include "nn/checkpoint.h"
#include "nn/lm.h"
#include "ops/ops.h"
#include "serving/engine.h"

namespace rn::tools {

void SpeculativeOptions::validate() const {
    RN_CHECK(!(draft && ngram), "speculative decoding: a draft model and n-gram lookup were both asked for; pick one");
    RN_CHECK(k >= 1 && k <= 32, "speculative decoding: k (tokens proposed per step) must lie in [1, 32], got ", k);
    RN_CHECK(ngram_min >= 1 && ngram_min <= ngram_max, "speculative decoding: n-gram sizes must satisfy 1 <= min <= "
             "max, got min ", ngram_min, " and max ", ngram_max);
}

SpeculativeOptions speculative_from_flags(const std::string& draft_checkpoint, bool ngram, int64_t k, bool always,
                                          const std::string& target_tokenizer, const std::string& who) {
    SpeculativeOptions so;
    so.ngram = ngram;
    so.k = k;
    so.adaptive = !always;
    RN_CHECK(!(ngram && !draft_checkpoint.empty()), who, ": --draft and --speculate-ngram both given; pick one");
    RN_CHECK(k >= 1 && k <= 32, who, ": --speculative-k must lie in [1, 32], got ", k);
    if (!draft_checkpoint.empty()) {
        nn::LoadModelOptions lo;
        lo.check = [&](const nn::Checkpoint& ck) {
            // the same ids must mean the same text: compare the tokenizers themselves, not sizes
            RN_CHECK(ck.tokenizer == target_tokenizer, who, ": the draft ", draft_checkpoint, " has ",
                     ck.tokenizer.empty() ? std::string("no tokenizer") : std::string("another tokenizer"),
                     " than the model. HINT: a draft must be trained on data prepared with the same tokenizer");
        };
        so.draft = nn::load_model(draft_checkpoint, lo).model;
    }
    so.validate();
    return so;
}

std::vector<int32_t> ngram_propose(const std::vector<int32_t>& c, int64_t k, int64_t nmin, int64_t nmax) {
    const int64_t T = int64_t(c.size());
    if (k <= 0) return {};
    // the longest suffix first: a longer match is likelier to continue the same way
    for (int64_t n = std::min(nmax, T - 1); n >= nmin; --n)
        for (int64_t j = T - n - 1; j >= 0; --j)  // the most recent earlier occurrence
            if (std::equal(c.begin() + j, c.begin() + j + n, c.end() - n)) {
                // copy what followed, on past the end of the context into the proposal itself
                // (as LZ77 copies overlap): a text repeating with period p = T − n − j then
                // gets all k tokens, not only the p that precede its end
                std::vector<int32_t> out;
                for (int64_t i = j + n; int64_t(out.size()) < k; ++i) out.push_back(i < T ? c[size_t(i)] : out[size_t(i - T)]);
                return out;
            }
    return {};
}

Verdict speculative_accept(Sampler& target, const float* logits, int64_t vocab, std::vector<int32_t> history,
                           const std::vector<int32_t>& drafts, const std::vector<std::vector<double>>& q) {
    RN_CHECK(q.empty() || q.size() == drafts.size(), "speculative_accept: ", q.size(), " draft distributions for ",
             drafts.size(), " draft tokens");
    Verdict v;
    std::vector<double> p;
    for (size_t i = 0; i < drafts.size(); ++i) {
        const float* row = logits + int64_t(i) * vocab;
        const int32_t d = drafts[i];
        RN_CHECK(d >= 0 && d < vocab, "speculative_accept: draft token ", d, " outside the vocabulary");
        if (target.greedy()) {
            // the target's own choice (with its penalty and bias): the same text as without a draft
            const int32_t choice = target.sample(row, vocab, history);
            if (choice != d) {
                v.next = choice;
                return v;
            }
        } else {
            target.distribution(row, vocab, history, p);
            const double qd = q.empty() ? 1.0 : q[i][size_t(d)];
            // keep d with probability min(1, p(d)/q(d)), written without the division
            if (!(target.next_uniform() * qd < p[size_t(d)])) {
                // rejected: the residual max(0, p − q) (for a point mass: p without d)
                std::vector<double> r(p.size());
                double z = 0;
                for (size_t j = 0; j < p.size(); ++j) {
                    const double qj = q.empty() ? (int32_t(j) == d ? 1.0 : 0.0) : q[i][j];
                    r[j] = std::max(0.0, p[j] - qj);
                    z += r[j];
                }
                // z = 0 only if p ≤ q everywhere, i.e. p = q: then d was kept with probability 1
                v.next = draw(z > 0 ? r : p, target.next_uniform());
                return v;
            }
        }
        history.push_back(d);
        ++v.accepted;
    }
    v.next = target.sample(logits + int64_t(drafts.size()) * vocab, vocab, history);  // the bonus token
    return v;
}

void Engine::draft_prefill(Seq& s) {
    if (s.draft_prefilled >= s.prefilled) return;
    std::vector<Tensor> slot;
    for (const Tensor& st : dstates_) slot.push_back(st.narrow(0, s.slot, 1));
    const int64_t n = s.prefilled - s.draft_prefilled;
    std::vector<int64_t> ids(s.tokens.begin() + s.draft_prefilled, s.tokens.begin() + s.prefilled);
    draft_->prefill(from_vector<int64_t>(ids, {1, n}, dev_), s.draft_prefilled, slot, compute_, draft_->config().chunk,
                    true);  // (its logits are not needed)
    s.draft_prefilled = s.prefilled;
}

void Engine::draft_propose(int64_t n, const std::vector<int64_t>& kmax, std::vector<std::vector<int32_t>>& prop,
                           std::vector<std::vector<std::vector<double>>>& q, std::vector<std::vector<Tensor>>& snaps) {
    const int64_t K = *std::max_element(kmax.begin(), kmax.end());
    // a fixed-size state is snapshotted after each fed token; a KV cache needs none (entries
    // past a position are overwritten before they are read)
    const bool snap = !draft_->state_grows_with_context();
    std::vector<int64_t> tok(static_cast<size_t>(n)), pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        tok[size_t(i)] = seqs_[size_t(i)].tokens.back();
        pos[size_t(i)] = int64_t(seqs_[size_t(i)].tokens.size()) - 1;
    }
    std::vector<Tensor> views;
    for (const Tensor& st : dstates_) views.push_back(st.narrow(0, 0, n));
    const int64_t M = opt_.max_slots;
    std::vector<int64_t> io(static_cast<size_t>(2 * M), 0);
    for (int64_t t = 0; t <= K; ++t) {
        // the draft's batched step, as the model's: ids and positions through io_, replayed
        // from a CUDA graph per batch size on CUDA (key −n)
        for (int64_t i = 0; i < n; ++i) io[size_t(i)] = tok[size_t(i)], io[size_t(M + i)] = pos[size_t(i)];
        copy_nograd(io_, from_vector<int64_t>(io, {2, M}));
        const Tensor logits = run_decode(-n).logits32;
        if (snap) {
            snaps.emplace_back();
            for (const Tensor& v : views) snaps.back().push_back(v.clone());
        }
        if (t == K) break;  // that step only fed the last proposal
        Tensor host = logits.to(Device::cpu()).contiguous();
        for (int64_t i = 0; i < n; ++i) {
            // a row past its own limit keeps feeding its last token at the same position:
            // harmless, its state comes back from a snapshot taken before
            if (t >= kmax[size_t(i)]) continue;
            Seq& s = seqs_[size_t(i)];
            const float* row = host.data<float>() + i * vocab_;
            std::vector<int32_t> h = s.tokens;
            h.insert(h.end(), prop[size_t(i)].begin(), prop[size_t(i)].end());
            int32_t d;
            if (s.draft_sampler.greedy()) {
                d = s.draft_sampler.sample(row, vocab_, h);  // the target is greedy too: q is not needed
            } else {
                std::vector<double> qd;
                s.draft_sampler.distribution(row, vocab_, h, qd);
                d = draw(qd, s.draft_sampler.next_uniform());
                q[size_t(i)].push_back(std::move(qd));
            }
            prop[size_t(i)].push_back(d);
            tok[size_t(i)] = d;
            ++pos[size_t(i)];
        }
    }
}

namespace {
int octave(int64_t n) {
    int o = 0;
    while (n > 1) n >>= 1, ++o;
    return o;
}
}  // namespace

bool Engine::choose_speculative(int64_t n) {
    PathRate& r = rates_[octave(n)];
    // two measurements of each first, then the faster; the slower is tried again once the
    // time spent since its last try is 20 of its steps, so probing costs at most ~5 % (its
    // rate may have changed: acceptance follows the text)
    for (int p : {1, 0})
        if (r.samples[p] < 2) return p == 1;
    const int fast = r.tps[1] >= r.tps[0] ? 1 : 0, slow = 1 - fast;
    if (r.since_probe_s >= 20 * r.step_s[slow]) {
        r.since_probe_s = 0;
        return slow == 1;
    }
    return fast == 1;
}

void Engine::record_path(int64_t n, bool speculative, int64_t tokens, double seconds) {
    if (seconds <= 0 || tokens <= 0) return;
    PathRate& r = rates_[octave(n)];
    const int p = speculative ? 1 : 0;
    const double tps = double(tokens) / seconds;
    const bool first = r.samples[p]++ == 0;
    r.tps[p] = first ? tps : 0.7 * r.tps[p] + 0.3 * tps;  // moving averages
    r.step_s[p] = first ? seconds : 0.7 * r.step_s[p] + 0.3 * seconds;
    r.since_probe_s += seconds;
}

bool Engine::speculate(int64_t n, std::vector<EngineEvent>& events, std::vector<int64_t>& done) {
    const SpeculativeOptions& so = opt_.speculative;
    std::vector<int64_t> kmax(static_cast<size_t>(n));
    int64_t K = 0;
    for (int64_t i = 0; i < n; ++i) {
        const Seq& s = seqs_[size_t(i)];
        // a round emits up to kmax + 1 tokens: within max_new_tokens and max_context
        const int64_t room = std::min(s.max_new - s.generated, opt_.max_context - int64_t(s.tokens.size())) - 1;
        kmax[size_t(i)] = std::max<int64_t>(0, std::min(so.k, room));
        K = std::max(K, kmax[size_t(i)]);
    }
    if (K == 0) return false;  // every sequence is at its last token: the plain step does it
    std::vector<std::vector<int32_t>> prop(static_cast<size_t>(n));
    std::vector<std::vector<std::vector<double>>> q(static_cast<size_t>(n));
    std::vector<std::vector<Tensor>> snaps;
    if (draft_) {
        draft_propose(n, kmax, prop, q, snaps);
    } else {
        bool any = false;
        for (int64_t i = 0; i < n; ++i) {
            prop[size_t(i)] = ngram_propose(seqs_[size_t(i)].tokens, kmax[size_t(i)], so.ngram_min, so.ngram_max);
            any = any || !prop[size_t(i)].empty();
        }
        if (!any) return false;  // nothing to verify: one batched step is cheaper than n passes
    }
    const int64_t V = vocab_;
    for (int64_t i = 0; i < n; ++i) {
        Seq& s = seqs_[size_t(i)];
        const std::vector<int32_t>& d = prop[size_t(i)];
        const int64_t m = 1 + int64_t(d.size());
        std::vector<int64_t> ids{s.tokens.back()};
        ids.insert(ids.end(), d.begin(), d.end());
        std::vector<Tensor> slot, trail;
        for (const Tensor& st : states_) slot.push_back(st.narrow(0, s.slot, 1));
        Tensor logits = model_->verify(from_vector<int64_t>(ids, {1, m}, dev_), int64_t(s.tokens.size()) - 1, slot,
                                       compute_, trail, model_->config().chunk);
        Tensor host = logits.reshape({m, V}).to(DType::f32).to(Device::cpu()).contiguous();
        const float* L = host.data<float>();
        const Verdict v = speculative_accept(s.sampler, L, V, s.tokens, d, q[size_t(i)]);
        bool finished = false;
        int64_t emitted = 0;
        for (int64_t a = 0; a <= v.accepted && !finished; ++a) {
            const float* row = L + a * V;
            double mx = -INFINITY, z = 0;
            for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
            for (int64_t j = 0; j < V; ++j) z += std::exp(double(row[j]) - mx);
            const float lse = float(mx + std::log(z));
            const int32_t tok = a < v.accepted ? d[size_t(a)] : v.next;
            EngineEvent ev = take(s, tok, double(row[tok]) - double(lse));
            add_top(ev, s, row, lse);
            finished = ev.finished;
            if (finished) done.push_back(s.id);
            events.push_back(std::move(ev));
            ++emitted;
        }
        ++sstats_.rounds;
        sstats_.proposed += int64_t(d.size());
        sstats_.accepted += v.accepted;
        sstats_.emitted += emitted;
        if (finished) continue;  // its slot is released: no state to fix
        // the state after [pending, kept drafts]: the rest rolled back by a copy
        model_->rollback(slot, trail, v.accepted + 1);
        if (!snaps.empty())
            for (size_t l = 0; l < dstates_.size(); ++l)
                copy_nograd(dstates_[l].narrow(0, s.slot, 1), snaps[size_t(v.accepted)][l].narrow(0, i, 1));
    }
    return true;
}

}  // namespace rn::tools
