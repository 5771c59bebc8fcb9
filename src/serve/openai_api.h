#pragma once
// The OpenAI wire format, apart from HTTP: request bodies parsed and checked
// into CompletionRequest (every problem an ApiError with the status and the
// offending field), and the JSON objects of responses, stream chunks and
// errors. The fuzz target tests/fuzz/fuzz_openai_request.cpp drives the parser.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace kvforge::serve {

// An error the client gets as {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(message), status(status), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string param;  // the offending field, if one
  std::string code;   // e.g. "context_length_exceeded", if any
};

// The error object; its type follows from the status ("invalid_request_error" for 400, ...).
nlohmann::json error_body(int status, const std::string& message, const std::string& param = "",
                          const std::string& code = "");

enum class Endpoint { Chat, Completions };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions, as text...
  std::vector<int32_t> prompt_tokens; // ...or as token ids
  bool prompt_is_tokens = false;
  int32_t max_tokens = -1;     // -1: until the end of the context (chat) / 16 (completions)
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repeat_penalty = 1.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int32_t logprobs = -1;       // -1: none; else the number of alternatives per token
  int32_t n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // completions: not supported (400 when true)
  bool ignore_eos = false;     // extension (as llama.cpp's server): generate past end-of-text tokens
};

// Throws ApiError (400) naming the field: malformed JSON or UTF-8, wrong
// types, unknown fields, values out of range.
CompletionRequest parse_completion_request(const std::string& body, Endpoint endpoint);

// JSON dump that replaces invalid UTF-8 (a token's bytes may be a partial
// character) instead of throwing.
std::string dump(const nlohmann::json& j);

}  // namespace kvforge::serve
