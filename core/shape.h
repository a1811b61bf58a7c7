// core/shape.h — sizes and strides (in elements), broadcasting rules, printing.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace rn {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& s);
Shape contiguous_strides(const Shape& sizes);
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
// numpy broadcasting of two shapes; throws naming both when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// wraps a possibly negative dim into [0, ndim); throws when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace rn

namespace std {
// lets RN_CHECK messages stream shapes directly
inline ostream& operator<<(ostream& os, const rn::Shape& s) { return os << rn::shape_str(s); }
}  // namespace std
