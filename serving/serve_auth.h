// serving/serve_auth.h — the operator's gates of `retnet serve`, pure so that
// tests/test_serve_api.cpp checks them without a server: API keys (Authorization: Bearer,
// compared in constant time) and CORS (which Origin may read the answers).
#pragma once
#include <string>
#include <vector>

namespace rn::tools {

// true when `authorization` is "Bearer K" for one of `keys`. Each comparison takes time
// that depends only on the lengths, never on where the first differing byte is, so the
// key cannot be guessed byte by byte from response times.
bool bearer_matches(const std::string& authorization, const std::vector<std::string>& keys);
bool constant_time_equal(const std::string& a, const std::string& b);

// The Access-Control-Allow-Origin value for a request from `origin`: "*" when `allowed`
// holds "*", `origin` itself when listed, "" (no CORS headers) otherwise or when the
// request has no Origin.
std::string cors_allow_origin(const std::string& origin, const std::vector<std::string>& allowed);

// The keys in a key file: one per line; blank lines and lines starting with '#' skipped,
// surrounding whitespace trimmed. Throws rn::Error when the file cannot be read or holds
// no key.
std::vector<std::string> read_api_key_file(const std::string& path);

}  // namespace rn::tools
