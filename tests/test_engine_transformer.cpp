// tests/test_engine_transformer.cpp — the generation engine (serving/engine.h) serving the
// Transformer baseline from its KV cache, by the same rules it serves RetNet: chunked
// prefill then one batched decode step per engine step gives the full forward's argmax
// chain and log-probabilities; a sequence in a changing batch (others finishing, cancelled,
// joining, slots moved to keep the decoding block packed) gives the same tokens as alone;
// the cache is preallocated (2·L·slots·Hkv·max_context·D·bytes), its bytes in use grow with
// the tokens held, and max_context ends a sequence.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <map>

#include "autograd/grad_mode.h"
#include "nn/lm.h"
#include "ops/ops.h"
#include "serving/engine.h"
#include "engine_test_util.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;
using namespace rn::tools;

namespace {

constexpr int64_t kVocab = 31;


SamplingParams params(double temperature, uint64_t seed = 7) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_p = temperature > 0 ? 0.95 : 1.0;
    p.seed = seed;
    return p;
}

EngineOptions options(int64_t slots, int64_t prefill_chunk, int64_t max_context = 64) {
    EngineOptions o;
    o.max_slots = slots;
    o.prefill_chunk = prefill_chunk;
    o.max_context = max_context;
    o.greedy_on_device = 1;
    return o;
}

std::vector<int32_t> prompt_of(int64_t n, int32_t salt) {
    std::vector<int32_t> p;
    for (int64_t i = 0; i < n; ++i) p.push_back(int32_t((i * 5 + salt * 3 + 2) % kVocab));
    return p;
}


}  // namespace

BOOST_AUTO_TEST_SUITE(engine_transformer)

BOOST_AUTO_TEST_CASE(chunked_prefill_then_cached_decoding_follows_the_full_forward) {
    auto model = tiny_transformer(kVocab);
    BOOST_TEST(model->state_grows_with_context());
    const std::vector<int32_t> prompt = prompt_of(11, 1);
    Engine e(model, options(2, 4));  // 11 prompt tokens: chunks 4 + 4 + 3
    const int64_t id = e.add(prompt, params(0.0), 14);
    std::vector<int32_t> gen;
    std::vector<double> logprobs;
    int steps_without_tokens = 0;
    while (!e.idle()) {
        auto ev = e.step();
        if (ev.empty()) ++steps_without_tokens;
        for (auto& x : ev) {
            BOOST_TEST(x.seq == id);
            gen.push_back(x.token);
            logprobs.push_back(x.logprob);
        }
    }
    BOOST_TEST(steps_without_tokens == 2);
    BOOST_REQUIRE(gen.size() == 14u);
    // the whole text in one causal forward: its argmax at each position from the prompt's
    // last on is the next token, with the same log-probability (cache positions, RoPE
    // angles and the chunk seams of the prefill all show in the logits)
    std::vector<int64_t> all(prompt.begin(), prompt.end());
    all.insert(all.end(), gen.begin(), gen.end() - 1);
    NoGradGuard ng;
    Tensor logits = model->forward(from_vector<int64_t>(all, {1, int64_t(all.size())}));
    auto l = logits.to_vector<float>();
    auto lp = log_softmax(logits, -1).to_vector<float>();
    for (size_t i = 0; i < gen.size(); ++i) {
        const size_t row = (prompt.size() - 1 + i) * size_t(kVocab);
        int32_t best = 0;
        for (int32_t v = 1; v < kVocab; ++v)
            if (l[row + size_t(v)] > l[row + size_t(best)]) best = v;
        BOOST_TEST(best == gen[i], "token " << i);
        BOOST_TEST(std::abs(lp[row + size_t(gen[i])] - logprobs[i]) < 1e-4, "token " << i);
    }
}

BOOST_AUTO_TEST_CASE(a_sequence_in_a_changing_batch_gives_the_same_tokens_as_alone) {
    auto model = tiny_transformer(kVocab);
    const std::vector<int32_t> target = prompt_of(9, 2);
    const SamplingParams sp = params(1.0, 42);
    std::vector<int32_t> alone;
    {
        Engine e(model, options(4, 5));
        e.add(target, sp, 20);
        alone = run_all(e).begin()->second;
        BOOST_TEST(alone.size() == 20u);
    }
    Engine e(model, options(4, 5));
    const int64_t a = e.add(prompt_of(7, 3), params(0.8, 1), 6);   // finishes early: slots move
    const int64_t b = e.add(prompt_of(12, 4), params(1.0, 2), 40);  // cancelled mid-way
    std::map<int64_t, std::vector<int32_t>> got;
    std::map<int64_t, std::string> reasons;
    auto collect = [&](const std::vector<EngineEvent>& evs) {
        for (auto& ev : evs) {
            if (ev.token >= 0) got[ev.seq].push_back(ev.token);
            if (ev.finished) reasons[ev.seq] = ev.finish_reason;
        }
    };
    for (int i = 0; i < 5; ++i) collect(e.step());
    const int64_t t = e.add(target, sp, 20);
    for (int i = 0; i < 3; ++i) collect(e.step());
    const int64_t c = e.add(prompt_of(20, 5), params(0.0), 8);
    for (int i = 0; i < 4; ++i) collect(e.step());
    e.cancel(b);
    while (!e.idle()) collect(e.step());
    BOOST_TEST(got[t] == alone, "the target's tokens changed with its batch");
    BOOST_TEST(reasons[a] == "length");
    BOOST_TEST(reasons[b] == "cancelled");
    BOOST_TEST(reasons[c] == "length");
    BOOST_TEST(e.free_slots() == 4);
}

BOOST_AUTO_TEST_CASE(the_cache_is_preallocated_and_its_use_grows_with_the_tokens) {
    auto model = tiny_transformer(kVocab);
    const auto& c = model->config();
    const int64_t slots = 3, ctx = 40, D = c.head_dim();
    Engine e(model, options(slots, 8, ctx));
    const size_t want = size_t(2 * c.n_layers * slots * c.kv_heads() * ctx * D * 4);  // f32 keys and values
    BOOST_TEST(e.state_bytes() == want);
    BOOST_TEST(model->state_bytes(slots, DType::f32, ctx) == want);
    BOOST_TEST(e.state_bytes_in_use() == 0u);
    e.add(prompt_of(6, 1), params(0.0), 30);
    e.step();  // the prompt is in the cache
    const size_t per_token = size_t(2 * c.n_layers * c.kv_heads() * D * 4);
    const size_t after_prompt = e.state_bytes_in_use();
    BOOST_TEST(after_prompt >= 6 * per_token);
    for (int i = 0; i < 5; ++i) e.step();
    BOOST_TEST(e.state_bytes_in_use() == after_prompt + 5 * per_token);
    BOOST_TEST(e.state_bytes() == want);  // nothing allocated while decoding

    // max_context ends a sequence ("length") and bounds the prompt
    std::map<int64_t, std::string> reasons;
    Engine short_ctx(model, options(1, 8, 9));
    const int64_t s = short_ctx.add(prompt_of(5, 2), params(0.0), 100);
    auto out = run_all(short_ctx, &reasons);
    BOOST_TEST(out[s].size() == 4u);
    BOOST_TEST(reasons[s] == "length");
    RN_CHECK_THROWS_WITH(short_ctx.add(prompt_of(9, 1), params(0.0), 1), "leaves no room");

    // 0 takes the model's default, a bounded cache for a Transformer
    EngineOptions dflt = options(1, 8, 0);
    Engine d(model, dflt);
    BOOST_TEST(d.options().max_context == kDefaultCacheContext);
}

BOOST_AUTO_TEST_SUITE_END()
