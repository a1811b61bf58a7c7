// serving/chat.cpp — the chat template language (see serving/chat.h).
#include "serving/chat.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace rn::tools {

using json = nlohmann::json;

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages) const {
    std::string out;
    for (const ChatMessage& m : messages) {
        const Role& r = m.role == "system" ? system : m.role == "user" ? user : assistant;
        out += r.prefix;
        out += m.content;
        out += r.suffix;
    }
    out += generation_prompt;
    return out;
}

ChatTemplate default_chat_template() {
    ChatTemplate t;
    t.system = {"System: ", "\n"};
    t.user = {"User: ", "\n"};
    t.assistant = {"Assistant: ", "\n"};
    t.generation_prompt = "Assistant:";
    return t;
}

namespace {

ChatTemplate template_from_json(const json& j, const std::string& origin) {
    RN_CHECK(j.is_object(), "chat template ", origin, ": must be a JSON object {\"system\": {\"prefix\", \"suffix\"}, "
             "\"user\": {...}, \"assistant\": {...}, \"generation_prompt\": \"...\"}, got ", j.type_name());
    ChatTemplate t;
    bool any = false;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        if (key == "generation_prompt") {
            RN_CHECK(it->is_string(), "chat template ", origin, ": \"generation_prompt\" must be a string, got ",
                     it->type_name());
            t.generation_prompt = it->get<std::string>();
            any = any || !t.generation_prompt.empty();
            continue;
        }
        ChatTemplate::Role* r = key == "system" ? &t.system : key == "user" ? &t.user : key == "assistant" ? &t.assistant : nullptr;
        RN_CHECK(r != nullptr, "chat template ", origin, ": unknown key \"", key,
                 "\" (the keys are system, user, assistant and generation_prompt)");
        RN_CHECK(it->is_object(), "chat template ", origin, ": \"", key,
                 "\" must be an object {\"prefix\": string, \"suffix\": string}, got ", it->type_name());
        for (auto f = it->begin(); f != it->end(); ++f) {
            RN_CHECK(f.key() == "prefix" || f.key() == "suffix", "chat template ", origin, ": unknown key \"", key, ".",
                     f.key(), "\" (a role has prefix and suffix)");
            RN_CHECK(f->is_string(), "chat template ", origin, ": \"", key, ".", f.key(), "\" must be a string, got ",
                     f->type_name());
            (f.key() == "prefix" ? r->prefix : r->suffix) = f->get<std::string>();
            any = any || !f->get<std::string>().empty();
        }
    }
    RN_CHECK(any, "chat template ", origin, ": every prefix, suffix and the generation prompt are empty; the "
             "messages would run together with nothing to tell the roles apart");
    return t;
}

}  // namespace

ChatTemplate parse_chat_template(const std::string& json_text, const std::string& origin) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        RN_FAIL("chat template ", origin, ": not valid JSON: ", e.what());
    }
    return template_from_json(j, origin);
}

bool chat_template_from_metadata(const std::string& metadata_json, ChatTemplate& out) {
    json j = json::parse(metadata_json, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("chat_template")) return false;
    const json& t = j["chat_template"];
    // a template stored as its JSON text is accepted too
    if (t.is_string()) out = parse_chat_template(t.get<std::string>(), "in the checkpoint's metadata");
    else out = template_from_json(t, "in the checkpoint's metadata");
    return true;
}

}  // namespace rn::tools
