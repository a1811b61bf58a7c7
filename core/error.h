// core/error.h — rn::Error and the RN_CHECK macro.
// Every precondition failure in the library throws rn::Error carrying file:line and a
// message that says what was expected and what came. Exceptions, never exit(): tests can
// assert failures and the server survives a bad request.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace rn {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void stream_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void stream_all(std::ostringstream& os, const T& v, const Rest&... rest) {
    os << v;
    stream_all(os, rest...);
}
template <typename... Args>
[[noreturn]] void throw_error(const char* file, int line, const Args&... args) {
    std::ostringstream os;
    stream_all(os, args...);
    os << " (" << file << ":" << line << ")";
    throw Error(os.str());
}
}  // namespace detail
}  // namespace rn

// RN_CHECK(cond, "matmul: inner dims differ: ", a.shape(), " vs ", b.shape());
#define RN_CHECK(cond, ...)                                              \
    do {                                                                 \
        if (!(cond)) ::rn::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define RN_FAIL(...) ::rn::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__)
