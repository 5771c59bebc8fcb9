#pragma once
// Chat prompt formats. The template is detected from the GGUF's
// tokenizer.chat_template string (we do not run Jinja; we recognise the
// families we support) and can be forced by name.
#include <string>
#include <vector>

namespace kvforge {

namespace gguf { class File; }

enum class ChatFormat { Raw, ChatML, Llama3 };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

ChatFormat detect_chat_format(const gguf::File& file);        // Raw if unknown
ChatFormat parse_chat_format(const std::string& name);        // "raw", "chatml", "llama3"; throws
const char* chat_format_name(ChatFormat f);

// The prompt text for `messages`, ending with the assistant header when
// add_generation_prompt. Rendering messages [0, k) and then [k, n) separately
// (with begin_of_text only at the start) concatenates to rendering [0, n):
// that is what lets multi-turn chat keep its KV cache between turns.
std::string render_chat(ChatFormat f, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        bool is_first_chunk = true);

// Text that ends an assistant turn in this format (stop string), "" for Raw.
std::string chat_turn_end(ChatFormat f);

}  // namespace kvforge
