// tools/inspect.cpp — `retnet inspect` (tools/inspect.h): a summary and per-tensor
// statistics of a checkpoint, one tensor's values, or a comparison of two checkpoints, as
// aligned text or JSON. Reads through nn::CheckpointReader, one tensor at a time.
#include "tools/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/json_limits.h"
#include "nn/checkpoint.h"

namespace rn::tools {

namespace {

using json = nlohmann::json;
using nn::CheckpointReader;
using nn::TensorData;

// Statistics over the finite values; NaN and ±inf are counted apart (`nonfinite`) so that
// one bad value does not hide what the rest of the tensor looks like.
struct Stats {
    int64_t numel = 0, nonfinite = 0;
    double mean = 0, std = 0, min = 0, max = 0, l2 = 0;
};

Stats stats_of(const std::vector<float>& v) {
    Stats s;
    s.numel = int64_t(v.size());
    double sum = 0, sq = 0;
    int64_t n = 0;
    s.min = std::numeric_limits<double>::infinity();
    s.max = -s.min;
    for (float f : v) {
        if (!std::isfinite(f)) {
            ++s.nonfinite;
            continue;
        }
        double x = f;
        sum += x;
        sq += x * x;
        s.min = std::min(s.min, x);
        s.max = std::max(s.max, x);
        ++n;
    }
    if (n == 0) {
        s.min = s.max = 0;
        return s;
    }
    s.mean = sum / double(n);
    s.l2 = std::sqrt(sq);
    // second pass about the mean: E[x²]−mean² cancels badly when std ≪ |mean| (norm gains ≈ 1)
    double var = 0;
    for (float f : v)
        if (std::isfinite(f)) var += (double(f) - s.mean) * (double(f) - s.mean);
    s.std = std::sqrt(var / double(n));
    return s;
}

// JSON has no inf/NaN: such numbers become null
json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

json stats_json(const Stats& s) {
    return {{"numel", s.numel}, {"mean", num(s.mean)}, {"std", num(s.std)}, {"min", num(s.min)},
            {"max", num(s.max)}, {"l2", num(s.l2)}, {"nonfinite", s.nonfinite}};
}

// a JSON string stored in the file, parsed; kept as a string when it does not parse
json parsed(const std::string& text) {
    if (json_depth_exceeded_at(text) != std::string::npos) return json(text);  // printed as text, never recursed
    json j = json::parse(text, nullptr, false);
    return j.is_discarded() ? json(text) : j;
}

std::string fmt(double x, const char* f = "%.4g") {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, x);
    return buf;
}

std::string with_commas(int64_t n) {
    std::string s = std::to_string(n < 0 ? -n : n), out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (i && (s.size() - i) % 3 == 0) out += ',';
        out += s[i];
    }
    return (n < 0 ? "-" : "") + out;
}

std::string shape_text(const Shape& s) { return shape_str(s); }

// A tensor is named "<group>/<name>" everywhere except the model's own, which keep their
// bare dotted names (the names users know from named_parameters()).
struct Entry {
    std::string group, name;
    std::string label() const { return group == "model" ? name : group + "/" + name; }
};

std::vector<std::string> groups_for(const InspectOptions& o) {
    std::vector<std::string> g = {"model"};
    if (o.optimizer) {
        g.push_back("optimizer/m");
        g.push_back("optimizer/v");
    }
    return g;
}

Entry parse_entry(const std::string& label) {
    for (const char* g : {"optimizer/m/", "optimizer/v/", "model/"}) {
        std::string p = g;
        if (label.compare(0, p.size(), p) == 0) return {p.substr(0, p.size() - 1), label.substr(p.size())};
    }
    return {"model", label};
}

void print_table(std::ostream& os, const std::vector<std::vector<std::string>>& rows, size_t left_cols) {
    std::vector<size_t> w;
    for (const auto& r : rows)
        for (size_t c = 0; c < r.size(); ++c) {
            if (w.size() <= c) w.push_back(0);
            w[c] = std::max(w[c], r[c].size());
        }
    for (const auto& r : rows) {
        std::string line;
        for (size_t c = 0; c < r.size(); ++c) {
            std::string cell = r[c];
            std::string pad(w[c] - cell.size(), ' ');
            line += (c < left_cols ? cell + pad : pad + cell);
            if (c + 1 < r.size()) line += "  ";
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        os << line << "\n";
    }
}

// ---- summary: config, counts, training state, and the table of tensors

int summary(const InspectOptions& o, std::ostream& os) {
    CheckpointReader r(o.path);
    std::vector<std::pair<Entry, nn::TensorInfo>> entries;
    for (const auto& g : groups_for(o))
        for (const auto& info : r.list(g)) entries.push_back({{g, info.name}, info});
    int64_t nparams = 0, ntensors = 0;
    for (const auto& [e, info] : entries)
        if (e.group == "model") {
            nparams += numel_of(info.shape);
            ++ntensors;
        }
    std::error_code ec;
    auto bytes = std::filesystem::file_size(o.path, ec);
    const nn::TrainState& ts = r.train_state();

    if (o.json) {
        json j;
        j["path"] = o.path;
        j["format_version"] = r.format_version();
        j["file_bytes"] = ec ? json(nullptr) : json(uint64_t(bytes));
        j["config"] = parsed(r.config_json());
        j["num_parameters"] = nparams;
        j["num_tensors"] = ntensors;
        j["train_state"] = {{"step", ts.step},          {"tokens", ts.tokens},
                            {"rng_seed", ts.rng_seed},  {"rng_offset", ts.rng_offset},
                            {"best_val_loss", num(ts.best_val_loss)}, {"wall_seconds", ts.wall_seconds},
                            {"data_state", parsed(ts.data_state_json)}};
        j["optimizer"] = r.has_optimizer()
                             ? json{{"step", r.optimizer_step()}, {"options", parsed(r.optimizer_options_json())}}
                             : json(nullptr);
        j["tokenizer_bytes"] = r.tokenizer_bytes();
        j["metadata"] = parsed(r.metadata_json());
        json tensors = json::array();
        for (const auto& [e, info] : entries) {
            json t = stats_json(stats_of(r.read(e.group, e.name).data));
            t["name"] = e.label();
            t["group"] = e.group;
            t["shape"] = info.shape;
            t["dtype"] = info.dtype;
            tensors.push_back(t);
        }
        j["tensors"] = tensors;
        os << j.dump(2) << "\n";
        return 0;
    }

    os << "checkpoint   " << o.path << " (format " << r.format_version();
    if (!ec) os << ", " << with_commas(int64_t(bytes)) << " bytes";
    os << ")\n";
    json cfg = parsed(r.config_json());
    os << "config       " << (cfg.is_object() ? cfg.dump() : r.config_json()) << "\n";
    os << "parameters   " << with_commas(nparams) << " in " << ntensors << " tensors\n";
    os << "train state  step " << with_commas(ts.step) << ", tokens " << with_commas(ts.tokens) << ", rng seed "
       << ts.rng_seed << " offset " << ts.rng_offset << ", best val loss "
       << (std::isfinite(ts.best_val_loss) ? fmt(ts.best_val_loss, "%.6g") : std::string("none yet"))
       << ", wall " << fmt(ts.wall_seconds, "%.1f") << " s\n";
    os << "data state   " << ts.data_state_json << "\n";
    if (r.has_optimizer())
        os << "optimizer    AdamW, step " << r.optimizer_step() << ", " << r.optimizer_options_json() << "\n";
    else
        os << "optimizer    none (weights only)\n";
    os << "tokenizer    " << (r.tokenizer_bytes() ? with_commas(r.tokenizer_bytes()) + " bytes" : std::string("none"))
       << "\n";
    os << "metadata     " << parsed(r.metadata_json()).dump() << "\n\n";

    std::vector<std::vector<std::string>> rows = {{"name", "shape", "dtype", "mean", "std", "min", "max", "l2"}};
    bool any_nonfinite = false;
    for (const auto& [e, info] : entries) {
        Stats s = stats_of(r.read(e.group, e.name).data);
        std::vector<std::string> row = {e.label(), shape_text(info.shape), info.dtype, fmt(s.mean), fmt(s.std),
                                        fmt(s.min), fmt(s.max),  fmt(s.l2)};
        if (s.nonfinite) {
            row.push_back(std::to_string(s.nonfinite) + " non-finite");
            any_nonfinite = true;
        }
        rows.push_back(row);
    }
    print_table(os, rows, 3);
    if (any_nonfinite) os << "\nWARNING: some tensors hold NaN or inf (statistics are over the finite values)\n";
    return 0;
}

// ---- one tensor's values: numpy-style, `edge` items at the head and tail of each dim

void print_values(std::ostream& os, const std::vector<float>& v, const Shape& shape, size_t d, int64_t off,
                  int64_t edge, int indent) {
    if (shape.empty()) {
        os << fmt(v.empty() ? 0.0 : v[0], "%.6g");
        return;
    }
    const int64_t n = shape[d];
    int64_t inner = 1;
    for (size_t k = d + 1; k < shape.size(); ++k) inner *= shape[k];
    const bool last = d + 1 == shape.size();
    os << "[";
    for (int64_t i = 0; i < n; ++i) {
        if (n > 2 * edge && i == edge) {
            os << "...";
            i = n - edge - 1;
            os << (last ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
            continue;
        }
        if (last)
            os << fmt(v[size_t(off + i)], "%.6g");
        else
            print_values(os, v, shape, d + 1, off + i * inner, edge, indent + 1);
        if (i + 1 < n) os << (last ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
    }
    os << "]";
}

int show_tensor(const InspectOptions& o, std::ostream& os) {
    CheckpointReader r(o.path);
    Entry e = parse_entry(o.tensor);
    if (!r.has(e.group, e.name)) {
        // suggest names that contain what was asked for
        std::vector<std::string> near;
        for (const char* g : {"model", "optimizer/m", "optimizer/v"})
            for (const auto& info : r.list(g)) {
                Entry c{g, info.name};
                if (c.label().find(e.name) != std::string::npos && near.size() < 8) near.push_back(c.label());
            }
        std::string hint;
        for (const auto& n : near) hint += (hint.empty() ? "" : ", ") + n;
        RN_FAIL("inspect: no tensor '", o.tensor, "' in '", o.path, "'",
                near.empty() ? std::string(". HINT: run inspect without --tensor to list the names")
                             : ". Did you mean: " + hint + "?");
    }
    TensorData t = r.read(e.group, e.name);
    Stats s = stats_of(t.data);
    if (o.json) {
        json j = stats_json(s);
        j["name"] = e.label();
        j["group"] = e.group;
        j["shape"] = t.shape;
        j["dtype"] = "f32";
        const size_t n = std::min(t.data.size(), size_t(std::max<int64_t>(o.max_values, 0)));
        json vals = json::array();
        for (size_t i = 0; i < n; ++i) vals.push_back(num(t.data[i]));
        j["values"] = vals;
        j["truncated"] = n < t.data.size();
        os << j.dump(2) << "\n";
        return 0;
    }
    os << e.label() << "  " << shape_text(t.shape) << "  f32\n";
    os << "mean " << fmt(s.mean) << "  std " << fmt(s.std) << "  min " << fmt(s.min) << "  max " << fmt(s.max) << "  l2 "
       << fmt(s.l2);
    if (s.nonfinite) os << "  non-finite " << s.nonfinite;
    os << "\n";
    print_values(os, t.data, t.shape, 0, 0, std::max<int64_t>(o.edge, 1), 0);
    os << "\n";
    return 0;
}

// ---- diff: A = opts.path, B = opts.diff. "missing": in A, not in B; "extra": in B only.

struct DiffRow {
    std::string label;
    Shape a, b;
    double max_abs = 0, rel = 0;
    int64_t different = 0;  // elements with |a−b| > tolerance (NaN vs non-NaN counts)
};

int diff(const InspectOptions& o, std::ostream& os) {
    CheckpointReader ra(o.path), rb(o.diff);
    std::vector<DiffRow> rows;
    std::vector<std::string> missing, extra;
    for (const auto& g : groups_for(o)) {
        auto la = ra.list(g), lb = rb.list(g);
        std::set<std::string> in_b;
        for (const auto& i : lb) in_b.insert(i.name);
        std::set<std::string> in_a;
        for (const auto& ia : la) {
            in_a.insert(ia.name);
            Entry e{g, ia.name};
            if (!in_b.count(ia.name)) {
                missing.push_back(e.label());
                continue;
            }
            TensorData a = ra.read(g, ia.name), b = rb.read(g, ia.name);
            DiffRow d{e.label(), a.shape, b.shape};
            if (a.shape == b.shape) {
                double num2 = 0, den2 = 0;
                for (size_t i = 0; i < a.data.size(); ++i) {
                    double x = a.data[i], y = b.data[i];
                    double ad = std::abs(x - y);
                    bool same_nan = std::isnan(x) && std::isnan(y);
                    if (same_nan || x == y) ad = 0;  // equal infinities and matching NaNs are no difference
                    if (std::isnan(ad)) ad = std::numeric_limits<double>::infinity();
                    d.max_abs = std::max(d.max_abs, ad);
                    if (ad > o.tolerance) ++d.different;
                    num2 += std::isfinite(ad) ? ad * ad : 0;
                    den2 += std::isfinite(x) ? x * x : 0;
                }
                d.rel = num2 == 0 ? 0 : den2 == 0 ? std::numeric_limits<double>::infinity() : std::sqrt(num2 / den2);
                if (std::isinf(d.max_abs)) d.rel = std::numeric_limits<double>::infinity();
            }
            rows.push_back(d);
        }
        for (const auto& ib : lb)
            if (!in_a.count(ib.name)) extra.push_back(Entry{g, ib.name}.label());
    }
    // the configs: which keys differ
    std::vector<std::string> config_diff;
    json ca = parsed(ra.config_json()), cb = parsed(rb.config_json());
    if (ca.is_object() && cb.is_object()) {
        std::set<std::string> keys;
        for (auto it = ca.begin(); it != ca.end(); ++it) keys.insert(it.key());
        for (auto it = cb.begin(); it != cb.end(); ++it) keys.insert(it.key());
        for (const auto& k : keys)
            if (!ca.contains(k) || !cb.contains(k) || ca[k] != cb[k]) config_diff.push_back(k);
    } else if (ra.config_json() != rb.config_json()) {
        config_diff.push_back("(config)");
    }
    // everything else a run resumes from: a file that differs only in its step count or
    // tokenizer is a different checkpoint (metadata — command line, host — is not compared)
    std::vector<std::string> state_diff;
    {
        const nn::TrainState &sa = ra.train_state(), &sb = rb.train_state();
        auto same_double = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
        if (sa.step != sb.step) state_diff.push_back("step");
        if (sa.tokens != sb.tokens) state_diff.push_back("tokens");
        if (sa.rng_seed != sb.rng_seed || sa.rng_offset != sb.rng_offset) state_diff.push_back("rng");
        // a validation loss is computed, not copied: equal within --tolerance (relative to its
        // size), as the tensors are — two ranks and one process sum it in different orders
        const bool best_close = same_double(sa.best_val_loss, sb.best_val_loss) ||
                                std::abs(sa.best_val_loss - sb.best_val_loss) <=
                                    o.tolerance * std::max(1.0, std::abs(sa.best_val_loss));
        if (!best_close) state_diff.push_back("best_val_loss");
        if (parsed(sa.data_state_json) != parsed(sb.data_state_json)) state_diff.push_back("data_state");
        if (ra.has_optimizer() != rb.has_optimizer()) state_diff.push_back("optimizer (present in one only)");
        else if (ra.has_optimizer() && (ra.optimizer_step() != rb.optimizer_step() ||
                                        parsed(ra.optimizer_options_json()) != parsed(rb.optimizer_options_json())))
            state_diff.push_back("optimizer step/options");
        if (ra.tokenizer_bytes() != rb.tokenizer_bytes() || ra.tokenizer() != rb.tokenizer())
            state_diff.push_back("tokenizer");
    }
    bool identical = missing.empty() && extra.empty() && config_diff.empty() && state_diff.empty();
    double worst = 0;
    for (const auto& d : rows) {
        if (d.a != d.b || d.max_abs > o.tolerance) identical = false;
        worst = std::max(worst, d.max_abs);
    }

    if (o.json) {
        json j;
        j["a"] = o.path;
        j["b"] = o.diff;
        j["identical"] = identical;
        j["tolerance"] = o.tolerance;
        j["max_abs_diff"] = num(worst);
        json t = json::array();
        for (const auto& d : rows) {
            json x = {{"name", d.label}, {"shape_a", d.a}, {"shape_b", d.b}, {"same_shape", d.a == d.b}};
            if (d.a == d.b) {
                x["max_abs_diff"] = num(d.max_abs);
                x["rel_diff"] = num(d.rel);
                x["num_different"] = d.different;
            }
            t.push_back(x);
        }
        j["tensors"] = t;
        j["missing"] = missing;
        j["extra"] = extra;
        j["config_differences"] = config_diff;
        j["state_differences"] = state_diff;
        j["step_a"] = ra.train_state().step;
        j["step_b"] = rb.train_state().step;
        os << j.dump(2) << "\n";
        return identical ? 0 : 1;
    }

    os << "A  " << o.path << "  (step " << ra.train_state().step << ")\n";
    os << "B  " << o.diff << "  (step " << rb.train_state().step << ")\n";
    if (!config_diff.empty()) {
        os << "config differs in:";
        for (const auto& k : config_diff) os << " " << k;
        os << "\n";
    }
    if (!state_diff.empty()) {
        os << "state differs in:";
        for (const auto& k : state_diff) os << " " << k;
        os << "\n";
    }
    std::vector<std::vector<std::string>> table = {{"name", "shape", "max |a-b|", "|a-b|/|a|", "different"}};
    for (const auto& d : rows) {
        if (d.a != d.b)
            table.push_back({d.label, shape_text(d.a) + " vs " + shape_text(d.b), "-", "-", "shape"});
        else
            table.push_back({d.label, shape_text(d.a), fmt(d.max_abs), fmt(d.rel),
                             d.different ? with_commas(d.different) : std::string("0")});
    }
    print_table(os, table, 2);
    for (const auto& n : missing) os << "missing in B: " << n << "\n";
    for (const auto& n : extra) os << "extra in B:   " << n << "\n";
    os << (identical ? "identical" : "different") << " (max |a-b| " << fmt(worst);
    if (o.tolerance > 0) os << ", tolerance " << fmt(o.tolerance);
    os << ")\n";
    return identical ? 0 : 1;
}

}  // namespace

int run_inspect(const InspectOptions& opts) {
    std::ostream& os = opts.out ? *opts.out : std::cout;
    RN_CHECK(!opts.path.empty(), "inspect: no checkpoint path given");
    RN_CHECK(opts.tensor.empty() || opts.diff.empty(), "inspect: --tensor and --diff do not go together");
    RN_CHECK(std::isfinite(opts.tolerance) && opts.tolerance >= 0, "inspect: --tolerance ", opts.tolerance,
             ": must be a finite number >= 0 (the largest |a-b| that still counts as equal)");
    if (!opts.diff.empty()) return diff(opts, os);
    if (!opts.tensor.empty()) return show_tensor(opts, os);
    return summary(opts, os);
}

}  // namespace rn::tools
