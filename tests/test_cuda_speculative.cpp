// tests/test_cuda_speculative.cpp — decoding paths on CUDA against the CPU, for both RetNet
// variants (torchscale's default, and flash-linear-attention's: half-split RoPE, no λ,
// a weighted group norm): forward logits, prefill then eager and graph-replayed recurrent
// steps (f32 tight, bf16 stated); speculative decoding's verify + rollback on the GPU
// (logits = the forward's, the state = a prefill of the kept tokens); and the engine on the
// GPU in f32: greedy text with n-gram and draft speculation = plain decoding's (bf16: the
// agreement is reported, since verify's chunkwise rounding differs from a step's).
#include <boost/test/unit_test.hpp>

#include "cuda/graph.h"
#include "cuda_test_util.h"
#include "nn/retnet.h"
#include "serving/engine.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);

nn::ModelConfig variant(bool fla) {
    nn::ModelConfig c = nn::ModelConfig::from_preset("tiny", 97);
    c.d_model = 64;
    c.n_heads = 2;
    c.value_dim = 96;
    c.ffn_dim = 80;
    c.n_layers = 2;
    c.chunk = 8;
    if (fla) {
        c.rotary = "rope_half";
        c.retention_lambda = false;
        c.group_norm_affine = true;
    }
    return c;
}

std::shared_ptr<nn::LanguageModel> model_on(const nn::ModelConfig& c, uint64_t seed, Device d) {
    auto m = nn::make_model(c, seed);
    m->to(d);
    return m;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_speculative)

BOOST_AUTO_TEST_CASE(both_variants_decode_on_the_gpu_as_on_the_cpu) {
    for (bool fla : {false, true}) {
        BOOST_TEST_CONTEXT((fla ? "fla variant" : "torchscale variant")) {
            const nn::ModelConfig c = variant(fla);
            auto cpu_m = model_on(c, 5, Device::cpu()), m = model_on(c, 5, gpu);
            Generator g(31);
            const int64_t B = 3, N = 30, P = 17;
            Tensor tokens = randint(0, c.vocab_size, {B, N}, g);
            NoGradGuard ng;
            const Tensor want = cpu_m->forward(tokens);  // [B,N,V] f32, chunkwise
            check_close(m->forward(tokens.to(gpu)), want, 1e-5, "forward f32");
            for (DType dt : {DType::f32, DType::bf16}) {
                BOOST_TEST_CONTEXT(dt) {
                    const double tol = dt == DType::f32 ? 1e-5 : 5e-2;  // bf16 activations through two layers
                    std::vector<Tensor> st = m->init_states(B, gpu, dt, 64);
                    for (int64_t b = 0; b < B; ++b) {
                        std::vector<Tensor> slot;
                        for (const Tensor& t : st) slot.push_back(t.narrow(0, b, 1));
                        Tensor lp = m->prefill(tokens.narrow(0, b, 1).narrow(1, 0, P - b).to(gpu), 0, slot, dt, c.chunk);
                        check_close(lp.to(DType::f32), want.narrow(0, b, 1).narrow(1, 0, P - b), tol, "prefill");
                    }
                    Tensor tok_d = zeros({B}, DType::i64, gpu), pos_d = zeros({B}, DType::i64, gpu), out;
                    auto feed = [&](int64_t s) {
                        std::vector<int64_t> tk, ps;
                        for (int64_t b = 0; b < B; ++b) {
                            ps.push_back(P - b + s);
                            tk.push_back(int64_t(tokens.narrow(0, b, 1).narrow(1, P - b + s, 1).item()));
                        }
                        copy_nograd(tok_d, from_vector<int64_t>(tk, {B}));
                        copy_nograd(pos_d, from_vector<int64_t>(ps, {B}));
                        return ps;
                    };
                    auto check_rows = [&](const Tensor& l, const std::vector<int64_t>& ps, const char* what) {
                        for (int64_t b = 0; b < B; ++b)
                            check_close(l.narrow(0, b, 1).to(DType::f32), want.narrow(0, b, 1).select(1, ps[size_t(b)]),
                                        tol, what);
                    };
                    for (int64_t s = 0; s < 4; ++s) {  // eager steps (the first makes the λ tables)
                        auto ps = feed(s);
                        check_rows(m->step(tok_d, st, pos_d, dt), ps, "step");
                    }
                    cuda::Graph graph(0);
                    std::string why;
                    feed(4);
                    BOOST_REQUIRE_MESSAGE(graph.capture([&] { out = m->step(tok_d, st, pos_d, dt); }, &why), why);
                    // capture records without running: replay from the same inputs, then onwards
                    for (int64_t s = 4; s < 10; ++s) {
                        auto ps = feed(s);
                        graph.replay();
                        check_rows(out, ps, "replayed step");
                    }
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(verify_and_rollback_on_the_gpu) {
    for (bool fla : {false, true}) {
        BOOST_TEST_CONTEXT((fla ? "fla variant" : "torchscale variant")) {
            const nn::ModelConfig c = variant(fla);
            auto cpu_m = model_on(c, 6, Device::cpu()), m = model_on(c, 6, gpu);
            Generator g(12);
            Tensor tokens = randint(0, c.vocab_size, {1, 19}, g);
            NoGradGuard ng;
            const Tensor want = cpu_m->forward(tokens);
            for (int64_t keep = 1; keep <= 5; ++keep) {
                std::vector<Tensor> a = m->init_states(1, gpu, DType::f32, 64), b = m->init_states(1, gpu, DType::f32, 64);
                m->prefill(tokens.narrow(1, 0, 13).to(gpu), 0, a, DType::f32, c.chunk);
                m->prefill(tokens.narrow(1, 0, 13).to(gpu), 0, b, DType::f32, c.chunk);
                std::vector<Tensor> trail;
                Tensor lv = m->verify(tokens.narrow(1, 13, 5).to(gpu), 13, a, DType::f32, trail, c.chunk);
                check_close(lv, want.narrow(1, 13, 5), 1e-5, "verify logits");
                m->rollback(a, trail, keep);
                m->prefill(tokens.narrow(1, 13, keep).to(gpu), 13, b, DType::f32, c.chunk);
                for (size_t l = 0; l < a.size(); ++l) check_close(a[l], b[l].to(Device::cpu()), 1e-5, "rolled-back state");
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(the_engine_speculates_on_the_gpu) {
    const nn::ModelConfig c = variant(true);
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 6; ++i) {
        std::vector<int32_t> p;
        for (int t = 0; t < 6 + 2 * i; ++t) p.push_back(int32_t((7 * t + 13 * i) % c.vocab_size));
        p.insert(p.end(), p.begin(), p.end());  // repetitive: n-gram lookup has matches
        prompts.push_back(p);
    }
    auto run = [&](const std::string& dtype, int mode) {
        tools::EngineOptions o;
        o.max_slots = 4;
        o.max_context = 96;
        o.device = "cuda";
        o.dtype = dtype;
        if (mode == 1) o.speculative.ngram = true;
        if (mode == 2) o.speculative.draft = nn::make_model(variant(false), 77);
        tools::Engine e(nn::make_model(c, 9), o);
        tools::SamplingParams sp;
        sp.temperature = 0;
        sp.ignore_eos = true;
        std::map<int64_t, std::vector<int32_t>> out;
        size_t next = 0;
        while (next < prompts.size() || !e.idle()) {
            while (next < prompts.size() && e.free_slots() > 0) e.add(prompts[next++], sp, 20);
            for (const auto& ev : e.step())
                if (ev.token >= 0) out[ev.seq].push_back(ev.token);
        }
        return std::make_pair(out, e.speculative_stats());
    };
    for (const std::string dtype : {"f32", "bf16"}) {
        const auto plain = run(dtype, 0).first;
        for (int mode : {1, 2}) {
            const auto [got, st] = run(dtype, mode);
            int64_t same = 0, all = 0;
            for (const auto& [id, t] : plain) {
                for (size_t i = 0; i < t.size(); ++i) same += i < got.at(id).size() && got.at(id)[i] == t[i];
                all += int64_t(t.size());
            }
            BOOST_TEST_MESSAGE(dtype << (mode == 1 ? " n-gram" : " draft") << ": " << same << "/" << all
                                     << " tokens as plain decoding; " << st.accepted << "/" << st.proposed << " kept");
            BOOST_TEST(st.rounds > 0);
            if (dtype == "f32") BOOST_TEST(got == plain);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
