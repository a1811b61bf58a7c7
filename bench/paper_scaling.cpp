// bench/paper_scaling.cpp — `bench_paper scaling`: the RetNet paper's scaling curve
// (Figure 1 right, §3.2: perplexity against size, RetNet competitive with a Transformer
// and better from a few billion parameters) at the sizes one GPU trains in minutes.
// Each size is a matched pair (the Transformer preset of a name has the RetNet preset's
// d_model, layers and vocabulary and its parameter count within 2%; docs/transformer.md),
// trained by `retnet train`'s own loop (tools/train.h, in this process) the same way: the
// same prepared data (tokenizer, data order, split), the same number of tokens, cosine
// schedule to lr/10 with 5% warm-up, AdamW, clip 2. The learning rate is tuned per size
// and per model alike: a sweep over the same grid at a quarter of the tokens, then the
// full run at the sweep's best. The figure is the validation loss (and perplexity) at the
// end of the full run, over eval_batches batches of the held-out split.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "bench/paper.h"
#include "core/error.h"
#include "nn/model_config.h"
#include "tools/train.h"

namespace rn::bench::paper {
namespace {
using json = nlohmann::json;
namespace fs = std::filesystem;

std::string lr_tag(double lr) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", lr);
    return b;
}

// the run's log, thinned to every validation record and about 64 training records (the
// JSON goes into docs/), and the last validation loss in it
json read_log(const std::string& path, int64_t steps, double& last_val) {
    const int64_t stride = std::max<int64_t>(steps / 64, 1);
    std::ifstream f(path);
    RN_CHECK(f.good(), "bench_paper scaling: no training log at ", path);
    json recs = json::array();
    last_val = std::numeric_limits<double>::quiet_NaN();
    std::string line;
    while (std::getline(f, line)) {
        if (line.empty()) continue;
        json j = json::parse(line);
        if (!j.contains("step")) continue;  // the header record
        json r = {{"step", j["step"]}, {"tokens", j.value("tokens", 0)}, {"loss", j["loss"]}};
        const bool val = j.contains("val_loss") && j["val_loss"].is_number();
        if (val) {
            r["val_loss"] = j["val_loss"];
            last_val = j["val_loss"].get<double>();
        } else if (j["step"].get<int64_t>() % stride != 0) {
            continue;
        }
        if (j.contains("tokens_per_s")) r["tokens_per_s"] = j["tokens_per_s"];
        recs.push_back(r);
    }
    return recs;
}
}  // namespace

json run_scaling(const Args& a) {
    const Target t = resolve_target(a);
    const std::string device = t.device, dtype = t.dtype;
    RN_CHECK(!a.data.empty(), "bench_paper scaling: --data DIR is required (a folder from `retnet prepare`, e.g. "
             "`retnet prepare --corpus english`)");
    std::vector<std::string> presets = a.presets;
    if (presets.empty())
        presets = a.quick ? std::vector<std::string>{"tiny", "mini"}
                          : std::vector<std::string>{"mini", "base", "small", "medium"};
    std::vector<double> lrs = a.lrs;
    if (lrs.empty()) lrs = a.quick ? std::vector<double>{1e-3, 3e-3} : std::vector<double>{3e-4, 1e-3, 3e-3};
    const int64_t batch = a.batch > 0 ? a.batch : a.quick ? 4 : 32;
    const int64_t seq = a.seq > 0 ? a.seq : a.quick ? 64 : 512;
    const int64_t tokens = a.train_tokens > 0 ? a.train_tokens : a.quick ? 16384 : 10'000'000;
    const int64_t steps = std::max<int64_t>(tokens / (batch * seq), 10);
    const int64_t sweep_steps = std::max<int64_t>(int64_t(double(steps) * a.sweep_fraction), 5);
    json meta;
    {
        std::ifstream mf(a.data + "/meta.json");
        RN_CHECK(mf.good(), "bench_paper scaling: ", a.data, "/meta.json not found: --data must be a folder written by "
                 "`retnet prepare`");
        mf >> meta;
    }
    std::printf("bench_paper scaling: %s %s, data %s, %lld steps of %lld×%lld tokens (%.2fM tokens) per final run, "
                "sweep %zu learning rates at %lld steps\n", device.c_str(), dtype.c_str(), a.data.c_str(),
                (long long)steps, (long long)batch, (long long)seq, double(steps * batch * seq) / 1e6, lrs.size(),
                (long long)sweep_steps);
    auto train = [&](const std::string& arch, const std::string& preset, double lr, int64_t n_steps,
                     const std::string& dir) {
        tools::TrainOptions o;
        o.data = a.data;
        o.out = dir;
        o.arch = arch;
        o.preset = preset;
        o.batch = batch;
        o.seq_len = seq;
        o.steps = n_steps;
        o.lr = lr;
        o.min_lr = lr / 10;
        o.warmup = std::max<int64_t>(n_steps / 20, 1);
        o.device = device;
        o.dtype = dtype;
        o.eval_interval = std::max<int64_t>(n_steps / 8, 1);
        o.eval_batches = a.quick ? 4 : 16;
        o.ckpt_interval = n_steps;
        o.keep_last = 1;
        o.log_interval = std::max<int64_t>(n_steps / 8, 1);
        o.sample_tokens = 0;
        o.overwrite = true;
        const int rc = tools::run_train(o);
        RN_CHECK(rc == 0, "bench_paper scaling: training ", dir, " ended with status ", rc);
        double val = 0;
        json log = read_log(dir + "/train_log.jsonl", n_steps, val);
        return std::make_pair(val, log);
    };
    json runs = json::array();
    for (const std::string& preset : presets)
        for (const std::string& arch : a.archs) {
            const nn::ModelConfig cfg = nn::ModelConfig::from_preset(preset, meta.value("vocab_size", 8192), arch);
            json r = {{"arch", arch}, {"preset", preset}, {"parameters", cfg.parameter_count()},
                      {"embedding_parameters", cfg.vocab_size * cfg.d_model * (cfg.tie_embeddings ? 1 : 2)}};
            double best_lr = lrs.front(), best = std::numeric_limits<double>::infinity();
            json sweep = json::array();
            if (lrs.size() > 1)
                for (double lr : lrs) {
                    auto [val, log] = train(arch, preset, lr, sweep_steps,
                                            a.runs_dir + "/sweep-" + arch + "-" + preset + "-lr" + lr_tag(lr));
                    sweep.push_back({{"lr", lr}, {"val_loss", std::isfinite(val) ? json(val) : json(nullptr)}});
                    std::printf("  sweep %s %s lr %g: validation loss %.4f\n", arch.c_str(), preset.c_str(), lr, val);
                    if (std::isfinite(val) && val < best) best = val, best_lr = lr;
                }
            const auto t0 = std::chrono::steady_clock::now();
            auto [val, log] = train(arch, preset, best_lr, steps, a.runs_dir + "/" + arch + "-" + preset);
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            r.update({{"lr", best_lr}, {"sweep", sweep}, {"val_loss", val}, {"val_ppl", std::exp(val)},
                      {"steps", steps}, {"tokens", steps * batch * seq}, {"wall_s", wall}, {"log", log}});
            std::printf("== %s %s (%.1fM parameters): lr %g, validation loss %.4f (perplexity %.2f) after %.2fM tokens, "
                        "%.0f s\n", arch.c_str(), preset.c_str(), double(cfg.parameter_count()) / 1e6, best_lr, val,
                        std::exp(val), double(steps * batch * seq) / 1e6, wall);
            std::fflush(stdout);
            runs.push_back(r);
            save_partial(a, "scaling", {{"part", "scaling"}, {"device", device}, {"device_name", device_label(device)},
                                        {"dtype", dtype}, {"batch", batch}, {"seq", seq}, {"steps", steps},
                                        {"sweep_steps", sweep_steps}, {"lrs", lrs}, {"quick", a.quick}, {"runs", runs}});
        }
    json data = {{"dir", a.data}};
    for (const char* k : {"train_tokens", "val_tokens", "vocab_size", "inputs", "sources", "corpus"})
        if (meta.contains(k)) data[k] = meta[k];
    return {{"part", "scaling"}, {"device", device}, {"device_name", device_label(device)}, {"dtype", dtype},
            {"batch", batch}, {"seq", seq}, {"steps", steps}, {"sweep_steps", sweep_steps}, {"lrs", lrs},
            {"quick", a.quick}, {"data", data}, {"runs", runs}};
}

}  // namespace rn::bench::paper
