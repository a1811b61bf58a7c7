// tests/test_serve_api.cpp — the request side of `retnet serve` without sockets
// (serving/http_api.h): every malformed or out-of-range field is a 400 naming it, unknown
// fields are ignored, prompts in all four shapes, prompt limits and token-id ranges, the
// response JSON shapes, the admission count of the job queue; hostile bodies (nesting a
// million deep, numbers past double's range, megabyte values quoted back), logit_bias and
// ignore_eos, the byte bound on prompts (checked against a real tokenizer), and the
// server's option validation.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "serving/http_api.h"
#include "serving/sampling.h"
#include "serving/serve.h"
#include "serving/serve_jobs.h"
#include "text/tokenizer.h"

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
    expect_400(R"({"prompt":"a","logprobs":6})", "logprobs", "[0, 5]");
    expect_400(R"({"prompt":"a","logprobs":true})", "logprobs", "must be an integer");
    BOOST_TEST(parse(R"({"prompt":"a","logprobs":5})").logprobs == 5);
    BOOST_TEST(parse(R"({"prompt":"a","logprobs":0})").logprobs == 0);
    BOOST_TEST(parse(R"({"prompt":"a","logprobs":false})").logprobs == -1);
    BOOST_TEST(parse(R"({"prompt":"a"})").logprobs == -1);
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

// A client could crash the server with a body nested 100,000 deep (every recursive walk of
// the parsed value overflowed the stack, and the 400 quoted the whole value). Now the depth
// is checked before parsing: a 400 naming the limit, quickly, at every depth.
BOOST_AUTO_TEST_CASE(nesting_depth_is_bounded_before_parsing) {
    for (size_t depth : {size_t(1000), size_t(10000), size_t(100000), size_t(1000000)}) {
        const std::vector<std::string> bodies = {
            std::string(depth, '[') + std::string(depth, ']'),
            "{\"prompt\":" + std::string(depth, '[') + "1" + std::string(depth, ']') + "}",
            [&] {  // objects: {"a":{"a":...}}
                std::string b;
                for (size_t i = 0; i < depth; ++i) b += "{\"a\":";
                b += "1";
                b += std::string(depth, '}');
                return b;
            }(),
            std::string(depth, '['),  // never closed
        };
        for (const std::string& b : bodies) {
            const auto t0 = std::chrono::steady_clock::now();
            try {
                parse(b);
                BOOST_ERROR("accepted a body nested " << depth << " deep");
            } catch (const ApiError& e) {
                const std::string m = e.what();
                BOOST_TEST(e.status == 400);
                BOOST_TEST(m.find("more than 64 levels deep") != std::string::npos, m);
                BOOST_TEST(m.size() < 200u, m);
                BOOST_TEST(error_json(e).size() < 400u);
            }
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            BOOST_TEST(secs < 2.0, "depth " << depth);
        }
    }
    // the limit is exact: 64 levels parse (and then fail on their content), 65 do not
    auto nested_prompt = [](int levels) {  // the body's object is level 1
        return "{\"prompt\":" + std::string(size_t(levels - 1), '[') + "1" + std::string(size_t(levels - 1), ']') + "}";
    };
    expect_400(nested_prompt(64), "prompt", "'prompt[0]'");
    expect_400(nested_prompt(65), "", "the limit is 64");
    // brackets inside strings are text, escaped quotes included
    std::string text;
    for (int i = 0; i < 500; ++i) text += "[{\\\"";
    CompletionRequest r = parse("{\"prompt\":\"" + text + "\"}");
    BOOST_TEST(r.prompts.at(0).text.size() == 1500u);
}

// Numbers beyond double's range (1e400) made the JSON library throw its own out_of_range,
// which the server answered with a 500. Every numeric field: a 400, never another error.
BOOST_AUTO_TEST_CASE(numbers_out_of_range_are_400_in_every_field) {
    for (const char* field : {"max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "n",
                              "best_of", "logprobs", "presence_penalty", "frequency_penalty"}) {
        for (const char* value : {"1e400", "-1e400", "1e308", "-0.0", "1e-400", "18446744073709551616", "3.5"}) {
            const std::string body = std::string("{\"prompt\":\"a\",\"") + field + "\":" + value + "}";
            try {
                parse(body);  // some are in range ("-0.0" as a temperature): fine
            } catch (const ApiError& e) {
                BOOST_TEST(e.status == 400, body);
            } catch (const std::exception& e) {
                BOOST_ERROR(body << ": not an ApiError but " << e.what());
            }
        }
    }
    expect_400(R"({"prompt":"a","max_tokens":1e400})", "", "number overflow parsing '1e400'");
    expect_400(R"({"prompt":[1e400]})", "", "not valid JSON");
    expect_400(R"({"prompt":"a","logit_bias":{"1":1e400}})", "", "not valid JSON");
    expect_400(R"({"prompt":"a","max_tokens":1e3})", "max_tokens", "must be an integer, got a number");
}

// Error messages quote at most a short excerpt of what the client sent.
BOOST_AUTO_TEST_CASE(error_messages_are_bounded) {
    const std::string big(1000000, 'x');
    const std::vector<std::string> bodies = {
        "{\"prompt\":\"a\",\"model\":[\"" + big + "\"]}",
        "{\"prompt\":\"a\",\"stop\":{\"" + big + "\":1}}",
        "{\"prompt\":{\"k\":\"" + big + "\"}}",
        "{\"prompt\":\"" + big,  // never closed: the parser's message quotes the token
        "[\"" + big + "\"]",
        "{\"prompt\":\"a\",\"logit_bias\":{\"" + big + "\":1}}",
        "{\"prompt\":\"a\",\"temperature\":" + std::string(300000, '1') + "}",
    };
    for (const std::string& b : bodies) {
        try {
            parse(b);
            BOOST_ERROR("accepted " << b.substr(0, 40));
        } catch (const ApiError& e) {
            BOOST_TEST(e.status == 400);
            BOOST_TEST(std::string(e.what()).size() < 500u, b.substr(0, 40) << " → " << std::string(e.what()).substr(0, 300));
        }
    }
    BOOST_TEST(error_json(bad_request("", big)).size() < 1200u);
    BOOST_TEST(clip("abcdef", 10) == "abcdef");
    BOOST_TEST(clip("abcdefghijkl", 8) == "abcde...");
    BOOST_TEST(clip("abc\xC3\xA9" "xyz", 7) == "abc...");  // never half a character (é)
}

BOOST_AUTO_TEST_CASE(logit_bias_and_ignore_eos) {
    CompletionRequest r = parse(R"({"prompt":"a","logit_bias":{"5":100,"7":-100.0,"0":0.5},"ignore_eos":true})");
    BOOST_TEST(r.logit_bias.size() == 3u);
    std::map<int32_t, double> m(r.logit_bias.begin(), r.logit_bias.end());
    BOOST_TEST(m[5] == 100.0);
    BOOST_TEST(m[7] == -100.0);
    BOOST_TEST(m[0] == 0.5);
    BOOST_TEST(r.ignore_eos);
    BOOST_TEST(!parse(R"({"prompt":"a"})").ignore_eos);
    BOOST_TEST(parse(R"({"prompt":"a","logit_bias":null})").logit_bias.empty());
    for (const char* key : {"-1", "abc", "1.5", "", " 1", "99999999999"})
        expect_400(std::string(R"({"prompt":"a","logit_bias":{")") + key + "\":1}}", "logit_bias", "token ids in [0, ");
    expect_400(R"({"prompt":"a","logit_bias":{"1":101}})", "logit_bias", "[-100, 100], got 101");
    expect_400(R"({"prompt":"a","logit_bias":{"1":-100.5}})", "logit_bias", "[-100, 100]");
    expect_400(R"({"prompt":"a","logit_bias":{"1":"5"}})", "logit_bias", "got a string");
    expect_400(R"({"prompt":"a","logit_bias":{"1":null}})", "logit_bias", "got null");
    expect_400(R"({"prompt":"a","logit_bias":[1]})", "logit_bias", "an object");
    expect_400(R"({"prompt":"a","ignore_eos":"yes"})", "ignore_eos", "must be a boolean");
    ApiLimits l = limits();
    l.vocab_size = 50;
    BOOST_CHECK_THROW(parse_completion_request(R"({"prompt":"a","logit_bias":{"50":1}})", l), ApiError);
    BOOST_CHECK_NO_THROW(parse_completion_request(R"({"prompt":"a","logit_bias":{"49":1}})", l));
    json many = json::object();
    for (int i = 0; i < 1025; ++i) many[std::to_string(i)] = 1;
    expect_400(json{{"prompt", "a"}, {"logit_bias", many}}.dump(), "logit_bias", "at most 1024 entries");

    // the sampler: the bias is added to the logits before anything else
    const std::vector<float> logits = {0, 1, 2, 3};
    SamplingParams greedy;
    greedy.temperature = 0;
    greedy.logit_bias = {{0, 100.f}};
    Sampler g(greedy);
    BOOST_TEST(!g.plain_greedy());  // so the engine never takes a device argmax past the bias
    BOOST_TEST(g.sample(logits.data(), 4, {}) == 0);
    SamplingParams hot;
    hot.temperature = 1.5;
    hot.seed = 9;
    hot.logit_bias = {{3, -100.f}, {2, -100.f}, {1, -100.f}};
    Sampler h(hot);
    for (int i = 0; i < 50; ++i) BOOST_TEST(h.sample(logits.data(), 4, {}) == 0);
    hot.logit_bias = {{2, 100.f}, {1000, 100.f}};  // an id past the row is ignored here
    Sampler h2(hot);
    for (int i = 0; i < 50; ++i) BOOST_TEST(h2.sample(logits.data(), 4, {}) == 2);
    hot.logit_bias = {{1, 101.f}};
    BOOST_CHECK_THROW(Sampler{hot}, rn::Error);
}

// Tokenising a 1 MB prompt took a second before it was refused; a prompt whose byte length
// cannot fit the token limit is now refused without tokenising.
BOOST_AUTO_TEST_CASE(prompt_byte_bound_refuses_without_tokenising) {
    ApiLimits l = limits();  // 8 tokens, BOS included
    l.max_token_bytes = 3;   // so at most 7 × 3 = 21 bytes can fit
    int calls = 0;
    auto counting = [&](const std::string& t) {
        ++calls;
        return std::vector<int32_t>(t.size() / 3, 7);  // 3 bytes a token
    };
    BOOST_TEST(tokenize_prompts(parse(json{{"prompt", std::string(21, 'a')}}.dump()), counting, 1, 200, l)[0].size() ==
               8u);
    BOOST_TEST(calls == 1);
    for (const std::string& p : {std::string(22, 'a'), std::string(1000000, 'a')}) {
        const CompletionRequest r = parse(json{{"prompt", {"ok", p}}}.dump());
        try {
            check_prompt_bytes(r, l);
            BOOST_ERROR("check_prompt_bytes accepted " << p.size() << " bytes");
        } catch (const ApiError& e) {
            BOOST_TEST(e.param == "prompt");
            BOOST_TEST(std::string(e.what()).find("prompt 1 is " + std::to_string(p.size()) + " bytes long") !=
                       std::string::npos, e.what());
            BOOST_TEST(std::string(e.what()).find("the limit is 8 tokens") != std::string::npos, e.what());
        }
        BOOST_CHECK_THROW(tokenize_prompts(r, counting, 1, 200, l), ApiError);
    }
    BOOST_TEST(calls == 1);  // neither over-long prompt reached the tokenizer
    BOOST_TEST(prompt_text_bytes(parse(R"({"prompt":["abc",[1,2,3,4],"de"]})")) == 5);

    // the premise, on a real tokenizer: no token stands for more bytes than its longest
    // piece decodes to (the server's max_token_bytes), on text it merges best (its own
    // training text), on runs of spaces and newlines, and on characters it never saw
    std::vector<std::string> lines;
    for (int i = 0; i < 200; ++i)
        lines.push_back("In the beginning God created the heaven and the earth " + std::to_string(i) +
                        ". And the earth was without form, and void; and darkness was upon the deep.");
    TokenizerTrainOptions to;
    to.vocab_size = 320;
    Tokenizer tok = Tokenizer::train_from_sentences(lines, to);
    size_t longest = 1;
    for (int32_t id = 0; id < tok.vocab_size(); ++id) longest = std::max(longest, tok.decode({id}).size());
    std::string all;
    for (const auto& x : lines) all += x + "\n";
    for (const std::string& text : {all, std::string(5000, ' '), std::string(3000, '\n'), std::string("\xE2\x96\x81 \xC3\xA9\xF0\x9F\x98\x80 x") + std::string(100, '\t')}) {
        const size_t n = tok.encode(text).size();
        BOOST_TEST(n * longest >= text.size(), n << " tokens × " << longest << " bytes < " << text.size() << " bytes");
    }
}

BOOST_AUTO_TEST_CASE(serve_options_are_validated_naming_option_value_and_range) {
    ServeOptions good;
    good.checkpoint = "x.h5";
    BOOST_CHECK_NO_THROW(validate_serve_options(good));
    struct Case {
        std::function<void(ServeOptions&)> set;
        std::string needle;
    };
    const std::vector<Case> cases = {
        {[](ServeOptions& o) { o.port = 65536; }, "--port must be in [0, 65535], got 65536"},
        {[](ServeOptions& o) { o.port = -1; }, "--port must be in [0, 65535], got -1"},
        {[](ServeOptions& o) { o.max_slots = 0; }, "--max-slots must be in [1, 65536], got 0"},
        {[](ServeOptions& o) { o.max_queue = -1; }, "--max-queue must be in [0, "},
        {[](ServeOptions& o) { o.max_body = 0; }, "--max-body must be in [64, "},
        {[](ServeOptions& o) { o.max_prompt_tokens = 0; }, "--max-prompt-tokens must be in [1, "},
        {[](ServeOptions& o) { o.max_tokens_limit = 0; }, "--max-tokens-limit must be in [1, "},
        {[](ServeOptions& o) { o.prefill_chunk = 0; }, "--prefill-chunk must be in [1, 1048576], got 0"},
        {[](ServeOptions& o) { o.threads = 0; }, "--threads must be in [1, 256], got 0"},
        {[](ServeOptions& o) { o.host = "localhost:80"; }, "--host must be an IP address"},
        {[](ServeOptions& o) { o.dtype = "f16"; }, "--dtype must be f32 or bf16"},
        {[](ServeOptions& o) { o.device = "tpu"; }, "--device must be cpu, cuda or cuda:N, got 'tpu'"},
        {[](ServeOptions& o) { o.idle_timeout_s = 0; }, "idle timeout must be in (0, 86400]"},
        {[](ServeOptions& o) { o.drain_timeout_s = std::nan(""); }, "drain timeout must be in [0, 86400]"},
        {[](ServeOptions& o) { o.checkpoint.clear(); }, "no checkpoint given"},
    };
    for (const Case& c : cases) {
        ServeOptions o = good;
        c.set(o);
        try {
            validate_serve_options(o);
            BOOST_ERROR("accepted: " << c.needle);
        } catch (const rn::Error& e) {
            BOOST_TEST(std::string(e.what()).find(c.needle) != std::string::npos, e.what());
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
