// core/error.h — rn::Error and the RN_CHECK macro.
// Every precondition failure in the library throws rn::Error with a message that says what
// was expected and what came. The source location (file:line) travels beside the message,
// not in it: what() is the sentence a user reads, where() is for developers (`retnet
// --verbose` prints both). Exceptions, never exit(): tests can assert failures and the
// server survives a bad request.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace rn {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg, std::string where = "")
        : std::runtime_error(msg), where_(std::move(where)) {}
    // "file:line" of the check that failed; "" when the error was built by hand
    const std::string& where() const { return where_; }

private:
    std::string where_;
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
    throw Error(os.str(), std::string(file) + ":" + std::to_string(line));
}
}  // namespace detail
}  // namespace rn

// RN_CHECK(cond, "matmul: inner dims differ: ", a.shape(), " vs ", b.shape());
#define RN_CHECK(cond, ...)                                              \
    do {                                                                 \
        if (!(cond)) ::rn::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define RN_FAIL(...) ::rn::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__)
