// tests/engine_test_util.h — what the generation-engine tests share: a tiny RetNet and a
// tiny Transformer to serve, and running an Engine until it is idle, collecting each sequence's tokens and
// finish reason.
#pragma once
#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

#include "nn/lm.h"
#include "serving/engine.h"

namespace rn::test {

// a tiny RetNet: 2 heads, Dk 8, Dv 12, 2 layers, retention chunk 4 (prefills cross several
// chunks)
inline std::shared_ptr<nn::LanguageModel> tiny_retnet(int64_t vocab, uint64_t seed, int64_t d_model = 16) {
    nn::ModelConfig c;
    c.vocab_size = vocab;
    c.d_model = d_model;
    c.n_heads = 2;
    c.value_dim = 24;
    c.ffn_dim = 24;
    c.n_layers = 2;
    c.chunk = 4;
    return nn::make_model(c, seed);
}

// a tiny Transformer: 4 query heads over 2 KV heads (GQA), head dim 8
inline std::shared_ptr<nn::LanguageModel> tiny_transformer(int64_t vocab, uint64_t seed = 5) {
    nn::ModelConfig c;
    c.arch = "transformer";
    c.vocab_size = vocab;
    c.d_model = 32;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.value_dim = 32;
    c.ffn_dim = 48;
    c.n_layers = 2;
    return nn::make_model(c, seed);
}

// runs the engine until idle; tokens per sequence id, and the finish reason of each
inline std::map<int64_t, std::vector<int32_t>> run_all(tools::Engine& e,
                                                        std::map<int64_t, std::string>* reasons = nullptr) {
    std::map<int64_t, std::vector<int32_t>> out;
    for (int guard = 0; !e.idle(); ++guard) {
        BOOST_REQUIRE(guard < 10000);
        for (const tools::EngineEvent& ev : e.step()) {
            if (ev.token >= 0) out[ev.seq].push_back(ev.token);
            if (ev.finished && reasons) (*reasons)[ev.seq] = ev.finish_reason;
        }
    }
    return out;
}

}  // namespace rn::test
