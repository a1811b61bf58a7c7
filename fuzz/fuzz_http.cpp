// fuzz/fuzz_http.cpp — libFuzzer target for what a client controls in `retnet serve`: raw
// bytes → Boost.Beast's request parser (the server's body limit), fed whole and again in
// pieces as a socket delivers them; every complete request on the connection (keep-alive
// pipelining) that is a POST /v1/completions goes through the server's validation
// (serving/http_api.h: parse_completion_request, tokenize_prompts with a byte-per-token
// encoder) and, when accepted, the response writers on the result.
// Expected refusals: rn::tools::ApiError with a 4xx status (error_json must write it) and
// Beast's parse errors. Anything else — another exception (the server would answer 500),
// a sanitizer report, a hang — is a finding. Properties checked: the parser gives the same
// requests (and an error or none alike) whether the bytes come at once or in pieces;
// every writer emits JSON that parses back.
// To let mutations of a body reach the validation even when they break Content-Length,
// the bytes after the first blank line are also validated directly as a body.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serving/http_api.h"

namespace beast = boost::beast;
namespace http = beast::http;
using rn::tools::ApiError;

namespace {

constexpr uint64_t kServerBodyLimit = 1 << 20;  // ServeOptions::max_body's default
constexpr int32_t kVocab = 300, kBos = 1;

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "fuzz_http: FINDING: %s\n", what.c_str());
    std::abort();
}

struct Parsed {
    std::string method, target, body;
    unsigned version = 0;
    bool keep_alive = false;
    bool operator==(const Parsed& o) const {
        return method == o.method && target == o.target && body == o.body && version == o.version &&
               keep_alive == o.keep_alive;
    }
};

struct Outcome {
    std::vector<Parsed> requests;  // complete requests, in order
    std::string error;             // the error that ended the connection ("" = eof between requests)
};

// Feeds `bytes` to a fresh parser per request, the way http::async_read does: data
// arrives in pieces of the given sizes (cycled), the unconsumed rest stays buffered, and
// a request that is still incomplete when the bytes end meets end-of-stream.
Outcome parse_connection(const std::string& bytes, const std::vector<size_t>& pieces, uint64_t body_limit) {
    Outcome out;
    std::string buffer;  // received, not yet consumed
    size_t next = 0, piece = 0;
    auto receive = [&] {
        if (next >= bytes.size()) return false;
        size_t n = pieces.empty() ? bytes.size() : std::max<size_t>(1, pieces[piece++ % pieces.size()]);
        n = std::min(n, bytes.size() - next);
        buffer.append(bytes, next, n);
        next += n;
        return true;
    };
    for (int guard = 0; guard < 10000; ++guard) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(body_limit);
        parser.eager(true);
        beast::error_code ec;
        bool started = !buffer.empty();
        while (!parser.is_done()) {
            if (!buffer.empty()) {
                size_t used = parser.put(boost::asio::buffer(buffer.data(), buffer.size()), ec);
                buffer.erase(0, used);
                if (ec == http::error::need_more) ec = {};
                else if (ec) break;
                if (parser.is_done()) break;
                if (used > 0 && !buffer.empty()) continue;  // more to parse before reading again
            }
            if (!receive()) {
                // end of stream: nothing started is a clean close; a partial request is an error
                if (!started && buffer.empty()) return out;
                parser.put_eof(ec);
                if (!ec && !parser.is_done()) ec = http::error::partial_message;
                break;
            }
            started = true;
        }
        if (ec) {
            out.error = ec.message();
            return out;
        }
        const auto& req = parser.get();
        out.requests.push_back({std::string(req.method_string()), std::string(req.target()), req.body(),
                                req.version(), req.keep_alive()});
        if (!req.keep_alive()) return out;  // the server closes after answering
    }
    finding("the parser did not advance");
}

void check_json(const std::string& text, const char* writer) {
    if (!nlohmann::json::accept(text)) finding(std::string(writer) + " wrote invalid JSON: " + text.substr(0, 200));
}

// What the server does with a completions body (serving/serve.cpp start_completion), minus
// the engine: validate, tokenize, and write each kind of response for the result.
void serve_completion(const std::string& body) {
    rn::tools::ApiLimits limits;
    try {
        rn::tools::CompletionRequest r = rn::tools::parse_completion_request(body, limits);
        if (r.prompts.empty() || r.n < 1 || r.choices() > limits.max_choices || r.max_tokens < 1 ||
            r.max_tokens > limits.max_tokens_limit)
            finding("an accepted request breaks the limits it was checked against");
        auto encode = [](const std::string& t) {
            std::vector<int32_t> ids;
            for (unsigned char ch : t) ids.push_back(4 + int32_t(ch));  // byte pieces after the specials
            return ids;
        };
        auto prompts = rn::tools::tokenize_prompts(r, encode, kBos, kVocab, limits);
        if (prompts.size() != r.prompts.size()) finding("tokenize_prompts returned a different number of prompts");
        rn::tools::Usage usage;
        std::vector<rn::tools::CompletionChoice> choices;
        for (size_t i = 0; i < prompts.size(); ++i) {
            const auto& p = prompts[i];
            if (p.empty() || p[0] != kBos || int64_t(p.size()) > limits.max_prompt_tokens)
                finding("a tokenized prompt without BOS first or over the limit");
            for (int32_t id : p)
                if (id < 0 || id >= kVocab) finding("a tokenized prompt holds an id outside the vocabulary");
            usage.prompt_tokens += int64_t(p.size());
            // echo the prompt's text as the completion: any bytes, valid UTF-8 or not
            const std::string& text = r.prompts[i].is_tokens ? r.model : r.prompts[i].text;
            choices.push_back({text, int64_t(i), i % 2 ? "stop" : "length", {}});
            check_json(rn::tools::stream_chunk_json("cmpl-1", 1, r.model, int64_t(i), text, ""), "stream_chunk_json");
            check_json(rn::tools::stream_chunk_json("cmpl-1", 1, r.model, int64_t(i), "", "stop"), "stream_chunk_json");
        }
        check_json(rn::tools::completion_json("cmpl-1", 1, r.model, choices, usage), "completion_json");
        check_json(rn::tools::stream_usage_json("cmpl-1", 1, r.model, usage), "stream_usage_json");
        check_json(rn::tools::models_json(r.model, 1), "models_json");
    } catch (const ApiError& e) {
        if (e.status < 400 || e.status > 499)
            finding("ApiError with status " + std::to_string(e.status) + ": " + e.what());
        check_json(rn::tools::error_json(e), "error_json");
    }
    // anything else escapes: libFuzzer reports it as a crash (the server would answer 500)
}

std::string describe(const Outcome& o) {
    std::string s = std::to_string(o.requests.size()) + " requests, error '" + o.error + "'";
    for (const auto& r : o.requests) s += "\n  " + r.method + " " + r.target + " body " + std::to_string(r.body.size());
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    // piece sizes from the bytes themselves: deterministic per input, different per input
    std::vector<size_t> pieces;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
    for (int i = 0; i < 8; ++i, h = h * 1103515245u + 12345u) pieces.push_back(1 + (h >> 16) % 23);

    const Outcome whole = parse_connection(bytes, {}, kServerBodyLimit);
    const Outcome split = parse_connection(bytes, pieces, kServerBodyLimit);
    // the error itself may differ (Beast checks a start line early when more of it is at
    // hand: "bad version" at once, "partial message" in pieces); whether there is one not
    if (!(whole.requests == split.requests) || whole.error.empty() != split.error.empty())
        finding("parsing at once and in pieces differ:\n at once: " + describe(whole) +
                "\n pieces: " + describe(split));
    // the smallest body limit `serve --max-body` allows: the 413 path
    (void)parse_connection(bytes, pieces, 64);

    for (const auto& r : whole.requests) {
        std::string target = r.target.substr(0, r.target.find('?'));
        if (r.method == "POST" && target == "/v1/completions") serve_completion(r.body);
    }
    const size_t blank = bytes.find("\r\n\r\n");
    if (blank != std::string::npos) serve_completion(bytes.substr(blank + 4));
    return 0;
}
