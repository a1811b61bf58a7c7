// serving/http_api.cpp — parsing, validation and JSON writing for `retnet serve` (see the
// header for the compatibility choices). Every refusal names the field, what it must be
// and what came, in OpenAI's error shape.
#include "serving/http_api.h"

#include "core/json_limits.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

namespace rn::tools {

using json = nlohmann::json;

namespace {

// Invalid UTF-8 becomes U+FFFD instead of dump() throwing (see the header).
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// "an integer", "a string", ... for "expected X, got Y" messages
std::string type_of(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: return "an integer";
        case json::value_t::number_float: return "a number";
        case json::value_t::string: return "a string";
        case json::value_t::array: return "an array";
        case json::value_t::object: return "an object";
        default: return "an unsupported value";
    }
}

// Writes the start of `v` as JSON into `out`, stopping soon after out passes `budget`
// bytes: the cost is bounded by the budget, never by the value (a client's value may be a
// megabyte, or nested thousands deep). Each level adds a byte before it descends, so the
// recursion is at most budget + 1 deep.
void preview(const json& v, std::string& out, size_t budget) {
    if (out.size() > budget) return;
    switch (v.type()) {
        case json::value_t::array: {
            out += '[';
            bool first = true;
            for (const auto& e : v) {
                if (out.size() > budget) break;
                if (!first) out += ',';
                first = false;
                preview(e, out, budget);
            }
            out += ']';
            break;
        }
        case json::value_t::object: {
            out += '{';
            bool first = true;
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (out.size() > budget) break;
                if (!first) out += ',';
                first = false;
                out += dump(json(it.key().substr(0, budget + 1)));
                out += ':';
                preview(it.value(), out, budget);
            }
            out += '}';
            break;
        }
        case json::value_t::string: out += dump(json(v.get_ref<const std::string&>().substr(0, budget + 1))); break;
        default: out += dump(v);
    }
}

// The value as written by the client, shortened for an error message.
std::string shown(const json& v) {
    std::string s;
    preview(v, s, 60);
    return clip(s, 60);
}


ApiError wrong_type(const std::string& param, const std::string& expected, const json& v) {
    return bad_request(param, "'" + param + "' must be " + expected + ", got " + type_of(v) + " (" + shown(v) + ")");
}

// Present and not null: OpenAI treats an explicit null as "use the default".
const json* field(const json& body, const char* name) {
    auto it = body.find(name);
    return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<int64_t> get_int(const json& body, const char* name, int64_t lo, int64_t hi) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    // 16.0 is refused like OpenAI does: max_tokens is an integer, not a number
    if (!v->is_number_integer()) throw wrong_type(name, "an integer", *v);
    // compared as unsigned first: 2^64−1 must not wrap to −1 and pass a check
    const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(hi);
    if (too_big || v->get<int64_t>() < lo || v->get<int64_t>() > hi)
        throw bad_request(name, "'" + std::string(name) + "' must be in [" + std::to_string(lo) + ", " +
                                    std::to_string(hi) + "], got " + shown(*v));
    return v->get<int64_t>();
}

// A finite number in [lo, hi] (lo_open: lo itself excluded).
std::optional<double> get_number(const json& body, const char* name, double lo, double hi, bool lo_open = false) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    if (!v->is_number()) throw wrong_type(name, "a number", *v);
    double x = v->get<double>();
    if (!std::isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi) {
        std::ostringstream os;
        os << "'" << name << "' must be in " << (lo_open ? "(" : "[") << lo << ", " << hi << "], got " << shown(*v);
        throw bad_request(name, os.str());
    }
    return x;
}

std::optional<bool> get_bool(const json& body, const char* name) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) throw wrong_type(name, "a boolean", *v);
    return v->get<bool>();
}

// A list of token ids: every element an integer (range checked in tokenize_prompts).
bool is_token_list(const json& v) {
    if (!v.is_array() || v.empty()) return false;
    for (const auto& x : v)
        if (!x.is_number_integer()) return false;
    return true;
}

PromptInput token_prompt(const json& v) {
    PromptInput p;
    p.is_tokens = true;
    for (const auto& x : v) {
        // an id above int64 cannot be valid; clamp so the range check reports it
        p.tokens.push_back(x.is_number_unsigned() && x.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX
                                                                                              : x.get<int64_t>());
    }
    return p;
}

std::vector<PromptInput> get_prompts(const json& body) {
    const char* expected = "a string, an array of strings, an array of token ids or an array of token-id arrays";
    const json* v = field(body, "prompt");
    if (!v) throw bad_request("prompt", "'prompt' is required (" + std::string(expected) + ")");
    std::vector<PromptInput> out;
    if (v->is_string()) {
        out.push_back({false, v->get<std::string>(), {}});
    } else if (is_token_list(*v)) {
        out.push_back(token_prompt(*v));
    } else if (v->is_array() && !v->empty()) {
        for (size_t i = 0; i < v->size(); ++i) {
            const json& e = (*v)[i];
            if (e.is_string()) out.push_back({false, e.get<std::string>(), {}});
            else if (is_token_list(e)) out.push_back(token_prompt(e));
            else
                throw bad_request("prompt", "'prompt[" + std::to_string(i) + "]' must be a string or a non-empty array "
                                  "of integer token ids, got " + type_of(e) + " (" + shown(e) + ")");
        }
    } else if (v->is_array()) {
        throw bad_request("prompt", "'prompt' must not be an empty array");
    } else {
        throw wrong_type("prompt", expected, *v);
    }
    return out;
}

std::vector<std::string> get_stop(const json& body, const ApiLimits& limits) {
    const json* v = field(body, "stop");
    if (!v) return {};
    std::vector<std::string> out;
    auto add = [&](const json& s) {
        if (!s.is_string()) throw wrong_type("stop", "a string or an array of strings", s);
        std::string x = s.get<std::string>();
        if (x.empty()) throw bad_request("stop", "'stop' strings must not be empty");
        if (int64_t(x.size()) > limits.max_stop_bytes)
            throw bad_request("stop", "'stop' strings must be at most " + std::to_string(limits.max_stop_bytes) +
                                      " bytes, got one of " + std::to_string(x.size()));
        out.push_back(x);
    };
    if (v->is_array()) {
        if (int64_t(v->size()) > limits.max_stop)
            throw bad_request("stop", "'stop' takes at most " + std::to_string(limits.max_stop) + " strings, got " +
                                      std::to_string(v->size()));
        for (const auto& s : *v) add(s);
    } else {
        add(*v);
    }
    return out;
}

// Fields whose non-default values this server cannot honour: refuse rather than ignore.
void refuse_unsupported(const json& body) {
    auto unsupported = [](const char* name, const json& v) {
        return bad_request(name, "'" + std::string(name) + "' = " + shown(v) + " is not supported by this server");
    };
    if (auto echo = get_bool(body, "echo"); echo && *echo) throw unsupported("echo", body["echo"]);
    if (auto best_of = get_int(body, "best_of", 1, 1 << 20); best_of && *best_of != 1)
        throw unsupported("best_of", body["best_of"]);
    if (const json* v = field(body, "suffix")) {
        if (!v->is_string()) throw wrong_type("suffix", "a string", *v);
        if (!v->get<std::string>().empty()) throw unsupported("suffix", *v);
    }
    for (const char* name : {"presence_penalty", "frequency_penalty"})
        if (auto x = get_number(body, name, -2.0, 2.0); x && *x != 0.0) throw unsupported(name, body[name]);
}

// OpenAI's logit_bias: {"<token id>": bias}, ids as decimal strings, bias in [-100, 100].
std::vector<std::pair<int32_t, double>> get_logit_bias(const json& body, const ApiLimits& limits) {
    const json* v = field(body, "logit_bias");
    if (!v) return {};
    const std::string what = "an object mapping token ids (decimal strings) to numbers in [-100, 100]";
    if (!v->is_object()) throw wrong_type("logit_bias", what, *v);
    if (int64_t(v->size()) > limits.max_logit_bias)
        throw bad_request("logit_bias", "'logit_bias' takes at most " + std::to_string(limits.max_logit_bias) +
                                            " entries, got " + std::to_string(v->size()));
    std::vector<std::pair<int32_t, double>> out;
    for (auto it = v->begin(); it != v->end(); ++it) {
        const std::string& key = it.key();
        bool digits = !key.empty() && key.size() <= 10;
        for (char c : key) digits = digits && c >= '0' && c <= '9';
        const int64_t id = digits ? std::stoll(key) : -1;
        const int64_t vocab = limits.vocab_size > 0 ? limits.vocab_size : int64_t(INT32_MAX);
        if (id < 0 || id >= vocab)
            throw bad_request("logit_bias", "'logit_bias' keys must be token ids in [0, " + std::to_string(vocab) +
                                                ") written as decimal strings, got " + dump(json(clip(key, 40))));
        const json& b = it.value();
        if (!b.is_number()) throw wrong_type("logit_bias", what, b);
        const double x = b.get<double>();
        if (!std::isfinite(x) || x < -100 || x > 100)
            throw bad_request("logit_bias", "'logit_bias' values must be in [-100, 100], got " + shown(b) +
                                                " for token " + key);
        out.emplace_back(int32_t(id), x);
    }
    return out;
}

}  // namespace

std::string clip(const std::string& s, size_t max) {
    if (s.size() <= max) return s;
    size_t cut = max >= 3 ? max - 3 : 0;
    // back over UTF-8 continuation bytes: never split a character
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    return s.substr(0, cut) + "...";
}

int64_t prompt_text_bytes(const CompletionRequest& req) {
    int64_t n = 0;
    for (const PromptInput& p : req.prompts)
        if (!p.is_tokens) n += int64_t(p.text.size());
    return n;
}

void check_prompt_bytes(const CompletionRequest& req, const ApiLimits& limits) {
    if (limits.max_token_bytes <= 0) return;
    // BOS takes one of the tokens; every other token stands for at most max_token_bytes
    const int64_t max_bytes = (limits.max_prompt_tokens - 1) * limits.max_token_bytes;
    for (size_t i = 0; i < req.prompts.size(); ++i) {
        const PromptInput& p = req.prompts[i];
        if (p.is_tokens || int64_t(p.text.size()) <= max_bytes) continue;
        const std::string which = req.prompts.size() == 1 ? "the prompt" : "prompt " + std::to_string(i);
        throw bad_request("prompt", which + " is " + std::to_string(p.text.size()) +
                                        " bytes long and cannot fit: the limit is " +
                                        std::to_string(limits.max_prompt_tokens) +
                                        " tokens (BOS included), and no token of this model covers more than " +
                                        std::to_string(limits.max_token_bytes) + " bytes of text (at most " +
                                        std::to_string(max_bytes) + " bytes)");
    }
}

ApiError bad_request(const std::string& param, const std::string& message) {
    return ApiError(400, "invalid_request_error", param, message);
}

json parse_json_body(const std::string& body_text, const ApiLimits& limits) {
    // before parsing: the parser itself is iterative, but a value thousands deep would
    // overflow the stack of everything that walks it afterwards (copies, dump(), ~json)
    if (size_t at = json_depth_exceeded_at(body_text, limits.max_json_depth); at != std::string::npos)
        throw bad_request("", "the request body nests arrays/objects more than " +
                                  std::to_string(limits.max_json_depth) + " levels deep (at byte " +
                                  std::to_string(at) + "); the limit is " + std::to_string(limits.max_json_depth));
    json body;
    try {
        body = json::parse(body_text);
    } catch (const json::exception& e) {
        // parse_error says where ("parse error at line 1, column 9: syntax error ..."); a
        // number beyond double's range (1e400) comes as out_of_range. Either is the
        // client's mistake, and the message quotes the input: clipped.
        std::string what = e.what();  // "[json.exception.parse_error.101] parse error at ..."
        if (what.rfind("[json.exception.", 0) == 0 && what.find("] ") != std::string::npos)
            what = what.substr(what.find("] ") + 2);
        throw bad_request("", "the request body is not valid JSON: " + clip(what, 200));
    }
    if (!body.is_object())
        throw bad_request("", "the request body must be a JSON object, got " + type_of(body) + " (" + shown(body) + ")");

    return body;
}

namespace {
std::string get_model(const json& body) {
    if (const json* v = field(body, "model")) {
        if (!v->is_string()) throw wrong_type("model", "a string", *v);
        return v->get<std::string>();
    }
    return "";
}

// The fields completions and chat share.
void parse_common(const json& body, const ApiLimits& limits, CompletionRequest& r) {
    r.model = get_model(body);
    if (auto x = get_int(body, "max_tokens", 1, limits.max_tokens_limit)) r.max_tokens = *x;
    if (auto x = get_number(body, "temperature", 0.0, 2.0)) r.temperature = *x;
    if (auto x = get_number(body, "top_p", 0.0, 1.0, /*lo_open=*/true)) r.top_p = *x;
    if (auto x = get_int(body, "top_k", 0, INT32_MAX)) r.top_k = *x;
    if (auto x = get_number(body, "repetition_penalty", 0.0, 100.0, /*lo_open=*/true)) r.repetition_penalty = *x;
    if (const json* v = field(body, "seed")) {
        if (!v->is_number_integer()) throw wrong_type("seed", "an integer", *v);
        // negative seeds are fine (OpenAI takes any int64); two's complement keeps them distinct
        r.seed = v->is_number_unsigned() ? v->get<uint64_t>() : uint64_t(v->get<int64_t>());
    }
    r.stop = get_stop(body, limits);
    if (auto x = get_int(body, "n", 1, limits.max_choices)) r.n = *x;
    if (auto x = get_bool(body, "stream")) r.stream = *x;
    if (const json* v = field(body, "stream_options")) {
        if (!v->is_object()) throw wrong_type("stream_options", "an object", *v);
        if (auto x = get_bool(*v, "include_usage")) r.include_usage = *x;
    }
    r.logit_bias = get_logit_bias(body, limits);
    if (auto x = get_bool(body, "ignore_eos")) r.ignore_eos = *x;
    refuse_unsupported(body);
}

void check_choices(const CompletionRequest& r, const ApiLimits& limits) {
    if (r.choices() > limits.max_choices)
        throw bad_request("prompt", "this request asks for " + std::to_string(r.choices()) + " completions (" +
                                    std::to_string(r.prompts.size()) + " prompts × n = " + std::to_string(r.n) +
                                    "); the server runs at most " + std::to_string(limits.max_choices) +
                                    " per request. HINT: split it into several requests");
}

std::vector<ChatMessage> get_messages(const json& body, const ApiLimits& limits) {
    const json* v = field(body, "messages");
    if (!v) throw bad_request("messages", "'messages' is required (an array of {\"role\", \"content\"} objects)");
    if (!v->is_array()) throw wrong_type("messages", "an array of {\"role\", \"content\"} objects", *v);
    if (v->empty()) throw bad_request("messages", "'messages' must not be empty");
    if (int64_t(v->size()) > limits.max_messages)
        throw bad_request("messages", "'messages' holds " + std::to_string(v->size()) + " messages; the limit is " +
                                          std::to_string(limits.max_messages));
    std::vector<ChatMessage> out;
    for (size_t i = 0; i < v->size(); ++i) {
        const json& m = (*v)[i];
        const std::string at = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) throw wrong_type(at, "an object {\"role\", \"content\"}", m);
        const json* role = field(m, "role");
        if (!role) throw bad_request(at + ".role", "'" + at + ".role' is required (system, user or assistant)");
        if (!role->is_string()) throw wrong_type(at + ".role", "a string", *role);
        const std::string r = role->get<std::string>();
        if (r != "system" && r != "user" && r != "assistant")
            throw bad_request(at + ".role", "'" + at + ".role' must be system, user or assistant, got " + shown(*role) +
                                                " (this server has no tools or functions)");
        const json* content = field(m, "content");
        if (!content) throw bad_request(at + ".content", "'" + at + ".content' is required (a string)");
        if (!content->is_string())
            throw wrong_type(at + ".content", "a string (content parts are not supported)", *content);
        out.push_back({r, content->get<std::string>()});
    }
    return out;
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body_text, const ApiLimits& limits) {
    const json body = parse_json_body(body_text, limits);
    CompletionRequest r;
    r.prompts = get_prompts(body);
    parse_common(body, limits, r);
    // false: off (some clients send chat's boolean here)
    const json* lp = field(body, "logprobs");
    if (!(lp && lp->is_boolean() && !lp->get<bool>()))
        if (auto x = get_int(body, "logprobs", 0, limits.max_logprobs)) r.logprobs = *x;
    check_choices(r, limits);
    return r;
}

CompletionRequest parse_chat_request(const std::string& body_text, const ApiLimits& limits) {
    const json body = parse_json_body(body_text, limits);
    CompletionRequest r;
    r.chat = true;
    r.messages = get_messages(body, limits);
    parse_common(body, limits, r);
    // chat's names: max_completion_tokens is the newer spelling of max_tokens
    if (auto x = get_int(body, "max_completion_tokens", 1, limits.max_tokens_limit)) r.max_tokens = *x;
    const auto lp = get_bool(body, "logprobs");
    const auto top = get_int(body, "top_logprobs", 0, limits.max_logprobs);
    if (top && !(lp && *lp))
        throw bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (lp && *lp) r.logprobs = top ? *top : 0;
    // one prompt (the rendered messages), filled in by the caller
    r.prompts.resize(1);
    check_choices(r, limits);
    return r;
}

TokenizeRequest parse_tokenize_request(const std::string& body_text, const ApiLimits& limits) {
    const json body = parse_json_body(body_text, limits);
    TokenizeRequest r;
    r.model = get_model(body);
    const json* v = field(body, "prompt");
    if (!v) throw bad_request("prompt", "'prompt' is required (a string)");
    if (!v->is_string()) throw wrong_type("prompt", "a string", *v);
    r.prompt = v->get<std::string>();
    if (auto x = get_bool(body, "add_special_tokens")) r.add_special_tokens = *x;
    return r;
}

std::vector<int32_t> parse_detokenize_request(const std::string& body_text, const ApiLimits& limits,
                                              std::string* model) {
    const json body = parse_json_body(body_text, limits);
    if (model) *model = get_model(body);
    const json* v = field(body, "tokens");
    if (!v) throw bad_request("tokens", "'tokens' is required (an array of token ids)");
    if (!v->is_array()) throw wrong_type("tokens", "an array of token ids", *v);
    if (int64_t(v->size()) > limits.max_prompt_tokens + limits.max_tokens_limit)
        throw bad_request("tokens", "'tokens' holds " + std::to_string(v->size()) + " ids; the limit is " +
                                        std::to_string(limits.max_prompt_tokens + limits.max_tokens_limit));
    std::vector<int32_t> ids;
    for (size_t i = 0; i < v->size(); ++i) {
        const json& t = (*v)[i];
        const std::string at = "tokens[" + std::to_string(i) + "]";
        if (!t.is_number_integer()) throw wrong_type("tokens", "an array of integers; " + at + " is not", t);
        const int64_t hi = limits.vocab_size > 0 ? limits.vocab_size : INT32_MAX;
        if ((t.is_number_unsigned() && t.get<uint64_t>() >= uint64_t(hi)) || t.get<int64_t>() < 0 ||
            t.get<int64_t>() >= hi)
            throw bad_request("tokens", "'" + at + "' = " + shown(t) + " is not a token id; ids lie in [0, " +
                                            std::to_string(hi) + ")");
        ids.push_back(int32_t(t.get<int64_t>()));
    }
    return ids;
}

std::string tokenize_json(const std::vector<int32_t>& tokens, int64_t max_model_len) {
    return dump(json{{"tokens", tokens}, {"count", tokens.size()}, {"max_model_len", max_model_len}});
}

std::string detokenize_json(const std::string& text) { return dump(json{{"prompt", text}}); }

void check_model(const std::string& requested, const std::vector<std::string>& served) {
    if (requested.empty()) return;
    for (const auto& m : served)
        if (m == requested) return;
    std::string names;
    for (const auto& m : served) names += (names.empty() ? "" : ", ") + m;
    throw ApiError(404, "invalid_request_error", "model",
                   "The model '" + clip(requested, 100) + "' does not exist; this server serves " + names,
                   "model_not_found");
}

namespace {
bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
        i += n;
    }
    return true;
}
// OpenAI's completions spelling of a token that is not text by itself (one byte of a
// character): "bytes:\xe2\x80"; anything else as it is
std::string shown_token(const std::string& t) {
    if (valid_utf8(t)) return t;
    static const char* hex = "0123456789abcdef";
    std::string out = "bytes:";
    for (unsigned char c : t) out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    return out;
}
}  // namespace

json completion_logprobs(const std::vector<TokenLogprob>& lps, int64_t offset0) {
    json tokens = json::array(), lp = json::array(), top = json::array(), off = json::array();
    int64_t at = offset0;
    for (const auto& t : lps) {
        tokens.push_back(shown_token(t.token));
        lp.push_back(t.logprob);
        json d = json::object();
        for (const auto& [text, v] : t.top)
            if (!d.contains(shown_token(text))) d[shown_token(text)] = v;  // two ids with one text: the likelier one
        top.push_back(d);
        off.push_back(at);
        at += int64_t(t.token.size());
    }
    return {{"tokens", tokens}, {"token_logprobs", lp}, {"top_logprobs", top}, {"text_offset", off}};
}

namespace {
json bytes_of(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(int(c));
    return b;
}
}  // namespace

json chat_logprobs(const std::vector<TokenLogprob>& lps) {
    json content = json::array();
    for (const auto& t : lps) {
        json top = json::array();
        for (const auto& [text, v] : t.top) top.push_back({{"token", text}, {"logprob", v}, {"bytes", bytes_of(text)}});
        content.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", bytes_of(t.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
}

std::vector<std::vector<int32_t>> tokenize_prompts(const CompletionRequest& req,
                                                   const std::function<std::vector<int32_t>(const std::string&)>& encode,
                                                   int32_t bos, int64_t vocab, const ApiLimits& limits) {
    check_prompt_bytes(req, limits);
    std::vector<std::vector<int32_t>> out;
    for (size_t i = 0; i < req.prompts.size(); ++i) {
        const PromptInput& p = req.prompts[i];
        const std::string which = req.prompts.size() == 1 ? "the prompt" : "prompt " + std::to_string(i);
        std::vector<int32_t> ids{bos};
        if (p.is_tokens) {
            // checked before the tokenizer/model ever sees it: an id outside the vocabulary
            // would index past the embedding table
            if (int64_t(p.tokens.size()) + 1 > limits.max_prompt_tokens)
                throw bad_request("prompt", which + " has " + std::to_string(p.tokens.size() + 1) +
                                            " tokens (BOS included); the limit is " +
                                            std::to_string(limits.max_prompt_tokens));
            for (int64_t t : p.tokens) {
                if (t < 0 || t >= vocab)
                    throw bad_request("prompt", which + " holds token id " + std::to_string(t) +
                                                "; ids must lie in [0, " + std::to_string(vocab) + ")");
                ids.push_back(int32_t(t));
            }
        } else {
            // bounded work: check_prompt_bytes bounds the text by the token limit
            std::vector<int32_t> t = encode(p.text);
            ids.insert(ids.end(), t.begin(), t.end());
            if (int64_t(ids.size()) > limits.max_prompt_tokens)
                throw bad_request("prompt", which + " has " + std::to_string(ids.size()) +
                                            " tokens (BOS included); the limit is " +
                                            std::to_string(limits.max_prompt_tokens));
        }
        out.push_back(std::move(ids));
    }
    return out;
}

namespace {
json usage_json(const Usage& usage) {
    return {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.completion_tokens},
            {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}
}  // namespace

std::string chat_completion_json(const std::string& id, int64_t created, const std::string& model,
                                 const std::vector<CompletionChoice>& choices, const Usage& usage, bool with_logprobs) {
    json cs = json::array();
    for (const auto& c : choices)
        cs.push_back({{"index", c.index},
                      {"message", {{"role", "assistant"}, {"content", c.text}}},
                      {"logprobs", with_logprobs ? chat_logprobs(c.logprobs) : json(nullptr)},
                      {"finish_reason", c.finish_reason}});
    return dump(json{{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model},
                     {"choices", cs}, {"usage", usage_json(usage)}});
}

std::string chat_chunk_json(const std::string& id, int64_t created, const std::string& model, int64_t index,
                            const std::string& text, bool first_delta, const std::string& finish_reason,
                            const json* logprobs) {
    json delta = json::object();
    if (first_delta) delta["role"] = "assistant";
    if (!text.empty() || first_delta) delta["content"] = text;
    json c = {{"index", index}, {"delta", delta}, {"logprobs", logprobs ? *logprobs : json(nullptr)},
              {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
    return dump(json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model},
                     {"choices", json::array({c})}});
}

std::string completion_json(const std::string& id, int64_t created, const std::string& model,
                            const std::vector<CompletionChoice>& choices, const Usage& usage, bool with_logprobs) {
    json cs = json::array();
    for (const auto& c : choices)
        cs.push_back({{"text", c.text},
                      {"index", c.index},
                      {"logprobs", with_logprobs ? completion_logprobs(c.logprobs, 0) : json(nullptr)},
                      {"finish_reason", c.finish_reason}});
    json j = {{"id", id},
              {"object", "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", cs},
              {"usage",
               {{"prompt_tokens", usage.prompt_tokens},
                {"completion_tokens", usage.completion_tokens},
                {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}};
    return dump(j);
}

std::string stream_chunk_json(const std::string& id, int64_t created, const std::string& model, int64_t index,
                              const std::string& text, const std::string& finish_reason, const json* logprobs) {
    json c = {{"text", text}, {"index", index}, {"logprobs", logprobs ? *logprobs : json(nullptr)},
              {"finish_reason", nullptr}};
    if (!finish_reason.empty()) c["finish_reason"] = finish_reason;
    json j = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
              {"choices", json::array({c})}};
    return dump(j);
}

std::string stream_usage_json(const std::string& id, int64_t created, const std::string& model, const Usage& usage,
                              bool chat) {
    json j = {{"id", id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array()},
              {"usage",
               {{"prompt_tokens", usage.prompt_tokens},
                {"completion_tokens", usage.completion_tokens},
                {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}};
    return dump(j);
}

std::string error_json(const ApiError& e) {
    json j = {{"error",
               {{"message", clip(e.what(), 1024)},
                {"type", e.type},
                {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
    return dump(j);
}

std::string models_json(const std::string& model, int64_t created) {
    json j = {{"object", "list"},
              {"data", json::array({{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "retnet.cpp"}}})}};
    return dump(j);
}

}  // namespace rn::tools

namespace rn::tools {
std::string model_json(const std::string& model, int64_t created) {
    return dump(json{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "retnet.cpp"}});
}
}  // namespace rn::tools
