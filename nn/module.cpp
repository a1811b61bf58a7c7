// nn/module.cpp — parameter registry, recursive naming, train/eval, device/dtype moves.
#include "nn/module.h"

#include "autograd/grad_mode.h"
#include "core/tensor_math.h"

namespace rn::nn {

void Module::register_parameter(const std::string& name, Tensor& slot, Tensor value) {
    for (const auto& p : params_) RN_CHECK(p.first != name, "register_parameter: '", name, "' registered twice");
    slot = value.detach();
    slot.requires_grad_(true);
    params_.emplace_back(name, &slot);
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) const {
    for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
    for (const auto& [n, c] : children_) c->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect("", slots);
    std::vector<std::pair<std::string, Tensor>> out;
    for (auto& [n, p] : slots) out.emplace_back(n, *p);
    return out;
}

std::vector<Tensor> Module::parameters() const {
    std::vector<Tensor> out;
    for (auto& [n, t] : named_parameters()) out.push_back(t);
    return out;
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (auto& t : parameters()) n += t.numel();
    return n;
}

Tensor& Module::parameter(const std::string& name) {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect("", slots);
    for (auto& [n, p] : slots)
        if (n == name) return *p;
    RN_FAIL("no parameter named '", name, "' in this model (", slots.size(), " parameters)");
}

void Module::train(bool on) {
    training_ = on;
    for (auto& [n, c] : children_) c->train(on);
}

void Module::zero_grad() {
    for (auto& t : parameters()) t.zero_grad();
}

void Module::to(Device device) {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect("", slots);
    NoGradGuard no_grad;
    for (auto& [n, p] : slots) {
        if (p->device() == device) continue;
        Tensor moved = to_device_nograd(*p, device);
        *p = moved.detach();
        p->requires_grad_(true);
    }
}

void Module::to(DType dtype) {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect("", slots);
    NoGradGuard no_grad;
    for (auto& [n, p] : slots) {
        if (p->dtype() == dtype) continue;
        Tensor cast = cast_nograd(*p, dtype);
        *p = cast.detach();
        p->requires_grad_(true);
    }
}

}  // namespace rn::nn
