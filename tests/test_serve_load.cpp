// tests/test_serve_load.cpp — a bounded load test of `retnet serve` on loopback: 32
// concurrent clients send 3,300 completions (a quarter streamed, some on fresh
// connections, some cancelled by hanging up mid-stream) to a server with 16 slots.
// Every request must be answered 200 with a finish reason, the server must not crash,
// and its resident memory must level off: it is measured after a warm-up and after each
// of two equal rounds, and the second round may not grow it by more than a few MiB.
// Prints requests/s, tokens/s and the RSS figures. (Under AddressSanitizer the
// allocator's quarantine grows RSS by design, so there the figures are printed only.)
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdio>

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

// `per_client` requests from each of `clients` threads; request i of client c is fixed by
// (c, i), so rounds are alike.
void run_round(int port, int clients, int per_client, RoundStats& st) {
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c)
        threads.emplace_back([&, c] {
            std::unique_ptr<Client> conn;
            for (int i = 0; i < per_client; ++i) {
                const int k = c * per_client + i;
                json body = {{"prompt", "And God said " + std::to_string(k % 97)},
                             {"max_tokens", 4 + k % 7},
                             {"seed", k}};
                try {
                    if (!conn || k % 5 == 0) conn = std::make_unique<Client>(port);  // some fresh connections
                    if (k % 4 == 1) {
                        body["stream"] = true;
                        body["stream_options"] = {{"include_usage", true}};
                        const bool hang_up = k % 16 == 1;  // cancel mid-stream now and then
                        bool finished = false;
                        int events = 0;
                        int status = conn->stream(body.dump(), [&](const std::string& data) {
                            if (data == "[DONE]") return true;
                            if (!hang_up) ++events;
                            json j = json::parse(data);
                            if (j.contains("usage") && !j["usage"].is_null()) {
                                st.tokens += j["usage"]["completion_tokens"].get<int64_t>();
                                finished = true;
                            }
                            return !(hang_up && ++events == 1);
                        });
                        if (hang_up) {
                            conn.reset();
                            ++st.hung_up;
                            (status == 200 ? st.ok : st.failed)++;
                        } else if (status == 200 && finished) {
                            ++st.ok;
                        } else {
                            // say which request and how it ended, so a rare failure names its cause
                            ++st.failed;
                            std::fprintf(stderr, "load: streamed request %d: status %d, %d events, %s\n", k, status,
                                         events, finished ? "usage seen" : "no usage chunk (stream cut short)");
                        }
                    } else {
                        Reply r = conn->post("/v1/completions", body.dump());
                        json j = r.j();
                        if (r.status == 200 && !j["choices"][0]["finish_reason"].is_null()) {
                            ++st.ok;
                            st.tokens += j["usage"]["completion_tokens"].get<int64_t>();
                        } else {
                            ++st.failed;
                            std::fprintf(stderr, "load: status %d: %s\n", r.status, r.body.c_str());
                        }
                    }
                } catch (const std::exception& e) {
                    ++st.failed;
                    conn.reset();
                    std::fprintf(stderr, "load: request %d: %s\n", k, e.what());
                }
            }
        });
    for (auto& t : threads) t.join();
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
