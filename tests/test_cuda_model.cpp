// tests/test_cuda_model.cpp — the whole RetNet LM on CUDA against the same model on the CPU:
// logits and every parameter's gradient in f32 (tight) and with bf16 activations (stated
// tolerance); the three paradigms and the prefill → recurrent hand-over on the GPU; an
// optimizer step moves CPU and CUDA weights the same way.
#include <boost/test/unit_test.hpp>

#include "cuda_test_util.h"
#include "nn/optim.h"
#include "nn/retnet.h"
#include "ops/ops.h"

using namespace rn;
using namespace rn::test;
using namespace rn::nn;

namespace {
// Dk = 32, Dv = 48 (multiples of 16, Dk ≠ Dv), 3 layers, vocab not a power of two
ModelConfig cfg_small() {
    ModelConfig c = ModelConfig::from_preset("tiny", 203);
    c.d_model = 64;
    c.n_heads = 2;
    c.value_dim = 96;
    c.ffn_dim = 80;
    c.n_layers = 3;
    return c;
}

struct Pair {
    RetNetLM cpu, gpu;
    explicit Pair(const ModelConfig& c) : cpu(c, 11), gpu(c, 11) { gpu.to(Device::cuda(0)); }
};

// loss and gradients of one model on a batch; returns the loss
double loss_and_grads(RetNetLM& m, const Tensor& in, const Tensor& tg, ForwardOptions fo) {
    m.zero_grad();
    Device d = m.parameters()[0].device();
    Tensor logits = m.forward(in.to(d), fo);
    Tensor loss = cross_entropy(logits.reshape({-1, logits.size(-1)}).to(DType::f32), tg.to(d).reshape({-1}));
    loss.backward();
    return loss.item();
}
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_model)

BOOST_AUTO_TEST_CASE(logits_and_gradients_match_the_cpu) {
    ModelConfig c = cfg_small();
    Pair p(c);
    Generator g(21);
    const int64_t B = 2, T = 70;  // not a multiple of the chunk
    Tensor batch = randint(0, c.vocab_size, {B, T + 1}, g);
    Tensor in = batch.narrow(1, 0, T).contiguous(), tg = batch.narrow(1, 1, T).contiguous();
    for (RetentionMode mode : {RetentionMode::chunkwise, RetentionMode::parallel}) {
        ForwardOptions fo;
        fo.mode = mode;
        fo.chunk = 32;
        double lc = loss_and_grads(p.cpu, in, tg, fo);
        double lg = loss_and_grads(p.gpu, in, tg, fo);
        BOOST_TEST(std::abs(lc - lg) < 1e-5 * std::abs(lc));
        auto pc = p.cpu.named_parameters(), pg = p.gpu.named_parameters();
        for (size_t i = 0; i < pc.size(); ++i) {
            BOOST_TEST_CONTEXT(pc[i].first) {
                BOOST_TEST(pc[i].second.grad().defined());
                BOOST_TEST(rel_err(pg[i].second.grad().to(Device::cpu()), pc[i].second.grad()) < 1e-4);
            }
        }
        // bf16 activations, fp32 master weights: gradients in fp32, within bf16 rounding (8-bit
        // mantissa, through 3 layers and the loss: a few % relative on the smallest, e.g. k_proj)
        fo.compute = DType::bf16;
        double lb = loss_and_grads(p.gpu, in, tg, fo);
        BOOST_TEST(std::abs(lb - lc) < 2e-2 * std::abs(lc));
        for (size_t i = 0; i < pc.size(); ++i) {
            BOOST_TEST_CONTEXT(pc[i].first) {
                BOOST_TEST(pg[i].second.grad().dtype() == DType::f32);
                BOOST_TEST(rel_err(pg[i].second.grad().to(Device::cpu()), pc[i].second.grad()) < 0.1);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(paradigms_and_decoding_agree_on_the_gpu) {
    ModelConfig c = cfg_small();
    RetNetLM m(c, 5);
    Device dev = Device::cuda(0);
    m.to(dev);
    Generator g(8);
    const int64_t B = 3, T = 45;
    Tensor tokens = randint(0, c.vocab_size, {B, T}, g).to(dev);
    NoGradGuard ng;
    ForwardOptions par;
    par.mode = RetentionMode::parallel;
    Tensor lp = m.forward(tokens, par).to(Device::cpu());
    ForwardOptions chk;
    chk.chunk = 16;
    BOOST_TEST(rel_err(m.forward(tokens, chk).to(Device::cpu()), lp) < 1e-5);
    // prefill 20 tokens chunkwise, then decode the rest one token at a time
    std::vector<Tensor> st;
    ForwardOptions pre = chk;
    pre.states_out = &st;
    Tensor lpre = m.forward(tokens.narrow(1, 0, 20), pre).to(Device::cpu());
    std::vector<Tensor> parts = {lpre};
    for (int64_t t = 20; t < T; ++t)
        parts.push_back(m.step(tokens.select(1, t).contiguous(), st, full({B}, double(t), DType::i64, dev), DType::f32)
                            .to(Device::cpu())
                            .unsqueeze(1));
    BOOST_TEST(rel_err(concat(parts, 1), lp) < 1e-5);
}

BOOST_AUTO_TEST_CASE(an_adamw_step_moves_cpu_and_gpu_weights_alike) {
    ModelConfig c = cfg_small();
    Pair p(c);
    AdamW oc(p.cpu.named_parameters(), AdamWOptions{}), og(p.gpu.named_parameters(), AdamWOptions{});
    Generator g(3);
    Tensor batch = randint(0, c.vocab_size, {2, 33}, g);
    Tensor in = batch.narrow(1, 0, 32).contiguous(), tg = batch.narrow(1, 1, 32).contiguous();
    for (int s = 0; s < 3; ++s) {
        loss_and_grads(p.cpu, in, tg, ForwardOptions{});
        loss_and_grads(p.gpu, in, tg, ForwardOptions{});
        double nc = clip_grad_norm(p.cpu.parameters(), 1.0), ng = clip_grad_norm(p.gpu.parameters(), 1.0);
        BOOST_TEST(std::abs(nc - ng) < 1e-4 * nc);
        oc.step(1e-2);
        og.step(1e-2);
    }
    // Adam divides by √v: where a gradient element is near zero its fp32 rounding differences
    // become O(lr) differences in the update, so the weights agree to ~1e-3 relative, not 1e-6
    auto pc = p.cpu.named_parameters(), pg = p.gpu.named_parameters();
    for (size_t i = 0; i < pc.size(); ++i)
        BOOST_TEST_CONTEXT(pc[i].first) { BOOST_TEST(rel_err(pg[i].second.to(Device::cpu()), pc[i].second) < 1e-3); }
}

BOOST_AUTO_TEST_SUITE_END()
