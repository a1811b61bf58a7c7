// tests/test_serve_chat.cpp — `retnet serve` as a real process: chat completions (the same
// text as /v1/completions on the rendered prompt, whole and streamed, n, usage), chat
// templates from a file and from the checkpoint's metadata, logprobs (completions and chat,
// streamed and not, consistent with greedy choices), /tokenize and /detokenize, model
// names and aliases with OpenAI's 404.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>

#include "serve_test_util.h"

using namespace rn;
using namespace rn::test;

namespace {

struct Shared {
    TinyCheckpoint ckpt;
    tools::Tokenizer tok = tools::Tokenizer::from_serialized(nn::read_checkpoint(ckpt.path).tokenizer);
    ServerProcess server{ckpt.path,
                         {"--max-slots", "8", "--max-prompt-tokens", "256", "--served-model-name", "best",
                          "--served-model-name", "tiny", "--log-format", "off"}};
    int port() const { return server.port(); }
};
Shared& shared() {
    static Shared s;
    return s;
}

json post(int port, const std::string& target, const json& body, int expect_status = 200) {
    Reply r = Client(port).post(target, body.dump());
    BOOST_TEST_REQUIRE(r.status == expect_status, target << ": status " << r.status << " for " << body.dump() << ": " << r.body);
    return r.j();
}

const json kMessages = json::array({{{"role", "system"}, {"content", "You answer in verse."}},
                                    {{"role", "user"}, {"content", "In the beginning"}},
                                    {{"role", "assistant"}, {"content", "God created"}},
                                    {{"role", "user"}, {"content", "And the earth"}}});
const std::string kRendered =
    "System: You answer in verse.\nUser: In the beginning\nAssistant: God created\nUser: And the earth\nAssistant:";

// Each streamed event's JSON, [DONE] as the string "[DONE]".
std::vector<json> stream_events(int port, const std::string& target, const json& body) {
    std::vector<json> out;
    Client c(port);
    const int status = c.stream(
        body.dump(),
        [&](const std::string& data) {
            out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
            return true;
        },
        target);
    BOOST_TEST_REQUIRE(status == 200);
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(serve_chat)

BOOST_AUTO_TEST_CASE(chat_gives_the_completion_of_the_rendered_prompt) {
    const int port = shared().port();
    const json sampling = {{"max_tokens", 12}, {"temperature", 0.9}, {"seed", 17}, {"n", 2}};
    json chat = sampling;
    chat["messages"] = kMessages;
    json plain = sampling;
    plain["prompt"] = kRendered;
    const json c = post(port, "/v1/chat/completions", chat);
    const json p = post(port, "/v1/completions", plain);
    BOOST_TEST(c["object"] == "chat.completion");
    BOOST_TEST(c["model"] == "best");
    BOOST_TEST(c["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
    BOOST_TEST_REQUIRE(c["choices"].size() == 2u);
    for (size_t i = 0; i < 2; ++i) {
        BOOST_TEST(c["choices"][i]["index"] == i);
        BOOST_TEST(c["choices"][i]["message"]["role"] == "assistant");
        BOOST_TEST(c["choices"][i]["message"]["content"] == p["choices"][i]["text"]);
        BOOST_TEST(c["choices"][i]["finish_reason"] == p["choices"][i]["finish_reason"]);
        BOOST_TEST(c["choices"][i]["logprobs"].is_null());
    }
    BOOST_TEST(c["usage"] == p["usage"]);
    BOOST_TEST(c["usage"]["prompt_tokens"] == int64_t(shared().tok.encode(kRendered).size()) + 1);

    // streamed: role on each choice's first delta, the same text, a usage chunk, [DONE]
    chat["stream"] = true;
    chat["stream_options"] = {{"include_usage", true}};
    const std::vector<json> ev = stream_events(port, "/v1/chat/completions", chat);
    BOOST_TEST_REQUIRE(ev.size() >= 4u);
    BOOST_TEST(ev.back() == "[DONE]");
    std::vector<std::string> text(2), finish(2);
    std::vector<int> first_delta_at(2, -1);
    json usage;
    for (size_t k = 0; k + 1 < ev.size(); ++k) {
        const json& e = ev[k];
        BOOST_TEST(e["object"] == "chat.completion.chunk");
        if (e.contains("usage") && !e["usage"].is_null()) usage = e["usage"];
        for (const auto& ch : e["choices"]) {
            const size_t i = ch["index"].get<size_t>();
            BOOST_TEST_REQUIRE(i < 2u);
            if (first_delta_at[i] < 0) {
                first_delta_at[i] = int(k);
                BOOST_TEST(ch["delta"]["role"] == "assistant");
            } else {
                BOOST_TEST(!ch["delta"].contains("role"));
            }
            if (ch["delta"].contains("content")) text[i] += ch["delta"]["content"].get<std::string>();
            if (!ch["finish_reason"].is_null()) finish[i] = ch["finish_reason"].get<std::string>();
        }
    }
    for (size_t i = 0; i < 2; ++i) {
        BOOST_TEST(text[i] == p["choices"][i]["text"].get<std::string>());
        BOOST_TEST(finish[i] == p["choices"][i]["finish_reason"].get<std::string>());
    }
    BOOST_TEST(usage == p["usage"]);
    BOOST_TEST(ev[ev.size() - 2]["choices"].empty());  // the usage chunk comes last, with no choices

    // a bad message is a 400 naming the field
    json bad = {{"messages", {{{"role", "tool"}, {"content", "x"}}}}};
    json e = post(port, "/v1/chat/completions", bad, 400);
    BOOST_TEST(e["error"]["param"] == "messages[0].role");
}

BOOST_AUTO_TEST_CASE(completion_logprobs_are_consistent) {
    const int port = shared().port();
    json body = {{"prompt", "In the beginning"}, {"max_tokens", 10}, {"temperature", 0}, {"logprobs", 3},
                 {"ignore_eos", true}};
    const json j = post(port, "/v1/completions", body);
    const json& lp = j["choices"][0]["logprobs"];
    BOOST_TEST_REQUIRE(lp.is_object());
    const size_t n = lp["tokens"].size();
    BOOST_TEST(n == 10u);
    BOOST_TEST_REQUIRE(lp["token_logprobs"].size() == n);
    BOOST_TEST_REQUIRE(lp["top_logprobs"].size() == n);
    BOOST_TEST_REQUIRE(lp["text_offset"].size() == n);
    int64_t offset = 0;
    for (size_t i = 0; i < n; ++i) {
        const double chosen = lp["token_logprobs"][i].get<double>();
        BOOST_TEST(chosen <= 0.0);
        const json& top = lp["top_logprobs"][i];
        BOOST_TEST(top.size() >= 1u);
        BOOST_TEST(top.size() <= 3u);
        double best = -INFINITY, mass = 0;
        for (auto it = top.begin(); it != top.end(); ++it) {
            BOOST_TEST(it.value().get<double>() <= 0.0);
            best = std::max(best, it.value().get<double>());
            mass += std::exp(it.value().get<double>());
        }
        BOOST_TEST(mass <= 1.0 + 1e-6);
        // greedy: the chosen token is the most likely one, and listed with the same value
        BOOST_TEST(std::abs(best - chosen) < 1e-9);
        BOOST_TEST(std::abs(top[lp["tokens"][i].get<std::string>()].get<double>() - chosen) < 1e-9);
        BOOST_TEST(lp["text_offset"][i] == offset, "token " << i << ": " << lp["tokens"].dump());
        // offsets count the raw bytes; a lone byte of a character is spelled "bytes:\xNN"
        const std::string tok = lp["tokens"][i].get<std::string>();
        offset += tok.rfind("bytes:", 0) == 0 ? int64_t((tok.size() - 6) / 4) : int64_t(tok.size());
    }
    // logprobs: 0 lists the chosen tokens' values and no alternatives
    body["logprobs"] = 0;
    const json z = post(port, "/v1/completions", body);
    BOOST_TEST(z["choices"][0]["logprobs"]["token_logprobs"] == lp["token_logprobs"]);
    for (const auto& t : z["choices"][0]["logprobs"]["top_logprobs"]) BOOST_TEST(t.empty());
    // streamed: the same tokens and values, with consecutive offsets across chunks
    body["logprobs"] = 3;
    body["stream"] = true;
    json tokens = json::array(), values = json::array(), offsets = json::array();
    for (const json& e : stream_events(port, "/v1/completions", body)) {
        if (e == "[DONE]") continue;
        for (const auto& ch : e["choices"])
            if (!ch["logprobs"].is_null())
                for (size_t i = 0; i < ch["logprobs"]["tokens"].size(); ++i) {
                    tokens.push_back(ch["logprobs"]["tokens"][i]);
                    values.push_back(ch["logprobs"]["token_logprobs"][i]);
                    offsets.push_back(ch["logprobs"]["text_offset"][i]);
                }
    }
    BOOST_TEST(tokens == lp["tokens"]);
    BOOST_TEST(values == lp["token_logprobs"]);
    BOOST_TEST(offsets == lp["text_offset"]);
    // over the maximum: a 400
    body["logprobs"] = 6;
    body["stream"] = false;
    BOOST_TEST(post(port, "/v1/completions", body, 400)["error"]["param"] == "logprobs");
}

BOOST_AUTO_TEST_CASE(chat_logprobs_sampled_and_greedy) {
    const int port = shared().port();
    json body = {{"messages", kMessages}, {"max_tokens", 8}, {"temperature", 1.0}, {"seed", 3},
                 {"logprobs", true}, {"top_logprobs", 4}, {"ignore_eos", true}};
    const json j = post(port, "/v1/chat/completions", body);
    const json& content = j["choices"][0]["logprobs"]["content"];
    BOOST_TEST_REQUIRE(content.size() == 8u);
    for (const auto& t : content) {
        BOOST_TEST(t["logprob"].get<double>() <= 0.0);
        BOOST_TEST_REQUIRE(t["top_logprobs"].size() == 4u);
        // sampled: the most likely alternative is at least as likely as the chosen token
        BOOST_TEST(t["top_logprobs"][0]["logprob"].get<double>() >= t["logprob"].get<double>() - 1e-9);
        double mass = 0;
        for (size_t k = 0; k < 4; ++k) {
            mass += std::exp(t["top_logprobs"][k]["logprob"].get<double>());
            if (k > 0) BOOST_TEST(t["top_logprobs"][k]["logprob"] <= t["top_logprobs"][k - 1]["logprob"]);
        }
        BOOST_TEST(mass <= 1.0 + 1e-6);
        const std::string tok = t["token"].get<std::string>();
        // the bytes are the token's own; its text shows U+FFFD where it holds part of a character
        if (tok.find("\xEF\xBF\xBD") == std::string::npos) {
            std::vector<int> bytes;
            for (unsigned char b : tok) bytes.push_back(b);
            BOOST_TEST(t["bytes"] == json(bytes));
        } else {
            BOOST_TEST(t["bytes"].size() >= 1u);
        }
    }
    body["temperature"] = 0;
    const json g = post(port, "/v1/chat/completions", body);
    for (const auto& t : g["choices"][0]["logprobs"]["content"]) {
        BOOST_TEST(t["top_logprobs"][0]["token"] == t["token"]);
        BOOST_TEST(std::abs(t["top_logprobs"][0]["logprob"].get<double>() - t["logprob"].get<double>()) < 1e-9);
    }
    // streamed, the same entries
    body["stream"] = true;
    json streamed = json::array();
    for (const json& e : stream_events(port, "/v1/chat/completions", body)) {
        if (e == "[DONE]") continue;
        for (const auto& ch : e["choices"])
            if (!ch["logprobs"].is_null())
                for (const auto& t : ch["logprobs"]["content"]) streamed.push_back(t);
    }
    BOOST_TEST(streamed == g["choices"][0]["logprobs"]["content"]);
}

BOOST_AUTO_TEST_CASE(tokenize_and_detokenize) {
    const int port = shared().port();
    const std::string text = "In the beginning God created";
    const std::vector<int32_t> ids = shared().tok.encode(text);
    json t = post(port, "/tokenize", {{"prompt", text}});
    std::vector<int32_t> with_bos = {shared().tok.bos_id()};
    with_bos.insert(with_bos.end(), ids.begin(), ids.end());
    BOOST_TEST(t["tokens"] == json(with_bos));
    BOOST_TEST(t["count"] == with_bos.size());
    BOOST_TEST(t["max_model_len"] == 256);
    BOOST_TEST(post(port, "/tokenize", {{"prompt", text}, {"add_special_tokens", false}})["tokens"] == json(ids));
    BOOST_TEST(post(port, "/detokenize", {{"tokens", ids}})["prompt"] == text);
    BOOST_TEST(post(port, "/detokenize", {{"tokens", {100000}}}, 400)["error"]["param"] == "tokens");
    BOOST_TEST(post(port, "/tokenize", {{"prompt", text}, {"model", "gpt-4"}}, 404)["error"]["code"] == "model_not_found");
}

BOOST_AUTO_TEST_CASE(model_names_and_aliases) {
    const int port = shared().port();
    Client c(port);
    Reply list = c.get("/v1/models");
    BOOST_TEST(list.status == 200);
    BOOST_TEST(list.j()["data"][0]["id"] == "best");
    Reply one = c.get("/v1/models/tiny");
    BOOST_TEST(one.status == 200);
    BOOST_TEST(one.j() == json({{"id", "tiny"}, {"object", "model"}, {"created", list.j()["data"][0]["created"]},
                                {"owned_by", "retnet.cpp"}}));
    Reply none = c.get("/v1/models/gpt-4");
    BOOST_TEST(none.status == 404);
    BOOST_TEST(none.j()["error"]["code"] == "model_not_found");
    BOOST_TEST(none.j()["error"]["type"] == "invalid_request_error");
    BOOST_TEST(none.j()["error"]["param"] == "model");
    BOOST_TEST(post(port, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 1}, {"model", "tiny"}})["model"] == "best");
    BOOST_TEST(post(port, "/v1/completions", {{"prompt", "a"}, {"model", "gpt-4"}}, 404)["error"]["code"] ==
               "model_not_found");
    BOOST_TEST(post(port, "/v1/chat/completions", {{"messages", kMessages}, {"model", "x"}}, 404)["error"]["code"] ==
               "model_not_found");
}

BOOST_AUTO_TEST_CASE(templates_from_a_file_and_from_the_checkpoint) {
    // the checkpoint's template is used when no file is given; a file wins over it
    TinyCheckpoint ckpt(R"({"chat_template":{"user":{"prefix":"Q: ","suffix":"\n"},"generation_prompt":"A:"}})");
    const std::string file = (ckpt.dir / "t.json").string();
    std::ofstream(file) << R"({"user":{"prefix":"<u>"},"assistant":{"prefix":"<a>"},"generation_prompt":"<a>"})";
    ServerProcess meta(ckpt.path, {"--log-format", "off"});
    ServerProcess from_file(ckpt.path, {"--chat-template", file, "--log-format", "off"});
    const json msgs = {{{"role", "user"}, {"content", "In the beginning"}}};
    const json s = {{"max_tokens", 6}, {"temperature", 0}};
    for (auto [port, rendered] : {std::pair<int, std::string>{meta.port(), "Q: In the beginning\nA:"},
                                  {from_file.port(), "<u>In the beginning<a>"}}) {
        json chat = s, plain = s;
        chat["messages"] = msgs;
        plain["prompt"] = rendered;
        const json c = post(port, "/v1/chat/completions", chat), p = post(port, "/v1/completions", plain);
        BOOST_TEST(c["choices"][0]["message"]["content"] == p["choices"][0]["text"]);
        BOOST_TEST(c["usage"] == p["usage"], rendered);
    }
}

BOOST_AUTO_TEST_SUITE_END()
