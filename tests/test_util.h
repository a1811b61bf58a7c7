// tests/test_util.h — helpers shared by the test files: seeded random inputs, a
// non-contiguous copy of a tensor, closeness checks, "throws an rn::Error whose message
// contains ..." assertions, and an environment variable set for one scope.
#pragma once
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "autograd/gradcheck.h"
#include "ops/ops.h"

namespace rn::test {

// Sets (or, with nullptr, unsets) an environment variable until the end of the scope, then
// restores what was there — also when a failed BOOST_REQUIRE leaves the scope early, so a
// switch one test flips never leaks into the next.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value) setenv(name, value, 1);
        else unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_) setenv(name_.c_str(), old_->c_str(), 1);
        else unsetenv(name_.c_str());
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    std::string name_;
    std::optional<std::string> old_;
};

// A leaf with the same values as t but transposed strides (last two dims swapped in
// memory), so kernels that ignore strides produce wrong answers.
inline Tensor noncontiguous(const Tensor& t) {
    if (t.dim() < 2) {  // every other element of a buffer twice the size
        Tensor big = zeros({t.numel() * 2}, t.dtype(), t.device());
        Tensor v = make_view(big, t.shape(), {2}, 0);
        copy_nograd(v, t);
        return v;
    }
    Tensor tt = contiguous_nograd(t.detach().transpose(-1, -2)).transpose(-1, -2).detach();
    return tt;
}

// random f64 leaf that requires grad, optionally laid out non-contiguously
inline Tensor leaf64(const Shape& s, Generator& g, bool noncontig = false, double lo = -1, double hi = 1) {
    Tensor t = uniform(s, lo, hi, g, DType::f64);
    if (noncontig) t = noncontiguous(t);
    return t.requires_grad_();
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
    BOOST_REQUIRE(a.shape() == b.shape());
    auto va = a.to_vector<double>(), vb = b.to_vector<double>();
    double m = 0;
    for (size_t i = 0; i < va.size(); ++i) {
        double d = std::abs(va[i] - vb[i]);
        if (std::isnan(d)) return INFINITY;
        m = std::max(m, d);
    }
    return m;
}

// ‖a − b‖ / ‖b‖ in f64 whatever the dtypes; infinite when a holds a NaN or an infinity
inline double rel_err(const Tensor& a, const Tensor& b) {
    auto va = a.to(DType::f64).to_vector<double>(), vb = b.to(DType::f64).to_vector<double>();
    double num = 0, den = 0;
    for (size_t i = 0; i < va.size(); ++i) {
        if (!std::isfinite(va[i])) return INFINITY;
        num += (va[i] - vb[i]) * (va[i] - vb[i]);
        den += vb[i] * vb[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

#define RN_CHECK_GRADCHECK(fn, inputs)                                    \
    do {                                                                  \
        auto r_ = ::rn::gradcheck((fn), (inputs));                        \
        BOOST_TEST(r_.ok, r_.message);                                    \
        BOOST_TEST(r_.entries > 0);                                       \
    } while (0)

// asserts that `stmt` throws rn::Error and its message contains `needle`
#define RN_CHECK_THROWS_WITH(stmt, needle)                                                   \
    do {                                                                                     \
        bool thrown_ = false;                                                                \
        try {                                                                                \
            stmt;                                                                            \
        } catch (const ::rn::Error& e_) {                                                    \
            thrown_ = true;                                                                  \
            std::string msg_ = e_.what();                                                    \
            BOOST_TEST(msg_.find(needle) != std::string::npos,                               \
                       "message '" << msg_ << "' lacks '" << needle << "'");                 \
        }                                                                                    \
        BOOST_TEST(thrown_, "expected rn::Error from: " #stmt);                              \
    } while (0)

}  // namespace rn::test
