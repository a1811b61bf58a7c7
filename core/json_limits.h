// core/json_limits.h — a bound on the nesting of JSON that comes from outside (HTTP
// request bodies, the JSON strings stored in checkpoints). nlohmann::json parses without
// recursion but serialises recursively (dump(), also inside error messages), so a value
// nested 100,000 deep parses and then overflows the stack the first time it is printed.
// Every such text is checked against kMaxJsonDepth before it is parsed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace rn {

// Deeper than anything we write (our configs and states are 1–2 levels deep) and than any
// sensible request, far below what recursion can survive.
constexpr int64_t kMaxJsonDepth = 64;

// The byte offset at which arrays/objects in `text` nest deeper than `limit`, or npos.
// A scan of brackets outside strings, O(n) and without recursion. It tracks strings as
// JSON does (a '"' outside a string always opens one, or is an error), so up to the
// parser's first error both see the same nesting: whatever the parser would build passes
// here only if it is within the limit.
size_t json_depth_exceeded_at(const std::string& text, int64_t limit = kMaxJsonDepth);

}  // namespace rn
