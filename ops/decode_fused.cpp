// ops/decode_fused.cpp — the fused decode products (ops/decode_fused.h): the checks, the
// CUDA kernels where they apply (cuda/gemv.h gemv_rows_prologue, cuda/retention_decode.h),
// the composition anywhere else.
#include "ops/decode_fused.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "autograd/node.h"
#include "core/env.h"
#include "core/tensor_math.h"
#include "cuda/gemv.h"
#include "cuda/logits_stats.h"
#include "cuda/retention_decode.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/shape_ops.h"
#include "ops/norm.h"
#include "ops/reduce.h"
#include "ops/where.h"
#include "ops/retention.h"
#include "ops/rotary.h"
#include "ops/op_util.h"
#include "ops/swiglu.h"

namespace rn {

namespace {
bool fusion_from_env() {
    const char* e = std::getenv("RN_DECODE_FUSION");
    return !(e && std::strcmp(e, "0") == 0);
}
bool fusion_on = fusion_from_env();
// up to how many sequences the gated norm moves into the out_proj product: 1 by default, the
// batch it was measured faster at (H100: batch 1 0.294 → 0.284 ms a step, while batches 2
// and 4 were 1.6 and 2.4 % slower, each out_proj block re-forming more rows; docs/generation.md)
int gate_in_product_rows = env_choice("RN_DECODE_GATE_IN_PRODUCT", {0, 1, 2, 3, 4}, 1);

// the fused kernel's inputs are CUDA, one dtype, no autograd, contiguous x rows and W [N, K]
bool fusable(std::initializer_list<Tensor> ts, const Tensor& W) {
    if (!fusion_on || !W.is_cuda() || W.dim() != 2 || !W.is_contiguous()) return false;
    std::vector<Tensor> all(ts);
    all.push_back(W);
    if (any_requires_grad(all)) return false;
    for (const Tensor& t : ts)
        if (t.defined() && (!t.is_cuda() || t.dtype() != W.dtype() || !t.is_contiguous())) return false;
    return true;
}

Shape with_last(Shape s, int64_t n) {
    s.back() = n;
    return s;
}

struct StepDims {
    int64_t B, H, Dk, Dv;
};
// the retention step's shapes: state [B,H,Dk,Dv], y [B, 1, 2·H·Dk + 2·H·Dv]
StepDims check_step(const char* op, const Tensor& y, const Tensor& state) {
    check_defined(y, op, "y");
    RN_CHECK(state.defined() && state.dim() == 4, op, ": state must be [B,H,Dk,Dv], got ",
             state.defined() ? state.shape() : Shape{});
    const StepDims d{state.size(0), state.size(1), state.size(2), state.size(3)};
    const int64_t kd = d.H * d.Dk, vd = d.H * d.Dv;
    RN_CHECK(y.dim() == 3 && y.size(0) == d.B && y.size(1) == 1 && y.size(2) == 2 * kd + 2 * vd, op, ": y must be [",
             d.B, ", 1, ", 2 * kd + 2 * vd, "] (q | k | v | g for the state's B, H, Dk, Dv), got ", y.shape());
    return d;
}

// where the step kernel (cuda/retention_decode.h) may be tried: CUDA, contiguous, no
// autograd, an f32 state, positions as a [B] i64 device tensor
bool step_kernel_inputs(const Tensor& y, const Tensor& pos, const Tensor& state) {
    return fusion_on && y.is_cuda() && y.is_contiguous() && !any_requires_grad({y}) && state.is_contiguous() &&
           state.dtype() == DType::f32 && pos.defined() && pos.is_cuda() && pos.dtype() == DType::i64 &&
           pos.shape() == Shape({y.size(0)}) && pos.is_contiguous();
}
}  // namespace

void set_decode_fusion_enabled(bool on) { fusion_on = on; }
bool decode_fusion_enabled() { return fusion_on; }
void set_decode_gate_in_product(int max_rows) {
    RN_CHECK(max_rows >= 0 && max_rows <= cuda::kGemvPrologueMaxRows, "set_decode_gate_in_product: expected 0 to ",
             cuda::kGemvPrologueMaxRows, " sequences, got ", max_rows);
    gate_in_product_rows = max_rows;
}
int decode_gate_in_product() { return gate_in_product_rows; }

std::pair<Tensor, Tensor> add_rms_norm_linear(const Tensor& x, const Tensor& h, const Tensor& norm_weight, double eps,
                                              const Tensor& W) {
    const char* op = "add_rms_norm_linear";
    check_defined(x, op, "x");
    check_defined(W, op, "W");
    RN_CHECK(x.dim() >= 1 && W.dim() == 2 && W.size(1) == x.shape().back(), op, ": W must be [N, K] with K = x's last "
             "dim ", x.dim() ? x.shape().back() : 0, ", got ", W.shape());
    RN_CHECK(!h.defined() || h.shape() == x.shape(), op, ": h must have x's shape ", x.shape(), ", got ", h.shape());
    RN_CHECK(!norm_weight.defined() || norm_weight.shape() == Shape({x.shape().back()}), op, ": the norm weight must "
             "be [", x.shape().back(), "], got ", norm_weight.shape());
    const int64_t K = x.shape().back(), N = W.size(0), M = K ? x.numel() / K : 0;
    if (M > 0 && fusable({x, h, norm_weight}, W)) {
        Tensor sum = h.defined() ? empty(x.shape(), x.dtype(), x.device()) : x;
        Tensor y = empty(with_last(x.shape(), N), x.dtype(), x.device());
        cuda::GemvPrologue p;
        p.kind = cuda::GemvPrologue::kRmsNorm;
        p.x = x.raw_data(), p.ldx = K;
        if (h.defined()) p.res = h.raw_data(), p.ldr = K, p.sum = sum.raw_data(), p.lds = K;
        p.norm_w = norm_weight.defined() ? norm_weight.raw_data() : nullptr;
        p.eps = float(eps);
        if (cuda::gemv_rows_prologue(x.dtype(), M, N, K, p, W.raw_data(), K, y.raw_data(), N)) return {sum, y};
    }
    if (!h.defined()) return {x, matmul(rms_norm(x, norm_weight, eps), W.t())};
    auto [sum, normed] = add_rms_norm(x, h, norm_weight, eps);
    return {sum, matmul(normed, W.t())};
}

Tensor silu_mul_linear(const Tensor& ab, const Tensor& W) {
    const char* op = "silu_mul_linear";
    check_defined(ab, op, "ab");
    check_defined(W, op, "W");
    RN_CHECK(ab.dim() >= 1 && ab.shape().back() % 2 == 0, op, ": ab must be [..., 2K] ([a | b]), got ", ab.shape());
    const int64_t K = ab.shape().back() / 2, N = W.size(0), M = K ? ab.numel() / (2 * K) : 0;
    RN_CHECK(W.dim() == 2 && W.size(1) == K, op, ": W must be [N, ", K, "] for ab ", ab.shape(), ", got ", W.shape());
    if (M > 0 && fusable({ab}, W)) {
        Tensor y = empty(with_last(ab.shape(), N), ab.dtype(), ab.device());
        cuda::GemvPrologue p;
        p.kind = cuda::GemvPrologue::kSiluMul;
        const size_t half = size_t(K) * dtype_size(ab.dtype());
        p.x = ab.raw_data(), p.ldx = 2 * K;
        p.res = static_cast<const char*>(ab.raw_data()) + half, p.ldr = 2 * K;
        if (cuda::gemv_rows_prologue(ab.dtype(), M, N, K, p, W.raw_data(), K, y.raw_data(), N)) return y;
    }
    return matmul(silu_mul(ab.narrow(-1, 0, K), ab.narrow(-1, K, K)), W.t());
}

Tensor retention_step_gated(const Tensor& y, const Tensor& pos, const std::vector<double>& gamma, const Tensor& state,
                            double k_scale, double eps) {
    const auto [B, H, Dk, Dv] = check_step("retention_step_gated", y, state);
    const int64_t kd = H * Dk, vd = H * Dv;
    if (step_kernel_inputs(y, pos, state)) {
        Tensor scratch = empty({B, H, Dv}, y.dtype(), y.device()), z = empty({B, 1, vd}, y.dtype(), y.device());
        if (cuda::retention_step_gated(y.dtype(), B, H, Dk, Dv, gamma, pos.data<int64_t>(), y.raw_data(), y.size(2),
                                       k_scale, eps, state.raw_data(), scratch.raw_data(), z.raw_data())) {
            state.bump_version();
            return z;
        }
    }
    Tensor qk = xpos_rotate(y.narrow(-1, 0, 2 * kd), Dk, pos, 1.0, kd, k_scale);
    Tensor q = qk.narrow(-1, 0, kd).reshape({B, H, Dk}), k = qk.narrow(-1, kd, kd).reshape({B, H, Dk});
    Tensor v = y.narrow(-1, 2 * kd, vd).reshape({B, H, Dv}), g = y.narrow(-1, 2 * kd + vd, vd).reshape({B, H, Dv});
    Tensor o = retention_step(q, k, v, gamma, state, pos);
    return gated_rms_norm(o, g, eps).reshape({B, 1, vd});
}

Tensor retention_step_gated_linear(const Tensor& y, const Tensor& pos, const std::vector<double>& gamma,
                                   const Tensor& state, double k_scale, double eps, const Tensor& W) {
    const char* op = "retention_step_gated_linear";
    const auto [B, H, Dk, Dv] = check_step(op, y, state);
    check_defined(W, op, "W");
    const int64_t K = H * Dv;
    RN_CHECK(W.dim() == 2 && W.size(1) == K, op, ": W must be [N, ", K, "] (H·Dv of the state), got ", W.shape());
    if (B <= gate_in_product_rows && step_kernel_inputs(y, pos, state) && fusable({y}, W)) {
        const int64_t N = W.size(0);
        Tensor o = empty({B, H, Dv}, y.dtype(), y.device());
        cuda::GemvPrologue p;
        p.kind = cuda::GemvPrologue::kGroupGate;
        p.x = o.raw_data(), p.ldx = K;
        p.res = static_cast<const char*>(y.raw_data()) + (2 * H * Dk + K) * int64_t(dtype_size(y.dtype()));  // g
        p.ldr = y.size(2), p.group = Dv, p.eps = float(eps);
        // asked before the step runs: once it has updated the state, nothing may run it again
        if (cuda::gemv_prologue_applies(y.dtype(), B, N, K, p, W.raw_data(), K) &&
            cuda::retention_step_gated(y.dtype(), B, H, Dk, Dv, gamma, pos.data<int64_t>(), y.raw_data(), y.size(2),
                                       k_scale, eps, state.raw_data(), o.raw_data(), nullptr)) {
            state.bump_version();
            Tensor out = empty({B, 1, N}, y.dtype(), y.device());
            RN_CHECK(cuda::gemv_rows_prologue(y.dtype(), B, N, K, p, W.raw_data(), K, out.raw_data(), N), op,
                     ": the product refused arguments gemv_prologue_applies accepted");
            return out;
        }
    }
    return matmul(retention_step_gated(y, pos, gamma, state, k_scale, eps), W.t());
}

std::pair<Tensor, Tensor> logits_row_stats(const Tensor& logits, const Tensor& ids) {
    const char* op = "logits_row_stats";
    check_defined(logits, op, "logits");
    RN_CHECK(logits.dim() == 2 && logits.size(1) > 0, op, ": logits must be [n, V] with V > 0, got ", logits.shape());
    const int64_t n = logits.size(0), V = logits.size(1);
    const bool with_argmax = ids.defined();
    RN_CHECK(!with_argmax || (ids.shape() == Shape({V}) && ids.dtype() == DType::f32 && ids.device() == logits.device()),
             op, ": ids must be arange(", V, ") in f32 on ", logits.device(), ", got ", ids.shape(), " ", ids.dtype(),
             " on ", ids.device());
    if (fusion_on && logits.is_cuda() && logits.is_contiguous() && !any_requires_grad({logits}) && n > 0) {
        Tensor l32 = empty({n, V}, DType::f32, logits.device()), stats = empty({with_argmax ? 3 : 2, n}, DType::f32, logits.device());
        if (cuda::logits_stats(logits.dtype(), logits.raw_data(), n, V, with_argmax, l32.data<float>(), stats.data<float>()))
            return {l32, stats};
    }
    // computed where the logits are and stacked [k, n] so that one copy brings them to the
    // host (n floats each, not n×V exps for the host to do)
    Tensor l32 = logits.to(DType::f32);
    Tensor mx = max(l32, {1}, true);  // [n, 1]
    Tensor shifted = l32 - mx;        // 0 exactly at the maxima
    std::vector<Tensor> rows = {log(sum(exp(shifted), {1})) + mx.squeeze(1), mx.squeeze(1)};
    if (with_argmax)  // the smallest position where shifted is 0: min as −max(−x); `where` takes nonzero as true
        rows.push_back(-max(-where(shifted, full({1}, double(V), DType::f32, l32.device()), ids), {1}));
    return {l32, stack(rows, 0)};
}

}  // namespace rn
