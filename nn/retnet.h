// nn/retnet.h — the RetNet language model (docs/model.md §2–6: the MSR layer, rotation,
// decays, init, the LM), matching torchscale's architecture so that a torchscale
// checkpoint, renamed, loads and gives the same logits:
//
//   x = Embedding(tokens)                       (N(0, d^(−1/2)))
//   [x = RMSNorm(x)]                            (config: emb_norm)
//   repeat L times:  x = x + MSR(RMSNorm(x));  x = x + GLU(RMSNorm(x))
//   logits = RMSNorm(x) W_out                   (untied by default)
//
//   MSR(X) = (silu(X W_G) ⊙ concat_h RMSNorm_noweight(retention_h(Q, K, V))) W_O
//   Q = rotate(X W_Q), K = rotate(X W_K · Dk^(−1/2)), V = X W_V
//
// The config's variant switches (docs/interop.md) compute flash-linear-attention's RetNet
// in the same module: key_dim (W_Q, W_K of another width), rotary rope_half (half-split
// RoPE instead of torchscale's pairs), retention_lambda false (Q scaled by 1/λ_n, which
// cancels the op's λ_n), group_norm_affine (a weight [Dv] on the per-head norm).
//
// Dimension key: B batch, T tokens, d model width, H heads, Dk = key_width/H (d/H by
// default), Dv = value_dim/H, V vocabulary. Parameters are fp32 (master weights); the compute dtype (f32, f64 or
// bf16 on CUDA) is that of the activations, chosen per forward.
#pragma once
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/lm.h"
#include "ops/retention.h"

namespace rn::nn {

class MultiScaleRetention : public Module {
public:
    MultiScaleRetention(const ModelConfig& cfg, Generator& gen);
    // x: [B,T,d] (already normed) → [B,T,d]
    // trail: also the state after each token, [T,B,H,Dk,Dv] (ForwardOptions::state_trail)
    // norm: x is not normed yet; the projections read norm(x) through norm.forward_linears
    // (training: the norm's output is not kept)
    Tensor forward(const Tensor& x, const ForwardOptions& opt, const Tensor& state_in, Tensor* state_out,
                   Tensor* trail = nullptr, const RMSNorm* norm = nullptr) const;
    // one token per sequence: x [B,1,d], state [B,H,Dk,Dv] updated in place, pos [B]
    Tensor step(const Tensor& x, const Tensor& state, const Tensor& pos) const;
    // step(norm(x + h)) with the residual stream x + h in *sum (h undefined: norm(x), *sum =
    // x); with the stacked weight the norm runs inside the QKVG product (ops/decode_fused.h),
    // and for torchscale's layer at any batch the step is one kernel after one product
    Tensor step_normed(const Tensor& x, const Tensor& h, const RMSNorm& norm, const Tensor& state, const Tensor& pos,
                       Tensor* sum) const;
    // For decoding: W_Q, W_K, W_V, W_G become views into one [2d + 2·value_dim, d] tensor,
    // so that a one-row input (batch 1, one token) runs one matmul where it ran four (at
    // batch 1 a step is launch-bound; docs/generation.md). Names, values and checkpoint
    // layout stay; moving or casting the module afterwards undoes it (checked per call).
    void fuse_projections();

    std::shared_ptr<Linear> q_proj, k_proj, v_proj, g_proj, out_proj;
    std::shared_ptr<RMSNorm> group_norm;  // only with group_norm_affine (torchscale's has no weight)

private:
    Tensor project_qkv(const Tensor& x, const Tensor& pos, Tensor& q, Tensor& k, Tensor& v,
                       const RMSNorm* norm = nullptr) const;
    // the stacked product's output y [.., 2d + 2·value_dim] → rotated q, k and v; returns g
    Tensor split_stacked(const Tensor& y, const Tensor& pos, Tensor& qp, Tensor& kp, Tensor& xv) const;
    Tensor step_from(Tensor q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& state,
                     const Tensor& pos) const;  // a step after the projections
    Tensor rotate(const Tensor& x, const Tensor& pos, double scale) const;
    // retention_lambda false: q [B,H,T,Dk] times 1/λ_n (n = pos0 + t, or pos[b] for a step)
    Tensor undo_lambda(const Tensor& q, int64_t pos0) const;
    Tensor undo_lambda_step(const Tensor& q, const Tensor& pos) const;
    Tensor qkvg_;  // the stacked weight (undefined: not fused)
    Tensor finish(const Tensor& y_bhtv, const Tensor& g) const;  // group norm, gate, out_proj
    int64_t H_, Dk_, Dv_;
    double eps_;
    bool rope_half_, lambda_;
    double rope_theta_;
    // undo_lambda_step on CUDA: log γ_h and 1/(1 − γ_h) as [1,H] f64 on the device, made on
    // the first step there (a warm-up step before any CUDA-graph capture), reused after
    mutable Tensor log_gamma_dev_, inv_one_minus_gamma_dev_;
    std::vector<double> gamma_;
};

class RetNetBlock : public Module {
public:
    RetNetBlock(const ModelConfig& cfg, Generator& gen);
    // (one-token decoding runs the block's parts from RetNetLM::step, which fuses each
    // residual add into the norm after it, across blocks)
    // trail: also the state after each token, [T,B,H,Dk,Dv] (ForwardOptions::state_trail)
    Tensor forward(const Tensor& x, const ForwardOptions& opt, const Tensor& state_in, Tensor* state_out,
                   Tensor* trail = nullptr) const;
    std::shared_ptr<RMSNorm> retention_layer_norm, final_layer_norm;
    std::shared_ptr<MultiScaleRetention> retention;
    std::shared_ptr<GLU> ffn;
    double dropout;
};

class RetNetLM : public LanguageModel {
public:
    explicit RetNetLM(const ModelConfig& cfg, uint64_t seed = 0);
    // tokens [B,T] integer → logits [B,T,V] in the compute dtype
    Tensor forward(const Tensor& tokens, const ForwardOptions& opt = {}) const override;
    Tensor output_weight(DType compute) const override;
    // decoding, no autograd: tokens [B], states per layer (from init_states or a prefill's
    // states_out) updated in place, pos [B] absolute positions → logits [B,V]
    Tensor step(const Tensor& tokens, std::vector<Tensor>& states, const Tensor& pos, DType compute) const override;
    // fuses every layer's projections for decoding (MultiScaleRetention::fuse_projections,
    // GLU::fuse): same outputs, fewer kernels per step, used only without autograd. For
    // inference: call after the last to()/cast (one after it falls back to the plain path
    // and leaves the stacked copy unused), and build no optimizer or DataParallel on a
    // model from before its fusion (they would hold the replaced weight tensors).
    void fuse_for_decoding() override;
    // per layer [slots, H, Dk, Dv] (fp32; f64 for f64): the same whatever max_context
    std::vector<Tensor> init_states(int64_t slots, Device device, DType compute, int64_t max_context = 0) const override;
    size_t state_bytes(int64_t slots, DType compute, int64_t max_context = 0) const override;
    bool state_grows_with_context() const override { return false; }
    // chunkwise over the prompt from the slot's state (docs/model.md §1: the chunkwise state
    // at pos0 + T − 1 is exactly the recurrent state)
    Tensor prefill(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                   int64_t chunk_hint = 64, bool last_only = false) const override;
    void copy_slot(const std::vector<Tensor>& states, int64_t from, int64_t to, int64_t length) const override;
    // verify: a prefill that also keeps each layer's state after every token (the trail,
    // ForwardOptions::state_trail); rollback copies row keep−1 of it into the slot
    Tensor verify(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                  std::vector<Tensor>& trail, int64_t chunk_hint = 64) const override;
    void rollback(const std::vector<Tensor>& slot, const std::vector<Tensor>& trail, int64_t keep) const override;

    std::shared_ptr<Embedding> embed_tokens;
    std::shared_ptr<RMSNorm> layernorm_embedding, layer_norm;
    std::vector<std::shared_ptr<RetNetBlock>> layers;
    std::shared_ptr<Linear> output_projection;

private:
    Tensor head(const Tensor& x) const;     // final norm, then project
    Tensor project(const Tensor& h) const;  // the output projection (or the tied embedding)
    // prefill and verify: chunkwise from a slot's state (zero at pos0 = 0), the final state
    // written back into it; the trail (per-token states) when asked
    Tensor run_slot(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                    int64_t chunk_hint, bool last_only, std::vector<Tensor>* trail) const;
};

}  // namespace rn::nn
