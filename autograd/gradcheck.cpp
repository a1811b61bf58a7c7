// autograd/gradcheck.cpp — Jacobian by one-hot backward passes vs. by central differences.
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/tensor_math.h"

namespace rn {

namespace {
// address of the i-th element (row-major over the shape) of a strided f64 CPU tensor
double* element(const Tensor& t, int64_t i) {
    int64_t off = 0;
    for (int64_t d = t.dim() - 1; d >= 0; --d) {
        int64_t n = t.shape()[size_t(d)];
        off += (i % n) * t.strides()[size_t(d)];
        i /= n;
    }
    return t.data<double>() + off;
}
}  // namespace

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, double eps, double atol,
                          double rtol) {
    GradcheckResult res;
    for (const auto& in : inputs)
        if (in.defined() && in.requires_grad()) {
            RN_CHECK(in.dtype() == DType::f64 && in.is_cpu(), "gradcheck: checked inputs must be f64 CPU tensors, got ",
                     in.dtype(), " on ", in.device());
            RN_CHECK(in.is_leaf(), "gradcheck: checked inputs must be leaves");
        }

    Tensor y;
    {
        EnableGradGuard grad_on;
        y = f(inputs);
    }
    RN_CHECK(y.dtype() == DType::f64, "gradcheck: the function must return f64, got ", y.dtype());
    const int64_t ny = y.numel();
    // analytical: row j of the Jacobian = gradients after backward of one-hot(j)
    std::vector<std::vector<std::vector<double>>> analytic(inputs.size());
    for (int64_t j = 0; j < ny; ++j) {
        for (const auto& in : inputs)
            if (in.defined() && in.requires_grad()) in.zero_grad();
        Tensor onehot = zeros(y.shape(), DType::f64);
        onehot.data<double>()[j] = 1.0;
        if (y.requires_grad()) run_backward({y}, {onehot}, /*retain_graph=*/true);
        for (size_t k = 0; k < inputs.size(); ++k) {
            const Tensor& in = inputs[k];
            if (!in.defined() || !in.requires_grad()) continue;
            Tensor g = in.grad();
            std::vector<double> row(size_t(in.numel()), 0.0);
            if (g.defined()) row = g.to_vector<double>();
            analytic[k].push_back(std::move(row));
        }
    }
    for (const auto& in : inputs)
        if (in.defined() && in.requires_grad()) in.zero_grad();

    // numerical: column i of the Jacobian by central differences
    NoGradGuard no_grad;
    for (size_t k = 0; k < inputs.size(); ++k) {
        const Tensor& in = inputs[k];
        if (!in.defined() || !in.requires_grad()) continue;
        for (int64_t i = 0; i < in.numel(); ++i) {
            double* p = element(in, i);
            double orig = *p;
            *p = orig + eps;
            std::vector<double> yp = f(inputs).to_vector<double>();
            *p = orig - eps;
            std::vector<double> ym = f(inputs).to_vector<double>();
            *p = orig;
            for (int64_t j = 0; j < ny; ++j) {
                double num = (yp[size_t(j)] - ym[size_t(j)]) / (2 * eps);
                double ana = analytic[k][size_t(j)][size_t(i)];
                double err = std::abs(num - ana);
                res.max_abs_err = std::max(res.max_abs_err, err);
                ++res.entries;
                if (res.ok && (!(err <= atol + rtol * std::abs(num)))) {
                    res.ok = false;
                    std::ostringstream os;
                    os << "input " << k << " element " << i << ", output element " << j << ": analytical "
                       << ana << " vs numerical " << num << " (|diff| " << err << ")";
                    res.message = os.str();
                }
            }
        }
    }
    if (res.ok) {
        std::ostringstream os;
        os << res.entries << " Jacobian entries agree, max |diff| " << res.max_abs_err;
        res.message = os.str();
    }
    return res;
}

}  // namespace rn
