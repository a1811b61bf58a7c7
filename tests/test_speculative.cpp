// tests/test_speculative.cpp — speculative decoding (serving/speculative.h): n-gram lookup;
// the acceptance rule leaves the target's distribution unchanged (many
// seeded draws); verify + rollback leaves the state a prefill of the kept tokens leaves, to
// float rounding; in the engine, greedy output is token for token plain decoding's — with a
// different draft (most proposals rejected), with the model's own weights as draft (all
// kept), with n-gram lookup, with a Transformer target, in continuous batches of sequences
// at different acceptance lengths — and sampled output follows the target's distribution
// (chi-square over the first three tokens of a 6-token vocabulary, fixed seeds).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <map>

#include "autograd/grad_mode.h"
#include "core/random.h"
#include "core/tensor_math.h"
#include "nn/lm.h"
#include "nn/retnet.h"
#include "serving/engine.h"
#include "serving/speculative.h"
#include "engine_test_util.h"

using namespace rn;
using namespace rn::test;
using namespace rn::tools;

BOOST_AUTO_TEST_SUITE(speculative)

namespace {

std::vector<int32_t> tokens_of(int64_t n, uint64_t seed, int64_t vocab) {
    std::vector<int32_t> t;
    for (int64_t i = 0; i < n; ++i) t.push_back(int32_t(Generator::uniform(seed, uint64_t(i)) * double(vocab)));
    return t;
}

EngineOptions options(int64_t slots = 4, int64_t max_context = 96) {
    EngineOptions o;
    o.max_slots = slots;
    o.prefill_chunk = 16;
    o.max_context = max_context;
    o.greedy_on_device = 0;
    return o;
}

SamplingParams greedy(double penalty = 1.0) {
    SamplingParams p;
    p.temperature = 0;
    p.repetition_penalty = penalty;
    p.top_logprobs = 2;
    return p;
}

struct Out {
    std::map<int64_t, std::vector<int32_t>> tokens;
    std::map<int64_t, std::vector<double>> logprobs;
};

// adds every prompt (more than the slots: the rest wait in add()'s refusals until one frees)
Out run_prompts(Engine& e, const std::vector<std::vector<int32_t>>& prompts, const std::vector<SamplingParams>& sp,
                int64_t max_new) {
    Out out;
    size_t next = 0;
    std::vector<int64_t> ids;
    for (int guard = 0; next < prompts.size() || !e.idle(); ++guard) {
        BOOST_REQUIRE(guard < 20000);
        while (next < prompts.size() && e.free_slots() > 0) {
            ids.push_back(e.add(prompts[next], sp[next % sp.size()], max_new));
            ++next;
        }
        for (const EngineEvent& ev : e.step())
            if (ev.token >= 0) {
                out.tokens[ev.seq].push_back(ev.token);
                out.logprobs[ev.seq].push_back(ev.logprob);
            }
    }
    return out;
}

void require_same_text(const Out& spec, const Out& plain, const std::string& what) {
    BOOST_TEST_CONTEXT(what) {
        BOOST_REQUIRE(spec.tokens.size() == plain.tokens.size());
        for (const auto& [id, toks] : plain.tokens) {
            BOOST_TEST_CONTEXT("sequence " << id) {
                BOOST_TEST(spec.tokens.at(id) == toks, boost::test_tools::per_element());
                // the same token's log-probability from a chunkwise pass instead of a step
                const auto& a = spec.logprobs.at(id);
                const auto& b = plain.logprobs.at(id);
                for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) BOOST_TEST(std::abs(a[i] - b[i]) < 1e-4);
            }
        }
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(ngram_lookup_proposes_what_followed_the_latest_match) {
    const std::vector<int32_t> c = {1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3};
    // suffix [1 2 3]: the latest earlier occurrence is at 4, followed by 7 8 5 1
    BOOST_TEST(ngram_propose(c, 4, 2, 3) == std::vector<int32_t>({7, 8, 5, 1}), boost::test_tools::per_element());
    BOOST_TEST(ngram_propose(c, 2, 2, 3) == std::vector<int32_t>({7, 8}), boost::test_tools::per_element());
    // the copy runs on past the end of the context: a period-3 text continues its period
    const std::vector<int32_t> d = {4, 5, 6, 4, 5};
    BOOST_TEST(ngram_propose(d, 7, 2, 4) == std::vector<int32_t>({6, 4, 5, 6, 4, 5, 6}), boost::test_tools::per_element());
    BOOST_TEST(ngram_propose({9, 3, 3, 3}, 4, 2, 3) == std::vector<int32_t>({3, 3, 3, 3}), boost::test_tools::per_element());
    BOOST_TEST(ngram_propose(d, 0, 2, 4).empty());
    // no earlier occurrence of any suffix of length >= 2
    BOOST_TEST(ngram_propose({1, 2, 3, 4}, 4, 2, 3).empty());
    // n = 1 when allowed
    BOOST_TEST(ngram_propose({7, 1, 2, 7}, 2, 1, 3) == std::vector<int32_t>({1, 2}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(options_and_drafts_are_checked) {
    SpeculativeOptions so;
    so.ngram = true;
    so.k = 0;
    BOOST_CHECK_THROW(so.validate(), Error);
    so.k = 4;
    so.ngram_min = 3, so.ngram_max = 2;
    BOOST_CHECK_THROW(so.validate(), Error);
    so.ngram_min = 1;
    so.draft = tiny_retnet(29, 1);
    BOOST_CHECK_THROW(so.validate(), Error);  // both

    EngineOptions o = options();
    o.speculative.draft = tiny_retnet(31, 1);  // another vocabulary
    try {
        Engine e(tiny_retnet(29, 2), o);
        BOOST_FAIL("a draft with another vocabulary was accepted");
    } catch (const Error& e) {
        BOOST_TEST(std::string(e.what()).find("same tokenizer") != std::string::npos);
    }
    auto model = tiny_retnet(29, 2);
    o.speculative.draft = model;
    BOOST_CHECK_THROW(Engine(model, o), Error);  // the model itself
}

BOOST_AUTO_TEST_CASE(the_acceptance_rule_keeps_the_target_distribution) {
    // fixed rows of target logits and draft distributions q ≠ p; the first emitted token
    // (the kept draft, else the correction) must be distributed as p of row 0, exactly
    const int64_t V = 5;
    const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f,   // row 0
                                       0.3f, 0.3f, 1.5f, -1.0f, 0.1f,   // row 1
                                       -0.2f, 0.8f, 0.0f, 0.5f, 1.1f};  // row 2 (bonus)
    const std::vector<std::vector<double>> q = {{0.05, 0.5, 0.2, 0.05, 0.2}, {0.2, 0.2, 0.2, 0.2, 0.2}};
    for (int variant = 0; variant < 3; ++variant) {
        SamplingParams sp;
        sp.temperature = variant == 0 ? 1.0 : 0.7;
        sp.top_k = variant == 1 ? 3 : 0;
        sp.top_p = variant == 2 ? 0.8 : 1.0;
        std::vector<double> p0;
        Sampler(sp).distribution(logits.data(), V, {}, p0);
        for (bool point_mass : {false, true}) {
            BOOST_TEST_CONTEXT("variant " << variant << (point_mass ? ", n-gram point masses" : ", draft q")) {
                const int trials = 100000;
                std::vector<double> count(V, 0.0);
                int64_t kept = 0;
                for (int t = 0; t < trials; ++t) {
                    sp.seed = uint64_t(t);
                    Sampler s(sp);
                    // the drafts: drawn from q (an independent stream), or a fixed guess
                    const int32_t d0 = point_mass ? 3 : draw(q[0], Generator::uniform(999, uint64_t(2 * t)));
                    const int32_t d1 = point_mass ? 1 : draw(q[1], Generator::uniform(999, uint64_t(2 * t + 1)));
                    const Verdict v = speculative_accept(s, logits.data(), V, {}, {d0, d1},
                                                         point_mass ? std::vector<std::vector<double>>{} : q);
                    kept += v.accepted;
                    count[size_t(v.accepted > 0 ? d0 : v.next)] += 1;
                }
                BOOST_TEST(kept > 0);  // both paths ran
                BOOST_TEST(kept < 2 * trials);
                for (int64_t j = 0; j < V; ++j) {
                    const double e = p0[size_t(j)] * trials, sd = std::sqrt(std::max(e, 1.0));
                    BOOST_TEST_CONTEXT("token " << j << ": expected " << e << ", seen " << count[size_t(j)])
                    BOOST_TEST(std::abs(count[size_t(j)] - e) < 5 * sd);
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(verify_then_rollback_is_a_prefill_of_the_kept_tokens) {
    NoGradGuard ng;
    auto m = tiny_retnet(29, 4);
    const std::vector<int32_t> prompt = tokens_of(11, 1, 29), more = tokens_of(5, 2, 29);
    auto slot_of = [&](const std::vector<Tensor>& st) {
        std::vector<Tensor> v;
        for (const Tensor& t : st) v.push_back(t.narrow(0, 0, 1));
        return v;
    };
    auto ids = [](const std::vector<int32_t>& t, size_t a, size_t b) {
        return from_vector(std::vector<int64_t>(t.begin() + long(a), t.begin() + long(b)), {1, int64_t(b - a)});
    };
    for (int64_t keep = 1; keep <= 5; ++keep) {
        BOOST_TEST_CONTEXT("keep " << keep) {
            std::vector<Tensor> a = m->init_states(1, Device::cpu(), DType::f32, 64), b = m->init_states(1, Device::cpu(), DType::f32, 64);
            m->prefill(ids(prompt, 0, 11), 0, slot_of(a), DType::f32, 4);
            m->prefill(ids(prompt, 0, 11), 0, slot_of(b), DType::f32, 4);
            std::vector<Tensor> trail;
            Tensor lv = m->verify(ids(more, 0, 5), 11, slot_of(a), DType::f32, trail, 4);
            BOOST_REQUIRE(trail.size() == 2u);
            BOOST_TEST(trail[0].size(0) == 5);
            m->rollback(slot_of(a), trail, keep);
            Tensor lp = m->prefill(ids(more, 0, size_t(keep)), 11, slot_of(b), DType::f32, 4);
            // to float rounding: a token's projections ran in a matmul of 5 rows there and of
            // `keep` rows here, which BLAS may sum in another order (bit for bit at keep 5)
            auto close = [&](const std::vector<float>& x, const std::vector<float>& y) {
                BOOST_REQUIRE(x.size() == y.size());
                double worst = 0, scale = 0;
                for (size_t i = 0; i < x.size(); ++i)
                    worst = std::max(worst, double(std::abs(x[i] - y[i]))), scale = std::max(scale, double(std::abs(y[i])));
                BOOST_TEST(scale > 0.1);
                BOOST_TEST(worst <= 1e-5 * scale);
                if (keep == 5) BOOST_TEST(worst == 0.0);
            };
            // the state: not the final one (keep < 5 changed it), the kept prefix's
            for (size_t l = 0; l < a.size(); ++l) close(a[l].to_vector<float>(), b[l].to_vector<float>());
            if (keep < 5) BOOST_TEST(a[0].to_vector<float>() != trail[0].select(0, 4).contiguous().to_vector<float>());
            // and verify's first `keep` logits are that prefill's
            close(lv.narrow(1, 0, keep).contiguous().to_vector<float>(), lp.to_vector<float>());
        }
    }
}

BOOST_AUTO_TEST_CASE(a_prefill_asked_for_the_last_logits_gives_the_last_row) {
    // the engine's prefill projects only the last position onto the vocabulary
    NoGradGuard ng;
    for (auto m : {tiny_retnet(29, 4), tiny_transformer(29, 4)}) {
        const std::vector<int32_t> prompt = tokens_of(9, 3, 29);
        std::vector<int64_t> ids(prompt.begin(), prompt.end());
        std::vector<Tensor> a = m->init_states(1, Device::cpu(), DType::f32, 16), b = m->init_states(1, Device::cpu(), DType::f32, 16);
        Tensor full = m->prefill(from_vector(ids, {1, 9}), 0, a, DType::f32, 4);
        Tensor last = m->prefill(from_vector(ids, {1, 9}), 0, b, DType::f32, 4, true);
        BOOST_TEST(last.shape() == Shape({1, 1, 29}));
        auto x = last.contiguous().to_vector<float>(), y = full.narrow(1, 8, 1).contiguous().to_vector<float>();
        double worst = 0;
        for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, double(std::abs(x[i] - y[i])));
        BOOST_TEST(worst < 1e-5);
        for (size_t l = 0; l < a.size(); ++l)  // the same state either way
            BOOST_TEST(a[l].to_vector<float>() == b[l].to_vector<float>(), boost::test_tools::per_element());
    }
}

BOOST_AUTO_TEST_CASE(greedy_speculation_gives_plain_decodings_tokens) {
    const int64_t V = 29;
    // prompts of several lengths, some repetitive (n-gram lookup finds matches), more than
    // the slots: sequences join and leave the batch at different acceptance lengths
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 10; ++i) {
        std::vector<int32_t> p = tokens_of(3 + 4 * i, uint64_t(10 + i), V);
        if (i % 2) {
            std::vector<int32_t> r = p;
            p.insert(p.end(), r.begin(), r.end());
        }
        prompts.push_back(p);
    }
    const std::vector<SamplingParams> sp = {greedy(), greedy(1.3)};
    Engine plain(tiny_retnet(V, 7), options());
    const Out ref = run_prompts(plain, prompts, sp, 24);

    struct Case {
        std::string name;
        std::shared_ptr<nn::LanguageModel> draft;
        bool ngram;
        int64_t k;
    };
    const std::vector<Case> cases = {{"another model as draft", tiny_retnet(V, 99, 8), false, 4},
                                     {"the model's own weights as draft", tiny_retnet(V, 7), false, 3},
                                     {"n-gram lookup", nullptr, true, 5},
                                     {"adaptive, the model's own weights as draft", tiny_retnet(V, 7), false, 3}};
    for (const Case& c : cases) {
        EngineOptions o = options();
        o.speculative.draft = c.draft;
        o.speculative.ngram = c.ngram;
        o.speculative.k = c.k;
        o.speculative.adaptive = c.name.rfind("adaptive", 0) == 0;
        Engine e(tiny_retnet(V, 7), o);
        const Out got = run_prompts(e, prompts, sp, 24);
        require_same_text(got, ref, c.name);
        const SpeculativeStats& st = e.speculative_stats();
        BOOST_TEST_MESSAGE(c.name << ": " << st.rounds << " rounds, " << st.accepted << "/" << st.proposed
                                  << " proposals kept, " << st.emitted << " tokens");
        BOOST_TEST(st.rounds > 0);
        BOOST_TEST(st.proposed > 0);
        if (c.name == "the model's own weights as draft") BOOST_TEST(st.accepted == st.proposed);  // every one kept
        if (o.speculative.adaptive) BOOST_TEST(st.plain_steps > 0);  // both paths measured: the text is still the same
        else if (!c.ngram) BOOST_TEST(st.plain_steps < st.rounds / 10);  // only steps where every sequence was at its last token
        if (c.name == "another model as draft") BOOST_TEST(st.accepted < st.proposed);             // rejections ran
        if (c.ngram) BOOST_TEST(st.accepted > 0);
        // each round: the kept drafts and one more, unless the sequence ended inside it
        BOOST_TEST(st.emitted <= st.accepted + st.rounds);
        BOOST_TEST(st.emitted > st.accepted);
    }
}

BOOST_AUTO_TEST_CASE(a_transformer_target_and_draft_roll_back_by_position) {
    const int64_t V = 23;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 6; ++i) {
        std::vector<int32_t> p = tokens_of(4 + 3 * i, uint64_t(40 + i), V);
        p.insert(p.end(), p.begin(), p.end());
        prompts.push_back(p);
    }
    Engine plain(tiny_transformer(V, 5), options(3, 128));
    const Out ref = run_prompts(plain, prompts, {greedy()}, 20);
    for (int variant = 0; variant < 2; ++variant) {
        EngineOptions o = options(3, 128);
        if (variant == 0) o.speculative.ngram = true;
        else o.speculative.draft = tiny_transformer(V, 77);  // a KV-cache draft: no snapshots
        Engine e(tiny_transformer(V, 5), o);
        require_same_text(run_prompts(e, prompts, {greedy()}, 20), ref, variant ? "transformer draft" : "n-gram");
        BOOST_TEST(e.speculative_stats().rounds > 0);
    }
}

BOOST_AUTO_TEST_CASE(sampled_speculation_follows_the_target_distribution) {
    // vocabulary 6: the exact joint distribution of the first three tokens has 216 cells,
    // computed from the model's logits; N seeded sequences drafted by another model
    const int64_t V = 6, N = 6000;
    auto target = tiny_retnet(V, 21);
    SamplingParams sp;
    sp.temperature = 1.0;
    const std::vector<int32_t> prompt = {1, 4, 2, 5, 0};
    std::vector<double> expect(size_t(V * V * V), 0.0);
    {
        NoGradGuard ng;
        auto dist_after = [&](const std::vector<int32_t>& ctx) {
            std::vector<int64_t> ids(ctx.begin(), ctx.end());
            Tensor l = target->forward(from_vector(ids, {1, int64_t(ids.size())})).select(1, int64_t(ids.size()) - 1);
            auto row = l.contiguous().to_vector<float>();
            std::vector<double> p;
            Sampler(sp).distribution(row.data(), V, ctx, p);
            return p;
        };
        const auto p1 = dist_after(prompt);
        for (int a = 0; a < V; ++a) {
            std::vector<int32_t> c1 = prompt;
            c1.push_back(a);
            const auto p2 = dist_after(c1);
            for (int b = 0; b < V; ++b) {
                std::vector<int32_t> c2 = c1;
                c2.push_back(b);
                const auto p3 = dist_after(c2);
                for (int c = 0; c < V; ++c) expect[size_t((a * V + b) * V + c)] = p1[size_t(a)] * p2[size_t(b)] * p3[size_t(c)];
            }
        }
    }
    EngineOptions o = options(64, 32);
    o.speculative.draft = tiny_retnet(V, 5, 8);
    o.speculative.k = 2;
    Engine e(target, o);
    std::vector<double> seen(expect.size(), 0.0);
    std::vector<std::vector<int32_t>> prompts(size_t(N), prompt);
    std::vector<SamplingParams> sps;
    for (int64_t i = 0; i < N; ++i) {
        SamplingParams s = sp;
        s.seed = uint64_t(1000 + i);
        sps.push_back(s);
    }
    const Out out = run_prompts(e, prompts, sps, 3);
    for (const auto& [id, t] : out.tokens) {
        BOOST_REQUIRE(t.size() == 3u);
        seen[size_t((t[0] * V + t[1]) * V + t[2])] += 1;
    }
    const SpeculativeStats& st = e.speculative_stats();
    BOOST_TEST_MESSAGE("sampled: " << st.accepted << "/" << st.proposed << " proposals kept");
    BOOST_TEST(st.accepted > 0);
    BOOST_TEST(st.accepted < st.proposed);
    // chi-square, cells with expectation < 5 pooled
    double chi = 0, pool_e = 0, pool_o = 0;
    int df = -1;
    for (size_t i = 0; i < expect.size(); ++i) {
        const double ex = expect[i] * double(N);
        if (ex < 5) {
            pool_e += ex, pool_o += seen[i];
            continue;
        }
        chi += (seen[i] - ex) * (seen[i] - ex) / ex;
        ++df;
    }
    if (pool_e > 0) chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, ++df;
    BOOST_TEST_MESSAGE("chi-square " << chi << " on " << df << " degrees of freedom");
    BOOST_TEST(df > 20);
    BOOST_TEST(chi < df + 5 * std::sqrt(2.0 * df));  // ~5 standard deviations
}

BOOST_AUTO_TEST_SUITE_END()
