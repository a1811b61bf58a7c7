// serving/chat.h — the chat template of `retnet serve`: how /v1/chat/completions turns a
// list of messages into the one prompt the model continues.
//
// The template language is deliberately tiny (no code, no loops, no conditions — nothing a
// template file can execute): a JSON object
//
//   {"system":    {"prefix": "System: ",    "suffix": "\n"},
//    "user":      {"prefix": "User: ",      "suffix": "\n"},
//    "assistant": {"prefix": "Assistant: ", "suffix": "\n"},
//    "generation_prompt": "Assistant:"}
//
// A message renders as its role's prefix, its content verbatim, then the role's suffix; the
// messages are concatenated in order and the generation prompt follows (the text the model
// continues as the assistant). Every key is optional (a missing one is ""), except that at
// least one of them must be non-empty; unknown keys are an error, so a typo never silently
// changes the prompt. The object above is the default (default_chat_template()).
//
// Where the template comes from, first found wins: `--chat-template FILE`, a "chat_template"
// key (an object in this language) in the checkpoint's metadata JSON, the default.
#pragma once
#include <string>
#include <vector>

#include "serving/http_api.h"

namespace rn::tools {

struct ChatTemplate {
    struct Role {
        std::string prefix, suffix;
    };
    Role system, user, assistant;
    std::string generation_prompt;

    // the prompt for these messages (roles already validated: system, user, assistant)
    std::string render(const std::vector<ChatMessage>& messages) const;
};

// "System: …\nUser: …\nAssistant:" (see the top of this file)
ChatTemplate default_chat_template();
// Parses the JSON text of a template; throws rn::Error naming `origin`, the key and what
// was wrong (not an object, a non-string value, an unknown key, all empty).
ChatTemplate parse_chat_template(const std::string& json_text, const std::string& origin);
// The template in a checkpoint's metadata JSON ("chat_template"), if any; throws rn::Error
// when the key is there but is not a valid template.
bool chat_template_from_metadata(const std::string& metadata_json, ChatTemplate& out);

}  // namespace rn::tools
