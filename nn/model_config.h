// nn/model_config.h — a language model's configuration, stored as JSON in every checkpoint:
// the architecture (`arch`: retnet or transformer; a config without it is a RetNet, so every
// older checkpoint still loads), the sizes, and the presets (docs/model.md §7 for RetNet,
// docs/transformer.md for the Transformer presets matched to them in parameter count).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rn::nn {

struct ModelConfig {
    std::string arch = "retnet";  // retnet | transformer
    std::string preset = "tiny";
    int64_t vocab_size = 512;
    int64_t d_model = 64;
    int64_t n_layers = 2;
    int64_t n_heads = 2;      // RetNet: retention heads; Transformer: query heads
    int64_t value_dim = 128;  // RetNet: H·Dv (the Transformer's value width is d_model)
    int64_t ffn_dim = 128;    // the (Swi)GLU's hidden width
    std::string activation = "swish";  // swish (SwiGLU) or gelu
    bool tie_embeddings = false;
    double norm_eps = 1e-6;
    double dropout = 0.0;
    // RetNet only
    std::string decay = "torchscale";  // torchscale: 1 − 2^(−5−h); paper: 1 − exp(linspace(log 1/32, log 1/512, H))
    bool emb_norm = false;
    std::string mode = "chunkwise";  // retention paradigm for training: parallel or chunkwise
    int64_t chunk = 64;
    // RetNet variant switches (docs/interop.md, "flash-linear-attention"); the defaults are
    // torchscale's architecture, and a config holding only defaults is written without them
    int64_t key_dim = 0;                 // H·Dk, the width of W_Q and W_K; 0: d_model (torchscale)
    std::string rotary = "xpos_pairs";   // xpos_pairs: torchscale's pairs (2i, 2i+1); rope_half: RoPE, pairs (i, i+Dk/2), base rope_theta
    bool retention_lambda = true;        // false: no λ_n row normalisation (fla's retention)
    bool group_norm_affine = false;      // true: the per-head RMSNorm after retention has a weight [Dv], shared by the heads
    // Transformer only
    int64_t n_kv_heads = 0;     // key/value heads (grouped-query attention); 0: n_heads
    double rope_theta = 10000;  // rotary base θ (half-split RoPE; a RetNet's with rotary rope_half)

    bool is_transformer() const { return arch == "transformer"; }
    // the query/key width: RetNet's key_dim when set, else d_model
    int64_t key_width() const { return !is_transformer() && key_dim > 0 ? key_dim : d_model; }
    int64_t head_dim() const { return key_width() / n_heads; }
    // whether every RetNet variant switch has its default (torchscale's architecture)
    bool is_torchscale_variant() const {
        return key_width() == d_model && rotary == "xpos_pairs" && retention_lambda && !group_norm_affine;
    }
    int64_t value_head_dim() const { return value_dim / n_heads; }
    int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
    std::vector<double> gammas() const;
    // the model's parameter count from the sizes alone, either arch (no allocation: the
    // preset tables of docs/transformer.md and the 2% matching check)
    int64_t parameter_count() const;
    void validate() const;  // throws with what is wrong and what to do
    // arch "retnet" or "transformer": the Transformer preset of a name has the RetNet
    // preset's d_model, layers and vocabulary and its parameter count within 2%
    static ModelConfig from_preset(const std::string& name, int64_t vocab_size, const std::string& arch = "retnet");
    static std::vector<std::string> preset_names();
    std::string to_json() const;
    static ModelConfig from_json(const std::string& text);
    // this config with the keys of a JSON object applied (`retnet train --config FILE`):
    // sizes and variant switches; a key from_json does not know, or one the command line
    // owns (arch, vocab_size, preset, mode, chunk), is an error naming it. Validated.
    ModelConfig with_overrides(const std::string& json_text) const;
};

}  // namespace rn::nn
