// tools/train.cpp — the training loop: data → model → AdamW, with warm-up + decay, global
// norm clipping, gradient accumulation, validation, a progress line, a JSONL log of every
// step, an SVG loss curve, atomic HDF5 checkpoints (keep the last K and the best), exact
// resume, and Ctrl-C that saves before exiting.
#include "tools/train.h"

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuda/device.h"
#include "cuda/memory.h"
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

double eval_loss(const nn::RetNetLM& model, const std::shared_ptr<const ShardReader>& val, const TrainOptions& o,
                 const nn::ForwardOptions& fo, Device dev) {
    NoGradGuard no_grad;
    DataLoaderOptions lo;
    lo.batch_size = o.batch;
    lo.seq_len = o.seq_len;
    lo.shuffle = false;
    DataLoader loader(val, lo);
    double total = 0;
    int64_t n = std::min<int64_t>(o.eval_batches, std::max<int64_t>(1, int64_t(loader.batches_per_epoch())));
    for (int64_t i = 0; i < n; ++i) {
        Batch b = loader.next();
        Tensor logits = model.forward(b.inputs.to(dev), fo);
        total += cross_entropy(logits.reshape({-1, logits.size(-1)}), b.targets.to(dev).reshape({-1})).item();
    }
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
}  // namespace

int run_train(const TrainOptions& o) {
    namespace fs = std::filesystem;
    RN_CHECK(o.steps > 0 && o.batch > 0 && o.seq_len > 0 && o.grad_accum > 0, "train: steps, batch, seq_len and "
             "grad_accum must be positive");
    const std::string tok_path = o.data + "/tokenizer.model", train_path = o.data + "/train.bin",
                      val_path = o.data + "/val.bin";
    for (const auto& p : {tok_path, train_path, val_path})
        RN_CHECK(fs::exists(p), "train: missing ", p, ". HINT: run `retnet prepare --out ", o.data, "` first");
    Device dev = Device::parse(o.device);
    DType compute = dtype_from_name(o.dtype);
    RN_CHECK(compute == DType::f32 || (compute == DType::bf16 && dev.is_cuda()),
             "train: dtype must be f32, or bf16 on CUDA; got ", o.dtype, " on ", dev);
    if (dev.is_cuda()) RN_CHECK(dev.index < cuda::device_count(), "train: ", dev, " requested but ", cuda::device_count(),
                                " CUDA devices are present");
    fs::create_directories(o.out);
    nn::remove_stale_temp_files(o.out);

    Tokenizer tok = Tokenizer::load(tok_path);
    auto train_shard = std::make_shared<const ShardReader>(train_path);
    auto val_shard = std::make_shared<const ShardReader>(val_path);
    nn::RetNetConfig cfg = nn::RetNetConfig::from_preset(o.preset, tok.vocab_size());
    cfg.mode = o.mode;
    cfg.chunk = o.chunk;
    nn::RetNetLM model(cfg, o.seed);
    model.to(dev);
    nn::AdamWOptions ao;
    ao.weight_decay = o.weight_decay;
    nn::AdamW opt(model.named_parameters(), ao);
    nn::LRSchedule sched;
    sched.kind = o.schedule;
    sched.peak = o.lr;
    sched.min_lr = o.min_lr;
    sched.warmup = o.warmup;
    sched.total = o.steps;

    DataLoaderOptions lo;
    lo.batch_size = o.batch * o.grad_accum;  // one optimizer step's rows, split into micro-batches below
    lo.seq_len = o.seq_len;
    lo.seed = o.seed;
    DataLoader loader(train_shard, lo);

    nn::TrainState st;
    const std::string log_path = o.out + "/train_log.jsonl";
    std::vector<std::pair<int64_t, double>> train_curve, val_curve;
    if (o.resume) {
        std::string last = nn::latest_checkpoint(o.out);
        RN_CHECK(!last.empty(), "train --resume: no checkpoint in ", o.out);
        nn::Checkpoint ck = nn::read_checkpoint(last);
        RN_CHECK(ck.config.d_model == cfg.d_model && ck.config.n_layers == cfg.n_layers && ck.config.vocab_size == cfg.vocab_size,
                 "train --resume: ", last, " holds a ", ck.config.preset, " model (d ", ck.config.d_model, ", vocab ",
                 ck.config.vocab_size, "), not the requested ", o.preset, " (d ", cfg.d_model, ", vocab ", cfg.vocab_size, ")");
        nn::load_into(ck, model, &opt);
        st = ck.train;
        loader.set_state(loader_state_from_json(st.data_state_json));
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
    } else {
        std::ofstream(log_path, std::ios::trunc);
    }
    std::ofstream log(log_path, std::ios::app);

    nn::ForwardOptions fo;
    fo.mode = retention_mode_from_name(o.mode);
    fo.chunk = o.chunk;
    fo.compute = compute;
    const int64_t tokens_per_step = o.batch * o.grad_accum * o.seq_len;
    std::printf("retnet train: %s preset, %.2fM parameters, vocab %d, %s %s, batch %lld×%lld tokens (accum %lld), %lld steps\n",
                o.preset.c_str(), double(model.num_parameters()) / 1e6, tok.vocab_size(), dev.str().c_str(),
                o.dtype.c_str(), (long long)o.batch, (long long)o.seq_len, (long long)o.grad_accum, (long long)o.steps);

    auto save = [&](bool best_too) {
        st.data_state_json = loader_state_json(loader.state());
        std::string path = nn::checkpoint_path(o.out, st.step);
        nn::save_checkpoint(path, model, &opt, st, tok.serialized(), nlohmann::json{{"command", "retnet train"}}.dump());
        nn::keep_last_k(o.out, o.keep_last);
        if (best_too) nn::promote_to_best(o.out, path);
        return path;
    };

    std::signal(SIGINT, on_sigint);
    auto t0 = std::chrono::steady_clock::now();
    double wall_before = st.wall_seconds;
    int64_t start_step = st.step;
    double last_val = NAN;
    while (st.step < o.steps && !g_stop) {
        Batch b = loader.next();
        double loss_sum = 0;
        for (int64_t m = 0; m < o.grad_accum; ++m) {
            Tensor in = b.inputs.narrow(0, m * o.batch, o.batch).to(dev);
            Tensor tg = b.targets.narrow(0, m * o.batch, o.batch).contiguous().to(dev);
            Tensor logits = model.forward(in, fo);
            Tensor loss = cross_entropy(logits.reshape({-1, logits.size(-1)}), tg.reshape({-1}));
            if (o.grad_accum > 1) loss = loss / double(o.grad_accum);
            loss.backward();
            loss_sum += loss.item();
        }
        double gnorm = nn::clip_grad_norm(model.parameters(), o.clip);
        double lr = sched.at(st.step);
        opt.step(lr);
        model.zero_grad();
        st.step += 1;
        st.tokens += tokens_per_step;
        double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        st.wall_seconds = wall_before + elapsed;
        double tps = double((st.step - start_step) * tokens_per_step) / std::max(elapsed, 1e-9);
        double eta = double(o.steps - st.step) * elapsed / double(std::max<int64_t>(st.step - start_step, 1));
        nlohmann::json rec = {{"step", st.step}, {"loss", loss_sum}, {"lr", lr}, {"grad_norm", gnorm},
                              {"tokens", st.tokens}, {"tokens_per_s", tps}, {"elapsed_s", st.wall_seconds}};
        train_curve.emplace_back(st.step, loss_sum);
        bool do_eval = st.step % o.eval_interval == 0 || st.step == o.steps;
        if (do_eval) {
            last_val = eval_loss(model, val_shard, o, fo, dev);
            rec["val_loss"] = last_val;
            rec["val_ppl"] = std::exp(last_val);
            val_curve.emplace_back(st.step, last_val);
        }
        log << rec.dump() << "\n";
        log.flush();
        if (st.step % o.log_interval == 0 || st.step == 1 || do_eval) {
            std::string mem;
            if (dev.is_cuda()) {
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
        write_loss_svg(o.out + "/loss.svg", train_curve, val_curve);
    }
    std::signal(SIGINT, SIG_DFL);
    if (g_stop) {
        std::string p = save(false);
        std::printf("interrupted: saved %s; continue with --resume\n", p.c_str());
        return 130;
    }
    std::printf("done: %lld steps, final val loss %.4f (ppl %.1f), best %.4f\n", (long long)st.step, last_val,
                std::exp(last_val), st.best_val_loss);
    std::printf("checkpoints: %s/ckpt_*.h5 and %s; log %s; loss curve %s/loss.svg\n", o.out.c_str(),
                nn::best_checkpoint_path(o.out).c_str(), log_path.c_str(), o.out.c_str());
    if (o.sample_tokens > 0)
        std::printf("sample (greedy): %s\n", greedy_sample(model, tok, o.sample_prompt, o.sample_tokens, dev, compute).c_str());
    return 0;
}

}  // namespace rn::tools
