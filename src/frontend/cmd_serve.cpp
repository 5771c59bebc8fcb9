// `kvforge serve`: an OpenAI-compatible HTTP server with continuous batching
// over a paged, prefix-shared KV cache (serve/engine.h, frontend/serve_http.h).
#include <csignal>
#include <filesystem>

#include "frontend/command.h"
#include "frontend/model_options.h"
#include "frontend/run_checks.h"
#include "frontend/serve_http.h"
#include "serve/engine.h"
#include "util/error.h"

namespace kvforge::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  HttpOptions http;
  std::string chat_format;
  int32_t n_parallel = 4;
  int32_t max_queue = 64;
};

// The page's files ship in the repository's web/ folder, next to build/.
std::string default_web_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "web" : (exe.parent_path().parent_path() / "web").string();
}

void on_signal(int) { stop_http_server(); }

void run(ServeOptions& o) {
  if (o.http.port < 0 || o.http.port > 65535) fail("--port must be in 0..65535, got {}", o.http.port);
  auto model = o.model.load_model();
  const serve::EngineParams ep{o.model.context_params(), o.n_parallel, o.max_queue};
  o.http.chat =
      o.chat_format.empty() ? detect_chat_template(model->file()) : ChatTemplate(parse_chat_format(o.chat_format));
  if (o.http.model_name.empty()) o.http.model_name = model->config().name.empty() ? "kvforge" : model->config().name;
  if (o.http.web_dir.empty()) o.http.web_dir = default_web_dir();
  serve::Engine engine(*model, ep);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is an error return, not a signal
  run_http_server(engine, o.http);
}

CommandRegistrar reg(25, [](CLI::App& root) {
  auto o = std::make_shared<ServeOptions>();
  auto* c = root.add_subcommand("serve", "OpenAI-compatible HTTP server (continuous batching, prefix-shared KV cache)");
  o->model.add_to(*c);
  c->add_option("--host", o->http.host, "Address to listen on")->capture_default_str();
  c->add_option("--port", o->http.port, "Port to listen on")->capture_default_str();
  c->add_option("--parallel", o->n_parallel, "Sequences decoded together in one forward pass")
      ->capture_default_str()
      ->check(positive_number());
  c->add_option("--queue", o->max_queue, "Requests that may wait beyond the running ones; more get 429")
      ->capture_default_str()
      ->check(non_negative_number());
  c->add_option("--api-key", o->http.api_key, "Require 'Authorization: Bearer KEY' on /v1/* and /metrics");
  c->add_option("--chat-format", o->chat_format, "Force a chat format: chatml, llama3 or raw (default: from the model)");
  c->add_option("--alias", o->http.model_name, "Model id reported by /v1/models (default: the model's name)");
  c->add_option("--web-dir", o->http.web_dir, "Folder of the chat page served at / (default: the repository's web/)");
  c->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvforge::cli
