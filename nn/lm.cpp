// nn/lm.cpp — make_model, the one place that maps a config's arch to its model class, and
// the training loss shared by both architectures.
#include "nn/lm.h"

#include "core/error.h"
#include "nn/layers.h"
#include "nn/retnet.h"
#include "nn/transformer.h"
#include "ops/linear_cross_entropy.h"
#include "ops/softmax.h"

namespace rn::nn {

std::shared_ptr<LanguageModel> make_model(const ModelConfig& cfg, uint64_t seed) {
    cfg.validate();
    if (cfg.is_transformer()) return std::make_shared<TransformerLM>(cfg, seed);
    return std::make_shared<RetNetLM>(cfg, seed);
}

Tensor LanguageModel::loss(const Tensor& tokens, const Tensor& targets, const ForwardOptions& opt,
                           int64_t ignore_index) const {
    RN_CHECK(!opt.last_logits_only, "LanguageModel::loss: every position has a target; last_logits_only drops them");
    if (!memory_saving("RN_FUSED_CE")) {
        Tensor logits = forward(tokens, opt);
        return cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), ignore_index);
    }
    ForwardOptions fo = opt;
    fo.hidden_only = true;
    Tensor h = forward(tokens, fo);
    return linear_cross_entropy(h.reshape({-1, h.size(-1)}), output_weight(h.dtype()), targets.reshape({-1}),
                                ignore_index);
}

}  // namespace rn::nn
