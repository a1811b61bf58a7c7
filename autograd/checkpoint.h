// autograd/checkpoint.h — activation checkpointing: y = fn(x) with none of fn's
// activations kept for the backward. The forward runs fn without recording a graph and
// keeps only x; the backward runs fn again on x with recording on, then back-propagates
// the incoming gradient through that fresh graph (a nested run of the engine): the
// parameters fn uses get their gradients there (their post-accumulate hooks fire as
// usual, once per backward), and x's gradient goes on to the outer graph. Memory for a
// model checkpointed per layer: one layer's activations at a time plus each layer's input,
// for about one more forward pass of compute.
//
// fn must compute the same thing both times: no randomness (dropout) inside it, and it
// must not depend on state that changes between the forward and the backward. It may use
// collectives (context parallelism) as long as every rank checkpoints alike: they run
// again, in the same order, during the backward. fn and what it captures are kept until
// the backward: capture by value.
#pragma once
#include <functional>

#include "core/tensor.h"

namespace rn {

Tensor checkpoint(std::function<Tensor(const Tensor&)> fn, const Tensor& x);

}  // namespace rn
