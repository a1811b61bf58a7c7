// tests/test_serve_api.cpp — the request side of `retnet serve` without sockets
// (tools/http_api.h): every malformed or out-of-range field is a 400 naming it, unknown
// fields are ignored, prompts in all four shapes, prompt limits and token-id ranges, the
// response JSON shapes, and the admission count of the job queue.
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "tools/http_api.h"
#include "tools/serve_jobs.h"

using namespace rn::tools;
using json = nlohmann::json;

namespace {

ApiLimits limits() {
    ApiLimits l;
    l.max_prompt_tokens = 8;
    l.max_tokens_limit = 100;
    l.max_choices = 4;
    return l;
}

CompletionRequest parse(const std::string& body) { return parse_completion_request(body, limits()); }

// The request is refused with a 400 about `param` whose message contains `needle`.
void expect_400(const std::string& body, const std::string& param, const std::string& needle) {
    try {
        parse(body);
        BOOST_ERROR("accepted: " << body);
    } catch (const ApiError& e) {
        BOOST_TEST(e.status == 400);
        BOOST_TEST(e.type == "invalid_request_error");
        BOOST_TEST(e.param == param, body << ": param '" << e.param << "', expected '" << param << "'");
        BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos,
                   body << ": message '" << e.what() << "' lacks '" << needle << "'");
    }
}

// one token per byte, so lengths are easy to reason about
std::vector<int32_t> bytes(const std::string& s) { return std::vector<int32_t>(s.begin(), s.end()); }

}  // namespace

BOOST_AUTO_TEST_SUITE(serve_api)

BOOST_AUTO_TEST_CASE(defaults_and_every_field) {
    CompletionRequest r = parse(R"({"prompt":"hi"})");
    BOOST_TEST(r.prompts.size() == 1u);
    BOOST_TEST(r.prompts[0].text == "hi");
    BOOST_TEST(r.max_tokens == 16);
    BOOST_TEST(r.temperature == 1.0);
    BOOST_TEST(!r.seed.has_value());
    BOOST_TEST(!r.stream);

    r = parse(R"({"model":"m","prompt":["a","b"],"max_tokens":5,"temperature":0,"top_p":0.5,"top_k":7,
                  "repetition_penalty":1.2,"seed":-3,"stop":["x","yz"],"n":2,"stream":true,
                  "stream_options":{"include_usage":true},"user":"u","logit_bias":{},"frobnicate":[1,2]})");
    BOOST_TEST(r.model == "m");
    BOOST_TEST(r.prompts.size() == 2u);
    BOOST_TEST(r.max_tokens == 5);
    BOOST_TEST(r.temperature == 0.0);
    BOOST_TEST(r.top_p == 0.5);
    BOOST_TEST(r.top_k == 7);
    BOOST_TEST(r.repetition_penalty == 1.2);
    BOOST_TEST(*r.seed == uint64_t(int64_t(-3)));
    BOOST_TEST(r.stop == (std::vector<std::string>{"x", "yz"}));
    BOOST_TEST(r.n == 2);
    BOOST_TEST(r.choices() == 4);
    BOOST_TEST(r.stream);
    BOOST_TEST(r.include_usage);

    // null means the default, as in OpenAI's API
    r = parse(R"({"prompt":"hi","max_tokens":null,"stop":null,"seed":null})");
    BOOST_TEST(r.max_tokens == 16);
    BOOST_TEST(r.stop.empty());
    BOOST_TEST(!r.seed.has_value());
    // a single stop string
    BOOST_TEST(parse(R"({"prompt":"hi","stop":"\n"})").stop == std::vector<std::string>{"\n"});
}

BOOST_AUTO_TEST_CASE(prompt_shapes) {
    CompletionRequest r = parse(R"({"prompt":[5,6,7]})");
    BOOST_TEST(r.prompts.size() == 1u);
    BOOST_TEST(r.prompts[0].is_tokens);
    BOOST_TEST(r.prompts[0].tokens == (std::vector<int64_t>{5, 6, 7}));
    r = parse(R"({"prompt":[[1,2],"text",[3]]})");
    BOOST_TEST(r.prompts.size() == 3u);
    BOOST_TEST(r.prompts[0].is_tokens);
    BOOST_TEST(!r.prompts[1].is_tokens);
    BOOST_TEST(r.prompts[2].tokens == std::vector<int64_t>{3});
}

BOOST_AUTO_TEST_CASE(malformed_bodies) {
    expect_400("", "", "not valid JSON");
    expect_400("{\"prompt\": \"hi\"", "", "not valid JSON");
    expect_400("{'prompt': 'hi'}", "", "not valid JSON");
    expect_400("[1,2]", "", "must be a JSON object, got an array");
    expect_400("\"hi\"", "", "must be a JSON object, got a string");
    expect_400("{}", "prompt", "'prompt' is required");
    expect_400(R"({"prompt":null})", "prompt", "'prompt' is required");
}

BOOST_AUTO_TEST_CASE(wrong_types_name_the_field) {
    expect_400(R"({"prompt":5})", "prompt", "got an integer");
    expect_400(R"({"prompt":{"a":1}})", "prompt", "got an object");
    expect_400(R"({"prompt":[]})", "prompt", "empty array");
    expect_400(R"({"prompt":["a",5]})", "prompt", "'prompt[1]'");
    expect_400(R"({"prompt":[[1,"x"]]})", "prompt", "'prompt[0]'");
    expect_400(R"({"prompt":"a","max_tokens":"ten"})", "max_tokens", "must be an integer, got a string");
    expect_400(R"({"prompt":"a","max_tokens":16.5})", "max_tokens", "must be an integer, got a number");
    expect_400(R"({"prompt":"a","temperature":"hot"})", "temperature", "must be a number, got a string");
    expect_400(R"({"prompt":"a","top_p":true})", "top_p", "must be a number, got a boolean");
    expect_400(R"({"prompt":"a","top_k":1.5})", "top_k", "must be an integer");
    expect_400(R"({"prompt":"a","seed":"1"})", "seed", "must be an integer");
    expect_400(R"({"prompt":"a","stream":"yes"})", "stream", "must be a boolean, got a string");
    expect_400(R"({"prompt":"a","stop":3})", "stop", "a string or an array of strings");
    expect_400(R"({"prompt":"a","stop":["x",1]})", "stop", "got an integer");
    expect_400(R"({"prompt":"a","model":7})", "model", "must be a string");
    expect_400(R"({"prompt":"a","stream_options":1})", "stream_options", "an object");
    expect_400(R"({"prompt":"a","n":"2"})", "n", "must be an integer");
}

BOOST_AUTO_TEST_CASE(ranges) {
    expect_400(R"({"prompt":"a","max_tokens":0})", "max_tokens", "[1, 100], got 0");
    expect_400(R"({"prompt":"a","max_tokens":101})", "max_tokens", "[1, 100], got 101");
    expect_400(R"({"prompt":"a","max_tokens":18446744073709551615})", "max_tokens", "got 18446744073709551615");
    expect_400(R"({"prompt":"a","temperature":-0.1})", "temperature", "[0, 2]");
    expect_400(R"({"prompt":"a","temperature":2.5})", "temperature", "[0, 2]");
    expect_400(R"({"prompt":"a","top_p":0})", "top_p", "(0, 1]");
    expect_400(R"({"prompt":"a","top_p":1.01})", "top_p", "(0, 1]");
    expect_400(R"({"prompt":"a","top_k":-1})", "top_k", "got -1");
    expect_400(R"({"prompt":"a","repetition_penalty":0})", "repetition_penalty", "(0, 100]");
    expect_400(R"({"prompt":"a","n":0})", "n", "got 0");
    expect_400(R"({"prompt":"a","stop":["a","b","c","d","e"]})", "stop", "at most 4 strings, got 5");
    expect_400(R"({"prompt":"a","stop":[""]})", "stop", "must not be empty");
    expect_400(R"({"prompt":"a","stop":")" + std::string(300, 'x') + "\"}", "stop", "at most 256 bytes");
    // prompts × n over what the server runs at once
    expect_400(R"({"prompt":["a","b","c"],"n":2})", "prompt", "6 completions");
}

BOOST_AUTO_TEST_CASE(unsupported_features_are_refused_not_ignored) {
    expect_400(R"({"prompt":"a","logprobs":5})", "logprobs", "not supported");
    expect_400(R"({"prompt":"a","echo":true})", "echo", "not supported");
    expect_400(R"({"prompt":"a","best_of":3})", "best_of", "not supported");
    expect_400(R"({"prompt":"a","suffix":"end"})", "suffix", "not supported");
    expect_400(R"({"prompt":"a","presence_penalty":0.5})", "presence_penalty", "not supported");
    expect_400(R"({"prompt":"a","frequency_penalty":"x"})", "frequency_penalty", "must be a number");
    // their defaults, as clients send them, are fine
    BOOST_CHECK_NO_THROW(parse(R"({"prompt":"a","logprobs":null,"echo":false,"best_of":1,"suffix":"",
                                   "presence_penalty":0,"frequency_penalty":0.0})"));
}

BOOST_AUTO_TEST_CASE(tokenize_prompts_limits) {
    ApiLimits l = limits();  // 8 tokens, BOS included
    auto ids = tokenize_prompts(parse(R"({"prompt":["abc",[4,5]]})"), bytes, 1, 200, l);
    BOOST_TEST(ids.size() == 2u);
    BOOST_TEST(ids[0] == (std::vector<int32_t>{1, 'a', 'b', 'c'}));
    BOOST_TEST(ids[1] == (std::vector<int32_t>{1, 4, 5}));
    BOOST_TEST(tokenize_prompts(parse(R"({"prompt":""})"), bytes, 1, 200, l)[0] == std::vector<int32_t>{1});
    BOOST_CHECK_NO_THROW(tokenize_prompts(parse(R"({"prompt":"1234567"})"), bytes, 1, 200, l));
    auto refused = [&](const std::string& body, const std::string& needle) {
        try {
            tokenize_prompts(parse(body), bytes, 1, 200, l);
            BOOST_ERROR("accepted " << body);
        } catch (const ApiError& e) {
            BOOST_TEST(e.status == 400);
            BOOST_TEST(e.param == "prompt");
            BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos, e.what());
        }
    };
    refused(R"({"prompt":"12345678"})", "has 9 tokens (BOS included); the limit is 8");
    refused(R"({"prompt":["ok","123456789"]})", "prompt 1 has 10 tokens");
    refused(R"({"prompt":[1,2,3,4,5,6,7,8]})", "has 9 tokens");
    refused(R"({"prompt":[1,200]})", "token id 200; ids must lie in [0, 200)");
    refused(R"({"prompt":[-1]})", "token id -1");
    refused(R"({"prompt":[18446744073709551615]})", "token id 9223372036854775807");
}

BOOST_AUTO_TEST_CASE(response_shapes) {
    json j = json::parse(completion_json("cmpl-1", 123, "tiny", {{"hello", 0, "length"}, {"x", 1, "stop"}}, {4, 3}));
    BOOST_TEST(j["object"] == "text_completion");
    BOOST_TEST(j["id"] == "cmpl-1");
    BOOST_TEST(j["created"] == 123);
    BOOST_TEST(j["model"] == "tiny");
    BOOST_TEST(j["choices"].size() == 2u);
    BOOST_TEST(j["choices"][0]["text"] == "hello");
    BOOST_TEST(j["choices"][1]["index"] == 1);
    BOOST_TEST(j["choices"][1]["finish_reason"] == "stop");
    BOOST_TEST(j["choices"][0]["logprobs"].is_null());
    BOOST_TEST(j["usage"]["prompt_tokens"] == 4);
    BOOST_TEST(j["usage"]["completion_tokens"] == 3);
    BOOST_TEST(j["usage"]["total_tokens"] == 7);

    j = json::parse(stream_chunk_json("cmpl-1", 1, "tiny", 2, "de", ""));
    BOOST_TEST(j["choices"][0]["text"] == "de");
    BOOST_TEST(j["choices"][0]["index"] == 2);
    BOOST_TEST(j["choices"][0]["finish_reason"].is_null());
    j = json::parse(stream_chunk_json("cmpl-1", 1, "tiny", 0, "", "length"));
    BOOST_TEST(j["choices"][0]["finish_reason"] == "length");
    j = json::parse(stream_usage_json("cmpl-1", 1, "tiny", {2, 5}));
    BOOST_TEST(j["choices"].empty());
    BOOST_TEST(j["usage"]["total_tokens"] == 7);

    j = json::parse(error_json(bad_request("max_tokens", "too many")));
    BOOST_TEST(j["error"]["message"] == "too many");
    BOOST_TEST(j["error"]["type"] == "invalid_request_error");
    BOOST_TEST(j["error"]["param"] == "max_tokens");
    BOOST_TEST(j["error"]["code"].is_null());
    BOOST_TEST(json::parse(error_json(ApiError(503, "server_overloaded", "", "busy")))["error"]["param"].is_null());

    j = json::parse(models_json("tiny", 5));
    BOOST_TEST(j["object"] == "list");
    BOOST_TEST(j["data"][0]["id"] == "tiny");
    BOOST_TEST(j["data"][0]["object"] == "model");

    // a token cut inside a character must not break the JSON
    j = json::parse(completion_json("c", 0, "m", {{"ab\xE2\x82", 0, "length"}}, {}));
    BOOST_TEST(j["choices"][0]["text"] == "ab\xEF\xBF\xBD");
}

BOOST_AUTO_TEST_CASE(job_queue_admission) {
    JobQueue q(3);  // sequences running or waiting
    auto job = [](int64_t choices) {
        auto j = std::make_shared<Job>();
        j->prompts.assign(size_t(choices), {1});
        return j;
    };
    BOOST_TEST(int(q.push(job(2))) == int(JobQueue::Push::ok));
    BOOST_TEST(int(q.push(job(2))) == int(JobQueue::Push::full));  // 2 + 2 > 3
    BOOST_TEST(int(q.push(job(1))) == int(JobQueue::Push::ok));
    BOOST_TEST(q.in_system() == 3);
    bool closed = true;
    BOOST_TEST(q.take(true, closed).size() == 2u);
    BOOST_TEST(!closed);
    q.release(2);
    BOOST_TEST(int(q.push(job(2))) == int(JobQueue::Push::ok));
    q.close();
    BOOST_TEST(int(q.push(job(1))) == int(JobQueue::Push::closed));
    // a closed queue still hands out what it accepted before closing, and never blocks
    BOOST_TEST(q.take(false, closed).size() == 1u);
    BOOST_TEST(closed);
}

BOOST_AUTO_TEST_SUITE_END()
