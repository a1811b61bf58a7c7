// nn/transformer.h — the Llama-style Transformer baseline (docs/transformer.md), the model
// RetNet is compared with, built from the same layers and run by the same engine:
//
//   x = Embedding(tokens)                                    (N(0, 0.02²))
//   repeat L times:  x = x + o_proj(Attn(RMSNorm(x)));  x = x + SwiGLU(RMSNorm(x))
//   logits = RMSNorm(x) W_lm_head                            (untied by default)
//
//   Attn(X) = concat_h softmax_causal(q_h k_gᵀ / sqrt(D)) v_g,  g = h / (Hq / Hkv)  (GQA)
//   q = rope(X W_Q), k = rope(X W_K), v = X W_V               (half-split RoPE, ops/rotary.h)
//   SwiGLU(X) = down_proj(silu(gate_proj X) ⊙ up_proj X)
//
// No biases anywhere. Parameter names are Hugging Face Llama's (embed_tokens,
// layers.N.self_attn.{q,k,v,o}_proj, layers.N.{input,post_attention}_layernorm,
// layers.N.mlp.{gate,up,down}_proj, norm, lm_head), so an HF export is a pure rename of
// the prefix ("model." before all but lm_head).
//
// Dimension key: B batch, T tokens, d model width, Hq query heads, Hkv key/value heads,
// D = d/Hq head dim, f SwiGLU width, V vocabulary, Tmax the KV cache's length.
// Parameters are fp32 master weights; the compute dtype is that of the activations.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/lm.h"

namespace rn::nn {

// down_proj(act(gate_proj x) ⊙ up_proj x), act = silu (SwiGLU) or gelu (GeGLU): nn::GLU's
// math with Llama's names (GLU's fc1 = gate_proj, gate = up_proj, fc2 = down_proj)
class SwiGLU : public Module {
public:
    SwiGLU(int64_t dim, int64_t hidden, const std::string& activation, Generator& gen);
    Tensor forward(const Tensor& x) const;
    // forward(norm(x)) through norm.forward_linears (training: the norm's output not kept)
    Tensor forward(const Tensor& x, const RMSNorm& norm) const;
    // for decoding: gate_proj and up_proj become views of one [2f, d] weight, so a one-row
    // input runs one matmul for both (as GLU::fuse)
    void fuse();
    std::shared_ptr<Linear> gate_proj, up_proj, down_proj;
    std::string activation;

private:
    Tensor fused_;
};

// causal self-attention with grouped-query heads and RoPE
class CausalSelfAttention : public Module {
public:
    CausalSelfAttention(const ModelConfig& cfg, Generator& gen);
    // x [B,T,d] (normed), tokens at absolute positions pos0 + t → [B,T,d]. Without caches:
    // attention over these T tokens (training). With k_cache, v_cache ([B,Hkv,Tmax,D], the
    // slots of a prefill, no autograd): K, V are written at pos0 … and the T queries attend
    // to the cache's first pos0 + T positions. A defined causal_mask ([T,T], nonzero above
    // the diagonal; training only) selects the standard attention of
    // ForwardOptions::standard_attention instead of the flash kernel.
    // norm: x is not normed yet; the projections read norm(x) through norm.forward_linears
    // (training: the norm's output is not kept)
    Tensor forward(const Tensor& x, int64_t pos0, const Tensor& k_cache = Tensor(),
                   const Tensor& v_cache = Tensor(), const Tensor& causal_mask = Tensor(),
                   const RMSNorm* norm = nullptr) const;
    // one token per sequence, no autograd: x [B,1,d], caches [≥B,Hkv,Tmax,D] updated at pos
    // [B]; lengths = pos + 1 [B] (computed once per step by the caller)
    Tensor step(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache, const Tensor& pos,
                const Tensor& lengths) const;
    // for decoding: W_Q, W_K, W_V become views of one [(Hq + 2Hkv)·D, d] weight, so a
    // one-row input runs one matmul and one rotation (q and k side by side) where it ran
    // three and two (see MultiScaleRetention::fuse_projections)
    void fuse_projections();

    std::shared_ptr<Linear> q_proj, k_proj, v_proj, o_proj;

private:
    Tensor qkv_;  // the stacked weight (undefined: not fused)
    int64_t Hq_, Hkv_, D_;
    double theta_;
};

class TransformerBlock : public Module {
public:
    TransformerBlock(const ModelConfig& cfg, Generator& gen);
    // (one-token decoding runs the block's parts from TransformerLM::step, which fuses each
    // residual add into the norm after it, across blocks)
    Tensor forward(const Tensor& x, int64_t pos0, const Tensor& k_cache = Tensor(),
                   const Tensor& v_cache = Tensor(), const Tensor& causal_mask = Tensor()) const;
    std::shared_ptr<RMSNorm> input_layernorm, post_attention_layernorm;
    std::shared_ptr<CausalSelfAttention> self_attn;
    std::shared_ptr<SwiGLU> mlp;
    double dropout;
};

class TransformerLM : public LanguageModel {
public:
    TransformerLM(const ModelConfig& cfg, uint64_t seed = 0);
    // tokens [B,T] integer → logits [B,T,V] in opt.compute; uses opt.pos0 (RoPE positions).
    // mode/chunk are RetNet's and ignored; states_in/states_out are refused (a Transformer
    // continues a sequence through a KV cache: init_states + prefill)
    Tensor forward(const Tensor& tokens, const ForwardOptions& opt = {}) const override;
    Tensor output_weight(DType compute) const override;
    // per layer two tensors, [K cache, V cache] (2L in all, layer l's at 2l and 2l + 1),
    // each [slots, Hkv, max_context, D] in the compute dtype, zeroed
    std::vector<Tensor> init_states(int64_t slots, Device device, DType compute, int64_t max_context) const override;
    // 2 · L · slots · Hkv · max_context · D · sizeof(compute)
    size_t state_bytes(int64_t slots, DType compute, int64_t max_context) const override;
    bool state_grows_with_context() const override { return true; }
    // tokens [1,T] at positions pos0 … pos0 + T − 1 (≤ max_context − 1, else throws): K, V
    // written into the slot, logits [1,T,V]; chunk_hint is unused
    Tensor prefill(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                   int64_t chunk_hint = 64, bool last_only = false) const override;
    // tokens [B], pos [B] i64 on the model's device; no host sync (CUDA-graph capturable)
    Tensor step(const Tensor& tokens, std::vector<Tensor>& states, const Tensor& pos, DType compute) const override;
    // copies positions 0 … length − 1 of slot `from`'s K and V caches to slot `to`
    void copy_slot(const std::vector<Tensor>& states, int64_t from, int64_t to, int64_t length) const override;
    // fuses every layer's q|k|v and gate|up projections for decoding (same outputs, fewer
    // kernels at batch 1; the caveats of RetNetLM::fuse_for_decoding apply)
    void fuse_for_decoding() override;

    std::shared_ptr<Embedding> embed_tokens;
    std::vector<std::shared_ptr<TransformerBlock>> layers;
    std::shared_ptr<RMSNorm> norm;
    std::shared_ptr<Linear> lm_head;

private:
    // embeddings → blocks → head (over the last position only when last_only), the KV
    // caches (2 per layer) written when given
    Tensor run(const Tensor& tokens, DType compute, int64_t pos0, const std::vector<Tensor>* caches,
              bool standard_attention = false, bool checkpoint_activations = false, bool last_only = false,
              bool hidden_only = false) const;
    Tensor project(const Tensor& h) const;  // lm_head (or the tied embedding)
};

}  // namespace rn::nn
