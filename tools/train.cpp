// tools/train.cpp — the training loop: data → model → AdamW, with warm-up + decay, global
// norm clipping, gradient accumulation, validation, a progress line, a JSONL log of every
// step, an SVG loss curve, atomic HDF5 checkpoints (keep the last K and the best), exact
// resume, and Ctrl-C that saves before exiting. Under mpirun the same loop is data
// parallel (dist/): each rank trains on its rows of every global batch, gradients are
// averaged in buckets that overlap backward, optionally with ZeRO-1; rank 0 prints, logs
// and writes the same checkpoints a single process would.
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
#include "tools/shards.h"
#include "tools/tokenizer.h"

namespace rn::tools {

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_sigint(int) { g_stop = 1; }

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

// loss curves as a small standalone SVG (train every step, validation at intervals)
void write_loss_svg(const std::string& path, const std::vector<std::pair<int64_t, double>>& train,
                    const std::vector<std::pair<int64_t, double>>& val) {
    if (train.empty()) return;
    double lo = 1e30, hi = -1e30;
    int64_t smax = 1;
    for (auto* series : {&train, &val})
        for (auto& [s, l] : *series) {
            lo = std::min(lo, l), hi = std::max(hi, l), smax = std::max(smax, s);
        }
    if (hi - lo < 1e-9) hi = lo + 1;
    const double W = 720, H = 400, L = 60, R = 20, T = 20, B = 40;
    auto X = [&](int64_t s) { return L + (W - L - R) * double(s) / double(smax); };
    auto Y = [&](double l) { return T + (H - T - B) * (hi - l) / (hi - lo); };
    std::ofstream f(path);
    f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' font-size='12'>\n"
      << "<rect width='100%' height='100%' fill='white'/>\n"
      << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n"
      << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << H - B << "' stroke='black'/>\n";
    for (int i = 0; i <= 4; ++i) {
        double l = lo + (hi - lo) * i / 4;
        f << "<text x='5' y='" << Y(l) + 4 << "'>" << std::to_string(l).substr(0, 5) << "</text>\n";
    }
    f << "<text x='" << W / 2 << "' y='" << H - 8 << "'>step (of " << smax << ")</text>\n";
    auto poly = [&](const std::vector<std::pair<int64_t, double>>& s, const char* color) {
        f << "<polyline fill='none' stroke='" << color << "' stroke-width='1.5' points='";
        for (auto& [x, y] : s) f << X(x) << "," << Y(y) << " ";
        f << "'/>\n";
    };
    poly(train, "#1f77b4");
    poly(val, "#d62728");
    f << "<text x='" << W - 170 << "' y='" << T + 12 << "' fill='#1f77b4'>train loss</text>\n"
      << "<text x='" << W - 170 << "' y='" << T + 28 << "' fill='#d62728'>validation loss</text>\n</svg>\n";
}

// Validation loss over the first eval_batches global batches of the validation shard;
// each rank takes its own rows and the ranks average (every rank gets the same number).
double eval_loss(const nn::RetNetLM& model, const std::shared_ptr<const ShardReader>& val, const TrainOptions& o,
                 const nn::ForwardOptions& fo, Device dev, dist::MpiComm* mpi) {
    NoGradGuard no_grad;
    DataLoaderOptions lo;
    lo.batch_size = o.batch;
    lo.seq_len = o.seq_len;
    lo.shuffle = false;
    lo.rank = mpi ? mpi->rank() : 0;
    lo.world = mpi ? mpi->size() : 1;
    DataLoader loader(val, lo);
    double total = 0;
    int64_t n = std::min<int64_t>(o.eval_batches, std::max<int64_t>(1, int64_t(loader.batches_per_epoch())));
    for (int64_t i = 0; i < n; ++i) {
        Batch b = loader.next();
        Tensor logits = model.forward(b.inputs.to(dev), fo);
        total += cross_entropy(logits.reshape({-1, logits.size(-1)}), b.targets.to(dev).reshape({-1})).item();
    }
    if (mpi) total = mpi->all_reduce_scalar(total) / double(mpi->size());
    return total / double(n);
}


std::string greedy_sample(const nn::RetNetLM& model, const Tokenizer& tok, const std::string& prompt, int64_t n,
                          Device dev, DType compute) {
    NoGradGuard no_grad;
    std::vector<int32_t> ids = tok.encode(prompt);
    ids.insert(ids.begin(), tok.bos_id());
    auto states = model.init_states(1, dev, compute);
    Tensor logits;
    std::vector<int32_t> out = ids;
    for (size_t t = 0; t < ids.size(); ++t)  // token-by-token prefill through the recurrent form
        logits = model.step(full({1}, double(ids[t]), DType::i64, dev), states, full({1}, double(t), DType::i64, dev), compute);
    for (int64_t i = 0; i < n; ++i) {
        auto l = logits.to(DType::f32).to_vector<float>();
        int32_t next = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
        out.push_back(next);
        logits = model.step(full({1}, double(next), DType::i64, dev), states,
                            full({1}, double(out.size() - 1), DType::i64, dev), compute);
    }
    return tok.decode(std::vector<int32_t>(out.begin() + 1, out.end()));
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
            {"resume", o.resume}, {"zero", o.zero}, {"bucket_mb", o.bucket_mb}, {"world", world},
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
    RN_CHECK(o.steps > 0 && o.batch > 0 && o.seq_len > 0 && o.grad_accum > 0, "train: steps, batch, seq_len and "
             "grad_accum must be positive");
    RN_CHECK(o.zero == 0 || o.zero == 1, "train: --zero takes 0 (off) or 1 (shard the optimizer state), got ", o.zero);
    RN_CHECK(o.bucket_mb > 0, "train: --bucket-mb must be positive, got ", o.bucket_mb);
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
    if (lead) {
        fs::create_directories(o.out);
        nn::remove_stale_temp_files(o.out);
    }

    Tokenizer tok = Tokenizer::load(tok_path);
    auto train_shard = std::make_shared<const ShardReader>(train_path);
    auto val_shard = std::make_shared<const ShardReader>(val_path);
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
            std::printf("resumed from %s at step %lld\n", last.c_str(), (long long)st.step);
            // keep the log of the steps before the checkpoint, drop any after it
            std::ifstream in(log_path);
            std::string line, kept;
            while (std::getline(in, line)) {
                auto j = nlohmann::json::parse(line, nullptr, false);
                if (j.is_discarded() || j.value("step", int64_t(1) << 62) > st.step) continue;
                kept += line + "\n";
                if (j.contains("loss")) train_curve.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
                if (j.contains("val_loss")) val_curve.emplace_back(j["step"].get<int64_t>(), j["val_loss"].get<double>());
            }
            std::ofstream(log_path) << kept;
        }
    } else if (lead) {
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

    auto save = [&](bool best_too) {
        st.data_state_json = loader_state_json(loader.state());
        std::string path = nn::checkpoint_path(o.out, st.step);
        // ZeRO-1: the moments come together from every rank (a collective) before rank 0
        // writes the same file a single process would
        std::unique_ptr<nn::AdamW> gathered;
        const nn::AdamW* opt = dp.full_optimizer();
        if (!opt) opt = (gathered = dp.gather_optimizer()).get();
        if (!lead) return path;
        nn::save_checkpoint(path, model, opt, st, tok.serialized(), nlohmann::json{{"command", "retnet train"}}.dump());
        nn::keep_last_k(o.out, o.keep_last);
        if (best_too) nn::promote_to_best(o.out, path);
        return path;
    };
    auto peak_mib = [&] {
        return dev.is_cuda() ? double(cuda::memory_stats(dev.index).peak_allocated) / double(1 << 20)
                             : double(cpu_memory_stats().peak) / double(1 << 20);
    };

    std::signal(SIGINT, on_sigint);
    auto t0 = std::chrono::steady_clock::now();
    double wall_before = st.wall_seconds;
    int64_t start_step = st.step;
    double last_val = NAN, comm_total = 0;
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
        double gnorm = dp.clip_grad_norm(o.clip);
        double lr = sched.at(st.step);
        dp.step(lr);
        model.zero_grad();
        stop = g_stop;
        if (mpi) {
            // the global loss, and Ctrl-C on any rank stops every rank after the same step
            Tensor t = from_vector<double>({loss_sum, double(g_stop)}, {2});
            mpi->all_reduce(t);
            auto v = t.to_vector<double>();
            loss_sum = v[0] / double(li.world);
            stop = v[1] > 0;
        }
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
        nlohmann::json rec = {{"step", st.step}, {"loss", loss_sum}, {"lr", lr}, {"grad_norm", gnorm},
                              {"tokens", st.tokens}, {"tokens_per_s", tps}, {"elapsed_s", st.wall_seconds}};
        train_curve.emplace_back(st.step, loss_sum);
        bool do_eval = st.step % o.eval_interval == 0 || st.step == o.steps;
        if (do_eval) {
            last_val = eval_loss(model, val_shard, o, fo, dev, mpi.get());
            rec["val_loss"] = last_val;
            rec["val_ppl"] = std::exp(last_val);
            val_curve.emplace_back(st.step, last_val);
        }
        const bool print = st.step % o.log_interval == 0 || st.step == 1 || do_eval;
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
            std::printf("step %5lld/%lld  loss %.4f  lr %.2e  %8.0f tok/s  ETA %s%s", (long long)st.step,
                        (long long)o.steps, loss_sum, lr, tps, fmt_duration(eta).c_str(), mem.c_str());
            if (do_eval) std::printf("  | val loss %.4f  ppl %.1f", last_val, std::exp(last_val));
            std::printf("\n");
            std::fflush(stdout);
        }
        bool best = do_eval && last_val < st.best_val_loss;
        if (best) st.best_val_loss = last_val;
        if (st.step % o.ckpt_interval == 0 || st.step == o.steps || best) save(best);
        if (lead) write_loss_svg(o.out + "/loss.svg", train_curve, val_curve);
    }
    std::signal(SIGINT, SIG_DFL);
    if (stop) {
        std::string p = save(false);
        if (lead) std::printf("interrupted: saved %s; continue with --resume\n", p.c_str());
        return 130;
    }
    if (!lead) return 0;
    if (mpi)
        std::printf("data parallel: %d ranks, %.0f tokens/s in all, %.1f%% of the time waiting on communication\n",
                    li.world, double((st.step - start_step) * tokens_per_step) / std::max(st.wall_seconds - wall_before, 1e-9),
                    100.0 * comm_total / std::max(st.wall_seconds - wall_before, 1e-9));
    std::printf("done: %lld steps, final val loss %.4f (ppl %.1f), best %.4f\n", (long long)st.step, last_val,
                std::exp(last_val), st.best_val_loss);
    std::printf("checkpoints: %s/ckpt_*.h5 and %s; log %s; loss curve %s/loss.svg\n", o.out.c_str(),
                nn::best_checkpoint_path(o.out).c_str(), log_path.c_str(), o.out.c_str());
    if (o.sample_tokens > 0)
        std::printf("sample (greedy): %s\n", greedy_sample(model, tok, o.sample_prompt, o.sample_tokens, dev, compute).c_str());
    return 0;
}
}  // namespace

int run_train(const TrainOptions& o) {
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
