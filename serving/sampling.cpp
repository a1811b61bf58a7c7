// serving/sampling.cpp — Sampler (see serving/sampling.h). The order of operations follows
// Hugging Face's generate, with OpenAI's logit bias first: logit bias, repetition penalty,
// temperature, top-k, then top-p over the renormalised top-k, then one uniform draw
// against the cumulative probabilities.
#include "serving/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/random.h"

namespace rn::tools {

void SamplingParams::validate() const {
    RN_CHECK(std::isfinite(temperature) && temperature >= 0, "sampling: temperature must be >= 0 (0 = greedy), got ",
             temperature);
    RN_CHECK(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", top_k);
    RN_CHECK(top_p > 0 && top_p <= 1, "sampling: top_p must lie in (0, 1] (1 = off), got ", top_p);
    RN_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0,
             "sampling: repetition_penalty must be > 0 (1 = off), got ", repetition_penalty);
    for (const auto& [id, bias] : logit_bias)
        RN_CHECK(id >= 0 && std::isfinite(bias) && bias >= -100 && bias <= 100,
                 "sampling: logit_bias entries must be a token id >= 0 and a bias in [-100, 100], got ", id, ": ",
                 bias);
}

std::string SamplingParams::to_string() const {
    std::ostringstream os;
    os << "temperature=" << temperature << " top_k=" << top_k << " top_p=" << top_p
       << " repetition_penalty=" << repetition_penalty << " seed=" << seed;
    if (!logit_bias.empty()) os << " logit_bias=" << logit_bias.size() << " entries";
    if (ignore_eos) os << " ignore_eos";
    return os.str();
}

int32_t argmax(const float* logits, int64_t vocab) {
    RN_CHECK(vocab > 0, "argmax: empty row");
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i)
        if (logits[i] > logits[best]) best = i;
    return int32_t(best);
}

Sampler::Sampler(const SamplingParams& params) : p_(params) { p_.validate(); }

int32_t Sampler::candidates(const float* logits, int64_t vocab, const std::vector<int32_t>& history, size_t& kept,
                            double& mx, double& z_kept) {
    work_.assign(logits, logits + vocab);
    for (int64_t i = 0; i < vocab; ++i)
        RN_CHECK(!std::isnan(work_[size_t(i)]), "Sampler::sample: logit ", i, " is NaN. HINT: the model diverged "
                 "or its weights are corrupt");
    // OpenAI adds the bias to the logits before anything else sees them
    for (const auto& [id, bias] : p_.logit_bias)
        if (id < vocab) work_[size_t(id)] += double(bias);
    if (p_.repetition_penalty != 1.0) {
        // each distinct token once, however often it was seen (CTRL)
        std::vector<int32_t> seen;
        seen.reserve(history.size());
        for (int32_t id : history)
            if (id >= 0 && id < vocab) seen.push_back(id);
        std::sort(seen.begin(), seen.end());
        seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
        for (int32_t id : seen) {
            double& l = work_[size_t(id)];
            l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
        }
    }
    auto best_first = [&](int32_t a, int32_t b) {  // a total order, so every sort is reproducible
        return work_[size_t(a)] > work_[size_t(b)] || (work_[size_t(a)] == work_[size_t(b)] && a < b);
    };
    kept = 0;
    if (p_.temperature == 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < int32_t(vocab); ++i)
            if (best_first(i, best)) best = i;
        return best;
    }
    for (double& l : work_) l /= p_.temperature;

    order_.resize(size_t(vocab));
    std::iota(order_.begin(), order_.end(), 0);
    const int64_t k = p_.top_k > 0 ? std::min(p_.top_k, vocab) : vocab;
    if (k < vocab) {
        std::nth_element(order_.begin(), order_.begin() + (k - 1), order_.end(), best_first);
        order_.resize(size_t(k));
    }
    mx = -INFINITY;
    for (int32_t id : order_) mx = std::max(mx, work_[size_t(id)]);
    if (!std::isfinite(mx)) return argmax(logits, vocab);  // every candidate at -inf: nothing to draw from
    double z = 0;
    for (int32_t id : order_) z += std::exp(work_[size_t(id)] - mx);

    kept = order_.size();
    z_kept = z;
    if (p_.top_p < 1) {
        // the nucleus is usually a few dozen tokens: sort a growing prefix instead of all V
        const double target = p_.top_p * z;
        size_t sorted = 0;
        double cum = 0;
        for (size_t m = std::min<size_t>(64, order_.size());; m = std::min(order_.size(), m * 8)) {
            std::partial_sort(order_.begin() + sorted, order_.begin() + m, order_.end(), best_first);
            for (; sorted < m; ++sorted) {
                cum += std::exp(work_[size_t(order_[sorted])] - mx);
                if (cum >= target) break;
            }
            if (sorted < m) {
                kept = sorted + 1;
                z_kept = cum;
                break;
            }
            if (m == order_.size()) {
                kept = m;  // rounding left the sum a hair below the target: keep everything
                z_kept = cum;
                break;
            }
        }
    }
    return -1;
}

int32_t Sampler::sample(const float* logits, int64_t vocab, const std::vector<int32_t>& history) {
    RN_CHECK(vocab > 0, "Sampler::sample: vocab must be positive, got ", vocab);
    // the counter advances on every call, greedy ones too, so that switching one request's
    // parameters never shifts the draws of another call index
    const uint64_t counter = calls_++;
    if (plain_greedy()) {
        // plain greedy, the common serving case: one pass over the row, no copy
        int32_t best = 0;
        for (int64_t i = 0; i < vocab; ++i) {
            RN_CHECK(!std::isnan(logits[i]), "Sampler::sample: logit ", i, " is NaN. HINT: the model diverged "
                     "or its weights are corrupt");
            if (logits[i] > logits[best]) best = int32_t(i);
        }
        return best;
    }
    size_t kept = 0;
    double mx = 0, z_kept = 0;
    const int32_t fixed = candidates(logits, vocab, history, kept, mx, z_kept);
    if (fixed >= 0) return fixed;
    const double u = Generator::uniform(p_.seed, counter) * z_kept;
    double cum = 0;
    for (size_t i = 0; i < kept; ++i) {
        cum += std::exp(work_[size_t(order_[i])] - mx);
        if (u < cum) return order_[i];
    }
    return order_[kept - 1];  // u landed in the rounding gap at the very top
}

void Sampler::distribution(const float* logits, int64_t vocab, const std::vector<int32_t>& history,
                           std::vector<double>& p) {
    RN_CHECK(vocab > 0, "Sampler::distribution: vocab must be positive, got ", vocab);
    p.assign(size_t(vocab), 0.0);
    size_t kept = 0;
    double mx = 0, z_kept = 0;
    const int32_t fixed = candidates(logits, vocab, history, kept, mx, z_kept);
    if (fixed >= 0) {
        p[size_t(fixed)] = 1;
        return;
    }
    for (size_t i = 0; i < kept; ++i) p[size_t(order_[i])] = std::exp(work_[size_t(order_[i])] - mx) / z_kept;
}

double Sampler::next_uniform() { return Generator::uniform(p_.seed, calls_++); }

int32_t draw(const std::vector<double>& p, double u) {
    RN_CHECK(!p.empty(), "draw: empty distribution");
    double z = 0;
    for (double x : p) z += x;
    RN_CHECK(z > 0, "draw: the distribution sums to ", z);
    const double t = u * z;
    double cum = 0;
    int32_t last = -1;
    for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] <= 0) continue;
        last = int32_t(i);
        cum += p[i];
        if (t < cum) return int32_t(i);
    }
    return last;
}

}  // namespace rn::tools
