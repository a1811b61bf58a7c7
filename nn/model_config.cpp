// nn/model_config.cpp — size presets (docs/model.md §7), decay schedules (§4), checks,
// and the JSON form stored in checkpoints.
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/json_limits.h"
#include "core/error.h"
#include "nn/model_config.h"

namespace rn::nn {

namespace {
struct Preset {
    const char* name;
    int64_t d, value, heads, layers;
};
// torchscale's pattern: Dk = 256, Dv = 432, value_dim = ffn ≈ 1.69·d; tiny/mini are for CPUs
const Preset kPresets[] = {
    {"tiny", 64, 128, 2, 2},        {"mini", 128, 256, 2, 4},       {"base", 512, 864, 2, 6},
    {"small", 768, 1296, 3, 12},    {"medium", 1024, 1728, 4, 16},  {"xl", 2048, 3456, 8, 24},
    {"3b", 2560, 4320, 10, 32},     {"7b", 4096, 6912, 16, 32},
};
}  // namespace

std::vector<std::string> ModelConfig::preset_names() {
    std::vector<std::string> n;
    for (const auto& p : kPresets) n.push_back(p.name);
    return n;
}

// The Transformer preset of a name keeps d_model, layers and vocabulary, takes heads of 64
// up to base (d ≤ 512) and of 128 above, and a SwiGLU width f that gives the RetNet block's
// parameter count: attention 4d² + FFN 3d·f = RetNet's 2d² + 3d·value_dim + 3d·ffn, so
// f = value_dim + ffn − 2d/3, rounded to a multiple of 8 (the table in docs/transformer.md).
ModelConfig ModelConfig::from_preset(const std::string& name, int64_t vocab_size, const std::string& arch) {
    RN_CHECK(arch == "retnet" || arch == "transformer", "unknown arch '", arch, "': expected retnet or transformer");
    for (const auto& p : kPresets)
        if (name == p.name) {
            ModelConfig c;
            c.arch = arch;
            c.preset = name;
            c.vocab_size = vocab_size;
            c.d_model = p.d;
            c.value_dim = p.value;
            c.ffn_dim = p.value;
            c.n_heads = p.heads;
            c.n_layers = p.layers;
            if (arch == "transformer") {
                const int64_t hd = p.d <= 512 ? 64 : 128;
                c.n_heads = p.d / hd;
                c.n_kv_heads = c.n_heads;
                c.value_dim = p.d;
                const double f = double(p.value + p.value) - 2.0 * double(p.d) / 3.0;
                c.ffn_dim = int64_t(std::llround(f / 8.0)) * 8;
            }
            return c;
        }
    std::string all;
    for (const auto& n : preset_names()) all += (all.empty() ? "" : ", ") + n;
    RN_FAIL("unknown preset '", name, "': expected one of ", all);
}

std::vector<double> ModelConfig::gammas() const {
    std::vector<double> g(static_cast<size_t>(n_heads));
    for (int64_t h = 0; h < n_heads; ++h) {
        if (decay == "paper") {
            double lo = std::log(1.0 / 32), hi = std::log(1.0 / 512);
            double t = n_heads > 1 ? double(h) / double(n_heads - 1) : 0.0;
            g[size_t(h)] = 1.0 - std::exp(lo + t * (hi - lo));
        } else {
            g[size_t(h)] = 1.0 - std::pow(2.0, -5.0 - double(h));
        }
    }
    return g;
}

int64_t ModelConfig::parameter_count() const {
    const int64_t d = d_model, f = ffn_dim, V = vocab_size;
    int64_t block = 2 * d + 3 * d * f;  // two RMSNorm weights, the (Swi)GLU's three matrices
    if (is_transformer()) {
        const int64_t q = n_heads * head_dim(), kv = kv_heads() * head_dim();
        block += d * q + 2 * d * kv + q * d;  // q, k, v, o projections
    } else {
        block += 2 * d * key_width() + 3 * d * value_dim;  // q, k; v, g and out
        if (group_norm_affine) block += value_head_dim();     // the group norm's weight (torchscale's has none)
    }
    int64_t n = V * d + n_layers * block + d;  // embedding, blocks, final norm
    if (!tie_embeddings) n += V * d;           // the output projection
    if (!is_transformer() && emb_norm) n += d;
    return n;
}

void ModelConfig::validate() const {
    RN_CHECK(arch == "retnet" || arch == "transformer", "config: arch must be retnet or transformer, got '", arch, "'");
    RN_CHECK(vocab_size > 0 && d_model > 0 && n_layers > 0 && n_heads > 0 && value_dim > 0 && ffn_dim > 0,
             "config: every size must be positive (vocab ", vocab_size, ", d ", d_model, ", layers ", n_layers, ", heads ",
             n_heads, ", value_dim ", value_dim, ", ffn ", ffn_dim, ")");
    // upper bounds far above any real model (7b: d 4096, 32 layers, 16 heads), so that a
    // damaged or crafted config is refused before anything sized by it is allocated
    constexpr int64_t kMaxDim = int64_t(1) << 24, kMaxLayers = 4096, kMaxHeads = 4096;
    for (auto [name, v] : {std::pair<const char*, int64_t>{"vocab_size", vocab_size}, {"d_model", d_model},
                           {"value_dim", value_dim}, {"ffn_dim", ffn_dim}})
        RN_CHECK(v <= kMaxDim, "config: ", name, " ", v, " is larger than the ", kMaxDim, " this build allows");
    RN_CHECK(n_layers <= kMaxLayers, "config: n_layers ", n_layers, " is more than the ", kMaxLayers,
             " this build allows");
    RN_CHECK(n_heads <= kMaxHeads, "config: n_heads ", n_heads, " is more than the ", kMaxHeads, " this build allows");
    RN_CHECK(std::isfinite(norm_eps) && norm_eps > 0, "config: norm_eps must be a positive number, got ", norm_eps);
    RN_CHECK(key_dim >= 0 && key_dim <= kMaxDim, "config: key_dim must be 0 (d_model) or a width up to ", kMaxDim,
             ", got ", key_dim);
    RN_CHECK(key_width() % n_heads == 0 && value_dim % n_heads == 0, "config: ", key_dim > 0 ? "key_dim " : "d_model ",
             key_width(), " and value_dim ", value_dim, " must both divide by n_heads ", n_heads);
    RN_CHECK(head_dim() % 2 == 0, "config: the key head dim ", key_dim > 0 ? "key_dim" : "d_model", "/n_heads = ", head_dim(),
             " must be even (the rotation works on pairs)");
    RN_CHECK(dropout >= 0 && dropout < 1, "config: dropout must be in [0, 1), got ", dropout);
    RN_CHECK(activation == "swish" || activation == "silu" || activation == "gelu", "config: activation must be swish or gelu, got '",
             activation, "'");
    if (is_transformer()) {
        RN_CHECK(n_kv_heads >= 0 && n_kv_heads <= n_heads && n_heads % kv_heads() == 0, "config: n_kv_heads ",
                 n_kv_heads, " must divide n_heads ", n_heads, " (0: as many as n_heads)");
        RN_CHECK(std::isfinite(rope_theta) && rope_theta > 1, "config: rope_theta must be a number > 1, got ", rope_theta);
        RN_CHECK(!emb_norm, "config: emb_norm is a RetNet option; the Transformer has none");
        RN_CHECK(key_dim == 0 && rotary == "xpos_pairs" && retention_lambda && !group_norm_affine,
                 "config: key_dim, rotary, retention_lambda and group_norm_affine are RetNet options; the Transformer has none");
        return;
    }
    RN_CHECK(decay == "torchscale" || decay == "paper", "config: decay must be torchscale or paper, got '", decay, "'");
    RN_CHECK(mode == "parallel" || mode == "chunkwise", "config: mode must be parallel or chunkwise, got '", mode, "'");
    RN_CHECK(chunk >= 1, "config: chunk must be ≥ 1, got ", chunk);
    RN_CHECK(rotary == "xpos_pairs" || rotary == "rope_half", "config: rotary must be xpos_pairs (torchscale) or rope_half "
             "(flash-linear-attention), got '", rotary, "'");
    if (rotary == "rope_half")
        RN_CHECK(std::isfinite(rope_theta) && rope_theta > 1, "config: rope_theta must be a number > 1, got ", rope_theta);
    for (double g : gammas())
        RN_CHECK(float(g) < 1.0f, "config: with ", n_heads, " heads the torchscale decay 1 − 2^(−5−h) rounds to 1 in "
                 "fp32 for the last heads (no decay at all). HINT: use decay \"paper\" or fewer heads");
}

std::string ModelConfig::to_json() const {
    nlohmann::json j = {{"preset", preset},     {"vocab_size", vocab_size}, {"d_model", d_model},
                        {"n_layers", n_layers}, {"n_heads", n_heads},       {"value_dim", value_dim},
                        {"ffn_dim", ffn_dim},   {"activation", activation}, {"decay", decay},
                        {"emb_norm", emb_norm}, {"tie_embeddings", tie_embeddings}, {"norm_eps", norm_eps},
                        {"dropout", dropout},   {"mode", mode},             {"chunk", chunk}};
    if (is_transformer()) {  // absent means retnet: RetNet configs stay as they were
        j["arch"] = arch;
        j["n_kv_heads"] = kv_heads();
        j["rope_theta"] = rope_theta;
    } else {  // the variant switches only when not torchscale's: older configs stay byte-identical
        if (key_dim > 0 && key_dim != d_model) j["key_dim"] = key_dim;
        if (rotary != "xpos_pairs") {
            j["rotary"] = rotary;
            j["rope_theta"] = rope_theta;
        }
        if (!retention_lambda) j["retention_lambda"] = false;
        if (group_norm_affine) j["group_norm_affine"] = true;
    }
    return j.dump(2);
}

ModelConfig ModelConfig::with_overrides(const std::string& text) const {
    RN_CHECK(text.size() <= 65536, "config overrides: ", text.size(), " bytes; a model config is a small flat object");
    const nlohmann::json o = nlohmann::json::parse(text, nullptr, false);
    RN_CHECK(!o.is_discarded() && o.is_object(), "config overrides: not a JSON object: '", text.substr(0, 80), "'");
    static const char* kOwned[] = {"arch", "vocab_size", "preset", "mode", "chunk"};
    static const char* kKnown[] = {"n_kv_heads", "rope_theta", "d_model", "n_layers", "n_heads", "value_dim",
                                   "ffn_dim", "activation", "decay", "emb_norm", "tie_embeddings", "norm_eps",
                                   "dropout", "key_dim", "rotary", "retention_lambda", "group_norm_affine"};
    for (const auto& [k, v] : o.items()) {
        for (const char* owned : kOwned)
            RN_CHECK(k != owned, "config overrides: '", k, "' comes from the command line (--arch, the tokenizer's "
                     "vocabulary, --preset, --mode, --chunk), not from the file");
        bool known = false;
        for (const char* n : kKnown) known = known || k == n;
        std::string all;
        for (const char* n : kKnown) all += (all.empty() ? "" : ", ") + std::string(n);
        RN_CHECK(known, "config overrides: unknown key '", k, "'; the keys a file may set: ", all);
    }
    nlohmann::json merged = nlohmann::json::parse(to_json());
    for (const auto& [k, v] : o.items()) merged[k] = v;
    ModelConfig c = from_json(merged.dump());
    c.validate();
    return c;
}

ModelConfig ModelConfig::from_json(const std::string& text) {
    const size_t deep = json_depth_exceeded_at(text);
    RN_CHECK(deep == std::string::npos, "config: nests arrays/objects more than ", kMaxJsonDepth,
             " levels deep (at byte ", deep, "); a model config is one flat object");
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    RN_CHECK(!j.is_discarded() && j.is_object(), "config: not a JSON object: '", text.substr(0, 80), "'");
    ModelConfig c;
    // sizes must be JSON integers: nlohmann would cast 2.5 to 2 and 1e300 to anything
    for (const char* k : {"vocab_size", "d_model", "n_layers", "n_heads", "value_dim", "ffn_dim", "chunk", "n_kv_heads", "key_dim"})
        // the message names the value's type and, for a scalar, the value: dumping a crafted
        // array nested 100,000 deep would recurse once per level and overflow the stack
        RN_CHECK(!j.contains(k) || j[k].is_number_integer(), "config: ", k, " must be an integer, got ",
                 j[k].is_primitive() ? j[k].dump().substr(0, 40) : std::string("an ") + j[k].type_name());
    try {
        c.arch = j.value("arch", c.arch);
        c.n_kv_heads = j.value("n_kv_heads", c.n_kv_heads);
        c.rope_theta = j.value("rope_theta", c.rope_theta);
        c.preset = j.value("preset", c.preset);
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.d_model = j.value("d_model", c.d_model);
        c.n_layers = j.value("n_layers", c.n_layers);
        c.n_heads = j.value("n_heads", c.n_heads);
        c.value_dim = j.value("value_dim", c.value_dim);
        c.ffn_dim = j.value("ffn_dim", c.ffn_dim);
        c.activation = j.value("activation", c.activation);
        c.decay = j.value("decay", c.decay);
        c.emb_norm = j.value("emb_norm", c.emb_norm);
        c.tie_embeddings = j.value("tie_embeddings", c.tie_embeddings);
        c.norm_eps = j.value("norm_eps", c.norm_eps);
        c.dropout = j.value("dropout", c.dropout);
        c.mode = j.value("mode", c.mode);
        c.chunk = j.value("chunk", c.chunk);
        c.key_dim = j.value("key_dim", c.key_dim);
        if (c.key_dim == c.d_model) c.key_dim = 0;  // one spelling of torchscale's width
        c.rotary = j.value("rotary", c.rotary);
        c.retention_lambda = j.value("retention_lambda", c.retention_lambda);
        c.group_norm_affine = j.value("group_norm_affine", c.group_norm_affine);
    } catch (const nlohmann::json::exception& e) {
        RN_FAIL("config: a field has the wrong type: ", e.what());
    }
    c.validate();
    return c;
}

}  // namespace rn::nn
