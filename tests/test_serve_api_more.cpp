// tests/test_serve_api_more.cpp — the pure parts of the chat, logprobs, tokenize, model-name,
// API-key, CORS and metrics features of `retnet serve` (serving/http_api.h, serving/chat.h,
// serving/serve_auth.h, serving/metrics.h), without a server.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "serving/chat.h"
#include "serving/http_api.h"
#include "serving/metrics.h"
#include "serving/serve.h"
#include "serving/serve_auth.h"
#include "serving/serve_jobs.h"

using namespace rn::tools;
using json = nlohmann::json;

namespace {

ApiLimits limits() {
    ApiLimits l;
    l.max_prompt_tokens = 8;
    l.max_tokens_limit = 100;
    l.max_choices = 4;
    l.vocab_size = 50;
    return l;
}

template <class F>
void expect_api_error(F f, int status, const std::string& param, const std::string& needle, const std::string& code = "") {
    try {
        f();
        BOOST_ERROR("accepted; expected " << status << " about '" << param << "'");
    } catch (const ApiError& e) {
        BOOST_TEST(e.status == status);
        BOOST_TEST(e.param == param, "param '" << e.param << "', expected '" << param << "'");
        BOOST_TEST(e.code == code);
        BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos,
                   "message '" << e.what() << "' lacks '" << needle << "'");
    }
}

void chat_400(const std::string& body, const std::string& param, const std::string& needle) {
    expect_api_error([&] { parse_chat_request(body, limits()); }, 400, param, needle);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(serve_api_more)

BOOST_AUTO_TEST_CASE(chat_requests_parse_and_refuse_other_shapes) {
    CompletionRequest r = parse_chat_request(
        R"({"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
            "max_completion_tokens":7,"temperature":0,"n":2,"stream":true,"logprobs":true,"top_logprobs":3})",
        limits());
    BOOST_TEST(r.chat);
    BOOST_TEST(r.model == "m");
    BOOST_TEST_REQUIRE(r.messages.size() == 2u);
    BOOST_TEST(r.messages[1].role == "user");
    BOOST_TEST(r.messages[1].content == "hi");
    BOOST_TEST(r.max_tokens == 7);
    BOOST_TEST(r.n == 2);
    BOOST_TEST(r.stream);
    BOOST_TEST(r.logprobs == 3);
    BOOST_TEST(r.prompts.size() == 1u);
    BOOST_TEST(parse_chat_request(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true})", limits()).logprobs == 0);
    BOOST_TEST(parse_chat_request(R"({"messages":[{"role":"user","content":"x"}],"logprobs":false})", limits()).logprobs == -1);

    chat_400(R"({"prompt":"x"})", "messages", "'messages' is required");
    chat_400(R"({"messages":"hi"})", "messages", "must be an array");
    chat_400(R"({"messages":[]})", "messages", "must not be empty");
    chat_400(R"({"messages":[3]})", "messages[0]", "must be an object");
    chat_400(R"({"messages":[{"content":"x"}]})", "messages[0].role", "is required");
    chat_400(R"({"messages":[{"role":"user","content":"x"},{"role":"tool","content":"x"}]})", "messages[1].role",
             "system, user or assistant");
    chat_400(R"({"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]})", "messages[0].content",
             "must be a string");
    chat_400(R"({"messages":[{"role":"user"}]})", "messages[0].content", "is required");
    chat_400(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs", "needs 'logprobs'");
    chat_400(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":6})", "top_logprobs", "[0, 5]");
    chat_400(R"({"messages":[{"role":"user","content":"x"}],"logprobs":2})", "logprobs", "must be a boolean");
    chat_400(R"({"messages":[{"role":"user","content":"x"}],"n":5})", "n", "[1, 4]");
}

BOOST_AUTO_TEST_CASE(chat_template_renders_and_validates) {
    const std::vector<ChatMessage> m = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};
    BOOST_TEST(default_chat_template().render(m) == "System: S\nUser: U1\nAssistant: A1\nUser: U2\nAssistant:");
    ChatTemplate t = parse_chat_template(
        R"({"user":{"prefix":"<u>","suffix":"</u>"},"assistant":{"prefix":"<a>"},"generation_prompt":"<a>"})", "t.json");
    BOOST_TEST(t.render(m) == "S<u>U1</u><a>A1<u>U2</u><a>");  // system: no prefix/suffix given
    auto refused = [](const std::string& text, const std::string& needle) {
        try {
            parse_chat_template(text, "t.json");
            BOOST_ERROR("accepted: " << text);
        } catch (const rn::Error& e) {
            BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos, e.what() << " lacks " << needle);
            BOOST_TEST(std::string(e.what()).find("t.json") != std::string::npos);
        }
    };
    refused("[1]", "must be a JSON object");
    refused("{", "not valid JSON");
    refused(R"({"tool":{"prefix":"x"}})", "unknown key \"tool\"");
    refused(R"({"user":{"prefx":"x"}})", "unknown key \"user.prefx\"");
    refused(R"({"user":{"prefix":1}})", "must be a string");
    refused(R"({"generation_prompt":""})", "are empty");
    ChatTemplate from_meta;
    BOOST_TEST(!chat_template_from_metadata(R"({"git":"abc"})", from_meta));
    BOOST_TEST(chat_template_from_metadata(R"({"chat_template":{"user":{"prefix":"Q: "},"generation_prompt":"A:"}})",
                                           from_meta));
    BOOST_TEST(from_meta.render({{"user", "hi"}}) == "Q: hiA:");
}

BOOST_AUTO_TEST_CASE(logprobs_writers) {
    std::vector<TokenLogprob> lps = {{" a", -0.5, {{" a", -0.5}, {" b", -1.5}}}, {"é", -2.0, {{"x", -0.1}, {"é", -2.0}}}};
    json c = completion_logprobs(lps, 10);
    BOOST_TEST(c["tokens"] == json({" a", "é"}));
    BOOST_TEST(c["token_logprobs"] == json({-0.5, -2.0}));
    BOOST_TEST(c["top_logprobs"][0] == json({{" a", -0.5}, {" b", -1.5}}));
    BOOST_TEST(c["text_offset"] == json({10, 12}));  // " a" is 2 bytes
    json odd = completion_logprobs({{"\xE2", -1.0, {{"\xE2", -1.0}, {"\xE3", -2.0}}}, {"x", -1.0, {}}}, 0);
    BOOST_TEST(odd["tokens"] == json({"bytes:\\xe2", "x"}));  // a lone byte of a character
    BOOST_TEST(odd["top_logprobs"][0] == json({{"bytes:\\xe2", -1.0}, {"bytes:\\xe3", -2.0}}));
    BOOST_TEST(odd["text_offset"] == json({0, 1}));
    json ch = chat_logprobs(lps);
    BOOST_TEST(ch["content"][1]["token"] == "é");
    BOOST_TEST(ch["content"][1]["bytes"] == json({0xC3, 0xA9}));
    BOOST_TEST(ch["content"][0]["top_logprobs"][1]["token"] == " b");
    BOOST_TEST(ch["content"][0]["top_logprobs"][1]["logprob"] == -1.5);

    std::vector<CompletionChoice> choices = {{"hello", 0, "length", lps}};
    json whole = json::parse(chat_completion_json("chatcmpl-1", 5, "m", choices, Usage{3, 2}, true));
    BOOST_TEST(whole["object"] == "chat.completion");
    BOOST_TEST(whole["choices"][0]["message"] == json({{"role", "assistant"}, {"content", "hello"}}));
    BOOST_TEST(whole["choices"][0]["finish_reason"] == "length");
    BOOST_TEST(whole["choices"][0]["logprobs"]["content"].size() == 2u);
    BOOST_TEST(whole["usage"]["total_tokens"] == 5);
    json no_lp = json::parse(completion_json("c", 5, "m", choices, Usage{3, 2}, false));
    BOOST_TEST(no_lp["choices"][0]["logprobs"].is_null());
    json with_lp = json::parse(completion_json("c", 5, "m", choices, Usage{3, 2}, true));
    BOOST_TEST(with_lp["choices"][0]["logprobs"]["text_offset"] == json({0, 2}));

    json first = json::parse(chat_chunk_json("id", 1, "m", 0, "", true, "", nullptr));
    BOOST_TEST(first["object"] == "chat.completion.chunk");
    BOOST_TEST(first["choices"][0]["delta"] == json({{"role", "assistant"}, {"content", ""}}));
    BOOST_TEST(first["choices"][0]["finish_reason"].is_null());
    json last = json::parse(chat_chunk_json("id", 1, "m", 1, "", false, "stop", nullptr));
    BOOST_TEST(last["choices"][0]["delta"] == json::object());
    BOOST_TEST(last["choices"][0]["index"] == 1);
    BOOST_TEST(last["choices"][0]["finish_reason"] == "stop");
    BOOST_TEST(json::parse(stream_usage_json("id", 1, "m", Usage{1, 2}, true))["object"] == "chat.completion.chunk");
}

BOOST_AUTO_TEST_CASE(stream_events_carry_role_text_logprobs_and_usage) {
    Job job;
    job.id = "chatcmpl-x";
    job.chat = true;
    job.logprobs = 1;
    job.include_usage = true;
    job.prompt_tokens = 4;
    job.prompts.resize(1);
    job.out.resize(1);
    bool done = true;
    std::string ev = stream_events(job, "m", done);
    BOOST_TEST(!done);
    BOOST_TEST(ev.find("\"role\":\"assistant\"") != std::string::npos);
    job.out[0].pending = "hi";
    job.out[0].logprobs.push_back({"hi", -0.25, {{"hi", -0.25}}});
    job.out[0].completion_tokens = 1;
    ev = stream_events(job, "m", done);
    BOOST_TEST(!done);
    BOOST_TEST_REQUIRE(ev.rfind("data: ", 0) == 0);
    json chunk = json::parse(ev.substr(6, ev.find("\n\n") - 6));
    BOOST_TEST(chunk["choices"][0]["delta"]["content"] == "hi");
    BOOST_TEST(chunk["choices"][0]["logprobs"]["content"][0]["logprob"] == -0.25);
    job.out[0].finish_reason = "length";
    job.choices_done = 1;
    ev = stream_events(job, "m", done);
    BOOST_TEST(done);
    BOOST_TEST(ev.find("\"finish_reason\":\"length\"") != std::string::npos);
    BOOST_TEST(ev.find("\"completion_tokens\":1") != std::string::npos);
    BOOST_TEST(ev.size() >= 14u);
    BOOST_TEST(ev.substr(ev.size() - 14) == "data: [DONE]\n\n");
}

BOOST_AUTO_TEST_CASE(tokenize_detokenize_and_model_names) {
    TokenizeRequest t = parse_tokenize_request(R"({"prompt":"abc","add_special_tokens":false,"model":"x"})", limits());
    BOOST_TEST(t.prompt == "abc");
    BOOST_TEST(!t.add_special_tokens);
    BOOST_TEST(t.model == "x");
    BOOST_TEST(parse_tokenize_request(R"({"prompt":""})", limits()).add_special_tokens);
    expect_api_error([] { parse_tokenize_request(R"({"prompt":3})", limits()); }, 400, "prompt", "must be a string");
    expect_api_error([] { parse_tokenize_request(R"({})", limits()); }, 400, "prompt", "required");
    std::string model;
    BOOST_TEST(parse_detokenize_request(R"({"tokens":[1,2,49]})", limits(), &model) == std::vector<int32_t>({1, 2, 49}));
    expect_api_error([] { parse_detokenize_request(R"({"tokens":[1,50]})", limits(), nullptr); }, 400, "tokens",
                     "[0, 50)");
    expect_api_error([] { parse_detokenize_request(R"({"tokens":[-1]})", limits(), nullptr); }, 400, "tokens", "[0, 50)");
    expect_api_error([] { parse_detokenize_request(R"({"tokens":["a"]})", limits(), nullptr); }, 400, "tokens",
                     "array of integers");
    BOOST_TEST(json::parse(tokenize_json({1, 7}, 2048)) == json({{"tokens", {1, 7}}, {"count", 2}, {"max_model_len", 2048}}));
    BOOST_TEST(json::parse(detokenize_json("hi")) == json({{"prompt", "hi"}}));

    const std::vector<std::string> served = {"best", "tiny"};
    BOOST_CHECK_NO_THROW(check_model("", served));
    BOOST_CHECK_NO_THROW(check_model("tiny", served));
    expect_api_error([&] { check_model("gpt-4", served); }, 404, "model", "'gpt-4' does not exist", "model_not_found");
    json e = json::parse(error_json(ApiError(404, "invalid_request_error", "model", "x", "model_not_found")));
    BOOST_TEST(e["error"]["code"] == "model_not_found");
    BOOST_TEST(json::parse(model_json("best", 9)) ==
               json({{"id", "best"}, {"object", "model"}, {"created", 9}, {"owned_by", "retnet.cpp"}}));
}

BOOST_AUTO_TEST_CASE(api_keys_and_cors) {
    BOOST_TEST(constant_time_equal("abc", "abc"));
    BOOST_TEST(!constant_time_equal("abc", "abd"));
    BOOST_TEST(!constant_time_equal("abc", "abcd"));
    BOOST_TEST(!constant_time_equal("", "a"));
    const std::vector<std::string> keys = {"k1", "secret"};
    BOOST_TEST(bearer_matches("Bearer secret", keys));
    BOOST_TEST(bearer_matches("Bearer k1", keys));
    BOOST_TEST(!bearer_matches("Bearer secreT", keys));
    BOOST_TEST(!bearer_matches("secret", keys));
    BOOST_TEST(!bearer_matches("Bearer ", keys));
    BOOST_TEST(!bearer_matches("", keys));
    BOOST_TEST(!bearer_matches("Basic secret", keys));

    BOOST_TEST(cors_allow_origin("http://a.test", {"http://a.test", "http://b.test"}) == "http://a.test");
    BOOST_TEST(cors_allow_origin("http://c.test", {"http://a.test"}) == "");
    BOOST_TEST(cors_allow_origin("http://c.test", {"*"}) == "*");
    BOOST_TEST(cors_allow_origin("", {"*"}) == "");
    BOOST_TEST(cors_allow_origin("http://a.test", {}) == "");

    const auto path = std::filesystem::temp_directory_path() / "rn_test_keys.txt";
    {
        std::ofstream f(path);
        f << "# keys\n\n  key-one  \nkey-two\r\n";
    }
    BOOST_TEST(read_api_key_file(path.string()) == std::vector<std::string>({"key-one", "key-two"}));
    {
        std::ofstream f(path);
        f << "# nothing\n";
    }
    BOOST_CHECK_THROW(read_api_key_file(path.string()), rn::Error);
    std::filesystem::remove(path);
    BOOST_CHECK_THROW(read_api_key_file(path.string()), rn::Error);
}

BOOST_AUTO_TEST_CASE(metrics_text_and_access_log) {
    Metrics m;
    m.count_request("/v1/completions", 200);
    m.count_request("/v1/completions", 200);
    m.count_request("/v1/completions", 400);
    m.prompt_tokens += 12;
    m.completion_tokens += 5;
    m.ttft.observe(0.02);
    m.ttft.observe(3);
    m.itl.observe(0.004);
    const std::string text = m.render(2, 3, 8);
    auto has = [&](const std::string& line) {
        BOOST_TEST(text.find(line + "\n") != std::string::npos, "no line '" << line << "' in\n" << text);
    };
    has("retnet_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2");
    has("retnet_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1");
    has("retnet_prompt_tokens_total 12");
    has("retnet_completion_tokens_total 5");
    has("retnet_queue_depth 2");
    has("retnet_slots_in_use 3");
    has("retnet_slots_total 8");
    has("# TYPE retnet_time_to_first_token_seconds histogram");
    has("retnet_time_to_first_token_seconds_bucket{le=\"0.025\"} 1");
    has("retnet_time_to_first_token_seconds_bucket{le=\"2.5\"} 1");
    has("retnet_time_to_first_token_seconds_bucket{le=\"5\"} 2");
    has("retnet_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2");
    has("retnet_time_to_first_token_seconds_count 2");
    has("retnet_inter_token_latency_seconds_bucket{le=\"0.005\"} 1");
    has("retnet_inter_token_latency_seconds_count 1");

    AccessRecord a;
    a.remote = "127.0.0.1";
    a.method = "POST";
    a.path = "/v1/completions";
    a.status = 200;
    a.prompt_tokens = 5;
    a.completion_tokens = 8;
    a.duration_s = 0.0412;
    a.ttft_s = 0.012;
    BOOST_TEST(access_log_line(a, false) ==
               "127.0.0.1 \"POST /v1/completions\" 200 prompt_tokens=5 completion_tokens=8 duration_ms=41.2 ttft_ms=12.0");
    json j = json::parse(access_log_line(a, true));
    BOOST_TEST(j["status"] == 200);
    BOOST_TEST(j["path"] == "/v1/completions");
    BOOST_TEST(j["completion_tokens"] == 8);
    BOOST_TEST(std::abs(j["ttft_ms"].get<double>() - 12.0) < 1e-9);
    BOOST_TEST(!j.contains("prompt"));
    a.prompt = "secret text";
    BOOST_TEST(json::parse(access_log_line(a, true))["prompt"] == "secret text");
    a.ttft_s = -1;
    BOOST_TEST(json::parse(access_log_line(a, true))["ttft_ms"].is_null());
}

BOOST_AUTO_TEST_CASE(operator_options_are_validated) {
    ServeOptions ok;
    ok.checkpoint = "x.h5";
    BOOST_CHECK_NO_THROW(validate_serve_options(ok));
    auto refused = [&](const std::function<void(ServeOptions&)>& change, const std::string& needle) {
        ServeOptions o = ok;
        change(o);
        try {
            validate_serve_options(o);
            BOOST_ERROR("accepted; expected an error about " << needle);
        } catch (const rn::Error& e) {
            BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos, e.what());
        }
    };
    refused([](ServeOptions& o) { o.log_format = "xml"; }, "--log-format must be plain, json or off");
    refused([](ServeOptions& o) { o.read_timeout_s = 0; }, "--read-timeout");
    refused([](ServeOptions& o) { o.write_timeout_s = -1; }, "--write-timeout");
    refused([](ServeOptions& o) { o.served_model_names = {""}; }, "--served-model-name");
    refused([](ServeOptions& o) { o.api_keys = {""}; }, "--api-key must not be empty");
}

BOOST_AUTO_TEST_SUITE_END()
