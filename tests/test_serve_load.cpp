// tests/test_serve_load.cpp — a bounded load test of `retnet serve` on loopback: 32
// concurrent clients send 3,300 completions (a quarter streamed, some on fresh
// connections, some cancelled by hanging up mid-stream) to a server with 16 slots.
// Every request must be answered 200 with a finish reason, the server must not crash,
// and its resident memory must level off: it is measured after a warm-up and after each
// of two equal rounds, and the second round may not grow it by more than a few MiB.
// Prints requests/s, tokens/s and the RSS figures. (Under AddressSanitizer the
// allocator's quarantine grows RSS by design, so there the figures are printed only.)
// A failed request is named with its connection's history and how far its answer got,
// and the server's own count of answers by status follows (see fail_line).
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdio>
#include <sstream>
#include <string>

#include "serve_test_util.h"

using namespace rn;
using namespace rn::test;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

struct RoundStats {
    std::atomic<int64_t> ok{0}, failed{0}, tokens{0}, hung_up{0};
};

// One request's story for a failure message: which request, what kind, on which
// connection (fresh, or reused: how many answers it carried before and how long it sat
// idle since the last one), how long it took and how far the answer got. A keep-alive
// connection closed under a client, a false "client gone", an engine error and a server
// refusal each read differently here (see the comment on fail_line below).
struct RequestLog {
    int k = 0, client = 0, index = 0;
    const char* kind = "whole";
    bool fresh = false;            // a new connection was opened for this request
    int answered_before = 0;       // answers read on this connection before this request
    double idle_ms = 0;            // since the connection's last answer (fresh: since connecting)
    std::chrono::steady_clock::time_point t0;
    int status = 0;                // 0: no status line came
    int events = 0;                // streamed: data events read (not [DONE])
    std::string last_event;        // streamed: the last data event (an error event says why)
};

// e.g. "load: request 71 (client 7, #1, whole) on a reused connection (its request #2,
// idle 0.0 ms) failed after 11.7 ms, 0.04 s into the round: end of stream [beast.http 1];
// status 0, 0 events". Reading it: no status and "end of stream" or a reset on a reused
// connection = the server closed it without answering (an idle close, or a client taken
// for gone); a status other than 200 = the server refused (its JSON says why); 200 and no
// usage chunk = the job failed in the engine (the last event holds its error).
void fail_line(const RequestLog& r, double round_s, const std::string& what) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - r.t0).count();
    std::string ev = r.last_event.substr(0, 300);
    std::fprintf(stderr,
                 "load: request %d (client %d, #%d, %s) on a %s connection (its request #%d, idle %.1f ms) failed "
                 "after %.1f ms, %.2f s into the round: %s; status %d, %d events%s%s\n",
                 r.k, r.client, r.index, r.kind, r.fresh ? "fresh" : "reused", r.answered_before + 1, r.idle_ms, ms,
                 round_s, what.c_str(), r.status, r.events, ev.empty() ? "" : ", last event: ", ev.c_str());
}

// The server's own count of answers since it started, by endpoint and status (GET
// /metrics): after a round with failures it shows whether the server answered them (a
// 503, a 500), or logged a 499 — took a client for gone — more often than the hang-ups.
void print_server_counts(int port) {
    try {
        const std::string text = Client(port).get("/metrics").body;
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);)
            if (line.rfind("retnet_requests_total{", 0) == 0)
                std::fprintf(stderr, "load: server says %s\n", line.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "load: GET /metrics failed: %s\n", e.what());
    }
}

// `per_client` requests from each of `clients` threads; request i of client c is fixed by
// (c, i), so rounds are alike.
void run_round(int port, int clients, int per_client, RoundStats& st) {
    const auto round_t0 = std::chrono::steady_clock::now();
    const int64_t failed_before = st.failed.load();
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c)
        threads.emplace_back([&, c] {
            std::unique_ptr<Client> conn;
            int answered = 0;  // answers read on conn, whatever their status
            auto last_answer = std::chrono::steady_clock::now();
            for (int i = 0; i < per_client; ++i) {
                const int k = c * per_client + i;
                json body = {{"prompt", "And God said " + std::to_string(k % 97)},
                             {"max_tokens", 4 + k % 7},
                             {"seed", k}};
                RequestLog log;
                log.k = k;
                log.client = c;
                log.index = i;
                const bool streamed = k % 4 == 1;
                const bool hang_up = k % 16 == 1;  // cancel mid-stream now and then
                log.kind = hang_up ? "streamed, hung up on purpose" : streamed ? "streamed" : "whole";
                auto fail = [&](const std::string& what) {
                    ++st.failed;
                    fail_line(log, std::chrono::duration<double>(std::chrono::steady_clock::now() - round_t0).count(),
                              what);
                };
                log.t0 = std::chrono::steady_clock::now();
                try {
                    if (!conn || k % 5 == 0) {  // some fresh connections (a failed connect is this request's)
                        log.fresh = true;
                        conn = std::make_unique<Client>(port);
                        answered = 0;
                        last_answer = std::chrono::steady_clock::now();
                    }
                    log.answered_before = answered;
                    const auto now = std::chrono::steady_clock::now();
                    log.idle_ms = std::chrono::duration<double, std::milli>(now - last_answer).count();
                    if (streamed) {
                        body["stream"] = true;
                        body["stream_options"] = {{"include_usage", true}};
                        bool finished = false;
                        std::string raw;
                        log.status = conn->stream(
                            body.dump(),
                            [&](const std::string& data) {
                                if (data == "[DONE]") return true;
                                ++log.events;
                                log.last_event = data;
                                json j = json::parse(data);
                                if (j.contains("usage") && !j["usage"].is_null()) {
                                    st.tokens += j["usage"]["completion_tokens"].get<int64_t>();
                                    finished = true;
                                }
                                return !(hang_up && log.events == 1);
                            },
                            "/v1/completions", &log.status, &raw);
                        ++answered;
                        last_answer = std::chrono::steady_clock::now();
                        if (hang_up) {
                            conn.reset();
                            ++st.hung_up;
                            if (log.status == 200) ++st.ok;
                            else fail("refused: " + raw.substr(0, 300));
                        } else if (log.status == 200 && finished) {
                            ++st.ok;
                        } else {
                            fail(log.status != 200 ? "refused: " + raw.substr(0, 300)
                                                   : "the stream ended without its usage chunk");
                        }
                    } else {
                        Reply r = conn->post("/v1/completions", body.dump());
                        ++answered;
                        last_answer = std::chrono::steady_clock::now();
                        log.status = r.status;
                        json j = r.status == 200 ? r.j() : json();
                        if (r.status == 200 && !j["choices"][0]["finish_reason"].is_null()) {
                            ++st.ok;
                            st.tokens += j["usage"]["completion_tokens"].get<int64_t>();
                        } else {
                            fail(r.status != 200 ? "refused: " + r.body.substr(0, 300)
                                                 : "200 without a finish reason: " + r.body.substr(0, 300));
                        }
                    }
                } catch (const boost::system::system_error& e) {
                    conn.reset();
                    fail(std::string(e.what()) + " [" + e.code().category().name() + " " +
                         std::to_string(e.code().value()) + "]");
                } catch (const std::exception& e) {
                    conn.reset();
                    fail(e.what());
                }
            }
        });
    for (auto& t : threads) t.join();
    if (st.failed.load() > failed_before) print_server_counts(port);
}

}  // namespace

BOOST_AUTO_TEST_CASE(serve_load_all_answered_memory_stable) {
    TinyCheckpoint ckpt;
    ServerProcess server(ckpt.path, {"--max-slots", "16", "--max-queue", "256", "--max-tokens-limit", "64", "--log-format", "off"});
    const int port = server.port();
    const int clients = 32;

    RoundStats warm;
    run_round(port, clients, 10, warm);  // 320: every code path and buffer has been used once
    BOOST_TEST(warm.failed.load() == 0);
    const long rss_warm = server.rss_kib();

    RoundStats a, b;
    auto t0 = std::chrono::steady_clock::now();
    run_round(port, clients, 47, a);
    const long rss_a = server.rss_kib();
    run_round(port, clients, 47, b);
    const long rss_b = server.rss_kib();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    const int64_t requests = a.ok + a.failed + b.ok + b.failed;
    std::printf("serve load: %lld requests from %d clients in %.2f s (%.0f req/s, %.0f tokens/s), "
                "%lld hung up mid-stream, %lld failed\n",
                (long long)(requests + warm.ok + warm.failed), clients, secs, double(requests) / secs,
                double(a.tokens + b.tokens) / secs, (long long)(warm.hung_up + a.hung_up + b.hung_up),
                (long long)(warm.failed + a.failed + b.failed));
    std::printf("serve load: server RSS %.1f MiB after warm-up, %.1f MiB after round 1, %.1f MiB after round 2%s\n",
                rss_warm / 1024.0, rss_a / 1024.0, rss_b / 1024.0, kAsan ? " (AddressSanitizer build)" : "");
    BOOST_TEST(a.failed.load() == 0);
    BOOST_TEST(b.failed.load() == 0);
    BOOST_TEST(a.ok.load() == clients * 47);
    BOOST_TEST(b.ok.load() == clients * 47);

    // nothing left running, and the server still answers
    // nothing still counted as being answered either (a leak here makes SIGTERM's drain
    // wait for its timeout)
    json h = wait_health(port, [](const json& h) { return h["sequences_in_server"] == 0 && h["open_requests"] == 0; });
    BOOST_TEST(h["sequences_in_server"] == 0, h.dump());
    BOOST_TEST(h["open_requests"] == 0, h.dump());
    BOOST_TEST(h["status"] == "ok");
    if (!kAsan) {
        BOOST_TEST(rss_b - rss_a < 8 * 1024, "RSS grew by " << (rss_b - rss_a) << " KiB in the second round");
        BOOST_TEST(rss_b - rss_warm < 32 * 1024, "RSS grew by " << (rss_b - rss_warm) << " KiB after warm-up");
    }
    server.signal(SIGTERM);
    BOOST_TEST(server.wait_exit(std::chrono::seconds(30)) == 0);
}
