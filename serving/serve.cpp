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
// connections) and accepts again after a short pause — 100 ms when there is none to close.
#include "serving/serve.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "core/error.h"
#include "nn/checkpoint.h"
#include "serving/http_api.h"
#include "serving/serve_worker.h"

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
    std::string model_name;
    int64_t created = 0;
    Tokenizer tok;
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

    ServerState(ServeOptions o, Tokenizer t, int64_t capacity)
        : opt(std::move(o)), tok(std::move(t)), queue(capacity) {}
    uint64_t random_seed() {
        std::lock_guard<std::mutex> lk(seed_mu);
        return seed_rng();
    }
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, ServerState& s) : stream_(std::move(socket)), s_(s) {}
    ~Session() {
        // the connection died with a job in flight (the server stopped): free its slots
        if (job_) cancel_job();
        set_busy();
    }
    // Closes the connection if it is still waiting for the request it waited for when it
    // was listed as idle under `key` (called on its strand).
    void shed(uint64_t key) {
        if (key != idle_key_) return;
        set_busy();
        keep_alive_ = false;
        beast::error_code ec;
        stream_.socket().close(ec);  // the pending read ends with operation_aborted
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
        stream_.expires_after(std::chrono::milliseconds(int64_t(s_.opt.idle_timeout_s * 1000)));
        http::async_read_header(stream_, buffer_, *parser_,
                                beast::bind_front_handler(&Session::on_header, shared_from_this()));
    }

    void on_header(beast::error_code ec, std::size_t) {
        set_busy();
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
        auto only = [&](http::verb v, const char* allow) {
            allow_ = allow;
            if (req_.method() != v)
                throw ApiError(405, "invalid_request_error", "",
                               "method " + std::string(req_.method_string()) + " is not allowed on " + target +
                                   "; use " + allow);
        };
        if (target == "/health") {
            only(http::verb::get, "GET");
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
                                {"tokens_generated", s_.worker->tokens_generated.load()}};
            return send_json(http::status::ok, j.dump());
        }
        if (target == "/v1/models") {
            only(http::verb::get, "GET");
            return send_json(http::status::ok, models_json(s_.model_name, s_.created));
        }
        if (target == "/v1/completions") {
            only(http::verb::post, "POST");
            return start_completion();
        }
        throw ApiError(404, "invalid_request_error", "", "no such endpoint: " + clip(target, 100) +
                                                             " (this server has POST /v1/completions, GET /v1/models, "
                                                             "GET /health)");
    }

    // ---- completions
    void start_completion() {
        if (s_.draining.load()) throw ApiError(503, "server_shutting_down", "", "the server is shutting down");
        auto r = std::make_shared<CompletionRequest>(parse_completion_request(req_.body(), s_.limits));
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
            r, [this](const std::string& t) { return s_.tok.encode(t); }, s_.tok.bos_id(), s_.tok.vocab_size(),
            s_.limits);
    }

    // Hands the request to the engine thread and starts the answer (or throws ApiError).
    void submit(const CompletionRequest& r, std::vector<std::vector<int32_t>> prompts) {
        auto job = std::make_shared<Job>();
        job->id = "cmpl-" + std::to_string(unix_now()) + "-" + std::to_string(s_.next_id++);
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
        watch_disconnect();
        if (job_->stream) {
            sse_res_.emplace(http::status::ok, req_.version());
            sse_res_->set(http::field::content_type, "text/event-stream");
            sse_res_->set(http::field::cache_control, "no-cache");
            // HTTP/1.0 has no chunked encoding: there the events are the raw body, which
            // ends when the connection closes
            close_delimited_ = req_.version() < 11;
            if (close_delimited_) keep_alive_ = false;
            sse_res_->keep_alive(keep_alive_);
            sse_res_->chunked(!close_delimited_);
            sse_sr_.emplace(*sse_res_);
            writing_ = true;
            stream_.expires_after(write_timeout());
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
        std::vector<CompletionChoice> choices;
        Usage usage;
        {
            std::lock_guard<std::mutex> lk(job_->mu);
            if (!job_->finished()) return;
            if (job_->error_status != 0) {
                ApiError e(job_->error_status, job_->error_status >= 500 ? "server_error" : "invalid_request_error",
                           "", job_->error);
                job_.reset();
                return send_error(e);
            }
            usage.prompt_tokens = job_->prompt_tokens;
            for (size_t i = 0; i < job_->out.size(); ++i) {
                const Job::Choice& c = job_->out[i];
                choices.push_back({c.pending, int64_t(i), c.finish_reason});
                usage.completion_tokens += c.completion_tokens;
            }
        }
        std::string body = completion_json(job_->id, job_->created, s_.model_name, choices, usage);
        job_.reset();
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
            auto event = [&](const std::string& json) { events += "data: " + json + "\n\n"; };
            if (job_->error_status != 0) {
                event(error_json(ApiError(job_->error_status,
                                          job_->error_status >= 500 ? "server_error" : "invalid_request_error", "",
                                          job_->error)));
                done = true;
            } else {
                for (size_t i = 0; i < job_->out.size(); ++i) {
                    Job::Choice& c = job_->out[i];
                    if (!c.pending.empty()) {
                        event(stream_chunk_json(job_->id, job_->created, s_.model_name, int64_t(i), c.pending, ""));
                        c.pending.clear();
                    }
                    if (!c.finish_reason.empty() && !c.finish_sent) {
                        event(stream_chunk_json(job_->id, job_->created, s_.model_name, int64_t(i), "",
                                                c.finish_reason));
                        c.finish_sent = true;
                    }
                }
                done = job_->finished();
                if (done && job_->include_usage) {
                    Usage u;
                    u.prompt_tokens = job_->prompt_tokens;
                    for (const auto& c : job_->out) u.completion_tokens += c.completion_tokens;
                    event(stream_usage_json(job_->id, job_->created, s_.model_name, u));
                }
            }
        }
        if (done) {
            events += "data: [DONE]\n\n";
            job_.reset();
            stream_done_ = true;
        }
        if (events.empty()) return;
        out_ = std::move(events);
        writing_ = true;
        stream_.expires_after(write_timeout());
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
    static std::chrono::milliseconds write_timeout() { return std::chrono::milliseconds(30000); }

    void send_error(const ApiError& e) {
        auto extra = [&](http::response<http::string_body>& res) {
            if (e.status == 503) res.set(http::field::retry_after, "1");
            if (e.status == 405) res.set(http::field::allow, allow_);
        };
        send_json(http::status(e.status), error_json(e), extra);
    }

    void send_json(http::status status, std::string body,
                   const std::function<void(http::response<http::string_body>&)>& extra = {}) {
        res_.emplace(status, req_.version() ? req_.version() : 11);
        res_->set(http::field::server, "retnet.cpp");
        res_->set(http::field::content_type, "application/json");
        if (s_.draining.load()) keep_alive_ = false;
        res_->keep_alive(keep_alive_);
        res_->body() = std::move(body);
        if (extra) extra(*res_);
        res_->prepare_payload();
        writing_ = true;
        stream_.expires_after(write_timeout());
        http::async_write(stream_, *res_, beast::bind_front_handler(&Session::on_response_written, shared_from_this()));
    }

    void on_response_written(beast::error_code ec, std::size_t) {
        writing_ = false;
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
    uint64_t watch_gen_ = 0;
    uint64_t idle_key_ = 0;         // the key in ServerState::idle while waiting for a request
};

// Closes the connection that has waited longest for a request; false when none waits.
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
                     shed ? "closed the longest-idle connection" : "pausing new connections for 100 ms");
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

// The model and its tokenizer from a checkpoint (the weights only; the file's copy is
// freed before serving starts).
std::shared_ptr<nn::RetNetLM> load_model(const std::string& path, std::optional<Tokenizer>& tok) {
    nn::ReadOptions ro;
    ro.optimizer = false;
    nn::Checkpoint ck = nn::read_checkpoint(path, ro);
    RN_CHECK(!ck.tokenizer.empty(), "serve: ", path, " holds no tokenizer. HINT: serve a checkpoint written by "
             "`retnet train`, which stores its tokenizer inside");
    tok.emplace(Tokenizer::from_serialized(ck.tokenizer));
    RN_CHECK(tok->vocab_size() <= ck.config.vocab_size, "serve: the tokenizer in ", path, " has ", tok->vocab_size(),
             " ids but the model only ", ck.config.vocab_size);
    auto model = std::make_shared<nn::RetNetLM>(ck.config);
    nn::load_into(ck, *model);
    return model;
}

// The most bytes of text one token stands for: the longest piece, as text. Byte pieces
// (<0xE2>) decode to at most a replacement character (3 bytes) for 1 byte of input, and a
// '▁' piece to 3 bytes for a 1-byte space: an upper bound either way.
int64_t longest_token_bytes(const Tokenizer& tok) {
    size_t longest = 1;
    for (int32_t id = 0; id < tok.vocab_size(); ++id) longest = std::max(longest, tok.decode({id}).size());
    return int64_t(longest);
}

// The tokenizer threads run at a lower priority than the I/O and engine threads: under
// CPU contention, tokenising a long prompt yields to serving everyone else.
void lower_this_thread_priority() {
    const pid_t tid = pid_t(::syscall(SYS_gettid));
    errno = 0;
    const int now = ::getpriority(PRIO_PROCESS, id_t(tid));
    if (errno == 0) ::setpriority(PRIO_PROCESS, id_t(tid), std::min(now + 5, 19));  // best effort
}

}  // namespace

void validate_serve_options(const ServeOptions& opt) {
    auto in = [](const char* name, auto v, auto lo, auto hi) {
        RN_CHECK(v >= lo && v <= hi, "serve: ", name, " must be in [", lo, ", ", hi, "], got ", v);
    };
    RN_CHECK(!opt.checkpoint.empty(), "serve: no checkpoint given. HINT: retnet serve runs/tiny/best.h5");
    beast::error_code ec;
    net::ip::make_address(opt.host, ec);
    RN_CHECK(!ec, "serve: --host must be an IP address to listen on (127.0.0.1: this machine only, 0.0.0.0: every "
             "interface), got '", opt.host, "'");
    in("--port", opt.port, 0, 65535);
    in("--max-slots", opt.max_slots, int64_t(1), int64_t(1) << 16);
    in("--max-queue", opt.max_queue, int64_t(0), int64_t(1) << 20);
    in("--max-body", opt.max_body, int64_t(64), int64_t(1) << 30);
    in("--max-prompt-tokens", opt.max_prompt_tokens, int64_t(1), int64_t(1) << 20);
    in("--max-tokens-limit", opt.max_tokens_limit, int64_t(1), int64_t(1) << 20);
    in("--prefill-chunk", opt.prefill_chunk, int64_t(1), int64_t(1) << 20);
    in("--threads", opt.threads, 1, 256);
    RN_CHECK(opt.model_name.size() <= 256, "serve: --model-name must be at most 256 bytes, got ", opt.model_name.size());
    RN_CHECK(opt.dtype == "f32" || opt.dtype == "bf16", "serve: --dtype must be f32 or bf16 (bf16 on CUDA only), got '",
             opt.dtype, "'");
    RN_CHECK(opt.device == "cpu" || opt.device.rfind("cuda", 0) == 0,
             "serve: --device must be cpu, cuda or cuda:N, got '", opt.device, "'");
    RN_CHECK(std::isfinite(opt.idle_timeout_s) && opt.idle_timeout_s > 0 && opt.idle_timeout_s <= 86400,
             "serve: the idle timeout must be in (0, 86400] seconds, got ", opt.idle_timeout_s);
    RN_CHECK(std::isfinite(opt.drain_timeout_s) && opt.drain_timeout_s >= 0 && opt.drain_timeout_s <= 86400,
             "serve: the drain timeout must be in [0, 86400] seconds, got ", opt.drain_timeout_s);
}

int run_serve(const ServeOptions& opt) {
    validate_serve_options(opt);

    std::optional<Tokenizer> tok;
    std::shared_ptr<nn::RetNetLM> model = load_model(opt.checkpoint, tok);
    ServerState s(opt, std::move(*tok), opt.max_slots + opt.max_queue);
    s.model_name = opt.model_name.empty() ? std::filesystem::path(opt.checkpoint).stem().string() : opt.model_name;
    s.created = unix_now();
    s.limits.max_prompt_tokens = opt.max_prompt_tokens;
    s.limits.max_tokens_limit = opt.max_tokens_limit;
    s.limits.max_choices = opt.max_slots;
    s.limits.vocab_size = s.tok.vocab_size();
    s.limits.max_token_bytes = longest_token_bytes(s.tok);
    EngineOptions eo;
    eo.max_slots = opt.max_slots;
    eo.prefill_chunk = opt.prefill_chunk;
    eo.device = opt.device;
    eo.dtype = opt.dtype;
    eo.cuda_graphs = opt.cuda_graphs ? 1 : 0;
    eo.eos_id = s.tok.eos_id();
    s.worker = std::make_unique<GenerationWorker>(model, eo, s.tok, s.queue);

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

    std::thread engine_thread([&] { s.worker->run(); });

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

    const auto bound = acceptor.local_endpoint();
    std::printf("retnet serve: listening on http://%s:%u (model %s, %lld slots, %.1f MiB of state, queue %lld)\n",
                bound.address().to_string().c_str(), unsigned(bound.port()), s.model_name.c_str(),
                (long long)opt.max_slots, double(s.worker->state_bytes()) / (1 << 20), (long long)opt.max_queue);
    std::fflush(stdout);

    std::vector<std::thread> io;
    for (int i = 1; i < opt.threads; ++i) io.emplace_back([&] { ioc.run(); });
    ioc.run();
    for (auto& t : io) t.join();
    tokenizers.stop();
    for (auto& t : tokenizer_threads) t.join();
    s.queue.close();  // also when ioc stopped some other way
    engine_thread.join();
    std::printf("retnet serve: stopped after %lld generated tokens\n", (long long)s.worker->tokens_generated.load());
    std::fflush(stdout);
    return 0;
}

}  // namespace rn::tools
