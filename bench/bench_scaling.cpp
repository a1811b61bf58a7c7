// bench/bench_scaling.cpp — data-parallel scaling of `retnet train`: tokens/s on 1 GPU and
// under `mpirun -np N`, scaling efficiency (N-GPU tokens/s over N × one GPU), per-GPU
// peak memory with and without ZeRO-1, and the share of the gradient reduction that the
// backward pass did not hide. It drives the real program (what users run), then reads the
// JSONL logs; a table on stdout and JSON (--json).
//
//   bench_scaling --retnet build-gpu/retnet [--gpus 1,2] [--presets small,medium]
//                 [--seq 2048] [--batch 8] [--steps 12] [--warmup 4] [--dtype bf16]
//                 [--device cuda] [--data DIR] [--work bench_scaling_work] [--json PATH]
//
// Per preset: one GPU without mpirun (the baseline), then for each N > 1 three runs:
// plain data parallel, ZeRO-1, and plain with --no-comm-overlap. Step time is the median
// of the steps after the warm-up (the last step, which validates and checkpoints, is
// left out). "comm wait" is the time a step waits for communication after its backward
// (dist/data_parallel.h); "unhidden" = comm wait with overlap / comm wait without it: the
// fraction of the reduction time that backward did not hide.
//
// The data: --data DIR (a `retnet prepare` folder), or else a synthetic corpus (seeded
// pseudo-words, ~3 MB) through `retnet prepare`, written once under --work, so the bench
// needs nothing but the program.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench/bench_util.h"
#include "core/error.h"
#include "core/random.h"

using namespace rn;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string x; std::getline(ss, x, sep);)
        if (!x.empty()) out.push_back(x);
    return out;
}

int run(const std::string& cmd) {
    std::printf("$ %s\n", cmd.c_str());
    std::fflush(stdout);
    int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// 6 documents of seeded pseudo-words (~3 MB; one becomes validation) drawn with a skewed frequency, like text
void write_corpus(const std::string& dir) {
    fs::create_directories(dir);
    Generator g(2024);
    std::vector<std::string> lexicon;
    for (int w = 0; w < 20000; ++w) {
        std::string s;
        int len = 2 + int(g.next_uniform() * 8);
        for (int k = 0; k < len; ++k) s += char('a' + int(g.next_uniform() * 26));
        lexicon.push_back(s);
    }
    for (int d = 0; d < 6; ++d) {
        std::ofstream f(dir + "/doc" + std::to_string(d) + ".txt");
        for (int line = 0; line < 8000; ++line) {
            for (int w = 0; w < 12; ++w) {
                double u = g.next_uniform();
                f << lexicon[size_t(u * u * double(lexicon.size()))] << (w == 11 ? ".\n" : " ");
            }
        }
    }
}

struct Result {
    std::string preset, variant;
    int gpus = 1;
    double tokens_per_s = 0, step_s = 0, comm_wait_s = 0, peak_mib = 0;
    bool ok = false;
};

// reads RUN/train_log.jsonl: median step time after the warm-up, tokens per step, peak
// memory (the largest over ranks), median communication wait
Result read_run(const std::string& dir, int warmup) {
    Result r;
    std::ifstream f(dir + "/train_log.jsonl");
    std::vector<json> recs;
    for (std::string line; std::getline(f, line);) recs.push_back(json::parse(line));
    if (recs.size() < size_t(warmup) + 3) return r;
    std::vector<double> steps, waits;
    double tokens_per_step = 0;
    for (size_t k = size_t(warmup) + 1; k + 1 < recs.size(); ++k) {
        steps.push_back(recs[k]["elapsed_s"].get<double>() - recs[k - 1]["elapsed_s"].get<double>());
        tokens_per_step = double(recs[k]["tokens"].get<int64_t>() - recs[k - 1]["tokens"].get<int64_t>());
        if (recs[k].contains("comm_wait_s")) waits.push_back(recs[k]["comm_wait_s"].get<double>());
        if (recs[k].contains("peak_mem_mib_per_rank"))
            for (auto& m : recs[k]["peak_mem_mib_per_rank"]) r.peak_mib = std::max(r.peak_mib, m.get<double>());
        else if (recs[k].contains("peak_mem_mib"))
            r.peak_mib = std::max(r.peak_mib, recs[k]["peak_mem_mib"].get<double>());
    }
    r.step_s = bench::median(steps);
    r.tokens_per_s = tokens_per_step / r.step_s;
    r.comm_wait_s = waits.empty() ? 0 : bench::median(waits);
    r.ok = true;
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string retnet = bench::arg_value(argc, argv, "--retnet", "build/retnet");
    const auto gpus = split(bench::arg_value(argc, argv, "--gpus", "1,2"), ',');
    const auto presets = split(bench::arg_value(argc, argv, "--presets", "small,medium"), ',');
    const std::string seq = bench::arg_value(argc, argv, "--seq", "2048");
    const std::string batch = bench::arg_value(argc, argv, "--batch", "8");
    const int steps = std::stoi(bench::arg_value(argc, argv, "--steps", "12"));
    const int warmup = std::stoi(bench::arg_value(argc, argv, "--warmup", "4"));
    const std::string dtype = bench::arg_value(argc, argv, "--dtype", "bf16");
    const std::string device = bench::arg_value(argc, argv, "--device", "cuda");
    const std::string work = fs::absolute(bench::arg_value(argc, argv, "--work", "bench_scaling_work")).string();
    const std::string json_out = bench::json_path(argc, argv, "bench_scaling.json");
    const std::string mpirun = bench::arg_value(argc, argv, "--mpirun", "mpirun --bind-to none --oversubscribe");
    if (!fs::exists(retnet)) {
        std::fprintf(stderr, "error: %s not found; pass --retnet PATH/TO/retnet\n", retnet.c_str());
        return 2;
    }
    RN_CHECK(steps > warmup + 2, "--steps must exceed --warmup by at least 3, got ", steps, " and ", warmup);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);  // the GPU machines run as root
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("NCCL_NVLS_ENABLE", "0", 0);  // NVLink multicast off there (the program sets it too)

    // --data: an existing `retnet prepare` folder instead of the synthetic corpus
    const std::string data = fs::absolute(bench::arg_value(argc, argv, "--data", work + "/data")).string();
    if (!fs::exists(data + "/train.bin")) {
        write_corpus(work + "/corpus");
        if (run(retnet + " prepare " + work + "/corpus --out " + data + " --vocab 8192 --val-fraction 0.15") != 0) {
            std::fprintf(stderr, "error: retnet prepare failed\n");
            return 1;
        }
    }

    std::vector<Result> results;
    for (const auto& preset : presets)
        for (const auto& ns : gpus) {
            const int n = std::stoi(ns);
            std::vector<std::pair<std::string, std::string>> variants = {{"dp", ""}};
            if (n > 1) variants = {{"dp", ""}, {"zero1", " --zero 1"}, {"dp_no_overlap", " --no-comm-overlap"}};
            for (const auto& [variant, flags] : variants) {
                const std::string out = work + "/run_" + preset + "_" + ns + "_" + variant;
                fs::remove_all(out);
                std::string cmd = (n > 1 ? mpirun + " -np " + ns + " " : std::string()) + retnet +
                                  " train --data " + data + " --out " + out + " --preset " + preset + " --seq-len " +
                                  seq + " --batch " + batch + " --steps " + std::to_string(steps) +
                                  " --warmup 2 --dtype " + dtype + " --device " + device +
                                  " --eval-interval 1000000 --eval-batches 1 --ckpt-interval 1000000 --keep-last 1"
                                  " --log-interval 1 --sample-tokens 0" + flags + " > " + out + ".txt 2>&1";
                fs::create_directories(out);
                int rc = run(cmd);
                Result r = rc == 0 ? read_run(out, warmup) : Result{};
                r.preset = preset, r.variant = variant, r.gpus = n;
                if (!r.ok) std::printf("  failed (exit %d): see %s.txt\n", rc, out.c_str());
                results.push_back(r);
            }
        }

    // derived numbers: efficiency against the 1-GPU run, the share of the reduction unhidden
    json j = {{"bench", "scaling"}, {"seq_len", std::stoi(seq)}, {"batch_per_gpu", std::stoi(batch)},
              {"dtype", dtype}, {"device", device}, {"steps", steps}, {"warmup", warmup}, {"runs", json::array()}};
    std::printf("\n%-8s %4s %-14s %12s %9s %11s %12s %10s %9s\n", "preset", "gpus", "variant", "tokens/s", "step ms",
                "efficiency", "peak MiB/gpu", "comm wait", "unhidden");
    for (const auto& r : results) {
        double base = 0, no_overlap = 0;
        for (const auto& o : results) {
            if (o.preset == r.preset && o.gpus == 1 && o.variant == "dp" && o.ok) base = o.tokens_per_s;
            if (o.preset == r.preset && o.gpus == r.gpus && o.variant == "dp_no_overlap" && o.ok) no_overlap = o.comm_wait_s;
        }
        const double eff = base > 0 && r.ok ? r.tokens_per_s / (double(r.gpus) * base) : NAN;
        const double unhidden = no_overlap > 0 && r.variant != "dp_no_overlap" && r.gpus > 1 ? r.comm_wait_s / no_overlap : NAN;
        std::printf("%-8s %4d %-14s %12.0f %9.1f %10.1f%% %12.0f %8.1fms %8.1f%%\n", r.preset.c_str(), r.gpus,
                    r.variant.c_str(), r.tokens_per_s, 1e3 * r.step_s, 100 * eff, r.peak_mib > 0 ? r.peak_mib : NAN, 1e3 * r.comm_wait_s,
                    100 * unhidden);
        auto num = [](double x) { return std::isfinite(x) ? json(x) : json(nullptr); };
        j["runs"].push_back({{"preset", r.preset}, {"gpus", r.gpus}, {"variant", r.variant}, {"ok", r.ok},
                             {"tokens_per_s", num(r.tokens_per_s)}, {"step_s", num(r.step_s)},
                             {"scaling_efficiency", num(eff)}, {"peak_mem_mib_per_gpu", num(r.peak_mib > 0 ? r.peak_mib : NAN)},
                             {"comm_wait_s", num(r.comm_wait_s)}, {"unhidden_comm_fraction", num(unhidden)}});
    }
    bench::write_json(json_out, j);
    return 0;
}
