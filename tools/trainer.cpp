// tools/trainer.cpp — the training loop (tools/trainer.h): data → model → AdamW, with warm-up
// + decay, global norm clipping, gradient accumulation, validation, a progress line, a JSONL
// log of every step, an SVG loss curve, atomic HDF5 checkpoints (keep the last K and the
// best), exact resume, and Ctrl-C or SIGTERM that save before exiting. Under mpirun the same
// loop is data parallel (dist/): each rank trains on its rows of every global batch,
// gradients are averaged in buckets that overlap backward, optionally with ZeRO-1; rank 0
// prints, logs and writes the same checkpoints a single process would.
//
// Note [Nothing lost]: one trainer per run folder (tools/run_lock.h); a folder that holds
// a run is refused unless --resume continues it or --overwrite deletes it (only the files
// a run writes); every option is checked before anything is touched; a step whose loss or
// gradient norm is not finite is skipped (no update, like a mixed-precision trainer's
// overflow skip) and --max-bad-steps of them in a row stop the run with the last good
// checkpoint kept; no checkpoint with non-finite weights is ever written, and pruning never
// removes the checkpoint just written. Every log line is valid JSON (non-finite numbers are
// written as the strings "nan", "inf", "-inf").
#include "tools/trainer.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>
#include <nlohmann/json.hpp>

#include "core/text_file.h"
#include "cuda/device.h"
#include "cuda/matmul.h"
#include "cuda/memory.h"
#include "dist/nccl_comm.h"
#include "ops/ops.h"
#include "serving/engine.h"
#include "serving/text_stream.h"
#include "tools/loss_plot.h"

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
// Under context parallelism the loader is the data-parallel group's (dp_rank of dp_world)
// and each rank evaluates its part of every row (`split`, this rank's part cp_rank).
double eval_loss(const nn::LanguageModel& model, const std::shared_ptr<const ShardReader>& val, const TrainOptions& o,
                 const nn::ForwardOptions& fo, Device dev, dist::MpiComm* mpi, int64_t batches, int64_t dp_rank,
                 int64_t dp_world, const dist::ContextSplit* split, int64_t cp_rank) {
    NoGradGuard no_grad;
    DataLoaderOptions lo;
    lo.batch_size = o.batch;
    lo.seq_len = o.seq_len;
    lo.shuffle = false;
    lo.rank = int(dp_rank);
    lo.world = int(dp_world);
    DataLoader loader(val, lo);
    double total = 0;
    int64_t n = std::min<int64_t>(batches, std::max<int64_t>(1, int64_t(loader.batches_per_epoch())));
    for (int64_t i = 0; i < n; ++i) {
        Batch b = loader.next();
        Tensor in = b.inputs, tg = b.targets;
        if (split) {
            const int64_t off = split->offsets[size_t(cp_rank)], len = split->lengths[size_t(cp_rank)];
            in = in.narrow(1, off, len).contiguous(), tg = tg.narrow(1, off, len).contiguous();
        }
        total += model.loss(in.to(dev), tg.to(dev), fo).item();
    }
    if (mpi) total = mpi->all_reduce_scalar(total) / double(mpi->size());
    return total / double(n);
}


// The closing sample: the prompt (from <s>) continued through the generation engine with
// the run's sampling settings, so `retnet generate` with the same settings on the final
// checkpoint gives the same text. Ends the model's training use: the engine may cast its
// weights to bf16 in place (--dtype bf16).
std::string sample_text(nn::LanguageModel& model, const Tokenizer& tok, const TrainOptions& o, Device dev) {
    EngineOptions eo;
    eo.max_slots = 1;
    eo.device = dev.str();
    eo.dtype = o.dtype;
    eo.eos_id = tok.eos_id();
    Engine engine(std::shared_ptr<nn::LanguageModel>(&model, [](nn::LanguageModel*) {}), eo);
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
    const char* past = p.ignore_eos ? ", past end-of-text" : "";
    if (p.temperature == 0 && p.repetition_penalty == 1.0) return std::string("greedy") + past;
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
    return s + past;
}

// whether every weight is finite (a checkpoint of NaN or infinite weights is never written);
// x − x is 0 for a finite x and NaN otherwise, so one sum per tensor and one read in all
bool weights_finite(const nn::LanguageModel& model) {
    NoGradGuard no_grad;
    Tensor total;
    for (const auto& [name, p] : model.named_parameters()) {
        Tensor s = sum(p - p).to(DType::f64);
        total = total.defined() ? total + s : s;
    }
    return !total.defined() || std::isfinite(total.item());
}

std::string gemm_plans_path(const std::string& dir) { return dir + "/gemm_plans.txt"; }

// the files of a run in `dir` that this program wrote (what --overwrite deletes): its
// checkpoints, best.h5, train_log.jsonl, loss.svg and temporaries its dead writers left
std::vector<std::string> run_files(const std::string& dir) {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    for (const auto& [step, path] : nn::list_checkpoints(dir)) out.push_back(path);
    std::error_code ec;
    for (const std::string& p :
         {nn::best_checkpoint_path(dir), dir + "/train_log.jsonl", dir + "/loss.svg", gemm_plans_path(dir)})
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
    return {{"arch", o.arch}, {"preset", o.preset}, {"mode", o.mode}, {"chunk", o.chunk}, {"batch", o.batch}, {"seq_len", o.seq_len},
            {"steps", o.steps}, {"grad_accum", o.grad_accum}, {"lr", o.lr}, {"min_lr", o.min_lr},
            {"weight_decay", o.weight_decay}, {"clip", o.clip}, {"warmup", o.warmup}, {"schedule", o.schedule},
            {"dtype", o.dtype}, {"eval_interval", o.eval_interval}, {"eval_batches", o.eval_batches},
            {"ckpt_interval", o.ckpt_interval}, {"comm_overlap", o.comm_overlap}, {"log_interval", o.log_interval},
            {"seed", o.seed},
            {"resume", o.resume}, {"overwrite", o.overwrite}, {"max_bad_steps", o.max_bad_steps}, {"zero", o.zero}, {"bucket_mb", o.bucket_mb}, {"world", world},
            {"context_parallel", o.context_parallel}, {"checkpoint_activations", o.checkpoint_activations},
            {"config", o.config},
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
}  // namespace

void Collectively::operator()(const std::function<void()>& f) {
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

// ---------------------------------------------------------------- setup

Trainer::Trainer(const TrainOptions& o, const dist::LaunchInfo& li, std::shared_ptr<dist::MpiComm> mpi,
                 Collectively& collectively)
    : o_(o), li_(li), mpi_(std::move(mpi)), collectively_(collectively), lead_(li.rank == 0) {
    setup();
}

void Trainer::setup() {
    namespace fs = std::filesystem;
    const TrainOptions& o = o_;
    g_stop = 0;
    const std::string tok_path = o.data + "/tokenizer.model", train_path = o.data + "/train.bin",
                      val_path = o.data + "/val.bin";
    for (const auto& p : {tok_path, train_path, val_path})
        RN_CHECK(fs::exists(p), "train: missing ", p, ". HINT: run `retnet prepare --out ", o.data, "` first");
    // context parallelism: consecutive ranks share a data-parallel group (and its rows)
    cp_ = o.context_parallel;
    dp_rank_ = li_.rank, dp_world_ = li_.world;
    if (cp_ > 1) {
        collectively_([&] {
            RN_CHECK(mpi_ && li_.world % cp_ == 0, "train: --context-parallel ", cp_, " needs a multiple of ", cp_,
                     " ranks under mpirun; this job has ", li_.world, ". HINT: mpirun -np ", cp_, " (or a multiple)");
        });
        cp_rank_ = li_.rank % cp_, dp_rank_ = li_.rank / cp_, dp_world_ = li_.world / cp_;
    }
    // one process per GPU: plain "cuda" means this rank's GPU on its machine
    dev_ = Device::parse(li_.distributed && o.device == "cuda" ? "cuda:" + std::to_string(li_.local_rank) : o.device);
    RN_CHECK(!(li_.local_world > 1 && dev_.is_cuda() && o.device != "cuda"), "train: ", li_.local_world,
             " ranks on ", li_.host, " all asked for ", o.device, "; each rank needs its own GPU. HINT: pass --device cuda, "
             "and each rank takes the GPU of its local rank");
    compute_ = dtype_from_name(o.dtype);
    RN_CHECK(compute_ == DType::f32 || (compute_ == DType::bf16 && dev_.is_cuda()),
             "train: dtype must be f32, or bf16 on CUDA; got ", o.dtype, " on ", dev_);
    if (dev_.is_cuda()) RN_CHECK(dev_.index < cuda::device_count(), "train: ", dev_, " requested but ", cuda::device_count(),
                                 " CUDA devices are present");
    if (dev_.is_cuda()) cuda::set_device(dev_.index);
    // one trainer per folder, and a folder's run is continued or replaced only when asked
    // (Note [Nothing lost]); under mpirun rank 0 owns the folder
    collectively_([&] {
        if (!lead_) return;
        fs::create_directories(o.out);
        lock_ = std::make_unique<RunLock>(o.out, [](const std::string& note) { std::fprintf(stderr, "%s\n", note.c_str()); });
        check_run_folder(o);
        nn::remove_stale_temp_files(o.out);
    });

    tok_ = std::make_unique<Tokenizer>(Tokenizer::load(tok_path));
    train_shard_ = std::make_shared<const ShardReader>(train_path);
    val_shard_ = std::make_shared<const ShardReader>(val_path);
    collectively_([&] { check_data_splits(o, train_shard_->size(), val_shard_->size(), int(dp_world_)); });
    if (mpi_) {
        // every rank must run the same computation on the same data (Note [Errors every rank knows])
        const nlohmann::json mine = run_identity(o, *train_shard_, *val_shard_, tok_->serialized(), li_.world);
        std::string theirs = mine.dump();
        mpi_->broadcast_bytes(theirs, 0);
        collectively_([&] {
            const nlohmann::json ref = nlohmann::json::parse(theirs);
            std::string diff;
            for (auto& [k, v] : ref.items())
                if (!mine.contains(k) || mine[k] != v)
                    diff += "\n  " + k + ": " + (mine.contains(k) ? mine[k].dump() : "(absent)") + " on rank " +
                            std::to_string(li_.rank) + ", " + v.dump() + " on rank 0";
            RN_CHECK(diff.empty(), "train: rank ", li_.rank, " (", li_.host, ") has a different configuration or data "
                     "than rank 0:", diff, "\nHINT: every rank must get the same options and the same --data");
        });
    }

    cfg_ = nn::ModelConfig::from_preset(o.preset, tok_->vocab_size(), o.arch);
    if (!o.config.empty()) {
        std::ifstream cf(o.config, std::ios::binary);
        RN_CHECK(cf.good(), "train: --config ", o.config, ": cannot be read");
        std::ostringstream ss;
        ss << cf.rdbuf();
        cfg_ = cfg_.with_overrides(ss.str());
    }
    cfg_.mode = o.mode;
    cfg_.chunk = o.chunk;
    model_ = nn::make_model(cfg_, o.seed);
    model_->to(dev_);
    ao_.weight_decay = o.weight_decay;
    if (mpi_) comm_ = dev_.is_cuda() ? std::shared_ptr<dist::Communicator>(dist::make_nccl_comm(*mpi_, dev_.index,
                                                                                                 o.comm_timeout))
                                     : std::static_pointer_cast<dist::Communicator>(mpi_);
    if (cp_ > 1) {  // the group's own communicator: the state scan of every layer runs in it
        cp_mpi_ = std::make_shared<dist::MpiComm>(*mpi_, int(dp_rank_), int(cp_rank_));
        cp_comm_ = dev_.is_cuda() ? std::shared_ptr<dist::Communicator>(
                                        dist::make_nccl_comm(*cp_mpi_, dev_.index, o.comm_timeout))
                                  : std::static_pointer_cast<dist::Communicator>(cp_mpi_);
        cp_split_ = dist::ContextSplit::even(o.seq_len, int(cp_));
    }
    dist::DataParallelOptions dpo;
    dpo.bucket_bytes = size_t(o.bucket_mb * double(1 << 20));
    dpo.zero = o.zero;
    dpo.overlap = o.comm_overlap;
    dp_ = std::make_unique<dist::DataParallel>(comm_, model_->named_parameters(), ao_, dpo);
    dp_->broadcast_parameters();  // the same seed made them equal; this makes it certain
    sched_.kind = o.schedule;
    sched_.peak = o.lr;
    sched_.min_lr = o.min_lr;
    sched_.warmup = o.warmup;
    sched_.total = o.steps;

    DataLoaderOptions lo;
    lo.batch_size = o.batch * o.grad_accum;  // this rank's rows of one step, split into micro-batches below
    lo.seq_len = o.seq_len;
    lo.seed = o.seed;
    lo.rank = int(dp_rank_);
    lo.world = int(dp_world_);
    loader_ = std::make_unique<DataLoader>(train_shard_, lo);

    log_path_ = o.out + "/train_log.jsonl";
    if (dev_.is_cuda()) {  // one process times its products; ranks keep the heuristic's pick
        cuda::set_gemm_tune(li_.world == 1 ? int(o.gemm_tune) : 1);
        if (li_.world == 1) gemm_plans_path_ = gemm_plans_path(o.out);
    }
    fo_.mode = retention_mode_from_name(o.mode);
    fo_.chunk = o.chunk;
    fo_.compute = compute_;
    fo_.checkpoint_activations = o.checkpoint_activations;
    if (cp_ > 1) {
        fo_.incoming_state = dist::context_parallel_state_fn(cp_split_, *cp_comm_);
        fo_.pos0 = cp_split_.offsets[size_t(cp_rank_)];
    }
    tokens_per_step_ = o.batch * o.grad_accum * o.seq_len * dp_world_;  // global
}

void Trainer::resume() {
    const TrainOptions& o = o_;
    // rank 0 reads the checkpoint (other machines need not see the run folder) and
    // sends weights, optimizer state and position to every rank
    std::string last, state_json;
    std::unique_ptr<nn::AdamW> gathered;  // ZeRO-1: the whole state, before each rank keeps its blocks
    nn::AdamW* opt_full = dp_->full_optimizer();
    if (!opt_full) opt_full = (gathered = std::make_unique<nn::AdamW>(model_->named_parameters(), ao_)).get();
    collectively_([&] {
        if (!lead_) return;
        last = nn::latest_checkpoint(o.out);
        RN_CHECK(!last.empty(), "train --resume: no checkpoint in ", o.out);
        nn::Checkpoint ck = nn::read_checkpoint(last);
        RN_CHECK(ck.config.arch == cfg_.arch && ck.config.d_model == cfg_.d_model &&
                     ck.config.n_layers == cfg_.n_layers && ck.config.vocab_size == cfg_.vocab_size,
                 "train --resume: ", last, " holds a ", ck.config.arch, " ", ck.config.preset, " model (d ",
                 ck.config.d_model, ", vocab ", ck.config.vocab_size, "), not the requested ", cfg_.arch, " ",
                 o.preset, " (d ", cfg_.d_model, ", vocab ", cfg_.vocab_size, ")");
        nn::load_into(ck, *model_, opt_full);
        state_json = train_state_json(ck.train);
    });
    if (mpi_) {
        mpi_->broadcast_bytes(state_json, 0);
        dp_->broadcast_parameters();
        dp_->broadcast_optimizer(*opt_full);
    }
    if (gathered) dp_->scatter_optimizer(*gathered);
    gathered.reset();
    st_ = train_state_from_json(state_json);
    collectively_([&] { loader_->set_state(loader_state_from_json(st_.data_state_json)); });
    if (lead_) {
        last_saved_ = last;
        std::printf("resumed from %s at step %lld\n", last.c_str(), (long long)st_.step);
        pin_gemms();
        // keep the log of the steps before the checkpoint, drop any after it
        std::ifstream in(log_path_);
        std::string line, kept;
        while (std::getline(in, line)) {
            auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_discarded() || j.value("step", int64_t(1) << 62) > st_.step) continue;
            kept += line + "\n";
            // a skipped step's loss is a string ("nan"); logs of older versions may hold null
            if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
            if (j.contains("loss") && j["loss"].is_number())
                train_curve_.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
            if (j.contains("val_loss") && j["val_loss"].is_number())
                val_curve_.emplace_back(j["step"].get<int64_t>(), j["val_loss"].get<double>());
        }
        std::ofstream(log_path_) << kept;
    }
}

void Trainer::start_fresh() {
    namespace fs = std::filesystem;
    if (!lead_) return;
    if (o_.overwrite) {  // everything is checked by now: only a run that can start replaces the old one
        std::vector<std::string> old = run_files(o_.out);
        for (const auto& f : old) fs::remove(f);
        if (!old.empty())
            std::printf("--overwrite: removed %zu files of the previous run in %s\n", old.size(), o_.out.c_str());
    }
    std::ofstream(log_path_, std::ios::trunc);
}

void Trainer::announce() {
    const TrainOptions& o = o_;
    if (!lead_) return;
    std::printf("retnet train: %s %s preset, %.2fM parameters, vocab %d, %s %s, batch %lld×%lld tokens (accum %lld), "
                "%lld steps\n",
                cfg_.arch.c_str(), o.preset.c_str(), double(model_->num_parameters()) / 1e6, tok_->vocab_size(), dev_.str().c_str(),
                o.dtype.c_str(), (long long)o.batch, (long long)o.seq_len, (long long)o.grad_accum,
                (long long)o.steps);
    if (mpi_)
        std::printf("data parallel: %d ranks (%s), %zu gradient buckets of ≤ %.3g MiB, ZeRO-%d, global batch %lld "
                    "sequences\n",
                    li_.world, comm_->backend().c_str(), dp_->num_buckets(), o.bucket_mb, dp_->zero(),
                    (long long)(o.batch * o.grad_accum * dp_world_));
    if (cp_ > 1)
        std::printf("context parallel: %lld ranks per sequence (%lld tokens each, the state passed between them), "
                    "%lld data-parallel group%s\n",
                    (long long)cp_, (long long)(o.seq_len / cp_), (long long)dp_world_, dp_world_ == 1 ? "" : "s");
    std::fflush(stdout);
}

// ---------------------------------------------------------------- the loop

int Trainer::run() {
    if (o_.resume) resume();
    else start_fresh();
    if (lead_) log_.open(log_path_, std::ios::app);
    announce();

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
    t0_ = std::chrono::steady_clock::now();
    wall_before_ = st_.wall_seconds;
    start_step_ = st_.step;
    last_val_ = NAN;
    comm_total_ = 0;
    while (st_.step < o_.steps && !stop_) report(train_step());
    if (stop_) return interrupted();
    return finish();
}

Trainer::StepStats Trainer::train_step() {
    const TrainOptions& o = o_;
    auto step_t0 = std::chrono::steady_clock::now();
    Batch b = loader_->next();
    double loss_sum = 0;
    for (int64_t m = 0; m < o.grad_accum; ++m) {
        Tensor in = b.inputs.narrow(0, m * o.batch, o.batch), tg = b.targets.narrow(0, m * o.batch, o.batch);
        if (cp_ > 1) {  // this rank's part of every row (the group's ranks hold the same rows)
            const int64_t off = cp_split_.offsets[size_t(cp_rank_)], len = cp_split_.lengths[size_t(cp_rank_)];
            in = in.narrow(1, off, len), tg = tg.narrow(1, off, len);
        }
        in = in.contiguous().to(dev_), tg = tg.contiguous().to(dev_);
        Tensor loss = model_->loss(in, tg, fo_);  // the logits a block of rows at a time
        if (o.grad_accum > 1) loss = loss / double(o.grad_accum);
        dp_->begin_backward(m == o.grad_accum - 1);  // one reduction per optimizer step
        loss.backward();
        loss_sum += loss.item();
    }
    dp_->finish_gradient_sync();
    double gnorm = dp_->clip_grad_norm(o.clip);  // global: the same on every rank
    bool bad = !std::isfinite(loss_sum) || !std::isfinite(gnorm);
    stop_ = g_stop != 0;
    if (mpi_) {
        // the global loss; a non-finite value on any rank skips the step on every rank;
        // Ctrl-C on any rank stops every rank after the same step
        Tensor t = from_vector<double>({loss_sum, double(g_stop != 0), bad ? 1.0 : 0.0}, {3});
        mpi_->all_reduce(t);
        auto v = t.to_vector<double>();
        loss_sum = v[0] / double(li_.world);
        stop_ = v[1] > 0;
        bad = v[2] > 0 || !std::isfinite(loss_sum);
    }
    double lr = sched_.at(st_.step);
    if (bad) {
        ++bad_in_a_row_, ++skipped_;  // no update: the weights and moments stay as they were
    } else {
        bad_in_a_row_ = 0;
        dp_->step(lr);
    }
    model_->zero_grad();
    st_.step += 1;
    st_.tokens += tokens_per_step_;
    StepStats s;
    s.loss = loss_sum;
    s.grad_norm = gnorm;
    s.lr = lr;
    s.bad = bad;
    s.step_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_t0).count();
    s.comm_s = dp_->take_comm_seconds();
    return s;
}

double Trainer::evaluate(int64_t batches) {
    return eval_loss(*model_, val_shard_, o_, fo_, dev_, mpi_.get(), batches, dp_rank_, dp_world_,
                     cp_ > 1 ? &cp_split_ : nullptr, cp_rank_);
}

void Trainer::report(const StepStats& s) {
    const TrainOptions& o = o_;
    const double loss_sum = s.loss, gnorm = s.grad_norm, lr = s.lr, step_s = s.step_s, comm_s = s.comm_s;
    const bool bad = s.bad;
    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - t0_).count();
    comm_total_ += comm_s;
    st_.wall_seconds = wall_before_ + elapsed;
    double tps = double((st_.step - start_step_) * tokens_per_step_) / std::max(elapsed, 1e-9);
    double eta = double(o.steps - st_.step) * elapsed / double(std::max<int64_t>(st_.step - start_step_, 1));
    nlohmann::json rec = {{"step", st_.step}, {"loss", json_number(loss_sum)}, {"lr", lr},
                          {"grad_norm", json_number(gnorm)}, {"tokens", st_.tokens}, {"tokens_per_s", tps},
                          {"elapsed_s", st_.wall_seconds}};
    if (bad) rec["skipped"] = true, rec["bad_steps_in_a_row"] = bad_in_a_row_;
    else train_curve_.emplace_back(st_.step, loss_sum);
    bool do_eval = st_.step % o.eval_interval == 0 || st_.step == o.steps;
    if (do_eval) {
        last_val_ = evaluate(o.eval_batches);
        rec["val_loss"] = json_number(last_val_);
        rec["val_ppl"] = json_number(std::exp(last_val_));
        if (std::isfinite(last_val_)) val_curve_.emplace_back(st_.step, last_val_);
    }
    const bool print = st_.step % o.log_interval == 0 || st_.step == 1 || do_eval || bad;
    if (dev_.is_cuda()) rec["peak_mem_mib"] = peak_mib();  // this rank's (rank 0 in a job)
    std::vector<double> mem_per_rank;
    if (mpi_) {
        rec["world"] = li_.world;
        rec["comm_wait_s"] = comm_s;
        rec["step_s"] = step_s;
        rec["comm_wait_frac"] = comm_s / std::max(step_s, 1e-9);
        if (print) {  // every rank takes part: the condition is the same everywhere
            mem_per_rank = mpi_->all_gather_scalar(peak_mib());
            rec["peak_mem_mib_per_rank"] = mem_per_rank;
        }
    }
    if (lead_) {
        log_ << rec.dump() << "\n";
        log_.flush();
    }
    if (print && lead_) {
        std::string mem;
        if (mpi_) {
            auto [lo_m, hi_m] = std::minmax_element(mem_per_rank.begin(), mem_per_rank.end());
            char b2[96];
            std::snprintf(b2, sizeof b2, "  mem/rank %.0f–%.0f MiB  comm wait %.0f%%", *lo_m, *hi_m,
                          100.0 * comm_s / std::max(step_s, 1e-9));
            mem = b2;
        } else if (dev_.is_cuda()) {
            auto ms = cuda::memory_stats(dev_.index);
            mem = "  mem " + std::to_string(ms.peak_allocated >> 20) + " MiB";
        }
        if (bad)
            std::printf("step %5lld/%lld  SKIPPED: loss %s, grad norm %s: not finite; no update (%lld in a row, "
                        "--max-bad-steps %lld)", (long long)st_.step, (long long)o.steps, fmt_num(loss_sum).c_str(),
                        fmt_num(gnorm).c_str(),
                        (long long)bad_in_a_row_, (long long)o.max_bad_steps);
        else
            std::printf("step %5lld/%lld  loss %.4f  lr %.2e  %8.0f tok/s  ETA %s%s", (long long)st_.step,
                        (long long)o.steps, loss_sum, lr, tps, fmt_duration(eta).c_str(), mem.c_str());
        if (do_eval && std::isfinite(last_val_)) std::printf("  | val loss %.4f  ppl %.1f", last_val_, std::exp(last_val_));
        else if (do_eval) std::printf("  | val loss %s", fmt_num(last_val_).c_str());
        std::printf("\n");
        std::fflush(stdout);
    }
    if (bad_in_a_row_ >= o.max_bad_steps) {
        // every rank counts the same steps (the verdict above is all-reduced)
        plot();
        collectively_.all_ranks_know = true;
        RN_FAIL("train: stopped at step ", st_.step, ": ", bad_in_a_row_, " steps in a row had a non-finite loss or "
                "gradient norm (the last: loss ", fmt_num(loss_sum), ", grad norm ", fmt_num(gnorm), "); they were "
                "skipped, so the weights are those of step ", st_.step - bad_in_a_row_, "; ", last_good(),
                ".\nHINT: the run diverged: lower --lr (", o.lr, ") or --clip, or allow more skipped steps with "
                "--max-bad-steps");
    }
    // a validation loss counts only when finite; a skipped step saves nothing (the next
    // good one will), so a checkpoint never follows a failed update
    bool best = do_eval && std::isfinite(last_val_) && last_val_ < st_.best_val_loss;
    if (best) st_.best_val_loss = last_val_;
    if (!bad && (st_.step % o.ckpt_interval == 0 || st_.step == o.steps || best)) save(best, do_eval ? last_val_ : NAN);
    if (print || st_.step == o.steps) plot();
}

// ---------------------------------------------------------------- checkpoints and reports

std::string Trainer::last_good() const {
    return last_saved_.empty() ? std::string("no checkpoint was written")
                               : "the last checkpoint is " + last_saved_ + " (--resume continues from it)";
}

// Saves this step's checkpoint, or returns "" and says why when its weights are not
// worth keeping: not finite, or giving a non-finite loss (a diverging update is only
// seen in the next step's loss, so the weights are tried on validation data first:
// `val_now` when this step evaluated, else one batch). Every rank holds the same
// weights and the loss is all-reduced, so every rank reaches the same verdict.
std::string Trainer::save(bool best_too, double val_now) {
    const bool finite_weights = weights_finite(*model_);
    if (finite_weights && !std::isfinite(val_now)) val_now = evaluate(1);
    if (!finite_weights || !std::isfinite(val_now)) {
        if (lead_)
            std::printf("step %lld: not saved: the weights %s (the last update diverged); %s\n", (long long)st_.step,
                        finite_weights ? "give a non-finite validation loss" : "are not finite", last_good().c_str());
        return "";
    }
    st_.data_state_json = loader_state_json(loader_->state());
    std::string path = nn::checkpoint_path(o_.out, st_.step);
    // ZeRO-1: the moments come together from every rank (a collective) before rank 0
    // writes the same file a single process would
    std::unique_ptr<nn::AdamW> gathered;
    const nn::AdamW* opt = dp_->full_optimizer();
    if (!opt) opt = (gathered = dp_->gather_optimizer()).get();
    last_saved_ = path;
    if (!lead_) return path;
    nn::save_checkpoint(path, *model_, opt, st_, tok_->serialized(), nlohmann::json{{"command", "retnet train"}}.dump());
    // best.h5 first, and never prune the file just written: an older run's higher steps
    // in the folder would otherwise push it out before it was promoted
    if (best_too) nn::promote_to_best(o_.out, path);
    nn::keep_last_k(o_.out, o_.keep_last, {path});
    save_gemm_picks();
    return path;
}

// Note [Tuned plans]: the algorithms picked so far, beside the checkpoints, so that a
// --resume runs the same ones. Losing them loses no training: the note says what it costs.
void Trainer::save_gemm_picks() {
    if (gemm_plans_path_.empty()) return;
    const cuda::GemmStats gs = cuda::gemm_stats();
    if (gs.tuned_shapes + gs.pinned_shapes == 0) return;
    try {
        const std::string picks = cuda::gemm_tuned_export();
        if (picks == gemm_plans_written_) return;
        write_text_atomic(gemm_plans_path_, picks);
        gemm_plans_written_ = picks;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "warning: the matrix-product picks were not saved (%s); a --resume from this run may "
                     "differ from it in the last bits\n", e.what());
    }
}

// On --resume: the previous process's picks, pinned (Note [Tuned plans])
void Trainer::pin_gemms() {
    namespace fs = std::filesystem;
    if (gemm_plans_path_.empty()) return;
    std::error_code ec;
    if (!fs::exists(gemm_plans_path_, ec)) {
        if (o_.gemm_tune > 1)
            std::printf("note: no %s in the run folder: the matrix products are timed again, so the resumed run may "
                        "differ in the last bits from one that had not stopped\n", gemm_plans_path_.c_str());
        return;
    }
    std::ifstream in(gemm_plans_path_, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    std::string why;
    int64_t n = 0;
    try {
        n = cuda::gemm_tuned_import(text.str(), gemm_plans_path_, &why);
    } catch (const std::exception& e) {
        why = e.what();
    }
    if (n > 0 || why.empty()) {
        std::printf("pinned %lld matrix-product algorithms from %s\n", (long long)n, gemm_plans_path_.c_str());
        gemm_plans_written_ = text.str();
    } else {
        std::printf("note: %s not used (%s): the products are timed again, so the resumed run may differ in the last "
                    "bits from one that had not stopped\n", gemm_plans_path_.c_str(), why.c_str());
    }
}

double Trainer::peak_mib() const {
    return dev_.is_cuda() ? double(cuda::memory_stats(dev_.index).peak_allocated) / double(1 << 20)
                          : double(cpu_memory_stats().peak) / double(1 << 20);
}

void Trainer::plot() {
    if (!lead_) return;
    LossPlot p{"retnet train: " + o_.arch + " " + o_.preset + " preset on " + o_.data, {}, {}};
    p.train = train_curve_;
    p.val = val_curve_;
    write_loss_svg(o_.out + "/loss.svg", p);
}

int Trainer::interrupted() {
    plot();
    std::string p = save(false, NAN);
    const int sig = g_stop ? int(g_stop) : SIGINT;  // another rank may have had the signal
    if (lead_)
        std::printf("interrupted (%s): %s; continue with --resume\n", sig == SIGTERM ? "SIGTERM" : "Ctrl-C",
                    p.empty() ? last_good().c_str() : ("saved " + p).c_str());
    return 128 + sig;
}

int Trainer::finish() {
    namespace fs = std::filesystem;
    const TrainOptions& o = o_;
    if (!lead_) return 0;
    if (mpi_)
        std::printf("data parallel: %d ranks, %.0f tokens/s in all, %.1f%% of the time waiting on communication\n",
                    li_.world, double((st_.step - start_step_) * tokens_per_step_) / std::max(st_.wall_seconds - wall_before_, 1e-9),
                    100.0 * comm_total_ / std::max(st_.wall_seconds - wall_before_, 1e-9));
    char best_text[32] = "none";
    if (std::isfinite(st_.best_val_loss)) std::snprintf(best_text, sizeof best_text, "%.4f", st_.best_val_loss);
    std::printf("done: %lld steps, final val loss %.4f (ppl %.1f), best %s\n", (long long)st_.step, last_val_,
                std::exp(last_val_), best_text);
    if (skipped_ > 0)
        std::printf("skipped %lld steps with a non-finite loss or gradient norm (no update)%s\n", (long long)skipped_,
                    bad_in_a_row_ > 0 ? "; the last step was one, so it wrote no checkpoint" : "");
    const std::string best_path = nn::best_checkpoint_path(o.out);
    std::error_code ec;
    std::printf("checkpoints: %s/ckpt_*.h5%s; log %s; loss curve %s/loss.svg\n", o.out.c_str(),
                fs::exists(best_path, ec) ? (" and " + best_path).c_str() : " (no best.h5: no finite validation loss)",
                log_path_.c_str(), o.out.c_str());
    if (o.sample_tokens > 0) {
        std::printf("sample (%s): %s\n", describe_sampling(o.sample).c_str(), sample_text(*model_, *tok_, o, dev_).c_str());
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace rn::tools
