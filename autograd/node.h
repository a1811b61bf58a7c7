// autograd/node.h — the backward graph: Node, Edge, SavedTensor, AccumulateGrad, and the
// recording helpers every op uses.
//
// A Node is the backward of one forward call. Its inputs (in backward) are the gradients
// of the forward outputs; its outputs are the gradients of the forward inputs, one per
// Edge in `next`. The engine checks every gradient a node returns against `input_meta`
// (shape, dtype, device of that forward input) and throws naming the node on a mismatch.
//
// Note [Saving tensors]: a node saves detached handles (same storage, no grad_fn), so a
// node that saves its own output makes no reference cycle, and it records the storage
// version at save time: an in-place write before backward is then reported, not silently
// used.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rn {

struct Node;

struct Edge {
    std::shared_ptr<Node> fn;  // null: the input needs no gradient
    uint32_t input_nr = 0;     // which of fn's backward inputs receives this gradient
    bool valid() const { return fn != nullptr; }
};

struct TensorMeta {
    Shape shape;
    DType dtype = DType::f32;
    Device device;
    static TensorMeta of(const Tensor& t) { return {t.shape(), t.dtype(), t.device()}; }
};

class SavedTensor {
public:
    SavedTensor() = default;
    explicit SavedTensor(const Tensor& t);
    // the saved tensor; throws if it was freed or modified in place since it was saved
    Tensor get(const char* node_name) const;
    bool defined() const { return tensor_.defined(); }
    void reset() { tensor_ = Tensor(); freed_ = true; }

private:
    Tensor tensor_;
    uint64_t version_ = 0;
    bool freed_ = false;
};

struct Node {
    std::vector<Edge> next;               // one per forward input
    std::vector<TensorMeta> input_meta;   // the forward inputs' shapes, parallel to next
    std::vector<TensorMeta> output_meta;  // the forward outputs' shapes (backward inputs)
    bool released = false;  // set after a backward without retain_graph
    bool reusable = false;  // AccumulateGrad: stateless, shared by every graph over a leaf

    // Note [Iterative graph teardown]: destroying the last handle on a 100,000-node chain
    // must not recurse 100,000 destructors deep; ~Node hands its edges to a work list.
    virtual ~Node();
    // grads: one defined tensor per forward output (the engine fills unused ones with zeros).
    // Returns one gradient per forward input; undefined where next[i] is invalid.
    virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
    // frees saved tensors once backward has used them (unless retain_graph)
    virtual void release() {}
    virtual std::string name() const = 0;

    // true when forward input i needs a gradient: compute only those (flashlight's habit)
    bool needs_input_grad(size_t i) const { return i < next.size() && next[i].valid(); }
};

// The sink at each leaf: adds the incoming gradient into the leaf's .grad.
struct AccumulateGrad : Node {
    AccumulateGrad() { reusable = true; }
    // strong: a live graph keeps its leaves alive; the leaf points back only weakly
    // (AutogradMeta::grad_accumulator), so there is no cycle
    Tensor leaf;
    std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
    std::string name() const override { return "AccumulateGrad"; }
};

// ---- hooks on leaves
// Note [Post-accumulate hooks]: data-parallel training (dist/data_parallel.h) must know
// the moment a parameter's gradient for this backward is complete, to start reducing it
// while the rest of backward runs. AccumulateGrad runs once per leaf per backward (the
// engine sums every path first), so a hook called after it sees the final gradient.
struct GradHooks {
    std::vector<std::function<void(const Tensor& leaf)>> post_accumulate;
};
// `hook(leaf)` runs after every accumulation into leaf.grad (leaf must require grad)
void add_post_accumulate_grad_hook(const Tensor& leaf, std::function<void(const Tensor&)> hook);
void clear_post_accumulate_grad_hooks(const Tensor& leaf);

// ---- recording helpers used by ops
// true when grad mode is on and any defined input requires grad
bool any_requires_grad(const std::vector<Tensor>& inputs);
// the edge a gradient for `t` must flow along (its grad_fn, its leaf accumulator, or none)
Edge gradient_edge(const Tensor& t);
// wires `node` to `inputs` and makes `node` the grad_fn of each output
void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs);

}  // namespace rn
