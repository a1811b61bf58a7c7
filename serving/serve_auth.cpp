// serving/serve_auth.cpp — API keys and CORS (see serving/serve_auth.h).
#include "serving/serve_auth.h"

#include <fstream>

#include "core/error.h"

namespace rn::tools {

bool constant_time_equal(const std::string& a, const std::string& b) {
    // every byte of the longer one is looked at whatever the contents; only the lengths
    // (not secret: keys of one length are the norm) shape the time
    const size_t n = std::max(a.size(), b.size());
    volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff = static_cast<unsigned char>(diff | (x ^ y));
    }
    return diff == 0;
}

bool bearer_matches(const std::string& authorization, const std::vector<std::string>& keys) {
    static const std::string kBearer = "Bearer ";
    if (authorization.size() <= kBearer.size() || authorization.compare(0, kBearer.size(), kBearer) != 0) return false;
    const std::string given = authorization.substr(kBearer.size());
    bool ok = false;
    for (const auto& k : keys) ok = constant_time_equal(given, k) || ok;  // no early exit
    return ok;
}

std::string cors_allow_origin(const std::string& origin, const std::vector<std::string>& allowed) {
    if (origin.empty()) return "";
    for (const auto& a : allowed) {
        if (a == "*") return "*";
        if (a == origin) return origin;
    }
    return "";
}

std::vector<std::string> read_api_key_file(const std::string& path) {
    std::ifstream in(path);
    RN_CHECK(in.good(), "serve: cannot read the API key file '", path, "'");
    std::vector<std::string> keys;
    std::string line;
    while (std::getline(in, line)) {
        const size_t a = line.find_first_not_of(" \t\r\n");
        if (a == std::string::npos || line[a] == '#') continue;
        const size_t b = line.find_last_not_of(" \t\r\n");
        keys.push_back(line.substr(a, b - a + 1));
    }
    RN_CHECK(!keys.empty(), "serve: the API key file '", path, "' holds no key (one per line; '#' starts a comment)");
    return keys;
}

}  // namespace rn::tools
