// nn/module.h — Module: parameters and child modules registered by name, so that
// named_parameters() yields dotted paths like "layers.3.retention.q_proj.weight" — the
// same names the HDF5 checkpoint uses as dataset paths. No virtual forward: each module
// has its own typed forward(). Modules live behind shared_ptr so the parameter pointers
// registered here stay valid.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace rn::nn {

class Module {
public:
    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    // all parameters, depth first in registration order, with dotted names
    std::vector<std::pair<std::string, Tensor>> named_parameters() const;
    std::vector<Tensor> parameters() const;
    int64_t num_parameters() const;
    // the registered slot of a parameter by its dotted name (for loading); throws naming it
    Tensor& parameter(const std::string& dotted_name);

    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    void zero_grad();
    // moves/casts every parameter; they stay leaves that require grad
    void to(Device device);
    void to(DType dtype);

protected:
    // `slot` must be a member of this module: it is updated in place by to()/loading
    void register_parameter(const std::string& name, Tensor& slot, Tensor value);
    template <typename M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
        children_.emplace_back(name, m);
        return m;
    }

private:
    void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) const;
    std::vector<std::pair<std::string, Tensor*>> params_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    bool training_ = true;
};

}  // namespace rn::nn
