// tests/test_serve.cpp — `retnet serve` as a real process on loopback, driven by a Beast
// client: completions whole and streamed (same text), several prompts and n, seeds,
// stop strings, concurrent clients getting what they get alone, every malformed-request
// case with its status and field, disconnects (mid-stream and while waiting) freeing
// slots, 503 when full, and SIGTERM draining in-flight streams before a clean exit; and
// hostile clients: JSON nested a million deep, numbers past double's range, HTTP/1.0
// streams, logit_bias/ignore_eos, option validation, running out of descriptors (without
// dropping a request that has begun to arrive), and long prompts that must not delay
// everyone else.
// The program's path comes from CMake (RN_RETNET_BIN) or $RETNET_BIN.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>

#include "serve_test_util.h"

using namespace rn;
using namespace rn::test;

namespace {

// One checkpoint and one server for the tests that need no special limits.
struct Shared {
    TinyCheckpoint ckpt;
    tools::Tokenizer tok = tools::Tokenizer::from_serialized(nn::read_checkpoint(ckpt.path).tokenizer);
    ServerProcess server{ckpt.path,
                         {"--max-slots", "8", "--max-body", "8192", "--max-prompt-tokens", "64", "--max-tokens-limit",
                          "100000"}};
    int port() const { return server.port(); }
};
Shared& shared() {
    static Shared s;
    return s;
}

json completion(int port, const json& body, int expect_status = 200) {
    Reply r = Client(port).post("/v1/completions", body.dump());
    BOOST_TEST_REQUIRE(r.status == expect_status, "status " << r.status << " for " << body.dump() << ": " << r.body);
    return r.j();
}

std::string text_of(const json& j, size_t i = 0) { return j["choices"][i]["text"].get<std::string>(); }

// A prompt whose greedy continuation runs 300 tokens without the end-of-text token. With
// random weights greedy decoding falls into a loop, so it then runs on for good: the
// tests that need a sequence still running when they act use it, and so never pass
// because the model happened to stop by itself.
const std::string& endless_prompt() {
    static const std::string prompt = [] {
        for (const char* p : {"And", "In the", "God", "the earth", "darkness", "void", "And the", "was"}) {
            json j = completion(shared().port(), {{"prompt", p}, {"max_tokens", 300}, {"temperature", 0}});
            if (j["choices"][0]["finish_reason"] == "length") return std::string(p);
        }
        BOOST_FAIL("no test prompt runs 300 greedy tokens without end-of-text");
        return std::string();
    }();
    return prompt;
}
json endless(int max_tokens, bool stream) {
    return {{"prompt", endless_prompt()}, {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", stream}};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(serve)

BOOST_AUTO_TEST_CASE(completion_models_health) {
    const int port = shared().port();
    json j = completion(port, {{"model", "tiny"}, {"prompt", "In the beginning"}, {"max_tokens", 8}, {"temperature", 0}});
    BOOST_TEST(j["object"] == "text_completion");
    BOOST_TEST(j["model"] == "tiny");
    BOOST_TEST(j["id"].get<std::string>().rfind("cmpl-", 0) == 0);
    BOOST_TEST(j["choices"].size() == 1u);
    const std::string reason = j["choices"][0]["finish_reason"];
    BOOST_TEST((reason == "length" || reason == "stop"));
    const int64_t prompt_tokens = int64_t(shared().tok.encode("In the beginning").size()) + 1;  // + BOS
    BOOST_TEST(j["usage"]["prompt_tokens"] == prompt_tokens);
    const int64_t completion_tokens = j["usage"]["completion_tokens"];
    BOOST_TEST((reason == "stop" || completion_tokens == 8));
    BOOST_TEST(completion_tokens >= 1);
    BOOST_TEST(j["usage"]["total_tokens"] == prompt_tokens + completion_tokens);
    // greedy is deterministic; so is sampling with a seed
    json again = completion(port, {{"prompt", "In the beginning"}, {"max_tokens", 8}, {"temperature", 0}});
    BOOST_TEST(text_of(again) == text_of(j));
    json s1 = completion(port, {{"prompt", "And"}, {"max_tokens", 12}, {"seed", 42}, {"temperature", 1.0}});
    json s2 = completion(port, {{"prompt", "And"}, {"max_tokens", 12}, {"seed", 42}, {"temperature", 1.0}});
    BOOST_TEST(text_of(s1) == text_of(s2));
    // a served model name passes; unknown fields are ignored (OpenAI does)
    completion(port, {{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 2}, {"frobnicate", {1, 2}}, {"user", "me"}});
    // a model this server does not serve: OpenAI's 404 (tests/test_serve_chat.cpp has the aliases)
    BOOST_TEST(completion(port, {{"model", "gpt-4"}, {"prompt", "x"}}, 404)["error"]["code"] == "model_not_found");

    Client c(port);  // several requests on one keep-alive connection
    json models = c.get("/v1/models").j();
    BOOST_TEST(models["object"] == "list");
    BOOST_TEST(models["data"][0]["id"] == "tiny");
    json h = c.get("/health").j();
    BOOST_TEST(h["status"] == "ok");
    BOOST_TEST(h["slots"] == 8);
    BOOST_TEST(h["state_bytes"].get<int64_t>() > 0);
}

BOOST_AUTO_TEST_CASE(a_transformer_checkpoint_is_served_unchanged) {
    // the same server over the Transformer baseline: its KV cache is preallocated for
    // --max-context tokens in each slot (the memory /health reports), and a prompt that
    // leaves no room in it is a 400
    TinyCheckpoint ckpt("{}", "transformer");
    const int64_t slots = 3, ctx = 96;
    ServerProcess server(ckpt.path, {"--max-slots", std::to_string(slots), "--max-context", std::to_string(ctx)});
    const int port = server.port();
    json body = {{"prompt", "In the beginning"}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}};
    json whole = completion(port, body);
    BOOST_TEST(whole["usage"]["completion_tokens"] == 12);
    BOOST_TEST(text_of(completion(port, body)) == text_of(whole));  // greedy: the same text again
    body["stream"] = true;
    Streamed s = stream_completion(port, body.dump());
    BOOST_TEST_REQUIRE(s.text.size() == 1u);
    BOOST_TEST(s.text[0] == text_of(whole));
    // two seeded samples in one request = each alone (the cache slots are per sequence)
    json two = completion(port, {{"prompt", "And"}, {"max_tokens", 10}, {"temperature", 1.0}, {"seed", 5}, {"n", 2}});
    json one = completion(port, {{"prompt", "And"}, {"max_tokens", 10}, {"temperature", 1.0}, {"seed", 5}});
    BOOST_TEST(text_of(two, 0) == text_of(one));

    const nn::ModelConfig cfg = nn::read_checkpoint(ckpt.path, {false, false}).config;
    BOOST_TEST(cfg.is_transformer());
    json h = Client(port).get("/health").j();
    const int64_t want = 2 * cfg.n_layers * slots * cfg.kv_heads() * ctx * cfg.head_dim() * 4;  // f32 K and V
    BOOST_TEST(h["state_bytes"].get<int64_t>() == want);
    std::string long_prompt;
    for (int i = 0; i < 60; ++i) long_prompt += "the earth was without form ";
    Reply r = Client(port).post("/v1/completions", json{{"prompt", long_prompt}, {"max_tokens", 4}}.dump());
    BOOST_TEST(r.status == 400, r.body);
    BOOST_TEST(r.body.find("max_context") != std::string::npos, r.body);
}

BOOST_AUTO_TEST_CASE(streaming_gives_the_same_text) {
    const int port = shared().port();
    json body = {{"prompt", "And God said"}, {"max_tokens", 20}, {"seed", 3}, {"temperature", 0.9}};
    json whole = completion(port, body);
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    Streamed s = stream_completion(port, body.dump());
    BOOST_TEST(s.status == 200);
    BOOST_TEST(s.done);
    BOOST_TEST_REQUIRE(s.text.size() == 1u);
    BOOST_TEST(s.text[0] == text_of(whole));
    BOOST_TEST(s.finish[0] == whole["choices"][0]["finish_reason"].get<std::string>());
    BOOST_TEST(s.usage == whole["usage"]);
    // without include_usage there is no usage chunk
    body.erase("stream_options");
    BOOST_TEST(stream_completion(port, body.dump()).usage.is_null());
}

BOOST_AUTO_TEST_CASE(several_prompts_and_n) {
    const int port = shared().port();
    json j = completion(port, {{"prompt", {"In the", "And the earth"}}, {"n", 2}, {"max_tokens", 10}, {"seed", 5}});
    BOOST_TEST_REQUIRE(j["choices"].size() == 4u);
    for (size_t i = 0; i < 4; ++i) BOOST_TEST(j["choices"][i]["index"] == i);
    // choice 0 of each prompt is what that prompt gives alone with the same seed
    json alone = completion(port, {{"prompt", "And the earth"}, {"max_tokens", 10}, {"seed", 5}});
    BOOST_TEST(text_of(j, 2) == text_of(alone));
    json alone1 = completion(port, {{"prompt", "And the earth"}, {"max_tokens", 10}, {"seed", 6}});
    BOOST_TEST(text_of(j, 3) == text_of(alone1));
    // token-id prompts work too and count the same tokens
    std::vector<int32_t> ids = shared().tok.encode("In the");
    json t = completion(port, {{"prompt", ids}, {"max_tokens", 10}, {"seed", 5}});
    BOOST_TEST(text_of(t) == text_of(j, 0));
    BOOST_TEST(t["usage"]["prompt_tokens"] == int64_t(ids.size()) + 1);
    BOOST_TEST(j["usage"]["prompt_tokens"] == int64_t(ids.size() + shared().tok.encode("And the earth").size()) + 2);
}

BOOST_AUTO_TEST_CASE(stop_strings_cut_the_text) {
    const int port = shared().port();
    json body = {{"prompt", "In the beginning"}, {"max_tokens", 40}, {"temperature", 0}};
    const std::string full = text_of(completion(port, body));
    // a stop string from the middle of the text (printable ASCII: a random model writes
    // stray bytes too, and a stop string must be valid UTF-8): the answer is what precedes it
    std::string stop;
    for (size_t i = full.size() / 3; i + 2 < full.size() && stop.empty(); ++i)
        if (std::all_of(full.begin() + long(i), full.begin() + long(i) + 2, [](char c) { return c >= 0x20 && c < 0x7f; }))
            stop = full.substr(i, 2);
    BOOST_TEST_REQUIRE(!stop.empty(), "no ASCII pair in the greedy text to use as a stop string: '" << full << "'");
    const std::string expected = full.substr(0, full.find(stop));
    body["stop"] = {"never-in-this-text", stop};
    json j = completion(port, body);
    BOOST_TEST(text_of(j) == expected);
    BOOST_TEST(j["choices"][0]["finish_reason"] == "stop");
    BOOST_TEST(j["usage"]["completion_tokens"].get<int64_t>() < 40);
    body["stream"] = true;
    Streamed s = stream_completion(port, body.dump());
    BOOST_TEST(s.text.at(0) == expected);
    BOOST_TEST(s.finish.at(0) == "stop");
    BOOST_TEST(s.done);
}

BOOST_AUTO_TEST_CASE(batched_equals_alone) {
    const int port = shared().port();
    const int n = 12;
    auto body = [](int i) {
        json b = {{"prompt", "And God said " + std::to_string(i)}, {"max_tokens", 16 + i % 5}, {"seed", 100 + i}};
        if (i % 3 == 0) b["temperature"] = 0;
        if (i % 4 == 1) b["top_k"] = 20;
        if (i % 4 == 2) b["top_p"] = 0.8;
        return b;
    };
    std::vector<std::string> alone(n), together(n);
    for (int i = 0; i < n; ++i) alone[size_t(i)] = text_of(completion(port, body(i)));
    // all at once (more than the 8 slots: some wait for a slot), half of them streamed
    // (no Boost.Test assertion inside a thread: its log is not thread-safe, which
    // ThreadSanitizer showed here; each thread notes what went wrong, the test asserts after)
    std::vector<std::thread> threads;
    std::vector<std::string> failures(n);
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            try {
                json b = body(i);
                if (i % 2) {
                    b["stream"] = true;
                    together[size_t(i)] = stream_completion(port, b.dump()).text.at(0);
                } else {
                    Reply r = Client(port).post("/v1/completions", b.dump());
                    if (r.status != 200) throw std::runtime_error("status " + std::to_string(r.status) + ": " + r.body);
                    together[size_t(i)] = text_of(r.j());
                }
            } catch (const std::exception& e) {
                failures[size_t(i)] = e.what();
            }
        });
    for (auto& t : threads) t.join();
    for (int i = 0; i < n; ++i) BOOST_TEST(failures[size_t(i)].empty(), "request " << i << ": " << failures[size_t(i)]);
    for (int i = 0; i < n; ++i) BOOST_TEST(together[size_t(i)] == alone[size_t(i)], "request " << i);
}

BOOST_AUTO_TEST_CASE(bad_requests_get_clear_errors_and_the_server_survives) {
    const int port = shared().port();
    struct Case {
        std::string body;
        int status;
        std::string param;  // "" = null
        std::string needle;
    };
    const std::vector<Case> cases = {
        {"", 400, "", "not valid JSON"},
        {"{\"prompt\": ", 400, "", "not valid JSON"},
        {"[1]", 400, "", "must be a JSON object"},
        {"{}", 400, "prompt", "'prompt' is required"},
        {R"({"prompt":5})", 400, "prompt", "got an integer"},
        {R"({"prompt":"a","max_tokens":"5"})", 400, "max_tokens", "must be an integer, got a string"},
        {R"({"prompt":"a","max_tokens":100001})", 400, "max_tokens", "[1, 100000]"},
        {R"({"prompt":"a","temperature":"hot"})", 400, "temperature", "must be a number"},
        {R"({"prompt":"a","stream":1})", 400, "stream", "must be a boolean"},
        {R"({"prompt":"a","stop":[1]})", 400, "stop", "got an integer"},
        {R"({"prompt":"a","n":9})", 400, "n", "[1, 8]"},
        {R"({"prompt":[1, 99999]})", 400, "prompt", "token id 99999"},
        {R"({"prompt":"a","logprobs":6})", 400, "logprobs", "must be in [0, 5]"},
        {R"({"prompt":"a","echo":true})", 400, "echo", "not supported"},
        {json{{"prompt", std::string(300, 'z')}}.dump(), 400, "prompt", "the limit is 64"},
        {json{{"prompt", std::string(9000, 'z')}}.dump(), 413, "", "larger than the server's limit of 8192 bytes"},
    };
    for (const Case& c : cases) {
        Reply r = Client(port).post("/v1/completions", c.body);
        BOOST_TEST(r.status == c.status, c.body.substr(0, 60) << " → " << r.status << " " << r.body);
        json e = json::parse(r.body, nullptr, false);
        BOOST_TEST_REQUIRE(e.contains("error"), r.body);
        BOOST_TEST(e["error"]["message"].get<std::string>().find(c.needle) != std::string::npos,
                   c.body.substr(0, 60) << " → " << r.body);
        if (c.param.empty()) BOOST_TEST(e["error"]["param"].is_null(), r.body);
        else BOOST_TEST(e["error"]["param"] == c.param, r.body);
    }
    // routing
    Client c(port);
    Reply r = c.get("/v1/nothing");
    BOOST_TEST(r.status == 404);
    BOOST_TEST(r.j()["error"]["message"].get<std::string>().find("/v1/nothing") != std::string::npos);
    r = c.get("/v1/completions");
    BOOST_TEST(r.status == 405);
    BOOST_TEST(r.headers[http::field::allow] == "POST");
    r = c.post("/health", "{}");
    BOOST_TEST(r.status == 405);
    // an error does not close a keep-alive connection: the next request on it works
    BOOST_TEST(c.post("/v1/completions", R"({"prompt":"a","max_tokens":2})").status == 200);
    // not HTTP at all
    Client raw(port);
    raw.write_raw("HELLO THERE\r\n\r\n");
    BOOST_TEST(raw.read_reply().status == 400);
    // still serving
    BOOST_TEST(Client(port).get("/health").j()["status"] == "ok");
    BOOST_TEST(completion(port, {{"prompt", "a"}, {"max_tokens", 3}})["choices"].size() == 1u);
}

BOOST_AUTO_TEST_CASE(disconnects_free_the_slots) {
    const int port = shared().port();
    auto idle = [](const json& h) { return h["active_sequences"] == 0 && h["sequences_in_server"] == 0; };
    BOOST_TEST_REQUIRE(idle(wait_health(port, idle)));
    // mid-stream: read three events, then drop the connection
    {
        Client c(port);
        int events = 0;
        c.stream(endless(100000, true).dump(), [&](const std::string&) { return ++events < 3; });
        BOOST_TEST(events == 3);
        BOOST_TEST(Client(port).get("/health").j()["active_sequences"] == 1);  // still generating
        c.close();
    }
    json h = wait_health(port, idle);
    BOOST_TEST(idle(h), h.dump());
    // while waiting for a whole answer: send the request, then hang up
    {
        Client c(port);
        std::string body = endless(100000, false).dump();
        c.write_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body);
        wait_health(port, [](const json& h) { return h["active_sequences"] == 1; });
        c.close();
    }
    h = wait_health(port, idle);
    BOOST_TEST(idle(h), h.dump());
    // 100000 tokens would take far longer than this test: the disconnects stopped them
    BOOST_TEST(h["tokens_generated"].get<int64_t>() < 50000);
}

BOOST_AUTO_TEST_CASE(full_server_queues_then_answers_503) {
    // one slot and room for one waiting sequence
    const json long_request = endless(100000, true);
    ServerProcess server(shared().ckpt.path, {"--max-slots", "1", "--max-queue", "1", "--max-tokens-limit", "100000"});
    const int port = server.port();
    Client first(port);
    int events = 0;
    first.stream(long_request.dump(), [&](const std::string&) { return ++events < 2; });
    // the second waits for the slot...
    Reply queued;
    std::thread second([&] { queued = Client(port).post("/v1/completions", R"({"prompt":"a","max_tokens":2})"); });
    json h = wait_health(port, [](const json& h) { return h["waiting_requests"] == 1; });
    BOOST_TEST(h["waiting_requests"] == 1, h.dump());
    // ...the third finds no room and is refused at once
    Reply r = Client(port).post("/v1/completions", R"({"prompt":"a","max_tokens":2})");
    BOOST_TEST(r.status == 503);
    BOOST_TEST(r.headers[http::field::retry_after] == "1");
    BOOST_TEST(r.j()["error"]["type"] == "server_overloaded");
    // a request that could never fit is a 400, not a 503
    BOOST_TEST(Client(port).post("/v1/completions", R"({"prompt":["a","b"]})").status == 400);
    // the first hangs up: the waiting one gets the slot and its answer
    first.close();
    second.join();
    BOOST_TEST(queued.status == 200, queued.body);
    wait_health(port, [](const json& h) { return h["sequences_in_server"] == 0; });
    BOOST_TEST(Client(port).post("/v1/completions", R"({"prompt":"a","max_tokens":2})").status == 200);
}

BOOST_AUTO_TEST_CASE(expect_continue_and_pipelining) {
    const int port = shared().port();
    const std::string body = R"({"prompt":"In the","max_tokens":3,"temperature":0})";
    auto head = [](const std::string& extra, size_t length) {
        return "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
               "Content-Length: " + std::to_string(length) + "\r\n\r\n";
    };
    // curl's habit for larger bodies: headers, wait for "100 Continue", then the body
    {
        Client c(port);
        c.write_raw(head("Expect: 100-continue\r\n", body.size()));
        Reply cont = c.read_reply();
        BOOST_TEST(cont.status == 100);
        c.write_raw(body);
        Reply r = c.read_reply();
        BOOST_TEST(r.status == 200, r.body);
        // a body over the limit is refused before it is sent
        Client big(port);
        big.write_raw(head("Expect: 100-continue\r\n", 100000));
        BOOST_TEST(big.read_reply().status == 413);
    }
    // two requests in one write: both answered, in order
    {
        Client c(port);
        const std::string other = R"({"prompt":"And","max_tokens":2,"temperature":0})";
        c.write_raw(head("", body.size()) + body + head("", other.size()) + other);
        Reply a = c.read_reply(), b = c.read_reply();
        BOOST_TEST(a.status == 200);
        BOOST_TEST(b.status == 200);
        BOOST_TEST(text_of(a.j()) == text_of(completion(port, json::parse(body))));
        BOOST_TEST(text_of(b.j()) == text_of(completion(port, json::parse(other))));
    }
}

BOOST_AUTO_TEST_CASE(sigterm_drains_then_exits_cleanly) {
    ServerProcess server(shared().ckpt.path, {"--max-slots", "4"});
    const int port = server.port();
    // two streams in flight when the signal comes: both must finish
    std::vector<Streamed> results(2);
    std::atomic<int> started{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < 2; ++i)
        clients.emplace_back([&, i] {
            Client c(port);
            Streamed& s = results[size_t(i)];
            s.status = c.stream(json{{"prompt", "And"}, {"max_tokens", 300}, {"stream", true}, {"seed", i}}.dump(),
                                [&](const std::string& data) {
                                    if (data == "[DONE]") return s.done = true;
                                    json j = json::parse(data);
                                    if (s.text.empty()) ++started, s.text.resize(1), s.finish.resize(1);
                                    s.text[0] += j["choices"][0]["text"].get<std::string>();
                                    if (!j["choices"][0]["finish_reason"].is_null()) s.finish[0] = j["choices"][0]["finish_reason"];
                                    return true;
                                });
        });
    while (started.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    server.signal(SIGTERM);
    for (auto& t : clients) t.join();
    for (const Streamed& s : results) {
        BOOST_TEST(s.status == 200);
        BOOST_TEST(s.done);
        BOOST_TEST(!s.finish.at(0).empty());
    }
    BOOST_TEST(server.wait_exit(std::chrono::seconds(30)) == 0);
    std::string out = server.rest_of_stdout();
    BOOST_TEST(out.find("draining") != std::string::npos, out);
    BOOST_TEST(out.find("stopped") != std::string::npos, out);
}

// ---- hostile clients (issue 13)

namespace {

// No client-facing message may carry a C++ source location ("engine.cpp:75").
bool has_source_location(const std::string& s) {
    for (const char* ext : {".cpp:", ".h:", ".cu:"}) {
        for (size_t at = s.find(ext); at != std::string::npos; at = s.find(ext, at + 1)) {
            const size_t d = at + std::strlen(ext);
            if (d < s.size() && s[d] >= '0' && s[d] <= '9') return true;
        }
    }
    return false;
}

// A raw socket connected to the server (-1 when the connection fails).
int connect_loopback(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    ::close(fd);
    return -1;
}

bool send_all(int fd, const std::string& bytes) {
    return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size());
}

// Reads from `fd` until the server closes it (or resets it), or `deadline_ms` passes; with
// until_close false, until one whole response with Content-Length is in. Returns what came.
std::string receive(int fd, int deadline_ms, bool until_close) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, int(left.count())) <= 0) continue;
        char buf[65536];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, size_t(n));
        if (!until_close && got.find("\r\n\r\n") != std::string::npos) {
            // a whole response with Content-Length: stop once the body is in
            const size_t head = got.find("\r\n\r\n") + 4;
            const size_t cl = got.find("Content-Length: ");
            if (cl != std::string::npos && cl < head && got.size() >= head + std::stoul(got.substr(cl + 16))) break;
        }
    }
    return got;
}

// One HTTP exchange on a raw socket with a deadline: sends `request`, reads until the
// server closes (or `deadline_ms` passes). Returns what came ("" when nothing did).
std::string raw_exchange(int port, const std::string& request, int deadline_ms, bool until_close = true) {
    const int fd = connect_loopback(port);
    if (fd < 0) return "";
    std::string got;
    if (send_all(fd, request)) got = receive(fd, deadline_ms, until_close);
    ::close(fd);
    return got;
}

std::string post_raw(const std::string& body, const char* version = "1.1") {
    return std::string("POST /v1/completions HTTP/") + version +
           "\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
}

// utime + stime of a process, in seconds
double cpu_seconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
    std::vector<std::string> fields;
    for (std::string x; rest >> x;) fields.push_back(x);
    // fields from the state (field 3) on: utime and stime are fields 14 and 15
    return double(std::stoll(fields.at(11)) + std::stoll(fields.at(12))) / double(sysconf(_SC_CLK_TCK));
}

// How many descriptors numbered below `below` the process has open: the ones an
// RLIMIT_NOFILE of `below` lets it have.
int open_descriptors(pid_t pid, int below) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        if (std::stoi(e.path().filename().string()) < below) ++n;
    return n;
}

// Whether the server closed (or reset) the connection within `deadline_ms`.
bool closed_by_server(int fd, int deadline_ms) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, deadline_ms) <= 0) return false;
    char c;
    return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

// The most bytes of text one token of `tok` stands for (as the server computes it).
int64_t longest_piece(const tools::Tokenizer& tok) {
    size_t longest = 1;
    for (int32_t id = 0; id < tok.vocab_size(); ++id) longest = std::max(longest, tok.decode({id}).size());
    return int64_t(longest);
}

}  // namespace

// A body nested 100,000 deep used to kill the server (and everything in flight with it).
BOOST_AUTO_TEST_CASE(deep_json_is_refused_and_the_server_lives) {
    ServerProcess server(shared().ckpt.path, {"--max-body", "2100000"});
    const int port = server.port();
    for (size_t depth : {size_t(1000), size_t(10000), size_t(100000), size_t(1000000)}) {
        for (const std::string& body : {std::string(depth, '[') + std::string(depth, ']'),
                                        "{\"prompt\":" + std::string(depth, '[') + std::string(depth, ']') + "}"}) {
            Reply r = Client(port).post("/v1/completions", body);
            BOOST_TEST(r.status == 400, "depth " << depth << ": " << r.status);
            BOOST_TEST(r.body.size() < 500u);
            BOOST_TEST(r.body.find("the limit is 64") != std::string::npos, r.body);
        }
        BOOST_TEST(Client(port).get("/health").j()["status"] == "ok", "after depth " << depth);
    }
    // over the body limit: a clean 413, and the server still answers
    Reply r = Client(port).post("/v1/completions", std::string(1100000, '[') + std::string(1100000, ']'));
    BOOST_TEST(r.status == 413);
    BOOST_TEST(completion(port, {{"prompt", "a"}, {"max_tokens", 2}})["choices"].size() == 1u);
    // and on the shared server (8 KiB bodies): depth 1e3 fits and is refused for its depth, 1e4 does not fit
    BOOST_TEST(Client(shared().port()).post("/v1/completions", std::string(1000, '[') + std::string(1000, ']')).status == 400);
    BOOST_TEST(Client(shared().port()).post("/v1/completions", std::string(10000, '[') + std::string(10000, ']')).status == 413);
    BOOST_TEST(Client(shared().port()).get("/health").j()["status"] == "ok");
}

BOOST_AUTO_TEST_CASE(numbers_past_double_range_are_400_not_500) {
    const int port = shared().port();
    for (const char* field : {"max_tokens", "temperature", "top_p", "top_k", "seed", "n", "repetition_penalty"}) {
        for (const char* v : {"1e400", "-1e400", "1e30"}) {
            Reply r = Client(port).post("/v1/completions", std::string("{\"prompt\":\"a\",\"") + field + "\":" + v + "}");
            BOOST_TEST(r.status == 400, field << "=" << v << " → " << r.status << " " << r.body);
            BOOST_TEST(!has_source_location(r.body), r.body);
        }
    }
}

BOOST_AUTO_TEST_CASE(http10_stream_is_close_delimited) {
    const std::string got = raw_exchange(
        shared().port(), post_raw(R"({"prompt":"In the","max_tokens":5,"temperature":0,"stream":true})", "1.0"), 10000);
    const size_t head_end = got.find("\r\n\r\n");
    BOOST_TEST_REQUIRE(head_end != std::string::npos, got);
    std::string head = got.substr(0, head_end);
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    BOOST_TEST(head.rfind("http/1.0 200", 0) == 0, head);
    BOOST_TEST(head.find("chunked") == std::string::npos, head);
    BOOST_TEST(head.find("content-length") == std::string::npos, head);
    // the raw events, ending with [DONE], then the server closed (raw_exchange read to EOF)
    const std::string body = got.substr(head_end + 4);
    BOOST_TEST(body.rfind("data: {", 0) == 0, body);
    BOOST_TEST(body.size() >= 14u);
    BOOST_TEST(body.substr(body.size() - 14) == "data: [DONE]\n\n", body);
    // the same text as over HTTP/1.1
    std::string text;
    for (size_t at = 0; (at = body.find("data: {", at)) != std::string::npos; ++at)
        text += json::parse(body.substr(at + 6, body.find("\n\n", at) - at - 6))["choices"][0]["text"].get<std::string>();
    BOOST_TEST(text == text_of(completion(shared().port(), {{"prompt", "In the"}, {"max_tokens", 5}, {"temperature", 0}})));
}

BOOST_AUTO_TEST_CASE(logit_bias_and_ignore_eos_are_honoured) {
    const int port = shared().port();
    const tools::Tokenizer& tok = shared().tok;
    // +100 on one token: greedy and sampled output is that token, again and again
    const int32_t id = tok.encode(" earth").front();
    const std::string piece = tok.decode({id});
    for (double temperature : {0.0, 1.0}) {
        json j = completion(port, {{"prompt", "In the"}, {"max_tokens", 4}, {"temperature", temperature},
                                   {"seed", 1}, {"logit_bias", {{std::to_string(id), 100}}}});
        BOOST_TEST(text_of(j) == piece + piece + piece + piece, "temperature " << temperature);
    }
    // streamed alike
    Streamed s = stream_completion(port, json{{"prompt", "In the"}, {"max_tokens", 3}, {"temperature", 0}, {"stream", true},
                                             {"logit_bias", {{std::to_string(id), 100}}}}.dump());
    BOOST_TEST(s.text.at(0) == piece + piece + piece);
    // -100 bans: the greedy first token, banned, never comes
    json plain = completion(port, {{"prompt", "In the"}, {"max_tokens", 1}, {"temperature", 0}});
    const std::vector<int32_t> first = tok.encode(text_of(plain));
    if (first.size() == 1) {
        json banned = completion(port, {{"prompt", "In the"}, {"max_tokens", 1}, {"temperature", 0},
                                        {"logit_bias", {{std::to_string(first[0]), -100}}}});
        BOOST_TEST(text_of(banned) != text_of(plain));
    }
    // the end-of-text token forced: the answer stops at once; with ignore_eos it runs on
    const std::string eos = std::to_string(tok.eos_id());
    json stopped = completion(port, {{"prompt", "In the"}, {"max_tokens", 6}, {"temperature", 0}, {"logit_bias", {{eos, 100}}}});
    BOOST_TEST(stopped["choices"][0]["finish_reason"] == "stop");
    BOOST_TEST(stopped["usage"]["completion_tokens"] == 1);
    json ran_on = completion(port, {{"prompt", "In the"}, {"max_tokens", 6}, {"temperature", 0}, {"logit_bias", {{eos, 100}}},
                                    {"ignore_eos", true}});
    BOOST_TEST(ran_on["choices"][0]["finish_reason"] == "length");
    BOOST_TEST(ran_on["usage"]["completion_tokens"] == 6);
    // ids outside the vocabulary are a 400 naming the range
    Reply r = Client(port).post("/v1/completions", R"({"prompt":"a","logit_bias":{"99999":5}})");
    BOOST_TEST(r.status == 400);
    BOOST_TEST(r.body.find("[0, " + std::to_string(tok.vocab_size()) + ")") != std::string::npos, r.body);
}

BOOST_AUTO_TEST_CASE(cli_takes_the_checkpoint_one_way_and_validates_options) {
    auto run = [](const std::string& args) {
        const std::string cmd = retnet_binary() + " serve " + args + " 2>&1";
        FILE* p = ::popen(cmd.c_str(), "r");
        std::string out;
        char buf[4096];
        for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
        const int status = ::pclose(p);
        return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
    };
    auto [rc, help] = run("--help");
    BOOST_TEST(rc == 0);
    BOOST_TEST(help.find("--checkpoint") == std::string::npos, help);
    BOOST_TEST(help.find("checkpoint TEXT REQUIRED") != std::string::npos, help);
    const std::string ckpt = shared().ckpt.path;
    for (const auto& [args, needle] : std::vector<std::pair<std::string, std::string>>{
             {"--prefill-chunk 0", "--prefill-chunk must be in [1, 1048576], got 0"},
             {"--max-slots 0", "--max-slots must be in [1, 65536], got 0"},
             {"--port 70000", "--port must be in [0, 65535], got 70000"},
             {"--host nowhere", "--host must be an IP address"},
             {"--dtype f16", "--dtype must be f32 or bf16"}}) {
        auto [code, out] = run(ckpt + " " + args);
        BOOST_TEST(code == 2, args << ": exit " << code << ": " << out);
        BOOST_TEST(out.find(needle) != std::string::npos, args << ": " << out);
        BOOST_TEST(!has_source_location(out), out);
    }
}

// With few descriptors and many idle connections the accept loop used to spin on EMFILE
// (126% CPU) while new clients timed out. Now: shed the longest-idle one, pause, go on.
BOOST_AUTO_TEST_CASE(out_of_descriptors_neither_spins_nor_starves_new_clients) {
    ServerProcess server(shared().ckpt.path, {"--threads", "2"});
    const int port = server.port();
    rlimit lim{64, 64};
    BOOST_TEST_REQUIRE(::prlimit(server.pid(), RLIMIT_NOFILE, &lim, nullptr) == 0, std::strerror(errno));
    std::vector<int> idle;
    for (int i = 0; i < 80; ++i) {  // connect and say nothing: the kernel completes each handshake
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(uint16_t(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_TEST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        idle.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const double cpu0 = cpu_seconds(server.pid());
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const double busy = (cpu_seconds(server.pid()) - cpu0) /
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("out of descriptors: the server used %.1f%% of a core with 80 idle connections and 64 fds\n", 100 * busy);
    BOOST_TEST(busy < 0.2, "the server used " << 100 * busy << "% of a core");
    // a new client is served while the idle connections are still open
    const std::string reply =
        raw_exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5000);
    BOOST_TEST(reply.rfind("HTTP/1.1 200", 0) == 0, reply);
    for (int fd : idle) ::close(fd);
    BOOST_TEST(Client(port).get("/health").j()["status"] == "ok");
}

// Issue 13, "nothing lost": out of descriptors, the server sheds the longest-idle keep-alive
// connection — but one listed as idle may have its next request arriving, and shedding
// it dropped a request the client had sent (it saw the connection closed, no answer).
// RFC 9112 §9.6: no closing a persistent connection while a request is pending on it.
BOOST_AUTO_TEST_CASE(out_of_descriptors_sheds_no_connection_with_a_request_arriving) {
    ServerProcess server(shared().ckpt.path, {"--threads", "2"});
    const int port = server.port();
    const int limit = 48;
    rlimit lim{rlim_t(limit), rlim_t(limit)};
    BOOST_TEST_REQUIRE(::prlimit(server.pid(), RLIMIT_NOFILE, &lim, nullptr) == 0, std::strerror(errno));
    BOOST_TEST_REQUIRE(open_descriptors(server.pid(), limit) < limit - 4);
    const std::string health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    // keep-alive connections answered once, in this order: so each has been accepted and
    // waits for its next request, the first longest
    auto idle_connection = [&] {
        const int fd = connect_loopback(port);
        BOOST_TEST_REQUIRE(fd >= 0);
        BOOST_TEST_REQUIRE(send_all(fd, health));
        const std::string reply = receive(fd, 5000, false);
        BOOST_TEST_REQUIRE(reply.rfind("HTTP/1.1 200", 0) == 0, reply);
        return fd;
    };
    const int oldest = idle_connection();
    // the server lists it as idle once its answer is written, which the client can see
    // before that handler has run: give it time to, so that it is the longest idle
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // Then all but one of the descriptors the server may have. Not all: Linux's accept()
    // takes a descriptor before it looks for a connection, so with none left it fails even
    // with nobody waiting, and the server sheds at once.
    std::vector<int> others;
    while (open_descriptors(server.pid(), limit) < limit - 1) {
        others.push_back(idle_connection());
        BOOST_TEST_REQUIRE(others.size() < size_t(limit));
    }
    BOOST_TEST_REQUIRE(others.size() >= 2u);
    // the oldest sends half a request: the server reads it and waits for the rest
    BOOST_TEST_REQUIRE(send_all(oldest, "GET /health HTTP/1.1\r\nHost: x\r\n"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // a new client takes the last descriptor; the server's next accept fails (EMFILE) and
    // it sheds an idle connection: done once it holds fewer than the limit again
    const int newest = idle_connection();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (open_descriptors(server.pid(), limit) >= limit && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    BOOST_TEST_REQUIRE(open_descriptors(server.pid(), limit) < limit, "the server shed no connection");
    // the rest of the oldest's request: answered, not dropped
    BOOST_TEST(send_all(oldest, "\r\n"));
    const std::string answer = receive(oldest, 5000, false);
    BOOST_TEST(answer.rfind("HTTP/1.1 200", 0) == 0, "the request in progress got '" << answer << "'");
    // shed instead: one of the idle connections with nothing pending (which one depends on
    // when each answer's handler listed it as idle)
    auto shed = [&] { return std::count_if(others.begin(), others.end(), [](int fd) { return closed_by_server(fd, 0); }); };
    for (int i = 0; i < 200 && shed() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    BOOST_TEST(shed() >= 1, "none of the idle connections without a request was closed");
    ::close(newest);
    // and the server goes on serving once descriptors are free again
    ::close(oldest);
    for (int fd : others) ::close(fd);
    BOOST_TEST(Client(port).get("/health").j()["status"] == "ok");
}

// Long prompts are tokenised off the I/O threads (and over-long ones not at all): while
// clients send prompts that take long to tokenise, a small request stays fast.
BOOST_AUTO_TEST_CASE(long_prompts_do_not_delay_other_clients) {
    const int64_t max_tokens = 200000;
    ServerProcess server(shared().ckpt.path, {"--max-body", "3000000", "--max-prompt-tokens", std::to_string(max_tokens)});
    const int port = server.port();
    const int64_t max_bytes = (max_tokens - 1) * longest_piece(shared().tok);
    // over the byte bound: refused at once, without tokenising
    {
        const std::string huge(size_t(std::min<int64_t>(max_bytes + 1, 2900000)), 'q');
        const auto t0 = std::chrono::steady_clock::now();
        Reply r = Client(port).post("/v1/completions", json{{"prompt", huge}}.dump());
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        BOOST_TEST(r.status == 400);
        BOOST_TEST(r.body.find("bytes long and cannot fit") != std::string::npos, r.body.substr(0, 300));
        BOOST_TEST(secs < 0.5, huge.size() << " bytes took " << secs << " s to refuse");
    }
    // under the byte bound but over the token limit: tokenised (slow), then refused
    // (one long word: the tokenizer's slowest case, about 1 s a megabyte)
    const std::string words(size_t(std::min<int64_t>(max_bytes - 16, 1000000)), 'q');
    const std::string big_body = json{{"prompt", words}, {"max_tokens", 1}}.dump();
    const std::string small_body = json{{"prompt", "In the"}, {"max_tokens", 1}, {"temperature", 0}}.dump();
    auto small_latency = [&] {
        const auto t0 = std::chrono::steady_clock::now();
        Reply r = Client(port).post("/v1/completions", small_body);
        BOOST_TEST(r.status == 200);
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    auto median_of = [&](int n) {
        std::vector<double> t;
        for (int i = 0; i < n; ++i) t.push_back(small_latency());
        std::sort(t.begin(), t.end());
        return t[t.size() / 2];
    };
    const double alone = median_of(9);
    std::atomic<bool> stop{false};
    std::atomic<int> refused{0};
    std::vector<std::thread> heavy;
    for (int c = 0; c < 4; ++c)
        heavy.emplace_back([&] {
            while (!stop.load()) {
                try {
                    Reply r = Client(port).post("/v1/completions", big_body);
                    if (r.status == 400 && r.body.find("tokens (BOS included)") != std::string::npos) ++refused;
                } catch (const std::exception&) {
                }
            }
        });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the heavy ones are being tokenised
    const double loaded = median_of(15);
    stop = true;
    for (auto& t : heavy) t.join();
    std::printf("long prompts (%zu bytes) from 4 clients: a small request took %.1f ms (median) against %.1f ms alone; "
                "%d long prompts tokenised and refused\n",
                words.size(), 1000 * loaded, 1000 * alone, refused.load());
    BOOST_TEST(refused.load() >= 1);  // the heavy requests did reach the tokenizer
    BOOST_TEST(loaded < 0.25, "a small request took " << loaded << " s while long prompts were tokenised");
}

BOOST_AUTO_TEST_SUITE_END()
