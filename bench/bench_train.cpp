// bench/bench_train.cpp — training throughput of a whole LM, RetNet or the Llama-style
// Transformer baseline (--arch): one optimizer step (forward, cross-entropy, backward, clip,
// AdamW with fp32 master weights, zero_grad) on random tokens, median over timed steps after
// warm-up. Prints tokens/s, MFU, peak memory and a phase breakdown, and writes JSON.
//
//   bench_train [--arch retnet|transformer] [--preset small] [--vocab 32000] [--batch 8]
//               [--seq 2048] [--mode chunkwise] [--chunk 64] [--dtype bf16] [--device cuda]
//               [--steps 10] [--warmup 3] [--json PATH] [--save-check DIR [--check-qk-scale S]]
//               [--checkpoint-activations] [--profile] [--gemm-tune 8]
//
// --gemm-tune N: as `retnet train --gemm-tune` (default 8 there too): each bf16 product
// shape times N cuBLASLt algorithms on its first call (a warm-up step) and keeps the fastest;
// 1 takes the heuristic's first. RN_GEMM_TUNE, when set, wins over the default.
//
// --profile: after the timed steps, one more step between cudaProfilerStart/Stop, for
// `ncu --profile-from-start off` (every kernel of one optimizer step).
//
// MFU, two ways, both over 989 TFLOP/s (H200 dense bf16 peak) and over 790 TFLOP/s (the bf16
// matmul rate measured on the card):
//   "6N"    = 6·N·tokens/s, N = all parameters, embeddings included (the formula the peers
//             in issue 5 use);
//   "model" = the FLOPs actually done, forward + backward = 3× forward:
//     RetNet:      3 · [2·tokens·(every projection + the head) + the retention FLOPs of the
//                  chunkwise form] (bench/train_util.h);
//     Transformer: 6·P·tokens + 2·2·B·T²·D·H·L/2·3, with P the matmul parameters (per layer
//                  q, o: d·H·D; k, v: d·Hkv·D; gate, up, down: d·f; plus the head d·V — not
//                  the embedding, a lookup) and the second term the attention products q·kᵀ
//                  and p·v (2 FLOPs a multiply-add) over the causal half of the T×T scores.
//                  The same formulas are in bench/torch_transformer.py.
//
// --save-check DIR writes DIR/model.h5 (weights), DIR/batch.bin (int32 [B, T+1] tokens),
// DIR/ours.json (our loss on that batch in f32 and in the bench dtype) and
// DIR/logits_f32.bin (a few rows of our f32 logits), which bench/torch_retnet.py (RetNet)
// or bench/torch_transformer.py --check (Transformer) reads to check our model against an
// independent PyTorch one. --steps 0: the check only.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "autograd/grad_mode.h"
#include "bench/bench_util.h"
#include "bench/train_util.h"
#include "core/random.h"
#include "core/tensor_math.h"
#include "cuda/matmul.h"
#include "cuda/memory.h"
#include "nn/checkpoint.h"
#include "nn/lm.h"
#include "nn/optim.h"
#include "ops/ops.h"

using namespace rn;

int main(int argc, char** argv) {
    auto arg = [&](const char* f, const char* d) { return bench::arg_value(argc, argv, f, d); };
    const std::string preset = arg("--preset", "small"), mode = arg("--mode", "chunkwise"),
                      arch = arg("--arch", "retnet");
    const int64_t V = std::stoll(arg("--vocab", "32000")), B = std::stoll(arg("--batch", "8")),
                  T = std::stoll(arg("--seq", "2048")), chunk = std::stoll(arg("--chunk", "64")),
                  steps = std::stoll(arg("--steps", "10")), warmup = std::stoll(arg("--warmup", "3"));
    Device dev = Device::parse(arg("--device", cuda::device_count() > 0 ? "cuda" : "cpu"));
    DType compute = dtype_from_name(arg("--dtype", dev.is_cuda() ? "bf16" : "f32"));
    const std::string check_dir = arg("--save-check", "");
    // --gemm-tune wins; else RN_GEMM_TUNE, read by cuda/matmul.cpp itself; else 8, as training
    const std::string gemm_tune = arg("--gemm-tune", std::getenv("RN_GEMM_TUNE") ? "" : "8");
    if (dev.is_cuda() && !gemm_tune.empty()) cuda::set_gemm_tune(std::clamp(std::stoi(gemm_tune), 1, 16));

    const nn::ModelConfig cfg = nn::ModelConfig::from_preset(preset, V, arch);
    std::shared_ptr<nn::LanguageModel> model_ptr = nn::make_model(cfg, 1);
    nn::LanguageModel& model = *model_ptr;
    const bool transformer = cfg.is_transformer();
    model.to(dev);
    const double n_params = double(model.num_parameters());

    Generator gen(7);
    Tensor batch = randint(0, V, {B, T + 1}, gen, DType::i64);
    Tensor inputs = batch.narrow(1, 0, T).contiguous().to(dev), targets = batch.narrow(1, 1, T).contiguous().to(dev);
    nn::ForwardOptions fo;
    fo.mode = retention_mode_from_name(mode);
    fo.chunk = chunk;
    fo.compute = compute;
    fo.checkpoint_activations = bench::has_flag(argc, argv, "--checkpoint-activations");

    if (!check_dir.empty()) {  // our loss on this batch, before any update, for bench/torch_{retnet,transformer}.py
        // At the init's scale (std 0.02) attention is close to uniform, and the output
        // hardly depends on RoPE or masking details. For the check the query and key
        // projections are scaled by --check-qk-scale (default 4 for the Transformer: scores
        // ×16, attention far from uniform; 1 for RetNet, as before), then scaled back: a
        // power of two, so exactly.
        const double qk_scale = std::stod(arg("--check-qk-scale", transformer ? "4" : "1"));
        int qk_exp = 0;
        RN_CHECK(qk_scale > 0 && std::frexp(qk_scale, &qk_exp) == 0.5, "bench_train: --check-qk-scale must be a power of "
                 "two (so that scaling back is exact), got ", qk_scale);
        auto scale_qk = [&](double f) {
            NoGradGuard ng;
            auto ends = [](const std::string& n, const std::string& e) {
                return n.size() >= e.size() && n.compare(n.size() - e.size(), e.size(), e) == 0;
            };
            for (auto& [name, p] : model.named_parameters())
                if (ends(name, ".q_proj.weight") || ends(name, ".k_proj.weight")) p.copy_(p * f);
        };
        if (qk_scale != 1) scale_qk(qk_scale);
        std::filesystem::create_directories(check_dir);
        nn::save_checkpoint(check_dir + "/model.h5", model, nullptr, nn::TrainState{});
        Tensor b32 = batch.to(DType::i32);
        std::ofstream(check_dir + "/batch.bin", std::ios::binary)
            .write(static_cast<const char*>(b32.raw_data()), std::streamsize(b32.numel() * 4));
        NoGradGuard ng;
        nlohmann::json j = {{"arch", arch}, {"batch", B}, {"seq", T}};
        if (!transformer) j["mode"] = mode, j["chunk"] = chunk;
        std::vector<DType> dts{DType::f32};
        if (compute != DType::f32) dts.push_back(compute);
        for (DType dt : dts) {
            nn::ForwardOptions f2 = fo;
            f2.compute = dt;
            Tensor lg = model.forward(inputs, f2);
            j[std::string("loss_") + dtype_name(dt)] = cross_entropy(lg.reshape({-1, V}), targets.reshape({-1})).item();
            if (dt != DType::f32) continue;
            // A few rows of the f32 logits as well (the last sequence at positions 0, 1, T/2,
            // T − 1; f32 [P, V] in logits_f32.bin): the loss on random targets averages the
            // logits' errors away, the logits themselves show them
            std::vector<int64_t> at;
            for (int64_t t : {int64_t(0), int64_t(1), T / 2, T - 1})
                if (t < T && std::find(at.begin(), at.end(), t) == at.end()) at.push_back(t);
            std::ofstream lf(check_dir + "/logits_f32.bin", std::ios::binary);
            for (int64_t t : at) {
                Tensor row = lg.narrow(0, B - 1, 1).narrow(1, t, 1).contiguous().to(Device::cpu());
                lf.write(static_cast<const char*>(row.raw_data()), std::streamsize(V * 4));
            }
            j["logits_row"] = B - 1;
            j["logits_positions"] = at;
        }
        if (!transformer) {  // RetNet: the parallel form in f32 as well: the paradigms must agree
            nn::ForwardOptions fp = fo;
            fp.compute = DType::f32;
            fp.mode = RetentionMode::parallel;
            j["loss_f32_parallel"] =
                cross_entropy(model.forward(inputs, fp).reshape({-1, V}), targets.reshape({-1})).item();
        }
        j["check_qk_scale"] = qk_scale;
        bench::write_json(check_dir + "/ours.json", j);
        if (qk_scale != 1) scale_qk(1 / qk_scale);
        if (steps == 0) return 0;  // --steps 0: the check only
    }

    const bench::TrainStepTimes r = bench::time_train_steps(model, B, T, fo, steps, warmup, dev,
                                                                  bench::has_flag(argc, argv, "--profile"));
    const double t = r.step_s, tps = r.tokens_per_s, peak_gib = r.peak_gib;
    const double t_fwd = r.fwd_s, t_bwd = r.bwd_s, t_opt = r.opt_s, loss_v = r.loss;
    const std::vector<double>& times = r.steps_s;
    const double f6n = 6 * n_params * tps;
    const double fmodel = 3 * tps * bench::forward_flops_per_token(cfg, T, fo);
    char shape[96];
    if (transformer)
        std::snprintf(shape, sizeof shape, "%lld heads (%lld kv) of %lld, ffn %lld", (long long)cfg.n_heads,
                      (long long)cfg.kv_heads(), (long long)cfg.head_dim(), (long long)cfg.ffn_dim);
    else
        std::snprintf(shape, sizeof shape, "%s chunk %lld", mode.c_str(), (long long)chunk);
    std::printf("bench_train: %s %s preset (%.1fM parameters), vocab %lld, B%lld T%lld, %s, %s on %s, "
                "fp32 master weights + AdamW, GEMM tuning %d\n",
                arch.c_str(), preset.c_str(), n_params / 1e6, (long long)V, (long long)B, (long long)T, shape,
                dtype_name(compute), dev.str().c_str(), dev.is_cuda() ? cuda::gemm_tune() : 1);
    std::printf("| step ms | tokens/s | MFU 6N (989) | MFU 6N (790) | MFU model (989) | peak GiB | fwd ms | bwd ms | "
                "clip+opt ms | loss |\n|---|---|---|---|---|---|---|---|---|---|\n");
    std::printf("| %.2f | %.0f | %.1f%% | %.1f%% | %.1f%% | %.2f | %.2f | %.2f | %.2f | %.4f |\n", t * 1e3, tps,
                100 * f6n / 989e12, 100 * f6n / 790e12, 100 * fmodel / 989e12, peak_gib, t_fwd * 1e3, t_bwd * 1e3,
                t_opt * 1e3, loss_v);
    nlohmann::json j = {{"arch", arch}, {"preset", preset}, {"params", n_params}, {"vocab", V}, {"batch", B}, {"seq", T},
                        {"mode", mode}, {"chunk", chunk}, {"dtype", dtype_name(compute)}, {"device", dev.str()},
                        {"step_ms", t * 1e3}, {"tokens_per_s", tps}, {"mfu_6n_989", f6n / 989e12},
                        {"mfu_6n_790", f6n / 790e12}, {"mfu_model_989", fmodel / 989e12},
                        {"mfu_model_790", fmodel / 790e12}, {"peak_gib", peak_gib},
                        {"fwd_ms", t_fwd * 1e3}, {"bwd_ms", t_bwd * 1e3}, {"opt_ms", t_opt * 1e3},
                        {"step_ms_all", times}, {"checkpoint_activations", fo.checkpoint_activations},
                        {"gemm_tune", dev.is_cuda() ? cuda::gemm_tune() : 1}};
    bench::write_json(bench::json_path(argc, argv, "bench_train.json"), j);
    return 0;
}
