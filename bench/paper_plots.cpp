// bench/paper_plots.cpp — `bench_paper plot DIR`: from the paper_{inference,training,
// scaling}.json files in DIR, the SVG plots of docs/paper.md (inference bars like the
// paper's Figure 1, cost against input length and batch size like its Figure 6, training
// throughput and memory against length, the scaling curve and its loss curves) and the
// markdown tables (printed, and written to DIR/paper_tables.md).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "bench/paper.h"
#include "bench/svg_chart.h"
#include "core/error.h"

namespace rn::bench::paper {
namespace {
using json = nlohmann::json;
namespace fs = std::filesystem;

const char* kRetNet = "#1f77b4";
const char* kTrm = "#d62728";
const char* kStd = "#7f7f7f";

bool load(const std::string& path, json& j) {
    std::ifstream f(path);
    if (!f) return false;
    f >> j;
    return true;
}

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// the point of a model's length curve at `ctx` (null if absent or failed)
const json* length_at(const json& m, int64_t ctx) {
    for (const auto& p : m["length"])
        if (p["context"].get<int64_t>() == ctx && !p.contains("error")) return &p;
    return nullptr;
}

const json* find_model(const json& inf, const std::string& preset, const std::string& arch) {
    for (const auto& m : inf["models"])
        if (m["preset"] == preset && m["arch"] == arch) return &m;
    return nullptr;
}

// the batch curve's last point (the largest batch that fit)
const json* largest(const json& m) {
    if (!m.contains("batch") || !m["batch"].contains("points") || m["batch"]["points"].empty()) return nullptr;
    return &m["batch"]["points"].back();
}

void inference(const json& inf, const std::string& dir, std::ostream& md) {
    const int64_t input = inf["input"].get<int64_t>();
    std::vector<std::string> presets;
    for (const auto& m : inf["models"])
        if (std::find(presets.begin(), presets.end(), m["preset"].get<std::string>()) == presets.end())
            presets.push_back(m["preset"]);
    md << "### Inference, input " << input << " tokens, " << inf["dtype"].get<std::string>() << " on "
       << inf["device_name"].get<std::string>() << "\n\n"
       << "| preset | measure | paper (7B: Transformer → RetNet, ratio) | Transformer | RetNet | ratio |\n"
       << "|---|---|---|---|---|---|\n";
    std::ofstream f(dir + "/paper_inference.svg");
    const double W = 300, H = 260;
    svg_open(f, 3 * W, H * double(presets.size()));
    for (size_t pi = 0; pi < presets.size(); ++pi) {
        const std::string& p = presets[pi];
        const json *r = find_model(inf, p, "retnet"), *t = find_model(inf, p, "transformer");
        if (!r || !t) continue;
        const json *r8 = length_at(*r, input), *t8 = length_at(*t, input), *rb = largest(*r), *tb = largest(*t);
        auto val = [](const json* j, const char* k, double scale = 1) { return j ? (*j)[k].get<double>() * scale : -1.0; };
        const double tm = val(t8, "peak_mib", 1.0 / 1024), rm = val(r8, "peak_mib", 1.0 / 1024);
        const double tt = val(tb, "tokens_per_s"), rt = val(rb, "tokens_per_s");
        const double tl = val(t8, "ms_per_token"), rl = val(r8, "ms_per_token");
        auto ratio = [](double a, double b) { return a > 0 && b > 0 ? fmt("%.2f×", a / b) : std::string("–"); };
        const std::string tbs = tb ? fmt("%.0f", (*tb)["batch"].get<double>()) : "–";
        const std::string rbs = rb ? fmt("%.0f", (*rb)["batch"].get<double>()) : "–";
        md << "| " << p << " | GPU memory, batch 1 (GiB, peak while decoding) | 40 → 12 GB, 3.4× less | "
           << fmt("%.3g", tm) << " | " << fmt("%.3g", rm) << " | " << ratio(tm, rm) << " less |\n"
           << "| " << p << " | throughput at the largest batch (tokens/s) | 8.4× higher | " << fmt("%.0f", tt)
           << " (batch " << tbs << ") | " << fmt("%.0f", rt) << " (batch " << rbs << ") | " << ratio(rt, tt)
           << " higher |\n"
           << "| " << p << " | latency per token, batch 1 (ms) | 15.6× lower | " << fmt("%.3f", tl) << " | "
           << fmt("%.3f", rl) << " | " << ratio(tl, rl) << " lower |\n";
        const std::vector<std::string> colors{kTrm, kRetNet};
        const double oy = H * double(pi);
        svg_bars(f, 0, oy, W, H, {p + ": GPU memory, batch 1", "GiB (lower is better)", {{"Transformer", tm}, {"RetNet", rm}}, colors});
        svg_bars(f, W, oy, W, H, {p + ": throughput", "tokens/s at the largest batch", {{"Transformer b" + tbs, tt}, {"RetNet b" + rbs, rt}}, colors});
        svg_bars(f, 2 * W, oy, W, H, {p + ": latency, batch 1", "ms per token (lower is better)", {{"Transformer", tl}, {"RetNet", rl}}, colors});
    }
    svg_close(f);
    md << "\n";
    // Figure 6: the largest preset's curves
    const std::string p = presets.back();
    const json *r = find_model(inf, p, "retnet"), *t = find_model(inf, p, "transformer");
    if (!r || !t) return;
    auto curve = [](const json& m, const char* xk, const char* yk, double scale, const char* arr, const char* sub) {
        std::vector<std::pair<double, double>> pts;
        const json& a = sub ? m[arr][sub] : m[arr];
        for (const auto& q : a)
            if (!q.contains("error")) pts.push_back({q[xk].get<double>(), q[yk].get<double>() * scale});
        return pts;
    };
    std::ofstream g(dir + "/paper_figure6.svg");
    svg_open(g, 1260, 380);
    svg_chart(g, 0, 0, 420, 380, p + ": latency against input length", "input length (tokens)", "ms per token, batch 1",
              {{"Transformer", kTrm, curve(*t, "context", "ms_per_token", 1, "length", nullptr)},
               {"RetNet", kRetNet, curve(*r, "context", "ms_per_token", 1, "length", nullptr)}},
              false, true);
    svg_chart(g, 420, 0, 420, 380, p + ": memory against input length", "input length (tokens)", "GiB, peak while decoding",
              {{"Transformer", kTrm, curve(*t, "context", "peak_mib", 1.0 / 1024, "length", nullptr)},
               {"RetNet", kRetNet, curve(*r, "context", "peak_mib", 1.0 / 1024, "length", nullptr)}},
              false, true);
    svg_chart(g, 840, 0, 420, 380, p + ": latency against batch size", "batch size (input " + std::to_string(input) + ")",
              "ms per step (log)",
              {{"Transformer", kTrm, curve(*t, "batch", "ms_per_step", 1, "batch", "points")},
               {"RetNet", kRetNet, curve(*r, "batch", "ms_per_step", 1, "batch", "points")}},
              true, false, true);
    svg_close(g);
    md << "Figure 6 (" << p << "): latency and memory against input length, batch 1\n\n| input | Transformer ms | RetNet ms "
       << "| Transformer GiB | RetNet GiB |\n|---|---|---|---|---|\n";
    for (const auto& q : t->at("length")) {
        const int64_t c = q["context"].get<int64_t>();
        const json *a = length_at(*t, c), *b = length_at(*r, c);
        md << "| " << c << " | " << (a ? fmt("%.3f", (*a)["ms_per_token"].get<double>()) : "OOM") << " | "
           << (b ? fmt("%.3f", (*b)["ms_per_token"].get<double>()) : "–") << " | "
           << (a ? fmt("%.3g", (*a)["peak_mib"].get<double>() / 1024) : "OOM") << " | "
           << (b ? fmt("%.3g", (*b)["peak_mib"].get<double>() / 1024) : "–") << " |\n";
    }
    md << "\nlatency against batch size, input " << input << "\n\n| batch | Transformer ms/step | Transformer tokens/s "
       << "| RetNet ms/step | RetNet tokens/s |\n|---|---|---|---|---|\n";
    std::map<int64_t, std::pair<const json*, const json*>> byb;
    for (const auto* m : {t, r})
        if (m->contains("batch") && (*m)["batch"].contains("points"))
            for (const auto& q : (*m)["batch"]["points"])
                (m == t ? byb[q["batch"].get<int64_t>()].first : byb[q["batch"].get<int64_t>()].second) = &q;
    for (const auto& [b, pr] : byb) {
        auto cell = [&](const json* q, const char* k, const char* f2) { return q ? fmt(f2, (*q)[k].get<double>()) : std::string("–"); };
        md << "| " << b << " | " << cell(pr.first, "ms_per_step", "%.3f") << " | " << cell(pr.first, "tokens_per_s", "%.0f")
           << " | " << cell(pr.second, "ms_per_step", "%.3f") << " | " << cell(pr.second, "tokens_per_s", "%.0f") << " |\n";
    }
    md << "\n";
}

void training(const json& tr, const std::string& dir, std::ostream& md) {
    md << "### Training, " << tr["dtype"].get<std::string>() << " on " << tr["device_name"].get<std::string>()
       << " (paper: RetNet 25–50% less memory than a standard Transformer and 7× faster, ahead of FlashAttention)\n\n"
       << "| preset | B×T | model | tokens/s | peak GiB | tokens/s vs standard | memory vs standard |\n"
       << "|---|---|---|---|---|---|---|\n";
    std::map<std::string, std::map<std::string, std::vector<std::pair<double, double>>>> tps, mem;
    std::map<std::pair<std::string, int64_t>, const json*> standard;
    for (const auto& row : tr["rows"])
        if (row["model"] == "transformer-standard") standard[{row["preset"], row["seq"].get<int64_t>()}] = &row;
    std::vector<std::string> presets;
    for (const auto& row : tr["rows"]) {
        const std::string p = row["preset"], m = row["model"];
        if (std::find(presets.begin(), presets.end(), p) == presets.end()) presets.push_back(p);
        const int64_t T = row["seq"].get<int64_t>();
        const json* s = standard.count({p, T}) ? standard[{p, T}] : nullptr;
        const bool ok = !row.contains("error"), sok = s && !s->contains("error");
        std::string vs_t = "–", vs_m = "–";
        if (ok && sok && m != "transformer-standard") {
            vs_t = fmt("%.2f×", row["tokens_per_s"].get<double>() / (*s)["tokens_per_s"].get<double>());
            vs_m = fmt("%.0f%% less", 100 * (1 - row["peak_gib"].get<double>() / (*s)["peak_gib"].get<double>()));
        } else if (ok && s && !sok && m != "transformer-standard") {
            vs_t = "standard: OOM", vs_m = "standard: OOM";
        }
        md << "| " << p << " | " << row["batch"].get<int64_t>() << "×" << T << " | " << m << " | "
           << (ok ? fmt("%.0f", row["tokens_per_s"].get<double>()) : (row.value("oom", false) ? "OOM" : "failed"))
           << " | " << (ok ? fmt("%.3g", row["peak_gib"].get<double>()) : "–") << " | " << vs_t << " | " << vs_m << " |\n";
        if (ok) {
            tps[p][m].push_back({double(T), row["tokens_per_s"].get<double>()});
            mem[p][m].push_back({double(T), row["peak_gib"].get<double>()});
        }
    }
    md << "\n";
    std::ofstream f(dir + "/paper_training.svg");
    svg_open(f, 840, 380 * double(presets.size()));
    for (size_t i = 0; i < presets.size(); ++i) {
        const std::string& p = presets[i];
        auto series = [&](std::map<std::string, std::vector<std::pair<double, double>>>& by) {
            return std::vector<Series>{{"RetNet (chunkwise)", kRetNet, by["retnet"]},
                                       {"Transformer, flash attention", kTrm, by["transformer"]},
                                       {"Transformer, standard attention", kStd, by["transformer-standard"], true}};
        };
        svg_chart(f, 0, 380 * double(i), 420, 380, p + ": training throughput", "sequence length", "tokens/s",
                  series(tps[p]), false, true, true);
        svg_chart(f, 420, 380 * double(i), 420, 380, p + ": peak memory (missing: OOM)", "sequence length", "GiB",
                  series(mem[p]), false, true, true);
    }
    svg_close(f);
}

void scaling(const json& sc, const std::string& dir, std::ostream& md) {
    md << "### Scaling, " << sc["dtype"].get<std::string>() << " on " << sc["device_name"].get<std::string>() << ": "
       << sc["steps"].get<int64_t>() << " steps of " << sc["batch"].get<int64_t>() << "×" << sc["seq"].get<int64_t>()
       << " tokens per run\n\n| preset | model | parameters | learning rate (sweep) | validation loss | perplexity |\n"
       << "|---|---|---|---|---|---|\n";
    std::vector<Series> ppl{{"RetNet", kRetNet, {}}, {"Transformer", kTrm, {}}};
    std::vector<Series> curves;
    const std::vector<std::string> shades_r{"#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b"};
    const std::vector<std::string> shades_t{"#fcae91", "#fb6a4a", "#de2d26", "#a50f15", "#67000d"};
    int kr = 0, kt = 0;
    for (const auto& r : sc["runs"]) {
        const bool ret = r["arch"] == "retnet";
        std::string sweep;
        for (const auto& s : r["sweep"])
            sweep += (sweep.empty() ? "" : ", ") + fmt("%g", s["lr"].get<double>()) + ": " +
                     (s["val_loss"].is_number() ? fmt("%.3f", s["val_loss"].get<double>()) : "NaN");
        md << "| " << r["preset"].get<std::string>() << " | " << r["arch"].get<std::string>() << " | "
           << fmt("%.1fM", r["parameters"].get<double>() / 1e6) << " | " << fmt("%g", r["lr"].get<double>())
           << (sweep.empty() ? "" : " (" + sweep + ")") << " | " << fmt("%.4f", r["val_loss"].get<double>()) << " | "
           << fmt("%.2f", r["val_ppl"].get<double>()) << " |\n";
        (ret ? ppl[0] : ppl[1]).pts.push_back({r["parameters"].get<double>(), r["val_ppl"].get<double>()});
        Series c{r["arch"].get<std::string>() + " " + r["preset"].get<std::string>(),
                 ret ? shades_r[size_t(kr++) % shades_r.size()] : shades_t[size_t(kt++) % shades_t.size()], {}, !ret};
        for (const auto& q : r["log"])
            if (q.contains("val_loss") && q["tokens"].get<double>() > 0)
                c.pts.push_back({q["tokens"].get<double>(), q["val_loss"].get<double>()});
        curves.push_back(c);
    }
    md << "\n";
    std::ofstream f(dir + "/paper_scaling.svg");
    svg_open(f, 1050, 400);
    svg_chart(f, 0, 0, 420, 400, "validation perplexity against size", "parameters (log2)", "perplexity (log)", ppl,
              true, false);
    svg_chart(f, 420, 0, 480 + 150, 400, "validation loss while training", "tokens seen (log2)",
              "validation loss (nats)", curves, false, false, false, 150);
    svg_close(f);
}
}  // namespace

void plot_all(const std::string& dir) {
    std::ostringstream md;
    json j;
    int n = 0;
    if (load(dir + "/paper_inference.json", j)) inference(j, dir, md), ++n;
    if (load(dir + "/paper_training.json", j)) training(j, dir, md), ++n;
    if (load(dir + "/paper_scaling.json", j)) scaling(j, dir, md), ++n;
    RN_CHECK(n > 0, "bench_paper plot: no paper_inference.json, paper_training.json or paper_scaling.json in ", dir);
    std::printf("%s", md.str().c_str());
    std::ofstream(dir + "/paper_tables.md") << md.str();
    std::printf("wrote the SVGs and %s/paper_tables.md\n", dir.c_str());
}

}  // namespace rn::bench::paper
