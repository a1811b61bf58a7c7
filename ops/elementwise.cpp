// ops/elementwise.cpp — the pointwise ops and their backward nodes.
// Unary backwards are fused kernels (one pass, dx = dy * f'(x)); binary backwards are
// written with other ops, then summed back over broadcast dims by sum_to.
#include "ops/elementwise.h"

#include "autograd/node.h"
#include "cuda/elementwise.h"
#include "ops/op_util.h"
#include "ops/reduce.h"

namespace rn {

const char* unary_name(UnaryOp op) {
    static const char* names[] = {"neg",  "exp",     "log",  "sqrt", "rsqrt", "abs",    "tanh",
                                  "sigmoid", "silu", "gelu", "relu", "affine", "pow"};
    return names[int(op)];
}
const char* binary_name(BinaryOp op) {
    static const char* names[] = {"add", "sub", "mul", "div", "pow"};
    return names[int(op)];
}

namespace {
// which saved value each unary backward reads
bool needs_x(UnaryOp op) {
    switch (op) {
        case UnaryOp::log: case UnaryOp::abs: case UnaryOp::silu: case UnaryOp::gelu:
        case UnaryOp::relu: case UnaryOp::pow_scalar: return true;
        default: return false;
    }
}
bool needs_y(UnaryOp op) {
    switch (op) {
        case UnaryOp::exp: case UnaryOp::sqrt: case UnaryOp::rsqrt: case UnaryOp::tanh:
        case UnaryOp::sigmoid: return true;
        default: return false;
    }
}

// d/dx f(x) = grad * f'(x), f' per op in elementwise_cpu.cpp
struct UnaryBackward : Node {
    UnaryOp op;
    double alpha = 0, beta = 0;
    SavedTensor x, y;  // only the one the derivative reads
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor dy = contiguous_nograd(g[0]);
        Tensor xs = x.get("UnaryBackward"), ys = y.get("UnaryBackward");
        Tensor dx = empty_like(dy);
        const void* xp = xs.defined() ? xs.raw_data() : nullptr;
        const void* yp = ys.defined() ? ys.raw_data() : nullptr;
        if (dy.is_cuda()) cuda::unary_backward(op, dy.dtype(), dx.raw_data(), dy.raw_data(), xp, yp, dy.numel(), alpha, beta);
        else cpu::unary_backward(op, dy.dtype(), dx.raw_data(), dy.raw_data(), xp, yp, dy.numel(), alpha, beta);
        return {dx};
    }
    void release() override { x.reset(); y.reset(); }
    std::string name() const override { return std::string(unary_name(op)) + "Backward"; }
};

Tensor unary(UnaryOp op, const Tensor& x_in, double alpha = 0, double beta = 0) {
    const char* name = unary_name(op);
    check_defined(x_in, name);
    check_floating(x_in, name);
    Tensor x = contiguous_nograd(x_in);
    Tensor y = empty(x.shape(), x.dtype(), x.device());
    if (x.is_cuda()) cuda::unary_forward(op, x.dtype(), y.raw_data(), x.raw_data(), x.numel(), alpha, beta);
    else cpu::unary_forward(op, x.dtype(), y.raw_data(), x.raw_data(), x.numel(), alpha, beta);
    if (any_requires_grad({x_in})) {
        auto n = std::make_shared<UnaryBackward>();
        n->op = op;
        n->alpha = alpha;
        n->beta = beta;
        if (needs_x(op)) n->x = SavedTensor(x);
        if (needs_y(op)) n->y = SavedTensor(y);
        record(n, {x_in}, {y});
    }
    return y;
}

Tensor binary_nograd(BinaryOp op, const Tensor& a, const Tensor& b) {
    const char* name = binary_name(op);
    check_same_dtype_device(a, b, name);
    Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
    Tensor out = empty(shape, a.dtype(), a.device());
    Shape sa = broadcast_strides(a, shape), sb = broadcast_strides(b, shape);
    if (a.is_cuda()) cuda::binary_forward(op, a.dtype(), out.raw_data(), a.raw_data(), b.raw_data(), shape, sa, sb);
    else cpu::binary_forward(op, a.dtype(), out.raw_data(), a.raw_data(), b.raw_data(), shape, sa, sb);
    return out;
}

struct BinaryBackward : Node {
    BinaryOp op;
    SavedTensor a, b, out;  // what the derivative of `op` reads
    std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
        const Tensor& g = grads[0];
        const Shape& sa = input_meta[0].shape;
        const Shape& sb = input_meta[1].shape;
        Tensor ga, gb;
        switch (op) {
            case BinaryOp::add:  // d(a+b) = g, g
                if (needs_input_grad(0)) ga = sum_to(g, sa);
                if (needs_input_grad(1)) gb = sum_to(g, sb);
                break;
            case BinaryOp::sub:  // d(a-b) = g, -g
                if (needs_input_grad(0)) ga = sum_to(g, sa);
                if (needs_input_grad(1)) gb = sum_to(neg(g), sb);
                break;
            case BinaryOp::mul:  // d(a*b) = g*b, g*a
                if (needs_input_grad(0)) ga = sum_to(g * b.get("mulBackward"), sa);
                if (needs_input_grad(1)) gb = sum_to(g * a.get("mulBackward"), sb);
                break;
            case BinaryOp::div: {  // d(a/b) = g/b, -g*a/b²
                Tensor bv = b.get("divBackward");
                if (needs_input_grad(0)) ga = sum_to(g / bv, sa);
                if (needs_input_grad(1)) gb = sum_to(neg(g * a.get("divBackward")) / (bv * bv), sb);
                break;
            }
            case BinaryOp::pow: {  // d(a^b) = g*b*a^(b-1), g*a^b*log(a)
                Tensor av = a.get("powBackward"), bv = b.get("powBackward");
                if (needs_input_grad(0)) ga = sum_to(g * bv * pow(av, bv - 1.0), sa);
                if (needs_input_grad(1)) gb = sum_to(g * out.get("powBackward") * log(av), sb);
                break;
            }
        }
        return {ga, gb};
    }
    void release() override { a.reset(); b.reset(); out.reset(); }
    std::string name() const override { return std::string(binary_name(op)) + "Backward"; }
};

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
    Tensor out = binary_nograd(op, a, b);
    if (any_requires_grad({a, b})) {
        auto n = std::make_shared<BinaryBackward>();
        n->op = op;
        bool ga = a.requires_grad(), gb = b.requires_grad();
        if ((op == BinaryOp::mul && gb) || op == BinaryOp::div || op == BinaryOp::pow) n->a = SavedTensor(a);
        if ((op == BinaryOp::mul && ga) || op == BinaryOp::div || op == BinaryOp::pow) n->b = SavedTensor(b);
        if (op == BinaryOp::pow) n->out = SavedTensor(out);
        record(n, {a, b}, {out});
    }
    return out;
}
}  // namespace

Tensor neg(const Tensor& x) { return unary(UnaryOp::neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::rsqrt, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::abs, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::sigmoid, x); }
Tensor silu(const Tensor& x) { return unary(UnaryOp::silu, x); }
Tensor gelu(const Tensor& x) { return unary(UnaryOp::gelu, x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::relu, x); }
Tensor pow(const Tensor& x, double p) { return unary(UnaryOp::pow_scalar, x, p); }
Tensor affine(const Tensor& x, double alpha, double beta) { return unary(UnaryOp::affine, x, alpha, beta); }

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::pow, a, b); }

}  // namespace rn
