// bench/bench_train.cpp — training throughput of a whole LM, RetNet or the Llama-style
// Transformer baseline (--arch): one optimizer step (forward, cross-entropy, backward, clip,
// AdamW with fp32 master weights, zero_grad) on random tokens, median over timed steps after
// warm-up. Prints tokens/s, MFU, peak memory and a phase breakdown, and writes JSON.
//
//   bench_train [--arch retnet|transformer] [--preset small] [--vocab 32000] [--batch 8]
//               [--seq 2048] [--mode chunkwise] [--chunk 64] [--dtype bf16] [--device cuda]
//               [--steps 10] [--warmup 3] [--json PATH] [--save-check DIR [--check-qk-scale S]]
//
// MFU, two ways, both over 989 TFLOP/s (H200 dense bf16 peak) and over 790 TFLOP/s (the bf16
// matmul rate measured on the card):
//   "6N"    = 6·N·tokens/s, N = all parameters, embeddings included (the formula the peers
//             in issue 5 use);
//   "model" = the FLOPs actually done, forward + backward = 3× forward:
//     RetNet:      3 · [2·tokens·(every projection + the head) + the retention FLOPs of the
//                  chunkwise form] (forward_flops_per_token below);
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
#include <filesystem>
#include <fstream>
#include <memory>

#include "autograd/grad_mode.h"
#include "bench/bench_util.h"
#include "core/random.h"
#include "core/tensor_math.h"
#include "cuda/memory.h"
#include "nn/checkpoint.h"
#include "nn/lm.h"
#include "nn/optim.h"
#include "ops/ops.h"

using namespace rn;

namespace {
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void sync(Device dev) {
#ifdef RN_HAVE_CUDA
    if (dev.is_cuda()) cudaDeviceSynchronize();
#endif
}

// forward matmul + retention FLOPs per token (the backward costs twice this)
double forward_flops_per_token(const nn::ModelConfig& c, int64_t T, int64_t chunk, bool chunkwise) {
    const double d = double(c.d_model), vd = double(c.value_dim), f = double(c.ffn_dim), H = double(c.n_heads);
    const double Dk = double(c.head_dim()), Dv = double(c.value_head_dim());
    double proj = 2 * d * d + 2 * d * vd + vd * d + 3 * d * f;  // q,k (d×d), v,g (d×vd), out, fc1, gate, fc2
    double ret;
    if (chunkwise) {
        double C = double(std::min(chunk, T));
        // per token: intra-chunk q·kᵀ and P·v over ~C/2 keys (counted in full, as the kernels
        // compute the whole C×C tile), the inter-chunk q·S and the state update kᵀ·v
        ret = H * (2 * C * Dk + 2 * C * Dv + 2 * Dk * Dv + 2 * Dk * Dv);
    } else {
        ret = H * (2 * double(T) * Dk + 2 * double(T) * Dv) / 2;  // causal: half the T×T work
    }
    return double(c.n_layers) * (2 * proj + ret) + 2 * d * double(c.vocab_size);
}

// the Transformer's forward FLOPs per token at sequence length T (see the top of the file)
double transformer_forward_flops_per_token(const nn::ModelConfig& c, int64_t T) {
    const double d = double(c.d_model), f = double(c.ffn_dim), H = double(c.n_heads), Hkv = double(c.kv_heads());
    const double D = double(c.head_dim()), L = double(c.n_layers), V = double(c.vocab_size);
    const double matmul_params = L * (2 * d * H * D + 2 * d * Hkv * D + 3 * d * f) + d * V;
    const double attn = 2 * 2 * double(T) * D * H * L / 2;  // q·kᵀ and p·v, causal half
    return 2 * matmul_params + attn;
}
}  // namespace

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

    const nn::ModelConfig cfg = nn::ModelConfig::from_preset(preset, V, arch);
    std::shared_ptr<nn::LanguageModel> model_ptr = nn::make_model(cfg, 1);
    nn::LanguageModel& model = *model_ptr;
    const bool transformer = cfg.is_transformer();
    model.to(dev);
    nn::AdamW opt(model.named_parameters(), nn::AdamWOptions{});
    const double n_params = double(model.num_parameters());

    Generator gen(7);
    Tensor batch = randint(0, V, {B, T + 1}, gen, DType::i64);
    Tensor inputs = batch.narrow(1, 0, T).contiguous().to(dev), targets = batch.narrow(1, 1, T).contiguous().to(dev);
    nn::ForwardOptions fo;
    fo.mode = retention_mode_from_name(mode);
    fo.chunk = chunk;
    fo.compute = compute;

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

    // one optimizer step; phase times need a sync between phases, so they are measured in
    // separate, synchronised steps after the unsynchronised timed ones
    double t_fwd = 0, t_bwd = 0, t_opt = 0, loss_v = 0;
    auto step = [&](bool phases) {
        double a = now_s();
        Tensor logits = model.forward(inputs, fo);
        Tensor loss = cross_entropy(logits.reshape({-1, V}), targets.reshape({-1}));
        if (phases) sync(dev);
        double b = now_s();
        loss.backward();
        if (phases) sync(dev);
        double c = now_s();
        // clipping folded into the update: the norm (fused kernels), then AdamW with g·scale
        const double scale = nn::clip_scale(nn::grad_norm(model.parameters()), 2.0);
        opt.step(3e-4, scale);
        model.zero_grad();
        loss_v = loss.item();  // syncs: the step is complete
        double e = now_s();
        if (phases) t_fwd = b - a, t_bwd = c - b, t_opt = e - c;
    };
    for (int64_t i = 0; i < warmup; ++i) step(false);
#ifdef RN_HAVE_CUDA
    if (dev.is_cuda()) cuda::reset_peak_stats(dev.index);
#endif
    std::vector<double> times;
    for (int64_t i = 0; i < steps; ++i) {
        double a = now_s();
        step(false);
        times.push_back(now_s() - a);
    }
    step(true);
    const double t = bench::median(times), tps = double(B * T) / t;
    double peak_gib = 0;
#ifdef RN_HAVE_CUDA
    if (dev.is_cuda()) peak_gib = double(cuda::memory_stats(dev.index).peak_allocated) / double(1 << 30);
#endif
    const double f6n = 6 * n_params * tps;
    const double fmodel = 3 * tps *
                          (transformer ? transformer_forward_flops_per_token(cfg, T)
                                       : forward_flops_per_token(cfg, T, chunk, fo.mode == RetentionMode::chunkwise));
    char shape[96];
    if (transformer)
        std::snprintf(shape, sizeof shape, "%lld heads (%lld kv) of %lld, ffn %lld", (long long)cfg.n_heads,
                      (long long)cfg.kv_heads(), (long long)cfg.head_dim(), (long long)cfg.ffn_dim);
    else
        std::snprintf(shape, sizeof shape, "%s chunk %lld", mode.c_str(), (long long)chunk);
    std::printf("bench_train: %s %s preset (%.1fM parameters), vocab %lld, B%lld T%lld, %s, %s on %s, "
                "fp32 master weights + AdamW\n",
                arch.c_str(), preset.c_str(), n_params / 1e6, (long long)V, (long long)B, (long long)T, shape,
                dtype_name(compute), dev.str().c_str());
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
                        {"step_ms_all", times}};
    bench::write_json(bench::json_path(argc, argv, "bench_train.json"), j);
    return 0;
}
