// core/tensor.h — Tensor: a thin handle on a TensorImpl (storage, sizes, strides, offset,
// dtype, and autograd metadata that stays null for plain tensors, so inference pays nothing).
//
// Views (reshape of a contiguous tensor, transpose, permute, narrow, expand, squeeze,
// unsqueeze) share storage. They are differentiable: their bodies live in ops/view.cpp,
// which records a backward node when grad mode is on. Everything else a Tensor method does
// here is un-recorded bookkeeping.
#pragma once
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace rn {

struct Node;
class Tensor;
struct AutogradMeta;
struct GradHooks;  // autograd/node.h

struct TensorImpl {
    std::shared_ptr<Storage> storage;
    Shape sizes;
    Shape strides;  // in elements
    int64_t offset = 0;  // in elements
    DType dtype = DType::f32;
    std::unique_ptr<AutogradMeta> autograd;  // null unless requires_grad or produced by a recorded op

    TensorImpl();
    ~TensorImpl();
};

class Tensor {
public:
    Tensor() = default;  // an undefined tensor (no storage); used for "no gradient"
    explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

    bool defined() const { return impl_ != nullptr; }
    TensorImpl* impl() const { return impl_.get(); }
    bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
    // true when this handle is the only reference to its impl and its storage: nobody else
    // can observe the bytes, so they may be adopted (AccumulateGrad's no-copy path)
    bool is_unique() const { return impl_ && impl_.use_count() == 1 && impl_->storage.use_count() == 1; }

    // ---- metadata
    const Shape& shape() const { return impl_->sizes; }
    const Shape& strides() const { return impl_->strides; }
    int64_t dim() const { return int64_t(impl_->sizes.size()); }
    int64_t size(int64_t d) const;
    int64_t stride(int64_t d) const;
    int64_t offset() const { return impl_->offset; }
    int64_t numel() const { return numel_of(impl_->sizes); }
    size_t nbytes() const { return size_t(numel()) * dtype_size(dtype()); }
    DType dtype() const { return impl_->dtype; }
    Device device() const { return impl_->storage->device(); }
    bool is_cuda() const { return device().is_cuda(); }
    bool is_cpu() const { return device().is_cpu(); }
    bool is_contiguous() const;
    const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
    uint64_t version() const { return impl_->storage->version(); }
    void bump_version() const { impl_->storage->bump_version(); }

    // pointer to element 0 of this view; data<T>() checks that T matches dtype()
    void* raw_data() const;
    template <typename T> T* data() const {
        RN_CHECK(dtype_of<T>::value == dtype(), "data<", dtype_name(dtype_of<T>::value),
                 ">() on a tensor of dtype ", dtype());
        return static_cast<T*>(raw_data());
    }
    // scalar value of a one-element tensor (any device, any dtype)
    double item() const;
    // all elements in row-major order, converted to T (copies to the CPU when needed)
    template <typename T> std::vector<T> to_vector() const;

    // ---- autograd (bodies in autograd/)
    bool requires_grad() const;
    Tensor& requires_grad_(bool on = true);  // only on leaves
    Tensor grad() const;                     // accumulated gradient of a leaf, or undefined
    void set_grad(const Tensor& g) const;
    void zero_grad() const;                  // drops the accumulated gradient
    const std::shared_ptr<Node>& grad_fn() const;
    uint32_t output_nr() const;
    bool is_leaf() const { return grad_fn() == nullptr; }
    Tensor detach() const;  // shares storage, no history
    void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

    // ---- views, differentiable (bodies in ops/view.cpp)
    Tensor view(const Shape& shape) const;      // contiguous only; one dim may be -1
    Tensor reshape(const Shape& shape) const;   // a view when possible, else a copy
    Tensor transpose(int64_t d0, int64_t d1) const;
    Tensor t() const { return transpose(-2, -1); }
    Tensor permute(const std::vector<int64_t>& dims) const;
    Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
    Tensor select(int64_t dim, int64_t index) const;  // narrow + squeeze
    Tensor expand(const Shape& shape) const;  // broadcast to shape (stride 0)
    Tensor squeeze(int64_t dim) const;
    Tensor unsqueeze(int64_t dim) const;
    Tensor flatten(int64_t start = 0, int64_t end = -1) const;
    Tensor contiguous() const;  // this when already contiguous
    Tensor clone() const;       // a contiguous copy
    Tensor to(DType dtype) const;    // cast; differentiable between float types
    Tensor to(Device device) const;  // copy to a device; differentiable

    // ---- in-place, un-recorded (bump the version; refused on leaves that require grad
    // while grad mode is on, as those would silently corrupt the graph)
    Tensor& fill_(double value);
    Tensor& zero_() { return fill_(0.0); }
    Tensor& copy_(const Tensor& src);  // broadcasts src into this; converts dtype

    std::string str(int64_t max_per_dim = 6) const;

private:
    std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Autograd metadata of one tensor. Defined here (not in autograd/) because TensorImpl
// owns it; the engine that reads it lives in autograd/.
struct AutogradMeta {
    bool requires_grad = false;
    Tensor grad;                          // leaves: accumulated gradient
    std::shared_ptr<Node> grad_fn;        // non-leaves: the node that made this tensor
    uint32_t output_nr = 0;               // which output of grad_fn this tensor is
    std::weak_ptr<Node> grad_accumulator; // leaves: the cached AccumulateGrad node
    // leaves: called after each gradient is accumulated (autograd/node.h, add_post_accumulate_grad_hook)
    std::shared_ptr<GradHooks> post_accumulate_hooks;
};

// A view of `base`'s storage with new geometry; shares base's storage, no autograd.
Tensor make_view(const Tensor& base, Shape sizes, Shape strides, int64_t offset);
// A fresh, uninitialised, contiguous tensor.
Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor empty_like(const Tensor& t);

}  // namespace rn
