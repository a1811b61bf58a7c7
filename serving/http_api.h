// serving/http_api.h — the JSON side of `retnet serve`, with no sockets in it: parsing and
// validating an OpenAI-style completions request, tokenising its prompts against the
// limits, and writing responses, stream chunks, error bodies and the model list. The
// server (serving/serve.cpp) only moves bytes; everything a client can get wrong is decided
// here, so tests/test_serve_api.cpp checks it without starting a server.
//
// Compatibility choices (OpenAI's /v1/completions):
// - prompt: a string, a list of strings, a list of token ids, or a list of such lists;
//   each prompt becomes its own choice(s). The tokenizer's BOS is put before every prompt
//   (the model was trained that way) and counted in usage.prompt_tokens.
// - unknown fields are ignored, as OpenAI does; known fields with the wrong type or out of
//   range are a 400 naming the field, the expected type or range and what came. `null`
//   means "the default", also as OpenAI does.
// - logprobs (completions: an integer N in [0, ApiLimits::max_logprobs]; chat: `logprobs`
//   true and `top_logprobs` N): log-probabilities under the model's own distribution —
//   the log-softmax of the raw logits, before logit_bias, repetition penalty, temperature,
//   top-k and top-p (what OpenAI and vLLM report) — of each sampled token and of its N
//   most likely alternatives. A token's text is its piece with '▁' shown as a space.
// - features this server lacks (echo, best_of > 1, suffix, non-zero
//   presence/frequency penalties) are a 400 rather than silently ignored, so a client
//   never gets an answer that does not mean what it asked for.
// - extensions (vLLM's names): top_k, repetition_penalty, ignore_eos.
// - logit_bias as OpenAI defines it: {"<token id>": bias in [-100, 100]}, added to the
//   model's logits before any other sampling step (so +100 all but forces a token, -100
//   all but bans it).
// - hostile input: the body's nesting depth is checked before it is parsed (a 400 above
//   ApiLimits::max_json_depth: a deep value would overflow the stack of any recursive
//   reader or writer), and no error message quotes more than a short excerpt of what came.
// - a text prompt too long in bytes to fit max_prompt_tokens is refused before it is
//   tokenised (check_prompt_bytes): no token covers more than max_token_bytes bytes of text.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/json_limits.h"

namespace rn::tools {

// A request the server refuses: the HTTP status and OpenAI's error object fields.
class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string type, std::string param, const std::string& message, std::string code = "")
        : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
          code(std::move(code)) {}
    int status;         // 400, 401, 404, 405, 413, 503, ...
    std::string type;   // "invalid_request_error", "server_overloaded", ...
    std::string param;  // the offending field, "" when none
    std::string code;   // OpenAI's error code ("invalid_api_key", "model_not_found"); "" = null
};

// A 400 invalid_request_error about `param`.
ApiError bad_request(const std::string& param, const std::string& message);

struct ApiLimits {
    int64_t max_prompt_tokens = 2048;  // per prompt, BOS included
    int64_t max_tokens_limit = 512;    // largest max_tokens accepted
    int64_t max_choices = 16;          // prompts × n per request (at most the engine's slots)
    int64_t max_stop = 4;              // stop strings (OpenAI's limit)
    int64_t max_stop_bytes = 256;      // length of one stop string
    // arrays/objects nested deeper than this are refused before parsing; real requests
    // nest 3 deep ({"prompt": [[ids]]})
    int64_t max_json_depth = kMaxJsonDepth;
    int64_t max_logit_bias = 1024;     // entries in logit_bias
    int64_t max_logprobs = 5;          // largest logprobs (completions) / top_logprobs (chat), as OpenAI's 5
    int64_t max_messages = 256;        // chat messages per request
    int64_t vocab_size = 0;            // logit_bias ids must lie below it; 0: not checked here
    // the most bytes of text one token can stand for (the tokenizer's longest piece as
    // text): a prompt over (max_prompt_tokens − 1) × this many bytes cannot fit and is
    // refused without tokenising. 0: no byte bound.
    int64_t max_token_bytes = 0;
};

// One prompt as sent: text, or token ids when the client tokenised it itself.
struct PromptInput {
    bool is_tokens = false;
    std::string text;
    std::vector<int64_t> tokens;
};

// One chat message (OpenAI's shape, content as a string).
struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

struct CompletionRequest {
    std::string model;                 // as sent; "" when absent (any name is served)
    std::vector<PromptInput> prompts;  // at least one
    int64_t max_tokens = 16;           // OpenAI's default
    double temperature = 1.0;          // 0 = greedy
    double top_p = 1.0;
    int64_t top_k = 0;                 // 0 = off
    double repetition_penalty = 1.0;   // 1 = off
    std::optional<uint64_t> seed;      // absent: the server picks one per request
    std::vector<std::string> stop;
    int64_t n = 1;                     // completions per prompt
    bool stream = false;
    bool include_usage = false;        // stream_options.include_usage: a last chunk with usage
    std::vector<std::pair<int32_t, double>> logit_bias;  // (token id, bias), as sent
    bool ignore_eos = false;           // vLLM: keep generating past the end-of-text token
    // -1: no log-probabilities; N ≥ 0: each token's, with its N most likely alternatives
    // (completions' logprobs: N; chat's logprobs: true with top_logprobs: N)
    int64_t logprobs = -1;
    bool chat = false;                 // /v1/chat/completions: prompts[0] is the rendered messages
    std::vector<ChatMessage> messages; // chat only, as sent
    int64_t choices() const { return int64_t(prompts.size()) * n; }
};

// Parses and validates a request body. Throws ApiError (400) on malformed JSON, a body
// that is not an object, a missing prompt, a wrong type or a value out of range.
CompletionRequest parse_completion_request(const std::string& body, const ApiLimits& limits);
// POST /v1/chat/completions: `messages` instead of `prompt` (each {"role": "system" |
// "user" | "assistant", "content": a string}; anything else a 400 naming the field, e.g.
// "messages[1].role"), `logprobs` a boolean and `top_logprobs` an integer. The result has
// chat set and no prompts: the caller renders the messages (serving/chat.h) into prompts[0].
CompletionRequest parse_chat_request(const std::string& body, const ApiLimits& limits);

// The body of a request as a JSON object (depth-checked first), or a 400 saying why not.
nlohmann::json parse_json_body(const std::string& body, const ApiLimits& limits);

// vLLM's POST /tokenize {"prompt": text, "add_special_tokens": bool (default true: BOS
// first)} and POST /detokenize {"tokens": [ids]}.
struct TokenizeRequest {
    std::string model;
    std::string prompt;
    bool add_special_tokens = true;
};
TokenizeRequest parse_tokenize_request(const std::string& body, const ApiLimits& limits);
// ids checked against limits.vocab_size (when set) and limits.max_prompt_tokens
std::vector<int32_t> parse_detokenize_request(const std::string& body, const ApiLimits& limits, std::string* model);
std::string tokenize_json(const std::vector<int32_t>& tokens, int64_t max_model_len);
std::string detokenize_json(const std::string& text);

// A request's `model` against the names served: "" (absent) and any alias pass; anything
// else is a 404 model_not_found in OpenAI's shape.
void check_model(const std::string& requested, const std::vector<std::string>& served);

// Refuses (400, param "prompt") a text prompt whose byte length cannot fit
// max_prompt_tokens (see ApiLimits::max_token_bytes). Cheap: no tokenising.
void check_prompt_bytes(const CompletionRequest& req, const ApiLimits& limits);
// Bytes of text in the request's text prompts (what tokenising costs).
int64_t prompt_text_bytes(const CompletionRequest& req);

// `s` cut to at most `max` bytes (at a UTF-8 character boundary) with "..." when cut: for
// quoting client input in a message.
std::string clip(const std::string& s, size_t max);

// Turns the prompts into token ids, BOS first: text through `encode`, token lists checked
// to lie in [0, vocab). Throws ApiError (400, param "prompt") when a prompt is longer than
// limits.max_prompt_tokens or holds a bad id (check_prompt_bytes first, so an over-long
// text costs no tokenising). One entry per prompt (not per choice).
std::vector<std::vector<int32_t>> tokenize_prompts(const CompletionRequest& req,
                                                   const std::function<std::vector<int32_t>(const std::string&)>& encode,
                                                   int32_t bos, int64_t vocab, const ApiLimits& limits);

// ---- responses

// One sampled token's log-probability and its most likely alternatives (most likely first).
struct TokenLogprob {
    std::string token;    // the token's text (its piece, '▁' as a space)
    double logprob = 0;   // ≤ 0
    std::vector<std::pair<std::string, double>> top;
};

struct CompletionChoice {
    std::string text;
    int64_t index = 0;
    std::string finish_reason;  // "stop" or "length"
    std::vector<TokenLogprob> logprobs;  // written only when `with_logprobs`
};

// completions' "logprobs" object {tokens, token_logprobs, top_logprobs: [{text: lp}],
// text_offset} for these tokens; text offsets count bytes of the tokens' raw text from
// `offset0`; a token that is not valid UTF-8 by itself (one byte of a character) is
// written as OpenAI does, "bytes:\xe2\x80"
nlohmann::json completion_logprobs(const std::vector<TokenLogprob>& lps, int64_t offset0);
// chat's "logprobs" object {content: [{token, logprob, bytes, top_logprobs: [{token,
// logprob, bytes}]}]}
nlohmann::json chat_logprobs(const std::vector<TokenLogprob>& lps);

struct Usage {
    int64_t prompt_tokens = 0, completion_tokens = 0;
};

// A whole (non-streamed) completion: {"id", "object":"text_completion", "created", "model",
// "choices":[{"text","index","logprobs":null,"finish_reason"}], "usage":{...}}
std::string completion_json(const std::string& id, int64_t created, const std::string& model,
                            const std::vector<CompletionChoice>& choices, const Usage& usage,
                            bool with_logprobs = false);
// A whole chat answer: {"object":"chat.completion", "choices":[{"index", "message":{"role":
// "assistant","content"}, "logprobs", "finish_reason"}], "usage"}
std::string chat_completion_json(const std::string& id, int64_t created, const std::string& model,
                                 const std::vector<CompletionChoice>& choices, const Usage& usage,
                                 bool with_logprobs = false);
// One streamed chat chunk ("chat.completion.chunk"): delta {"role":"assistant"} on the
// first chunk of a choice (first_delta), {"content": text} when there is text; logprobs
// when given (else null); finish_reason once done.
std::string chat_chunk_json(const std::string& id, int64_t created, const std::string& model, int64_t index,
                            const std::string& text, bool first_delta, const std::string& finish_reason,
                            const nlohmann::json* logprobs);
// One streamed chunk for choice `index`: new text, and finish_reason once it is done
// (JSON null before). Without the "data: " framing.
std::string stream_chunk_json(const std::string& id, int64_t created, const std::string& model, int64_t index,
                              const std::string& text, const std::string& finish_reason,
                              const nlohmann::json* logprobs = nullptr);
// The last chunk when stream_options.include_usage: empty choices and the usage
// (object "chat.completion.chunk" when chat).
std::string stream_usage_json(const std::string& id, int64_t created, const std::string& model, const Usage& usage,
                              bool chat = false);
// Every writer here turns invalid UTF-8 in text (a token cut inside a character) into
// U+FFFD rather than failing, as tokenizer-based servers do.
// {"error":{"message","type","param","code"}}; a message over 1 KiB is clipped.
std::string error_json(const ApiError& e);
// GET /v1/models: {"object":"list","data":[{"id","object":"model","created","owned_by"}]}
std::string models_json(const std::string& model, int64_t created);
// GET /v1/models/{id}: {"id","object":"model","created","owned_by"}
std::string model_json(const std::string& model, int64_t created);

}  // namespace rn::tools
