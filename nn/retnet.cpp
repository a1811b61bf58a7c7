// nn/retnet.cpp — RetNet: multi-scale retention, blocks, the LM (see nn/retnet.h).
#include "nn/retnet.h"

#include <cmath>
#include <tuple>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "core/env.h"
#include "cuda/pdl.h"
#include "ops/ops.h"
#include "ops/rotary.h"

namespace rn::nn {

// ---------------------------------------------------------------- MultiScaleRetention
MultiScaleRetention::MultiScaleRetention(const ModelConfig& cfg, Generator& gen)
    : H_(cfg.n_heads), Dk_(cfg.head_dim()), Dv_(cfg.value_head_dim()), eps_(cfg.norm_eps),
      rope_half_(cfg.rotary == "rope_half"), lambda_(cfg.retention_lambda), rope_theta_(cfg.rope_theta),
      gamma_(cfg.gammas()) {
    const double g_qkv = std::pow(2.0, -2.5), g_out = std::pow(2.0, -1.0);  // torchscale's init gains
    const int64_t kd = cfg.key_width();
    q_proj = register_module("q_proj", std::make_shared<Linear>(cfg.d_model, kd, false, gen, g_qkv));
    k_proj = register_module("k_proj", std::make_shared<Linear>(cfg.d_model, kd, false, gen, g_qkv));
    v_proj = register_module("v_proj", std::make_shared<Linear>(cfg.d_model, cfg.value_dim, false, gen, g_qkv));
    g_proj = register_module("g_proj", std::make_shared<Linear>(cfg.d_model, cfg.value_dim, false, gen, g_qkv));
    out_proj = register_module("out_proj", std::make_shared<Linear>(cfg.value_dim, cfg.d_model, false, gen, g_out));
    // registered last: the default config's parameter order (and every checkpoint) is unchanged
    if (cfg.group_norm_affine) group_norm = register_module("group_norm", std::make_shared<RMSNorm>(Dv_, cfg.norm_eps, true));
}

// x [B,T,heads·Dk] rotated at positions pos[b] + t, times scale (the key's Dk^(−1/2))
Tensor MultiScaleRetention::rotate(const Tensor& x, const Tensor& pos, double scale) const {
    if (!rope_half_) return xpos_rotate(x, Dk_, pos, scale);
    Tensor y = rope_rotate(x, Dk_, pos, rope_theta_);
    return scale == 1.0 ? y : y * scale;
}

// 1/λ_n = sqrt(Σ_{j≤n} γ^j): the op multiplies row n by λ_n (ops/retention.h); a query
// scaled by its inverse gives fla's unnormalised Σ γ^(n−m) (q_n·k_m) v_m in every paradigm
// (q enters only the output, never the state)
Tensor MultiScaleRetention::undo_lambda(const Tensor& q, int64_t pos0) const {
    const int64_t T = q.size(2);
    std::vector<double> f(size_t(H_ * T));
    for (int64_t h = 0; h < H_; ++h)
        for (int64_t t = 0; t < T; ++t) f[size_t(h * T + t)] = 1.0 / retention_lambda(gamma_[size_t(h)], pos0 + t);
    Tensor s = from_vector(f, {1, H_, T, 1}, q.device());
    return q * (q.dtype() == DType::f64 ? s : s.to(q.dtype()));
}

// q [B,H,1,Dk]; pos [B] on q's device. On the CPU from retention_lambda; on CUDA from
// device tensors (no host copy of pos, so a decode step stays capturable), in f64:
// 1 − γ^(n+1) loses about eps_f64/(1−γ) relatively, below 1e-10 for γ ≤ 1 − 2^(−20)
Tensor MultiScaleRetention::undo_lambda_step(const Tensor& q, const Tensor& pos) const {
    const int64_t B = q.size(0);
    if (!pos.is_cuda()) {
        Tensor p = pos.dtype() == DType::i64 ? pos.contiguous() : pos.to(DType::i64).contiguous();
        const int64_t* pp = static_cast<const int64_t*>(p.raw_data());
        std::vector<double> f(size_t(B * H_));
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H_; ++h) f[size_t(b * H_ + h)] = 1.0 / retention_lambda(gamma_[size_t(h)], pp[b]);
        Tensor s = from_vector(f, {B, H_, 1, 1}, q.device());
        return q * (q.dtype() == DType::f64 ? s : s.to(q.dtype()));
    }
    if (!log_gamma_dev_.defined() || log_gamma_dev_.device() != q.device()) {
        std::vector<double> lg(static_cast<size_t>(H_)), inv(static_cast<size_t>(H_));
        for (int64_t h = 0; h < H_; ++h)
            lg[size_t(h)] = std::log(gamma_[size_t(h)]), inv[size_t(h)] = 1.0 / (1.0 - gamma_[size_t(h)]);
        log_gamma_dev_ = from_vector(lg, {1, H_}, q.device());
        inv_one_minus_gamma_dev_ = from_vector(inv, {1, H_}, q.device());
    }
    Tensor n1 = pos.to(DType::f64).view({B, 1}) + 1.0;
    Tensor c = (1.0 - exp(n1 * log_gamma_dev_)) * inv_one_minus_gamma_dev_;
    Tensor s = sqrt(c).view({B, H_, 1, 1});
    return q * (q.dtype() == DType::f64 ? s : s.to(q.dtype()));
}

void MultiScaleRetention::fuse_projections() {
    stack_linear_weights(qkvg_, {q_proj.get(), k_proj.get(), v_proj.get(), g_proj.get()});
}

// q, k: [B,H,T,Dk], v: [B,H,T,Dv]; returns the gate input g [B,T,value_dim]
Tensor MultiScaleRetention::project_qkv(const Tensor& x, const Tensor& pos, Tensor& q, Tensor& k, Tensor& v,
                                        const RMSNorm* norm) const {
    const int64_t B = x.size(0), T = x.size(1);
    // K·Dk^(−1/2), applied by the rotation (fla scales Q instead: the same q·k)
    const double k_scale = 1.0 / std::sqrt(double(Dk_));
    Tensor qp, kp, xv, xg;
    if (norm) {
        auto p = norm->forward_linears(x, {q_proj.get(), k_proj.get(), v_proj.get(), g_proj.get()});
        qp = rotate(p[0], pos, 1.0), kp = rotate(p[1], pos, k_scale), xv = p[2], xg = p[3];
    } else if (use_stacked(qkvg_, {q_proj.get(), k_proj.get(), v_proj.get(), g_proj.get()}, x)) {
        xg = split_stacked(matmul(x, qkvg_.t()), pos, qp, kp, xv);  // [1, 1, 2d + 2·vd] (d: the key width)
    } else {
        qp = rotate(q_proj->forward(x), pos, 1.0);
        kp = rotate(k_proj->forward(x), pos, k_scale);
        xv = v_proj->forward(x), xg = g_proj->forward(x);
    }
    // [B,H,T,D] views of the [B,T,H,D] products: the retention op reads them where they lie
    // where it can, and makes them contiguous where it cannot (Note [Retention without permutes])
    q = qp.view({B, T, H_, Dk_}).permute({0, 2, 1, 3});
    k = kp.view({B, T, H_, Dk_}).permute({0, 2, 1, 3});
    v = xv.reshape({B, T, H_, Dv_}).permute({0, 2, 1, 3});
    return xg;
}

Tensor MultiScaleRetention::split_stacked(const Tensor& y, const Tensor& pos, Tensor& qp, Tensor& kp, Tensor& xv) const {
    const int64_t d = q_proj->out_features, vd = v_proj->out_features;
    const double k_scale = 1.0 / std::sqrt(double(Dk_));
    if (rope_half_) {
        qp = rotate(y.narrow(-1, 0, d), pos, 1.0), kp = rotate(y.narrow(-1, d, d), pos, k_scale);
    } else {  // q and k side by side: one rotation for both, each with its own scale
        Tensor qk = xpos_rotate(y.narrow(-1, 0, 2 * d), Dk_, pos, 1.0, d, k_scale);
        qp = qk.narrow(-1, 0, d), kp = qk.narrow(-1, d, d);
    }
    xv = y.narrow(-1, 2 * d, vd);
    return y.narrow(-1, 2 * d + vd, vd);
}

Tensor MultiScaleRetention::finish(const Tensor& y, const Tensor& g) const {
    const int64_t B = y.size(0), T = y.size(2);
    // the norms work per head over Dv, so they run on y as [B,T,H,Dv]: the layout the
    // retention op writes on the GPU (no copy), and the one the output projection reads
    if (group_norm) {  // fla's FusedRMSNormGated: RMSNorm(y_h) ⊙ w, then ⊙ silu(g)
        Tensor yn = group_norm->forward(y.permute({0, 2, 1, 3}));
        return gated_projection(g, yn.reshape({B, T, H_ * Dv_}), *out_proj);
    }
    if (T == 1) {  // a decode step: g [B,1,H·Dv] is y's [B,H,1,Dv] order; norm and gate in one pass
        Tensor z = gated_rms_norm(y, g.reshape(y.shape()), eps_);
        return out_proj->forward(z.reshape({B, T, H_ * Dv_}));
    }
    // per-head RMSNorm without weight (torchscale's group_norm), statistics in fp32. On the
    // GPU the norm and the gate are one op forward and backward (the decode step's kernel;
    // RN_FUSED_GATED_NORM=0: the two ops below), the projection after it.
    if (y.is_cuda() && env_choice("RN_FUSED_GATED_NORM", {0, 1}, 1) == 1) {
        Tensor z = gated_rms_norm(y.permute({0, 2, 1, 3}), g.reshape({B, T, H_, Dv_}), eps_);
        return out_proj->forward(z.reshape({B, T, H_ * Dv_}));
    }
    Tensor yn = rms_norm(y.permute({0, 2, 1, 3}), Tensor(), eps_);
    return gated_projection(g, yn.reshape({B, T, H_ * Dv_}), *out_proj);  // silu(g) ⊙ yn, one fused pass
}

Tensor MultiScaleRetention::forward(const Tensor& x, const ForwardOptions& opt, const Tensor& state_in,
                                    Tensor* state_out, Tensor* trail, const RMSNorm* norm) const {
    Tensor q, k, v;
    // on x's device: a host tensor here would mean a synchronising copy per layer
    Tensor pos = full({x.size(0)}, double(opt.pos0), DType::i64, x.device());
    Tensor g = project_qkv(x, pos, q, k, v, norm);
    if (!lambda_) q = undo_lambda(q, opt.pos0);
    RetentionOptions ro;
    ro.mode = opt.mode;
    ro.chunk = opt.chunk;
    ro.pos0 = opt.pos0;
    ro.return_state = state_out != nullptr;
    RN_CHECK(!(opt.incoming_state && state_in.defined()), "MultiScaleRetention: states_in and incoming_state "
             "(context parallelism) both give the state before the first token; pass one");
    RetentionResult r = retention(q, k, v, gamma_, ro, opt.incoming_state ? opt.incoming_state(k, v, gamma_) : state_in);
    if (state_out) *state_out = r.state;
    if (trail) {
        // the state after each prefix t+1 < T: the same retention call a prefill of those
        // t+1 tokens makes (the same chunkwise arithmetic, so a rollback to it is bit for bit
        // that prefill's state); T is a speculative draft's few tokens, so T−1 small calls
        RN_CHECK(!opt.incoming_state, "MultiScaleRetention: state_trail is for decoding, not context parallelism");
        RN_CHECK(r.state.defined(), "MultiScaleRetention: state_trail needs states_out");
        const int64_t T = q.size(2);
        std::vector<Tensor> rows;
        for (int64_t t = 1; t < T; ++t)
            rows.push_back(retention(q.narrow(2, 0, t).contiguous(), k.narrow(2, 0, t).contiguous(),
                                     v.narrow(2, 0, t).contiguous(), gamma_, ro, state_in).state);
        rows.push_back(r.state);
        *trail = stack(rows, 0);  // [T,B,H,Dk,Dv]
    }
    return finish(r.out, g);
}

Tensor MultiScaleRetention::step(const Tensor& x, const Tensor& state, const Tensor& pos) const {
    Tensor q, k, v;
    Tensor g = project_qkv(x, pos, q, k, v);  // T = 1
    return step_from(q, k, v, g, state, pos);
}

Tensor MultiScaleRetention::step_from(Tensor q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& state,
                                      const Tensor& pos) const {
    if (!lambda_) q = undo_lambda_step(q, pos);
    Tensor o = retention_step(q.squeeze(2), k.squeeze(2), v.squeeze(2), gamma_, state, pos);  // [B,H,Dv]
    return finish(o.unsqueeze(2), g);
}

Tensor MultiScaleRetention::step_normed(const Tensor& x, const Tensor& h, const RMSNorm& norm, const Tensor& state,
                                        const Tensor& pos, Tensor* sum) const {
    const std::vector<const Linear*> parts = {q_proj.get(), k_proj.get(), v_proj.get(), g_proj.get()};
    const bool torchscale = !rope_half_ && lambda_ && !group_norm;
    // torchscale's layer takes the stacked product at any batch (cuBLAS past 4 rows), then
    // rotation, step and gated norm in one kernel over all B sequences: 4 launches for the
    // half layer where the separate ops take 10. Other layers split the product's one row.
    if (!decode_fusion_enabled() ||
        !(use_stacked(qkvg_, parts, x) || (torchscale && use_stacked_step(qkvg_, parts, x)))) {
        auto [s, n] = norm.forward_maybe_residual(x, h);
        *sum = s;
        return step(n, state, pos);
    }
    auto [s, y] = norm.forward_linear(x, h, qkvg_);  // [B, 1, 2d + 2·vd]
    *sum = s;
    if (torchscale) {
        // the step and out_proj (no bias) together: the gated norm runs in the product's
        // prologue where it applies (ops/decode_fused.h)
        return retention_step_gated_linear(y, pos, gamma_, state, 1.0 / std::sqrt(double(Dk_)), eps_,
                                           as_compute(out_proj->weight, y));
    }
    Tensor qp, kp, xv;
    Tensor g = split_stacked(y, pos, qp, kp, xv);
    // one row: [1,1,H·D] is already [1,H,1,D] in memory
    return step_from(qp.reshape({1, H_, 1, Dk_}), kp.reshape({1, H_, 1, Dk_}), xv.reshape({1, H_, 1, Dv_}), g, state,
                     pos);
}

// ---------------------------------------------------------------- RetNetBlock
RetNetBlock::RetNetBlock(const ModelConfig& cfg, Generator& gen) : dropout(cfg.dropout) {
    retention = register_module("retention", std::make_shared<MultiScaleRetention>(cfg, gen));
    retention_layer_norm = register_module("retention_layer_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps, true));
    ffn = register_module("ffn", std::make_shared<GLU>(cfg.d_model, cfg.ffn_dim, cfg.activation, gen));
    final_layer_norm = register_module("final_layer_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps, true));
}

Tensor RetNetBlock::forward(const Tensor& x, const ForwardOptions& opt, const Tensor& state_in, Tensor* state_out,
                            Tensor* trail) const {
    // training: the norms' outputs are not kept for the backward (RMSNorm::forward_linears)
    const bool train = GradMode::enabled();
    Tensor h = train ? retention->forward(x, opt, state_in, state_out, trail, retention_layer_norm.get())
                     : retention->forward(retention_layer_norm->forward(x), opt, state_in, state_out, trail);
    if (dropout > 0) h = rn::dropout(h, dropout, is_training());
    Tensor y = x + h;
    Tensor f = train ? ffn->forward(y, *final_layer_norm) : ffn->forward(final_layer_norm->forward(y));
    if (dropout > 0) f = rn::dropout(f, dropout, is_training());
    return y + f;
}

// ---------------------------------------------------------------- RetNetLM
RetNetLM::RetNetLM(const ModelConfig& cfg, uint64_t seed) : LanguageModel(cfg) {
    RN_CHECK(!cfg.is_transformer(), "RetNetLM: the config is for arch '", cfg.arch, "'");
    cfg.validate();
    Generator gen(seed);
    embed_tokens = register_module("embed_tokens",
                                   std::make_shared<Embedding>(cfg.vocab_size, cfg.d_model, gen, std::pow(double(cfg.d_model), -0.5)));
    if (cfg.emb_norm)
        layernorm_embedding = register_module("layernorm_embedding", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps, true));
    for (int64_t i = 0; i < cfg.n_layers; ++i)
        layers.push_back(register_module("layers." + std::to_string(i), std::make_shared<RetNetBlock>(cfg, gen)));
    layer_norm = register_module("layer_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps, true));
    if (!cfg.tie_embeddings) {
        output_projection = register_module("output_projection", std::make_shared<Linear>(cfg.d_model, cfg.vocab_size, false, gen));
        NoGradGuard no_grad;  // torchscale: N(0, d^(−1/2))
        output_projection->weight.copy_(randn({cfg.vocab_size, cfg.d_model}, gen) * std::pow(double(cfg.d_model), -0.5));
    }
}

Tensor RetNetLM::head(const Tensor& x) const { return project(layer_norm->forward(x)); }

Tensor RetNetLM::project(const Tensor& h) const {
    if (output_projection) return output_projection->forward(h);
    return matmul(h, as_compute(embed_tokens->weight, h).t());
}

Tensor RetNetLM::forward(const Tensor& tokens, const ForwardOptions& opt) const {
    RN_CHECK(tokens.dim() == 2, "RetNetLM: tokens must be [B, T], got ", tokens.shape());
    RN_CHECK(!opt.states_in || int64_t(opt.states_in->size()) == cfg_.n_layers, "RetNetLM: ", opt.states_in ? opt.states_in->size() : 0,
             " states given for ", cfg_.n_layers, " layers");
    Tensor x = embed_tokens->forward(tokens);
    if (x.dtype() != opt.compute) x = x.to(opt.compute);
    if (layernorm_embedding) x = layernorm_embedding->forward(x);
    if (cfg_.dropout > 0) x = dropout(x, cfg_.dropout, is_training());
    if (opt.states_out) opt.states_out->assign(size_t(cfg_.n_layers), Tensor());
    if (opt.state_trail) opt.state_trail->assign(size_t(cfg_.n_layers), Tensor());
    const bool ckpt = opt.checkpoint_activations && GradMode::enabled();
    RN_CHECK(!ckpt || (cfg_.dropout == 0 && !opt.states_in && !opt.states_out), "RetNetLM: checkpoint_activations "
             "recomputes each layer in the backward, so it needs dropout 0 (got ", cfg_.dropout, ") and no "
             "states_in/states_out");
    for (size_t i = 0; i < layers.size(); ++i) {
        if (ckpt) {  // the layer and a copy of the options are kept for the recomputation
            x = checkpoint([layer = layers[i], o = opt](const Tensor& xi) { return layer->forward(xi, o, Tensor(), nullptr); }, x);
            continue;
        }
        x = layers[i]->forward(x, opt, opt.states_in ? (*opt.states_in)[i] : Tensor(),
                               opt.states_out ? &(*opt.states_out)[i] : nullptr,
                               opt.state_trail ? &(*opt.state_trail)[i] : nullptr);
    }
    if (opt.last_logits_only) x = x.narrow(1, x.size(1) - 1, 1).contiguous();
    return opt.hidden_only ? layer_norm->forward(x) : head(x);
}

Tensor RetNetLM::output_weight(DType compute) const {
    const Tensor& w = output_projection ? output_projection->weight : embed_tokens->weight;
    return w.dtype() == compute ? w : w.to(compute);
}

std::vector<Tensor> RetNetLM::init_states(int64_t slots, Device device, DType compute, int64_t) const {
    std::vector<Tensor> s;
    DType sdt = compute == DType::f64 ? DType::f64 : DType::f32;
    for (int64_t i = 0; i < cfg_.n_layers; ++i)
        s.push_back(zeros({slots, cfg_.n_heads, cfg_.head_dim(), cfg_.value_head_dim()}, sdt, device));
    return s;
}

size_t RetNetLM::state_bytes(int64_t slots, DType compute, int64_t) const {
    const size_t es = compute == DType::f64 ? 8 : 4;
    return size_t(cfg_.n_layers) * size_t(slots) * size_t(cfg_.n_heads) * size_t(cfg_.head_dim()) *
           size_t(cfg_.value_head_dim()) * es;
}

Tensor RetNetLM::run_slot(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                          int64_t chunk_hint, bool last_only, std::vector<Tensor>* trail) const {
    NoGradGuard no_grad;
    std::vector<Tensor> out;
    ForwardOptions fo;
    fo.mode = RetentionMode::chunkwise;
    fo.chunk = chunk_hint;
    fo.compute = compute;
    fo.pos0 = pos0;
    fo.states_in = pos0 > 0 ? &slot : nullptr;  // a fresh slot starts from zero
    fo.states_out = &out;
    fo.last_logits_only = last_only;
    fo.state_trail = trail;
    Tensor logits = forward(tokens, fo);
    for (size_t l = 0; l < slot.size(); ++l) copy_nograd(slot[l], out[l]);
    return logits;
}

Tensor RetNetLM::prefill(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                         int64_t chunk_hint, bool last_only) const {
    return run_slot(tokens, pos0, slot, compute, chunk_hint, last_only, nullptr);
}

Tensor RetNetLM::verify(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                        std::vector<Tensor>& trail, int64_t chunk_hint) const {
    return run_slot(tokens, pos0, slot, compute, chunk_hint, false, &trail);
}

void RetNetLM::rollback(const std::vector<Tensor>& slot, const std::vector<Tensor>& trail, int64_t keep) const {
    RN_CHECK(trail.size() == slot.size(), "RetNetLM::rollback: a trail of ", trail.size(), " layers for ", slot.size());
    for (size_t l = 0; l < slot.size(); ++l) {
        RN_CHECK(keep >= 1 && keep <= trail[l].size(0), "RetNetLM::rollback: keep ", keep, " of ", trail[l].size(0),
                 " verified tokens");
        if (keep < trail[l].size(0)) copy_nograd(slot[l], trail[l].select(0, keep - 1));
    }
}

void RetNetLM::copy_slot(const std::vector<Tensor>& states, int64_t from, int64_t to, int64_t) const {
    for (const Tensor& st : states) copy_nograd(st.narrow(0, to, 1), st.narrow(0, from, 1));
}

void RetNetLM::fuse_for_decoding() {
    for (auto& l : layers) {
        l->retention->fuse_projections();
        l->ffn->fuse();
    }
}

Tensor RetNetLM::step(const Tensor& tokens, std::vector<Tensor>& states, const Tensor& pos, DType compute) const {
    NoGradGuard no_grad;
    cuda::PdlScope pdl;  // the weights stay put while a step runs: its kernels may overlap (cuda/pdl.h)
    RN_CHECK(tokens.dim() == 1, "RetNetLM::step: tokens must be [B], got ", tokens.shape());
    RN_CHECK(int64_t(states.size()) == cfg_.n_layers, "RetNetLM::step: ", states.size(), " states for ", cfg_.n_layers, " layers");
    Tensor x = embed_tokens->forward(tokens.unsqueeze(1));  // [B,1,d]
    if (x.dtype() != compute) x = x.to(compute);
    if (layernorm_embedding) x = layernorm_embedding->forward(x);
    // each block is y = x + retention(norm₁ x), then y + ffn(norm₂ y); every residual add
    // runs fused into the RMSNorm that follows it (the block's norm₂, the next block's
    // norm₁, or the final norm): x is the residual stream, n its normed copy
    // h is the last sublayer's output, not yet added: each norm takes x and h, and with the
    // stacked weights (batches of 1–4 rows) runs inside the product after it
    // (ops/decode_fused.h); larger batches take the same ops' compositions
    Tensor h;
    for (size_t i = 0; i < layers.size(); ++i) {
        const RetNetBlock& b = *layers[i];
        Tensor y;
        Tensor r = b.retention->step_normed(x, h, *b.retention_layer_norm, states[i], pos, &y);
        h = b.ffn->forward_normed(y, r, *b.final_layer_norm, &x);
    }
    if (h.defined() && decode_fusion_enabled())  // the head takes the norm (in its kernel up to 4 rows)
        return layer_norm->forward_linear(x, h, output_projection ? output_projection->weight : embed_tokens->weight)
            .second.squeeze(1);
    return project(layer_norm->forward_maybe_residual(x, h).second).squeeze(1);
}

}  // namespace rn::nn
