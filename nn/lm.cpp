// nn/lm.cpp — make_model: the one place that maps a config's arch to its model class.
#include "nn/lm.h"

#include "core/error.h"
#include "nn/retnet.h"
#include "nn/transformer.h"

namespace rn::nn {

std::shared_ptr<LanguageModel> make_model(const ModelConfig& cfg, uint64_t seed) {
    cfg.validate();
    if (cfg.is_transformer()) return std::make_shared<TransformerLM>(cfg, seed);
    return std::make_shared<RetNetLM>(cfg, seed);
}

}  // namespace rn::nn
