// tools/convert.h — the body of `retnet convert IN OUT` (docs/interop.md): our HDF5
// checkpoints to and from safetensors + config.json + tokenizer.model, the direction chosen
// by the extensions (.h5 → .safetensors exports, .safetensors → .h5 imports).
//
//   export: OUT.safetensors holds the weights (F32 by default: the round trip is bit-exact),
//           OUT's folder gets config.json and tokenizer.model beside it (the Hugging Face
//           layout: one model per folder). --to retnet keeps our names and config keys;
//           --to torchscale writes torchscale's RetNetConfig keys and the state_dict its
//           RetNetDecoder expects (names are ours already, plus its two rel-pos buffers and
//           the tied output projection). The optimizer and training state are dropped (and
//           listed on the output).
//   import: the folder's config.json (our keys or torchscale's), else the file's own
//           "retnet.config" metadata; the weights converted to f32; tokenizer.model when
//           present. The result is a weights-only checkpoint at step 0.
#pragma once
#include <ostream>
#include <string>

#include "nn/lm.h"

namespace rn::tools {

struct ConvertOptions {
    std::string in, out;
    std::string to = "retnet";  // export naming: retnet, torchscale (hf: not yet)
    std::string dtype = "F32";  // export element type: F32, BF16 (rounded), F64
    bool force = false;         // overwrite OUT (and config.json, tokenizer.model beside it)
    std::ostream* log = nullptr;  // progress and what was dropped; null means std::cout
};

// Runs one conversion; returns 0. Bad options, unreadable or invalid inputs, a model the
// target cannot represent and existing outputs (without --force) throw rn::Error, and
// leave no output behind.
int run_convert(const ConvertOptions& opts);

// torchscale's RetNetConfig (torchscale/architecture/config.py) for our config, and back.
// to_torchscale refuses what torchscale cannot compute (the paper decay schedule);
// from_torchscale refuses flags our model does not implement (deepnorm, MoE, post-norm,
// the √d embedding scale, ...), naming each.
std::string config_to_torchscale_json(const nn::ModelConfig& c);
nn::ModelConfig config_from_torchscale_json(const std::string& text);

}  // namespace rn::tools
