// tests/test_activation_checkpointing.cpp — autograd/checkpoint.h and
// ForwardOptions::checkpoint_activations: the same values and gradients as the plain
// graph (f64, to 1e-12: the recomputation runs the same kernels on the same numbers) for a
// function of an input and a parameter, for a whole RetNet (chunkwise and parallel) and a
// whole Transformer; less peak memory for a deeper model (measured by the CPU allocator's
// peak, the saving asserted); no graph in no-grad mode; dropout refused.
#include <boost/test/unit_test.hpp>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "core/random.h"
#include "core/storage.h"
#include "nn/lm.h"
#include "nn/model_config.h"
#include "ops/ops.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {

// logits and every parameter's gradient of sum(logits ⊙ w), with or without checkpointing
std::pair<Tensor, std::vector<Tensor>> run(nn::LanguageModel& m, const Tensor& tokens, const Tensor& w,
                                           nn::ForwardOptions fo, bool ckpt) {
    fo.checkpoint_activations = ckpt;
    m.zero_grad();
    Tensor l = m.forward(tokens, fo);
    sum(l * w).backward();
    std::vector<Tensor> g;
    for (auto& p : m.parameters()) g.push_back(p.grad().clone());
    return {l.detach(), g};
}

std::shared_ptr<nn::LanguageModel> model(const std::string& arch, int64_t layers, uint64_t seed) {
    nn::ModelConfig c = nn::ModelConfig::from_preset("tiny", 29, arch);
    c.n_layers = layers;
    auto m = nn::make_model(c, seed);
    m->to(DType::f64);
    NoGradGuard ng;  // weights of order one: the init's tiny logits would hide errors
    Generator g(seed + 1);
    for (auto& p : m->parameters()) p.copy_(uniform(p.shape(), -0.5, 0.5, g, DType::f64) + (p.dim() == 1 ? 1.0 : 0.0));
    return m;
}

}  // namespace

BOOST_AUTO_TEST_CASE(checkpoint_equals_the_plain_graph) {
    Generator g(1);
    Tensor W = randn({5, 5}, g, DType::f64).requires_grad_();
    Tensor x0 = randn({3, 5}, g, DType::f64);
    auto f = [W](const Tensor& x) { return tanh(matmul(x, W)) * x + matmul(x * x, W); };
    Tensor xa = x0.clone().requires_grad_(), xb = x0.clone().requires_grad_();
    Tensor ya = f(xa);
    sum(ya * ya).backward();
    Tensor gWa = W.grad().clone();
    W.zero_grad();
    Tensor yb = checkpoint(f, xb);
    BOOST_TEST(yb.requires_grad());
    sum(yb * yb).backward();
    BOOST_TEST(rel_err(yb.detach(), ya.detach()) < 1e-15);
    BOOST_TEST(rel_err(xb.grad(), xa.grad()) < 1e-14);
    BOOST_TEST(rel_err(W.grad(), gWa) < 1e-14);
    BOOST_TEST(max_abs_diff(W.grad(), zeros_like(W.grad())) > 1e-3);
    // an input that needs no gradient: the parameter still gets its own
    W.zero_grad();
    sum(checkpoint(f, x0)).backward();
    BOOST_TEST(W.grad().defined());
    // no graph in no-grad mode
    NoGradGuard ng;
    BOOST_TEST(!checkpoint(f, x0).requires_grad());
}

BOOST_AUTO_TEST_CASE(whole_models_give_the_same_values_and_gradients) {
    for (const std::string arch : {"retnet", "transformer"})
        for (RetentionMode mode : {RetentionMode::chunkwise, RetentionMode::parallel}) {
            if (arch == "transformer" && mode == RetentionMode::parallel) continue;
            BOOST_TEST_CONTEXT(arch << " " << retention_mode_name(mode)) {
                auto m = model(arch, 3, 4);
                Generator g(5);
                Tensor tokens = randint(0, 29, {2, 13}, g), w = randn({2, 13, 29}, g, DType::f64);
                nn::ForwardOptions fo;
                fo.compute = DType::f64;
                fo.mode = mode;
                fo.chunk = 4;
                auto [la, ga] = run(*m, tokens, w, fo, false);
                auto [lb, gb] = run(*m, tokens, w, fo, true);
                BOOST_TEST(rel_err(lb, la) < 1e-12);
                BOOST_REQUIRE(ga.size() == gb.size());
                for (size_t i = 0; i < ga.size(); ++i) {
                    BOOST_TEST(max_abs_diff(ga[i], zeros_like(ga[i])) > 0, "parameter " << i);
                    BOOST_TEST(rel_err(gb[i], ga[i]) < 1e-12, "parameter " << i);
                }
            }
        }
}

BOOST_AUTO_TEST_CASE(a_deeper_model_peaks_lower) {
    for (const std::string arch : {"retnet", "transformer"}) {
        BOOST_TEST_CONTEXT(arch) {
            nn::ModelConfig c = nn::ModelConfig::from_preset("tiny", 64, arch);
            c.n_layers = 8;
            auto m = nn::make_model(c, 3);
            Generator g(6);
            Tensor tokens = randint(0, 64, {4, 256}, g), w = randn({4, 256, 64}, g);
            nn::ForwardOptions fo;
            fo.chunk = 32;
            double peak[2];
            for (int ck = 0; ck < 2; ++ck) {
                m->zero_grad();
                const size_t before = cpu_memory_stats().allocated;
                reset_cpu_peak();
                fo.checkpoint_activations = ck == 1;
                sum(m->forward(tokens, fo) * w).backward();
                peak[ck] = double(cpu_memory_stats().peak - before);
            }
            BOOST_TEST_MESSAGE(arch << ": peak above the start " << peak[0] / (1 << 20) << " MiB plain, "
                                    << peak[1] / (1 << 20) << " MiB checkpointed");
            BOOST_TEST(peak[1] < 0.6 * peak[0], arch << ": " << peak[1] << " vs " << peak[0] << " bytes");
        }
    }
}

BOOST_AUTO_TEST_CASE(dropout_is_refused) {
    nn::ModelConfig c = nn::ModelConfig::from_preset("tiny", 29, "retnet");
    c.dropout = 0.1;
    auto m = nn::make_model(c, 1);
    Generator g(2);
    nn::ForwardOptions fo;
    fo.checkpoint_activations = true;
    BOOST_CHECK_EXCEPTION(m->forward(randint(0, 29, {1, 8}, g), fo), Error, [](const Error& e) {
        return std::string(e.what()).find("dropout 0") != std::string::npos;
    });
}
