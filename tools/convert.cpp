// tools/convert.cpp — `retnet convert` (tools/convert.h): HDF5 checkpoint ↔ safetensors +
// config.json + tokenizer.model. Export streams one tensor at a time from the checkpoint
// into the safetensors writer; import builds the model from the config, checks every name
// and shape before copying, and saves a weights-only checkpoint.
#include "tools/convert.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/json_limits.h"
#include "core/tensor_math.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"

namespace rn::tools {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string folder_of(const std::string& path) {
    fs::path p = fs::path(path).parent_path();
    return p.empty() ? std::string(".") : p.string();
}

std::string read_whole(const std::string& path, const char* what) {
    std::ifstream in(path, std::ios::binary);
    RN_CHECK(in.good(), "convert: cannot read ", what, " '", path, "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// atomic small-file write: a temporary beside it, then a rename
void write_whole(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        RN_CHECK(out.good(), "convert: cannot create '", tmp, "'");
        out.write(bytes.data(), std::streamsize(bytes.size()));
        out.flush();
        if (!out.good()) {
            std::remove(tmp.c_str());
            RN_FAIL("convert: writing '", tmp, "' failed");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        RN_FAIL("convert: cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno));
    }
}

void refuse_existing(const std::vector<std::string>& paths, bool force) {
    if (force) return;
    for (const auto& p : paths)
        RN_CHECK(!fs::exists(p), "convert: '", p, "' exists. HINT: pass --force to overwrite it, or another OUT");
}

// torchscale's RetNetRelPos buffers (retnet_rel_pos.angle [Dk], .decay [H]), which its
// state_dict holds and a strict load_state_dict requires; computed as it computes them
std::vector<float> torchscale_angle(const nn::ModelConfig& c) {
    const int64_t n = c.head_dim() / 2;
    std::vector<float> a;
    for (int64_t i = 0; i < n; ++i) {
        const double x = n > 1 ? double(i) / double(n - 1) : 0.0;  // torch.linspace(0, 1, n)
        const float v = float(1.0 / std::pow(10000.0, x));
        a.push_back(v);
        a.push_back(v);  // .unsqueeze(-1).repeat(1, 2).flatten()
    }
    return a;
}
std::vector<float> torchscale_decay(const nn::ModelConfig& c) {
    std::vector<float> d;
    if (c.decay == "paper") {  // the HF port's use_lm_decay: log(1 − exp(linspace(log 1/32, log 1/512, H)))
        for (double g : c.gammas()) d.push_back(float(std::log(g)));
        return d;
    }
    for (int64_t h = 0; h < c.n_heads; ++h) d.push_back(std::log(1.0f - std::exp2(-5.0f - float(h))));
    return d;
}

std::string bytes_of(const std::vector<float>& v, const std::string& dtype) {
    std::string out;
    if (dtype == "F32") {
        out.assign(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    } else if (dtype == "BF16") {
        out.resize(v.size() * 2);
        for (size_t i = 0; i < v.size(); ++i) {
            const uint16_t b = bf16::from_float(v[i]);
            std::memcpy(&out[2 * i], &b, 2);
        }
    } else {  // F64: exact
        out.resize(v.size() * 8);
        for (size_t i = 0; i < v.size(); ++i) {
            const double d = v[i];
            std::memcpy(&out[8 * i], &d, 8);
        }
    }
    return out;
}

int export_safetensors(const ConvertOptions& o, std::ostream& log) {
    RN_CHECK(o.to == "retnet" || o.to == "torchscale" || o.to == "hf" || o.to == "fla", "convert: --to '", o.to,
             "': expected retnet, torchscale, hf or fla");
    RN_CHECK(o.dtype == "F32" || o.dtype == "BF16" || o.dtype == "F64", "convert: --dtype '", o.dtype,
             "': expected F32, BF16 or F64");
    const std::string dir = folder_of(o.out);
    const std::string config_path = dir + "/config.json", tok_path = dir + "/tokenizer.model";
    nn::CheckpointReader rd(o.in);
    const nn::ModelConfig cfg = nn::ModelConfig::from_json(rd.config_json());
    RN_CHECK(!(o.to != "retnet" && cfg.is_transformer()), "convert: --to ", o.to, " is for RetNet checkpoints; '",
             o.in, "' holds a ", cfg.arch, " (HINT: --to retnet)");
    std::string config_text;
    if (o.to == "torchscale") config_text = config_to_torchscale_json(cfg);
    else if (o.to == "hf") config_text = config_to_hf_json(cfg);
    else if (o.to == "fla") config_text = config_to_fla_json(cfg);
    else config_text = json::parse(cfg.to_json()).dump(2);
    const bool has_tok = rd.tokenizer_bytes() > 0;
    std::vector<std::string> outs = {o.out, config_path};
    if (has_tok) outs.push_back(tok_path);
    refuse_existing(outs, o.force);
    RN_CHECK(fs::is_directory(dir), "convert: the folder '", dir, "' of OUT does not exist");

    std::vector<nn::SafetensorsOut> tensors;
    int64_t n_params = 0;
    const auto infos = rd.list("model");
    for (const nn::TensorInfo& t : infos) {
        const std::string name = t.name;
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        n_params += n;
        tensors.push_back({external_name(name, o.to), o.dtype, t.shape, [&rd, name, dtype = o.dtype](std::string& buf) {
                               buf = bytes_of(rd.read("model", name).data, dtype);
                           }});
    }
    std::vector<std::string> added;
    if (o.to != "retnet" && cfg.tie_embeddings) {
        // a tied output projection is the embedding's Parameter in PyTorch, so the
        // state_dict holds both names; safetensors has no aliases, so a copy
        const nn::TensorInfo* emb = nullptr;
        for (const auto& t : infos)
            if (t.name == "embed_tokens.weight") emb = &t;
        RN_CHECK(emb, "convert: '", o.in, "' has tie_embeddings but no embed_tokens.weight");
        const std::string out_name = external_name("output_projection.weight", o.to);
        tensors.push_back({out_name, o.dtype, emb->shape, [&rd, dtype = o.dtype](std::string& buf) {
                               buf = bytes_of(rd.read("model", "embed_tokens.weight").data, dtype);
                           }});
        added.push_back(out_name + " (a copy of the tied " + external_name("embed_tokens.weight", o.to) + ")");
    }
    if (o.to == "torchscale" || o.to == "hf") {  // RetNetRelPos's buffers, which a strict load_state_dict wants
        const std::string pre = o.to == "hf" ? "model." : "";
        const std::vector<float> angle = torchscale_angle(cfg), decay = torchscale_decay(cfg);
        tensors.push_back({pre + "retnet_rel_pos.angle", "F32", {int64_t(angle.size())},
                           [angle](std::string& buf) { buf = bytes_of(angle, "F32"); }});
        tensors.push_back({pre + "retnet_rel_pos.decay", "F32", {int64_t(decay.size())},
                           [decay](std::string& buf) { buf = bytes_of(decay, "F32"); }});
        added.push_back(pre + "retnet_rel_pos.angle, " + pre + "retnet_rel_pos.decay (" + o.to +
                        "'s buffers, computed from the config)");
    }
    const std::map<std::string, std::string> metadata = {
        {"format", "pt"}, {"retnet.config", cfg.to_json()}, {"retnet.naming", o.to}};  // no paths: the same weights give the same file

    write_whole(config_path, config_text + "\n");
    if (has_tok) write_whole(tok_path, rd.tokenizer());
    try {
        nn::write_safetensors(o.out, tensors, metadata);
    } catch (...) {
        std::remove(config_path.c_str());
        if (has_tok) std::remove(tok_path.c_str());
        throw;
    }
    log << "wrote " << o.out << ": " << rd.list("model").size() << " tensors, " << n_params << " parameters as " << o.dtype
        << (o.dtype == "BF16" ? " (rounded to nearest even: converting back is not bit-exact)" : "") << ", "
        << o.to << " names\n";
    for (const auto& a : added) log << "  added " << a << "\n";
    log << "wrote " << config_path << " ("
        << (o.to == "torchscale" ? "torchscale's RetNetConfig keys"
            : o.to == "hf"       ? "the Hugging Face-style port's RetNetConfig keys"
            : o.to == "fla"      ? "flash-linear-attention's RetNetConfig keys"
                                 : "retnet.cpp config")
        << ")\n";
    if (has_tok) log << "wrote " << tok_path << " (SentencePiece model, " << rd.tokenizer_bytes() << " bytes)\n";
    else log << "no tokenizer in " << o.in << ": none written\n";
    const nn::TrainState& st = rd.train_state();
    log << "dropped (safetensors holds weights only): the training state (step " << st.step << ", " << st.tokens
        << " tokens, RNG, data position, best validation loss)";
    if (rd.has_optimizer())
        log << ", the AdamW state (step " << rd.optimizer_step() << ", moments m and v of " << rd.list("optimizer/m").size()
            << " tensors)";
    log << ", the checkpoint metadata\n";
    return 0;
}

// A safetensors file read into a model: the naming it was in, where the config came
// from, what was skipped (buffers, tied aliases) and which file dtypes were converted.
struct Imported {
    std::shared_ptr<nn::LanguageModel> model;
    std::string naming, config_from;
    std::vector<std::string> skipped;
    std::set<std::string> converted;
};

json parse_config_file(const std::string& path) {
    const std::string text = read_whole(path, "config");
    RN_CHECK(json_depth_exceeded_at(text) == std::string::npos, "convert: '", path, "' nests too deep");
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        RN_FAIL("convert: '", path, "' is not valid JSON: ", e.what());
    }
    RN_CHECK(j.is_object(), "convert: '", path, "' must hold a JSON object");
    return j;
}

Imported import_model(const std::string& in, const std::string& from) {
    RN_CHECK(from == "auto" || from == "retnet" || from == "torchscale" || from == "hf" || from == "fla",
             "convert: --from '", from, "': expected auto, retnet, torchscale, hf or fla");
    nn::SafetensorsReader r(in);
    const std::string dir = folder_of(in);
    const std::string config_path = dir + "/config.json";
    Imported im;
    nn::ModelConfig cfg;
    if (fs::exists(config_path)) {
        const json j = parse_config_file(config_path);
        const std::string text = j.dump();
        std::string naming = from;
        if (naming == "auto") {
            if (j.contains("decoder_embed_dim")) naming = r.has("model.embed_tokens.weight") ? "hf" : "torchscale";
            else if (j.contains("hidden_size") && !j.contains("d_model")) naming = "fla";
            else naming = "retnet";
        }
        if (naming == "torchscale") cfg = config_from_torchscale_json(text);
        else if (naming == "hf") cfg = config_from_hf_json(text);
        else if (naming == "fla") cfg = config_from_fla_json(text);
        else cfg = nn::ModelConfig::from_json(text);
        im.naming = naming;
        im.config_from = config_path + (naming == "retnet" ? std::string() : " (" + naming + " keys)");
    } else {
        RN_CHECK(from == "auto" || from == "retnet", "convert: --from ", from, " reads the model's config.json, but there is no '",
                 config_path, "' beside '", in, "'");
        auto it = r.metadata().find("retnet.config");
        RN_CHECK(it != r.metadata().end(), "convert: no config for '", in, "': expected '", config_path,
                 "' beside it, or a \"retnet.config\" entry in its metadata. HINT: write the config.json of the model");
        cfg = nn::ModelConfig::from_json(it->second);
        im.naming = "retnet";
        im.config_from = in + " (metadata)";
    }
    cfg.validate();

    im.model = nn::make_model(cfg);
    auto params = im.model->named_parameters();
    // the file's name of each parameter; fla calls its group norm g_norm when the norm and
    // the gate are not fused (fuse_norm false): the same weight
    std::map<std::string, std::string> source;
    for (const auto& [name, p] : params) {
        std::string ext = external_name(name, im.naming);
        if (im.naming == "fla" && !r.has(ext) && ends_with(ext, ".attn.g_norm_swish_gate.weight")) {
            const std::string alt = ext.substr(0, ext.size() - std::strlen("g_norm_swish_gate.weight")) + "g_norm.weight";
            if (r.has(alt)) ext = alt;
        }
        source[name] = ext;
    }
    // check every name and shape first: nothing is written for a file that does not fit
    std::vector<std::string> problems;
    std::set<std::string> wanted;
    for (const auto& [name, p] : params) {
        const std::string& ext = source[name];
        wanted.insert(ext);
        if (!r.has(ext)) problems.push_back("'" + ext + "' is missing");
        else if (r.entry(ext).shape != p.shape()) {
            std::ostringstream s;
            s << "'" << ext << "' has shape " << r.entry(ext).shape << ", the config needs " << p.shape();
            problems.push_back(s.str());
        }
    }
    const std::string pre = im.naming == "hf" ? "model." : "";
    for (const auto& e : r.entries()) {
        if (wanted.count(e.name)) continue;
        const bool buffer = (im.naming == "torchscale" || im.naming == "hf") &&
                            (e.name == pre + "retnet_rel_pos.angle" || e.name == pre + "retnet_rel_pos.decay");
        const bool alias = cfg.tie_embeddings && e.name == external_name("output_projection.weight", im.naming);
        if (buffer || alias) im.skipped.push_back(e.name);  // recomputed or shared here
        else problems.push_back("'" + e.name + "' is not a parameter of this model");
    }
    if (!problems.empty()) {
        std::string list;
        for (size_t i = 0; i < problems.size() && i < 8; ++i) list += (i ? "; " : "") + problems[i];
        if (problems.size() > 8) list += "; and " + std::to_string(problems.size() - 8) + " more";
        RN_FAIL("convert: '", in, "' does not fit the config from ", im.config_from, " (", im.naming, " names): ", list);
    }
    NoGradGuard no_grad;
    for (auto& [name, p] : params) {
        const std::string& ext = source[name];
        Tensor t = r.read(ext, DType::f32);
        RN_CHECK(p.dtype() == DType::f32 && p.is_contiguous() && !p.is_cuda(), "convert: parameter '", name,
                 "' is not a contiguous CPU f32 tensor");
        std::memcpy(p.raw_data(), t.raw_data(), t.nbytes());
        if (r.entry(ext).dtype != "F32") im.converted.insert(r.entry(ext).dtype);
    }
    return im;
}

int import_safetensors(const ConvertOptions& o, std::ostream& log) {
    refuse_existing({o.out}, o.force);
    Imported im = import_model(o.in, o.from);
    const std::string tok_path = folder_of(o.in) + "/tokenizer.model";
    std::string tokenizer;
    if (fs::exists(tok_path)) tokenizer = read_whole(tok_path, "tokenizer");
    const json meta = {{"converted_from", o.in}, {"config_from", im.config_from}, {"naming", im.naming}};
    nn::save_checkpoint(o.out, *im.model, nullptr, nn::TrainState{}, tokenizer, meta.dump());
    log << "wrote " << o.out << ": " << im.model->named_parameters().size() << " tensors from " << o.in << " ("
        << im.naming << " names), config from " << im.config_from << "\n";
    for (const auto& d : im.converted) log << "  " << d << " tensors converted to f32\n";
    if (!im.skipped.empty()) {
        log << "  skipped (" << im.naming << "'s buffers and aliases, recomputed here):";
        for (const auto& s : im.skipped) log << " " << s;
        log << "\n";
    }
    log << (tokenizer.empty() ? "no tokenizer.model beside it: the checkpoint has no tokenizer\n"
                              : "tokenizer from " + tok_path + "\n");
    log << "a weights-only checkpoint at step 0 (no optimizer or training state)\n";
    return 0;
}

}  // namespace

namespace {
nn::ModelConfig torchscale_fields(const json& j);
}

namespace {
std::string torchscale_keys(const nn::ModelConfig& c);
}
static std::string config_to_torchscale_json_any_decay(const nn::ModelConfig& c) { return torchscale_keys(c); }

std::string config_to_torchscale_json(const nn::ModelConfig& c) {
    RN_CHECK(c.is_torchscale_variant(), "convert --to torchscale: the config has flash-linear-attention's variant "
             "switches (key_dim ", c.key_width(), ", rotary ", c.rotary, ", retention_lambda ", c.retention_lambda ? "true" : "false",
             ", group_norm_affine ", c.group_norm_affine ? "true" : "false", "), which torchscale does not compute. HINT: --to fla");
    RN_CHECK(c.decay == "torchscale", "convert --to torchscale: the decay schedule is '", c.decay,
             "', but torchscale's RetNetRelPos computes only γ = 1 − 2^(−5−h) (decay \"torchscale\")");
    RN_CHECK(c.activation == "swish" || c.activation == "gelu", "convert --to torchscale: activation '", c.activation,
             "' has no torchscale activation_fn");
    return torchscale_keys(c);
}

namespace {
// torchscale's RetNetConfig keys of a config (no checks: the HF port shares them)
std::string torchscale_keys(const nn::ModelConfig& c) {
    json j = {{"decoder_embed_dim", c.d_model},
              {"decoder_value_embed_dim", c.value_dim},
              {"decoder_retention_heads", c.n_heads},
              {"decoder_ffn_embed_dim", c.ffn_dim},
              {"decoder_layers", c.n_layers},
              {"vocab_size", c.vocab_size},
              {"activation_fn", c.activation},
              {"layernorm_eps", c.norm_eps},
              {"layernorm_embedding", c.emb_norm},
              {"share_decoder_input_output_embed", c.tie_embeddings},
              {"no_scale_embedding", true},
              {"decoder_normalize_before", true},
              {"deepnorm", false},
              {"moe_freq", 0},
              {"no_output_layer", false},
              {"dropout", c.dropout},
              {"activation_dropout", 0.0},
              {"drop_path_rate", 0.0},
              {"chunkwise_recurrent", c.mode == "chunkwise"},
              {"recurrent_chunk_size", c.chunk},
              {"retnet_cpp_preset", c.preset}};  // ours; torchscale's RetNetConfig ignores unknown keys
    return j.dump(2);
}
}  // namespace

nn::ModelConfig config_from_torchscale_json(const std::string& text) {
    RN_CHECK(json_depth_exceeded_at(text) == std::string::npos, "torchscale config: nests deeper than ", kMaxJsonDepth);
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        RN_FAIL("torchscale config: not valid JSON: ", e.what());
    }
    RN_CHECK(j.is_object(), "torchscale config: expected a JSON object");
    try {
        return torchscale_fields(j);
    } catch (const json::exception& e) {
        RN_FAIL("torchscale config: a key has the wrong type: ", e.what());
    }
}

namespace {
nn::ModelConfig torchscale_fields(const json& j) {
    auto need_int = [&](const char* k) -> int64_t {
        RN_CHECK(j.contains(k) && j[k].is_number_integer(), "torchscale config: '", k, "' must be an integer, got ",
                 j.contains(k) ? j[k].dump() : std::string("nothing"));
        return j[k].get<int64_t>();
    };
    // a flag our model does not implement must have the value we compute
    auto flag = [&](const char* k, bool want, bool absent_value) {
        bool v = absent_value;
        if (j.contains(k)) {
            RN_CHECK(j[k].is_boolean(), "torchscale config: '", k, "' must be true or false, got ", j[k].dump());
            v = j[k].get<bool>();
        }
        RN_CHECK(v == want, "torchscale config: ", k, " = ", v ? "true" : "false", " is not supported (retnet.cpp computes ",
                 k, " = ", want ? "true" : "false", ")");
    };
    flag("decoder_normalize_before", true, true);
    flag("no_scale_embedding", true, true);
    flag("deepnorm", false, false);
    flag("no_output_layer", false, false);
    if (j.contains("moe_freq"))
        RN_CHECK(j["moe_freq"] == 0, "torchscale config: moe_freq = ", j["moe_freq"].dump(), " (mixture of experts) is not supported");
    for (const char* k : {"activation_dropout", "drop_path_rate"})
        if (j.contains(k))
            RN_CHECK(j[k].is_number() && j[k].get<double>() == 0.0, "torchscale config: ", k, " = ", j[k].dump(),
                     " is not supported (only 0)");
    nn::ModelConfig c;
    c.preset = j.value("retnet_cpp_preset", std::string("torchscale"));
    c.d_model = need_int("decoder_embed_dim");
    c.value_dim = need_int("decoder_value_embed_dim");
    c.n_heads = need_int("decoder_retention_heads");
    c.ffn_dim = need_int("decoder_ffn_embed_dim");
    c.n_layers = need_int("decoder_layers");
    c.vocab_size = need_int("vocab_size");
    c.activation = j.value("activation_fn", std::string("gelu"));  // torchscale's default
    if (c.activation == "silu") c.activation = "swish";
    c.norm_eps = j.value("layernorm_eps", 1e-6);
    c.emb_norm = j.value("layernorm_embedding", false);
    c.tie_embeddings = j.value("share_decoder_input_output_embed", false);
    c.dropout = j.value("dropout", 0.0);
    c.mode = j.value("chunkwise_recurrent", false) ? "chunkwise" : "parallel";
    c.chunk = j.value("recurrent_chunk_size", c.chunk);
    c.decay = "torchscale";
    c.validate();
    return c;
}
}  // namespace

// ---------------------------------------------------------------- names
std::string external_name(const std::string& ours, const std::string& naming) {
    if (naming == "retnet" || naming == "torchscale") return ours;
    if (naming == "hf") return ours == "output_projection.weight" ? "lm_head.weight" : "model." + ours;
    RN_CHECK(naming == "fla", "convert: unknown naming '", naming, "': expected retnet, torchscale, hf or fla");
    static const std::map<std::string, std::string> top = {{"embed_tokens.weight", "model.embeddings.weight"},
                                                           {"layer_norm.weight", "model.norm.weight"},
                                                           {"output_projection.weight", "lm_head.weight"}};
    if (auto it = top.find(ours); it != top.end()) return it->second;
    // layers.N.<rest>
    static const std::map<std::string, std::string> block = {
        {"retention_layer_norm.weight", "attn_norm.weight"},
        {"retention.q_proj.weight", "attn.q_proj.weight"},
        {"retention.k_proj.weight", "attn.k_proj.weight"},
        {"retention.v_proj.weight", "attn.v_proj.weight"},
        {"retention.g_proj.weight", "attn.g_proj.weight"},
        {"retention.out_proj.weight", "attn.o_proj.weight"},
        {"retention.group_norm.weight", "attn.g_norm_swish_gate.weight"},
        {"final_layer_norm.weight", "mlp_norm.weight"},
        {"ffn.fc1.weight", "mlp.gate_proj.weight"},  // fla's swiglu(gate, up) = silu(gate)·up: our fc1 is its gate_proj
        {"ffn.gate.weight", "mlp.up_proj.weight"},
        {"ffn.fc2.weight", "mlp.down_proj.weight"}};
    if (ours.rfind("layers.", 0) == 0) {
        const size_t dot = ours.find('.', 7);
        if (dot != std::string::npos) {
            auto it = block.find(ours.substr(dot + 1));
            if (it != block.end()) return "model." + ours.substr(0, dot + 1) + it->second;
        }
    }
    RN_FAIL("convert: parameter '", ours, "' has no flash-linear-attention name (fla's RetNet has no such weight)");
}

// ---------------------------------------------------------------- fla's config
namespace {
json parse_object(const std::string& text, const char* what) {
    RN_CHECK(json_depth_exceeded_at(text) == std::string::npos, what, " config: nests deeper than ", kMaxJsonDepth);
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        RN_FAIL(what, " config: not valid JSON: ", e.what());
    }
    RN_CHECK(j.is_object(), what, " config: expected a JSON object");
    return j;
}

nn::ModelConfig fla_fields(const json& j) {
    auto get_int = [&](const char* k, int64_t dflt) -> int64_t {
        if (!j.contains(k) || j[k].is_null()) return dflt;
        RN_CHECK(j[k].is_number_integer(), "fla config: '", k, "' must be an integer, got ", j[k].dump());
        return j[k].get<int64_t>();
    };
    auto get_num = [&](const char* k, double dflt) -> double {
        if (!j.contains(k) || j[k].is_null()) return dflt;
        RN_CHECK(j[k].is_number(), "fla config: '", k, "' must be a number, got ", j[k].dump());
        return j[k].get<double>();
    };
    auto get_bool = [&](const char* k, bool dflt) -> bool {
        if (!j.contains(k) || j[k].is_null()) return dflt;
        RN_CHECK(j[k].is_boolean(), "fla config: '", k, "' must be true or false, got ", j[k].dump());
        return j[k].get<bool>();
    };
    if (j.contains("model_type"))
        RN_CHECK(j["model_type"] == "retnet", "fla config: model_type ", j["model_type"].dump(),
                 " is not flash-linear-attention's RetNet (\"retnet\")");
    // what fla's RetNet can be but ours cannot compute: refused, naming the key
    RN_CHECK(!j.contains("attn") || j["attn"].is_null(), "fla config: 'attn' = ", j.contains("attn") ? j["attn"].dump() : "",
             " (hybrid softmax-attention layers) is not supported: every layer must be retention");
    RN_CHECK(!j.contains("feature_map") || j["feature_map"].is_null(), "fla config: feature_map = ",
             j.contains("feature_map") ? j["feature_map"].dump() : "", " is not supported (only none: identity queries and keys)");
    RN_CHECK(!get_bool("use_short_conv", false), "fla config: use_short_conv = true (short convolutions on q, k, v) is not supported");
    RN_CHECK(get_bool("use_output_gate", true), "fla config: use_output_gate = false (no output gate) is not supported");
    const std::string act = j.contains("hidden_act") && j["hidden_act"].is_string() ? j["hidden_act"].get<std::string>() : "swish";
    RN_CHECK(act == "swish" || act == "silu", "fla config: hidden_act '", act,
             "' is not supported (only swish: fla uses it for the MLP and the retention gate)");
    nn::ModelConfig c;
    c.preset = "fla";
    c.d_model = get_int("hidden_size", 2048);  // fla's defaults (configuration_retnet.py) where a key is absent
    c.n_layers = get_int("num_hidden_layers", 24);
    c.n_heads = get_int("num_heads", 8);
    const int64_t kv = get_int("num_kv_heads", c.n_heads);
    RN_CHECK(kv == c.n_heads, "fla config: num_kv_heads ", kv, " != num_heads ", c.n_heads,
             " (grouped key/value heads) is not supported");
    c.vocab_size = get_int("vocab_size", 32000);
    auto width = [&](const char* k, double dflt) -> int64_t {
        const double e = get_num(k, dflt), w = double(c.d_model) * e;
        const int64_t r = std::llround(w);
        RN_CHECK(std::fabs(w - double(r)) <= 1e-9 * std::max(1.0, std::fabs(w)), "fla config: hidden_size × ", k, " = ", w,
                 " is not an integer");
        return r;
    };
    c.key_dim = width("expand_k", 1.0);
    if (c.key_dim == c.d_model) c.key_dim = 0;
    c.value_dim = width("expand_v", 2.0);
    if (j.contains("intermediate_size") && !j["intermediate_size"].is_null()) {
        c.ffn_dim = get_int("intermediate_size", 0);
    } else {  // fla's GatedMLP: 2/3 of hidden_ratio·d, rounded up to a multiple of 256
        const double ratio = get_num("hidden_ratio", 4.0);
        const int64_t f = int64_t(double(c.d_model) * ratio * 2.0 / 3.0);
        c.ffn_dim = 256 * ((f + 255) / 256);
    }
    c.activation = "swish";
    c.norm_eps = get_num("norm_eps", 1e-6);
    c.tie_embeddings = get_bool("tie_word_embeddings", false);
    c.group_norm_affine = get_bool("elementwise_affine", true);
    c.rotary = "rope_half";
    c.rope_theta = 10000;  // fla's MultiScaleRetention builds RotaryEmbedding(dim=head_k_dim) with its default base
    c.retention_lambda = false;
    c.decay = "torchscale";  // fla's retention ops: log γ_h = log(1 − 2^(−5−h))
    c.emb_norm = false;
    c.mode = "chunkwise";
    c.validate();
    RN_CHECK(c.head_dim() <= 256, "fla config: the key head dim ", c.head_dim(), " is more than fla's rotary allows (256)");
    return c;
}
}  // namespace

nn::ModelConfig config_from_fla_json(const std::string& text) {
    const json j = parse_object(text, "fla");
    try {
        return fla_fields(j);
    } catch (const json::exception& e) {
        RN_FAIL("fla config: a key has the wrong type: ", e.what());
    }
}

std::string config_to_fla_json(const nn::ModelConfig& c) {
    RN_CHECK(!c.is_transformer(), "convert --to fla: the config is a ", c.arch);
    RN_CHECK(c.rotary == "rope_half" && c.rope_theta == 10000 && !c.retention_lambda && c.decay == "torchscale",
             "convert --to fla: flash-linear-attention's RetNet computes half-split RoPE with base 10000, no λ "
             "normalisation and the decay 1 − 2^(−5−h); this config has rotary ", c.rotary, " (θ ", c.rope_theta,
             "), retention_lambda ", c.retention_lambda ? "true" : "false", ", decay ", c.decay,
             ". HINT: --to torchscale or --to hf for torchscale's architecture");
    RN_CHECK(c.activation == "swish" || c.activation == "silu", "convert --to fla: activation '", c.activation,
             "': fla's GatedMLP is SwiGLU only");
    RN_CHECK(!c.emb_norm, "convert --to fla: fla's RetNet has no embedding norm (emb_norm)");
    RN_CHECK(c.head_dim() <= 256, "convert --to fla: the key head dim ", c.head_dim(), " is more than fla allows (256)");
    const double d = double(c.d_model);
    json j = {{"model_type", "retnet"},
              {"architectures", {"RetNetForCausalLM"}},
              {"attn_mode", "chunk"},
              {"hidden_size", c.d_model},
              {"expand_k", double(c.key_width()) / d},
              {"expand_v", double(c.value_dim) / d},
              {"hidden_ratio", 2},
              {"intermediate_size", c.ffn_dim},
              {"num_hidden_layers", c.n_layers},
              {"num_heads", c.n_heads},
              {"num_kv_heads", nullptr},
              {"feature_map", nullptr},
              {"hidden_act", "swish"},
              {"use_short_conv", false},
              {"use_output_gate", true},
              {"elementwise_affine", c.group_norm_affine},
              {"norm_eps", c.norm_eps},
              {"attn", nullptr},
              {"fuse_norm", true},
              {"vocab_size", c.vocab_size},
              {"tie_word_embeddings", c.tie_embeddings},
              {"retnet_cpp_preset", c.preset}};  // ours; PretrainedConfig keeps unknown keys as attributes
    return j.dump(2);
}

// ---------------------------------------------------------------- the HF-style port's config
nn::ModelConfig config_from_hf_json(const std::string& text) {
    const json j = parse_object(text, "hf");
    try {
        if (j.contains("use_glu"))
            RN_CHECK(j["use_glu"].is_boolean() && j["use_glu"].get<bool>(), "hf config: use_glu = ", j["use_glu"].dump(),
                     " (the feed-forward with biases and a sub-LayerNorm) is not supported; only the GLU");
        for (const char* k : {"decoder_normalize_before", "no_scale_embedding", "deepnorm", "layernorm_embedding",
                              "use_lm_decay", "tie_word_embeddings", "subln", "use_ffn_rms_norm"})
            RN_CHECK(!j.contains(k) || j[k].is_boolean(), "hf config: '", k, "' must be true or false, got ", j[k].dump());
        const std::string act = j.value("activation_fn", std::string("gelu"));
        RN_CHECK(act == "gelu" || act == "swish" || act == "silu", "hf config: activation_fn '", act,
                 "' is not supported (swish or gelu)");
        nn::ModelConfig c = config_from_torchscale_json(text);  // the same keys and fixed flags
        c.preset = j.value("retnet_cpp_preset", std::string("hf"));
        c.tie_embeddings = j.value("tie_word_embeddings", false);
        c.decay = j.value("use_lm_decay", false) ? "paper" : "torchscale";
        if (j.contains("forward_impl") && j["forward_impl"].is_string())
            c.mode = j["forward_impl"] == "parallel" ? "parallel" : "chunkwise";
        c.validate();
        return c;
    } catch (const json::exception& e) {
        RN_FAIL("hf config: a key has the wrong type: ", e.what());
    }
}

std::string config_to_hf_json(const nn::ModelConfig& c) {
    RN_CHECK(c.is_torchscale_variant(), "convert --to hf: the Hugging Face-style port computes torchscale's RetNet; this "
             "config has flash-linear-attention's switches (rotary ", c.rotary, ", retention_lambda ",
             c.retention_lambda ? "true" : "false", "). HINT: --to fla");
    RN_CHECK(c.activation == "swish" || c.activation == "gelu", "convert --to hf: activation '", c.activation,
             "' has no activation_fn");
    json j = json::parse(config_to_torchscale_json_any_decay(c));
    j["model_type"] = "retnet";
    j["architectures"] = {"RetNetForCausalLM"};
    j["use_glu"] = true;
    j["use_lm_decay"] = c.decay == "paper";
    j["tie_word_embeddings"] = c.tie_embeddings;
    j["subln"] = true;  // the port's default; it touches only the non-GLU feed-forward
    j["use_ffn_rms_norm"] = false;
    j["forward_impl"] = c.mode == "parallel" ? "parallel" : "chunkwise";
    j.erase("share_decoder_input_output_embed");
    j.erase("chunkwise_recurrent");
    j.erase("moe_freq");
    j.erase("no_output_layer");
    return j.dump(2);
}

// ---------------------------------------------------------------- --check
std::vector<int64_t> default_check_prompt(int64_t vocab) {
    std::vector<int64_t> p;
    for (int64_t i = 0; i < 16; ++i) p.push_back((7 + 31 * i) % vocab);
    return p;
}

CheckStats check_logits(nn::LanguageModel& model, const std::vector<int64_t>& prompt, const std::string& mode,
                        const std::string& device) {
    const nn::ModelConfig& cfg = model.config();
    RN_CHECK(!prompt.empty(), "convert --check: the prompt is empty");
    for (int64_t id : prompt)
        RN_CHECK(id >= 0 && id < cfg.vocab_size, "convert --check: prompt id ", id, " is outside the vocabulary [0, ",
                 cfg.vocab_size, ")");
    RN_CHECK(mode == "parallel" || mode == "chunkwise" || mode == "recurrent", "convert --check: mode '", mode,
             "': expected parallel, chunkwise or recurrent");
    NoGradGuard no_grad;
    // f32 everywhere: on CUDA the matmuls are exact fp32 (no TF32 unless opted in), so the
    // GPU's logits meet the same tolerance against a peer as the CPU's
    const Device dev = Device::parse(device);
    model.to(dev);
    const int64_t T = int64_t(prompt.size()), V = cfg.vocab_size;
    Tensor last;  // [V] f32
    CheckStats st;
    if (mode == "recurrent") {
        std::vector<Tensor> states = model.init_states(1, dev, DType::f32, T);
        for (int64_t t = 0; t < T; ++t) {
            Tensor tok = from_vector(std::vector<int64_t>{prompt[size_t(t)]}, {1}, dev);
            Tensor pos = from_vector(std::vector<int64_t>{t}, {1}, dev);
            last = model.step(tok, states, pos, DType::f32).reshape({V}).to(Device::cpu()).contiguous();
            const float* r = static_cast<const float*>(last.raw_data());
            st.all.insert(st.all.end(), r, r + V);
        }
    } else {
        nn::ForwardOptions fo;
        fo.mode = mode == "parallel" ? RetentionMode::parallel : RetentionMode::chunkwise;
        fo.chunk = 4;  // several chunks over the default prompt: the state handover is exercised
        fo.compute = DType::f32;
        Tensor logits = model.forward(from_vector(prompt, {1, T}, dev), fo).to(Device::cpu()).contiguous();
        const float* r = static_cast<const float*>(logits.raw_data());
        st.all.assign(r, r + T * V);
        last = logits.narrow(1, T - 1, 1).contiguous().reshape({V});
    }
    last = last.contiguous();
    const float* x = static_cast<const float*>(last.raw_data());
    st.mode = mode, st.prompt = prompt, st.vocab = V;
    double sum = 0, mn = x[0], mx = x[0];
    for (int64_t i = 0; i < V; ++i) {
        sum += x[i];
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i], st.argmax = i;
    }
    st.mean = sum / double(V);
    double ss = 0;
    for (int64_t i = 0; i < V; ++i) ss += (x[i] - st.mean) * (x[i] - st.mean);
    st.std = std::sqrt(ss / double(V));
    st.min = mn, st.max = mx;
    for (int64_t i = 0; i < V && i < 8; ++i) {
        st.first8.push_back(x[i]);
        st.checksum += double(i + 1) * x[i];
    }
    return st;
}

std::string CheckStats::to_json() const {
    json j = {{"mode", mode}, {"prompt_ids", prompt}, {"vocab_size", vocab}, {"position", int64_t(prompt.size()) - 1},
              {"mean", mean}, {"std", std}, {"min", min}, {"max", max}, {"argmax", argmax}, {"first8", first8},
              {"checksum", checksum}};
    return j.dump(2);
}

std::string CheckStats::to_text() const {
    std::ostringstream s;
    s.precision(9);
    s << "logits at position " << prompt.size() - 1 << " of " << prompt.size() << " prompt tokens (" << mode
      << ", f32, cpu), vocab " << vocab << "\n";
    s << "  mean " << mean << "  std " << std << "  min " << min << "  max " << max << "  argmax " << argmax << "\n";
    s << "  first 8:";
    for (double v : first8) s << " " << v;
    s << "\n  checksum (sum of (i+1)*first8[i]) " << checksum << "\n";
    return s.str();
}

std::shared_ptr<nn::LanguageModel> load_model_for_check(const std::string& path, const std::string& from,
                                                        std::string* described) {
    if (ends_with(path, ".safetensors")) {
        Imported im = import_model(path, from);
        if (described) *described = path + " (" + im.naming + " names, config from " + im.config_from + ")";
        return im.model;
    }
    RN_CHECK(ends_with(path, ".h5"), "convert --check: '", path, "': expected a .h5 checkpoint or a .safetensors file");
    auto model = nn::load_model(path).model;
    if (described) *described = path;
    return model;
}

int run_convert(const ConvertOptions& o) {
    std::ostream& log = o.log ? *o.log : std::cout;
    if (o.check) {
        RN_CHECK(o.out.empty(), "convert --check takes one checkpoint, got '", o.in, "' and '", o.out, "'");
        std::string described;
        auto model = load_model_for_check(o.in, o.from, &described);
        const auto prompt = o.prompt_ids.empty() ? default_check_prompt(model->config().vocab_size) : o.prompt_ids;
        const CheckStats st = check_logits(*model, prompt, o.check_mode, o.check_device);
        if (!o.dump_logits.empty()) {
            // little-endian f32, as every machine we build on is (the safetensors writer assumes it too)
            std::ofstream f(o.dump_logits, std::ios::binary | std::ios::trunc);
            f.write(reinterpret_cast<const char*>(st.all.data()), std::streamsize(st.all.size() * sizeof(float)));
            RN_CHECK(f.good(), "convert --check: could not write the logits to '", o.dump_logits, "'");
        }
        if (o.json) {
            nlohmann::json j = nlohmann::json::parse(st.to_json());
            if (!o.dump_logits.empty())
                j["logits_file"] = o.dump_logits, j["logits_shape"] = {int64_t(prompt.size()), st.vocab};
            log << j.dump(2) << "\n";
        } else {
            log << described << "\n" << st.to_text();
            if (!o.dump_logits.empty())
                log << "  every position's logits (f32 [" << prompt.size() << ", " << st.vocab << "]) in "
                    << o.dump_logits << "\n";
        }
        return 0;
    }
    RN_CHECK(!o.out.empty(), "convert: expected IN and OUT (or --check CKPT)");
    const bool in_h5 = ends_with(o.in, ".h5"), in_st = ends_with(o.in, ".safetensors");
    const bool out_h5 = ends_with(o.out, ".h5"), out_st = ends_with(o.out, ".safetensors");
    if (in_h5 && out_st) {
        RN_CHECK(o.from == "auto", "convert: --from applies to imports (.safetensors → .h5); an export reads our checkpoint");
        return export_safetensors(o, log);
    }
    if (in_st && out_h5) {
        RN_CHECK(o.to == "retnet", "convert: --to applies to exports (.h5 → .safetensors); an import reads the naming "
                                   "from config.json (or --from)");
        return import_safetensors(o, log);
    }
    RN_FAIL("convert: '", o.in, "' → '", o.out, "': expected a .h5 checkpoint and a .safetensors file, one each way ",
            "(.h5 → .safetensors exports, .safetensors → .h5 imports)");
}

}  // namespace rn::tools
