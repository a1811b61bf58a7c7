// tools/train.cpp — the training loop: data → model → AdamW, with warm-up + decay, global
// norm clipping, gradient accumulation, validation, a progress line, a JSONL log of every
// step, an SVG loss curve, atomic HDF5 checkpoints (keep the last K and the best), exact
// resume, and Ctrl-C or SIGTERM that save before exiting. Under mpirun the same loop is data
// parallel (dist/): each rank trains on its rows of every global batch, gradients are
// averaged in buckets that overlap backward, optionally with ZeRO-1; rank 0 prints, logs
// and writes the same checkpoints a single process would.
//
// Note [Nothing lost]: one trainer per run folder (tools/run_lock.h); a folder that holds
// a run is refused unless --resume continues it or --overwrite deletes it (only the files
// a run writes); every option is checked before anything is touched; a step whose loss or
// gradient norm is not finite is skipped (no update, like a mixed-precision trainer's
// overflow skip) and --max-bad-steps of them in a row stop the run with the last good
// checkpoint kept; no checkpoint with non-finite weights is ever written, and pruning never
// removes the checkpoint just written. Every log line is valid JSON (non-finite numbers are
// written as the strings "nan", "inf", "-inf").
#include "tools/train.h"

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "cuda/device.h"
#include "cuda/memory.h"
#include "dist/data_parallel.h"
#include "dist/launch.h"
#include "dist/mpi_comm.h"
#include "dist/nccl_comm.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/retnet.h"
#include "ops/ops.h"
#include "tools/engine.h"
#include "tools/loss_plot.h"
#include "tools/run_lock.h"
#include "tools/shards.h"
#include "tools/text_stream.h"
#include "tools/tokenizer.h"

namespace rn::tools {

namespace {
// the signal that asked the run to stop (SIGINT or SIGTERM); 0: none
volatile std::sig_atomic_t g_stop = 0;
void on_stop_signal(int sig) { g_stop = sig; }

// a number for the JSON log: JSON has no NaN or infinity (nlohmann would write null, which
// no reader expects to be a loss), so those become the strings "nan", "inf" and "-inf"
nlohmann::json json_number(double v) {
    if (std::isfinite(v)) return v;
    return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

std::string loader_state_json(const DataLoaderState& s) {
    return nlohmann::json{{"seed", s.seed}, {"epoch", s.epoch}, {"step", s.step}, {"global_batch", s.global_batch},
                          {"seq_len", s.seq_len}}
        .dump();
}
DataLoaderState loader_state_from_json(const std::string& text) {
    auto j = nlohmann::json::parse(text);
    DataLoaderState s;
    s.seed = j.at("seed").get<uint64_t>();
    s.epoch = j.at("epoch").get<uint64_t>();
    s.step = j.at("step").get<uint64_t>();
    s.global_batch = j.at("global_batch").get<int64_t>();
    s.seq_len = j.at("seq_len").get<int64_t>();
    return s;
}

std::string fmt_duration(double s) {
    char b[32];
    int64_t t = int64_t(s);
    std::snprintf(b, sizeof b, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
    return b;
}

// Validation loss over the first eval_batches global batches of the validation shard;
// each rank takes its own rows and the ranks average (every rank gets the same number).
double eval_loss(const nn::RetNetLM& model, const std::shared_ptr<const ShardReader>& val, const TrainOptions& o,
                 const nn::ForwardOptions& fo, Device dev, dist::MpiComm* mpi, int64_t batches) {
    NoGradGuard no_grad;
    DataLoaderOptions lo;
    lo.batch_size = o.batch;
    lo.seq_len = o.seq_len;
    lo.shuffle = false;
    lo.rank = mpi ? mpi->rank() : 0;
    lo.world = mpi ? mpi->size() : 1;
    DataLoader loader(val, lo);
    double total = 0;
    int64_t n = std::min<int64_t>(batches, std::max<int64_t>(1, int64_t(loader.batches_per_epoch())));
    for (int64_t i = 0; i < n; ++i) {
        Batch b = loader.next();
        Tensor logits = model.forward(b.inputs.to(dev), fo);
        total += cross_entropy(logits.reshape({-1, logits.size(-1)}), b.targets.to(dev).reshape({-1})).item();
    }
    if (mpi) total = mpi->all_reduce_scalar(total) / double(mpi->size());
    return total / double(n);
}


// The closing sample: the prompt (from <s>) continued through the generation engine with
// the run's sampling settings, so `retnet generate` with the same settings on the final
// checkpoint gives the same text. Ends the model's training use: the engine may cast its
// weights to bf16 in place (--dtype bf16).
std::string sample_text(nn::RetNetLM& model, const Tokenizer& tok, const TrainOptions& o, Device dev) {
    EngineOptions eo;
    eo.max_slots = 1;
    eo.device = dev.str();
    eo.dtype = o.dtype;
    eo.eos_id = tok.eos_id();
    Engine engine(std::shared_ptr<nn::RetNetLM>(&model, [](nn::RetNetLM*) {}), eo);
    std::vector<int32_t> prompt = tok.encode(o.sample_prompt);
    prompt.insert(prompt.begin(), tok.bos_id());
    engine.add(prompt, o.sample, o.sample_tokens);
    TextStream stream(tok);
    std::string text = o.sample_prompt;
    while (!engine.idle())
        for (const EngineEvent& ev : engine.step())
            if (!(ev.finished && ev.finish_reason == "stop")) text += stream.push(ev.token);  // </s> is not text
    return text + stream.flush();
}

// %g without the sign C prints on a NaN ("-nan")
std::string fmt_num(double v) {
    if (std::isnan(v)) return "nan";
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

std::string describe_sampling(const SamplingParams& p) {
    if (p.temperature == 0 && p.repetition_penalty == 1.0) return "greedy";
    char b[160];
    std::string s = "seed " + std::to_string(p.seed);
    if (p.temperature == 0) s += ", greedy";
    else {
        std::snprintf(b, sizeof b, ", temperature %g", p.temperature);
        s += b;
        if (p.top_k > 0) s += ", top-k " + std::to_string(p.top_k);
        if (p.top_p < 1) std::snprintf(b, sizeof b, ", top-p %g", p.top_p), s += b;
    }
    if (p.repetition_penalty != 1.0) std::snprintf(b, sizeof b, ", repetition penalty %g", p.repetition_penalty), s += b;
    return s;
}

// whether every weight is finite (a checkpoint of NaN or infinite weights is never written);
// x − x is 0 for a finite x and NaN otherwise, so one sum per tensor and one read in all
bool weights_finite(const nn::RetNetLM& model) {
    NoGradGuard no_grad;
    Tensor total;
    for (const auto& [name, p] : model.named_parameters()) {
        Tensor s = sum(p - p).to(DType::f64);
        total = total.defined() ? total + s : s;
    }
    return !total.defined() || std::isfinite(total.item());
}

// the files of a run in `dir` that this program wrote (what --overwrite deletes): its
// checkpoints, best.h5, train_log.jsonl, loss.svg and temporaries its dead writers left
std::vector<std::string> run_files(const std::string& dir) {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    for (const auto& [step, path] : nn::list_checkpoints(dir)) out.push_back(path);
    std::error_code ec;
    for (const std::string& p : {nn::best_checkpoint_path(dir), dir + "/train_log.jsonl", dir + "/loss.svg"})
        if (fs::is_regular_file(fs::symlink_status(p, ec))) out.push_back(p);
    if (fs::is_directory(dir, ec))
        for (const auto& e : fs::directory_iterator(dir, ec))
            if (nn::is_stale_checkpoint_temp(e.path().string())) out.push_back(e.path().string());
    return out;
}

// Refuses a folder that holds a run unless --resume or --overwrite says what to do with it
// (checkpoints, best.h5 or train_log.jsonl; a lone loss.svg is no run).
void check_run_folder(const TrainOptions& o) {
    namespace fs = std::filesystem;
    if (o.resume || o.overwrite) return;
    std::string what;
    auto ckpts = nn::list_checkpoints(o.out);
    if (!ckpts.empty())
        what = std::to_string(ckpts.size()) + " checkpoint" + (ckpts.size() > 1 ? "s" : "") + " up to " +
               fs::path(ckpts.back().second).filename().string();
    std::error_code ec;
    for (const char* n : {"best.h5", "train_log.jsonl"})
        if (fs::exists(fs::path(o.out) / n, ec)) what += std::string(what.empty() ? "" : ", ") + n;
    RN_CHECK(what.empty(), "train: ", o.out, " already holds a run (", what, "); not starting over it.\nHINT: pass "
             "--resume to continue that run, or --overwrite to delete it (its checkpoints, best.h5, train_log.jsonl "
             "and loss.svg; nothing else) and start afresh, or give another --out");
}

// The options and data every rank must share, as JSON: rank 0's is broadcast and each
// rank names the fields where it differs. Device and output folder may differ per rank
// (GPU index, local disks); everything that shapes the computation may not.
nlohmann::json run_identity(const TrainOptions& o, const ShardReader& train, const ShardReader& val,
                            const std::string& tokenizer_bytes, int world) {
    return {{"preset", o.preset}, {"mode", o.mode}, {"chunk", o.chunk}, {"batch", o.batch}, {"seq_len", o.seq_len},
            {"steps", o.steps}, {"grad_accum", o.grad_accum}, {"lr", o.lr}, {"min_lr", o.min_lr},
            {"weight_decay", o.weight_decay}, {"clip", o.clip}, {"warmup", o.warmup}, {"schedule", o.schedule},
            {"dtype", o.dtype}, {"eval_interval", o.eval_interval}, {"eval_batches", o.eval_batches},
            {"ckpt_interval", o.ckpt_interval}, {"comm_overlap", o.comm_overlap}, {"log_interval", o.log_interval},
            {"seed", o.seed},
            {"resume", o.resume}, {"overwrite", o.overwrite}, {"max_bad_steps", o.max_bad_steps}, {"zero", o.zero}, {"bucket_mb", o.bucket_mb}, {"world", world},
            {"train_data_checksum", train.checksum()}, {"train_data_tokens", train.size()},
            {"val_data_checksum", val.checksum()},
            {"tokenizer_checksum", shard_checksum(tokenizer_bytes.data(), tokenizer_bytes.size())}};
}

// TrainState as JSON, to send rank 0's (read from a checkpoint) to every rank
std::string train_state_json(const nn::TrainState& s) {
    return nlohmann::json{{"step", s.step}, {"tokens", s.tokens}, {"rng_seed", s.rng_seed},
                          {"rng_offset", s.rng_offset}, {"data", s.data_state_json},
                          {"best_val_loss", std::isfinite(s.best_val_loss) ? s.best_val_loss : -1.0},
                          {"wall_seconds", s.wall_seconds}}
        .dump();
}
nn::TrainState train_state_from_json(const std::string& text) {
    auto j = nlohmann::json::parse(text);
    nn::TrainState s;
    s.step = j.at("step").get<int64_t>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.rng_seed = j.at("rng_seed").get<uint64_t>();
    s.rng_offset = j.at("rng_offset").get<uint64_t>();
    s.data_state_json = j.at("data").get<std::string>();
    const double b = j.at("best_val_loss").get<double>();  // -1: none yet (JSON has no infinity)
    s.best_val_loss = b < 0 ? std::numeric_limits<double>::infinity() : b;
    s.wall_seconds = j.at("wall_seconds").get<double>();
    return s;
}

// Note [Errors every rank knows]: an error that every rank raises together (through
// Collectively) ends each rank normally with the same message; any other error on one
// rank ends the whole job at once (dist::abort_job), since the others would otherwise
// wait for that rank in their next collective until the timeout.
struct Collectively {
    dist::MpiComm* mpi = nullptr;
    bool all_ranks_know = false;
    // runs f on every rank; if it throws on any, every rank throws the first failing
    // rank's message
    void operator()(const std::function<void()>& f) {
        std::string msg;
        try {
            f();
        } catch (const std::exception& e) {
            if (!mpi) throw;
            msg = e.what();
        }
        if (!mpi) return;
        const int world = mpi->size();
        const int first = int(mpi->all_reduce_scalar(msg.empty() ? world : mpi->rank(), dist::ReduceOp::min));
        if (first == world) return;
        mpi->broadcast_bytes(msg, first);
        all_ranks_know = true;
        throw Error(msg);
    }
};

int train_loop(const TrainOptions& o, const dist::LaunchInfo& li, const std::shared_ptr<dist::MpiComm>& mpi,
               Collectively& collectively) {
    namespace fs = std::filesystem;
    const bool lead = li.rank == 0;  // prints, logs and writes checkpoints
    g_stop = 0;
    const std::string tok_path = o.data + "/tokenizer.model", train_path = o.data + "/train.bin",
                      val_path = o.data + "/val.bin";
    for (const auto& p : {tok_path, train_path, val_path})
        RN_CHECK(fs::exists(p), "train: missing ", p, ". HINT: run `retnet prepare --out ", o.data, "` first");
    // one process per GPU: plain "cuda" means this rank's GPU on its machine
    Device dev = Device::parse(li.distributed && o.device == "cuda" ? "cuda:" + std::to_string(li.local_rank)
                                                                   : o.device);
    RN_CHECK(!(li.local_world > 1 && dev.is_cuda() && o.device != "cuda"), "train: ", li.local_world,
             " ranks on ", li.host, " all asked for ", o.device, "; each rank needs its own GPU. HINT: pass --device cuda, "
             "and each rank takes the GPU of its local rank");
    DType compute = dtype_from_name(o.dtype);
    RN_CHECK(compute == DType::f32 || (compute == DType::bf16 && dev.is_cuda()),
             "train: dtype must be f32, or bf16 on CUDA; got ", o.dtype, " on ", dev);
    if (dev.is_cuda()) RN_CHECK(dev.index < cuda::device_count(), "train: ", dev, " requested but ", cuda::device_count(),
                                " CUDA devices are present");
    if (dev.is_cuda()) cuda::set_device(dev.index);
    // one trainer per folder, and a folder's run is continued or replaced only when asked
    // (Note [Nothing lost]); under mpirun rank 0 owns the folder
    std::unique_ptr<RunLock> lock;
    collectively([&] {
        if (!lead) return;
        fs::create_directories(o.out);
        lock = std::make_unique<RunLock>(o.out, [](const std::string& note) { std::fprintf(stderr, "%s\n", note.c_str()); });
        check_run_folder(o);
        nn::remove_stale_temp_files(o.out);
    });

    Tokenizer tok = Tokenizer::load(tok_path);
    auto train_shard = std::make_shared<const ShardReader>(train_path);
    auto val_shard = std::make_shared<const ShardReader>(val_path);
    collectively([&] { check_data_splits(o, train_shard->size(), val_shard->size(), li.world); });
    if (mpi) {
        // every rank must run the same computation on the same data (Note [Errors every rank knows])
        const nlohmann::json mine = run_identity(o, *train_shard, *val_shard, tok.serialized(), li.world);
        std::string theirs = mine.dump();
        mpi->broadcast_bytes(theirs, 0);
        collectively([&] {
            const nlohmann::json ref = nlohmann::json::parse(theirs);
            std::string diff;
            for (auto& [k, v] : ref.items())
                if (!mine.contains(k) || mine[k] != v)
                    diff += "\n  " + k + ": " + (mine.contains(k) ? mine[k].dump() : "(absent)") + " on rank " +
                            std::to_string(li.rank) + ", " + v.dump() + " on rank 0";
            RN_CHECK(diff.empty(), "train: rank ", li.rank, " (", li.host, ") has a different configuration or data "
                     "than rank 0:", diff, "\nHINT: every rank must get the same options and the same --data");
        });
    }

    nn::RetNetConfig cfg = nn::RetNetConfig::from_preset(o.preset, tok.vocab_size());
    cfg.mode = o.mode;
    cfg.chunk = o.chunk;
    nn::RetNetLM model(cfg, o.seed);
    model.to(dev);
    nn::AdamWOptions ao;
    ao.weight_decay = o.weight_decay;
    std::shared_ptr<dist::Communicator> comm;
    if (mpi) comm = dev.is_cuda() ? std::shared_ptr<dist::Communicator>(dist::make_nccl_comm(*mpi, dev.index,
                                                                                               o.comm_timeout))
                                  : std::static_pointer_cast<dist::Communicator>(mpi);
    dist::DataParallelOptions dpo;
    dpo.bucket_bytes = size_t(o.bucket_mb * double(1 << 20));
    dpo.zero = o.zero;
    dpo.overlap = o.comm_overlap;
    dist::DataParallel dp(comm, model.named_parameters(), ao, dpo);
    dp.broadcast_parameters();  // the same seed made them equal; this makes it certain
    nn::LRSchedule sched;
    sched.kind = o.schedule;
    sched.peak = o.lr;
    sched.min_lr = o.min_lr;
    sched.warmup = o.warmup;
    sched.total = o.steps;

    DataLoaderOptions lo;
    lo.batch_size = o.batch * o.grad_accum;  // this rank's rows of one step, split into micro-batches below
    lo.seq_len = o.seq_len;
    lo.seed = o.seed;
    lo.rank = li.rank;
    lo.world = li.world;
    DataLoader loader(train_shard, lo);

    nn::TrainState st;
    const std::string log_path = o.out + "/train_log.jsonl";
    std::vector<std::pair<int64_t, double>> train_curve, val_curve;
    std::string last_saved;  // the newest checkpoint of this run (rank 0): the one to resume from
    if (o.resume) {
        // rank 0 reads the checkpoint (other machines need not see the run folder) and
        // sends weights, optimizer state and position to every rank
        std::string last, state_json;
        std::unique_ptr<nn::AdamW> gathered;  // ZeRO-1: the whole state, before each rank keeps its blocks
        nn::AdamW* opt_full = dp.full_optimizer();
        if (!opt_full) opt_full = (gathered = std::make_unique<nn::AdamW>(model.named_parameters(), ao)).get();
        collectively([&] {
            if (!lead) return;
            last = nn::latest_checkpoint(o.out);
            RN_CHECK(!last.empty(), "train --resume: no checkpoint in ", o.out);
            nn::Checkpoint ck = nn::read_checkpoint(last);
            RN_CHECK(ck.config.d_model == cfg.d_model && ck.config.n_layers == cfg.n_layers &&
                         ck.config.vocab_size == cfg.vocab_size,
                     "train --resume: ", last, " holds a ", ck.config.preset, " model (d ", ck.config.d_model,
                     ", vocab ", ck.config.vocab_size, "), not the requested ", o.preset, " (d ", cfg.d_model,
                     ", vocab ", cfg.vocab_size, ")");
            nn::load_into(ck, model, opt_full);
            state_json = train_state_json(ck.train);
        });
        if (mpi) {
            mpi->broadcast_bytes(state_json, 0);
            dp.broadcast_parameters();
            dp.broadcast_optimizer(*opt_full);
        }
        if (gathered) dp.scatter_optimizer(*gathered);
        gathered.reset();
        st = train_state_from_json(state_json);
        collectively([&] { loader.set_state(loader_state_from_json(st.data_state_json)); });
        if (lead) {
            last_saved = last;
            std::printf("resumed from %s at step %lld\n", last.c_str(), (long long)st.step);
            // keep the log of the steps before the checkpoint, drop any after it
            std::ifstream in(log_path);
            std::string line, kept;
            while (std::getline(in, line)) {
                auto j = nlohmann::json::parse(line, nullptr, false);
                if (j.is_discarded() || j.value("step", int64_t(1) << 62) > st.step) continue;
                kept += line + "\n";
                // a skipped step's loss is a string ("nan"); logs of older versions may hold null
                if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
                if (j.contains("loss") && j["loss"].is_number())
                    train_curve.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
                if (j.contains("val_loss") && j["val_loss"].is_number())
                    val_curve.emplace_back(j["step"].get<int64_t>(), j["val_loss"].get<double>());
            }
            std::ofstream(log_path) << kept;
        }
    } else if (lead) {
        if (o.overwrite) {  // everything is checked by now: only a run that can start replaces the old one
            std::vector<std::string> old = run_files(o.out);
            for (const auto& f : old) fs::remove(f);
            if (!old.empty())
                std::printf("--overwrite: removed %zu files of the previous run in %s\n", old.size(), o.out.c_str());
        }
        std::ofstream(log_path, std::ios::trunc);
    }
    std::ofstream log;
    if (lead) log.open(log_path, std::ios::app);

    nn::ForwardOptions fo;
    fo.mode = retention_mode_from_name(o.mode);
    fo.chunk = o.chunk;
    fo.compute = compute;
    const int64_t tokens_per_step = o.batch * o.grad_accum * o.seq_len * li.world;  // global
    if (lead) {
        std::printf("retnet train: %s preset, %.2fM parameters, vocab %d, %s %s, batch %lld×%lld tokens (accum %lld), "
                    "%lld steps\n",
                    o.preset.c_str(), double(model.num_parameters()) / 1e6, tok.vocab_size(), dev.str().c_str(),
                    o.dtype.c_str(), (long long)o.batch, (long long)o.seq_len, (long long)o.grad_accum,
                    (long long)o.steps);
        if (mpi)
            std::printf("data parallel: %d ranks (%s), %zu gradient buckets of ≤ %.3g MiB, ZeRO-%d, global batch %lld "
                        "sequences\n",
                        li.world, comm->backend().c_str(), dp.num_buckets(), o.bucket_mb, dp.zero(),
                        (long long)(o.batch * o.grad_accum * li.world));
        std::fflush(stdout);
    }

    auto last_good = [&] {
        return last_saved.empty() ? std::string("no checkpoint was written")
                                  : "the last checkpoint is " + last_saved + " (--resume continues from it)";
    };
    // Saves this step's checkpoint, or returns "" and says why when its weights are not
    // worth keeping: not finite, or giving a non-finite loss (a diverging update is only
    // seen in the next step's loss, so the weights are tried on validation data first:
    // `val_now` when this step evaluated, else one batch). Every rank holds the same
    // weights and the loss is all-reduced, so every rank reaches the same verdict.
    auto save = [&](bool best_too, double val_now) -> std::string {
        const bool finite_weights = weights_finite(model);
        if (finite_weights && !std::isfinite(val_now)) val_now = eval_loss(model, val_shard, o, fo, dev, mpi.get(), 1);
        if (!finite_weights || !std::isfinite(val_now)) {
            if (lead)
                std::printf("step %lld: not saved: the weights %s (the last update diverged); %s\n", (long long)st.step,
                            finite_weights ? "give a non-finite validation loss" : "are not finite", last_good().c_str());
            return "";
        }
        st.data_state_json = loader_state_json(loader.state());
        std::string path = nn::checkpoint_path(o.out, st.step);
        // ZeRO-1: the moments come together from every rank (a collective) before rank 0
        // writes the same file a single process would
        std::unique_ptr<nn::AdamW> gathered;
        const nn::AdamW* opt = dp.full_optimizer();
        if (!opt) opt = (gathered = dp.gather_optimizer()).get();
        last_saved = path;
        if (!lead) return path;
        nn::save_checkpoint(path, model, opt, st, tok.serialized(), nlohmann::json{{"command", "retnet train"}}.dump());
        // best.h5 first, and never prune the file just written: an older run's higher steps
        // in the folder would otherwise push it out before it was promoted
        if (best_too) nn::promote_to_best(o.out, path);
        nn::keep_last_k(o.out, o.keep_last, {path});
        return path;
    };
    auto peak_mib = [&] {
        return dev.is_cuda() ? double(cuda::memory_stats(dev.index).peak_allocated) / double(1 << 20)
                             : double(cpu_memory_stats().peak) / double(1 << 20);
    };

    const LossPlot plot_title{"retnet train: " + o.preset + " preset on " + o.data, {}, {}};
    auto plot = [&] {
        if (!lead) return;
        LossPlot p = plot_title;
        p.train = train_curve;
        p.val = val_curve;
        write_loss_svg(o.out + "/loss.svg", p);
    };
    // Ctrl-C and SIGTERM (what schedulers, `timeout` and `kill` send) both stop after the
    // current step and save
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
    struct RestoreSignals {
        ~RestoreSignals() {
            std::signal(SIGINT, SIG_DFL);
            std::signal(SIGTERM, SIG_DFL);
        }
    } restore_signals;
    auto t0 = std::chrono::steady_clock::now();
    double wall_before = st.wall_seconds;
    int64_t start_step = st.step;
    double last_val = NAN, comm_total = 0;
    int64_t bad_in_a_row = 0, skipped = 0;
    bool stop = false;
    while (st.step < o.steps && !stop) {
        auto step_t0 = std::chrono::steady_clock::now();
        Batch b = loader.next();
        double loss_sum = 0;
        for (int64_t m = 0; m < o.grad_accum; ++m) {
            Tensor in = b.inputs.narrow(0, m * o.batch, o.batch).to(dev);
            Tensor tg = b.targets.narrow(0, m * o.batch, o.batch).contiguous().to(dev);
            Tensor logits = model.forward(in, fo);
            Tensor loss = cross_entropy(logits.reshape({-1, logits.size(-1)}), tg.reshape({-1}));
            if (o.grad_accum > 1) loss = loss / double(o.grad_accum);
            dp.begin_backward(m == o.grad_accum - 1);  // one reduction per optimizer step
            loss.backward();
            loss_sum += loss.item();
        }
        dp.finish_gradient_sync();
        double gnorm = dp.clip_grad_norm(o.clip);  // global: the same on every rank
        bool bad = !std::isfinite(loss_sum) || !std::isfinite(gnorm);
        stop = g_stop != 0;
        if (mpi) {
            // the global loss; a non-finite value on any rank skips the step on every rank;
            // Ctrl-C on any rank stops every rank after the same step
            Tensor t = from_vector<double>({loss_sum, double(g_stop != 0), bad ? 1.0 : 0.0}, {3});
            mpi->all_reduce(t);
            auto v = t.to_vector<double>();
            loss_sum = v[0] / double(li.world);
            stop = v[1] > 0;
            bad = v[2] > 0 || !std::isfinite(loss_sum);
        }
        double lr = sched.at(st.step);
        if (bad) {
            ++bad_in_a_row, ++skipped;  // no update: the weights and moments stay as they were
        } else {
            bad_in_a_row = 0;
            dp.step(lr);
        }
        model.zero_grad();
        st.step += 1;
        st.tokens += tokens_per_step;
        auto now = std::chrono::steady_clock::now();
        double elapsed = std::chrono::duration<double>(now - t0).count();
        double step_s = std::chrono::duration<double>(now - step_t0).count();
        double comm_s = dp.take_comm_seconds();
        comm_total += comm_s;
        st.wall_seconds = wall_before + elapsed;
        double tps = double((st.step - start_step) * tokens_per_step) / std::max(elapsed, 1e-9);
        double eta = double(o.steps - st.step) * elapsed / double(std::max<int64_t>(st.step - start_step, 1));
        nlohmann::json rec = {{"step", st.step}, {"loss", json_number(loss_sum)}, {"lr", lr},
                              {"grad_norm", json_number(gnorm)}, {"tokens", st.tokens}, {"tokens_per_s", tps},
                              {"elapsed_s", st.wall_seconds}};
        if (bad) rec["skipped"] = true, rec["bad_steps_in_a_row"] = bad_in_a_row;
        else train_curve.emplace_back(st.step, loss_sum);
        bool do_eval = st.step % o.eval_interval == 0 || st.step == o.steps;
        if (do_eval) {
            last_val = eval_loss(model, val_shard, o, fo, dev, mpi.get(), o.eval_batches);
            rec["val_loss"] = json_number(last_val);
            rec["val_ppl"] = json_number(std::exp(last_val));
            if (std::isfinite(last_val)) val_curve.emplace_back(st.step, last_val);
        }
        const bool print = st.step % o.log_interval == 0 || st.step == 1 || do_eval || bad;
        if (dev.is_cuda()) rec["peak_mem_mib"] = peak_mib();  // this rank's (rank 0 in a job)
        std::vector<double> mem_per_rank;
        if (mpi) {
            rec["world"] = li.world;
            rec["comm_wait_s"] = comm_s;
            rec["step_s"] = step_s;
            rec["comm_wait_frac"] = comm_s / std::max(step_s, 1e-9);
            if (print) {  // every rank takes part: the condition is the same everywhere
                mem_per_rank = mpi->all_gather_scalar(peak_mib());
                rec["peak_mem_mib_per_rank"] = mem_per_rank;
            }
        }
        if (lead) {
            log << rec.dump() << "\n";
            log.flush();
        }
        if (print && lead) {
            std::string mem;
            if (mpi) {
                auto [lo_m, hi_m] = std::minmax_element(mem_per_rank.begin(), mem_per_rank.end());
                char b2[96];
                std::snprintf(b2, sizeof b2, "  mem/rank %.0f–%.0f MiB  comm wait %.0f%%", *lo_m, *hi_m,
                              100.0 * comm_s / std::max(step_s, 1e-9));
                mem = b2;
            } else if (dev.is_cuda()) {
                auto ms = cuda::memory_stats(dev.index);
                mem = "  mem " + std::to_string(ms.peak_allocated >> 20) + " MiB";
            }
            if (bad)
                std::printf("step %5lld/%lld  SKIPPED: loss %s, grad norm %s: not finite; no update (%lld in a row, "
                            "--max-bad-steps %lld)", (long long)st.step, (long long)o.steps, fmt_num(loss_sum).c_str(),
                            fmt_num(gnorm).c_str(),
                            (long long)bad_in_a_row, (long long)o.max_bad_steps);
            else
                std::printf("step %5lld/%lld  loss %.4f  lr %.2e  %8.0f tok/s  ETA %s%s", (long long)st.step,
                            (long long)o.steps, loss_sum, lr, tps, fmt_duration(eta).c_str(), mem.c_str());
            if (do_eval && std::isfinite(last_val)) std::printf("  | val loss %.4f  ppl %.1f", last_val, std::exp(last_val));
            else if (do_eval) std::printf("  | val loss %s", fmt_num(last_val).c_str());
            std::printf("\n");
            std::fflush(stdout);
        }
        if (bad_in_a_row >= o.max_bad_steps) {
            // every rank counts the same steps (the verdict above is all-reduced)
            plot();
            collectively.all_ranks_know = true;
            RN_FAIL("train: stopped at step ", st.step, ": ", bad_in_a_row, " steps in a row had a non-finite loss or "
                    "gradient norm (the last: loss ", fmt_num(loss_sum), ", grad norm ", fmt_num(gnorm), "); they were "
                    "skipped, so the weights are those of step ", st.step - bad_in_a_row, "; ", last_good(),
                    ".\nHINT: the run diverged: lower --lr (", o.lr, ") or --clip, or allow more skipped steps with "
                    "--max-bad-steps");
        }
        // a validation loss counts only when finite; a skipped step saves nothing (the next
        // good one will), so a checkpoint never follows a failed update
        bool best = do_eval && std::isfinite(last_val) && last_val < st.best_val_loss;
        if (best) st.best_val_loss = last_val;
        if (!bad && (st.step % o.ckpt_interval == 0 || st.step == o.steps || best)) save(best, do_eval ? last_val : NAN);
        if (print || st.step == o.steps) plot();
    }
    if (stop) {
        plot();
        std::string p = save(false, NAN);
        const int sig = g_stop ? int(g_stop) : SIGINT;  // another rank may have had the signal
        if (lead)
            std::printf("interrupted (%s): %s; continue with --resume\n", sig == SIGTERM ? "SIGTERM" : "Ctrl-C",
                        p.empty() ? last_good().c_str() : ("saved " + p).c_str());
        return 128 + sig;
    }
    if (!lead) return 0;
    if (mpi)
        std::printf("data parallel: %d ranks, %.0f tokens/s in all, %.1f%% of the time waiting on communication\n",
                    li.world, double((st.step - start_step) * tokens_per_step) / std::max(st.wall_seconds - wall_before, 1e-9),
                    100.0 * comm_total / std::max(st.wall_seconds - wall_before, 1e-9));
    char best_text[32] = "none";
    if (std::isfinite(st.best_val_loss)) std::snprintf(best_text, sizeof best_text, "%.4f", st.best_val_loss);
    std::printf("done: %lld steps, final val loss %.4f (ppl %.1f), best %s\n", (long long)st.step, last_val,
                std::exp(last_val), best_text);
    if (skipped > 0)
        std::printf("skipped %lld steps with a non-finite loss or gradient norm (no update)%s\n", (long long)skipped,
                    bad_in_a_row > 0 ? "; the last step was one, so it wrote no checkpoint" : "");
    const std::string best_path = nn::best_checkpoint_path(o.out);
    std::error_code ec;
    std::printf("checkpoints: %s/ckpt_*.h5%s; log %s; loss curve %s/loss.svg\n", o.out.c_str(),
                fs::exists(best_path, ec) ? (" and " + best_path).c_str() : " (no best.h5: no finite validation loss)",
                log_path.c_str(), o.out.c_str());
    if (o.sample_tokens > 0) {
        std::printf("sample (%s): %s\n", describe_sampling(o.sample).c_str(), sample_text(model, tok, o, dev).c_str());
        std::fflush(stdout);
    }
    return 0;
}
}  // namespace

void TrainOptions::validate() const {
    // each check names the option as typed on the command line, the allowed range and the value
    auto at_least = [](const char* opt, int64_t v, int64_t lo) {
        RN_CHECK(v >= lo, "train: ", opt, " must be an integer ≥ ", lo, ", got ", v);
    };
    auto positive = [](const char* opt, double v) {
        RN_CHECK(std::isfinite(v) && v > 0, "train: ", opt, " must be a finite number > 0, got ", v);
    };
    auto non_negative = [](const char* opt, double v) {
        RN_CHECK(std::isfinite(v) && v >= 0, "train: ", opt, " must be a finite number ≥ 0, got ", v);
    };
    auto one_of = [](const char* opt, const std::string& v, const std::vector<std::string>& allowed) {
        std::string all;
        for (const auto& a : allowed) {
            if (v == a) return;
            all += (all.empty() ? "" : ", ") + a;
        }
        RN_FAIL("train: ", opt, " must be one of ", all, "; got '", v, "'");
    };
    RN_CHECK(!data.empty(), "train: --data must name a folder written by `retnet prepare`; got an empty string");
    RN_CHECK(!out.empty(), "train: --out must name a run folder; got an empty string");
    one_of("--preset", preset, nn::RetNetConfig::preset_names());
    one_of("--mode", mode, {"chunkwise", "parallel", "recurrent"});
    at_least("--chunk", chunk, 1);
    at_least("--batch", batch, 1);
    at_least("--seq-len", seq_len, 1);
    at_least("--steps", steps, 1);
    at_least("--grad-accum", grad_accum, 1);
    positive("--lr", lr);
    non_negative("--min-lr", min_lr);
    RN_CHECK(min_lr <= lr, "train: --min-lr must not exceed --lr (", lr, "); got ", min_lr);
    non_negative("--weight-decay", weight_decay);
    non_negative("--clip", clip);
    at_least("--warmup", warmup, 0);
    one_of("--schedule", schedule, {"cosine", "linear"});
    try {
        Device::parse(device);
    } catch (const std::exception& e) {
        RN_FAIL("train: --device must be cpu, cuda or cuda:N; got '", device, "' (", e.what(), ")");
    }
    one_of("--dtype", dtype, {"f32", "bf16"});
    at_least("--eval-interval", eval_interval, 1);
    at_least("--eval-batches", eval_batches, 1);
    at_least("--ckpt-interval", ckpt_interval, 1);
    at_least("--keep-last", keep_last, 0);
    at_least("--log-interval", log_interval, 1);
    RN_CHECK(!(resume && overwrite), "train: --resume continues the run in --out and --overwrite deletes it: give one "
             "of them, not both");
    at_least("--max-bad-steps", max_bad_steps, 1);
    at_least("--sample-tokens", sample_tokens, 0);
    non_negative("--sample-temperature", sample.temperature);
    at_least("--sample-top-k", sample.top_k, 0);
    RN_CHECK(std::isfinite(sample.top_p) && sample.top_p > 0 && sample.top_p <= 1,
             "train: --sample-top-p must lie in (0, 1]; got ", sample.top_p);
    positive("--sample-repetition-penalty", sample.repetition_penalty);
    RN_CHECK(zero == 0 || zero == 1, "train: --zero must be 0 (off) or 1 (shard the optimizer state); got ", zero);
    positive("--bucket-mb", bucket_mb);
    positive("--comm-timeout", comm_timeout);
}

void check_data_splits(const TrainOptions& o, uint64_t train_tokens, uint64_t val_tokens, int world) {
    const uint64_t T = uint64_t(o.seq_len), W = uint64_t(std::max(world, 1));
    const uint64_t train_rows = uint64_t(o.batch * o.grad_accum) * W, val_rows = uint64_t(o.batch) * W;
    // the DataLoader's count: rows of T + 1 tokens overlapping by one; training windows
    // may start up to T − 1 tokens in (the shuffle's shift), validation ones at 0
    const uint64_t need_train = train_rows * T + T, need_val = val_rows * T + 1;
    const std::string ranks = W > 1 ? " × " + std::to_string(W) + " ranks" : "";
    RN_CHECK(val_tokens > 0, "train: ", o.data, "/val.bin holds no tokens: there is no validation data.\nHINT: "
             "`retnet prepare` holds out whole documents (a file is one document unless its text is split by "
             "lines of ", kDocSeparator, "), so give it two or more files or documents and a --val-fraction > 0");
    RN_CHECK(train_tokens >= need_train, "train: ", o.data, "/train.bin holds ", train_tokens, " tokens, fewer than "
             "one training batch needs: ", train_rows, " rows (--batch ", o.batch, " × --grad-accum ", o.grad_accum,
             ranks, ") of --seq-len ", T, " + 1 tokens = ", need_train, " tokens (with the shuffle's shift).\nHINT: "
             "use a smaller --batch or --seq-len, or more data");
    RN_CHECK(val_tokens >= need_val, "train: ", o.data, "/val.bin holds ", val_tokens, " tokens, fewer than one "
             "validation batch needs: ", val_rows, " rows (--batch ", o.batch, ranks, ") of --seq-len ", T,
             " + 1 tokens = ", need_val, " tokens.\nHINT: use a smaller --batch or --seq-len, or prepare with a "
             "larger --val-fraction");
}

int run_train(const TrainOptions& o) {
    o.validate();  // every rank has the same options: each refuses bad ones alike, before MPI starts
    const dist::LaunchInfo li = dist::init_from_launcher();
    std::shared_ptr<dist::MpiComm> mpi;
    Collectively collectively;
    try {
        if (li.distributed) mpi = std::make_shared<dist::MpiComm>(o.comm_timeout);
        collectively.mpi = mpi.get();
        return train_loop(o, li, mpi, collectively);
    } catch (const std::exception& e) {
        // Note [Errors every rank knows]
        if (!mpi || li.world == 1 || collectively.all_ranks_know) throw;
        std::fprintf(stderr, "error: rank %d of %d (%s): %s\n", li.rank, li.world, li.host.c_str(), e.what());
        dist::abort_job(2);
    }
}

}  // namespace rn::tools
