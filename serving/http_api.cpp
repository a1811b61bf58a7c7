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
    if (const json* v = field(body, "logprobs")) {
        if (!(v->is_number_integer() && v->get<int64_t>() == 0) && !(v->is_boolean() && !v->get<bool>()))
            throw unsupported("logprobs", *v);
    }
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

CompletionRequest parse_completion_request(const std::string& body_text, const ApiLimits& limits) {
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

    CompletionRequest r;
    if (const json* v = field(body, "model")) {
        if (!v->is_string()) throw wrong_type("model", "a string", *v);
        r.model = v->get<std::string>();
    }
    r.prompts = get_prompts(body);
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
    if (r.choices() > limits.max_choices)
        throw bad_request("prompt", "this request asks for " + std::to_string(r.choices()) + " completions (" +
                                    std::to_string(r.prompts.size()) + " prompts × n = " + std::to_string(r.n) +
                                    "); the server runs at most " + std::to_string(limits.max_choices) +
                                    " per request. HINT: split it into several requests");
    return r;
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

std::string completion_json(const std::string& id, int64_t created, const std::string& model,
                            const std::vector<CompletionChoice>& choices, const Usage& usage) {
    json cs = json::array();
    for (const auto& c : choices)
        cs.push_back({{"text", c.text}, {"index", c.index}, {"logprobs", nullptr}, {"finish_reason", c.finish_reason}});
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
                              const std::string& text, const std::string& finish_reason) {
    json c = {{"text", text}, {"index", index}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
    if (!finish_reason.empty()) c["finish_reason"] = finish_reason;
    json j = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
              {"choices", json::array({c})}};
    return dump(j);
}

std::string stream_usage_json(const std::string& id, int64_t created, const std::string& model, const Usage& usage) {
    json j = {{"id", id},
              {"object", "text_completion"},
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
                {"code", nullptr}}}};
    return dump(j);
}

std::string models_json(const std::string& model, int64_t created) {
    json j = {{"object", "list"},
              {"data", json::array({{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "retnet.cpp"}}})}};
    return dump(j);
}

}  // namespace rn::tools
