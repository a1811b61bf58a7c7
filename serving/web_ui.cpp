// serving/web_ui.cpp — the embedded playground page and its per-answer nonce (web_ui.h).
#include "serving/web_ui.h"

#include <array>
#include <cstdint>
#include <random>
#include <string_view>

#include "core/error.h"

namespace rn::tools {

namespace {

// serving/web/index.html's bytes, generated at build time (serving/CMakeLists.txt)
constexpr unsigned char kIndexHtml[] = {
#include "web_ui_html.inc"
};

std::string base64(const unsigned char* p, size_t n) {
    static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = uint32_t(p[i]) << 16 | (i + 1 < n ? uint32_t(p[i + 1]) << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        out += abc[v >> 18 & 63];
        out += abc[v >> 12 & 63];
        out += i + 1 < n ? abc[v >> 6 & 63] : '=';
        out += i + 2 < n ? abc[v & 63] : '=';
    }
    return out;
}

}  // namespace

WebPage web_page() {
    // a nonce must be unguessable to whoever could inject markup: fresh from the OS each time
    std::random_device rd;
    std::array<unsigned char, 16> raw;
    for (size_t i = 0; i < raw.size(); i += 4) {
        const uint32_t v = rd();
        for (size_t k = 0; k < 4; ++k) raw[i + k] = static_cast<unsigned char>(v >> (8 * k));
    }
    const std::string nonce = base64(raw.data(), raw.size());

    const std::string_view page(reinterpret_cast<const char*>(kIndexHtml), sizeof(kIndexHtml));
    const std::string_view hole(kWebPageNoncePlaceholder);
    WebPage w;
    w.html.reserve(page.size() + 64);
    size_t at = 0, holes = 0;
    for (size_t k; (k = page.find(hole, at)) != std::string_view::npos; at = k + hole.size(), ++holes) {
        w.html.append(page.substr(at, k - at));
        w.html.append(nonce);
    }
    w.html.append(page.substr(at));
    // the page has one <style> and one <script>; fewer holes means it was edited wrongly and
    // would be refused by the browser (an empty page), more that something else carries one
    RN_CHECK(holes == 2, "web_page: expected the nonce placeholder twice in serving/web/index.html (its <style> and "
                         "<script>), found it ", holes, " times");
    const std::string n = "'nonce-" + nonce + "'";
    // default-src 'none' refuses everything not named; connect-src 'self' is the API;
    // img-src data: the empty favicon; no framing (frame-ancestors), no <base>, no form posts
    w.content_security_policy = "default-src 'none'; script-src " + n + "; style-src " + n +
                                "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                                "frame-ancestors 'none'";
    return w;
}

}  // namespace rn::tools
