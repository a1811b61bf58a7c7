// tools/convert.h — the body of `retnet convert IN OUT` (docs/interop.md): our HDF5
// checkpoints to and from safetensors + config.json + tokenizer.model, the direction chosen
// by the extensions (.h5 → .safetensors exports, .safetensors → .h5 imports), and
// `retnet convert --check CKPT`, the logits' statistics on a fixed prompt (parity reports).
//
//   export: OUT.safetensors holds the weights (F32 by default: the round trip is bit-exact),
//           OUT's folder gets config.json and tokenizer.model beside it (the Hugging Face
//           layout: one model per folder). --to names the target: retnet (ours), torchscale
//           (its RetNetConfig keys, the state_dict its RetNetDecoder expects) or fla
//           (flash-linear-attention's RetNetForCausalLM; only for a config with fla's
//           variant switches); hf (the Hugging Face-style port: "model." names, lm_head)
//           is written but refused until tests/test_safetensors.cpp expects it. Each is a pure rename; a config the target cannot compute
//           is refused. The optimizer and training state are dropped (and listed).
//   import: the folder's config.json (our keys, torchscale's, the HF port's or fla's;
//           --from auto tells them apart, or names one), else the file's own
//           "retnet.config" metadata; names mapped back, the weights converted to f32;
//           tokenizer.model when present. A weights-only checkpoint at step 0. What our
//           model cannot compute (short convolutions, feature maps, hybrid attention
//           layers, ...) is refused, naming the key.
#pragma once
#include <ostream>
#include <memory>
#include <string>
#include <vector>

#include "nn/lm.h"

namespace rn::tools {

struct ConvertOptions {
    std::string in, out;
    std::string to = "retnet";  // export naming: retnet, torchscale, fla (hf: not enabled yet)
    std::string from = "auto";  // import naming: auto (from config.json and the names), retnet, torchscale, hf, fla
    std::string dtype = "F32";  // export element type: F32, BF16 (rounded), F64
    bool force = false;         // overwrite OUT (and config.json, tokenizer.model beside it)
    std::ostream* log = nullptr;  // progress and what was dropped; null means std::cout
    // --check: `in` is a checkpoint (.h5, or .safetensors read as an import would), `out` empty
    bool check = false;
    std::vector<int64_t> prompt_ids;  // empty: default_check_prompt(vocab)
    std::string check_device = "cpu";  // --check: where the model runs (cpu, cuda, cuda:N), in f32
    std::string check_mode = "parallel";  // parallel, chunkwise (chunks of 4) or recurrent (one step a token)
    bool json = false;
    // --check: also write every position's logits, f32 little-endian [T, V] row-major, to
    // this file (a peer implementation compares all of them, not only the statistics)
    std::string dump_logits;
};

// The logits of the last prompt position, in f32 on the CPU: what --check prints.
struct CheckStats {
    std::string mode;
    std::vector<int64_t> prompt;
    int64_t vocab = 0;
    double mean = 0, std = 0, min = 0, max = 0;  // over the V logits of the last position
    int64_t argmax = 0;
    std::vector<double> first8;  // its first 8 logits
    double checksum = 0;         // Σ_i (i+1)·first8[i]: order-sensitive
    std::vector<float> all;      // every position's logits, [T, V] row-major
    std::string to_json() const;
    std::string to_text() const;
};

// A fixed prompt inside the vocabulary: 16 ids (7 + 31·i) mod V.
std::vector<int64_t> default_check_prompt(int64_t vocab);
// Runs `prompt` through the model (f32, moved to `device`) in `mode` and takes the statistics.
CheckStats check_logits(nn::LanguageModel& model, const std::vector<int64_t>& prompt,
                        const std::string& mode = "parallel", const std::string& device = "cpu");
// The model of a .h5 checkpoint, or of a .safetensors file imported in memory (`from` as
// for an import); `described` says where the config came from.
std::shared_ptr<nn::LanguageModel> load_model_for_check(const std::string& path, const std::string& from = "auto",
                                                        std::string* described = nullptr);

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

// flash-linear-attention's RetNetConfig (fla/models/retnet/configuration_retnet.py) for
// our config, and back. from_fla sets the variant switches fla computes (rotary rope_half,
// retention_lambda false, key_dim = expand_k·d, group_norm_affine = elementwise_affine) and
// refuses what we do not compute, naming the key: feature_map other than none, short
// convolutions, no output gate, grouped key/value heads, hybrid attention layers, an
// activation other than swish. to_fla refuses a config without fla's switches.
std::string config_to_fla_json(const nn::ModelConfig& c);
nn::ModelConfig config_from_fla_json(const std::string& text);
// The Hugging Face-style RetNet port's RetNetConfig (torchscale's keys plus use_glu,
// use_lm_decay, tie_word_embeddings, ...): torchscale's architecture. from_hf refuses the
// port's non-GLU feed-forward (biases and a sub-LayerNorm) and what torchscale's refuses.
std::string config_to_hf_json(const nn::ModelConfig& c);
nn::ModelConfig config_from_hf_json(const std::string& text);

// Our parameter name as `naming` (retnet, torchscale, hf, fla) spells it.
std::string external_name(const std::string& ours, const std::string& naming);

}  // namespace rn::tools
