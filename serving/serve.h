// serving/serve.h — `retnet serve`: an OpenAI-compatible HTTP server for a RetNet checkpoint.
//
//   POST /v1/completions   prompt(s) → completions, whole or streamed as server-sent events
//   GET  /v1/models        the one model served
//   GET  /health           {"status":"ok"|"draining", slots, active sequences, queue}
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
// slots at the next step. Out of file descriptors, the longest-idle connection is closed
// and accepting pauses briefly (never a busy loop). SIGTERM/SIGINT: stop accepting, answer new requests on open
// connections with 503, finish every admitted request, then exit 0.
#pragma once
#include <cstdint>
#include <string>

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
    std::string device = "cpu";       // cpu, cuda, cuda:N
    std::string dtype = "f32";        // f32, or bf16 on CUDA
    bool cuda_graphs = true;          // on CUDA, decode steps replay CUDA graphs (EngineOptions)
    int threads = 2;                  // I/O threads (the engine has its own)
    double idle_timeout_s = 30;       // a connection silent this long while reading is closed
    double drain_timeout_s = 60;      // on SIGTERM, give up waiting for requests after this
};

// Throws rn::Error naming the first option out of range, its value and the range.
void validate_serve_options(const ServeOptions& opt);

// Loads the checkpoint, listens, prints "listening on http://HOST:PORT" to stdout, and
// serves until SIGTERM/SIGINT. Returns the exit status (0 after a clean drain). Throws
// rn::Error on a bad checkpoint or options, or when the address cannot be bound.
int run_serve(const ServeOptions& opt);

}  // namespace rn::tools
