// serving/serve.h — `retnet serve`: an OpenAI-compatible HTTP server for a RetNet checkpoint.
//
//   POST /v1/completions       prompt(s) → completions, whole or streamed as server-sent events
//   POST /v1/chat/completions  messages → a chat answer (serving/chat.h renders the prompt)
//   GET  /v1/models[/{id}]     the model served (its first name; the others are aliases)
//   POST /tokenize, /detokenize vLLM's shapes
//   GET  /health               {"status":"ok"|"draining", ...}; 503 {"status":"loading"} before the model is in
//   GET  /metrics              Prometheus text (serving/metrics.h)
// docs/serving.md describes the API, the template language, the metrics and the flags.
//
// Operators: --api-key/--api-key-file (every endpoint but /health and /metrics needs
// "Authorization: Bearer KEY"; a 401 invalid_api_key otherwise), --allowed-origins (CORS),
// one access-log line per request on stderr (plain or JSON lines; prompts only with
// --log-prompts). The listener opens before the checkpoint is read, so a load balancer's
// health check sees 503 "loading" rather than a refused connection; "listening on" is
// printed once the model is in.
//
// Threads: Asio I/O threads parse HTTP (Boost.Beast) and validate requests
// (serving/http_api.h); ONE engine thread owns the Engine (serving/engine.h) and runs its
// steps, so every decode step batches every active sequence — requests join and leave
// between steps. Between them: a mutex-guarded inbox of jobs, and per job a small
// mutex-guarded outbox the engine fills and the connection drains. The engine thread
// also detokenises and cuts stop strings (serving/text_stream.h), so a sequence that hit
// one is cancelled before the next step.
//
// Limits, each a clear 4xx/503 in OpenAI's error shape: body size (413), prompt tokens
// (a prompt too long in bytes to fit is refused before tokenising), max_tokens, choices
// per request, JSON nested over 64 deep, malformed JSON and wrong types (400); sequences in the
// server beyond max_slots + max_queue (503, Retry-After). A client that disconnects —
// mid-stream or while waiting for a whole answer — cancels its sequences, freeing their
// slots at the next step. Out of file descriptors, the longest-idle connection with no request arriving is closed
// and accepting pauses briefly (never a busy loop). SIGTERM/SIGINT: stop accepting, answer new requests on open
// connections with 503, finish every admitted request, then exit 0.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rn::tools {

struct ServeOptions {
    std::string checkpoint;           // an .h5 written by `retnet train` (holds the tokenizer)
    std::string host = "127.0.0.1";
    int port = 8080;                  // 0: any free port (the chosen one is printed)
    std::string model_name;           // the id in responses and /v1/models; "" = checkpoint file stem
    int64_t max_slots = 16;           // sequences decoded at once (preallocated states)
    int64_t max_queue = 64;           // sequences waiting for a slot; beyond: 503
    int64_t max_body = 1 << 20;       // request body bytes; beyond: 413
    int64_t max_prompt_tokens = 2048;
    int64_t max_tokens_limit = 512;   // largest max_tokens a request may ask for
    int64_t prefill_chunk = 256;      // prompt tokens prefilled per engine step
    int64_t max_context = 0;          // tokens per sequence; 0: the model's default (EngineOptions)
    int64_t prefix_cache_mb = 256;    // MiB for the prefix-state cache (EngineOptions::prefix_cache_bytes); 0: off
    // speculative decoding (serving/speculative.h): a draft checkpoint with the same
    // tokenizer, or n-gram lookup in the context; k tokens proposed per step
    std::string draft;
    bool speculate_ngram = false;
    int64_t speculative_k = 4;
    bool speculative_always = false;  // speculate every step, not only when measured faster
    std::string device = "cpu";       // cpu, cuda, cuda:N
    std::string dtype = "f32";        // f32, or bf16 on CUDA
    bool cuda_graphs = true;          // on CUDA, decode steps replay CUDA graphs (EngineOptions)
    int threads = 2;                  // I/O threads (the engine has its own)
    double idle_timeout_s = 30;       // a connection waiting this long for a request's first byte is closed
    double read_timeout_s = 30;       // reading one request (header and body) may take this long
    double write_timeout_s = 30;      // writing one response (or one streamed chunk) may take this long
    double drain_timeout_s = 60;      // on SIGTERM, give up waiting for requests after this
    std::vector<std::string> served_model_names;  // --served-model-name: the first is the id, the rest aliases
    std::string chat_template;        // a template file (serving/chat.h); "": the checkpoint's, else the default
    std::vector<std::string> api_keys;  // --api-key (repeatable)
    std::string api_key_file;         // one key per line
    std::vector<std::string> allowed_origins;  // CORS: origins allowed, or "*"; empty: no CORS headers
    std::string log_format = "plain";  // access log on stderr: plain, json or off
    bool log_prompts = false;         // put prompts in the access log
    double startup_delay_s = 0;       // testing: wait this long before loading (shows /health 503)
};

// Throws rn::Error naming the first option out of range, its value and the range.
void validate_serve_options(const ServeOptions& opt);

// Loads the checkpoint, listens, prints "listening on http://HOST:PORT" to stdout, and
// serves until SIGTERM/SIGINT. Returns the exit status (0 after a clean drain). Throws
// rn::Error on a bad checkpoint or options, or when the address cannot be bound.
int run_serve(const ServeOptions& opt);

}  // namespace rn::tools
