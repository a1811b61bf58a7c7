// tests/test_serve_ops.cpp — `retnet serve` for operators, as a real process: API keys
// (401 in OpenAI's shape, /health and /metrics open), CORS (preflight and answers, exact
// headers, nothing for other origins), Prometheus /metrics after real requests, the
// access log (JSON lines without prompts; plain lines with --log-prompts), /health 503
// "loading" before the model is in, and the idle timeout.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <sstream>

#include "serve_test_util.h"

using namespace rn;
using namespace rn::test;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// The access log is written after the response: wait for `needle` to show up.
std::string wait_for_log(const std::string& path, const std::string& needle) {
    for (int i = 0; i < 200; ++i) {
        std::string s = read_file(path);
        if (s.find(needle) != std::string::npos) return s;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return read_file(path);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(serve_ops)

BOOST_AUTO_TEST_CASE(keys_cors_metrics_and_the_json_access_log) {
    TinyCheckpoint ckpt;
    const std::string key_file = (ckpt.dir / "keys.txt").string();
    std::ofstream(key_file) << "# the second key\nk2-from-file\n";
    const std::string log = (ckpt.dir / "stderr.log").string();
    ServerStart start;
    start.stderr_path = log;
    ServerProcess server(ckpt.path,
                         {"--api-key", "k1-secret", "--api-key-file", key_file, "--allowed-origins",
                          "http://a.test,http://b.test", "--log-format", "json", "--served-model-name", "m"},
                         start);
    const int port = server.port();
    Client c(port);

    // ---- keys
    Reply none = c.get("/v1/models");
    BOOST_TEST(none.status == 401);
    BOOST_TEST(none.j()["error"]["code"] == "invalid_api_key");
    BOOST_TEST(none.j()["error"]["type"] == "invalid_request_error");
    BOOST_TEST(none.headers["WWW-Authenticate"] == "Bearer");
    Reply wrong = c.request(http::verb::get, "/v1/models", "", {{"Authorization", "Bearer k1-secreT"}});
    BOOST_TEST(wrong.status == 401);
    BOOST_TEST(wrong.j()["error"]["message"] == "Incorrect API key provided");
    BOOST_TEST(c.request(http::verb::get, "/v1/models", "", {{"Authorization", "Bearer k1-secret"}}).status == 200);
    BOOST_TEST(c.request(http::verb::get, "/v1/models", "", {{"Authorization", "Bearer k2-from-file"}}).status == 200);
    BOOST_TEST(c.post("/v1/completions", R"({"prompt":"a"})").status == 401);  // before any parsing
    BOOST_TEST(c.get("/health").status == 200);
    BOOST_TEST(c.get("/metrics").status == 200);

    // ---- CORS
    const Headers auth = {{"Authorization", "Bearer k1-secret"}};
    Headers from_a = auth, from_evil = auth;
    from_a.push_back({"Origin", "http://b.test"});
    from_evil.push_back({"Origin", "http://evil.test"});
    Reply ok = c.request(http::verb::get, "/v1/models", "", from_a);
    BOOST_TEST(ok.status == 200);
    BOOST_TEST(ok.headers["Access-Control-Allow-Origin"] == "http://b.test");
    BOOST_TEST(ok.headers["Vary"] == "Origin");
    Reply evil = c.request(http::verb::get, "/v1/models", "", from_evil);
    BOOST_TEST(evil.status == 200);
    BOOST_TEST(evil.headers.count("Access-Control-Allow-Origin") == 0u);
    // the 401 a browser gets must be readable by it too
    Reply denied = c.request(http::verb::get, "/v1/models", "", {{"Origin", "http://a.test"}});
    BOOST_TEST(denied.status == 401);
    BOOST_TEST(denied.headers["Access-Control-Allow-Origin"] == "http://a.test");
    Reply pre = c.request(http::verb::options, "/v1/chat/completions", "",
                          {{"Origin", "http://a.test"}, {"Access-Control-Request-Method", "POST"},
                           {"Access-Control-Request-Headers", "authorization, content-type"}});
    BOOST_TEST(pre.status == 204);
    BOOST_TEST(pre.headers["Access-Control-Allow-Origin"] == "http://a.test");
    BOOST_TEST(pre.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS");
    BOOST_TEST(pre.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type");
    Reply pre_evil = c.request(http::verb::options, "/v1/completions", "", {{"Origin", "http://evil.test"}});
    BOOST_TEST(pre_evil.status == 204);
    BOOST_TEST(pre_evil.headers.count("Access-Control-Allow-Origin") == 0u);
    BOOST_TEST(pre_evil.headers.count("Access-Control-Allow-Methods") == 0u);

    // ---- a generation, then the metrics and the log
    const std::string secret_prompt = "In the beginning zqx";
    Reply gen = c.post("/v1/completions",
                       json({{"prompt", secret_prompt}, {"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}}).dump());
    BOOST_TEST(gen.status == 401);
    gen = c.request(http::verb::post, "/v1/completions",
                    json({{"prompt", secret_prompt}, {"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}}).dump(),
                    auth);
    BOOST_TEST_REQUIRE(gen.status == 200);
    const json usage = gen.j()["usage"];
    BOOST_TEST(usage["completion_tokens"] == 5);

    const std::string m = c.get("/metrics").body;
    auto has = [&](const std::string& line) {
        BOOST_TEST(m.find(line + "\n") != std::string::npos, "no line '" << line << "' in\n" << m);
    };
    has("retnet_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1");
    has("retnet_requests_total{endpoint=\"/v1/completions\",status=\"401\"} 2");
    has("retnet_requests_total{endpoint=\"/v1/models\",status=\"401\"} 3");
    has("retnet_requests_total{endpoint=\"/v1/chat/completions\",status=\"204\"} 1");
    has("retnet_prompt_tokens_total " + std::to_string(usage["prompt_tokens"].get<int64_t>()));
    has("retnet_completion_tokens_total 5");
    has("retnet_time_to_first_token_seconds_count 1");
    has("retnet_inter_token_latency_seconds_count 4");  // 5 tokens, 4 gaps
    has("retnet_slots_in_use 0");
    has("retnet_slots_total 16");
    has("retnet_queue_depth 0");

    const std::string text = wait_for_log(log, "\"path\":\"/v1/completions\",\"prompt_tokens\"");
    bool found = false;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line[0] != '{') continue;
        json j = json::parse(line);
        BOOST_TEST(j.contains("method"));
        if (j["path"] == "/v1/completions" && j["status"] == 200) {
            found = true;
            BOOST_TEST(j["method"] == "POST");
            BOOST_TEST(j["prompt_tokens"] == usage["prompt_tokens"]);
            BOOST_TEST(j["completion_tokens"] == 5);
            BOOST_TEST(j["duration_ms"].get<double>() >= j["ttft_ms"].get<double>());
            BOOST_TEST(j["ttft_ms"].get<double>() > 0);
            BOOST_TEST(!j.contains("prompt"));
        }
    }
    BOOST_TEST(found, "no access-log line for the completion in:\n" << text);
    BOOST_TEST(text.find("zqx") == std::string::npos, "the prompt leaked into the log:\n" << text);
}

BOOST_AUTO_TEST_CASE(speculative_serving_gives_the_plain_text_and_reports_its_counts) {
    // the same greedy completions from a plain server, one drafting with n-gram lookup and
    // one drafting with a second copy of the model (every proposal then kept)
    TinyCheckpoint ckpt;
    const std::string body =
        R"({"prompt":["And the earth was without form, and void; and the earth was without form","In the"],)"
        R"("max_tokens":24,"temperature":0,"ignore_eos":true})";
    std::string plain_text;
    {
        ServerProcess plain(ckpt.path, {});
        Reply r = Client(plain.port()).post("/v1/completions", body);
        BOOST_REQUIRE(r.status == 200);
        plain_text = r.j()["choices"].dump();
        BOOST_TEST(Client(plain.port()).get("/health").j()["speculative"]["mode"] == "off");
    }
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--speculate-ngram", "--speculative-k", "3"}, {"--draft", ckpt.path}}) {
        BOOST_TEST_CONTEXT(args[0]) {
            ServerProcess server(ckpt.path, args);
            Client c(server.port());
            Reply r = c.post("/v1/completions", body);
            BOOST_REQUIRE(r.status == 200);
            BOOST_TEST(r.j()["choices"].dump() == plain_text);
            const json sp = c.get("/health").j()["speculative"];
            BOOST_TEST(sp["mode"] == (args[0] == "--draft" ? "draft" : "ngram"));
            BOOST_TEST(sp["k"] == (args[0] == "--draft" ? 4 : 3));
            // (this untrained model's text need not repeat, so n-gram lookup may find nothing
            // to propose; the engine's tests cover its proposals)
            if (args[0] == "--draft") {
                BOOST_TEST(sp["proposed"].get<int64_t>() > 0);
                BOOST_TEST(sp["accepted"] == sp["proposed"]);  // the model drafting for itself
            }
            const std::string m = c.get("/metrics").body;
            BOOST_TEST(m.find("retnet_speculative_proposed_tokens_total " + std::to_string(sp["proposed"].get<int64_t>())) !=
                       std::string::npos);
        }
    }
    // a draft and n-gram lookup together are refused before anything loads
    BOOST_CHECK_THROW(ServerProcess(ckpt.path, {"--speculate-ngram", "--draft", ckpt.path}), std::exception);
}

BOOST_AUTO_TEST_CASE(health_says_loading_until_the_model_is_in_and_plain_log_with_prompts) {
    TinyCheckpoint ckpt;
    const std::string log = (ckpt.dir / "stderr.log").string();
    ServerStart start;
    start.wait_until_loaded = false;
    start.stderr_path = log;
    ServerProcess server(ckpt.path, {"--startup-delay", "1.5", "--log-prompts", "--idle-timeout", "0.5"}, start);
    const int port = server.port();
    Reply h = Client(port).get("/health");
    BOOST_TEST(h.status == 503);
    BOOST_TEST(h.j() == json({{"status", "loading"}}));
    Reply early = Client(port).post("/v1/completions", R"({"prompt":"a"})");
    BOOST_TEST(early.status == 503);
    BOOST_TEST(early.headers["Retry-After"] == "1");
    const json ready = wait_health(port, [](const json& j) { return j["status"] == "ok"; }, std::chrono::seconds(30));
    BOOST_TEST(ready["status"] == "ok");

    Reply gen = Client(port).post("/v1/completions", R"({"prompt":"In the beginning","max_tokens":2})");
    BOOST_TEST(gen.status == 200);
    const std::string text = wait_for_log(log, "\"POST /v1/completions\" 200");
    BOOST_TEST(text.find("\"GET /health\" 503") != std::string::npos, text);
    BOOST_TEST(text.find("\"POST /v1/completions\" 200 prompt_tokens=") != std::string::npos, text);
    BOOST_TEST(text.find("prompt=\"In the beginning\"") != std::string::npos, text);

    // --idle-timeout: a connection that sends nothing is closed after it
    Client idle(port);
    const auto t0 = std::chrono::steady_clock::now();
    bool closed = false;
    try {
        idle.read_reply();
    } catch (const std::exception&) {
        closed = true;
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BOOST_TEST(closed);
    BOOST_TEST(waited >= 0.4);
    BOOST_TEST(waited < 5.0);
}

BOOST_AUTO_TEST_SUITE_END()
