// tests/test_prefix_cache.cpp — the engine's prefix-state cache (serving/engine.h,
// EngineOptions::prefix_cache_bytes): a sequence that starts from a cached state gives the
// same tokens, log-probabilities and whole next-token distributions, bit for bit, as with
// the cache off (greedy and seeded sampling; f32 CPU), while prefilling fewer tokens in
// fewer steps; entries are evicted least recently used first under the byte budget;
// sequences sharing a prefix in one batch reuse it; prompts shorter than the granularity
// and prompts at max_context work; a Transformer leaves the cache off.
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <map>

#include "nn/lm.h"
#include "nn/retnet.h"
#include "serving/engine.h"
#include "engine_test_util.h"

using namespace rn;
using namespace rn::test;
using namespace rn::tools;

BOOST_AUTO_TEST_SUITE(prefix_cache)

namespace {

constexpr int64_t kVocab = 29;

// retention chunk 4 and prefill_chunk 6: the granularity is lcm(6, 4) = 12, so a cold
// prefill alone runs 6-token steps and a hit resumes on the same seams
std::shared_ptr<nn::LanguageModel> tiny_retnet(uint64_t seed = 3) { return rn::test::tiny_retnet(kVocab, seed); }


EngineOptions options(size_t cache_bytes, int64_t slots = 4, int64_t max_context = 64) {
    EngineOptions o;
    o.max_slots = slots;
    o.prefill_chunk = 6;
    o.max_context = max_context;
    o.greedy_on_device = 0;  // every row through the host sampler (full distributions below)
    o.prefix_cache_bytes = cache_bytes;
    return o;
}

SamplingParams params(double temperature, uint64_t seed = 7) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_p = temperature > 0 ? 0.95 : 1.0;
    p.seed = seed;
    p.top_logprobs = kVocab;  // every event carries the whole distribution
    return p;
}

std::vector<int32_t> tokens_of(int64_t n, int32_t salt) {
    std::vector<int32_t> p;
    for (int64_t i = 0; i < n; ++i) p.push_back(int32_t((i * 7 + salt * 3 + 1 + i * i * salt) % kVocab));
    return p;
}
std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

struct Run {
    std::vector<int32_t> tokens;
    std::vector<double> logprobs;                 // of each sampled token
    std::vector<std::vector<double>> dists;       // each step's whole distribution, by id
    int steps_to_first = 0;                       // engine steps until the first token
    int64_t prefilled = 0;                        // prompt tokens the engine ran for it
};

Run run_one(Engine& e, const std::vector<int32_t>& prompt, const SamplingParams& sp, int64_t max_new = 10) {
    Run r;
    const int64_t before = e.prefill_tokens();
    e.add(prompt, sp, max_new);
    for (int guard = 0; !e.idle(); ++guard) {
        BOOST_REQUIRE(guard < 1000);
        if (r.tokens.empty()) ++r.steps_to_first;
        for (const EngineEvent& ev : e.step()) {
            if (ev.token < 0) continue;
            r.tokens.push_back(ev.token);
            r.logprobs.push_back(ev.logprob);
            std::vector<double> d(kVocab, 0.0);
            for (const auto& [id, lp] : ev.top) d[size_t(id)] = lp;
            BOOST_REQUIRE(ev.top.size() == size_t(kVocab));
            r.dists.push_back(d);
        }
    }
    r.prefilled = e.prefill_tokens() - before;
    return r;
}

// tokens equal, and every log-probability equal bit for bit
void require_identical(const Run& a, const Run& b, const std::string& what) {
    BOOST_TEST_CONTEXT(what) {
        BOOST_REQUIRE(!a.tokens.empty());
        BOOST_TEST(a.tokens == b.tokens, boost::test_tools::per_element());
        BOOST_REQUIRE(a.logprobs.size() == b.logprobs.size());
        BOOST_TEST(std::memcmp(a.logprobs.data(), b.logprobs.data(), a.logprobs.size() * sizeof(double)) == 0);
        BOOST_REQUIRE(a.dists.size() == b.dists.size());
        for (size_t i = 0; i < a.dists.size(); ++i)
            BOOST_TEST(std::memcmp(a.dists[i].data(), b.dists[i].data(), kVocab * sizeof(double)) == 0,
                       "distribution of token " << i << " differs");
    }
}

const size_t kMiB = size_t(1) << 20;

}  // namespace

BOOST_AUTO_TEST_CASE(granularity_is_a_seam_of_prefill_steps_and_retention_chunks) {
    Engine a(tiny_retnet(), options(kMiB));
    BOOST_TEST(a.prefix_cache_on());
    BOOST_TEST(a.prefix_cache_granularity() == 12);  // lcm(prefill_chunk 6, chunk 4)
    EngineOptions o = options(kMiB);
    o.prefix_cache_granularity = 20;  // rounded up to a multiple of 12
    Engine b(tiny_retnet(), o);
    BOOST_TEST(b.prefix_cache_granularity() == 24);
    Engine off(tiny_retnet(), options(0));
    BOOST_TEST(!off.prefix_cache_on());
    BOOST_TEST(off.prefix_cache_stats().capacity == 0u);
}

BOOST_AUTO_TEST_CASE(a_cached_prefix_gives_the_cold_tokens_and_logprobs_bit_for_bit) {
    const std::vector<int32_t> shared = tokens_of(30, 1);  // boundaries 12 and 24 lie inside it
    const std::vector<int32_t> a = concat(shared, tokens_of(7, 2));   // 37 tokens: its own boundary 36
    const std::vector<int32_t> b = concat(shared, tokens_of(15, 3));  // 45 tokens
    for (double temperature : {0.0, 0.9}) {
        BOOST_TEST_CONTEXT("temperature " << temperature) {
            Engine off(tiny_retnet(), options(0));
            Engine on(tiny_retnet(), options(kMiB));
            const Run a_off = run_one(off, a, params(temperature)), b_off = run_one(off, b, params(temperature));
            const Run a_cold = run_one(on, a, params(temperature));  // a miss: fills 12, 24, 36
            PrefixCacheStats st = on.prefix_cache_stats();
            BOOST_TEST(st.misses == 1);
            BOOST_TEST(st.hits == 0);
            BOOST_TEST(st.entries == 3);
            BOOST_TEST(on.prefix_cache_lengths() == std::vector<int64_t>({36, 24, 12}), boost::test_tools::per_element());
            require_identical(a_cold, a_off, "a, cache on but cold");
            BOOST_TEST(a_cold.prefilled == 37);

            const Run b_hit = run_one(on, b, params(temperature));  // resumes at 24
            require_identical(b_hit, b_off, "b from the cached 24-token prefix");
            BOOST_TEST(b_hit.prefilled == 45 - 24);
            BOOST_TEST(b_off.prefilled == 45);
            // the hit skips prefill steps: 45 tokens cold are 8 steps of 6; 21 are 4
            BOOST_TEST(b_off.steps_to_first == 8);
            BOOST_TEST(b_hit.steps_to_first == 4);

            const Run a_hit = run_one(on, a, params(temperature));  // its own 36-token prefix
            require_identical(a_hit, a_off, "a from its cached 36-token prefix");
            BOOST_TEST(a_hit.prefilled == 1);
            st = on.prefix_cache_stats();
            BOOST_TEST(st.hits == 2);
            BOOST_TEST(st.misses == 1);
            BOOST_TEST(st.tokens_reused == 24 + 36);
            BOOST_TEST(st.entries == 4);  // b added its own 36-token prefix (12 and 24 were there)
            BOOST_TEST(st.inserts == 4);
        }
    }
}

BOOST_AUTO_TEST_CASE(bytes_are_counted_and_least_recently_used_entries_go_first) {
    // a budget of exactly two states
    auto model = tiny_retnet();
    const size_t one = model->state_bytes(1, DType::f32, 0);
    Engine e(model, options(2 * one));
    auto p = [](int32_t salt) { return tokens_of(13, salt); };  // one boundary (12) each
    const SamplingParams sp = params(0.0);
    auto expect = [&](int64_t hits, int64_t misses, int64_t evictions, const char* when) {
        const PrefixCacheStats st = e.prefix_cache_stats();
        BOOST_TEST_CONTEXT(when) {
            BOOST_TEST(st.hits == hits);
            BOOST_TEST(st.misses == misses);
            BOOST_TEST(st.evictions == evictions);
            BOOST_TEST(st.entries <= 2);
            BOOST_TEST(st.bytes == size_t(st.entries) * one);
            BOOST_TEST(st.bytes <= st.capacity);
        }
    };
    run_one(e, p(1), sp);
    run_one(e, p(2), sp);
    expect(0, 2, 0, "p1, p2 cached");          // LRU order: p2, p1
    run_one(e, p(1), sp);
    expect(1, 2, 0, "p1 hit");                 // p1, p2
    run_one(e, p(3), sp);
    expect(1, 3, 1, "p3 evicts p2");           // p3, p1
    run_one(e, p(2), sp);
    expect(1, 4, 2, "p2 missed, evicts p1");   // p2, p3
    run_one(e, p(3), sp);
    expect(2, 4, 2, "p3 still there");         // p3, p2
    run_one(e, p(1), sp);
    expect(2, 5, 3, "p1 was evicted");         // p1, p3

    // a budget below one state caches nothing, and still generates
    Engine tiny(tiny_retnet(), options(one - 1));
    const Run r = run_one(tiny, p(1), sp);
    BOOST_TEST(r.tokens.size() == 10u);
    BOOST_TEST(tiny.prefix_cache_stats().entries == 0);
    BOOST_TEST(tiny.prefix_cache_stats().bytes == 0u);
}

BOOST_AUTO_TEST_CASE(sequences_sharing_a_prefix_in_one_batch_reuse_it) {
    const std::vector<int32_t> shared = tokens_of(30, 4);
    std::vector<std::vector<int32_t>> prompts;
    for (int32_t i = 0; i < 3; ++i) prompts.push_back(concat(shared, tokens_of(10, 5 + i)));
    std::vector<SamplingParams> sps = {params(0.0), params(0.8, 11), params(1.1, 12)};

    Engine off(tiny_retnet(), options(0));
    std::vector<Run> alone;
    for (size_t i = 0; i < 3; ++i) alone.push_back(run_one(off, prompts[i], sps[i]));

    Engine on(tiny_retnet(), options(kMiB));
    std::map<int64_t, size_t> which;
    for (size_t i = 0; i < 3; ++i) which[on.add(prompts[i], sps[i], 10)] = i;
    std::map<int64_t, std::vector<int32_t>> toks;
    std::map<int64_t, std::vector<double>> lps;
    for (int guard = 0; !on.idle(); ++guard) {
        BOOST_REQUIRE(guard < 1000);
        for (const EngineEvent& ev : on.step())
            if (ev.token >= 0) {
                toks[ev.seq].push_back(ev.token);
                lps[ev.seq].push_back(ev.logprob);
            }
    }
    // the first misses and caches 12 and 24; the other two start at 24 when their prefill
    // starts (after the first one's), in the same batch
    const PrefixCacheStats st = on.prefix_cache_stats();
    BOOST_TEST(st.misses == 1);
    BOOST_TEST(st.hits == 2);
    BOOST_TEST(st.tokens_reused == 48);
    BOOST_TEST(on.prefill_tokens() == 40 + 16 + 16);
    // a shared prefill budget puts other seams into the later prompts (as it does without
    // the cache), so: the same tokens, log-probabilities within float rounding
    for (const auto& [seq, i] : which) {
        BOOST_TEST_CONTEXT("sequence " << i) {
            BOOST_TEST(toks[seq] == alone[i].tokens, boost::test_tools::per_element());
            BOOST_REQUIRE(lps[seq].size() == alone[i].logprobs.size());
            for (size_t t = 0; t < lps[seq].size(); ++t) BOOST_TEST(std::abs(lps[seq][t] - alone[i].logprobs[t]) < 1e-5);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_prompt_shorter_than_the_granularity_neither_hits_nor_misses) {
    Engine off(tiny_retnet(), options(0));
    Engine on(tiny_retnet(), options(kMiB));
    for (int64_t n : {1, 5, 12}) {  // 12: its only boundary is the whole prompt, cached but never looked up
        const std::vector<int32_t> p = tokens_of(n, 6);
        for (int rep = 0; rep < 2; ++rep) require_identical(run_one(on, p, params(0.7)), run_one(off, p, params(0.7)), "short prompt");
    }
    const PrefixCacheStats st = on.prefix_cache_stats();
    BOOST_TEST(st.hits == 0);
    BOOST_TEST(st.misses == 0);
    BOOST_TEST(st.entries == 1);  // the 12-token prompt's state, for a longer prompt extending it
    const std::vector<int32_t> longer = concat(tokens_of(12, 6), tokens_of(3, 9));
    require_identical(run_one(on, longer, params(0.7)), run_one(off, longer, params(0.7)), "extends a whole prompt");
    BOOST_TEST(on.prefix_cache_stats().hits == 1);
}

BOOST_AUTO_TEST_CASE(prefixes_up_to_max_context) {
    // max_context 25: a 24-token prompt is the longest; its 24-token state is useless (no
    // prompt may extend it) and not kept; the 12-token one is
    Engine off(tiny_retnet(), options(0, 4, 25));
    Engine on(tiny_retnet(), options(kMiB, 4, 25));
    const std::vector<int32_t> p = tokens_of(24, 7);
    const Run cold = run_one(on, p, params(0.0));
    BOOST_TEST(cold.tokens.size() == 1u);  // the context is full after one token
    BOOST_TEST(on.prefix_cache_lengths() == std::vector<int64_t>({12}), boost::test_tools::per_element());
    const Run hit = run_one(on, p, params(0.0));
    require_identical(hit, run_one(off, p, params(0.0)), "24 tokens from 12");
    BOOST_TEST(hit.prefilled == 12);
    BOOST_TEST(on.prefix_cache_stats().hits == 1);
    // a prompt at max_context is refused, cache or not
    BOOST_CHECK_THROW(on.add(tokens_of(25, 7), params(0.0), 1), Error);
    const std::vector<int32_t> q = concat(std::vector<int32_t>(p.begin(), p.begin() + 12), tokens_of(11, 8));
    require_identical(run_one(on, q, params(0.5)), run_one(off, q, params(0.5)), "23 tokens sharing 12");
    BOOST_TEST(on.prefix_cache_stats().hits == 2);
}

BOOST_AUTO_TEST_CASE(a_transformer_leaves_the_cache_off_and_still_generates) {
    Engine off(tiny_transformer(kVocab), options(0));
    Engine on(tiny_transformer(kVocab), options(kMiB));
    BOOST_TEST(!on.prefix_cache_on());
    BOOST_TEST(on.prefix_cache_granularity() == 0);
    const std::vector<int32_t> p = tokens_of(30, 8);
    for (int rep = 0; rep < 2; ++rep) require_identical(run_one(on, p, params(0.8)), run_one(off, p, params(0.8)), "transformer");
    const PrefixCacheStats st = on.prefix_cache_stats();
    BOOST_TEST(st.hits == 0);
    BOOST_TEST(st.misses == 0);
    BOOST_TEST(st.entries == 0);
    BOOST_TEST(st.bytes == 0u);
    BOOST_TEST(on.prefill_tokens() == 60);
}

BOOST_AUTO_TEST_SUITE_END()
