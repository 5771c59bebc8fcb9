#pragma once
// Chat prompt formats. The template is detected from the GGUF's
// tokenizer.chat_template string (we do not run Jinja; we recognise the
// families we support) and can be forced by name.
//
// Rendered text holds every marker of the format as text ("<|im_start|>",
// "<|begin_of_text|>", ...): encode it with parse_special = true, and with
// add_bos = false when the format writes its own BOS (Llama 3).
#include <string>
#include <vector>

namespace kvforge {

namespace gguf { class File; }

// ChatML: SmolLM2, Qwen2/2.5/3. SmolLM3: ChatML with its metadata system
// header (no <|im_end|> after it, as its template writes it). Gemma: Gemma 2
// and 3 (<start_of_turn>; the system message opens the first user turn).
// Phi3: <|user|>\n...<|end|>\n (Phi-3); Phi3Compact: the same without the
// newlines (Phi-4-mini).
enum class ChatFormat { Raw, ChatML, Llama3, SmolLM3, Gemma, Phi3, Phi3Compact };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// A format plus what the model's template adds on its own.
struct ChatTemplate {
  ChatFormat format = ChatFormat::Raw;
  // System message the template inserts when the conversation does not start
  // with one (SmolLM2: "You are a helpful AI assistant named SmolLM, trained
  // by Hugging Face"; Qwen2.5 has its own). Empty: none.
  std::string default_system;

  ChatTemplate() = default;
  ChatTemplate(ChatFormat f, std::string sys = {}) : format(f), default_system(std::move(sys)) {}  // NOLINT: implicit on purpose
};

// Raw when the model has no template; throws kvforge::Error naming the
// template when it is one we do not recognise (use --chat-format then).
ChatFormat detect_chat_format(const gguf::File& file);
ChatTemplate detect_chat_template(const gguf::File& file);    // format + default system message
ChatTemplate detect_chat_template(const std::string& jinja);  // from the template source text
ChatFormat parse_chat_format(const std::string& name);        // a chat_format_name(); throws
const char* chat_format_name(ChatFormat f);

// The prompt text for `messages`, ending with the assistant header when
// add_generation_prompt. Rendering messages [0, k) and then [k, n) separately
// (with begin_of_text only at the start) concatenates to rendering [0, n):
// that is what lets multi-turn chat keep its KV cache between turns.
// Precisely: render(m[0,n), g, true) == render(m[0,k), false, true) +
// render(m[k,n), g, false) for every 0 < k <= n; things that belong to the start of
// the conversation (BOS, the default system message) are written only by the
// first chunk, and a chunk never writes anything that depends on later
// messages. (Gemma: a system message and the user message after it must be
// in the same chunk, since they make one turn. SmolLM3: the reasoning mode a
// first chunk's system message picks with "/no_think" applies to that chunk;
// later ones use the template's default, /think.) After generating a reply R to render(m[0,k), true, ...), the
// cache holds exactly render(m[0,k) + {assistant, R}, false, ...) once
// chat_turn_end(f) + chat_turn_separator(f) follow R (for Llama 3, R as the
// template trims it), so the next turn only needs render(m[k+1,n), g, false).
std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        bool is_first_chunk = true);

// Text that ends an assistant turn in this format (stop string), "" for Raw.
std::string chat_turn_end(ChatFormat f);
// Whether the first chunk starts with the BOS text (Llama 3): then encode it
// with add_bos = false.
bool chat_format_writes_bos(ChatFormat f);
// Text the format puts after chat_turn_end before the next message ("\n" for ChatML).
std::string chat_turn_separator(ChatFormat f);

}  // namespace kvforge
