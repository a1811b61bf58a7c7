// ops/retention.cpp — the retention op: input checks, the paradigm switch, and one
// backward node per paradigm (each calls its own hand-derived kernel; see
// docs/retention.md). The CPU kernels are in ops/retention_cpu.cpp, the CUDA kernels in
// cuda/retention*.cu.
#include "ops/retention.h"

#include <cmath>
#include <cstdint>

#include "autograd/node.h"
#include "core/env.h"
#include "cuda/retention.h"
#include "ops/op_util.h"
#include "ops/seq_rows.h"

namespace rn {

const char* retention_mode_name(RetentionMode m) {
    switch (m) {
        case RetentionMode::parallel: return "parallel";
        case RetentionMode::recurrent: return "recurrent";
        case RetentionMode::chunkwise: return "chunkwise";
    }
    return "?";
}

RetentionMode retention_mode_from_name(const std::string& s) {
    if (s == "parallel") return RetentionMode::parallel;
    if (s == "recurrent") return RetentionMode::recurrent;
    if (s == "chunkwise") return RetentionMode::chunkwise;
    RN_FAIL("unknown retention mode '", s, "': expected parallel, recurrent or chunkwise");
}

namespace {
DType state_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }

void check_gamma(const std::vector<double>& gamma, int64_t H, const char* op) {
    RN_CHECK(int64_t(gamma.size()) == H, op, ": ", gamma.size(), " decays given for ", H, " heads");
    for (size_t h = 0; h < gamma.size(); ++h)
        RN_CHECK(gamma[h] > 0 && gamma[h] < 1, op, ": decay of head ", h, " is ", gamma[h],
                 "; expected 0 < γ < 1 (γ = 1 has no decay and λ is undefined)");
}

struct RetentionBackward : Node {
    RetentionMode mode;
    RetentionShape shape;
    std::vector<double> gamma;
    SavedTensor q, k, v, s0;
    // the forward's chunk states (bf16 tensor-core path), kept so the backward need not make
    // them again; undefined: the backward makes its own (see retention())
    Tensor chunk_states;
    bool has_state_out = false;
    bool strided = false;  // q, k, v were read where they lie; each gradient is laid out as its input

    std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
        const char* n = "RetentionBackward";
        Tensor qs = q.get(n), ks = k.get(n), vs = v.get(n), s0s = s0.get(n);
        // the strided path must not fall back (the generic kernels cannot write the [B,T,H,D]
        // gradients): what it cannot read where it lies becomes a fresh, aligned copy
        Tensor dout = strided ? readable_or_copy(grads[0]) : contiguous_nograd(grads[0]);
        Tensor dsT = has_state_out ? contiguous_nograd(grads[1]) : Tensor();
        if (strided && dsT.defined() && !(dsT.is_contiguous() && aligned16(dsT))) dsT = fresh_copy(dsT);
        auto grad_like = [&](const Tensor& t) { return strided ? empty_laid_out_as(t) : empty_like(t); };
        Tensor dq = needs_input_grad(0) ? grad_like(qs) : Tensor();
        Tensor dk = needs_input_grad(1) ? grad_like(ks) : Tensor();
        Tensor dv = needs_input_grad(2) ? grad_like(vs) : Tensor();
        Tensor ds0 = needs_input_grad(3) ? empty_like(s0s) : Tensor();
        auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.raw_data() : nullptr; };
        if (qs.is_cuda()) {
            QkvRows rows;
            if (strided) {
                rows.q = rows_of(qs), rows.k = rows_of(ks), rows.v = rows_of(vs), rows.dout = rows_of(dout);
                rows.dq = rows_of(dq), rows.dk = rows_of(dk), rows.dv = rows_of(dv);
            }
            cuda::retention_backward(mode, qs.dtype(), shape, gamma, ptr(dq), ptr(dk), ptr(dv), ptr(ds0), ptr(dout),
                                     ptr(dsT), ptr(qs), ptr(ks), ptr(vs), ptr(s0s), ptr(chunk_states),
                                     strided ? &rows : nullptr);
        } else
            cpu::retention_backward(mode, qs.dtype(), shape, gamma, ptr(dq), ptr(dk), ptr(dv), ptr(ds0), ptr(dout),
                                    ptr(dsT), ptr(qs), ptr(ks), ptr(vs), ptr(s0s));
        return {dq, dk, dv, ds0};
    }
    void release() override {
        q.reset(), k.reset(), v.reset(), s0.reset();
        chunk_states = Tensor();
    }
    std::string name() const override { return "RetentionBackward"; }
};

// One node per paradigm, as the formulas differ; they share the saved fields above.
struct ParallelRetentionBackward : RetentionBackward {
    std::string name() const override { return "ParallelRetentionBackward"; }
};
struct RecurrentRetentionBackward : RetentionBackward {
    std::string name() const override { return "RecurrentRetentionBackward"; }
};
struct ChunkwiseRetentionBackward : RetentionBackward {
    std::string name() const override { return "ChunkwiseRetentionBackward"; }
};

std::shared_ptr<RetentionBackward> make_node(RetentionMode m) {
    switch (m) {
        case RetentionMode::parallel: return std::make_shared<ParallelRetentionBackward>();
        case RetentionMode::recurrent: return std::make_shared<RecurrentRetentionBackward>();
        case RetentionMode::chunkwise: return std::make_shared<ChunkwiseRetentionBackward>();
    }
    return nullptr;
}
}  // namespace

RetentionResult retention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const std::vector<double>& gamma,
                          const RetentionOptions& opt, const Tensor& s0_in) {
    const char* op = "retention";
    check_defined(q_in, op, "q");
    check_defined(k_in, op, "k");
    check_defined(v_in, op, "v");
    RN_CHECK(q_in.dim() == 4, op, ": q must be [B,H,T,Dk], got shape ", q_in.shape());
    RN_CHECK(k_in.shape() == q_in.shape(), op, ": k must have q's shape ", q_in.shape(), ", got ", k_in.shape());
    RN_CHECK(v_in.dim() == 4 && v_in.size(0) == q_in.size(0) && v_in.size(1) == q_in.size(1) && v_in.size(2) == q_in.size(2),
             op, ": v must be [B,H,T,Dv] with q's B,H,T ", q_in.shape(), ", got ", v_in.shape());
    check_same_dtype_device(q_in, k_in, op);
    check_same_dtype_device(q_in, v_in, op);
    check_floating(q_in, op);
    const int64_t B = q_in.size(0), H = q_in.size(1), T = q_in.size(2), Dk = q_in.size(3), Dv = v_in.size(3);
    check_gamma(gamma, H, op);
    RN_CHECK(opt.pos0 >= 0, op, ": pos0 must be ≥ 0, got ", opt.pos0);
    RN_CHECK(opt.mode != RetentionMode::chunkwise || opt.chunk >= 1, op, ": chunk must be ≥ 1, got ", opt.chunk);
    const DType sdt = state_dtype(q_in.dtype());
    if (s0_in.defined()) {
        RN_CHECK(s0_in.shape() == Shape({B, H, Dk, Dv}), op, ": initial state must be [B,H,Dk,Dv] = ",
                 Shape({B, H, Dk, Dv}), ", got ", s0_in.shape());
        RN_CHECK(s0_in.dtype() == sdt, op, ": initial state must be ", sdt, " for ", q_in.dtype(), " inputs, got ",
                 s0_in.dtype());
        RN_CHECK(s0_in.device() == q_in.device(), op, ": initial state on ", s0_in.device(), ", inputs on ",
                 q_in.device());
    }
    if (q_in.is_cpu())
        RN_CHECK(q_in.dtype() != DType::bf16, op, ": the CPU computes retention in f32 or f64, got bf16. HINT: .to(DType::f32)");

    RetentionShape shape{B, H, T, Dk, Dv, opt.mode == RetentionMode::chunkwise ? opt.chunk : 64, opt.pos0};
    // Note [Retention without permutes]: the model projects q, k and v as [B,T,H,D] and
    // reads the output back as [B,T,H,Dv]; a [B,H,T,D] contiguous copy of each, and of the
    // output and every gradient on the way back, was 8 permuting copies a layer (5 % of a
    // `small` training step on an H100). Where the bf16 tensor-core kernels take the call,
    // they read q, k, v where they lie and write the output (and, in the backward, the
    // gradients) as [B,T,H,D], returned as [B,H,T,D] views of it. Contiguous inputs keep
    // contiguous outputs; every other path makes its inputs contiguous as before.
    // RN_RETENTION_ROWS=0 makes the copies again (for A/B runs).
    Tensor s0 = s0_in.defined() ? contiguous_nograd(s0_in) : Tensor();
    const bool strided = q_in.is_cuda() && !q_in.is_contiguous() && env_choice("RN_RETENTION_ROWS", {0, 1}, 1) == 1 &&
                         cuda::retention_takes_rows(opt.mode, q_in.dtype(), shape, gamma) && rows_readable(q_in) &&
                         rows_readable(k_in) && rows_readable(v_in) && (!s0.defined() || aligned16(s0));
    Tensor q = strided ? q_in : contiguous_nograd(q_in), k = strided ? k_in : contiguous_nograd(k_in),
           v = strided ? v_in : contiguous_nograd(v_in);
    Tensor out = strided ? empty_bthd(B, H, T, Dv, v.dtype(), v.device()) : empty(v.shape(), v.dtype(), v.device());
    // the final state is always computed when the graph may need it (its gradient path)
    Tensor sT = opt.return_state ? empty({B, H, Dk, Dv}, sdt, q.device()) : Tensor();
    auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.raw_data() : nullptr; };
    const bool grad = any_requires_grad({q_in, k_in, v_in, s0_in});
    // Where the forward makes chunk states anyway (CUDA bf16, Dk > 128: the two-pass form),
    // training keeps them for the backward, which would otherwise make them again: the same
    // bits, one state pass less a layer, for NC·Dk·Dv bf16 a (b, h) held until the backward
    // (2.4 GB at `small` B8 T2048). Only dq reads them: kept only when q needs a gradient.
    // RN_RETENTION_SAVE_STATES=0 makes them again instead.
    Tensor states;
    if (q.is_cuda()) {
        const size_t bytes = grad && q_in.requires_grad() && env_choice("RN_RETENTION_SAVE_STATES", {0, 1}, 1) == 1
                                 ? cuda::retention_saved_states_bytes(opt.mode, q.dtype(), shape, gamma)
                                 : 0;
        if (bytes) states = empty({int64_t(bytes / 2)}, DType::bf16, q.device());
        QkvRows rows;
        if (strided) rows.q = rows_of(q), rows.k = rows_of(k), rows.v = rows_of(v), rows.out = rows_of(out);
        if (!cuda::retention_forward(opt.mode, q.dtype(), shape, gamma, ptr(q), ptr(k), ptr(v), ptr(s0), ptr(out),
                                     ptr(sT), ptr(states), strided ? &rows : nullptr))
            states = Tensor();
    } else {
        cpu::retention_forward(opt.mode, q.dtype(), shape, gamma, ptr(q), ptr(k), ptr(v), ptr(s0), ptr(out), ptr(sT));
    }

    if (grad) {
        auto n = make_node(opt.mode);
        n->mode = opt.mode;
        n->shape = shape;
        n->gamma = gamma;
        n->q = SavedTensor(q);
        n->k = SavedTensor(k);
        n->v = SavedTensor(v);
        n->s0 = SavedTensor(s0);
        n->chunk_states = states;
        n->strided = strided;
        n->has_state_out = opt.return_state;
        std::vector<Tensor> outs = {out};
        if (opt.return_state) outs.push_back(sT);
        record(n, {q_in, k_in, v_in, s0_in}, outs);
    }
    return {out, sT};
}

Tensor retention_step(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const std::vector<double>& gamma,
                      const Tensor& state, const Tensor& pos_in) {
    const char* op = "retention_step";
    RN_CHECK(q_in.dim() == 3 && k_in.shape() == q_in.shape(), op, ": q and k must be [B,H,Dk] of one shape, got ",
             q_in.shape(), " and ", k_in.shape());
    const int64_t B = q_in.size(0), H = q_in.size(1), Dk = q_in.size(2);
    RN_CHECK(v_in.dim() == 3 && v_in.size(0) == B && v_in.size(1) == H, op, ": v must be [B,H,Dv] with B=", B,
             ", H=", H, ", got ", v_in.shape());
    const int64_t Dv = v_in.size(2);
    check_same_dtype_device(q_in, k_in, op);
    check_same_dtype_device(q_in, v_in, op);
    check_floating(q_in, op);
    check_gamma(gamma, H, op);
    RN_CHECK(state.defined() && state.shape() == Shape({B, H, Dk, Dv}), op, ": state must be [B,H,Dk,Dv] = ",
             Shape({B, H, Dk, Dv}), ", got ", state.defined() ? state.shape() : Shape{});
    RN_CHECK(state.dtype() == state_dtype(q_in.dtype()) && state.device() == q_in.device(), op, ": state must be ",
             state_dtype(q_in.dtype()), " on ", q_in.device(), ", got ", state.dtype(), " on ", state.device());
    RN_CHECK(state.is_contiguous(), op, ": the state must be contiguous (it is updated in place)");
    RN_CHECK(pos_in.defined() && pos_in.shape() == Shape({B}), op, ": pos must be [B] = [", B, "], got ",
             pos_in.defined() ? pos_in.shape() : Shape{});
    check_index_dtype(pos_in, op);
    check_inplace_allowed(state, op);
    Tensor q = contiguous_nograd(q_in), k = contiguous_nograd(k_in), v = contiguous_nograd(v_in);
    Tensor pos = contiguous_nograd(cast_nograd(pos_in, DType::i64));
    Tensor out = empty({B, H, Dv}, v.dtype(), v.device());
    if (q.is_cuda()) {
        pos = to_device_nograd(pos, q.device());
        cuda::retention_step(q.dtype(), B, H, Dk, Dv, gamma, pos.data<int64_t>(), q.raw_data(), k.raw_data(),
                             v.raw_data(), state.raw_data(), out.raw_data());
    } else {
        RN_CHECK(q.dtype() != DType::bf16, op, ": the CPU computes in f32 or f64, got bf16");
        const int64_t* pp = pos.data<int64_t>();
        for (int64_t b = 0; b < B; ++b) RN_CHECK(pp[b] >= 0, op, ": pos[", b, "] = ", pp[b], " is negative");
        cpu::retention_step(q.dtype(), B, H, Dk, Dv, gamma, pp, q.raw_data(), k.raw_data(), v.raw_data(),
                            state.raw_data(), out.raw_data());
    }
    state.bump_version();
    return out;
}

}  // namespace rn
