#pragma once
// The HTTP side of `kvforge serve`: OpenAI-compatible endpoints over the
// serving engine (serve/engine.h), with cpp-httplib. Requests are parsed by
// serve/openai_api.h; this file turns them into engine jobs and the jobs'
// events into JSON or server-sent events.
#include <memory>
#include <string>

#include "serve/engine.h"
#include "tokenizer/chat_template.h"

namespace kvforge::cli {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;     // empty: no authentication
  std::string model_name;  // the id /v1/models reports
  std::string web_dir;     // the chat page's files (GET /)
  ChatTemplate chat;
  int n_http_threads = 0;  // 0: enough for every running and queued request
};

// Serves until stop_http_server() (from a signal handler) or a fatal error.
// Prints "listening on http://HOST:PORT" to stderr once it accepts.
void run_http_server(serve::Engine& engine, const HttpOptions& options);
// Async-signal-safe: makes run_http_server return (graceful shutdown).
void stop_http_server();

}  // namespace kvforge::cli
