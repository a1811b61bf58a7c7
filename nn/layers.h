// nn/layers.h — the building blocks: Linear, Embedding, RMSNorm, GLU.
// Mixed precision by input dtype: a layer casts its fp32 weights to the dtype of its input
// (bf16 activations → bf16 matmul), and the differentiable cast sends fp32 gradients back
// to the fp32 master weights.
#pragma once
#include "core/random.h"
#include "nn/module.h"

namespace rn::nn {

// y = x Wᵀ (+ b); W is [out, in] as in PyTorch, so reference checkpoints load unchanged
class Linear : public Module {
public:
    Linear(int64_t in, int64_t out, bool bias, Generator& gen, double xavier_gain = 0.0);
    Tensor forward(const Tensor& x) const;
    Tensor weight, bias;
    int64_t in_features, out_features;
};

class Embedding : public Module {
public:
    Embedding(int64_t vocab, int64_t dim, Generator& gen, double stddev);
    Tensor forward(const Tensor& ids) const;  // [..] → [.., dim], fp32
    Tensor weight;
};

// y = x / rms(x) (⊙ w); statistics in fp32 whatever the storage dtype
class RMSNorm : public Module {
public:
    RMSNorm(int64_t dim, double eps, bool affine);
    Tensor forward(const Tensor& x) const;
    // {x + h, forward(x + h)}: the residual add before this norm, fused with it (ops/norm.h)
    std::pair<Tensor, Tensor> forward_residual(const Tensor& x, const Tensor& h) const;
    // {x + h, forward(x + h) · Wᵀ} (h undefined: {x, forward(x) · Wᵀ}): the norm and the
    // product after it in one kernel where it applies, for one-token decoding
    // (ops/decode_fused.h add_rms_norm_linear)
    std::pair<Tensor, Tensor> forward_linear(const Tensor& x, const Tensor& h, const Tensor& W) const;
    // {x + h, forward(x + h)}, or {x, forward(x)} for h undefined
    std::pair<Tensor, Tensor> forward_maybe_residual(const Tensor& x, const Tensor& h) const;
    // { p->forward(forward(x)) for each p }: the projections that read this norm, for
    // training. Without biases it is rms_norm_linear (ops/norm.h), which keeps x, not the
    // norm's output, and sums the projections' input gradients in one buffer (the same
    // values to rounding; RN_NORM_RECOMPUTE, memory_saving below).
    std::vector<Tensor> forward_linears(const Tensor& x, const std::vector<const Linear*>& ps) const;
    Tensor weight;
    double eps;
};

// fc2( act(fc1 x) ⊙ gate x ), act = silu (SwiGLU) or gelu
class GLU : public Module {
public:
    GLU(int64_t dim, int64_t hidden, const std::string& activation, Generator& gen);
    Tensor forward(const Tensor& x) const;
    // One-token decoding: forward(norm(x + h)) with the residual stream x + h in *sum (h
    // undefined: norm(x), *sum = x); with the stacked weight and up to 4 rows, the norm runs
    // inside the fc1/gate product and SwiGLU inside fc2 (ops/decode_fused.h), else the ops
    // one by one.
    Tensor forward_normed(const Tensor& x, const Tensor& h, const RMSNorm& norm, Tensor* sum) const;
    // forward(norm(x)) through norm.forward_linears (training: the norm's output not kept)
    Tensor forward(const Tensor& x, const RMSNorm& norm) const;
    // For decoding: fc1's and gate's weights become views into one [2·hidden, dim] tensor,
    // so that a one-row input runs one matmul for both (see MultiScaleRetention::
    // fuse_projections in nn/retnet.h).
    void fuse();
    std::shared_ptr<Linear> fc1, gate, fc2;
    std::string activation;

private:
    Tensor fused_;  // [fc1; gate] weights, or undefined
};

// The training-memory switches RN_FUSED_CE (nn/lm.h), RN_SWIGLU_RECOMPUTE and
// RN_NORM_RECOMPUTE (below): on unless set to 0 (for A/B measurements; at `small` B8 T2048
// on an H100 the three together took the peak from 9.55 to 6.43 GiB and the step from 52.2
// to 50.2 ms, docs/benchmarks.md).
bool memory_saving(const char* env_var);

// proj(silu(a) ⊙ b): SwiGLU's down projection and the retention layer's gated output
// projection. Without a bias it is swiglu_linear (ops/swiglu.h), which keeps a and b for the
// backward but not their product (the same values; RN_SWIGLU_RECOMPUTE, memory_saving above).
Tensor gated_projection(const Tensor& a, const Tensor& b, const Linear& proj);

// Stacks the weights of `parts` (Linears without bias, one input width) along the output
// dim into `stacked` and makes each weight a view into it; nothing to do when they still
// are its views.
void stack_linear_weights(Tensor& stacked, const std::vector<Linear*>& parts);
// whether `stacked` may stand in for `parts` on input x: x is one row (the parts of the
// output are then contiguous), autograd is off (the stacked tensor is no leaf, gradients
// would miss the parameters), the dtypes agree and the weights are still its views (a
// to()/cast after stacking replaces them)
bool use_stacked(const Tensor& stacked, const std::vector<const Linear*>& parts, const Tensor& x);
// the same for a decoding step at any batch: x is [B, 1, K], one position a sequence (the
// product is then one [B, N] matmul whose parts sit side by side in each row)
bool use_stacked_step(const Tensor& stacked, const std::vector<const Linear*>& parts, const Tensor& x);

// xavier-uniform: U(−a, a), a = gain·sqrt(6 / (fan_in + fan_out))
Tensor xavier_uniform(int64_t out, int64_t in, double gain, Generator& gen);
// a weight in the input's dtype, as the layers take it (differentiable: the gradients
// return in the weight's dtype, fp32 for master weights)
Tensor as_compute(const Tensor& w, const Tensor& x);

}  // namespace rn::nn
