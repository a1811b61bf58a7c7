// tests/test_generate.cpp — generation (serving/sampling.h, serving/engine.h,
// serving/text_stream.h): the sampler's rules (greedy = argmax, top_k = 1 and a tiny top_p
// are greedy, temperature / top-k / top-p frequencies over many draws, the repetition
// penalty, reproducibility from the seed, bad parameters); the engine (chunked prefill then
// recurrent decoding gives the parallel forward's argmax chain; a sequence in a changing
// batch gives the same tokens as alone; slots are reused after finish and cancel; clear
// errors; a long prompt never stalls the decoders); incremental detokenisation and stop
// strings; `generate` on a saved checkpoint (greedy = the parallel forward's argmax chain,
// same seed = same text, a prompt in a batch = alone, stop strings).
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "nn/checkpoint.h"
#include "nn/retnet.h"
#include "test_util.h"
#include "serving/engine.h"
#include "engine_test_util.h"
#include "serving/generate.h"
#include "serving/sampling.h"
#include "serving/text_stream.h"

using namespace rn;
using namespace rn::test;
using namespace rn::tools;

namespace {

// frequencies of each id over n draws
std::vector<double> frequencies(Sampler& s, const std::vector<float>& logits, int n) {
    std::vector<double> f(logits.size(), 0.0);
    for (int i = 0; i < n; ++i) f[size_t(s.sample(logits.data(), int64_t(logits.size()), {}))] += 1.0 / n;
    return f;
}

SamplingParams params(double temperature, int64_t top_k = 0, double top_p = 1.0, double penalty = 1.0, uint64_t seed = 7) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.repetition_penalty = penalty;
    p.seed = seed;
    return p;
}

// a tiny model with a chunk of 4, so that prefills cross several chunks
std::shared_ptr<nn::RetNetLM> tiny_model(uint64_t seed = 3) {
    nn::ModelConfig c;
    c.vocab_size = 29;
    c.d_model = 16;
    c.n_heads = 2;
    c.value_dim = 24;
    c.ffn_dim = 24;
    c.n_layers = 2;
    c.chunk = 4;
    return std::make_shared<nn::RetNetLM>(c, seed);
}

EngineOptions engine_options(int64_t slots, int64_t prefill_chunk) {
    EngineOptions o;
    o.max_slots = slots;
    o.prefill_chunk = prefill_chunk;
    o.max_context = 64;
    o.greedy_on_device = 1;  // greedy rows take the "device" argmax path on the CPU too
    return o;
}


Tokenizer small_tokenizer() {
    std::vector<std::string> corpus;
    for (int i = 0; i < 200; ++i)
        corpus.push_back("In the beginning God created the heaven and the earth, line " + std::to_string(i));
    TokenizerTrainOptions to;
    to.vocab_size = 300;
    return Tokenizer::train_from_sentences(corpus, to);
}

std::vector<int32_t> prompt_of(int64_t n, int32_t salt) {
    std::vector<int32_t> p;
    for (int64_t i = 0; i < n; ++i) p.push_back(int32_t((i * 7 + salt * 3 + 1) % 29));
    return p;
}

}  // namespace

// ------------------------------------------------------------------ sampler

BOOST_AUTO_TEST_CASE(greedy_top_k_1_and_tiny_top_p_pick_the_argmax) {
    Generator g(11);
    for (int row = 0; row < 20; ++row) {
        std::vector<float> l = randn({50}, g).to_vector<float>();
        const int32_t best = argmax(l.data(), 50);
        BOOST_TEST(*std::max_element(l.begin(), l.end()) == l[size_t(best)]);
        Sampler greedy(params(0.0)), k1(params(1.0, 1, 1.0, 1.0, uint64_t(row))), p0(params(1.5, 0, 1e-9, 1.0, uint64_t(row)));
        BOOST_TEST(greedy.sample(l.data(), 50, {}) == best);
        BOOST_TEST(k1.sample(l.data(), 50, {}) == best);
        BOOST_TEST(p0.sample(l.data(), 50, {}) == best);
    }
    std::vector<float> tie = {1, 3, 3, 0};  // ties go to the lowest id
    Sampler greedy(params(0.0));
    BOOST_TEST(greedy.sample(tie.data(), 4, {}) == 1);
}

BOOST_AUTO_TEST_CASE(temperature_top_k_and_top_p_give_the_expected_frequencies) {
    const std::vector<double> p = {0.5, 0.3, 0.15, 0.05};
    std::vector<float> logits;
    for (double x : p) logits.push_back(float(std::log(x)) + 4.0f);  // logits are shift-invariant
    const int n = 40000;
    const double tol = 0.012;  // ~5 standard deviations at n = 40000

    Sampler t1(params(1.0));
    auto f = frequencies(t1, logits, n);
    for (size_t i = 0; i < p.size(); ++i) BOOST_TEST(std::abs(f[i] - p[i]) < tol, "T=1 id " << i << ": " << f[i]);

    // temperature 2: p_i^(1/2), renormalised
    Sampler t2(params(2.0));
    f = frequencies(t2, logits, n);
    double z = 0;
    for (double x : p) z += std::sqrt(x);
    for (size_t i = 0; i < p.size(); ++i)
        BOOST_TEST(std::abs(f[i] - std::sqrt(p[i]) / z) < tol, "T=2 id " << i << ": " << f[i]);

    // top_k = 2: only ids 0 and 1, renormalised to 5/8 and 3/8
    Sampler k2(params(1.0, 2));
    f = frequencies(k2, logits, n);
    BOOST_TEST(std::abs(f[0] - 0.625) < tol);
    BOOST_TEST(std::abs(f[1] - 0.375) < tol);
    BOOST_TEST(f[2] + f[3] == 0.0);

    // top_p = 0.9: 0.5 + 0.3 < 0.9 ≤ 0.95, so ids 0..2, renormalised by 0.95
    Sampler p9(params(1.0, 0, 0.9));
    f = frequencies(p9, logits, n);
    for (size_t i = 0; i < 3; ++i) BOOST_TEST(std::abs(f[i] - p[i] / 0.95) < tol, "top_p id " << i << ": " << f[i]);
    BOOST_TEST(f[3] == 0.0);
}

BOOST_AUTO_TEST_CASE(top_p_over_a_large_vocabulary_keeps_the_nucleus) {
    // 1000 ids: the nucleus needs more than the first sorted block of 64
    std::vector<float> logits(1000);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(-0.01 * double(i));
    Sampler s(params(1.0, 0, 0.5));
    double z = 0, cum = 0;
    for (float l : logits) z += std::exp(double(l));
    size_t nucleus = 0;
    while (cum < 0.5 * z) cum += std::exp(double(logits[nucleus++]));
    BOOST_TEST(nucleus > 64);
    int32_t hi = 0;
    for (int i = 0; i < 5000; ++i) hi = std::max(hi, s.sample(logits.data(), 1000, {}));
    BOOST_TEST(hi < int32_t(nucleus));
    BOOST_TEST(hi > int32_t(nucleus) - 20);  // and the edge of the nucleus is reached
}

BOOST_AUTO_TEST_CASE(repetition_penalty_divides_positive_and_multiplies_negative_logits) {
    std::vector<float> pos = {2.0f, 1.9f, 0.0f};
    Sampler plain(params(0.0)), pen(params(0.0, 0, 1.0, 1.2));
    BOOST_TEST(plain.sample(pos.data(), 3, {0, 0}) == 0);
    BOOST_TEST(pen.sample(pos.data(), 3, {0, 0}) == 1);  // 2/1.2 < 1.9
    BOOST_TEST(pen.sample(pos.data(), 3, {2}) == 0);      // unseen ids untouched
    std::vector<float> neg = {-1.0f, -1.1f, -5.0f};
    BOOST_TEST(pen.sample(neg.data(), 3, {0}) == 1);       // −1·1.2 < −1.1
    // out-of-range history ids are ignored, not an error
    BOOST_TEST(pen.sample(neg.data(), 3, {-1, 99}) == 0);
}

BOOST_AUTO_TEST_CASE(draws_depend_only_on_the_seed_and_the_call_index) {
    Generator g(5);
    std::vector<std::vector<float>> rows;
    for (int i = 0; i < 30; ++i) rows.push_back(randn({40}, g).to_vector<float>());
    auto run = [&](uint64_t seed) {
        Sampler s(params(1.3, 10, 0.95, 1.1, seed));
        std::vector<int32_t> out;
        for (auto& r : rows) out.push_back(s.sample(r.data(), 40, out));
        return out;
    };
    const std::vector<int32_t> one = run(1);
    BOOST_TEST(run(1) == one);
    BOOST_TEST(run(2) != one);
    BOOST_TEST(std::set<int32_t>(one.begin(), one.end()).size() > 3);  // really sampling
}

BOOST_AUTO_TEST_CASE(bad_sampling_parameters_are_refused_with_the_range) {
    RN_CHECK_THROWS_WITH(Sampler(params(-0.5)), "temperature must be >= 0");
    RN_CHECK_THROWS_WITH(Sampler(params(1.0, -1)), "top_k must be >= 0");
    RN_CHECK_THROWS_WITH(Sampler(params(1.0, 0, 0.0)), "top_p must lie in (0, 1]");
    RN_CHECK_THROWS_WITH(Sampler(params(1.0, 0, 1.5)), "got 1.5");
    RN_CHECK_THROWS_WITH(Sampler(params(1.0, 0, 1.0, 0.0)), "repetition_penalty must be > 0");
    std::vector<float> nan = {0.0f, NAN};
    Sampler s(params(1.0));
    RN_CHECK_THROWS_WITH(s.sample(nan.data(), 2, {}), "logit 1 is NaN");
}

// ------------------------------------------------------------------ engine

BOOST_AUTO_TEST_CASE(chunked_prefill_then_decoding_follows_the_parallel_forward) {
    auto model = tiny_model();
    const std::vector<int32_t> prompt = prompt_of(10, 1);
    Engine e(model, engine_options(2, 3));  // 10 prompt tokens: prefill over 4 steps
    const int64_t id = e.add(prompt, params(0.0), 12);
    int steps_without_tokens = 0;
    std::vector<int32_t> gen;
    std::vector<double> logprobs;
    std::string reason;
    while (!e.idle()) {
        auto ev = e.step();
        if (ev.empty()) ++steps_without_tokens;
        for (auto& x : ev) {
            BOOST_TEST(x.seq == id);
            gen.push_back(x.token);
            logprobs.push_back(x.logprob);
            if (x.finished) reason = x.finish_reason;
        }
    }
    BOOST_TEST(steps_without_tokens == 3);  // chunks 3+3+3, the 4th (1 token) samples the first
    BOOST_TEST(gen.size() == 12u);
    BOOST_TEST(reason == "length");

    // one parallel forward over prompt + generated: its argmax at every position from the
    // prompt's last on is the next generated token, with the same log-probability (which
    // checks the logits themselves: positions, states and chunk seams all show there)
    std::vector<int64_t> all(prompt.begin(), prompt.end());
    all.insert(all.end(), gen.begin(), gen.end() - 1);
    NoGradGuard ng;
    nn::ForwardOptions fo;
    fo.mode = RetentionMode::parallel;
    Tensor logits = model->forward(from_vector<int64_t>(all, {1, int64_t(all.size())}), fo);
    auto l = logits.to_vector<float>();
    auto lp = log_softmax(logits, -1).to_vector<float>();
    const int64_t V = 29;
    for (size_t i = 0; i < gen.size(); ++i) {
        const size_t row = (prompt.size() - 1 + i) * size_t(V);
        BOOST_TEST(argmax(l.data() + row, V) == gen[i], "token " << i);
        BOOST_TEST(std::abs(lp[row + size_t(gen[i])] - logprobs[i]) < 1e-4, "token " << i << ": " << lp[row + size_t(gen[i])]
                   << " vs " << logprobs[i]);
    }
}

BOOST_AUTO_TEST_CASE(prefill_state_then_steps_equal_the_parallel_logits) {
    // the convention the engine relies on (docs/model.md §1), checked on the logits themselves
    auto model = tiny_model();
    NoGradGuard ng;
    std::vector<int64_t> toks;
    for (int i = 0; i < 15; ++i) toks.push_back((i * 5 + 2) % 29);
    nn::ForwardOptions par;
    par.mode = RetentionMode::parallel;
    Tensor full_logits = model->forward(from_vector<int64_t>(toks, {1, 15}), par);  // [1,15,V]
    std::vector<Tensor> st;
    nn::ForwardOptions pre;
    pre.chunk = 4;
    pre.states_out = &st;
    Tensor l = model->forward(from_vector<int64_t>(std::vector<int64_t>(toks.begin(), toks.begin() + 9), {1, 9}), pre);
    BOOST_TEST(max_abs_diff(l, full_logits.narrow(1, 0, 9)) < 1e-4);
    for (int64_t t = 9; t < 15; ++t) {
        Tensor lt = model->step(full({1}, double(toks[size_t(t)]), DType::i64), st, full({1}, double(t), DType::i64), DType::f32);
        BOOST_TEST(max_abs_diff(lt, full_logits.select(1, t)) < 1e-4, "position " << t);
    }
}

BOOST_AUTO_TEST_CASE(a_sequence_in_a_changing_batch_gives_the_same_tokens_as_alone) {
    auto model = tiny_model();
    const std::vector<int32_t> target = prompt_of(9, 2);
    const SamplingParams sp = params(1.0, 0, 0.95, 1.0, 42);
    std::vector<int32_t> alone;
    {
        Engine e(model, engine_options(4, 5));
        e.add(target, sp, 20);
        alone = run_all(e).begin()->second;
        BOOST_TEST(alone.size() == 20u);
    }
    Engine e(model, engine_options(4, 5));
    const int64_t a = e.add(prompt_of(7, 3), params(0.8, 5, 1.0, 1.0, 1), 6);  // finishes early
    const int64_t b = e.add(prompt_of(12, 4), params(1.0, 0, 1.0, 1.0, 2), 40);  // cancelled mid-way
    std::map<int64_t, std::vector<int32_t>> got;
    std::map<int64_t, std::string> reasons;
    auto collect = [&](const std::vector<EngineEvent>& evs) {
        for (auto& ev : evs) {
            if (ev.token >= 0) got[ev.seq].push_back(ev.token);
            if (ev.finished) reasons[ev.seq] = ev.finish_reason;
        }
    };
    for (int i = 0; i < 5; ++i) collect(e.step());
    const int64_t t = e.add(target, sp, 20);  // joins while the others decode
    for (int i = 0; i < 3; ++i) collect(e.step());
    const int64_t c = e.add(prompt_of(20, 5), params(0.0), 8);  // a long newcomer behind it
    for (int i = 0; i < 4; ++i) collect(e.step());
    e.cancel(b);
    while (!e.idle()) collect(e.step());
    BOOST_TEST(got[t] == alone, "the target's tokens changed with its batch");
    BOOST_TEST(reasons[a] == "length");
    BOOST_TEST(got[a].size() == 6u);
    BOOST_TEST(reasons[b] == "cancelled");
    BOOST_TEST(got[b].size() < 40u);
    BOOST_TEST(reasons[c] == "length");
    BOOST_TEST(reasons[t] == "length");
    BOOST_TEST(e.free_slots() == 4);
}

BOOST_AUTO_TEST_CASE(a_long_prompt_never_stalls_the_decoding_sequences) {
    auto model = tiny_model();
    Engine e(model, engine_options(2, 8));
    const int64_t a = e.add(prompt_of(4, 1), params(0.0), 30);
    e.step();  // a's prompt, and its first token
    BOOST_TEST(e.decoding() == 1);
    const int64_t b = e.add(prompt_of(40, 2), params(0.0), 5);  // 40 tokens: 5 steps of 8
    for (int i = 0; i < 5; ++i) {
        auto ev = e.step();
        int from_a = 0, from_b = 0;
        for (auto& x : ev) (x.seq == a ? from_a : from_b) += 1;
        BOOST_TEST(from_a == 1, "step " << i << ": the decoding sequence got " << from_a << " tokens");
        BOOST_TEST(from_b == (i == 4 ? 1 : 0), "step " << i);
        BOOST_TEST(e.prefilling() == (i == 4 ? 0 : 1));
    }
    BOOST_TEST(e.decoding() == 2);
    BOOST_TEST(e.history(b).size() == 41u);  // the prompt and its first token
}

BOOST_AUTO_TEST_CASE(a_large_batch_sampled_across_threads_matches_each_sequence_alone) {
    // ≥ 8 decoding sequences take the engine's multi-threaded sampling path
    auto model = tiny_model();
    const int n = 12;
    std::vector<std::vector<int32_t>> alone;
    for (int i = 0; i < n; ++i) {
        Engine e(model, engine_options(1, 16));
        e.add(prompt_of(3 + i, i), params(1.0, 0, 0.9, 1.1, uint64_t(100 + i)), 10);
        alone.push_back(run_all(e).begin()->second);
    }
    Engine e(model, engine_options(n, 16));
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) ids.push_back(e.add(prompt_of(3 + i, i), params(1.0, 0, 0.9, 1.1, uint64_t(100 + i)), 10));
    auto got = run_all(e);
    for (int i = 0; i < n; ++i) BOOST_TEST(got[ids[size_t(i)]] == alone[size_t(i)], "sequence " << i);
}

BOOST_AUTO_TEST_CASE(greedy_on_the_device_and_on_the_host_choose_alike) {
    // a mixed batch: plain greedy rows take the device argmax, the others come to the host
    auto model = tiny_model();
    auto run = [&](int where_greedy) {
        EngineOptions o = engine_options(8, 64);
        o.greedy_on_device = where_greedy;
        Engine e(model, o);
        for (int i = 0; i < 8; ++i)
            e.add(prompt_of(5 + i, i), i % 3 == 0 ? params(1.0, 0, 1.0, 1.0, uint64_t(i)) : params(0.0), 12);
        std::vector<std::pair<int32_t, double>> out;
        while (!e.idle())
            for (auto& ev : e.step()) out.push_back({ev.token, ev.logprob});
        return out;
    };
    auto dev = run(1), host = run(0);
    BOOST_REQUIRE(dev.size() == host.size());
    BOOST_TEST(dev.size() == 8u * 12u);
    for (size_t i = 0; i < dev.size(); ++i) {
        BOOST_TEST(dev[i].first == host[i].first, "event " << i);
        BOOST_TEST(std::abs(dev[i].second - host[i].second) < 1e-5, "event " << i);
    }
    // a tie goes to the lowest id on both paths: logits that are all equal (zero weights)
    auto flat = tiny_model();
    {
        NoGradGuard ng;
        flat->output_projection->weight.zero_();
    }
    for (int where_greedy : {0, 1}) {
        EngineOptions o = engine_options(1, 64);
        o.greedy_on_device = where_greedy;
        Engine e(flat, o);
        e.add({1, 2, 3}, params(0.0), 3);
        for (auto& [id, toks] : run_all(e)) BOOST_TEST(toks == std::vector<int32_t>({0, 0, 0}));
    }
}

BOOST_AUTO_TEST_CASE(eos_finishes_a_sequence_with_reason_stop) {
    auto model = tiny_model();
    const std::vector<int32_t> prompt = prompt_of(6, 6);
    std::vector<int32_t> free_run;
    {
        Engine e(model, engine_options(1, 64));
        e.add(prompt, params(0.0), 10);
        free_run = run_all(e).begin()->second;
    }
    EngineOptions o = engine_options(1, 64);
    o.eos_id = free_run[3];  // make the 4th greedy token (or an earlier equal one) the end
    Engine e(model, o);
    const int64_t id = e.add(prompt, params(0.0), 10);
    std::map<int64_t, std::string> reasons;
    auto out = run_all(e, &reasons)[id];
    const size_t first = size_t(std::find(free_run.begin(), free_run.end(), o.eos_id) - free_run.begin());
    BOOST_TEST(out.size() == first + 1);
    BOOST_TEST(out.back() == o.eos_id);
    BOOST_TEST(reasons[id] == "stop");
}

BOOST_AUTO_TEST_CASE(slots_are_preallocated_reused_and_errors_are_clear) {
    auto model = tiny_model();
    Engine e(model, engine_options(2, 8));
    const auto& c = model->config();
    BOOST_TEST(e.state_bytes() == size_t(2 * c.n_layers * c.n_heads * c.head_dim() * c.value_head_dim() * 4));
    RN_CHECK_THROWS_WITH(e.add({}, params(0.0), 4), "empty prompt");
    RN_CHECK_THROWS_WITH(e.add({1, 29}, params(0.0), 4), "prompt token 1 is 29, outside the vocabulary [0, 29)");
    RN_CHECK_THROWS_WITH(e.add(prompt_of(64, 0), params(0.0), 4), "leaves no room");
    RN_CHECK_THROWS_WITH(e.add({1}, params(0.0), 0), "max_new_tokens must be >= 1");
    RN_CHECK_THROWS_WITH(e.add({1}, params(-1.0), 4), "temperature");
    BOOST_TEST(e.free_slots() == 2);  // failed adds take nothing

    const int64_t a = e.add({1, 2, 3}, params(0.0), 3);
    const int64_t b = e.add({4, 5}, params(0.0), 50);
    BOOST_TEST(e.free_slots() == 0);
    RN_CHECK_THROWS_WITH(e.add({1}, params(0.0), 1), "all 2 slots are busy");
    std::map<int64_t, std::string> reasons;
    for (int i = 0; i < 4; ++i)
        for (auto& ev : e.step())
            if (ev.finished) reasons[ev.seq] = ev.finish_reason;
    BOOST_TEST(reasons[a] == "length");
    BOOST_TEST(e.free_slots() == 1);
    const int64_t d = e.add({6, 7, 8, 9}, params(0.0), 2);  // takes a's slot
    e.cancel(b);
    e.cancel(12345);  // unknown ids are ignored
    run_all(e, &reasons);
    BOOST_TEST(reasons[b] == "cancelled");
    BOOST_TEST(reasons[d] == "length");
    BOOST_TEST(e.free_slots() == 2);
    BOOST_TEST(e.idle());

    // max_context ends a sequence too
    EngineOptions o = engine_options(1, 8);
    o.max_context = 6;
    Engine short_ctx(model, o);
    const int64_t s = short_ctx.add({1, 2, 3, 4}, params(0.0), 100);
    auto out = run_all(short_ctx, &reasons);
    BOOST_TEST(out[s].size() == 2u);
    BOOST_TEST(reasons[s] == "length");

    EngineOptions bad = engine_options(0, 8);
    RN_CHECK_THROWS_WITH(Engine(model, bad), "max_slots must be >= 1");
    bad = engine_options(1, 8);
    bad.dtype = "bf16";
    RN_CHECK_THROWS_WITH(Engine(model, bad), "bf16 on CUDA");
}

// ------------------------------------------------------------------ text

BOOST_AUTO_TEST_CASE(stop_matcher_cuts_at_the_first_stop_and_holds_back_partial_matches) {
    StopMatcher m({"END", "\n\n"});
    std::string shown;
    shown += m.push("Hello, wor");
    shown += m.push("ld E");
    BOOST_TEST(shown == "Hello, world ");  // "E" may start "END": held back
    shown += m.push("x");
    BOOST_TEST(shown == "Hello, world Ex");
    shown += m.push(" and EN");
    shown += m.push("D more");
    BOOST_TEST(m.stopped());
    BOOST_TEST(m.matched() == "END");
    BOOST_TEST(shown == "Hello, world Ex and ");
    BOOST_TEST(m.push("later") == "");

    StopMatcher n({"\n\n"});
    BOOST_TEST(n.push("a\n") == "a");
    BOOST_TEST(n.flush() == "\n");  // the end came: the tail is final
    RN_CHECK_THROWS_WITH(StopMatcher({"ok", ""}), "stop string 1");
}

BOOST_AUTO_TEST_CASE(text_stream_reassembles_characters_split_over_byte_tokens) {
    Tokenizer tok = small_tokenizer();
    // unseen characters go through byte fallback: several tokens per character
    const std::string text = "And the earth was \xE2\x82\xAC without form \xE6\x97\xA5\xE6\x9C\xAC, void.\n  ok";
    const auto ids = tok.encode(text);
    TextStream ts(tok);
    std::string streamed;
    int held = 0;
    for (int32_t id : ids) {
        std::string d = ts.push(id);
        if (d.empty()) ++held;
        BOOST_TEST(d.find("\xEF\xBF\xBD") == std::string::npos, "a partial character leaked: " << d);
        streamed += d;
    }
    streamed += ts.flush();
    BOOST_TEST(held >= 2);  // the multi-byte characters were held back
    BOOST_TEST(streamed == text);
    BOOST_TEST(ts.text() == text);
}

// A near-untrained model emits byte tokens that never make a character: a stray continuation
// byte, a lead byte cut short by a word, 0xFF. Each must reach the user at once as U+FFFD (it
// once held the whole rest of a stream back, so the web page got a completion in one piece),
// while a character that more bytes can still finish is held for at most those bytes.
BOOST_AUTO_TEST_CASE(text_stream_never_holds_a_byte_that_cannot_become_a_character) {
    Tokenizer tok = small_tokenizer();
    std::vector<int32_t> byte_id(256, -1);
    for (int32_t i = 0; i < tok.vocab_size(); ++i)
        if (tok.byte_value(i) >= 0) byte_id[size_t(tok.byte_value(i))] = i;
    for (int b = 0; b < 256; ++b) BOOST_TEST_REQUIRE(byte_id[size_t(b)] >= 0, "no piece for byte " << b);
    auto byte = [&](int b) { return byte_id[size_t(b)]; };
    const int32_t word = tok.encode(" the").back();
    const std::string word_text = tok.decode({word});
    const std::string fffd = "\xEF\xBF\xBD";

    TextStream ts(tok);
    BOOST_TEST(ts.push(word) == word_text);
    BOOST_TEST(ts.push(byte(0x80)) == fffd);  // a continuation byte with no lead: never whole
    BOOST_TEST(ts.push(byte(0xFF)) == fffd);  // never a UTF-8 byte at all
    BOOST_TEST(ts.push(byte(0xE2)) == "");    // may still become a character: held
    BOOST_TEST(ts.push(byte(0x82)) == "");
    BOOST_TEST(ts.push(word).find(fffd) == 0);  // cut short by a word: passed on with the word
    BOOST_TEST(ts.push(byte(0xF0)) == "");
    BOOST_TEST(ts.push(byte(0x41)) == fffd + "A");  // an ASCII byte ends it too
    BOOST_TEST(ts.push(byte(0xE2)) == "");
    BOOST_TEST(ts.push(byte(0x82)) == "");
    BOOST_TEST(ts.push(byte(0xAC)) == "\xE2\x82\xAC");  // finished: the whole character
    BOOST_TEST(ts.push(byte(0xC3)) == "");
    BOOST_TEST(ts.flush() == fffd);  // the end came first
    BOOST_TEST(tok.byte_value(word) == -1);
    BOOST_TEST(tok.byte_value(tok.eos_id()) == -1);

    // streamed text is what one decode of all ids gives, whatever the bytes
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        TextStream s(tok);
        std::vector<int32_t> ids;
        std::string streamed;
        for (int i = 0; i < 12; ++i) {
            const int32_t id = rng() % 3 == 0 ? word : byte(int(rng() % 256));
            ids.push_back(id);
            streamed += s.push(id);
        }
        streamed += s.flush();
        BOOST_TEST(streamed == tok.decode(ids), "trial " << trial);
    }
}

// ------------------------------------------------------------------ retnet generate

BOOST_AUTO_TEST_CASE(generate_from_a_checkpoint_is_the_argmax_chain_and_reproducible) {
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("rn_generate_test_" + std::to_string(::getpid()) + ".h5")).string();
    Tokenizer tok = small_tokenizer();
    nn::ModelConfig c = nn::ModelConfig::from_preset("tiny", tok.vocab_size());
    c.chunk = 8;
    auto model = std::make_shared<nn::RetNetLM>(c, 9);
    nn::save_checkpoint(path, *model, nullptr, nn::TrainState{}, tok.serialized());

    GenerateOptions o;
    o.checkpoint = path;
    o.prompts = {"In the beginning God"};
    o.max_tokens = 16;
    o.sampling.temperature = 0;
    o.prefill_chunk = 3;  // the 6-token prompt (with <s>) prefills over two steps
    o.ignore_eos = true;  // a random model may well say </s> early
    GenerateResult g = generate(o, nullptr);
    BOOST_REQUIRE(g.tokens.size() == 1u);
    BOOST_TEST(g.tokens[0].size() == 16u);
    BOOST_TEST(g.finish_reasons[0] == "length");
    BOOST_TEST(g.prompt_tokens[0].front() == tok.bos_id());
    BOOST_TEST(g.texts[0] == tok.decode(g.tokens[0]));

    // greedy = the argmax chain of direct parallel forwards, one token at a time
    std::vector<int32_t> seq = g.prompt_tokens[0];
    {
        NoGradGuard ng;
        nn::ForwardOptions par;
        par.mode = RetentionMode::parallel;
        for (int i = 0; i < 16; ++i) {
            std::vector<int64_t> ids(seq.begin(), seq.end());
            Tensor l = model->forward(from_vector<int64_t>(ids, {1, int64_t(ids.size())}), par)
                           .select(1, int64_t(ids.size()) - 1).contiguous();
            seq.push_back(argmax(l.data<float>(), c.vocab_size));
        }
    }
    BOOST_TEST(std::vector<int32_t>(seq.begin() + int64_t(g.prompt_tokens[0].size()), seq.end()) == g.tokens[0]);

    // sampling: same seed, same text; another seed, another; in a batch, as alone
    o.sampling = params(1.0, 0, 1.0, 1.0, 5);
    o.max_tokens = 24;
    GenerateResult a = generate(o, nullptr), b = generate(o, nullptr);
    BOOST_TEST(a.texts[0] == b.texts[0]);
    o.sampling.seed = 6;
    BOOST_TEST(generate(o, nullptr).tokens[0] != a.tokens[0]);
    o.sampling.seed = 5;
    o.prompts = {"the earth", "In the beginning God", "line 7"};
    GenerateResult batch = generate(o, nullptr);
    BOOST_TEST(batch.texts[1] == a.texts[0]);
    BOOST_TEST(batch.generated == 3 * 24);

    // a stop string cuts the text before it and ends that completion only
    const std::string cut = a.texts[0].substr(a.texts[0].size() / 2, 2);
    o.stop = {cut};
    GenerateResult s = generate(o, nullptr);
    const size_t at = a.texts[0].find(cut);
    BOOST_TEST(s.texts[1] == a.texts[0].substr(0, at));
    BOOST_TEST(s.finish_reasons[1] == "stop");

    o.prompts = {};
    RN_CHECK_THROWS_WITH(generate(o, nullptr), "no prompt given");
    o.prompts = {"x"};
    o.checkpoint = path + ".missing";
    RN_CHECK_THROWS_WITH(generate(o, nullptr), "no such file");
    std::filesystem::remove(path);
}
