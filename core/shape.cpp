// core/shape.cpp — shape arithmetic shared by every layer.
#include "core/shape.h"

#include <sstream>

#include "core/device.h"
#include "core/error.h"

namespace rn {

int64_t numel_of(const Shape& s) {
    int64_t n = 1;
    for (auto d : s) n *= d;
    return n;
}

Shape contiguous_strides(const Shape& sizes) {
    Shape st(sizes.size());
    int64_t acc = 1;
    for (size_t i = sizes.size(); i-- > 0;) {
        st[i] = acc;
        acc *= std::max<int64_t>(sizes[i], 1);
    }
    return st;
}

std::string shape_str(const Shape& s) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
    os << "]";
    return os.str();
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    size_t n = std::max(a.size(), b.size());
    Shape out(n);
    for (size_t i = 0; i < n; ++i) {
        int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
        int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
        RN_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ",
                 shape_str(b), " cannot be broadcast (dim ", i, ": ", da, " vs ", db, ")");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
    int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
    RN_CHECK(dim >= lo && dim <= hi, op, ": dim ", dim, " out of range for a tensor of ", ndim,
             " dims (expected ", lo, "..", hi, ")");
    return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Device Device::parse(const std::string& s) {
    if (s == "cpu") return cpu();
    if (s == "cuda" || s == "gpu") return cuda(0);
    if (s.rfind("cuda:", 0) == 0) {
        try {
            return cuda(std::stoi(s.substr(5)));
        } catch (const std::exception&) {
        }
    }
    RN_FAIL("unknown device '", s, "': expected cpu, cuda or cuda:N");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

}  // namespace rn
