// `kvforge chat-template`: the prompt text a chat renders to (debugging aid,
// and what the tests compare with the model's Jinja template).
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "frontend/command.h"
#include "gguf/gguf.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"
#include "util/model_store.h"

namespace kvforge::cli {
namespace {

struct ChatTemplateOptions {
  std::string model;
  std::string messages;  // JSON list of {"role", "content"}
  std::string format;    // forced format name
  bool no_generation_prompt = false;
  bool continuation = false;
};

void run_chat_template(const ChatTemplateOptions& o) {
  ChatTemplate t;
  if (!o.format.empty()) {
    t = parse_chat_format(o.format);
  } else {
    auto file = gguf::File::open(resolve_model_path(o.model));
    t = detect_chat_template(*file);
  }
  nlohmann::json j = nlohmann::json::parse(o.messages, nullptr, false);
  if (!j.is_array()) fail("--messages must be a JSON list of {{\"role\": ..., \"content\": ...}}");
  std::vector<ChatMessage> msgs;
  for (const auto& m : j) {
    if (!m.is_object() || !m.contains("role") || !m.contains("content")) fail("bad message: {}", m.dump());
    msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  std::fputs(render_chat(t, msgs, !o.no_generation_prompt, !o.continuation).c_str(), stdout);
}

CommandRegistrar reg(31, [](CLI::App& root) {
  auto o = std::make_shared<ChatTemplateOptions>();
  auto* c = root.add_subcommand("chat-template", "Print the prompt text that a list of chat messages renders to");
  c->add_option("-m,--model", o->model, "GGUF model whose template is used (default: the default model)");
  c->add_option("--messages", o->messages, "JSON list of {\"role\", \"content\"} objects")->required();
  c->add_option("--format", o->format, "Force a format: raw, chatml, smollm3, llama3, gemma, phi3, phi3-compact");
  c->add_flag("--no-generation-prompt", o->no_generation_prompt, "Do not end with the assistant header");
  c->add_flag("--continuation", o->continuation, "Render a later chunk of the conversation (no start-of-chat text)");
  c->callback([o] { run_chat_template(*o); });
});

}  // namespace
}  // namespace kvforge::cli
