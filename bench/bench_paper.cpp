// bench/bench_paper.cpp — the RetNet paper's claims, reproduced side by side with the
// Transformer baseline in one engine (docs/paper.md holds the results and how to read them):
//
//   bench_paper inference [--presets small,medium,7b] [--input 8192] [--max-context 65536]
//                         [--max-batch 512] [--steps 40]
//   bench_paper training  [--presets small,xl] [--seqs 2048,8192,32768] [--tokens-per-step N]
//                         [--checkpoint-activations]
//   bench_paper scaling   --data DIR [--presets mini,base,small,medium] [--lrs 3e-4,1e-3,3e-3]
//                         [--train-tokens 10000000] [--batch 32] [--seq 512] [--runs DIR]
//   bench_paper plot      DIR    (SVGs + markdown tables from the JSON files in DIR)
//   bench_paper all       the first two, then plot (scaling needs --data)
//
// Common: [--quick] (CPU, tiny sizes, seconds: what CI runs) [--device cuda|cpu]
// [--dtype bf16|f32] [--vocab N] [--out DIR] (paper_<part>.json is written there).
// Each part prints its table as it goes and writes paper_<part>.json.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bench/bench_util.h"
#include "bench/paper.h"
#include "cuda/device.h"

namespace rn::bench::paper {
std::string device_label(const std::string& device) {
    const Device d = Device::parse(device);
    if (d.is_cuda()) return cuda::device_name(d.index);
    return "CPU, " + std::to_string(std::thread::hardware_concurrency()) + " hardware threads";
}
Target resolve_target(const Args& a) {
    Target t;
    t.device = !a.device.empty() ? a.device : !a.quick && cuda::device_count() > 0 ? "cuda" : "cpu";
    t.dtype = !a.dtype.empty() ? a.dtype : Device::parse(t.device).is_cuda() ? "bf16" : "f32";
    return t;
}

bool is_out_of_memory(const std::exception& e) {
    const std::string w = e.what();
    return w.find("out of memory") != std::string::npos || w.find("does not fit") != std::string::npos;
}

void save_partial(const Args& a, const std::string& part, nlohmann::json j) {
    j["complete"] = false;
    std::ofstream(a.out_dir + "/paper_" + part + ".json") << j.dump(2) << "\n";
}
}  // namespace rn::bench::paper

int main(int argc, char** argv) {
    using namespace rn::bench::paper;
    Args a;
    CLI::App app{"bench_paper: the RetNet paper's claims, measured against the Transformer baseline"};
    app.require_subcommand(1);
    std::string plot_dir = ".";
    auto common = [&](CLI::App* c) {
        c->add_flag("--quick", a.quick, "CPU, tiny sizes, seconds (the CI run)");
        c->add_option("--device", a.device, "cuda or cpu (default: cuda when there is a GPU)");
        c->add_option("--dtype", a.dtype, "bf16 (CUDA default) or f32");
        c->add_option("--presets", a.presets, "model presets, comma-separated")->delimiter(',');
        c->add_option("--vocab", a.vocab, "vocabulary size for random-weight models (default 32000)");
        c->add_option("--out", a.out_dir, "folder for paper_<part>.json")->capture_default_str();
        c->add_option("--steps", a.steps, "timed steps per point");
    };
    auto* inf = app.add_subcommand("inference", "decoding memory, throughput and latency; Figure 6 curves");
    common(inf);
    inf->add_option("--input", a.input, "input tokens before decoding (default 8192)");
    inf->add_option("--max-context", a.max_context, "the length curve's last input (default 65536)");
    inf->add_option("--max-batch", a.max_batch, "the largest batch tried (default 512)");
    auto* tr = app.add_subcommand("training", "training tokens/s and peak memory: RetNet, flash, standard attention");
    common(tr);
    tr->add_option("--seqs", a.seqs, "sequence lengths (default 2048,8192,32768)")->delimiter(',');
    tr->add_flag("--checkpoint-activations", a.checkpoint_activations,
                 "recompute each layer in the backward, for all three models alike");
    tr->add_option("--tokens-per-step", a.tokens_per_step, "B = tokens per step / T (default 16K, 8K from medium up)");
    auto* sc = app.add_subcommand("scaling", "validation perplexity against size, both models trained alike");
    common(sc);
    sc->add_option("--data", a.data, "a folder from `retnet prepare`")->required();
    sc->add_option("--runs", a.runs_dir, "run folders go here")->capture_default_str();
    sc->add_option("--archs", a.archs, "retnet,transformer")->delimiter(',');
    sc->add_option("--lrs", a.lrs, "learning-rate sweep (default 3e-4,1e-3,3e-3)")->delimiter(',');
    sc->add_option("--train-tokens", a.train_tokens, "tokens per final run (default 10M)");
    sc->add_option("--sweep-fraction", a.sweep_fraction, "share of the tokens a sweep run trains")
        ->check(CLI::Range(0.01, 1.0))->capture_default_str();
    sc->add_option("--batch", a.batch, "rows per step (default 32)");
    sc->add_option("--seq", a.seq, "tokens per row (default 512)");
    auto* pl = app.add_subcommand("plot", "SVGs and markdown tables from the JSON files in DIR");
    pl->add_option("dir", plot_dir, "folder with paper_<part>.json")->capture_default_str();
    auto* all = app.add_subcommand("all", "inference, training, then plot");
    common(all);
    CLI11_PARSE(app, argc, argv);
    try {
        std::filesystem::create_directories(a.out_dir);
        auto save = [&](nlohmann::json j, const std::string& part) {
            j["complete"] = true;
            rn::bench::write_json(a.out_dir + "/paper_" + part + ".json", j);
        };
        if (inf->parsed() || all->parsed()) save(run_inference(a), "inference");
        if (tr->parsed() || all->parsed()) save(run_training(a), "training");
        if (sc->parsed()) save(run_scaling(a), "scaling");
        if (all->parsed()) plot_all(a.out_dir);
        if (pl->parsed()) plot_all(plot_dir);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_paper: %s\n", e.what());
        return 2;
    }
    return 0;
}
