// serving/text_stream.h — from generated ids to text a user may see, for `generate` and
// `serve` alike: TextStream detokenises incrementally (a character split over several
// byte-fallback tokens is held back while more bytes can still finish it, never longer),
// and StopMatcher cuts the text at the first stop string, holding back any tail that might
// still grow into one. The engine works on ids only; stop strings need text, so they are
// the caller's job, done here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace rn::tools {

class TextStream {
public:
    explicit TextStream(const Tokenizer& tok) : tok_(&tok) {}
    // the text that token `id` adds ("" while its bytes end inside a character that more
    // bytes can still finish; a byte that never can is passed on at once as U+FFFD)
    std::string push(int32_t id);
    // whatever is still held back (an incomplete character at the end of the output)
    std::string flush();
    const std::string& text() const { return text_; }  // everything returned so far

private:
    const Tokenizer* tok_;
    std::vector<int32_t> ids_;  // ids since the last point where the text was whole
    int32_t context_ = -1;      // the id before ids_ (decoded along, then cut off, so that a
                                // piece's leading space is decoded as it is mid-text)
    std::string text_;
};

class StopMatcher {
public:
    // empty stop strings are refused (they would match before any text)
    explicit StopMatcher(std::vector<std::string> stops);
    // feeds new text; returns what is safe to show: never a stop string, nor anything
    // after it, nor a tail that may still become one. Returns "" once stopped.
    std::string push(const std::string& delta);
    // at the end of generation (not stopped): the held-back tail, which is then final
    std::string flush();
    bool stopped() const { return stopped_; }
    const std::string& matched() const { return matched_; }  // the stop string that matched
    bool empty() const { return stops_.empty(); }

private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
    std::string matched_;
};

}  // namespace rn::tools
