#include "serve/openai_api.h"

#include <cmath>
#include <set>

namespace kvforge::serve {

using nlohmann::json;

namespace {

std::string default_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "server_overloaded";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw ApiError(400, "'" + field + "' " + what, field);
}

// Field readers: the JSON type is checked, the value range by the caller.
bool get_bool(const json& v, const std::string& f) {
  if (!v.is_boolean()) bad(f, "must be a boolean");
  return v.get<bool>();
}
double get_number(const json& v, const std::string& f) {
  if (!v.is_number()) bad(f, "must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d)) bad(f, "must be finite");
  return d;
}
int64_t get_int(const json& v, const std::string& f) {
  if (!v.is_number_integer()) bad(f, "must be an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > (uint64_t)INT64_MAX) bad(f, "is too large");
  return v.get<int64_t>();
}
const std::string& get_string(const json& v, const std::string& f) {
  if (!v.is_string()) bad(f, "must be a string");
  return v.get_ref<const std::string&>();
}
int32_t get_int_in(const json& v, const std::string& f, int64_t lo, int64_t hi) {
  const int64_t i = get_int(v, f);
  if (i < lo || i > hi) bad(f, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return (int32_t)i;
}
float get_number_in(const json& v, const std::string& f, double lo, double hi) {
  const double d = get_number(v, f);
  if (d < lo || d > hi) bad(f, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return (float)d;
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts.
std::string content_text(const json& c, const std::string& f) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return "";
  if (!c.is_array()) bad(f, "must be a string or an array of text parts");
  std::string out;
  for (const json& part : c) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text"))
      bad(f, "parts must be {\"type\": \"text\", \"text\": ...} (only text is supported)");
    out += get_string(part["text"], f + ".text");
  }
  return out;
}

std::vector<ChatMessage> parse_messages(const json& v) {
  if (!v.is_array() || v.empty()) bad("messages", "must be a non-empty array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string f = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object() || !m.contains("role")) bad(f, "must be an object with a role");
    const std::string& role = get_string(m["role"], f + ".role");
    if (role != "system" && role != "user" && role != "assistant" && role != "developer")
      bad(f + ".role", "must be system, user, assistant or developer");
    for (const auto& [key, _] : m.items())
      if (key != "role" && key != "content" && key != "name") bad(f + "." + key, "is not supported");
    out.push_back({role == "developer" ? "system" : role, m.contains("content") ? content_text(m["content"], f + ".content") : ""});
  }
  return out;
}

std::vector<std::string> parse_stop(const json& v) {
  if (v.is_null()) return {};
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array() || v.size() > 4) bad("stop", "must be a string or an array of at most 4 strings");
  std::vector<std::string> out;
  for (const json& s : v) out.push_back(get_string(s, "stop"));
  return out;
}

}  // namespace

json error_body(int status, const std::string& message, const std::string& param, const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", default_type(status)},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

CompletionRequest parse_completion_request(const std::string& body, Endpoint endpoint) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
  const bool chat = endpoint == Endpoint::Chat;
  CompletionRequest r;
  r.endpoint = endpoint;
  r.max_tokens = chat ? -1 : 16;
  // Fields accepted without effect: they only change billing, logging or
  // penalties we keep at OpenAI's neutral defaults (checked below).
  bool chat_logprobs = false;
  int32_t top_logprobs = -1;
  static const std::set<std::string> ignored = {"user", "metadata", "store", "service_tier", "parallel_tool_calls"};
  for (const auto& [key, v] : j.items()) {
    if (key == "model") r.model = get_string(v, key);
    else if (key == "messages" && chat) r.messages = parse_messages(v);
    else if (key == "prompt" && !chat) {
      if (v.is_string()) r.prompt = v.get<std::string>();
      else if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
        r.prompt_is_tokens = true;
        for (const json& t : v) r.prompt_tokens.push_back(get_int_in(t, "prompt", 0, INT32_MAX));
      } else if (v.is_array() && v.size() == 1 && v[0].is_string()) r.prompt = v[0].get<std::string>();
      else bad("prompt", "must be a string, an array of one string, or an array of token ids");
    } else if (key == "max_tokens" || key == "max_completion_tokens") {
      if (!v.is_null()) r.max_tokens = get_int_in(v, key, 0, 1 << 24);
    } else if (key == "temperature") r.temperature = get_number_in(v, key, 0, 2);
    else if (key == "top_p") r.top_p = get_number_in(v, key, 1e-6, 1);
    else if (key == "top_k") r.top_k = get_int_in(v, key, 0, 1 << 20);
    else if (key == "min_p") r.min_p = get_number_in(v, key, 0, 1);
    else if (key == "repeat_penalty") r.repeat_penalty = get_number_in(v, key, 1e-3, 100);
    else if (key == "seed") {
      if (!v.is_null()) r.seed = (uint64_t)get_int(v, key);
    } else if (key == "stop") r.stop = parse_stop(v);
    else if (key == "logprobs") {
      if (v.is_null()) continue;
      if (chat) chat_logprobs = get_bool(v, key);
      else r.logprobs = get_int_in(v, key, 0, 5);
    } else if (key == "top_logprobs" && chat) {
      if (!v.is_null()) top_logprobs = get_int_in(v, key, 0, 20);
    } else if (key == "n") r.n = get_int_in(v, key, 1, 16);
    else if (key == "stream") r.stream = !v.is_null() && get_bool(v, key);
    else if (key == "stream_options") {
      if (v.is_null()) continue;
      if (!v.is_object()) bad(key, "must be an object");
      for (const auto& [k2, v2] : v.items()) {
        if (k2 != "include_usage") bad("stream_options." + k2, "is not supported");
        r.include_usage = get_bool(v2, "stream_options.include_usage");
      }
    } else if (key == "echo" && !chat) r.echo = get_bool(v, key);
    else if (key == "ignore_eos") r.ignore_eos = get_bool(v, key);
    else if (key == "frequency_penalty" || key == "presence_penalty") {
      if (!v.is_null() && get_number(v, key) != 0) bad(key, "is not supported (only 0); use repeat_penalty");
    } else if (ignored.count(key)) continue;
    else bad(key, "is not a supported field");
  }
  if (chat && r.messages.empty()) bad("messages", "is required");
  if (!chat && !j.contains("prompt")) bad("prompt", "is required");
  if (top_logprobs >= 0 && !chat_logprobs) bad("top_logprobs", "needs logprobs: true");
  if (chat_logprobs) r.logprobs = std::max(top_logprobs, 0);
  if (r.echo) bad("echo", "is not supported");
  if (r.include_usage && !r.stream) bad("stream_options", "is only allowed with stream: true");
  return r;
}

}  // namespace kvforge::serve
