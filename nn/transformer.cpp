// nn/transformer.cpp — the Transformer baseline: SwiGLU, causal self-attention with GQA and
// RoPE, blocks, the LM and its KV-cache decoding (see nn/transformer.h, docs/transformer.md).
#include "nn/transformer.h"

#include <cmath>
#include <tuple>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "core/tensor_math.h"
#include "cuda/pdl.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "ops/rotary.h"

namespace rn::nn {

namespace {
// Llama's init (HF initializer_range): every weight matrix N(0, std²)
void init_normal(Linear& l, double std, Generator& gen) {
    NoGradGuard no_grad;
    l.weight.copy_(randn({l.out_features, l.in_features}, gen) * std);
}
constexpr double kInitStd = 0.02;
}  // namespace

// ---------------------------------------------------------------- SwiGLU
SwiGLU::SwiGLU(int64_t dim, int64_t hidden, const std::string& act, Generator& gen) : activation(act) {
    RN_CHECK(act == "swish" || act == "silu" || act == "gelu", "SwiGLU: unknown activation '", act,
             "': expected swish (silu) or gelu");
    gate_proj = register_module("gate_proj", std::make_shared<Linear>(dim, hidden, false, gen));
    up_proj = register_module("up_proj", std::make_shared<Linear>(dim, hidden, false, gen));
    down_proj = register_module("down_proj", std::make_shared<Linear>(hidden, dim, false, gen));
}

void SwiGLU::fuse() { stack_linear_weights(fused_, {gate_proj.get(), up_proj.get()}); }

Tensor SwiGLU::forward(const Tensor& x) const {
    if (activation == "gelu") return down_proj->forward(gelu(gate_proj->forward(x)) * up_proj->forward(x));
    if (use_stacked(fused_, {gate_proj.get(), up_proj.get()}, x)) {  // one row: one matmul for both
        const int64_t h = gate_proj->out_features;
        Tensor y = matmul(x, fused_.t());
        return down_proj->forward(silu_mul(y.narrow(-1, 0, h), y.narrow(-1, h, h)));
    }
    return gated_projection(gate_proj->forward(x), up_proj->forward(x), *down_proj);
}

Tensor SwiGLU::forward(const Tensor& x, const RMSNorm& norm) const {
    auto p = norm.forward_linears(x, {gate_proj.get(), up_proj.get()});
    if (activation == "gelu") return down_proj->forward(gelu(p[0]) * p[1]);
    return gated_projection(p[0], p[1], *down_proj);
}

// ---------------------------------------------------------------- CausalSelfAttention
CausalSelfAttention::CausalSelfAttention(const ModelConfig& cfg, Generator& gen)
    : Hq_(cfg.n_heads), Hkv_(cfg.kv_heads()), D_(cfg.head_dim()), theta_(cfg.rope_theta) {
    const int64_t d = cfg.d_model;
    q_proj = register_module("q_proj", std::make_shared<Linear>(d, Hq_ * D_, false, gen));
    k_proj = register_module("k_proj", std::make_shared<Linear>(d, Hkv_ * D_, false, gen));
    v_proj = register_module("v_proj", std::make_shared<Linear>(d, Hkv_ * D_, false, gen));
    o_proj = register_module("o_proj", std::make_shared<Linear>(Hq_ * D_, d, false, gen));
}

void CausalSelfAttention::fuse_projections() {
    stack_linear_weights(qkv_, {q_proj.get(), k_proj.get(), v_proj.get()});
}

// softmax(q·kᵀ·s + mask)·v from primitive ops, the textbook way: the [B,Hq,T,T] scores
// and probabilities exist in memory (the probabilities are kept for the backward). q is
// scaled before the product (the same values as scaling the scores, a T/D-th of the
// work); a group's kv heads are repeated to its query heads.
namespace {
Tensor standard_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& causal_mask) {
    const int64_t B = q.size(0), Hq = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1);
    Tensor kr = k, vr = v;
    if (Hkv != Hq) {
        kr = k.unsqueeze(2).expand({B, Hkv, Hq / Hkv, T, D}).reshape({B, Hq, T, D});
        vr = v.unsqueeze(2).expand({B, Hkv, Hq / Hkv, T, D}).reshape({B, Hq, T, D});
    }
    Tensor s = matmul(q * (1.0 / std::sqrt(double(D))), kr.transpose(-1, -2));
    return matmul(softmax(masked_fill(s, causal_mask, -INFINITY), -1), vr);
}
}  // namespace

Tensor CausalSelfAttention::forward(const Tensor& x, int64_t pos0, const Tensor& k_cache, const Tensor& v_cache,
                                    const Tensor& causal_mask, const RMSNorm* norm) const {
    const int64_t B = x.size(0), T = x.size(1);
    // on x's device: a host tensor here would mean a synchronising copy per layer
    Tensor pos = full({B}, double(pos0), DType::i64, x.device());
    std::vector<Tensor> p = norm ? norm->forward_linears(x, {q_proj.get(), k_proj.get(), v_proj.get()})
                                 : std::vector<Tensor>{q_proj->forward(x), k_proj->forward(x), v_proj->forward(x)};
    // [B,H,T,D] views of the [B,T,H,D] projections: the attention op reads them in place where
    // its tensor-core kernels take the call, and makes its own copies otherwise (Note
    // [Attention without permutes], ops/attention.cpp)
    Tensor q = rope_rotate(p[0], D_, pos, theta_).view({B, T, Hq_, D_}).permute({0, 2, 1, 3});
    Tensor k = rope_rotate(p[1], D_, pos, theta_).view({B, T, Hkv_, D_}).permute({0, 2, 1, 3});
    Tensor v = p[2].reshape({B, T, Hkv_, D_}).permute({0, 2, 1, 3});
    Tensor o;
    if (k_cache.defined()) {
        kv_cache_write(k_cache, k, pos);
        kv_cache_write(v_cache, v, pos);
        // queries are the last T of the pos0 + T keys: attention's bottom-right alignment
        o = attention(q, k_cache.narrow(2, 0, pos0 + T), v_cache.narrow(2, 0, pos0 + T));
    } else if (causal_mask.defined()) {
        o = standard_attention(q, k, v, causal_mask);
    } else {
        o = attention(q, k, v);
    }
    // (a view where the op wrote the output as [B,T,Hq,D]; a copy otherwise)
    return o_proj->forward(o.permute({0, 2, 1, 3}).reshape({B, T, Hq_ * D_}));
}

Tensor CausalSelfAttention::step(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache, const Tensor& pos,
                                 const Tensor& lengths) const {
    const int64_t B = x.size(0), nq = Hq_ * D_, nkv = Hkv_ * D_;
    Tensor q, k, v;
    if (use_stacked(qkv_, {q_proj.get(), k_proj.get(), v_proj.get()}, x)) {
        Tensor y = matmul(x, qkv_.t());                                     // [1, 1, nq + 2·nkv]
        Tensor qk = rope_rotate(y.narrow(-1, 0, nq + nkv), D_, pos, theta_);  // whole heads: one rotation
        q = qk.narrow(-1, 0, nq), k = qk.narrow(-1, nq, nkv), v = y.narrow(-1, nq + nkv, nkv);
    } else {
        q = rope_rotate(q_proj->forward(x), D_, pos, theta_);
        k = rope_rotate(k_proj->forward(x), D_, pos, theta_);
        v = v_proj->forward(x);
    }
    // one token: [B,1,H·D] is [B,H,1,D] in memory
    kv_cache_write(k_cache, k.reshape({B, Hkv_, 1, D_}), pos);
    kv_cache_write(v_cache, v.reshape({B, Hkv_, 1, D_}), pos);
    Tensor o = attention_decode(q.reshape({B, Hq_, D_}), k_cache, v_cache, lengths);  // [B,Hq,D]
    return o_proj->forward(o.reshape({B, 1, nq}));
}

// ---------------------------------------------------------------- TransformerBlock
TransformerBlock::TransformerBlock(const ModelConfig& cfg, Generator& gen) : dropout(cfg.dropout) {
    input_layernorm = register_module("input_layernorm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps, true));
    self_attn = register_module("self_attn", std::make_shared<CausalSelfAttention>(cfg, gen));
    post_attention_layernorm =
        register_module("post_attention_layernorm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps, true));
    mlp = register_module("mlp", std::make_shared<SwiGLU>(cfg.d_model, cfg.ffn_dim, cfg.activation, gen));
}

Tensor TransformerBlock::forward(const Tensor& x, int64_t pos0, const Tensor& k_cache, const Tensor& v_cache,
                                 const Tensor& causal_mask) const {
    // training: the norms' outputs are not kept for the backward (RMSNorm::forward_linears)
    const bool train = GradMode::enabled() && !k_cache.defined();
    Tensor h = train ? self_attn->forward(x, pos0, k_cache, v_cache, causal_mask, input_layernorm.get())
                     : self_attn->forward(input_layernorm->forward(x), pos0, k_cache, v_cache, causal_mask);
    if (dropout > 0) h = rn::dropout(h, dropout, is_training());
    Tensor y = x + h;
    Tensor f = train ? mlp->forward(y, *post_attention_layernorm) : mlp->forward(post_attention_layernorm->forward(y));
    if (dropout > 0) f = rn::dropout(f, dropout, is_training());
    return y + f;
}

// ---------------------------------------------------------------- TransformerLM
TransformerLM::TransformerLM(const ModelConfig& cfg, uint64_t seed) : LanguageModel(cfg) {
    RN_CHECK(cfg.is_transformer(), "TransformerLM: the config is for arch '", cfg.arch, "'");
    cfg.validate();
    Generator gen(seed);
    embed_tokens = register_module("embed_tokens", std::make_shared<Embedding>(cfg.vocab_size, cfg.d_model, gen, kInitStd));
    // the projections that write into the residual stream start smaller, 0.02/sqrt(2L)
    // (GPT-2, Megatron): the stream's variance then stays O(1) whatever the depth
    const double out_std = kInitStd / std::sqrt(2.0 * double(cfg.n_layers));
    for (int64_t i = 0; i < cfg.n_layers; ++i) {
        auto b = register_module("layers." + std::to_string(i), std::make_shared<TransformerBlock>(cfg, gen));
        const auto& a = *b->self_attn;
        init_normal(*a.q_proj, kInitStd, gen);
        init_normal(*a.k_proj, kInitStd, gen);
        init_normal(*a.v_proj, kInitStd, gen);
        init_normal(*a.o_proj, out_std, gen);
        init_normal(*b->mlp->gate_proj, kInitStd, gen);
        init_normal(*b->mlp->up_proj, kInitStd, gen);
        init_normal(*b->mlp->down_proj, out_std, gen);
        layers.push_back(b);
    }
    norm = register_module("norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps, true));
    if (!cfg.tie_embeddings) {
        lm_head = register_module("lm_head", std::make_shared<Linear>(cfg.d_model, cfg.vocab_size, false, gen));
        init_normal(*lm_head, kInitStd, gen);
    }
}

Tensor TransformerLM::project(const Tensor& h) const {
    if (lm_head) return lm_head->forward(h);
    return matmul(h, as_compute(embed_tokens->weight, h).t());
}

Tensor TransformerLM::run(const Tensor& tokens, DType compute, int64_t pos0, const std::vector<Tensor>* caches,
                          bool standard_attention, bool checkpoint_activations, bool last_only,
                          bool hidden_only) const {
    Tensor x = embed_tokens->forward(tokens);
    // the standard form's mask, made once for all layers on the device, in the compute
    // dtype: relu(j − i) is nonzero exactly above the diagonal (masked_fill's "true")
    Tensor mask;
    if (standard_attention) {
        const int64_t T = tokens.size(1);
        Tensor i = arange(0, double(T), 1.0, DType::f32, tokens.device());
        mask = relu(i.view({1, T}) - i.view({T, 1})).to(compute);
    }
    if (x.dtype() != compute) x = x.to(compute);
    if (cfg_.dropout > 0) x = dropout(x, cfg_.dropout, is_training());
    const bool ckpt = checkpoint_activations && !caches && GradMode::enabled();
    RN_CHECK(!ckpt || cfg_.dropout == 0, "TransformerLM: checkpoint_activations recomputes each layer in the "
             "backward, so it needs dropout 0 (got ", cfg_.dropout, ")");
    for (size_t i = 0; i < layers.size(); ++i) {
        if (ckpt) {  // the layer, position and mask are kept for the recomputation
            x = checkpoint([layer = layers[i], pos0, mask](const Tensor& xi) {
                return layer->forward(xi, pos0, Tensor(), Tensor(), mask);
            }, x);
            continue;
        }
        x = caches ? layers[i]->forward(x, pos0, (*caches)[2 * i], (*caches)[2 * i + 1])
                   : layers[i]->forward(x, pos0, Tensor(), Tensor(), mask);
    }
    if (last_only) x = x.narrow(1, x.size(1) - 1, 1).contiguous();
    return hidden_only ? norm->forward(x) : project(norm->forward(x));
}

Tensor TransformerLM::output_weight(DType compute) const {
    const Tensor& w = lm_head ? lm_head->weight : embed_tokens->weight;
    return w.dtype() == compute ? w : w.to(compute);
}

Tensor TransformerLM::forward(const Tensor& tokens, const ForwardOptions& opt) const {
    RN_CHECK(tokens.dim() == 2, "TransformerLM: tokens must be [B, T], got ", tokens.shape());
    RN_CHECK(!opt.states_in && !opt.states_out, "TransformerLM::forward: states_in/states_out are RetNet's recurrent "
             "states; a Transformer continues a sequence through its KV cache. HINT: init_states, then prefill");
    RN_CHECK(opt.pos0 >= 0, "TransformerLM::forward: pos0 must be ≥ 0, got ", opt.pos0);
    RN_CHECK(!opt.incoming_state, "TransformerLM::forward: incoming_state is RetNet's context parallelism (a "
             "recurrent state); a Transformer's attention needs every earlier key, not a state");
    return run(tokens, opt.compute, opt.pos0, nullptr, opt.standard_attention, opt.checkpoint_activations,
               opt.last_logits_only, opt.hidden_only);
}

std::vector<Tensor> TransformerLM::init_states(int64_t slots, Device device, DType compute, int64_t max_context) const {
    RN_CHECK(slots >= 1 && max_context >= 1, "TransformerLM::init_states: slots and max_context must be ≥ 1 (the KV "
             "cache holds max_context positions per slot), got slots ", slots, ", max_context ", max_context);
    std::vector<Tensor> s;
    for (int64_t i = 0; i < 2 * cfg_.n_layers; ++i)
        s.push_back(zeros({slots, cfg_.kv_heads(), max_context, cfg_.head_dim()}, compute, device));
    return s;
}

size_t TransformerLM::state_bytes(int64_t slots, DType compute, int64_t max_context) const {
    return 2 * size_t(cfg_.n_layers) * size_t(slots) * size_t(cfg_.kv_heads()) * size_t(max_context) *
           size_t(cfg_.head_dim()) * dtype_size(compute);
}

Tensor TransformerLM::prefill(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                              int64_t, bool last_only) const {
    NoGradGuard no_grad;
    RN_CHECK(tokens.dim() == 2 && tokens.size(0) == 1, "TransformerLM::prefill: tokens must be [1, T], got ",
             tokens.shape());
    RN_CHECK(int64_t(slot.size()) == 2 * cfg_.n_layers, "TransformerLM::prefill: ", slot.size(), " state tensors for ",
             cfg_.n_layers, " layers (expected 2 per layer: K and V caches)");
    const Shape want{1, cfg_.kv_heads(), slot[0].dim() == 4 ? slot[0].size(2) : 0, cfg_.head_dim()};
    for (const Tensor& c : slot)
        RN_CHECK(c.defined() && c.shape() == want && c.dtype() == compute, "TransformerLM::prefill: each slot tensor "
                 "must be a KV cache [1, Hkv, Tmax, D] = ", want, " in the compute dtype ", compute, ", got ",
                 c.defined() ? c.shape() : Shape{}, " ", c.defined() ? c.dtype() : compute);
    const int64_t T = tokens.size(1), Tmax = want[2];
    RN_CHECK(pos0 >= 0 && pos0 + T <= Tmax, "TransformerLM::prefill: positions ", pos0, " … ", pos0 + T - 1,
             " do not fit the KV cache of max_context ", Tmax, ". HINT: a larger max_context, or a shorter prompt");
    return run(tokens, compute, pos0, &slot, false, false, last_only);
}

void TransformerLM::copy_slot(const std::vector<Tensor>& states, int64_t from, int64_t to, int64_t length) const {
    if (from == to || length == 0) return;
    for (const Tensor& st : states) {
        RN_CHECK(length > 0 && length <= st.size(2), "TransformerLM::copy_slot: length ", length,
                 " must be within the KV cache's ", st.size(2), " positions");
        copy_nograd(st.narrow(0, to, 1).narrow(2, 0, length), st.narrow(0, from, 1).narrow(2, 0, length));
    }
}

void TransformerLM::fuse_for_decoding() {
    for (auto& l : layers) {
        l->self_attn->fuse_projections();
        l->mlp->fuse();
    }
}

Tensor TransformerLM::step(const Tensor& tokens, std::vector<Tensor>& states, const Tensor& pos, DType compute) const {
    NoGradGuard no_grad;
    cuda::PdlScope pdl;  // the weights stay put while a step runs: its kernels may overlap (cuda/pdl.h)
    RN_CHECK(tokens.dim() == 1, "TransformerLM::step: tokens must be [B], got ", tokens.shape());
    RN_CHECK(int64_t(states.size()) == 2 * cfg_.n_layers, "TransformerLM::step: ", states.size(), " state tensors for ",
             cfg_.n_layers, " layers (expected 2 per layer: K and V caches)");
    RN_CHECK(pos.defined() && pos.dtype() == DType::i64 && pos.shape() == Shape({tokens.size(0)}),
             "TransformerLM::step: pos must be [B] = [", tokens.size(0), "] i64, got ",
             pos.defined() ? pos.shape() : Shape{}, " ", pos.defined() ? pos.dtype() : DType::f32);
    Tensor x = embed_tokens->forward(tokens.unsqueeze(1));  // [B,1,d]
    if (x.dtype() != compute) x = x.to(compute);
    RN_CHECK(pos.device() == x.device(), "TransformerLM::step: pos is on ", pos.device(), ", the model on ", x.device(),
             " (it must be on the model's device: the step reads it there, with no host sync)");
    // each sequence attends to its cache up to and including its own token (on the device)
    const Tensor lengths = pos + full({1}, 1.0, DType::i64, pos.device());
    // each block is y = x + attn(norm₁ x), then y + mlp(norm₂ y); every residual add runs
    // fused into the RMSNorm that follows it (as RetNetLM::step)
    if (layers.empty()) return project(norm->forward(x)).squeeze(1);
    Tensor n = layers.front()->input_layernorm->forward(x);
    for (size_t i = 0; i < layers.size(); ++i) {
        const TransformerBlock& b = *layers[i];
        auto [y, m] = b.post_attention_layernorm->forward_residual(
            x, b.self_attn->step(n, states[2 * i], states[2 * i + 1], pos, lengths));
        const RMSNorm& next = i + 1 < layers.size() ? *layers[i + 1]->input_layernorm : *norm;
        std::tie(x, n) = next.forward_residual(y, b.mlp->forward(m));
    }
    return project(n).squeeze(1);
}

}  // namespace rn::nn
