// serving/text_stream.cpp — TextStream and StopMatcher (see serving/text_stream.h).
#include "serving/text_stream.h"

#include <algorithm>

#include "core/error.h"

namespace rn::tools {

namespace {
// Whether the bytes of the trailing byte-fallback tokens stop inside a character that can
// still be finished: a UTF-8 lead byte followed by fewer continuation bytes than it asks
// for. Only then is text held back (at most 3 bytes). A byte that can never become a
// character (a stray continuation byte, 0xC0, 0xFF, a lead cut short by another token) is
// let through as U+FFFD at once: holding it would stall the stream to its very end.
bool unfinished_character(const Tokenizer& tok, const std::vector<int32_t>& ids) {
    int continuation = 0;
    for (size_t i = ids.size(); i-- > 0 && continuation <= 3;) {
        const int b = tok.byte_value(ids[i]);
        if (b < 0) return false;  // a text piece ends the character
        if ((b & 0xC0) == 0x80) {
            ++continuation;
            continue;
        }
        const int need = b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2 : b >= 0xF0 && b <= 0xF4 ? 3 : 0;
        return continuation < need;
    }
    return false;
}
}  // namespace

std::string TextStream::push(int32_t id) {
    ids_.push_back(id);
    if (unfinished_character(*tok_, ids_)) return "";
    // decode from the last whole point only (not the whole output: O(n) per token would
    // make long generations quadratic), with one id of context before it
    std::vector<int32_t> window;
    if (context_ >= 0) window.push_back(context_);
    window.insert(window.end(), ids_.begin(), ids_.end());
    std::string full = tok_->decode(window);
    if (context_ >= 0) {
        std::string ctx = tok_->decode({context_});
        full = full.compare(0, ctx.size(), ctx) == 0 ? full.substr(ctx.size()) : tok_->decode(ids_);
    }
    context_ = ids_.back();
    ids_.clear();
    text_ += full;
    return full;
}

std::string TextStream::flush() {
    if (ids_.empty()) return "";
    std::string rest = tok_->decode(ids_);  // the U+FFFD stays: the bytes never became a character
    ids_.clear();
    text_ += rest;
    return rest;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (size_t i = 0; i < stops_.size(); ++i)
        RN_CHECK(!stops_[i].empty(), "stop strings must not be empty; stop string ", i, " is");
}

std::string StopMatcher::push(const std::string& delta) {
    if (stopped_) return "";
    held_ += delta;
    size_t first = std::string::npos;
    for (const std::string& s : stops_) {
        size_t p = held_.find(s);
        if (p < first) {
            first = p;
            matched_ = s;
        }
    }
    if (first != std::string::npos) {
        stopped_ = true;
        std::string out = held_.substr(0, first);
        held_.clear();
        return out;
    }
    // hold back the longest tail that is the start of some stop string
    size_t keep = 0;
    for (const std::string& s : stops_)
        for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n)
            if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
                keep = n;
                break;
            }
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
}

std::string StopMatcher::flush() {
    std::string out;
    out.swap(held_);
    return stopped_ ? "" : out;
}

}  // namespace rn::tools
