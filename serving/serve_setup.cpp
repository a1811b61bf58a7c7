// serving/serve_setup.cpp — `retnet serve` before it serves: option checks, the model and
// tokenizer from the checkpoint, the bound on a token's text, the tokenizer threads'
// priority (see serving/serve_setup.h).
#include "serving/serve_setup.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "nn/checkpoint.h"
#include "serving/serve_auth.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace rn::tools {

// The model and its tokenizer from a checkpoint (the weights only; the file's copy is
// freed before serving starts).
std::shared_ptr<nn::LanguageModel> load_model(const std::string& path, std::optional<Tokenizer>& tok,
                                         std::string& metadata_json, std::string* tokenizer_bytes) {
    nn::LoadModelOptions lo;
    lo.check = [&](const nn::Checkpoint& ck) {  // the tokenizer before the model is built
        metadata_json = ck.metadata_json;
        RN_CHECK(!ck.tokenizer.empty(), "serve: ", path, " holds no tokenizer. HINT: serve a checkpoint written by "
                 "`retnet train`, which stores its tokenizer inside");
        tok.emplace(Tokenizer::from_serialized(ck.tokenizer));
        RN_CHECK(tok->vocab_size() <= ck.config.vocab_size, "serve: the tokenizer in ", path, " has ",
                 tok->vocab_size(), " ids but the model only ", ck.config.vocab_size);
    };
    nn::LoadedModel loaded = nn::load_model(path, lo);
    if (tokenizer_bytes) *tokenizer_bytes = std::move(loaded.tokenizer);
    return loaded.model;
}

void prepare_serving(const ServeOptions& opt, std::vector<std::string>& names, std::vector<std::string>& keys,
                     std::optional<ChatTemplate>& chat_template) {
    names = opt.served_model_names;
    if (names.empty())
        names.push_back(opt.model_name.empty() ? std::filesystem::path(opt.checkpoint).stem().string() : opt.model_name);
    keys = opt.api_keys;
    if (!opt.api_key_file.empty())
        for (auto& k : read_api_key_file(opt.api_key_file)) keys.push_back(std::move(k));
    if (!opt.chat_template.empty()) {
        std::ifstream in(opt.chat_template);
        RN_CHECK(in.good(), "serve: cannot read the chat template '", opt.chat_template, "'");
        std::ostringstream text;
        text << in.rdbuf();
        chat_template = parse_chat_template(text.str(), "'" + opt.chat_template + "'");
    }
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


void validate_serve_options(const ServeOptions& opt) {
    auto in = [](const char* name, auto v, auto lo, auto hi) {
        RN_CHECK(v >= lo && v <= hi, "serve: ", name, " must be in [", lo, ", ", hi, "], got ", v);
    };
    RN_CHECK(!opt.checkpoint.empty(), "serve: no checkpoint given. HINT: retnet serve runs/tiny/best.h5");
    boost::system::error_code ec;
    boost::asio::ip::make_address(opt.host, ec);
    RN_CHECK(!ec, "serve: --host must be an IP address to listen on (127.0.0.1: this machine only, 0.0.0.0: every "
             "interface), got '", opt.host, "'");
    in("--port", opt.port, 0, 65535);
    in("--max-slots", opt.max_slots, int64_t(1), int64_t(1) << 16);
    in("--max-queue", opt.max_queue, int64_t(0), int64_t(1) << 20);
    in("--max-body", opt.max_body, int64_t(64), int64_t(1) << 30);
    in("--max-prompt-tokens", opt.max_prompt_tokens, int64_t(1), int64_t(1) << 20);
    in("--max-tokens-limit", opt.max_tokens_limit, int64_t(1), int64_t(1) << 20);
    in("--prefill-chunk", opt.prefill_chunk, int64_t(1), int64_t(1) << 20);
    in("--prefix-cache-mb", opt.prefix_cache_mb, int64_t(0), int64_t(1) << 24);
    in("--max-context", opt.max_context, int64_t(0), int64_t(1) << 30);
    in("--speculative-k", opt.speculative_k, int64_t(1), int64_t(32));
    RN_CHECK(opt.draft.empty() || !opt.speculate_ngram, "serve: --draft and --speculate-ngram both given; pick one");
    in("--threads", opt.threads, 1, 256);
    RN_CHECK(opt.model_name.size() <= 256, "serve: --model-name must be at most 256 bytes, got ", opt.model_name.size());
    RN_CHECK(opt.dtype == "f32" || opt.dtype == "bf16", "serve: --dtype must be f32 or bf16 (bf16 on CUDA only), got '",
             opt.dtype, "'");
    RN_CHECK(opt.device == "cpu" || opt.device.rfind("cuda", 0) == 0,
             "serve: --device must be cpu, cuda or cuda:N, got '", opt.device, "'");
    RN_CHECK(std::isfinite(opt.idle_timeout_s) && opt.idle_timeout_s > 0 && opt.idle_timeout_s <= 86400,
             "serve: the idle timeout must be in (0, 86400] seconds, got ", opt.idle_timeout_s);
    for (const auto& [name, v] : {std::pair<const char*, double>{"--read-timeout", opt.read_timeout_s},
                                  {"--write-timeout", opt.write_timeout_s}})
        RN_CHECK(std::isfinite(v) && v > 0 && v <= 86400, "serve: ", name, " must be in (0, 86400] seconds, got ", v);
    RN_CHECK(opt.log_format == "plain" || opt.log_format == "json" || opt.log_format == "off",
             "serve: --log-format must be plain, json or off, got '", opt.log_format, "'");
    for (const auto& n : opt.served_model_names)
        RN_CHECK(!n.empty() && n.size() <= 256, "serve: --served-model-name must be 1 to 256 bytes, got '", n, "'");
    for (const auto& k : opt.api_keys) RN_CHECK(!k.empty(), "serve: --api-key must not be empty");
    RN_CHECK(std::isfinite(opt.startup_delay_s) && opt.startup_delay_s >= 0 && opt.startup_delay_s <= 600,
             "serve: --startup-delay must be in [0, 600] seconds, got ", opt.startup_delay_s);
    RN_CHECK(std::isfinite(opt.drain_timeout_s) && opt.drain_timeout_s >= 0 && opt.drain_timeout_s <= 86400,
             "serve: the drain timeout must be in [0, 86400] seconds, got ", opt.drain_timeout_s);
}


}  // namespace rn::tools
