// bench/paper.h — bench_paper: the RetNet paper's claims (Sun et al. 2023, §1, Figure 1,
// Figure 6, Table 4, the scaling curve) measured side by side with the Llama-style
// Transformer baseline in one engine (docs/paper.md holds the results). Each part is a
// function in its own file; bench_paper.cpp parses the command line and dispatches.
//   inference (paper_inference.cpp): decoding memory, throughput, latency; Figure 6 curves
//   training  (paper_training.cpp):  tokens/s and peak memory, RetNet vs flash vs standard
//   scaling   (paper_scaling.cpp):   validation perplexity against parameters
//   plot      (paper_plots.cpp):     the SVGs and the markdown tables from the JSON files
#pragma once
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rn::bench::paper {

struct Args {
    bool quick = false;           // CPU, tiny sizes, seconds (the CI run of this program)
    std::string device;           // cuda or cpu (default: cuda when there is a GPU)
    std::string dtype;            // bf16 on CUDA, f32 on the CPU
    std::vector<std::string> presets;  // empty: the part's default
    std::string out_dir = ".";    // JSON (paper_<part>.json) and SVGs go here
    int64_t vocab = 0;            // 0: the part's default
    // inference
    int64_t input = 0;            // prompt tokens before generating (0: 8192, quick 256)
    int64_t steps = 0;            // timed decode steps per point
    int64_t max_batch = 0;        // the largest batch tried (0: 512, quick 8)
    int64_t max_context = 0;      // the length curve's last point (0: 65536, quick 1024)
    // training
    std::vector<int64_t> seqs;    // sequence lengths (default 2048, 8192, 32768)
    int64_t tokens_per_step = 0;  // B = max(1, tokens_per_step / T) (default by preset)
    bool checkpoint_activations = false;  // for all three models alike (the paper allows it)
    // scaling
    std::string data;             // a folder from `retnet prepare`
    std::string runs_dir = "runs/paper";
    std::vector<std::string> archs{"retnet", "transformer"};
    std::vector<double> lrs;      // the sweep (default 3e-4, 1e-3, 3e-3)
    int64_t train_tokens = 0;     // per final run (default 10M, quick 64K)
    double sweep_fraction = 0.25; // a sweep run trains this share of train_tokens
    int64_t batch = 0, seq = 0;   // training rows per step and their length
};

nlohmann::json run_inference(const Args& a);
nlohmann::json run_training(const Args& a);
nlohmann::json run_scaling(const Args& a);
// writes paper_<part>.svg next to each paper_<part>.json found in dir, and prints the
// markdown tables docs/paper.md carries
void plot_all(const std::string& dir);

// writes out_dir/paper_<part>.json (quietly): each part saves what it has after every
// model or row, with "complete": false, so that a run cut short by a time limit keeps
// its finished points; bench_paper writes the whole file, "complete": true, at the end
void save_partial(const Args& a, const std::string& part, nlohmann::json j);

// where a part runs: --device, else cuda when there is a GPU (never with --quick);
// --dtype, else bf16 on CUDA and f32 on the CPU
struct Target {
    std::string device, dtype;
};
Target resolve_target(const Args& a);

// an out-of-memory (the allocator's, or the engine refusing a cache that does not fit):
// a result to report, not a failure
bool is_out_of_memory(const std::exception& e);

// "NVIDIA H100 80GB HBM3" or "CPU, 16 threads": which machine gave the figures
std::string device_label(const std::string& device);

// the RetNet paper's own figures, for the "paper" column of every table (docs/paper.md
// says where each comes from)
struct PaperFigure {
    const char* claim;
    double transformer, retnet;  // in the unit of the claim; ratio = the claim's direction
    const char* unit;
};

}  // namespace rn::bench::paper
