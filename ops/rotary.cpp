// ops/rotary.cpp — the rotation ops (RetNet's xPos rotation, the Transformer's half-split
// RoPE): checks, frequencies, dispatch to the CPU (ops/rotary_cpu.cpp) or CUDA
// (cuda/rotary.cu) kernel, and the backwards (each the inverse rotation).
#include "ops/rotary.h"

#include <cmath>

#include "autograd/node.h"
#include "cuda/rotary.h"
#include "ops/op_util.h"

namespace rn {

double xpos_theta(int64_t i, int64_t head_dim) {
    int64_t half = head_dim / 2;
    double frac = half > 1 ? double(i) / double(half - 1) : 0.0;  // torch.linspace(0, 1, half)
    return 1.0 / std::pow(10000.0, frac);
}

namespace {
void rotate_into(const Tensor& y, const Tensor& x, const Tensor& pos, int64_t head_dim, int sign, double scale,
                 int64_t split, double scale_hi) {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
    if (x.is_cuda())
        cuda::xpos_rotate(x.dtype(), y.raw_data(), x.raw_data(), pos.data<int64_t>(), B, T, C, head_dim, sign, scale,
                          split, scale_hi);
    else
        cpu::xpos_rotate(x.dtype(), y.raw_data(), x.raw_data(), pos.data<int64_t>(), B, T, C, head_dim, sign, scale,
                         split, scale_hi);
}

// d/dx s_c·rotate(x, n) = s_c·rotate(grad, −n), s_c the column's scale
struct XposRotateBackward : Node {
    int64_t head_dim = 0, split = -1;
    double scale = 1.0, scale_hi = 1.0;
    Tensor pos;  // [B] i64 on x's device: plain integers, never written, no version check needed
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor dy = contiguous_nograd(g[0]);
        Tensor dx = empty_like(dy);
        rotate_into(dx, dy, pos, head_dim, -1, scale, split, scale_hi);
        return {dx};
    }
    std::string name() const override { return "XposRotateBackward"; }
};
}  // namespace

Tensor xpos_rotate(const Tensor& x_in, int64_t head_dim, const Tensor& pos_in, double scale, int64_t split,
                   double scale_hi) {
    const char* op = "xpos_rotate";
    check_defined(x_in, op);
    check_floating(x_in, op);
    RN_CHECK(x_in.dim() == 3, op, ": x must be [B, T, H·Dk], got ", x_in.shape());
    RN_CHECK(head_dim >= 2 && head_dim % 2 == 0 && x_in.size(2) % head_dim == 0, op, ": head_dim ", head_dim,
             " must be even and divide the last dim ", x_in.size(2));
    RN_CHECK(pos_in.defined() && pos_in.shape() == Shape({x_in.size(0)}), op, ": pos must be [B] = [", x_in.size(0),
             "], got ", pos_in.defined() ? pos_in.shape() : Shape{});
    check_index_dtype(pos_in, op);
    RN_CHECK(split < 0 || (split <= x_in.size(2) && split % head_dim == 0), op, ": split ", split,
             " must be a multiple of head_dim ", head_dim, " within the last dim ", x_in.size(2));
    Tensor x = contiguous_nograd(x_in);
    Tensor pos = to_device_nograd(contiguous_nograd(cast_nograd(pos_in, DType::i64)), x.device());
    Tensor y = empty_like(x);
    rotate_into(y, x, pos, head_dim, +1, scale, split, scale_hi);
    if (any_requires_grad({x_in})) {
        auto n = std::make_shared<XposRotateBackward>();
        n->head_dim = head_dim;
        n->scale = scale;
        n->split = split;
        n->scale_hi = scale_hi;
        n->pos = pos;
        record(n, {x_in}, {y});
    }
    return y;
}

Tensor xpos_rotate(const Tensor& x, int64_t head_dim, int64_t pos0, double scale) {
    RN_CHECK(x.defined() && x.dim() == 3, "xpos_rotate: x must be [B, T, H·Dk]");
    return xpos_rotate(x, head_dim, full({x.size(0)}, double(pos0), DType::i64, x.device()), scale);
}

// ---------------------------------------------------------------- half-split RoPE
double rope_inv_freq(int64_t i, int64_t head_dim, double theta) {
    return std::pow(theta, -2.0 * double(i) / double(head_dim));
}

namespace {
void rope_into(const Tensor& y, const Tensor& x, const Tensor& pos, int64_t head_dim, double theta, int sign) {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
    if (x.is_cuda())
        cuda::rope_rotate(x.dtype(), y.raw_data(), x.raw_data(), pos.data<int64_t>(), B, T, C, head_dim, theta, sign);
    else
        cpu::rope_rotate(x.dtype(), y.raw_data(), x.raw_data(), pos.data<int64_t>(), B, T, C, head_dim, theta, sign);
}

// a rotation is orthogonal: its adjoint, the gradient's map, is the rotation by −n
struct RopeRotateBackward : Node {
    int64_t head_dim = 0;
    double theta = 10000.0;
    Tensor pos;  // [B] i64 on x's device: plain integers, never written, no version check needed
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor dy = contiguous_nograd(g[0]);
        Tensor dx = empty_like(dy);
        rope_into(dx, dy, pos, head_dim, theta, -1);
        return {dx};
    }
    std::string name() const override { return "RopeRotateBackward"; }
};
}  // namespace

Tensor rope_rotate(const Tensor& x_in, int64_t head_dim, const Tensor& pos_in, double theta) {
    const char* op = "rope_rotate";
    check_defined(x_in, op);
    check_floating(x_in, op);
    RN_CHECK(x_in.dim() == 3, op, ": x must be [B, T, H·D], got ", x_in.shape());
    RN_CHECK(head_dim >= 2 && head_dim % 2 == 0 && x_in.size(2) % head_dim == 0, op, ": head_dim ", head_dim,
             " must be even and divide the last dim ", x_in.size(2));
    RN_CHECK(std::isfinite(theta) && theta > 1, op, ": theta must be a number > 1, got ", theta);
    RN_CHECK(pos_in.defined() && pos_in.shape() == Shape({x_in.size(0)}), op, ": pos must be [B] = [", x_in.size(0),
             "], got ", pos_in.defined() ? pos_in.shape() : Shape{});
    check_index_dtype(pos_in, op);
    Tensor x = contiguous_nograd(x_in);
    Tensor pos = to_device_nograd(contiguous_nograd(cast_nograd(pos_in, DType::i64)), x.device());
    Tensor y = empty_like(x);
    rope_into(y, x, pos, head_dim, theta, +1);
    if (any_requires_grad({x_in})) {
        auto n = std::make_shared<RopeRotateBackward>();
        n->head_dim = head_dim;
        n->theta = theta;
        n->pos = pos;
        record(n, {x_in}, {y});
    }
    return y;
}

Tensor rope_rotate(const Tensor& x, int64_t head_dim, int64_t pos0, double theta) {
    RN_CHECK(x.defined() && x.dim() == 3, "rope_rotate: x must be [B, T, H·D]");
    return rope_rotate(x, head_dim, full({x.size(0)}, double(pos0), DType::i64, x.device()), theta);
}

}  // namespace rn
