// serving/serve_setup.h — what `retnet serve` does before it serves (serving/serve_setup.cpp):
// loading the model and tokenizer, and small helpers of run_serve. Internal to serving/.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/lm.h"
#include "serving/chat.h"
#include "serving/serve.h"
#include "text/tokenizer.h"

namespace rn::tools {

// The model and its tokenizer from a checkpoint (the weights only), and its metadata JSON
// (where a chat template may be). Throws rn::Error for a checkpoint without a tokenizer.
std::shared_ptr<nn::LanguageModel> load_model(const std::string& path, std::optional<Tokenizer>& tok,
                                         std::string& metadata_json, std::string* tokenizer_bytes = nullptr);
// The most bytes of text one token stands for (ApiLimits::max_token_bytes).
int64_t longest_token_bytes(const Tokenizer& tok);
// From the options, before anything is loaded: the model names (--served-model-name, else
// --model-name, else the checkpoint's file stem), the API keys (--api-key and the key
// file) and the --chat-template file if given. Throws rn::Error on an unreadable file.
void prepare_serving(const ServeOptions& opt, std::vector<std::string>& names, std::vector<std::string>& keys,
                     std::optional<ChatTemplate>& chat_template);
// Lowers the calling thread's scheduling priority (the tokenizer threads).
void lower_this_thread_priority();

}  // namespace rn::tools
