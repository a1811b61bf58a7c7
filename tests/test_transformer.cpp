// tests/test_transformer.cpp — the Transformer baseline and its RoPE op:
//   rope: values against a reference made of primitive ops, the half-split convention on a
//     hand-worked case, the relative-position property, f64 gradcheck, errors;
//   model: logits against an independent reference built here from primitive ops (matmul,
//     softmax with a causal mask, the RoPE reference), MHA and GQA; f64 gradcheck through
//     every parameter; decoding (prefill, then step() at different positions per sequence)
//     against one forward, f64 and f32; chunked prefill; copy_slot; fused decode projections;
//     parameter names (HF Llama's), counts (parameter_count, the presets within 2% of
//     RetNet's), config JSON, make_model.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <memory>

#include "nn/lm.h"
#include "nn/retnet.h"
#include "nn/transformer.h"
#include "ops/rotary.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;
using namespace rn::nn;

namespace {
// x [B,T,H,D] rotated by half-split RoPE at positions pos0[b] + t, from primitive ops
Tensor ref_rope(const Tensor& x, const std::vector<int64_t>& pos0, double theta) {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(3), half = D / 2;
    std::vector<double> c(size_t(B * T * half)), s(c.size());
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < half; ++i) {
                const double a = double(pos0[size_t(b)] + t) * std::pow(theta, -2.0 * double(i) / double(D));
                c[size_t((b * T + t) * half + i)] = std::cos(a);
                s[size_t((b * T + t) * half + i)] = std::sin(a);
            }
    Tensor C = from_vector<double>(c, {B, T, 1, half}).to(x.dtype());
    Tensor S = from_vector<double>(s, {B, T, 1, half}).to(x.dtype());
    Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
    return concat({x1 * C - x2 * S, x2 * C + x1 * S}, -1);
}

Tensor ref_rms(const Tensor& x, const Tensor& w, double eps) {
    return x * rsqrt(mean(x * x, {x.dim() - 1}, true) + eps) * w;
}

// the whole model from its parameters and primitive ops (no rope_rotate, no attention op)
Tensor ref_forward(const TransformerLM& m, const Tensor& tokens, int64_t pos0) {
    const ModelConfig& c = m.config();
    const int64_t B = tokens.size(0), T = tokens.size(1), Hq = c.n_heads, Hkv = c.kv_heads(), D = c.head_dim();
    const double eps = c.norm_eps;
    std::vector<double> mk(size_t(T * T));
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) mk[size_t(i * T + j)] = j <= i ? 0.0 : -INFINITY;
    Tensor mask = from_vector<double>(mk, {T, T});
    const std::vector<int64_t> pos(size_t(B), pos0);
    Tensor x = embedding(m.embed_tokens->weight, tokens);
    for (const auto& l : m.layers) {
        const auto& a = *l->self_attn;
        Tensor h = ref_rms(x, l->input_layernorm->weight, eps);
        Tensor q = ref_rope(matmul(h, a.q_proj->weight.t()).reshape({B, T, Hq, D}), pos, c.rope_theta).permute({0, 2, 1, 3});
        Tensor k = ref_rope(matmul(h, a.k_proj->weight.t()).reshape({B, T, Hkv, D}), pos, c.rope_theta).permute({0, 2, 1, 3});
        Tensor v = matmul(h, a.v_proj->weight.t()).reshape({B, T, Hkv, D}).permute({0, 2, 1, 3});
        std::vector<Tensor> heads;
        for (int64_t hq = 0; hq < Hq; ++hq) {
            const int64_t g = hq / (Hq / Hkv);
            Tensor s = matmul(q.narrow(1, hq, 1), k.narrow(1, g, 1).transpose(-1, -2)) * (1.0 / std::sqrt(double(D)));
            heads.push_back(matmul(softmax(s + mask, -1), v.narrow(1, g, 1)));  // [B,1,T,D]
        }
        Tensor o = concat(heads, 1).permute({0, 2, 1, 3}).reshape({B, T, Hq * D});
        x = x + matmul(o, a.o_proj->weight.t());
        Tensor h2 = ref_rms(x, l->post_attention_layernorm->weight, eps);
        const auto& f = *l->mlp;
        x = x + matmul(silu(matmul(h2, f.gate_proj->weight.t())) * matmul(h2, f.up_proj->weight.t()),
                       f.down_proj->weight.t());
    }
    return matmul(ref_rms(x, m.norm->weight, eps), m.lm_head->weight.t());
}

ModelConfig micro(int64_t kv_heads = 2) {
    ModelConfig c;
    c.arch = "transformer";
    c.vocab_size = 11;
    c.d_model = 16;
    c.n_heads = 4;  // D = 4
    c.n_kv_heads = kv_heads;
    c.value_dim = 16;
    c.ffn_dim = 24;
    c.n_layers = 2;
    c.rope_theta = 100.0;  // a small base: every pair turns visibly over a few positions
    return c;
}

ForwardOptions fwd(DType dt, int64_t pos0 = 0) {
    ForwardOptions o;
    o.compute = dt;
    o.pos0 = pos0;
    return o;
}

std::vector<Tensor> slot_of(const std::vector<Tensor>& states, int64_t s) {
    std::vector<Tensor> v;
    for (const Tensor& t : states) v.push_back(t.narrow(0, s, 1));
    return v;
}
std::vector<Tensor> first_rows(const std::vector<Tensor>& states, int64_t B) {
    std::vector<Tensor> v;
    for (const Tensor& t : states) v.push_back(t.narrow(0, 0, B));
    return v;
}
}  // namespace

// ================================================================ RoPE
BOOST_AUTO_TEST_SUITE(rope)

BOOST_AUTO_TEST_CASE(half_split_convention_by_hand) {
    // D = 4, θ = 10000: inv_freq = [1, 0.01]; pairs (0, 2) and (1, 3), NOT (0, 1), (2, 3)
    Tensor x = from_vector<double>({1, 0, 0, 0, 0, 1, 0, 0}, {2, 1, 4});
    Tensor y = rope_rotate(x, 4, from_vector<int64_t>({1, 3}, {2}), 10000.0);
    auto v = y.to_vector<double>();
    const std::vector<double> want = {std::cos(1.0), 0, std::sin(1.0), 0, 0, std::cos(0.03), 0, std::sin(0.03)};
    for (size_t i = 0; i < want.size(); ++i) BOOST_TEST(std::abs(v[i] - want[i]) < 1e-15, "element " << i);
    BOOST_TEST(std::abs(rope_inv_freq(1, 4, 10000.0) - 0.01) < 1e-18);
    // position 0 is the identity (B = 3 sequences of one token each, all at 0)
    Generator g(1);
    Tensor z = uniform({3, 1, 8}, -1, 1, g, DType::f64);
    BOOST_TEST(max_abs_diff(rope_rotate(z, 4, int64_t(0), 10000.0), z) == 0.0);
}

BOOST_AUTO_TEST_CASE(matches_reference_per_sequence_positions) {
    Generator g(31);
    // [B, T, H·D]: small, one that takes the OpenMP path (2·64·512 > 32768), D = 2
    struct Case { int64_t B, T, H, D; };
    for (auto [B, T, H, D] : {Case{3, 5, 2, 8}, Case{2, 64, 4, 128}, Case{2, 3, 3, 2}})
        for (DType dt : {DType::f64, DType::f32}) {
            BOOST_TEST_CONTEXT(dt << " B " << B << " T " << T << " H " << H << " D " << D) {
                std::vector<int64_t> p0 = {0, 70000, 17};  // 70000 + T: past 64K
                p0.resize(size_t(B));
                Tensor x = uniform({B, T, H * D}, -1, 1, g, DType::f64);
                Tensor want = ref_rope(x.view({B, T, H, D}), p0, 500000.0).reshape({B, T, H * D});
                Tensor got = rope_rotate(x.to(dt), D, from_vector<int64_t>(p0, {B}), 500000.0);
                BOOST_TEST(got.dtype() == dt);
                // f32: the input's rounding and fp32 products; angles themselves are exact (double)
                BOOST_TEST(max_abs_diff(got.to(DType::f64), want) < (dt == DType::f64 ? 1e-14 : 1e-6));
            }
        }
}

// the property attention relies on: ⟨rope(q, m), rope(k, n)⟩ depends on m − n only
BOOST_AUTO_TEST_CASE(scores_depend_on_relative_position) {
    Generator g(32);
    Tensor q = uniform({1, 1, 16}, -1, 1, g, DType::f64), k = uniform({1, 1, 16}, -1, 1, g, DType::f64);
    auto dot = [&](int64_t m, int64_t n) {
        return sum(rope_rotate(q, 8, m) * rope_rotate(k, 8, n)).item();
    };
    const double base = dot(7, 3);
    BOOST_TEST(std::abs(dot(4, 0) - base) < 1e-12);
    BOOST_TEST(std::abs(dot(100007, 100003) - base) < 1e-9);
    BOOST_TEST(std::abs(dot(8, 3) - base) > 1e-3);  // and does depend on it
}

BOOST_AUTO_TEST_CASE(gradcheck_f64) {
    Generator g(33);
    Tensor pos = from_vector<int64_t>({2, 40}, {2});
    for (bool nc : {false, true}) {
        Tensor x = leaf64({2, 3, 12}, g, nc);
        RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return rope_rotate(in[0], 6, pos, 1000.0); },
                           std::vector<Tensor>{x});
    }
    // i32 positions are accepted and mean the same
    Tensor x = uniform({2, 3, 12}, -1, 1, g, DType::f64);
    BOOST_TEST(max_abs_diff(rope_rotate(x, 6, pos.to(DType::i32)), rope_rotate(x, 6, pos)) == 0.0);
    // the backward is the inverse rotation: rope⁻¹(rope(x)) = x through the gradient of Σ y ⊙ dy
    Tensor xl = x.detach().requires_grad_();
    Tensor dy = rope_rotate(x, 6, pos);
    sum(rope_rotate(xl, 6, pos) * dy).backward();
    BOOST_TEST(max_abs_diff(xl.grad(), x) < 1e-14);
}

BOOST_AUTO_TEST_CASE(errors) {
    Tensor x = zeros({2, 3, 12}, DType::f32);
    RN_CHECK_THROWS_WITH(rope_rotate(x, 5, int64_t(0)), "head_dim 5 must be even and divide the last dim 12");
    RN_CHECK_THROWS_WITH(rope_rotate(x, 8, int64_t(0)), "head_dim 8 must be even");
    RN_CHECK_THROWS_WITH(rope_rotate(x, 6, zeros({3}, DType::i64)), "pos must be [B] = [2]");
    RN_CHECK_THROWS_WITH(rope_rotate(x, 6, zeros({2}, DType::f32)), "expected integer indices");
    RN_CHECK_THROWS_WITH(rope_rotate(x, 6, int64_t(0), 1.0), "theta must be a number > 1");
    RN_CHECK_THROWS_WITH(rope_rotate(zeros({6}), 6, int64_t(0)), "x must be [B, T, H·D]");
}

BOOST_AUTO_TEST_SUITE_END()

// ================================================================ the model
BOOST_AUTO_TEST_SUITE(transformer)

BOOST_AUTO_TEST_CASE(logits_match_primitive_reference) {
    Generator g(41);
    for (int64_t kvh : {int64_t(0), int64_t(2), int64_t(1)})  // MHA (0: as many as heads), GQA 2, MQA
        for (int64_t pos0 : {int64_t(0), int64_t(5)}) {
            BOOST_TEST_CONTEXT("n_kv_heads " << kvh << " pos0 " << pos0) {
                TransformerLM m(micro(kvh), 3);
                m.to(DType::f64);
                Tensor tokens = randint(0, 11, {2, 7}, g);
                NoGradGuard no_grad;
                Tensor got = m.forward(tokens, fwd(DType::f64, pos0));
                BOOST_TEST(got.shape() == Shape({2, 7, 11}));
                Tensor want = ref_forward(m, tokens, pos0);
                BOOST_TEST(rel_err(got, want) < 1e-12);
                BOOST_TEST(max_abs_diff(want, zeros_like(want)) > 1e-3);  // logits that say something
            }
        }
    // RoPE makes attention see relative positions only: shifting every position by pos0
    // leaves the logits unchanged (to rounding), though every q and k changed
    {
        TransformerLM m(micro(2), 3);
        m.to(DType::f64);
        Tensor tokens = randint(0, 11, {2, 7}, g);
        NoGradGuard no_grad;
        BOOST_TEST(rel_err(m.forward(tokens, fwd(DType::f64, 1000)), m.forward(tokens, fwd(DType::f64, 0))) < 1e-12);
    }
    // f32 compute (fp32 weights, no cast) against the f64 reference of the same weights
    TransformerLM m(micro(2), 4);
    Tensor tokens = randint(0, 11, {2, 9}, g);
    NoGradGuard no_grad;
    Tensor got = m.forward(tokens, fwd(DType::f32));
    BOOST_TEST(got.dtype() == DType::f32);
    m.to(DType::f64);
    BOOST_TEST(rel_err(got.to(DType::f64), ref_forward(m, tokens, 0)) < 1e-5);
}

BOOST_AUTO_TEST_CASE(gradcheck_whole_model) {
    ModelConfig cfg = micro(2);
    cfg.d_model = 8;
    cfg.n_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.value_dim = 8;
    cfg.ffn_dim = 10;
    TransformerLM model(cfg, 7);
    model.to(DType::f64);
    // Llama's init makes every logit ≈ 0; gradients that small would hide errors
    {
        NoGradGuard no_grad;
        Generator wg(8);
        for (auto& p : model.parameters()) p.copy_(uniform(p.shape(), -0.7, 0.7, wg, DType::f64) + (p.dim() == 1 ? 1.0 : 0.0));
    }
    Generator g(6);
    Tensor tokens = randint(0, cfg.vocab_size, {2, 6}, g), targets = randint(0, cfg.vocab_size, {2, 6}, g);
    auto loss = [&](const std::vector<Tensor>&) {
        Tensor logits = model.forward(tokens, fwd(DType::f64, 3));
        return cross_entropy(logits.reshape({-1, cfg.vocab_size}), targets.reshape({-1}));
    };
    auto r = gradcheck(loss, model.parameters(), 1e-6, 1e-7, 1e-5);
    BOOST_TEST(r.ok, r.message);
    BOOST_TEST(r.entries == model.num_parameters());
}

// ForwardOptions::standard_attention (the scores materialised, for bench_paper training):
// the same logits and the same gradient in every parameter as the flash kernel, MHA and GQA
BOOST_AUTO_TEST_CASE(standard_attention_equals_flash) {
    for (int64_t kvh : {int64_t(0), int64_t(2)}) {
        BOOST_TEST_CONTEXT("n_kv_heads " << kvh) {
            TransformerLM m(micro(kvh), 12);
            m.to(DType::f64);
            Generator g(13);
            Tensor tokens = randint(0, 11, {2, 9}, g), targets = randint(0, 11, {2, 9}, g);
            std::vector<std::vector<Tensor>> grads;
            std::vector<Tensor> logits;
            for (bool standard : {false, true}) {
                ForwardOptions o = fwd(DType::f64);
                o.standard_attention = standard;
                for (auto& p : m.parameters()) p.zero_grad();
                Tensor l = m.forward(tokens, o);
                cross_entropy(l.reshape({-1, 11}), targets.reshape({-1})).backward();
                logits.push_back(l.detach());
                std::vector<Tensor> gs;
                for (auto& p : m.parameters()) gs.push_back(p.grad().clone());
                grads.push_back(gs);
            }
            BOOST_TEST(rel_err(logits[1], logits[0]) < 1e-12);
            BOOST_TEST(max_abs_diff(logits[0], zeros_like(logits[0])) > 1e-3);
            for (size_t i = 0; i < grads[0].size(); ++i) {
                BOOST_TEST(max_abs_diff(grads[0][i], zeros_like(grads[0][i])) > 0);
                BOOST_TEST(rel_err(grads[1][i], grads[0][i]) < 1e-10, "parameter " << i);
            }
        }
    }
}

// prefill each sequence's prompt into its slot, then step() the three together at their
// own positions (slots narrowed as sequences finish): every logit equals one forward's
void check_decoding(DType dt, double tol, bool fused) {
    TransformerLM m(micro(2), 9);
    if (dt == DType::f64) m.to(DType::f64);
    if (fused) m.fuse_for_decoding();
    Generator g(10);
    const int64_t N = 12, Tmax = 16;
    Tensor tokens = randint(0, 11, {3, N}, g);
    NoGradGuard no_grad;
    Tensor want = m.forward(tokens, fwd(dt));  // [3, N, V]
    std::vector<Tensor> states = m.init_states(3, Device::cpu(), dt, Tmax);
    BOOST_TEST(states.size() == size_t(4));
    BOOST_TEST(states[0].shape() == Shape({3, 2, Tmax, 4}));
    BOOST_TEST(states[0].dtype() == dt);
    const std::vector<int64_t> prompt = {1, 5, 8};  // the longest remaining in slot 0
    std::vector<int64_t> cur = prompt;
    double worst = 0;
    for (int64_t s = 0; s < 3; ++s) {
        Tensor lp = m.prefill(tokens.narrow(0, s, 1).narrow(1, 0, prompt[size_t(s)]), 0, slot_of(states, s), dt);
        worst = std::max(worst, rel_err(lp, want.narrow(0, s, 1).narrow(1, 0, prompt[size_t(s)])));
    }
    int steps = 0;
    for (int64_t B = 3; B >= 1; --B)
        while (cur[size_t(B - 1)] < N) {
            std::vector<int64_t> tk;
            for (int64_t b = 0; b < B; ++b) tk.push_back(int64_t(tokens.narrow(0, b, 1).narrow(1, cur[size_t(b)], 1).item()));
            std::vector<int64_t> ps(cur.begin(), cur.begin() + B);
            std::vector<Tensor> sub = first_rows(states, B);
            Tensor l = m.step(from_vector<int64_t>(tk, {B}), sub, from_vector<int64_t>(ps, {B}), dt);
            BOOST_REQUIRE(l.shape() == Shape({B, 11}));
            for (int64_t b = 0; b < B; ++b)
                worst = std::max(worst, rel_err(l.narrow(0, b, 1), want.narrow(0, b, 1).select(1, cur[size_t(b)])));
            for (int64_t b = 0; b < B; ++b) ++cur[size_t(b)];
            ++steps;
        }
    BOOST_TEST(steps == 11);
    BOOST_TEST(worst < tol, dt << (fused ? " fused" : "") << ": worst relative error " << worst);
    BOOST_TEST_MESSAGE("decoding " << dt << (fused ? " fused" : "") << ": worst relative error " << worst);
}

BOOST_AUTO_TEST_CASE(prefill_then_steps_match_forward) {
    check_decoding(DType::f64, 1e-12, false);
    check_decoding(DType::f64, 1e-12, true);
    // f32: the forward's and the decode kernel's fp32 sums in different orders (seen: 1e-7)
    check_decoding(DType::f32, 1e-6, false);
}

BOOST_AUTO_TEST_CASE(prefill_in_chunks_equals_one_prefill) {
    TransformerLM m(micro(2), 12);
    m.to(DType::f64);
    Generator g(13);
    Tensor tokens = randint(0, 11, {1, 9}, g);
    NoGradGuard no_grad;
    std::vector<Tensor> one = m.init_states(1, Device::cpu(), DType::f64, 12);
    std::vector<Tensor> two = m.init_states(1, Device::cpu(), DType::f64, 12);
    Tensor l1 = m.prefill(tokens, 0, one, DType::f64);
    Tensor a = m.prefill(tokens.narrow(1, 0, 4), 0, two, DType::f64);
    Tensor b = m.prefill(tokens.narrow(1, 4, 5), 4, two, DType::f64);
    BOOST_TEST(rel_err(concat({a, b}, 1), l1) < 1e-12);
    for (size_t i = 0; i < one.size(); ++i) {
        BOOST_TEST(max_abs_diff(two[i], one[i]) < 1e-13, "cache " << i);
        BOOST_TEST(max_abs_diff(one[i].narrow(2, 0, 9), zeros({1, 2, 9, 4}, DType::f64)) > 1e-3);
        BOOST_TEST(max_abs_diff(one[i].narrow(2, 9, 3), zeros({1, 2, 3, 4}, DType::f64)) == 0.0);  // untouched
    }
    // a prompt past the cache is refused before anything is written
    RN_CHECK_THROWS_WITH(m.prefill(tokens.narrow(1, 0, 4), 9, two, DType::f64),
                         "positions 9 … 12 do not fit the KV cache of max_context 12");
    RN_CHECK_THROWS_WITH(m.prefill(tokens, 0, two, DType::f32), "in the compute dtype f32");
}

BOOST_AUTO_TEST_CASE(copy_slot_copies_the_prefix) {
    TransformerLM m(micro(2), 14);
    m.to(DType::f64);
    Generator g(15);
    Tensor tokens = randint(0, 11, {1, 6}, g), other = randint(0, 11, {1, 9}, g);
    NoGradGuard no_grad;
    std::vector<Tensor> st = m.init_states(3, Device::cpu(), DType::f64, 10);
    m.prefill(tokens, 0, slot_of(st, 0), DType::f64);
    m.prefill(other, 0, slot_of(st, 2), DType::f64);  // slot 2 had other content
    std::vector<Tensor> before;
    for (const Tensor& t : st) before.push_back(t.narrow(0, 2, 1).clone());
    m.copy_slot(st, 0, 2, 6);
    for (size_t i = 0; i < st.size(); ++i) {
        BOOST_TEST(max_abs_diff(st[i].narrow(0, 2, 1).narrow(2, 0, 6), st[i].narrow(0, 0, 1).narrow(2, 0, 6)) == 0.0);
        // only the first `length` positions move
        BOOST_TEST(max_abs_diff(st[i].narrow(0, 2, 1).narrow(2, 6, 4), before[i].narrow(2, 6, 4)) == 0.0);
    }
    // continuing slot 0 and slot 2 with the same token gives the same logits (to rounding:
    // a GEMM may take another code path for another row)
    Tensor l = m.step(from_vector<int64_t>({3, 0, 3}, {3}), st, from_vector<int64_t>({6, 0, 6}, {3}), DType::f64);
    BOOST_TEST(rel_err(l.narrow(0, 2, 1), l.narrow(0, 0, 1)) < 1e-14);
    RN_CHECK_THROWS_WITH(m.copy_slot(st, 0, 1, 11), "length 11 must be within the KV cache's 10 positions");
}

BOOST_AUTO_TEST_CASE(fused_projections_keep_names_and_values) {
    ModelConfig cfg = micro(2);
    TransformerLM plain(cfg, 3), fused(cfg, 3);
    plain.to(DType::f64);
    fused.to(DType::f64);
    fused.fuse_for_decoding();
    fused.fuse_for_decoding();  // idempotent
    auto pp = plain.named_parameters(), fp = fused.named_parameters();
    BOOST_REQUIRE(pp.size() == fp.size());
    for (size_t i = 0; i < pp.size(); ++i) {
        BOOST_TEST(pp[i].first == fp[i].first);
        BOOST_TEST(max_abs_diff(pp[i].second, fp[i].second) == 0.0, pp[i].first);
    }
    // k_proj's weight now follows q_proj's in one buffer
    const auto& a = *fused.layers[0]->self_attn;
    BOOST_TEST(static_cast<char*>(a.k_proj->weight.raw_data()) ==
               static_cast<char*>(a.q_proj->weight.raw_data()) + 16 * 16 * int64_t(sizeof(double)));
    NoGradGuard no_grad;
    Generator g(4);
    Tensor tokens = randint(0, 11, {1, 7}, g);
    std::vector<Tensor> sp = plain.init_states(1, Device::cpu(), DType::f64, 8);
    std::vector<Tensor> sf = fused.init_states(1, Device::cpu(), DType::f64, 8);
    for (int64_t t = 0; t < 7; ++t) {
        Tensor tok = tokens.select(1, t), pos = full({1}, double(t), DType::i64);
        BOOST_TEST(rel_err(fused.step(tok, sf, pos, DType::f64), plain.step(tok, sp, pos, DType::f64)) < 1e-13);
    }
}

BOOST_AUTO_TEST_CASE(errors_and_state_size) {
    TransformerLM m(micro(2), 1);
    NoGradGuard no_grad;
    std::vector<Tensor> st = m.init_states(2, Device::cpu(), DType::f32, 5);
    size_t bytes = 0;
    for (const Tensor& t : st) bytes += t.nbytes();
    BOOST_TEST(m.state_bytes(2, DType::f32, 5) == bytes);
    BOOST_TEST(m.state_bytes(2, DType::f32, 5) == size_t(2 * 2 * 2 * 2 * 5 * 4 * 4));  // 2·L·S·Hkv·T·D·4
    BOOST_TEST(m.state_bytes(2, DType::bf16, 10) == m.state_bytes(2, DType::f32, 5));
    BOOST_TEST(m.state_grows_with_context());
    std::vector<Tensor> in;
    ForwardOptions o;
    o.states_in = &in;
    RN_CHECK_THROWS_WITH(m.forward(zeros({1, 2}, DType::i64), o), "init_states, then prefill");
    RN_CHECK_THROWS_WITH(m.step(zeros({2}, DType::i64), st, zeros({2}, DType::i32), DType::f32), "pos must be [B] = [2] i64");
    RN_CHECK_THROWS_WITH(m.init_states(1, Device::cpu(), DType::f32, 0), "max_context must be ≥ 1");
    std::vector<Tensor> half(st.begin(), st.begin() + 2);
    RN_CHECK_THROWS_WITH(m.step(zeros({2}, DType::i64), half, zeros({2}, DType::i64), DType::f32),
                         "2 state tensors for 2 layers");
    ModelConfig r = micro();
    r.arch = "retnet";
    RN_CHECK_THROWS_WITH(TransformerLM(r, 0), "the config is for arch 'retnet'");
}

BOOST_AUTO_TEST_CASE(parameter_names_follow_hf_llama) {
    TransformerLM m(micro(2), 1);
    std::vector<std::string> names;
    for (auto& [n, p] : m.named_parameters()) names.push_back(n);
    const std::vector<std::string> want = {
        "embed_tokens.weight",
        "layers.0.input_layernorm.weight",
        "layers.0.self_attn.q_proj.weight",
        "layers.0.self_attn.k_proj.weight",
        "layers.0.self_attn.v_proj.weight",
        "layers.0.self_attn.o_proj.weight",
        "layers.0.post_attention_layernorm.weight",
        "layers.0.mlp.gate_proj.weight",
        "layers.0.mlp.up_proj.weight",
        "layers.0.mlp.down_proj.weight",
    };
    for (size_t i = 0; i < want.size(); ++i) BOOST_TEST(names[i] == want[i]);
    BOOST_TEST(names[names.size() - 2] == "norm.weight");
    BOOST_TEST(names.back() == "lm_head.weight");
    BOOST_TEST(m.parameter("layers.1.self_attn.k_proj.weight").shape() == Shape({8, 16}));  // Hkv·D = 2·4
    BOOST_TEST(m.parameter("layers.1.mlp.down_proj.weight").shape() == Shape({16, 24}));
    // the init: N(0, 0.02²), residual outputs N(0, (0.02/sqrt(2L))²) with L = 2
    TransformerLM big(ModelConfig::from_preset("mini", 512, "transformer"), 2);
    auto sd = [&](const std::string& n) {
        Tensor w = big.parameter(n).to(DType::f64);
        return std::sqrt(mean(w * w).item());
    };
    BOOST_TEST(std::abs(sd("layers.0.self_attn.q_proj.weight") - 0.02) < 0.02 * 0.02);
    BOOST_TEST(std::abs(sd("embed_tokens.weight") - 0.02) < 0.02 * 0.02);
    BOOST_TEST(std::abs(sd("layers.3.mlp.down_proj.weight") - 0.02 / std::sqrt(8.0)) < 0.02 * 0.02);
    BOOST_TEST(std::abs(sd("layers.3.self_attn.o_proj.weight") - 0.02 / std::sqrt(8.0)) < 0.02 * 0.02);
}

BOOST_AUTO_TEST_CASE(parameter_counts_and_presets) {
    // parameter_count() is the real count, both archs, tied or not, GQA, emb_norm
    std::vector<ModelConfig> cs;
    for (const char* arch : {"retnet", "transformer"})
        for (const char* p : {"tiny", "mini"}) cs.push_back(ModelConfig::from_preset(p, 300, arch));
    cs.push_back(micro(1));
    cs.push_back(micro(2));
    cs.back().tie_embeddings = true;
    cs.push_back(ModelConfig::from_preset("tiny", 50));
    cs.back().emb_norm = true;
    cs.back().tie_embeddings = true;
    for (const ModelConfig& c : cs) {
        std::shared_ptr<LanguageModel> m = make_model(c, 1);
        BOOST_TEST(c.parameter_count() == m->num_parameters(), c.arch << " " << c.preset);
        BOOST_TEST((dynamic_cast<TransformerLM*>(m.get()) != nullptr) == c.is_transformer());
    }
    // every preset's Transformer within 2% of its RetNet, at a small and a large vocabulary
    for (int64_t V : {int64_t(512), int64_t(32000)})
        for (const std::string& n : ModelConfig::preset_names()) {
            const ModelConfig r = ModelConfig::from_preset(n, V), t = ModelConfig::from_preset(n, V, "transformer");
            t.validate();
            const double pr = double(r.parameter_count()), pt = double(t.parameter_count());
            BOOST_TEST(std::abs(pt - pr) / pr < 0.02, n << " V " << V << ": RetNet " << pr << ", Transformer " << pt);
            if (V == 32000)
                BOOST_TEST_MESSAGE(n << " V " << V << ": d " << t.d_model << " L " << t.n_layers << " heads " << t.n_heads
                                     << "x" << t.head_dim() << " kv " << t.kv_heads() << " ffn " << t.ffn_dim
                                     << " RetNet " << r.parameter_count() << " Transformer " << t.parameter_count()
                                     << " delta " << 100.0 * (pt - pr) / pr << "%");
        }
}

BOOST_AUTO_TEST_CASE(config_json_round_trip) {
    ModelConfig t = ModelConfig::from_preset("mini", 100, "transformer");
    t.n_kv_heads = 1;
    t.rope_theta = 500000;
    ModelConfig back = ModelConfig::from_json(t.to_json());
    BOOST_TEST(back.arch == "transformer");
    BOOST_TEST(back.n_kv_heads == 1);
    BOOST_TEST(back.rope_theta == 500000.0);
    BOOST_TEST(back.ffn_dim == t.ffn_dim);
    BOOST_TEST(back.n_heads == t.n_heads);
    BOOST_TEST(back.to_json() == t.to_json());
    // a RetNet config carries no arch key and loads as retnet (every older checkpoint)
    ModelConfig r = ModelConfig::from_preset("mini", 100);
    BOOST_TEST(r.to_json().find("\"arch\"") == std::string::npos);
    BOOST_TEST(ModelConfig::from_json(r.to_json()).arch == "retnet");
    BOOST_TEST(ModelConfig::from_json("{\"d_model\": 64}").arch == "retnet");
    BOOST_TEST(dynamic_cast<RetNetLM*>(make_model(ModelConfig::from_json(r.to_json())).get()) != nullptr);
}

BOOST_AUTO_TEST_SUITE_END()
