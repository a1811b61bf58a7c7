// nn/lm.h — what the trainer, checkpoints, generation engine and server see of a language
// model, whichever the architecture: RetNet (nn/retnet.h) or the Transformer baseline
// (nn/transformer.h). Parameters are fp32 master weights (Module); the compute dtype is
// that of the activations, chosen per call.
//
// Decoding state: init_states() gives a list of tensors whose dim 0 is the slot (one
// sequence each). RetNet's is a fixed [S, H, Dk, Dv] fp32 state per layer, whatever the
// context; the Transformer's a KV cache [S, Hkv, max_context, D] per layer for keys and
// for values, which is why a Transformer's decoding memory grows with the context it
// must hold.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/model_config.h"
#include "nn/module.h"
#include "ops/op_types.h"

namespace rn::nn {

struct ForwardOptions {
    RetentionMode mode = RetentionMode::chunkwise;  // RetNet only
    int64_t chunk = 64;                             // RetNet only
    DType compute = DType::f32;  // activations' dtype (bf16 for mixed precision on CUDA)
    int64_t pos0 = 0;            // absolute position of the first token
    // RetNet only: per layer [B,H,Dk,Dv] continuing a sequence, and each layer's final state
    const std::vector<Tensor>* states_in = nullptr;
    std::vector<Tensor>* states_out = nullptr;
    // Transformer only: attention in its textbook form, softmax(Q·Kᵀ·s + causal mask)·V built
    // from matmul, masked_fill and softmax, with the [B,H,T,T] scores materialised and kept
    // for the backward — the "standard Transformer" of the RetNet paper's training
    // comparison (bench_paper training). The flash kernel (default) gives the same values
    // to rounding without the T² memory.
    bool standard_attention = false;
    // RetNet only: context parallelism (dist/context_parallel.h). The tokens are positions
    // pos0 … of a longer sequence whose earlier tokens other ranks hold; given a layer's
    // retention inputs k [B,H,T,Dk], v [B,H,T,Dv] and its decays, returns the state that
    // comes into this part's first token ([B,H,Dk,Dv], differentiable). Null: the sequence
    // starts here (or at states_in). dist::context_parallel_state_fn makes one.
    std::function<Tensor(const Tensor& k, const Tensor& v, const std::vector<double>& gamma)> incoming_state;
    // training: keep only each layer's input and recompute the layer in the backward
    // (autograd/checkpoint.h) — memory for one layer's activations at a time, for about
    // one more forward pass. The same values and gradients. Not with dropout, states_in
    // or states_out; ignored when no graph is recorded.
    bool checkpoint_activations = false;
    // logits for the last position only, [B,1,V] (a prefill whose caller samples from it)
    bool last_logits_only = false;
    // the final norm's output [B,T,d] in place of the logits: what the output projection
    // (output_weight) would multiply; LanguageModel::loss uses it
    bool hidden_only = false;
    // RetNet only, decoding: per layer [T, B, H, Dk, Dv], the state after each of the T
    // tokens (row t: after tokens 0..t) — what LanguageModel::rollback needs. Not with
    // incoming_state.
    std::vector<Tensor>* state_trail = nullptr;
};

class LanguageModel : public Module {
public:
    // tokens [B,T] integer → logits [B,T,V] in the compute dtype (training and evaluation)
    virtual Tensor forward(const Tensor& tokens, const ForwardOptions& opt = {}) const = 0;

    // The output projection's weight [V, d] in the compute dtype (differentiable: the cast of
    // the fp32 master, or the tied embedding): logits = forward(hidden_only) · output_weightᵀ.
    virtual Tensor output_weight(DType compute) const = 0;
    // The mean next-token loss, cross_entropy(forward(tokens, opt), targets, ignore_index),
    // computed by linear_cross_entropy (ops/linear_cross_entropy.h): the [B,T,V] logits are
    // never held, only a block of rows at a time. Same value and gradients to rounding.
    // RN_FUSED_CE=0 takes the unfused path (for A/B measurements; nn::memory_saving).
    Tensor loss(const Tensor& tokens, const Tensor& targets, const ForwardOptions& opt = {},
                int64_t ignore_index = -100) const;

    // ---- decoding (no autograd)
    // the decoding state of `slots` sequences of up to max_context tokens each, zeroed
    virtual std::vector<Tensor> init_states(int64_t slots, Device device, DType compute,
                                            int64_t max_context) const = 0;
    // bytes init_states would allocate (for the engine's memory report and limits)
    virtual size_t state_bytes(int64_t slots, DType compute, int64_t max_context) const = 0;
    // whether the state grows with the context (a KV cache) or not (RetNet)
    virtual bool state_grows_with_context() const = 0;
    // Runs tokens [1,T] of one sequence whose first pos0 tokens are already in `slot`
    // (views of one slot of each state tensor, dim 0 of size 1, pos0 = 0: a fresh slot whose
    // content is ignored), updating it in place. Returns logits [1,T,V] in the compute dtype,
    // or with last_only [1,1,V], the last position's alone (the engine needs no more, and
    // the output projection over every prompt position is a fifth of a small model's prefill).
    virtual Tensor prefill(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                           int64_t chunk_hint = 64, bool last_only = false) const = 0;
    // One token per sequence: tokens [B] for the sequences in slots 0..B−1 (states narrowed to
    // B rows), pos [B] i64 on the device, each token's absolute position; updates the states
    // in place and returns logits [B,V]. Capturable in a CUDA graph for fixed B.
    virtual Tensor step(const Tensor& tokens, std::vector<Tensor>& states, const Tensor& pos, DType compute) const = 0;
    // Copies slot `from`'s state to slot `to` (its first `length` tokens are what matters:
    // a KV cache copies only those).
    virtual void copy_slot(const std::vector<Tensor>& states, int64_t from, int64_t to, int64_t length) const = 0;
    // Speculative decoding (serving/speculative.h): runs tokens [1,m] of one sequence like
    // prefill (same slot, same pos0) and returns logits [1,m,V]; `trail` gets what rollback()
    // needs to leave the slot as it would be after only the first 1..m of those tokens.
    // The default is for a KV cache (a Transformer): prefill, and an empty trail.
    virtual Tensor verify(const Tensor& tokens, int64_t pos0, const std::vector<Tensor>& slot, DType compute,
                          std::vector<Tensor>& trail, int64_t chunk_hint = 64) const {
        trail.clear();
        return prefill(tokens, pos0, slot, compute, chunk_hint);
    }
    // After verify(): the slot as if only the first `keep` (1..m) of its tokens had run — a
    // copy of a fixed-size state, never a re-run. The default is for a KV cache, whose
    // entries past a sequence's position are never read (the next token at that position
    // overwrites them): nothing to do.
    virtual void rollback(const std::vector<Tensor>& slot, const std::vector<Tensor>& trail, int64_t keep) const {
        (void)slot, (void)trail, (void)keep;
    }
    // Decoding-only weight fusions (same outputs, fewer kernels); call after the last to()/cast.
    virtual void fuse_for_decoding() {}

    const ModelConfig& config() const { return cfg_; }

protected:
    explicit LanguageModel(const ModelConfig& cfg) : cfg_(cfg) {}
    ModelConfig cfg_;
};

// The model a config names (cfg.arch), with fresh weights from `seed`.
std::shared_ptr<LanguageModel> make_model(const ModelConfig& cfg, uint64_t seed = 0);

}  // namespace rn::nn
