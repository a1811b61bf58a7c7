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
    RN_CHECK(o.to == "retnet" || o.to == "torchscale" || o.to == "hf", "convert: --to '", o.to,
             "': expected retnet, torchscale or hf");
    RN_CHECK(o.to != "hf", "convert: --to hf is not yet supported (the Hugging Face-style RetNet port's names are not "
                           "mapped yet; see docs/interop.md). HINT: --to torchscale writes names and a config that "
                           "torchscale's RetNetDecoder loads");
    RN_CHECK(o.dtype == "F32" || o.dtype == "BF16" || o.dtype == "F64", "convert: --dtype '", o.dtype,
             "': expected F32, BF16 or F64");
    const std::string dir = folder_of(o.out);
    const std::string config_path = dir + "/config.json", tok_path = dir + "/tokenizer.model";
    nn::CheckpointReader rd(o.in);
    const nn::ModelConfig cfg = nn::ModelConfig::from_json(rd.config_json());
    RN_CHECK(!(o.to == "torchscale" && cfg.is_transformer()), "convert: --to torchscale is for RetNet checkpoints; '",
             o.in, "' holds a ", cfg.arch, " (HINT: --to retnet)");
    const std::string config_text = o.to == "torchscale" ? config_to_torchscale_json(cfg) : json::parse(cfg.to_json()).dump(2);
    const bool has_tok = rd.tokenizer_bytes() > 0;
    std::vector<std::string> outs = {o.out, config_path};
    if (has_tok) outs.push_back(tok_path);
    refuse_existing(outs, o.force);
    RN_CHECK(fs::is_directory(dir), "convert: the folder '", dir, "' of OUT does not exist");

    std::vector<nn::SafetensorsOut> tensors;
    int64_t n_params = 0;
    for (const nn::TensorInfo& t : rd.list("model")) {
        const std::string name = t.name;
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        n_params += n;
        tensors.push_back({name, o.dtype, t.shape, [&rd, name, dtype = o.dtype](std::string& buf) {
                               buf = bytes_of(rd.read("model", name).data, dtype);
                           }});
    }
    std::vector<std::string> added;
    if (o.to == "torchscale") {
        if (cfg.tie_embeddings) {
            // torchscale's tied output_projection is the embedding's Parameter, so its
            // state_dict holds both names; safetensors has no aliases, so a copy
            const nn::TensorInfo* emb = nullptr;
            auto infos = rd.list("model");
            for (const auto& t : infos)
                if (t.name == "embed_tokens.weight") emb = &t;
            RN_CHECK(emb, "convert: '", o.in, "' has tie_embeddings but no embed_tokens.weight");
            tensors.push_back({"output_projection.weight", o.dtype, emb->shape, [&rd, dtype = o.dtype](std::string& buf) {
                                   buf = bytes_of(rd.read("model", "embed_tokens.weight").data, dtype);
                               }});
            added.push_back("output_projection.weight (a copy of the tied embed_tokens.weight)");
        }
        const std::vector<float> angle = torchscale_angle(cfg), decay = torchscale_decay(cfg);
        tensors.push_back({"retnet_rel_pos.angle", "F32", {int64_t(angle.size())},
                           [angle](std::string& buf) { buf = bytes_of(angle, "F32"); }});
        tensors.push_back({"retnet_rel_pos.decay", "F32", {int64_t(decay.size())},
                           [decay](std::string& buf) { buf = bytes_of(decay, "F32"); }});
        added.push_back("retnet_rel_pos.angle, retnet_rel_pos.decay (torchscale's buffers, computed from the config)");
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
    log << "wrote " << config_path << " (" << (o.to == "torchscale" ? "torchscale's RetNetConfig keys" : "retnet.cpp config")
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

int import_safetensors(const ConvertOptions& o, std::ostream& log) {
    refuse_existing({o.out}, o.force);
    nn::SafetensorsReader r(o.in);
    const std::string dir = folder_of(o.in);
    const std::string config_path = dir + "/config.json", tok_path = dir + "/tokenizer.model";
    nn::ModelConfig cfg;
    std::string config_from;
    if (fs::exists(config_path)) {
        const std::string text = read_whole(config_path, "config");
        RN_CHECK(json_depth_exceeded_at(text) == std::string::npos, "convert: '", config_path, "' nests too deep");
        json j;
        try {
            j = json::parse(text);
        } catch (const json::exception& e) {
            RN_FAIL("convert: '", config_path, "' is not valid JSON: ", e.what());
        }
        RN_CHECK(j.is_object(), "convert: '", config_path, "' must hold a JSON object");
        if (j.contains("decoder_embed_dim")) {
            cfg = config_from_torchscale_json(text);
            config_from = config_path + " (torchscale keys)";
        } else {
            cfg = nn::ModelConfig::from_json(text);
            config_from = config_path;
        }
    } else {
        auto it = r.metadata().find("retnet.config");
        RN_CHECK(it != r.metadata().end(), "convert: no config for '", o.in, "': expected '", config_path,
                 "' beside it, or a \"retnet.config\" entry in its metadata. HINT: write the config.json of the model");
        cfg = nn::ModelConfig::from_json(it->second);
        config_from = o.in + " (metadata)";
    }
    cfg.validate();

    auto model = nn::make_model(cfg);
    auto params = model->named_parameters();
    // check every name and shape first: nothing is written for a file that does not fit
    std::vector<std::string> problems, skipped;
    std::set<std::string> wanted;
    for (const auto& [name, p] : params) {
        wanted.insert(name);
        if (!r.has(name)) problems.push_back("'" + name + "' is missing");
        else if (r.entry(name).shape != p.shape()) {
            std::ostringstream s;
            s << "'" << name << "' has shape " << r.entry(name).shape << ", the config needs " << p.shape();
            problems.push_back(s.str());
        }
    }
    for (const auto& e : r.entries()) {
        if (wanted.count(e.name)) continue;
        if (e.name == "retnet_rel_pos.angle" || e.name == "retnet_rel_pos.decay" ||
            (cfg.tie_embeddings && e.name == "output_projection.weight"))
            skipped.push_back(e.name);  // torchscale's buffers / alias: recomputed or shared here
        else
            problems.push_back("'" + e.name + "' is not a parameter of this model");
    }
    if (!problems.empty()) {
        std::string list;
        for (size_t i = 0; i < problems.size() && i < 8; ++i) list += (i ? "; " : "") + problems[i];
        if (problems.size() > 8) list += "; and " + std::to_string(problems.size() - 8) + " more";
        RN_FAIL("convert: '", o.in, "' does not fit the config from ", config_from, ": ", list);
    }
    NoGradGuard no_grad;
    std::set<std::string> converted;
    for (auto& [name, p] : params) {
        Tensor t = r.read(name, DType::f32);
        RN_CHECK(p.dtype() == DType::f32 && p.is_contiguous() && !p.is_cuda(), "convert: parameter '", name,
                 "' is not a contiguous CPU f32 tensor");
        std::memcpy(p.raw_data(), t.raw_data(), t.nbytes());
        if (r.entry(name).dtype != "F32") converted.insert(r.entry(name).dtype);
    }
    std::string tokenizer;
    if (fs::exists(tok_path)) tokenizer = read_whole(tok_path, "tokenizer");
    const json meta = {{"converted_from", o.in}, {"config_from", config_from}};
    nn::save_checkpoint(o.out, *model, nullptr, nn::TrainState{}, tokenizer, meta.dump());
    log << "wrote " << o.out << ": " << params.size() << " tensors from " << o.in << ", config from " << config_from << "\n";
    for (const auto& d : converted) log << "  " << d << " tensors converted to f32\n";
    if (!skipped.empty()) {
        log << "  skipped (torchscale's buffers and aliases, recomputed here):";
        for (const auto& s : skipped) log << " " << s;
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

std::string config_to_torchscale_json(const nn::ModelConfig& c) {
    RN_CHECK(c.decay == "torchscale", "convert --to torchscale: the decay schedule is '", c.decay,
             "', but torchscale's RetNetRelPos computes only γ = 1 − 2^(−5−h) (decay \"torchscale\")");
    RN_CHECK(c.activation == "swish" || c.activation == "gelu", "convert --to torchscale: activation '", c.activation,
             "' has no torchscale activation_fn");
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

int run_convert(const ConvertOptions& o) {
    std::ostream& log = o.log ? *o.log : std::cout;
    const bool in_h5 = ends_with(o.in, ".h5"), in_st = ends_with(o.in, ".safetensors");
    const bool out_h5 = ends_with(o.out, ".h5"), out_st = ends_with(o.out, ".safetensors");
    if (in_h5 && out_st) return export_safetensors(o, log);
    if (in_st && out_h5) {
        RN_CHECK(o.to == "retnet", "convert: --to applies to exports (.h5 → .safetensors); an import reads the naming "
                                   "from config.json");
        return import_safetensors(o, log);
    }
    RN_FAIL("convert: '", o.in, "' → '", o.out, "': expected a .h5 checkpoint and a .safetensors file, one each way ",
            "(.h5 → .safetensors exports, .safetensors → .h5 imports)");
}

}  // namespace rn::tools
