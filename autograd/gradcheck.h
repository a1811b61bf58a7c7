// autograd/gradcheck.h — compares the analytical Jacobian (one one-hot backward per
// output element) with central differences, in f64 (flashlight's jacobianTestImpl).
// Inputs may be non-contiguous views; only those that require grad are checked.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rn {

struct GradcheckResult {
    bool ok = true;
    double max_abs_err = 0;   // over all checked Jacobian entries
    int64_t entries = 0;      // how many Jacobian entries were compared
    std::string message;      // the first failing entry, or a summary
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, double eps = 1e-6,
                          double atol = 1e-6, double rtol = 1e-5);

}  // namespace rn
