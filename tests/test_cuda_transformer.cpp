// tests/test_cuda_transformer.cpp — the Transformer baseline's training forms on CUDA:
// ForwardOptions::standard_attention (the textbook attention bench_paper training measures,
// scores materialised by matmul, masked_fill and softmax on the device) against the model
// on the CPU and against the flash kernel on the GPU — logits and every parameter's
// gradient, f32 and bf16, MHA and GQA, T = 77 (not a multiple of a tile). Tolerances as in
// test_cuda_attention (f32 1e-5 values, 1e-4 gradients; bf16 2e-2 / 5e-2).
#include <boost/test/unit_test.hpp>

#include <vector>

#include "cuda_test_util.h"
#include "nn/lm.h"
#include "nn/transformer.h"

using namespace rn;
using namespace rn::test;

BOOST_AUTO_TEST_SUITE(cuda_transformer)

// ForwardOptions::standard_attention on the GPU (the scores materialised: matmul,
// masked_fill, softmax; bench_paper training's "standard Transformer") against the model
// on the CPU, and against the flash kernel on the GPU: logits and every gradient, f32 and
// bf16, MHA and GQA, T not a multiple of a tile
BOOST_AUTO_TEST_CASE(standard_attention_model_matches_cpu_and_flash) {
    for (int64_t kvh : {int64_t(4), int64_t(2)}) {
        nn::ModelConfig c;
        c.arch = "transformer";
        c.vocab_size = 37;
        c.d_model = 256;
        c.n_heads = 4;  // D = 64: the tensor-core flash kernels
        c.n_kv_heads = kvh;
        c.value_dim = 256;
        c.ffn_dim = 96;
        c.n_layers = 2;
        Generator g(51 + uint64_t(kvh));
        Tensor tokens = randint(0, c.vocab_size, {2, 77}, g), targets = randint(0, c.vocab_size, {2, 77}, g);
        auto run = [&](Device dev, DType dt, bool standard, std::vector<Tensor>& grads) {
            nn::TransformerLM m(c, 5);
            m.to(dev);
            nn::ForwardOptions o;
            o.compute = dt;
            o.standard_attention = standard;
            Tensor l = m.forward(tokens.to(dev), o);
            cross_entropy(l.reshape({-1, c.vocab_size}).to(DType::f32), targets.to(dev).reshape({-1})).backward();
            for (auto& p : m.parameters()) grads.push_back(p.grad().to(Device::cpu()).to(DType::f64));
            return l.to(Device::cpu()).to(DType::f64);
        };
        std::vector<Tensor> g_cpu, g_std, g_flash, g_bf;
        Tensor want = run(Device::cpu(), DType::f32, true, g_cpu);
        Tensor got = run(Device::cuda(0), DType::f32, true, g_std);
        Tensor flash = run(Device::cuda(0), DType::f32, false, g_flash);
        Tensor bf = run(Device::cuda(0), DType::bf16, true, g_bf);
        BOOST_TEST(rel_err(got, want) < 1e-5);
        BOOST_TEST(rel_err(flash, got) < 1e-5);
        BOOST_TEST(rel_err(bf, want) < 2e-2);
        for (size_t i = 0; i < g_cpu.size(); ++i) {
            BOOST_TEST(max_abs_diff(g_cpu[i], zeros_like(g_cpu[i])) > 0);
            BOOST_TEST(rel_err(g_std[i], g_cpu[i]) < 1e-4, "parameter " << i << " kv heads " << kvh);
            BOOST_TEST(rel_err(g_flash[i], g_std[i]) < 1e-4, "parameter " << i << " kv heads " << kvh);
            BOOST_TEST(rel_err(g_bf[i], g_cpu[i]) < 5e-2, "parameter " << i << " kv heads " << kvh);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
