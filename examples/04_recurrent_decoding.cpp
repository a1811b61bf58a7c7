// examples/04_recurrent_decoding.cpp — the duality that makes RetNet cheap to run.
//
// The same weights can read a text in two ways (docs/model.md §1):
//   parallel:   all tokens at once, like a Transformer — O(T²) work, what training uses
//   recurrent:  one token at a time through a fixed-size state S ← γS + kᵀv — O(1) per token
// This program takes a tiny random model and a random text and shows that
//   1. the parallel forward's logits equal token-by-token recurrent decoding,
//   2. a chunkwise prefill hands its state to the recurrent path (prefill, then decode),
//   3. the state's size stays the same however long the text grows, and so does the
//      time per token — unlike a Transformer's KV cache, which grows with every token.
// Run: ./build/example_04_recurrent_decoding        (CPU, a few seconds)
#include <chrono>
#include <cmath>
#include <cstdio>

#include "nn/retnet.h"
#include "ops/ops.h"

using namespace rn;

namespace {
double max_abs_diff(const Tensor& a, const Tensor& b) {
    auto x = a.to_vector<float>(), y = b.to_vector<float>();
    double m = 0;
    for (size_t i = 0; i < x.size(); ++i) m = std::max(m, double(std::abs(x[i] - y[i])));
    return m;
}
size_t bytes_of(const std::vector<Tensor>& ts) {
    size_t n = 0;
    for (const Tensor& t : ts) n += t.nbytes();
    return n;
}
}  // namespace

int main() {
    NoGradGuard no_grad;  // inference only: no graph is recorded
    nn::ModelConfig cfg = nn::ModelConfig::from_preset("tiny", 512);
    nn::RetNetLM model(cfg, /*seed=*/1);
    std::printf("tiny RetNet: %lld layers, %lld heads, d=%lld, %lld parameters\n", (long long)cfg.n_layers,
                (long long)cfg.n_heads, (long long)cfg.d_model, (long long)model.num_parameters());

    // a random "text" of T token ids
    const int64_t T = 1024;
    Generator gen(7);
    Tensor tokens = randint(0, cfg.vocab_size, {1, T}, gen);
    auto ids = tokens.to_vector<int64_t>();

    // ---- 1. parallel: every position's logits from one call
    nn::ForwardOptions par;
    par.mode = RetentionMode::parallel;
    Tensor parallel = model.forward(tokens, par);  // [1, T, V]

    // ---- 2. recurrent: the same logits one token at a time. The state per layer is
    // [B, H, Dk, Dv]; step() updates it in place and returns this token's logits.
    std::vector<Tensor> state = model.init_states(1, Device::cpu(), DType::f32);
    std::printf("\n%8s  %26s  %12s\n", "context", "max |parallel - recurrent|", "state bytes");
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) {
        Tensor logits = model.step(full({1}, double(ids[size_t(t)]), DType::i64), state,
                                   full({1}, double(t), DType::i64), DType::f32);  // [1, V]
        double d = max_abs_diff(logits, parallel.select(1, t));
        worst = std::max(worst, d);
        if (((t + 1) & t) == 0 && t >= 15)  // at 16, 32, ..., 1024 tokens of context
            std::printf("%8lld  %26.2e  %12zu\n", (long long)(t + 1), d, bytes_of(state));
    }
    std::printf("worst difference over all %lld positions: %.2e (float rounding)\n", (long long)T, worst);

    // ---- 3. prefill then decode: a chunkwise forward over the first half returns the
    // state at its last token, and recurrent steps continue from there with absolute
    // positions — exactly what `retnet generate` does with a prompt.
    const int64_t half = T / 2;
    std::vector<Tensor> prefilled;
    nn::ForwardOptions pre;
    pre.mode = RetentionMode::chunkwise;
    pre.chunk = 64;
    pre.states_out = &prefilled;
    model.forward(tokens.narrow(1, 0, half), pre);
    double worst_pd = 0;
    for (int64_t t = half; t < T; ++t) {
        Tensor logits = model.step(full({1}, double(ids[size_t(t)]), DType::i64), prefilled,
                                   full({1}, double(t), DType::i64), DType::f32);
        worst_pd = std::max(worst_pd, max_abs_diff(logits, parallel.select(1, t)));
    }
    std::printf("chunkwise prefill of %lld tokens, then %lld recurrent steps: max difference %.2e\n",
                (long long)half, (long long)(T - half), worst_pd);

    // ---- 4. keep going far past T: the state, and the time per token, stay the same
    std::printf("\n%8s  %12s  %12s\n", "context", "state bytes", "us/token");
    int64_t pos = T;
    for (int64_t until : {4096, 16384}) {
        auto t1 = std::chrono::steady_clock::now();
        const int64_t n = until - pos;
        for (; pos < until; ++pos)
            model.step(full({1}, double(ids[size_t(pos % T)]), DType::i64), state, full({1}, double(pos), DType::i64),
                       DType::f32);
        double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t1).count();
        std::printf("%8lld  %12zu  %12.1f\n", (long long)until, bytes_of(state), us / double(n));
    }
    const bool ok = worst < 1e-3 && worst_pd < 1e-3;
    std::printf("\n%s\n", ok ? "parallel and recurrent agree; the state never grew."
                             : "MISMATCH: parallel and recurrent disagree");
    return ok ? 0 : 1;
}
