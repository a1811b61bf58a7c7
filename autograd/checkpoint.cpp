// autograd/checkpoint.cpp — activation checkpointing (autograd/checkpoint.h).
#include "autograd/checkpoint.h"

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/error.h"

namespace rn {

namespace {
struct CheckpointBackward : Node {
    std::function<Tensor(const Tensor&)> fn;
    SavedTensor x;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        // recompute with recording on, from a fresh leaf standing for x
        Tensor xi = x.get("CheckpointBackward").detach();
        if (needs_input_grad(0)) xi.requires_grad_();
        Tensor y;
        {
            EnableGradGuard on;
            y = fn(xi);
        }
        RN_CHECK(y.shape() == output_meta[0].shape && y.dtype() == output_meta[0].dtype, "checkpoint: the function "
                 "gave ", y.shape(), " ", y.dtype(), " when recomputed, ", output_meta[0].shape, " ",
                 output_meta[0].dtype, " the first time: it must compute the same thing both times");
        if (y.requires_grad()) run_backward({y}, {g[0]});
        return {needs_input_grad(0) ? xi.grad() : Tensor()};
    }
    void release() override {
        x.reset();
        fn = nullptr;
    }
    std::string name() const override { return "CheckpointBackward"; }
};
}  // namespace

Tensor checkpoint(std::function<Tensor(const Tensor&)> fn, const Tensor& x) {
    RN_CHECK(fn != nullptr, "checkpoint: no function");
    Tensor y;
    {
        NoGradGuard off;
        y = fn(x);
    }
    // recorded whenever grad mode is on: fn's parameters need the backward even when x
    // itself needs no gradient (the first layer's input, from an embedding, does)
    if (GradMode::enabled()) {
        auto n = std::make_shared<CheckpointBackward>();
        n->fn = std::move(fn);
        n->x = SavedTensor(x);
        record(n, {x}, {y});
    }
    return y;
}

}  // namespace rn
