// serving/text_stream.cpp — TextStream and StopMatcher (see serving/text_stream.h).
#include "serving/text_stream.h"

#include <algorithm>

#include "core/error.h"

namespace rn::tools {

namespace {
// SentencePiece decodes bytes that are not (yet) valid UTF-8 to U+FFFD
bool ends_incomplete(const std::string& s) {
    static const std::string kReplacement = "\xEF\xBF\xBD";
    return s.size() >= kReplacement.size() && s.compare(s.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0;
}
}  // namespace

std::string TextStream::push(int32_t id) {
    ids_.push_back(id);
    // decode from the last whole point only (not the whole output: O(n) per token would
    // make long generations quadratic), with one id of context before it
    std::vector<int32_t> window;
    if (context_ >= 0) window.push_back(context_);
    window.insert(window.end(), ids_.begin(), ids_.end());
    std::string full = tok_->decode(window);
    if (ends_incomplete(full)) return "";
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
