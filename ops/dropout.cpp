// ops/dropout.cpp — dropout: checks, the mask's place in the generator's stream, dispatch
// to the CPU (ops/dropout_cpu.cpp) or CUDA (cuda/dropout.cu) kernels, and the backward node.
#include "ops/dropout.h"

#include "autograd/node.h"
#include "cuda/dropout.h"
#include "ops/op_util.h"

namespace rn {

namespace {
// d/dx dropout(x) = grad * mask / (1 - p)
struct DropoutBackward : Node {
    SavedTensor mask;  // 0/1 in x's dtype, contiguous, x's shape
    double scale = 1.0;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        Tensor m = mask.get("DropoutBackward");
        Tensor dy = contiguous_nograd(g[0]);
        Tensor dx = empty_like(dy);
        if (dy.is_cuda())
            cuda::dropout_backward(dy.dtype(), dx.raw_data(), dy.raw_data(), m.raw_data(), dy.numel(), scale);
        else
            cpu::dropout_backward(dy.dtype(), dx.raw_data(), dy.raw_data(), m.raw_data(), dy.numel(), scale);
        return {dx};
    }
    void release() override { mask.reset(); }
    std::string name() const override { return "DropoutBackward"; }
};
}  // namespace

Tensor dropout(const Tensor& x_in, double p, bool training, Generator& gen) {
    check_defined(x_in, "dropout");
    // checked even in eval mode: a bad p is a bug wherever it is found
    RN_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p,
             ". HINT: p is the probability of dropping an element; p = 1 would drop everything");
    if (!training || p == 0.0) return x_in;
    check_floating(x_in, "dropout");
    Tensor x = contiguous_nograd(x_in);
    const int64_t n = x.numel();
    const double scale = 1.0 / (1.0 - p);
    const uint64_t seed = gen.seed();
    const uint64_t base = gen.advance(uint64_t(n));
    Tensor y = empty(x.shape(), x.dtype(), x.device());
    Tensor mask = empty(x.shape(), x.dtype(), x.device());
    if (x.is_cuda())
        cuda::dropout_forward(x.dtype(), y.raw_data(), mask.raw_data(), x.raw_data(), n, p, scale, seed, base);
    else
        cpu::dropout_forward(x.dtype(), y.raw_data(), mask.raw_data(), x.raw_data(), n, p, scale, seed, base);
    if (any_requires_grad({x_in})) {
        auto node = std::make_shared<DropoutBackward>();
        node->mask = SavedTensor(mask);
        node->scale = scale;
        record(node, {x_in}, {y});
    }
    return y;
}

}  // namespace rn
