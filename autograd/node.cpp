// autograd/node.cpp — grad mode, saved tensors, AccumulateGrad, recording, and the
// autograd half of Tensor's methods (requires_grad_, grad, detach, ...).
#include "autograd/node.h"

#include "autograd/grad_mode.h"
#include "core/tensor_math.h"

namespace rn {

namespace {
thread_local bool grad_enabled = true;

AutogradMeta& meta_of(const Tensor& t) {
    TensorImpl* impl = t.impl();
    if (!impl->autograd) impl->autograd = std::make_unique<AutogradMeta>();
    return *impl->autograd;
}
}  // namespace

bool GradMode::enabled() { return grad_enabled; }
void GradMode::set_enabled(bool on) { grad_enabled = on; }

// ---- Node teardown (Note [Iterative graph teardown])
Node::~Node() {
    thread_local bool tearing_down = false;
    thread_local std::vector<std::shared_ptr<Node>> pending;
    for (auto& e : next)
        if (e.fn) pending.push_back(std::move(e.fn));
    next.clear();
    if (tearing_down) return;  // an outer ~Node is draining the list
    tearing_down = true;
    while (!pending.empty()) {
        std::shared_ptr<Node> n = std::move(pending.back());
        pending.pop_back();
        n.reset();  // if this was the last reference, its ~Node appends its own edges
    }
    tearing_down = false;
}

// ---- SavedTensor
SavedTensor::SavedTensor(const Tensor& t) {
    if (!t.defined()) return;
    tensor_ = t.detach();
    version_ = t.version();
}

Tensor SavedTensor::get(const char* node_name) const {
    RN_CHECK(!freed_, node_name, ": its saved tensors were already freed by an earlier backward. "
             "HINT: pass retain_graph=true to the first backward() to run backward twice");
    if (!tensor_.defined()) return tensor_;
    RN_CHECK(tensor_.version() == version_, node_name,
             ": a tensor needed for the gradient was modified by an in-place operation after it "
             "was saved (version ", version_, " saved, now ", tensor_.version(),
             "). HINT: use an out-of-place op or clone() before writing in place");
    return tensor_;
}

// ---- AccumulateGrad
std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
    const Tensor& leaf_t = leaf;
    const Tensor& g = grads[0];
    AutogradMeta& m = meta_of(leaf_t);
    if (!m.grad.defined()) {
        if (g.is_unique() && g.is_contiguous() && g.dtype() == leaf_t.dtype() && g.shape() == leaf_t.shape()) {
            m.grad = g;  // nobody else holds it (the engine moved its buffer here): adopt, no copy
        } else {
            // otherwise own a fresh contiguous copy: g may alias a gradient flowing elsewhere
            Tensor own = empty(leaf_t.shape(), leaf_t.dtype(), leaf_t.device());
            copy_nograd(own, g);
            m.grad = own;
        }
    } else {
        accumulate_nograd(m.grad, g);
    }
    if (m.post_accumulate_hooks)  // Note [Post-accumulate hooks]
        for (auto& hook : m.post_accumulate_hooks->post_accumulate) hook(leaf_t);
    return {};
}

// ---- hooks on leaves
void add_post_accumulate_grad_hook(const Tensor& leaf, std::function<void(const Tensor&)> hook) {
    RN_CHECK(leaf.defined() && leaf.is_leaf() && leaf.requires_grad(),
             "add_post_accumulate_grad_hook: expected a leaf that requires grad");
    AutogradMeta& m = meta_of(leaf);
    if (!m.post_accumulate_hooks) m.post_accumulate_hooks = std::make_shared<GradHooks>();
    m.post_accumulate_hooks->post_accumulate.push_back(std::move(hook));
}

void clear_post_accumulate_grad_hooks(const Tensor& leaf) {
    if (leaf.defined() && leaf.impl()->autograd) leaf.impl()->autograd->post_accumulate_hooks.reset();
}

// ---- recording
bool any_requires_grad(const std::vector<Tensor>& inputs) {
    if (!GradMode::enabled()) return false;
    for (const auto& t : inputs)
        if (t.defined() && t.requires_grad()) return true;
    return false;
}

Edge gradient_edge(const Tensor& t) {
    if (!t.defined() || !t.requires_grad()) return {};
    AutogradMeta& m = meta_of(t);
    if (m.grad_fn) return {m.grad_fn, m.output_nr};
    auto acc = m.grad_accumulator.lock();
    if (!acc) {
        auto a = std::make_shared<AccumulateGrad>();
        a->leaf = t;
        a->output_meta = {TensorMeta::of(t)};
        acc = a;
        m.grad_accumulator = acc;
    }
    return {acc, 0};
}

void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs) {
    node->next.clear();
    node->input_meta.clear();
    for (const auto& in : inputs) {
        node->next.push_back(gradient_edge(in));
        node->input_meta.push_back(in.defined() ? TensorMeta::of(in) : TensorMeta{});
    }
    node->output_meta.clear();
    for (size_t i = 0; i < outputs.size(); ++i) {
        node->output_meta.push_back(TensorMeta::of(outputs[i]));
        AutogradMeta& m = meta_of(outputs[i]);
        m.requires_grad = true;
        m.grad_fn = node;
        m.output_nr = uint32_t(i);
    }
}

// ---- Tensor's autograd methods
bool Tensor::requires_grad() const {
    return impl_->autograd && (impl_->autograd->requires_grad || impl_->autograd->grad_fn);
}

Tensor& Tensor::requires_grad_(bool on) {
    RN_CHECK(is_leaf(), "requires_grad_: only leaf tensors can change requires_grad; this one was made by ",
             "an op. HINT: use detach().requires_grad_() for a new leaf");
    RN_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating tensors can require grad, got ",
             dtype());
    meta_of(*this).requires_grad = on;
    return *this;
}

Tensor Tensor::grad() const { return impl_->autograd ? impl_->autograd->grad : Tensor(); }

void Tensor::set_grad(const Tensor& g) const {
    if (g.defined())
        RN_CHECK(g.shape() == shape(), "set_grad: gradient of shape ", g.shape(), " for a tensor of shape ",
                 shape());
    meta_of(*this).grad = g;
}

void Tensor::zero_grad() const {
    if (impl_->autograd) impl_->autograd->grad = Tensor();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
    static const std::shared_ptr<Node> none;
    return impl_ && impl_->autograd ? impl_->autograd->grad_fn : none;
}

uint32_t Tensor::output_nr() const { return impl_->autograd ? impl_->autograd->output_nr : 0; }

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

}  // namespace rn
