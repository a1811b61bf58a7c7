// core/json_limits.cpp — the nesting scan of core/json_limits.h.
#include "core/json_limits.h"

namespace rn {

size_t json_depth_exceeded_at(const std::string& text, int64_t limit) {
    int64_t depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return i;
        } else if (c == ']' || c == '}') {
            --depth;  // unbalanced input is the parser's to report
        }
    }
    return std::string::npos;
}

}  // namespace rn
