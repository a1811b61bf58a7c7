// autograd/engine.cpp — the backward engine.
//
// Note [Iterative engine]: a recurrent unroll makes graphs T×L nodes deep, so nothing here
// recurses. One explicit-stack walk counts, for every node, how many edges point at it;
// then a ready stack runs a node once all its gradients have arrived, sums gradients per
// input, checks each against the forward input's shape/dtype/device, and hands it on.
// Only tensors and node pointers live in the maps: the graph can be arbitrarily deep.
#include "autograd/engine.h"

#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/tensor_math.h"

namespace rn {

namespace {
// slot += g for the gradient buffer of one input. Where the engine alone holds slot (a
// fresh gradient some node returned and then dropped) it is added to in place; otherwise
// slot may alias a gradient flowing elsewhere (a node that passes its incoming gradient on
// unchanged, as a residual add does to both its inputs), so the sum is a new tensor, made in
// one pass on the GPU (it was a copy and then an add: 5 tensor passes where 3 do). Either way the same
// values: each element is acc + g rounded once to acc's dtype.
void add_grad(Tensor& slot, const Tensor& g) {
    if (slot.is_unique() && slot.is_contiguous())
        accumulate_nograd(slot, g);
    else
        slot = sum_nograd(slot, g);
}

void check_grad(const Node& node, size_t i, const Tensor& g) {
    const TensorMeta& m = node.input_meta[i];
    RN_CHECK(g.shape() == m.shape, node.name(), " returned a gradient of shape ", g.shape(), " for input ",
             i, ", whose shape is ", m.shape);
    RN_CHECK(g.dtype() == m.dtype, node.name(), " returned a gradient of dtype ", g.dtype(), " for input ",
             i, ", whose dtype is ", m.dtype);
    RN_CHECK(g.device() == m.device, node.name(), " returned a gradient on ", g.device(), " for input ", i,
             ", which lives on ", m.device);
}
}  // namespace

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
    run_backward({*this}, {grad}, retain_graph);
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
    RN_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " roots but ", grads.size(), " gradients");
    std::unordered_map<Node*, std::vector<Tensor>> buffers;
    std::unordered_map<Node*, int64_t> deps;
    std::vector<std::shared_ptr<Node>> root_nodes;

    for (size_t r = 0; r < roots.size(); ++r) {
        const Tensor& root = roots[r];
        RN_CHECK(root.defined(), "backward: undefined root tensor");
        RN_CHECK(root.requires_grad(), "backward: the tensor does not require grad and has no grad_fn. "
                 "HINT: call requires_grad_() on the parameters before the forward pass");
        Tensor g = grads[r];
        if (!g.defined()) {
            RN_CHECK(root.numel() == 1, "backward: a gradient can be implied only for a one-element output; "
                     "this one has shape ", root.shape(), ". HINT: pass the gradient explicitly");
            g = ones(root.shape(), root.dtype(), root.device());
        }
        RN_CHECK(g.shape() == root.shape(), "backward: gradient of shape ", g.shape(),
                 " for a root of shape ", root.shape());
        Edge e = gradient_edge(root);
        auto& buf = buffers[e.fn.get()];
        buf.resize(std::max<size_t>(buf.size(), e.fn->output_meta.empty() ? 1 : e.fn->output_meta.size()));
        if (buf[e.input_nr].defined())
            add_grad(buf[e.input_nr], g);
        else
            buf[e.input_nr] = g;
        root_nodes.push_back(e.fn);
    }

    // pass 1: dependency counts, by an explicit-stack walk
    {
        std::vector<Node*> stack;
        std::unordered_set<Node*> seen;
        for (auto& n : root_nodes)
            if (seen.insert(n.get()).second) stack.push_back(n.get());
        while (!stack.empty()) {
            Node* n = stack.back();
            stack.pop_back();
            for (const Edge& e : n->next) {
                if (!e.valid()) continue;
                deps[e.fn.get()] += 1;
                if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
            }
        }
    }

    // pass 2: run nodes whose gradients are complete
    NoGradGuard no_grad;  // gradients themselves are not recorded
    std::vector<std::shared_ptr<Node>> ready;
    {
        std::unordered_set<Node*> queued;
        for (auto& n : root_nodes)
            if (deps[n.get()] == 0 && queued.insert(n.get()).second) ready.push_back(n);
    }
    while (!ready.empty()) {
        std::shared_ptr<Node> node = std::move(ready.back());
        ready.pop_back();
        RN_CHECK(!node->released, "backward through ", node->name(), " a second time: its saved tensors were "
                 "freed. HINT: pass retain_graph=true to the first backward()");
        std::vector<Tensor> in = std::move(buffers[node.get()]);
        buffers.erase(node.get());
        in.resize(std::max<size_t>(in.size(), node->output_meta.size()));
        for (size_t i = 0; i < node->output_meta.size(); ++i)
            if (!in[i].defined()) {
                const TensorMeta& m = node->output_meta[i];
                in[i] = zeros(m.shape, m.dtype, m.device);
            }
        std::vector<Tensor> out = node->apply(std::move(in));
        if (!retain_graph && !node->reusable) {
            node->release();
            node->released = true;
        }
        RN_CHECK(out.size() == node->next.size() || node->next.empty(), node->name(), " returned ", out.size(),
                 " gradients for ", node->next.size(), " inputs");
        for (size_t i = 0; i < node->next.size(); ++i) {
            const Edge& e = node->next[i];
            if (!e.valid()) continue;
            if (out[i].defined()) {
                check_grad(*node, i, out[i]);
                auto& buf = buffers[e.fn.get()];
                buf.resize(std::max<size_t>(buf.size(), std::max<size_t>(e.fn->output_meta.size(), 1)));
                Tensor& slot = buf[e.input_nr];
                if (slot.defined())
                    add_grad(slot, out[i]);
                else
                    slot = out[i];
            }
            if (--deps[e.fn.get()] == 0) ready.push_back(e.fn);
        }
    }
}

}  // namespace rn
