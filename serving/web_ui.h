// serving/web_ui.h — the playground page `retnet serve` answers at GET /
// (serving/web/index.html, embedded in the binary at build time by serving/web/embed.cmake):
// chat or completion against the server's own API, streamed, with sampling controls.
// Each answer carries a fresh nonce in the page's <style> and <script> tags, and a
// Content-Security-Policy that allows those two and requests to this origin, nothing else:
// no other script, style, frame, form target or outside connection, even if text ever got
// into the page as markup.
#pragma once

#include <string>

namespace rn::tools {

struct WebPage {
    std::string html;                     // text/html; charset=utf-8
    std::string content_security_policy;  // the Content-Security-Policy header's value
};

// The page with a new random nonce (128 bits from std::random_device) and its policy.
WebPage web_page();

// The page's nonce placeholder, replaced in every answer (exposed for tests).
inline constexpr const char* kWebPageNoncePlaceholder = "__RN_CSP_NONCE__";

}  // namespace rn::tools
