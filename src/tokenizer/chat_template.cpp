#include "tokenizer/chat_template.h"

#include <ctime>

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

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

constexpr ChatFormat kFormats[] = {ChatFormat::Raw,     ChatFormat::ChatML, ChatFormat::Llama3,     ChatFormat::SmolLM3,
                                   ChatFormat::Gemma,   ChatFormat::Phi3,   ChatFormat::Phi3Compact};

// SmolLM3's system header (its template without tools): metadata, reasoning
// mode, then the custom instructions or its default for the mode.
std::string smollm3_header(const std::string& system, bool thinking) {
  char today[64];
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::strftime(today, sizeof today, "%d %B %Y", &utc);
  std::string out = "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\nToday Date: ";
  out += today;
  out += std::string("\nReasoning Mode: ") + (thinking ? "/think" : "/no_think") + "\n\n## Custom Instructions\n\n";
  if (!system.empty()) return out + system + "\n\n";
  if (!thinking) return out + "You are a helpful AI assistant named SmolLM, trained by Hugging Face.\n\n";
  return out +
         "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an assistant involves "
         "thoroughly exploring questions through a systematic thinking process before providing the final precise and "
         "accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, "
         "reassessment, reflection, backtracking, and iteration to develop well-considered thinking process. Please "
         "structure your response into two main sections: Thought and Solution using the specified format: <think> "
         "Thought section </think> Solution section. In the Thought section, detail your reasoning process in steps. "
         "Each step should include detailed considerations such as analysing questions, summarizing relevant "
         "findings, brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and "
         "revisiting previous steps. In the Solution section, based on various attempts, explorations, and "
         "reflections from the Thought section, systematically present the final solution that you deem correct. The "
         "Solution section should be logical, accurate, and concise and detail necessary steps needed to reach the "
         "conclusion.\n\n";
}

// s without every occurrence of what.
std::string erase_all(std::string s, const std::string& what) {
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at)) s.erase(at, what.size());
  return s;
}

std::string rstrip(const std::string& s) { return s.substr(0, s.find_last_not_of(" \t\n\r\f\v") + 1); }

void render_smollm3(const std::vector<ChatMessage>& messages, bool gen, bool first, std::string& out) {
  bool thinking = true;
  if (!messages.empty() && messages[0].role == "system") {
    const std::string& sys = messages[0].content;
    if (contains(sys, "/no_think")) thinking = false;
    if (first) out += smollm3_header(rstrip(erase_all(erase_all(sys, "/no_think"), "/think")), thinking);
  } else if (first) {
    out += smollm3_header("", thinking);
  }
  const char* empty_think = thinking ? "" : "<think>\n\n</think>\n";
  for (const auto& m : messages) {
    if (m.role == "user") out += "<|im_start|>user\n" + m.content + "<|im_end|>\n";
    if (m.role == "assistant") {
      const size_t b = m.content.find_first_not_of('\n');
      out += "<|im_start|>assistant\n" + std::string(empty_think) + (b == std::string::npos ? "" : m.content.substr(b)) +
             "<|im_end|>\n";
    }
  }
  if (gen) out += "<|im_start|>assistant\n" + std::string(empty_think);
}

void render_gemma(const std::vector<ChatMessage>& messages, bool gen, bool first, std::string& out) {
  if (first) out += "<bos>";
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") {  // opens the user turn that follows
      out += "<start_of_turn>user\n" + trim(m.content) + "\n\n";
      if (i + 1 < messages.size() && messages[i + 1].role == "user") out += trim(messages[++i].content) + "<end_of_turn>\n";
      continue;
    }
    out += "<start_of_turn>" + std::string(m.role == "assistant" ? "model" : m.role) + "\n" + trim(m.content) +
           "<end_of_turn>\n";
  }
  if (gen) out += "<start_of_turn>model\n";
}

}  // namespace

ChatTemplate detect_chat_template(const std::string& tpl) {
  if (tpl.empty()) return {ChatFormat::Raw};
  if (contains(tpl, "<|im_start|>"))
    return contains(tpl, "Reasoning Mode") ? ChatTemplate(ChatFormat::SmolLM3)
                                           : ChatTemplate(ChatFormat::ChatML, find_default_system(tpl));
  if (contains(tpl, "<|start_header_id|>")) return {ChatFormat::Llama3};
  if (contains(tpl, "<start_of_turn>")) return {ChatFormat::Gemma};
  if (contains(tpl, "<|end|>") && contains(tpl, "<|assistant|>")) {
    // Phi-3 puts a newline after each role marker, Phi-4-mini none.
    return {contains(tpl, "|>\n") || contains(tpl, "|>\\n") || contains(tpl, "'|>' + '\\n'") ? ChatFormat::Phi3
                                                                                            : ChatFormat::Phi3Compact};
  }
  std::string head = tpl.substr(0, 80);
  for (char& ch : head)
    if (ch == '\n') ch = ' ';
  fail("unsupported chat template in the model (it starts '{}'); choose a format with --chat-format ({})", head,
       [] {
         std::string names;
         for (ChatFormat f : kFormats) names += std::string(names.empty() ? "" : ", ") + chat_format_name(f);
         return names;
       }());
}

ChatFormat parse_chat_format(const std::string& name) {
  for (ChatFormat f : kFormats)
    if (name == chat_format_name(f)) return f;
  fail("unknown chat format '{}' (expected raw, chatml, llama3, smollm3, gemma, phi3 or phi3-compact)", name);
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::SmolLM3: return "smollm3";
    case ChatFormat::Gemma: return "gemma";
    case ChatFormat::Phi3: return "phi3";
    case ChatFormat::Phi3Compact: return "phi3-compact";
    default: return "raw";
  }
}

std::string chat_turn_end(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML:
    case ChatFormat::SmolLM3: return "<|im_end|>";
    case ChatFormat::Llama3: return "<|eot_id|>";
    case ChatFormat::Gemma: return "<end_of_turn>";
    case ChatFormat::Phi3:
    case ChatFormat::Phi3Compact: return "<|end|>";
    default: return "";
  }
}

bool chat_format_writes_bos(ChatFormat f) { return f == ChatFormat::Llama3 || f == ChatFormat::Gemma; }

std::string chat_turn_separator(ChatFormat f) {
  return f == ChatFormat::ChatML || f == ChatFormat::SmolLM3 || f == ChatFormat::Gemma || f == ChatFormat::Phi3 ? "\n"
                                                                                                               : "";
}

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
    case ChatFormat::SmolLM3:
      render_smollm3(messages, add_generation_prompt, is_first_chunk, out);
      break;
    case ChatFormat::Gemma:
      render_gemma(messages, add_generation_prompt, is_first_chunk, out);
      break;
    case ChatFormat::Phi3:
    case ChatFormat::Phi3Compact: {
      const char* nl = t.format == ChatFormat::Phi3 ? "\n" : "";
      for (const auto& m : messages) out += "<|" + m.role + "|>" + nl + m.content + "<|end|>" + nl;
      if (add_generation_prompt) out += std::string("<|assistant|>") + nl;
      break;
    }
    case ChatFormat::Raw:
      // Plain concatenation: the text is the prompt.
      for (const auto& m : messages) out += m.content;
      break;
  }
  return out;
}

}  // namespace kvforge
