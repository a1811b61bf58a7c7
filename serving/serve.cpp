// serving/serve.cpp — `retnet serve`: the HTTP side (Boost.Beast on Asio) and the program's
// life: load the checkpoint, listen, start the engine thread, drain on SIGTERM. One
// Session per connection, all its handlers on its own strand; it reads a request, hands
// a Job to the engine thread (serving/serve_worker.h) and writes what comes back — whole,
// or as server-sent events over a chunked response (close-delimited for HTTP/1.0, which
// has no chunked encoding).
//
// Text prompts over kInlineTokenizeBytes are tokenised on a small pool of tokenizer
// threads (niced), not on the I/O thread that read them: a prompt of tens of KB costs
// tens of milliseconds of tokenising, and the I/O threads serve every other client. Not
// on the engine thread either, which would stall every running sequence. Prompts whose
// length in bytes cannot fit the token limit never reach a tokenizer
// (check_prompt_bytes in serving/http_api.h).
//
// Out of file descriptors (EMFILE/ENFILE) the accept loop never spins: it closes the
// connection that has waited longest for a request (as servers drop idle keep-alive
// connections) — unless that request has begun to arrive — and accepts again after a
// short pause — 100 ms when there is none to close.
#include "serving/serve.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "core/error.h"
#include "nn/checkpoint.h"
#include "serving/chat.h"
#include "serving/http_api.h"
#include "serving/metrics.h"
#include "serving/serve_auth.h"
#include "serving/serve_setup.h"
#include "serving/serve_worker.h"
#include "serving/web_ui.h"

namespace rn::tools {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Text prompts up to this many bytes are tokenised where they were read (well under a
// millisecond); longer ones on the tokenizer threads.
constexpr int64_t kInlineTokenizeBytes = 1024;

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class Session;

// Everything the sessions share; the engine thread sees only the queue and the worker.
struct ServerState {
    ServeOptions opt;
    ApiLimits limits;
    std::string model_name;               // the id reported: names[0]
    std::vector<std::string> names;       // every name a request may use
    int64_t created = 0;
    // set once, before `ready` (release); read by the sessions only after seeing ready
    std::optional<Tokenizer> tok;
    ChatTemplate chat;
    std::atomic<bool> ready{false};       // the model is loaded; until then /health says 503
    std::vector<std::string> keys;        // API keys; empty: open
    Metrics metrics;
    JobQueue queue;
    std::unique_ptr<GenerationWorker> worker;
    std::atomic<bool> draining{false};
    std::atomic<int64_t> open_requests{0};  // read and not yet answered in full
    std::atomic<uint64_t> next_id{0};
    std::mutex seed_mu;
    std::mt19937_64 seed_rng{std::random_device{}()};
    net::io_context* tokenizers = nullptr;  // the tokenizer threads' queue
    // connections waiting for a request, by when they began to wait: the oldest is shed
    // when descriptors run out
    std::mutex idle_mu;
    std::map<uint64_t, std::weak_ptr<Session>> idle;
    uint64_t idle_clock = 0;

    ServerState(ServeOptions o, int64_t capacity) : opt(std::move(o)), queue(capacity) {}
    uint64_t random_seed() {
        std::lock_guard<std::mutex> lk(seed_mu);
        return seed_rng();
    }
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, ServerState& s) : stream_(std::move(socket)), s_(s) {
        // taken now: once the client hangs up (a 499) the socket no longer knows its peer
        beast::error_code ec;
        const auto remote = stream_.socket().remote_endpoint(ec);
        if (!ec) remote_ = remote.address().to_string();
    }
    ~Session() {
        // the connection died with a job in flight (the server stopped): free its slots
        if (job_) cancel_job();
        set_busy();
    }
    // Closes the connection if it is still waiting for the request it waited for when it
    // was listed as idle under `key` and nothing of its next request has come (called on
    // its strand).
    void shed(uint64_t key) {
        if (key != idle_key_) return;
        set_busy();  // off the idle list either way: it is not offered again while this read lasts
        // RFC 9112 §9.6: a request the client has sent, even in part, must not be dropped
        // — the client would see a reset and never know whether it was served. Declining
        // is safe for the accept loop: this connection is off the list, so its next try
        // (5 ms on) sheds the next-oldest, and with none left it pauses 100 ms; it cannot
        // spin on a connection that will not go. (Handing on to the next-oldest from here
        // would save those 5 ms for a second path into the idle list: not worth it for an
        // event this rare.)
        if (request_arriving()) return;
        // Not closed here: another I/O thread may already have read the request's first
        // bytes into buffer_'s spare room, their handler queued behind this one, where
        // neither buffer_.size() nor a peek sees them. Cancelling lets such a read finish
        // as normal; on_header closes only a read that was cancelled with nothing there.
        shedding_ = true;
        beast::error_code ec;
        stream_.socket().cancel(ec);
    }
    void start() {
        net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::read_request, shared_from_this()));
    }
    auto executor() { return stream_.get_executor(); }

private:
    // ---- reading
    // The header first: a client that sent "Expect: 100-continue" (curl does, for bodies
    // over 1 KiB) waits for our go-ahead before sending the body.
    void read_request() {
        set_idle();
        parser_.emplace();
        parser_->body_limit(uint64_t(s_.opt.max_body));
        stream_.expires_after(ms(s_.opt.idle_timeout_s));
        read_header();
    }
    void read_header() {
        http::async_read_header(stream_, buffer_, *parser_,
                                beast::bind_front_handler(&Session::on_header, shared_from_this()));
    }

    void on_header(beast::error_code ec, std::size_t) {
        set_busy();
        if (std::exchange(shedding_, false) && ec == net::error::operation_aborted) {
            beast::error_code ignored;
            // the descriptor is what the accept loop waits for: no graceful close() here
            if (!request_arriving()) {
                stream_.socket().close(ignored);
                return;
            }
            // bytes came after all: read on (a partial header stays in buffer_ and the
            // parser; the idle deadline set by read_request still holds)
            return read_header();
        }
        if (read_failed(ec)) return;
        if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
            static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            return net::async_write(stream_, net::buffer(kContinue), [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return self->close();
                self->read_body();
            });
        }
        read_body();
    }

    void read_body() {
        stream_.expires_after(ms(s_.opt.read_timeout_s));
        http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_read, shared_from_this()));
    }

    void set_idle() {
        std::lock_guard<std::mutex> lk(s_.idle_mu);
        if (idle_key_) s_.idle.erase(idle_key_);
        idle_key_ = ++s_.idle_clock;
        s_.idle.emplace(idle_key_, weak_from_this());
    }
    void set_busy() {
        if (!idle_key_) return;
        std::lock_guard<std::mutex> lk(s_.idle_mu);
        s_.idle.erase(idle_key_);
        idle_key_ = 0;
    }

    // true when the read ended the request: closed, or answered with an error
    bool read_failed(beast::error_code ec) {
        if (!ec) return false;
        if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted) {
            close();
        } else if (ec == http::error::body_limit) {
            keep_alive_ = false;
            send_error(ApiError(413, "invalid_request_error", "",
                                "the request body is larger than the server's limit of " +
                                    std::to_string(s_.opt.max_body) + " bytes"));
        } else if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
            keep_alive_ = false;  // the stream is out of step: answer, then close
            send_error(ApiError(400, "invalid_request_error", "", "malformed HTTP request: " + ec.message()));
        } else {
            close();  // reset by the peer and the like: nobody to answer
        }
        return true;
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (read_failed(ec)) return;
        req_ = parser_->release();
        t0_ = std::chrono::steady_clock::now();
        logged_ = false;
        log_job_.reset();
        log_prompt_.clear();
        status_ = 0;
        keep_alive_ = req_.keep_alive();
        ++s_.open_requests;
        answering_ = true;
        try {
            route();
        } catch (const ApiError& e) {
            send_error(e);
        } catch (const std::exception& e) {
            send_error(ApiError(500, "server_error", "", std::string("internal error: ") + e.what()));
        }
    }

    void route() {
        std::string target(req_.target());
        target = target.substr(0, target.find('?'));
        cors_ = cors_allow_origin(std::string(req_[http::field::origin]), s_.opt.allowed_origins);
        if (req_.method() == http::verb::options) return send_preflight();
        auto only = [&](http::verb v, const char* allow) {
            allow_ = allow;
            if (req_.method() != v)
                throw ApiError(405, "invalid_request_error", "",
                               "method " + std::string(req_.method_string()) + " is not allowed on " + target +
                                   "; use " + allow);
        };
        if (target == "/health") {
            only(http::verb::get, "GET");
            if (!s_.ready.load(std::memory_order_acquire))
                return send_json(http::status::service_unavailable, R"({"status":"loading"})");
            nlohmann::json j = {{"status", s_.draining.load() ? "draining" : "ok"},
                                {"model", s_.model_name},
                                {"slots", s_.worker->max_slots()},
                                {"active_sequences", s_.worker->active_sequences.load()},
                                {"waiting_requests", s_.worker->waiting_jobs.load()},
                                {"sequences_in_server", s_.queue.in_system()},
                                // requests read and not yet answered in full, this one not counted
                                {"open_requests", s_.open_requests.load() - 1},
                                {"capacity", s_.queue.capacity()},
                                {"state_bytes", s_.worker->state_bytes()},
                                {"tokens_generated", s_.worker->tokens_generated.load()},
                                // the prefix-state cache (off: capacity 0, as for a Transformer)
                                {"prefix_cache",
                                 {{"enabled", s_.worker->prefix_cache_on()},
                                  {"capacity_bytes", s_.worker->prefix_cache_capacity()},
                                  {"bytes", s_.worker->prefix_bytes.load()},
                                  {"entries", s_.worker->prefix_entries.load()},
                                  {"hits", s_.worker->prefix_hits.load()},
                                  {"misses", s_.worker->prefix_misses.load()},
                                  {"tokens_reused", s_.worker->prefix_tokens_reused.load()}}},
                                // speculative decoding (--draft, --speculate-ngram)
                                {"speculative",
                                 {{"mode", s_.worker->speculative_mode()},
                                  {"k", s_.worker->speculative_k()},
                                  {"rounds", s_.worker->spec_rounds.load()},
                                  {"proposed", s_.worker->spec_proposed.load()},
                                  {"accepted", s_.worker->spec_accepted.load()}}}};
            return send_json(http::status::ok, j.dump());
        }
        if (target == "/metrics") {  // open, like /health: scrapers carry no key
            only(http::verb::get, "GET");
            const bool ready = s_.ready.load(std::memory_order_acquire);
            std::string text = s_.metrics.render(ready ? s_.worker->waiting_jobs.load() : 0,
                                                 ready ? s_.worker->active_sequences.load() : 0, s_.opt.max_slots);
            return send_json(http::status::ok, std::move(text), [](http::response<http::string_body>& res) {
                res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            });
        }
        if (target == "/") {  // the playground page (serving/web_ui.h): open; it asks for a key when the API does
            only(http::verb::get, "GET");
            WebPage page = web_page();
            return send_json(http::status::ok, std::move(page.html), [&page](http::response<http::string_body>& res) {
                res.set(http::field::content_type, "text/html; charset=utf-8");
                res.set(http::field::cache_control, "no-store");  // a fresh nonce each time
                res.set("Content-Security-Policy", page.content_security_policy);
                res.set("X-Content-Type-Options", "nosniff");
                res.set("Referrer-Policy", "no-referrer");
            });
        }
        if (!s_.keys.empty() && !bearer_matches(std::string(req_[http::field::authorization]), s_.keys))
            throw ApiError(401, "invalid_request_error", "",
                           req_[http::field::authorization].empty()
                               ? "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'"
                               : "Incorrect API key provided",
                           "invalid_api_key");
        if (!s_.ready.load(std::memory_order_acquire))
            throw ApiError(503, "server_loading", "", "the model is still loading; retry in a moment");
        if (target == "/v1/models") {
            only(http::verb::get, "GET");
            return send_json(http::status::ok, models_json(s_.model_name, s_.created));
        }
        if (target.rfind("/v1/models/", 0) == 0) {
            only(http::verb::get, "GET");
            const std::string id = target.substr(11);
            check_model(id.empty() ? "/" : id, s_.names);
            return send_json(http::status::ok, model_json(id, s_.created));
        }
        if (target == "/v1/completions" || target == "/v1/chat/completions") {
            only(http::verb::post, "POST");
            return start_completion(target == "/v1/chat/completions");
        }
        if (target == "/tokenize") {
            only(http::verb::post, "POST");
            TokenizeRequest t = parse_tokenize_request(req_.body(), s_.limits);
            check_model(t.model, s_.names);
            std::vector<int32_t> ids;
            if (t.add_special_tokens) ids.push_back(s_.tok->bos_id());
            const std::vector<int32_t> more = s_.tok->encode(t.prompt);
            ids.insert(ids.end(), more.begin(), more.end());
            return send_json(http::status::ok, tokenize_json(ids, s_.opt.max_prompt_tokens));
        }
        if (target == "/detokenize") {
            only(http::verb::post, "POST");
            std::string model;
            const std::vector<int32_t> ids = parse_detokenize_request(req_.body(), s_.limits, &model);
            check_model(model, s_.names);
            return send_json(http::status::ok, detokenize_json(s_.tok->decode(ids)));
        }
        throw ApiError(404, "invalid_request_error", "", "no such endpoint: " + clip(target, 100) +
                                                             " (this server has POST /v1/completions, POST "
                                                             "/v1/chat/completions, GET /v1/models, POST /tokenize, "
                                                             "POST /detokenize, GET /health, GET /metrics)");
    }

    // ---- completions
    void start_completion(bool chat) {
        if (s_.draining.load()) throw ApiError(503, "server_shutting_down", "", "the server is shutting down");
        auto r = std::make_shared<CompletionRequest>(chat ? parse_chat_request(req_.body(), s_.limits)
                                                          : parse_completion_request(req_.body(), s_.limits));
        check_model(r->model, s_.names);
        if (chat) r->prompts[0].text = s_.chat.render(r->messages);
        if (s_.opt.log_prompts)
            log_prompt_ = r->prompts[0].is_tokens ? std::to_string(r->prompts[0].tokens.size()) + " token ids"
                                                  : r->prompts[0].text;
        check_prompt_bytes(*r, s_.limits);  // an over-long prompt costs no tokenising
        if (prompt_text_bytes(*r) <= kInlineTokenizeBytes) return submit(*r, tokenize(*r));
        // the tokenizer threads answer on this connection's strand; the handlers hold the
        // session (a client that hangs up meanwhile is noticed once the job runs)
        net::post(*s_.tokenizers, [self = shared_from_this(), r] {
            std::vector<std::vector<int32_t>> prompts;
            std::optional<ApiError> error;
            try {
                prompts = self->tokenize(*r);
            } catch (const ApiError& e) {
                error = e;
            } catch (const std::exception& e) {
                error = ApiError(500, "server_error", "", std::string("internal error: ") + e.what());
            }
            net::post(self->stream_.get_executor(), [self, r, prompts = std::move(prompts), error]() mutable {
                try {
                    if (error) throw *error;
                    self->submit(*r, std::move(prompts));
                } catch (const ApiError& e) {
                    self->send_error(e);
                } catch (const std::exception& e) {
                    self->send_error(ApiError(500, "server_error", "", std::string("internal error: ") + e.what()));
                }
            });
        });
    }

    std::vector<std::vector<int32_t>> tokenize(const CompletionRequest& r) const {
        return tokenize_prompts(
            r, [this](const std::string& t) { return s_.tok->encode(t); }, s_.tok->bos_id(), s_.tok->vocab_size(),
            s_.limits);
    }

    // Hands the request to the engine thread and starts the answer (or throws ApiError).
    void submit(const CompletionRequest& r, std::vector<std::vector<int32_t>> prompts) {
        auto job = std::make_shared<Job>();
        job->id = std::string(r.chat ? "chatcmpl-" : "cmpl-") + std::to_string(unix_now()) + "-" + std::to_string(s_.next_id++);
        job->created = unix_now();
        const uint64_t seed = r.seed ? *r.seed : s_.random_seed();
        for (const auto& p : prompts) {
            job->prompt_tokens += int64_t(p.size());
            for (int64_t k = 0; k < r.n; ++k) {
                job->prompts.push_back(p);
                SamplingParams sp;
                sp.temperature = r.temperature;
                sp.top_k = r.top_k;
                sp.top_p = r.top_p;
                sp.repetition_penalty = r.repetition_penalty;
                for (const auto& [id, bias] : r.logit_bias) sp.logit_bias.emplace_back(id, float(bias));
                sp.ignore_eos = r.ignore_eos;
                sp.top_logprobs = std::max<int64_t>(r.logprobs, 0);
                // choice k of every prompt draws as the same request with n = 1 would for k = 0:
                // a prompt in a list gives what it gives alone
                sp.seed = seed + uint64_t(k);
                job->sampling.push_back(sp);
            }
        }
        job->max_tokens = r.max_tokens;
        job->stop = r.stop;
        job->stream = r.stream;
        job->include_usage = r.include_usage;
        job->chat = r.chat;
        job->logprobs = r.logprobs;
        job->out.resize(job->prompts.size());
        // the engine thread wakes this connection on its strand; a connection already
        // gone is skipped
        job->notify = [weak = weak_from_this(), ex = stream_.get_executor()] {
            net::post(ex, [weak] {
                if (auto self = weak.lock()) self->on_job_update();
            });
        };
        switch (s_.queue.push(job)) {
            case JobQueue::Push::ok: break;
            case JobQueue::Push::full:
                throw ApiError(503, "server_overloaded", "",
                               "the server is busy: " + std::to_string(s_.queue.in_system()) + " of " +
                                   std::to_string(s_.queue.capacity()) +
                                   " sequences are running or waiting. HINT: retry after a moment");
            case JobQueue::Push::closed:
                throw ApiError(503, "server_shutting_down", "", "the server is shutting down");
        }
        job_ = job;
        log_job_ = job;
        s_.metrics.prompt_tokens += job->prompt_tokens;
        watch_disconnect();
        if (job_->stream) {
            sse_res_.emplace(http::status::ok, req_.version());
            sse_res_->set(http::field::content_type, "text/event-stream");
            sse_res_->set(http::field::cache_control, "no-cache");
            set_cors(*sse_res_);
            status_ = 200;
            // HTTP/1.0 has no chunked encoding: there the events are the raw body, which
            // ends when the connection closes
            close_delimited_ = req_.version() < 11;
            if (close_delimited_) keep_alive_ = false;
            sse_res_->keep_alive(keep_alive_);
            sse_res_->chunked(!close_delimited_);
            sse_sr_.emplace(*sse_res_);
            writing_ = true;
            stream_.expires_after(ms(s_.opt.write_timeout_s));
            http::async_write_header(stream_, *sse_sr_,
                                     beast::bind_front_handler(&Session::on_stream_written, shared_from_this()));
        } else {
            stream_.expires_never();  // the answer may take a while; a disconnect is caught by the watch
        }
    }

    // A pending wait for readability while a job runs: the client closing its side (or
    // resetting) shows as readable with nothing to read. Data instead (a pipelined next
    // request) ends the watch; that client is evidently still there. The reactor may
    // also wake the wait with nothing there at all (a stale edge-triggered event): only a
    // peek that sees end-of-stream or an error means the client left; "would block"
    // re-arms the watch. (Taking every wake-up for a hang-up dropped about one request
    // in 3,000 under load.)
    void watch_disconnect() {
        const uint64_t gen = ++watch_gen_;
        stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this(), gen](beast::error_code ec) {
            if (gen != self->watch_gen_ || !self->job_) return;
            if (ec == net::error::operation_aborted) return;
            if (ec) return self->client_gone();
            switch (self->peek_peer()) {
                case Peer::gone: return self->client_gone();
                case Peer::quiet: return self->watch_disconnect();
                case Peer::data: return self->hold(gen);
            }
        });
    }

    // a request (part of one) has come: read into buffer_, or waiting in the socket
    bool request_arriving() { return buffer_.size() > 0 || peek_peer() == Peer::data; }

    enum class Peer { data, quiet, gone };
    Peer peek_peer() {
        char c;
        for (;;) {
            const ssize_t n = ::recv(stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n > 0) return Peer::data;
            if (n == 0) return Peer::gone;
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? Peer::quiet : Peer::gone;
        }
    }

    // Something must stay pending for the session to live (handlers own it); while a
    // pipelined request sits unread, a timer does.
    void hold(uint64_t gen) {
        timer_.expires_after(std::chrono::milliseconds(100));
        timer_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
            if (!ec && gen == self->watch_gen_ && self->job_) self->hold(gen);
        });
    }

    void client_gone() {
        log_request(499);  // nginx's "client closed request"
        cancel_job();
        // a stream whose job already finished has no job to cancel, but its last write
        // failed: the request is over all the same (else SIGTERM's drain waits for it)
        finish_request_accounting();
        beast::error_code ec;
        stream_.socket().close(ec);  // aborts a pending write; its handler ends the session
    }

    void cancel_job() {
        if (!job_) return;
        job_->cancelled = true;
        s_.queue.wake();
        job_.reset();
        finish_request_accounting();
    }

    void finish_request_accounting() {
        if (answering_) {
            answering_ = false;
            --s_.open_requests;
        }
    }

    void on_job_update() {
        if (!job_) return;
        job_->notify_pending = false;  // before reading the outbox: later output wakes us again
        if (job_->stream) {
            if (!writing_) pump_stream();
            return;
        }
        std::string body;
        std::optional<ApiError> error;
        {
            std::lock_guard<std::mutex> lk(job_->mu);
            if (!job_->finished()) return;
            if (job_->error_status != 0) error = job_error(*job_);
            else body = whole_answer(*job_, s_.model_name);
        }
        job_.reset();
        if (error) return send_error(*error);
        send_json(http::status::ok, std::move(body));
    }

    // Streaming: one HTTP chunk with every event ready now; called when no write is
    // pending. After the last event: "data: [DONE]", then the terminating chunk.
    void pump_stream() {
        if (!job_) return;
        std::string events;
        bool done = false;
        {
            std::lock_guard<std::mutex> lk(job_->mu);
            events = stream_events(*job_, s_.model_name, done);
        }
        if (done) {
            job_.reset();
            stream_done_ = true;
        }
        if (events.empty()) return;
        out_ = std::move(events);
        writing_ = true;
        stream_.expires_after(ms(s_.opt.write_timeout_s));
        if (close_delimited_)
            net::async_write(stream_, net::buffer(out_),
                             beast::bind_front_handler(&Session::on_stream_written, shared_from_this()));
        else
            net::async_write(stream_, http::make_chunk(net::buffer(out_)),
                             beast::bind_front_handler(&Session::on_stream_written, shared_from_this()));
    }

    void on_stream_written(beast::error_code ec, std::size_t) {
        writing_ = false;
        if (ec) return client_gone();
        if (stream_done_) {
            stream_done_ = false;
            if (close_delimited_) return on_response_written(ec, 0);  // closing ends the body
            writing_ = true;
            return net::async_write(stream_, http::make_chunk_last(),
                                    beast::bind_front_handler(&Session::on_response_written, shared_from_this()));
        }
        pump_stream();
    }

    // ---- whole responses
    static std::chrono::milliseconds ms(double seconds) { return std::chrono::milliseconds(int64_t(seconds * 1000)); }

    template <class Res>
    void set_cors(Res& res) {
        if (cors_.empty()) return;
        res.set(http::field::access_control_allow_origin, cors_);
        if (cors_ != "*") res.set(http::field::vary, "Origin");
    }

    // CORS preflight: 204 with what a browser needs to send the real request (no key is
    // asked for: the browser sends none with a preflight). An origin not allowed gets the
    // 204 without CORS headers, which the browser takes as a refusal.
    void send_preflight() {
        send_json(http::status::no_content, "", [this](http::response<http::string_body>& res) {
            res.erase(http::field::content_type);
            if (cors_.empty()) return;
            res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
            res.set(http::field::access_control_allow_headers, "Authorization, Content-Type");
            res.set(http::field::access_control_max_age, "600");
        });
    }

    // The access-log line and the request counter, once per request.
    std::string remote_;  // the client's address, for the access log
    void log_request(int status) {
        if (logged_ || !answering_) return;
        logged_ = true;
        std::string target(req_.target());
        target = target.substr(0, target.find('?'));
        s_.metrics.count_request(endpoint_label(target), status);
        if (s_.opt.log_format == "off") return;
        AccessRecord a;
        a.method = std::string(req_.method_string());
        a.path = clip(target, 200);
        a.remote = remote_;
        a.status = status;
        a.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        if (log_job_) {
            std::lock_guard<std::mutex> lk(log_job_->mu);
            a.prompt_tokens = log_job_->prompt_tokens;
            for (const auto& c : log_job_->out) a.completion_tokens += c.completion_tokens;
            a.ttft_s = log_job_->ttft_s;
        }
        a.prompt = log_prompt_;
        const std::string line = access_log_line(a, s_.opt.log_format == "json") + "\n";
        std::fwrite(line.data(), 1, line.size(), stderr);
        log_job_.reset();
    }

    void send_error(const ApiError& e) {
        auto extra = [&](http::response<http::string_body>& res) {
            if (e.status == 503) res.set(http::field::retry_after, "1");
            if (e.status == 405) res.set(http::field::allow, allow_);
            if (e.status == 401) res.set(http::field::www_authenticate, "Bearer");
        };
        send_json(http::status(e.status), error_json(e), extra);
    }

    void send_json(http::status status, std::string body,
                   const std::function<void(http::response<http::string_body>&)>& extra = {}) {
        res_.emplace(status, req_.version() ? req_.version() : 11);
        status_ = int(status);
        res_->set(http::field::server, "retnet.cpp");
        res_->set(http::field::content_type, "application/json");
        set_cors(*res_);
        if (s_.draining.load()) keep_alive_ = false;
        res_->keep_alive(keep_alive_);
        res_->body() = std::move(body);
        if (extra) extra(*res_);
        res_->prepare_payload();
        writing_ = true;
        stream_.expires_after(ms(s_.opt.write_timeout_s));
        http::async_write(stream_, *res_, beast::bind_front_handler(&Session::on_response_written, shared_from_this()));
    }

    void on_response_written(beast::error_code ec, std::size_t) {
        writing_ = false;
        log_request(status_);
        ++watch_gen_;  // a watch still pending belongs to the answered request
        job_.reset();
        finish_request_accounting();
        sse_sr_.reset();
        sse_res_.reset();
        res_.reset();
        if (ec || !keep_alive_ || s_.draining.load()) return close();
        read_request();
    }

    // Half-close and read until the peer closes: closing with unread input (a body over
    // the limit still arriving) would send a reset that can destroy our answer in flight.
    void close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        if (ec) return;
        stream_.expires_after(std::chrono::seconds(2));
        stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec) self->close_drain();
        });
    }
    void close_drain() {
        stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec) self->close_drain();
        });
    }

    beast::tcp_stream stream_;
    ServerState& s_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::request<http::string_body> req_;
    std::optional<http::response<http::string_body>> res_;
    std::optional<http::response<http::empty_body>> sse_res_;
    std::optional<http::response_serializer<http::empty_body>> sse_sr_;
    std::shared_ptr<Job> job_;
    net::steady_timer timer_{stream_.get_executor()};
    std::string out_, allow_;
    char scratch_[4096];
    bool keep_alive_ = true, writing_ = false, stream_done_ = false, answering_ = false;
    bool close_delimited_ = false;  // a stream to an HTTP/1.0 client
    // for the access log and the metrics
    std::chrono::steady_clock::time_point t0_;
    std::shared_ptr<Job> log_job_;
    std::string log_prompt_, cors_;
    int status_ = 0;
    bool logged_ = false;
    uint64_t watch_gen_ = 0;
    uint64_t idle_key_ = 0;         // the key in ServerState::idle while waiting for a request
    bool shedding_ = false;         // shed() cancelled the header read to close the connection
};

// Asks the connection that has waited longest for a request to close (it declines when
// one has begun to arrive: see Session::shed); false when none waits.
bool shed_oldest_idle(ServerState& s) {
    std::shared_ptr<Session> victim;
    uint64_t key = 0;
    {
        std::lock_guard<std::mutex> lk(s.idle_mu);
        while (!victim && !s.idle.empty()) {
            key = s.idle.begin()->first;
            victim = s.idle.begin()->second.lock();
            s.idle.erase(s.idle.begin());
        }
    }
    if (!victim) return false;
    net::post(victim->executor(), [victim, key] { victim->shed(key); });
    return true;
}

class Listener : public std::enable_shared_from_this<Listener> {
public:
    Listener(net::io_context& ioc, tcp::acceptor& acceptor, ServerState& s)
        : ioc_(ioc), acceptor_(acceptor), s_(s), pause_(ioc) {}
    void accept() {
        acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](beast::error_code ec, tcp::socket sock) {
            if (ec == net::error::operation_aborted || !self->acceptor_.is_open()) return;  // closed for draining
            if (!ec) {
                // streamed events are small writes in a row: without this, Nagle's algorithm
                // holds each one until the client's delayed ACK (40 ms)
                beast::error_code ignored;
                sock.set_option(tcp::no_delay(true), ignored);
                std::make_shared<Session>(std::move(sock), self->s_)->start();
                return self->accept();
            }
            // a client that gave up before we took it: nothing wrong with us
            if (ec == net::error::connection_aborted) return self->accept();
            // Out of descriptors (or memory): the waiting connection stays in the kernel's
            // backlog, so accepting again at once fails again at once — a busy loop. Free a
            // descriptor by shedding the longest-idle connection and retry shortly; with
            // none to shed, wait for a request to finish. Any other error: pause too.
            const bool resources = ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
                                   ec == net::error::no_memory ||
                                   (ec.category() == boost::system::system_category() && ec.value() == ENFILE);
            const bool shed = resources && shed_oldest_idle(self->s_);
            self->warn(ec, shed);
            self->pause_.expires_after(std::chrono::milliseconds(shed ? 5 : 100));
            self->pause_.async_wait([self](beast::error_code ec) {
                if (!ec && self->acceptor_.is_open()) self->accept();
            });
        });
    }

private:
    // one line per 10 s at most: under a flood of connections every accept fails
    void warn(const beast::error_code& ec, bool shed) {
        const auto now = std::chrono::steady_clock::now();
        ++suppressed_;
        if (now - last_warning_ < std::chrono::seconds(10)) return;
        std::fprintf(stderr,
                     "retnet serve: accept failed: %s (%lld times since the last report); %s. HINT: raise the "
                     "file-descriptor limit (ulimit -n)\n",
                     ec.message().c_str(), (long long)suppressed_,
                     shed ? "closing the longest-idle connection" : "pausing new connections for 100 ms");
        last_warning_ = now;
        suppressed_ = 0;
    }
    net::io_context& ioc_;
    tcp::acceptor& acceptor_;
    ServerState& s_;
    net::steady_timer pause_;
    std::chrono::steady_clock::time_point last_warning_{};
    int64_t suppressed_ = 0;
};

}  // namespace

int run_serve(const ServeOptions& opt) {
    validate_serve_options(opt);
    ServerState s(opt, opt.max_slots + opt.max_queue);
    std::optional<ChatTemplate> file_template;
    prepare_serving(opt, s.names, s.keys, file_template);  // names, keys, a template file: errors before listening
    if (file_template) s.chat = *file_template;
    s.model_name = s.names[0];
    s.created = unix_now();
    s.limits.max_prompt_tokens = opt.max_prompt_tokens;
    s.limits.max_tokens_limit = opt.max_tokens_limit;
    s.limits.max_choices = opt.max_slots;

    std::signal(SIGPIPE, SIG_IGN);  // a write to a vanished client is an error code, not a death
    net::io_context ioc(opt.threads);
    tcp::acceptor acceptor(ioc);
    tcp::endpoint ep;
    try {
        ep = tcp::endpoint(net::ip::make_address(opt.host), static_cast<unsigned short>(opt.port));
        acceptor.open(ep.protocol());
        acceptor.set_option(net::socket_base::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen(net::socket_base::max_listen_connections);
    } catch (const boost::system::system_error& e) {
        RN_FAIL("serve: cannot listen on ", opt.host, ":", opt.port, ": ", e.code().message());
    }
    std::make_shared<Listener>(ioc, acceptor, s)->accept();

    // the tokenizer threads (see the top of this file); declared after ioc, so stopped
    // and joined first, while the sessions their pending work holds can still go away
    net::io_context tokenizers;
    auto tokenizers_work = net::make_work_guard(tokenizers);
    s.tokenizers = &tokenizers;
    std::vector<std::thread> tokenizer_threads;
    for (int i = 0; i < opt.threads; ++i)
        tokenizer_threads.emplace_back([&] {
            lower_this_thread_priority();
            tokenizers.run();
        });


    // SIGTERM/SIGINT: stop accepting, refuse new requests, let admitted ones finish
    net::signal_set signals(ioc, SIGTERM, SIGINT);
    net::steady_timer drain_timer(ioc);
    auto drain_deadline = std::chrono::steady_clock::now();
    std::function<void()> poll_drain = [&] {
        const bool timed_out = std::chrono::steady_clock::now() > drain_deadline;
        if ((s.queue.in_system() == 0 && s.open_requests.load() == 0) || timed_out) {
            if (timed_out)
                std::fprintf(stderr, "retnet serve: drain timed out with %lld requests open\n",
                             (long long)s.open_requests.load());
            ioc.stop();
            return;
        }
        drain_timer.expires_after(std::chrono::milliseconds(20));
        drain_timer.async_wait([&](beast::error_code) { poll_drain(); });
    };
    signals.async_wait([&](beast::error_code ec, int sig) {
        if (ec) return;
        std::printf("retnet serve: signal %d, draining %lld open requests\n", sig, (long long)s.open_requests.load());
        std::fflush(stdout);
        s.draining = true;
        s.queue.close();
        beast::error_code ignored;
        acceptor.close(ignored);
        drain_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(opt.drain_timeout_s * 1000));
        poll_drain();
    });

    // The listener is open from here on: /health says 503 "loading" until the model is in
    // (a load balancer sees a live process, not a refused connection).
    const auto bound = acceptor.local_endpoint();
    std::vector<std::thread> io;
    for (int i = 0; i < opt.threads; ++i) io.emplace_back([&] { ioc.run(); });
    std::thread engine_thread;
    auto stop_all = [&] {
        ioc.stop();
        for (auto& t : io) t.join();
        tokenizers.stop();
        for (auto& t : tokenizer_threads) t.join();
        s.queue.close();  // also when ioc stopped some other way
        if (engine_thread.joinable()) engine_thread.join();
    };
    std::printf("retnet serve: loading %s, answering on http://%s:%u meanwhile (/health: 503 loading)\n",
                opt.checkpoint.c_str(), bound.address().to_string().c_str(), unsigned(bound.port()));
    std::fflush(stdout);
    try {
        if (opt.startup_delay_s > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(int64_t(opt.startup_delay_s * 1000)));
        std::optional<Tokenizer> tok;
        std::string metadata;
        std::string tokenizer_bytes;
        std::shared_ptr<nn::LanguageModel> model = load_model(opt.checkpoint, tok, metadata, &tokenizer_bytes);
        if (!file_template && !chat_template_from_metadata(metadata, s.chat)) s.chat = default_chat_template();
        s.tok = std::move(tok);
        s.limits.vocab_size = s.tok->vocab_size();
        s.limits.max_token_bytes = longest_token_bytes(*s.tok);
        EngineOptions eo;
        eo.max_slots = opt.max_slots;
        eo.prefill_chunk = opt.prefill_chunk;
        eo.max_context = opt.max_context;
        eo.prefix_cache_bytes = size_t(std::max<int64_t>(opt.prefix_cache_mb, 0)) << 20;
        if (!opt.draft.empty() || opt.speculate_ngram)
            eo.speculative = speculative_from_flags(opt.draft, opt.speculate_ngram, opt.speculative_k,
                                                    opt.speculative_always, tokenizer_bytes, "serve");
        eo.device = opt.device;
        eo.dtype = opt.dtype;
        eo.cuda_graphs = opt.cuda_graphs ? 1 : 0;
        eo.eos_id = s.tok->eos_id();
        s.worker = std::make_unique<GenerationWorker>(model, eo, *s.tok, s.queue);
        s.worker->set_metrics(&s.metrics);
    } catch (...) {
        stop_all();
        throw;
    }
    engine_thread = std::thread([&] { s.worker->run(); });
    s.ready.store(true, std::memory_order_release);

    std::printf("retnet serve: listening on http://%s:%u (model %s, %lld slots, %.1f MiB of state, queue %lld)\n",
                bound.address().to_string().c_str(), unsigned(bound.port()), s.model_name.c_str(),
                (long long)opt.max_slots, double(s.worker->state_bytes()) / (1 << 20), (long long)opt.max_queue);
    std::fflush(stdout);

    for (auto& t : io) t.join();
    io.clear();
    stop_all();
    std::printf("retnet serve: stopped after %lld generated tokens\n", (long long)s.worker->tokens_generated.load());
    std::fflush(stdout);
    return 0;
}

}  // namespace rn::tools
