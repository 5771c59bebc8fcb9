#include "tokenizer/chat_template.h"

#include "util/error.h"

namespace kvforge {
namespace {

// ChatML templates that add a default system message write it as one string
// literal: '<|im_start|>system\n<text><|im_end|>\n'. The newline may be a real
// one or a Jinja escape, depending on how the template was written.
std::string find_default_system(const std::string& tpl) {
  const std::string head = "<|im_start|>system";
  for (size_t at = tpl.find(head); at != std::string::npos; at = tpl.find(head, at + 1)) {
    size_t p = at + head.size();
    if (tpl.compare(p, 1, "\n") == 0) p += 1;
    else if (tpl.compare(p, 2, "\\n") == 0) p += 2;
    else continue;
    size_t end = tpl.find("<|im_end|>", p);
    if (end == std::string::npos) continue;
    std::string body = tpl.substr(p, end - p);
    // Only a plain literal counts ('{{', quotes or '+' mean a Jinja expression).
    if (body.empty() || body.find_first_of("{}'\"+") != std::string::npos) continue;
    std::string out;
    for (size_t i = 0; i < body.size(); ++i) {
      if (body[i] == '\\' && i + 1 < body.size() && body[i + 1] == 'n') {
        out += '\n';
        ++i;
      } else {
        out += body[i];
      }
    }
    return out;
  }
  return {};
}

// Llama 3 trims message content ({{ message['content'] | trim }}).
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

ChatTemplate detect_chat_template(const std::string& tpl) {
  if (tpl.find("<|im_start|>") != std::string::npos) return {ChatFormat::ChatML, find_default_system(tpl)};
  if (tpl.find("<|start_header_id|>") != std::string::npos) return {ChatFormat::Llama3};
  return {ChatFormat::Raw};
}

ChatFormat parse_chat_format(const std::string& name) {
  if (name == "raw") return ChatFormat::Raw;
  if (name == "chatml") return ChatFormat::ChatML;
  if (name == "llama3") return ChatFormat::Llama3;
  fail("unknown chat format '{}' (expected raw, chatml or llama3)", name);
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Llama3: return "llama3";
    default: return "raw";
  }
}

std::string chat_turn_end(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML: return "<|im_end|>";
    case ChatFormat::Llama3: return "<|eot_id|>";
    default: return "";
  }
}

bool chat_format_writes_bos(ChatFormat f) { return f == ChatFormat::Llama3; }

std::string chat_turn_separator(ChatFormat f) { return f == ChatFormat::ChatML ? "\n" : ""; }

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        bool is_first_chunk) {
  std::string out;
  switch (t.format) {
    case ChatFormat::ChatML:
      if (is_first_chunk && !t.default_system.empty() && (messages.empty() || messages[0].role != "system")) {
        // SmolLM2's template writes its default inside the message loop, so
        // a conversation with no messages gets none; we do the same.
        if (!messages.empty()) out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
      }
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatFormat::Llama3:
      if (is_first_chunk) out += "<|begin_of_text|>";
      for (const auto& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFormat::Raw:
      // Plain concatenation: the text is the prompt.
      for (const auto& m : messages) out += m.content;
      break;
  }
  return out;
}

}  // namespace kvforge
