#include "frontend/serve_http.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "frontend/http_connection.h"
#include "serve/openai_api.h"
#include "util/error.h"

namespace kvforge::cli {

using nlohmann::json;
using serve::ApiError;
using serve::CompletionRequest;
using serve::Endpoint;
using serve::Job;
using serve::JobEvent;

namespace {

std::atomic<bool> g_stop{false};

constexpr int kPollMs = 50;          // how often a waiting handler checks its jobs
constexpr int kHeartbeatMs = 1000;   // a waiting stream writes this often, to notice a gone client
constexpr int kRetryAfterSeconds = 1;

// Both strings are compared in full whatever their contents (no early exit),
// so the time taken says nothing about where a guessed key goes wrong.
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() != b.size();
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    diff |= (unsigned char)((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = "",
                const std::string& code = "") {
  res.status = status;
  if (status == 429 || status == 503) res.set_header("Retry-After", std::to_string(kRetryAfterSeconds));
  res.set_content(serve::dump(serve::error_body(status, message, param, code)), "application/json");
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}{:016x}{:04x}", prefix, rng(), (unsigned)(counter++ & 0xffff));
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One response being assembled from the events of its n jobs.
struct Choice {
  std::shared_ptr<Job> job;
  std::string text;
  json logprobs_content = json::array();  // chat
  json lp_tokens = json::array(), lp_token_logprobs = json::array(), lp_top = json::array(),
       lp_offsets = json::array();  // completions
  bool done = false;
  JobEvent final;
};

class Api {
 public:
  Api(serve::Engine& engine, const HttpOptions& o) : engine_(engine), o_(o) {}

  void completions(const httplib::Request& req, httplib::Response& res, Endpoint ep) {
    CompletionRequest r;
    std::vector<std::shared_ptr<Job>> jobs;
    try {
      r = serve::parse_completion_request(req.body, ep);
      serve::CompletionParams p = to_params(r);
      const uint64_t seed = r.seed ? *r.seed : std::random_device{}();
      for (int i = 0; i < r.n; ++i) {
        p.sampling.seed = seed + (uint64_t)i;
        auto job = engine_.submit(p);
        if (!job) {
          for (auto& j : jobs) j->cancel();
          return send_error(res, 429, "the request queue is full; retry later");
        }
        jobs.push_back(std::move(job));
      }
    } catch (const ApiError& e) {
      for (auto& j : jobs) j->cancel();
      return send_error(res, e.status, e.what(), e.param, e.code);
    } catch (const Error& e) {
      for (auto& j : jobs) j->cancel();
      return send_error(res, 400, e.what());
    }
    auto state = std::make_shared<std::vector<Choice>>();
    for (auto& j : jobs) state->emplace_back().job = j;
    const std::string id = random_id(ep == Endpoint::Chat ? "chatcmpl-" : "cmpl-");
    const int64_t created = unix_time();
    if (!r.stream) return whole_response(req, res, *state, r, id, created);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, state, r, id, created, sent_roles = false](size_t, httplib::DataSink& sink) mutable {
          return stream_step(*state, r, id, created, sent_roles, sink);
        },
        [state](bool ok) {
          if (!ok)
            for (Choice& c : *state) c.job->cancel();
        });
  }

  void metrics(httplib::Response& res) {
    const serve::EngineStats s = engine_.stats();
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help, double v) {
      out += fmt::format("# HELP kvforge_{0} {1}\n# TYPE kvforge_{0} {2}\nkvforge_{0} {3}\n", name, help, type, v);
    };
    metric("requests_total", "counter", "Requests accepted into the queue", (double)s.requests);
    metric("requests_rejected_total", "counter", "Requests refused because the queue was full", (double)s.rejected);
    metric("prompt_tokens_total", "counter", "Prompt tokens of admitted requests", (double)s.prompt_tokens);
    metric("completion_tokens_total", "counter", "Generated tokens", (double)s.completion_tokens);
    metric("prefix_cache_tokens_total", "counter", "Prompt tokens reused from the prefix cache",
           (double)s.kv.prefix_tokens_reused);
    metric("forward_passes_total", "counter", "Forward passes (engine steps)", (double)s.steps);
    metric("decode_tokens_per_second", "gauge", "Generated tokens per second (moving average)",
           s.decode_tokens_per_second);
    metric("queue_depth", "gauge", "Requests waiting for a sequence slot", s.queued);
    metric("running_sequences", "gauge", "Requests being processed", s.running);
    metric("batch_size", "gauge", "Sequences in the last forward pass", s.last_batch);
    metric("kv_blocks_total", "gauge", "KV-cache blocks in the pool", s.kv.blocks);
    metric("kv_blocks_used", "gauge", "KV-cache blocks held by running requests", s.kv.blocks_used);
    metric("kv_blocks_cached", "gauge", "KV-cache blocks kept for their prefix only", s.kv.blocks_cached);
    metric("kv_blocks_free", "gauge", "KV-cache blocks free",
           s.kv.blocks - s.kv.blocks_used - s.kv.blocks_cached);
    metric("kv_blocks_shared", "gauge", "KV-cache blocks held by several requests", s.kv.blocks_shared);
    metric("kv_copy_on_write_total", "counter", "Shared blocks copied before a write", (double)s.kv.copies);
    metric("kv_evictions_total", "counter", "Cached prefixes evicted for new rows", (double)s.kv.evictions);
    metric("kv_bytes", "gauge", "KV-cache bytes allocated", (double)s.kv_bytes);
    metric("kv_bytes_used", "gauge", "KV-cache bytes holding tokens", (double)s.kv_bytes_used);
    res.set_content(out, "text/plain; version=0.0.4");
  }

 private:
  serve::CompletionParams to_params(const CompletionRequest& r) const {
    const Tokenizer& tok = engine_.model().tokenizer();
    serve::CompletionParams p;
    if (r.endpoint == Endpoint::Chat) {
      p.prompt = tok.encode(render_chat(o_.chat, r.messages, true), !chat_format_writes_bos(o_.chat.format), true);
      const std::string end = chat_turn_end(o_.chat.format);
      if (!end.empty()) p.stop.push_back(end);
    } else {
      p.prompt = r.prompt_is_tokens ? r.prompt_tokens : tok.encode(r.prompt, true, true);
    }
    const int32_t n_ctx = engine_.params().context.n_ctx;
    if (p.prompt.empty()) throw ApiError(400, "the prompt is empty", "prompt");
    if ((int64_t)p.prompt.size() >= n_ctx)
      throw ApiError(400,
                     fmt::format("the prompt has {} tokens; this server's context holds {} (prompt and completion)",
                                 p.prompt.size(), n_ctx),
                     r.endpoint == Endpoint::Chat ? "messages" : "prompt", "context_length_exceeded");
    const int32_t room = n_ctx - (int32_t)p.prompt.size();
    if (r.max_tokens > room)
      throw ApiError(400,
                     fmt::format("max_tokens {} + the prompt's {} tokens exceed the context of {} tokens",
                                 r.max_tokens, p.prompt.size(), n_ctx),
                     "max_tokens", "context_length_exceeded");
    if (r.max_tokens == 0) throw ApiError(400, "'max_tokens' must be at least 1", "max_tokens");
    p.max_tokens = r.max_tokens < 0 ? room : r.max_tokens;
    p.sampling.temperature = r.temperature;
    p.sampling.top_p = r.top_p;
    p.sampling.top_k = r.top_k;
    p.sampling.min_p = r.min_p;
    p.sampling.repeat_penalty = r.repeat_penalty;
    p.stop.insert(p.stop.end(), r.stop.begin(), r.stop.end());
    p.top_logprobs = r.logprobs;
    p.ignore_eos = r.ignore_eos;
    return p;
  }

  json token_json(TokenId id, float logprob) const {
    const std::string piece = engine_.model().tokenizer().token_to_piece(id);
    json bytes = json::array();
    for (unsigned char c : piece) bytes.push_back(c);
    return {{"token", piece}, {"logprob", logprob}, {"bytes", bytes}};
  }

  // Adds a token event's log-probs to a choice (both endpoints' shapes).
  void add_logprobs(Choice& c, const JobEvent& e, const CompletionRequest& r) const {
    if (r.logprobs < 0 || e.final) return;
    if (r.endpoint == Endpoint::Chat) {
      json t = token_json(e.token.id, e.token.logprob);
      json top = json::array();
      for (const auto& a : e.top) top.push_back(token_json(a.id, a.logprob));
      t["top_logprobs"] = top;
      c.logprobs_content.push_back(t);
    } else {
      const auto& tok = engine_.model().tokenizer();
      c.lp_offsets.push_back(c.text.size());
      c.lp_tokens.push_back(tok.token_to_piece(e.token.id));
      c.lp_token_logprobs.push_back(e.token.logprob);
      json top = json::object();
      for (const auto& a : e.top) top[tok.token_to_piece(a.id)] = a.logprob;
      c.lp_top.push_back(top);
    }
  }

  json logprobs_json(const Choice& c, const CompletionRequest& r) const {
    if (r.logprobs < 0) return nullptr;
    if (r.endpoint == Endpoint::Chat) return {{"content", c.logprobs_content}};
    return {{"tokens", c.lp_tokens}, {"token_logprobs", c.lp_token_logprobs}, {"top_logprobs", c.lp_top},
            {"text_offset", c.lp_offsets}};
  }

  json usage_json(const std::vector<Choice>& cs) const {
    int64_t completion = 0;
    for (const Choice& c : cs) completion += c.final.completion_tokens;
    const int64_t prompt = cs.empty() ? 0 : cs[0].final.prompt_tokens;
    return {{"prompt_tokens", prompt},
            {"completion_tokens", completion},
            {"total_tokens", prompt + completion},
            {"prompt_tokens_details", {{"cached_tokens", cs.empty() ? 0 : cs[0].final.cached_tokens}}}};
  }

  static std::string finish_reason(const JobEvent& f) { return f.finish_reason == "error" ? "stop" : f.finish_reason; }

  // Collects whatever events are there; false when nothing came within kPollMs.
  static bool poll(std::vector<Choice>& cs, std::vector<std::pair<size_t, JobEvent>>& got) {
    std::vector<JobEvent> evs;
    for (size_t i = 0; i < cs.size(); ++i) {
      if (cs[i].done) continue;
      evs.clear();
      cs[i].job->wait(evs, cs.size() == 1 ? kPollMs : kPollMs / (int)cs.size() + 1);
      for (JobEvent& e : evs) got.emplace_back(i, std::move(e));
    }
    return !got.empty();
  }

  bool stream_step(std::vector<Choice>& cs, const CompletionRequest& r, const std::string& id, int64_t created,
                   bool& sent_roles, httplib::DataSink& sink) {
    const bool chat = r.endpoint == Endpoint::Chat;
    auto send = [&](const json& j) {
      const std::string s = "data: " + serve::dump(j) + "\n\n";
      return sink.write(s.data(), s.size());
    };
    auto chunk = [&](size_t i, json delta_or_text, json logprobs, json finish) {
      json choice = {{"index", i}, {"logprobs", logprobs}, {"finish_reason", finish}};
      if (chat) choice["delta"] = std::move(delta_or_text);
      else choice["text"] = std::move(delta_or_text);
      return json{{"id", id},
                  {"object", chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", created},
                  {"model", o_.model_name},
                  {"choices", json::array({choice})}};
    };
    if (chat && !sent_roles) {
      sent_roles = true;
      for (size_t i = 0; i < cs.size(); ++i)
        if (!send(chunk(i, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr))) return false;
    }
    std::vector<std::pair<size_t, JobEvent>> got;
    for (auto t0 = std::chrono::steady_clock::now(); !poll(cs, got);) {
      if (g_stop) return false;
      if (std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(kHeartbeatMs)) {
        static const std::string beat = ": keep-alive\n\n";  // an SSE comment: tells us whether the client is still there
        return sink.write(beat.data(), beat.size());
      }
    }
    for (auto& [i, e] : got) {
      Choice& c = cs[i];
      if (e.final) {
        c.done = true;
        c.final = e;
        if (e.finish_reason == "error") {
          if (!send(serve::error_body(500, e.text))) return false;
          continue;
        }
        if (!send(chunk(i, chat ? json::object() : json(""), nullptr, finish_reason(e)))) return false;
        continue;
      }
      Choice tmp;
      add_logprobs(tmp, e, r);
      json lp = logprobs_json(tmp, r);
      if (!send(chunk(i, chat ? json{{"content", e.text}} : json(e.text), lp, nullptr))) return false;
    }
    if (std::all_of(cs.begin(), cs.end(), [](const Choice& c) { return c.done; })) {
      if (r.include_usage) {
        json u = {{"id", id},         {"object", chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", created}, {"model", o_.model_name},
                  {"choices", json::array()}, {"usage", usage_json(cs)}};
        if (!send(u)) return false;
      }
      static const std::string done = "data: [DONE]\n\n";
      sink.write(done.data(), done.size());
      sink.done();
    }
    return true;
  }

  // A non-streamed response: the handler waits until every choice is done,
  // so the status says how generation went (500 when it failed, 503 when the
  // server stops meanwhile). A client that goes away meanwhile cancels its jobs.
  void whole_response(const httplib::Request& req, httplib::Response& res, std::vector<Choice>& cs,
                      const CompletionRequest& r, const std::string& id, int64_t created) {
    const ConnectionWatch watch(req);
    auto cancel = [&] {
      for (Choice& c : cs) c.job->cancel();
    };
    std::vector<std::pair<size_t, JobEvent>> got;
    while (!std::all_of(cs.begin(), cs.end(), [](const Choice& c) { return c.done; })) {
      got.clear();
      poll(cs, got);
      for (auto& [i, e] : got) {
        Choice& c = cs[i];
        if (e.final) {
          c.done = true;
          c.final = std::move(e);
          continue;
        }
        add_logprobs(c, e, r);
        c.text += e.text;
      }
      if (g_stop) {
        cancel();
        return send_error(res, 503, "the server is shutting down");
      }
      if (watch.gone()) return cancel();  // nobody reads the answer
    }
    for (const Choice& c : cs)
      if (c.final.finish_reason == "error") return send_error(res, 500, c.final.text);
    const bool chat = r.endpoint == Endpoint::Chat;
    json choices = json::array();
    for (size_t i = 0; i < cs.size(); ++i) {
      json ch = {{"index", i}, {"logprobs", logprobs_json(cs[i], r)}, {"finish_reason", finish_reason(cs[i].final)}};
      if (chat) ch["message"] = {{"role", "assistant"}, {"content", cs[i].text}};
      else ch["text"] = cs[i].text;
      choices.push_back(ch);
    }
    const json body = {{"id", id},           {"object", chat ? "chat.completion" : "text_completion"},
                       {"created", created}, {"model", o_.model_name},
                       {"choices", choices}, {"usage", usage_json(cs)}};
    res.set_content(serve::dump(body), "application/json");
  }

  serve::Engine& engine_;
  const HttpOptions& o_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

void stop_http_server() { g_stop = true; }

void run_http_server(serve::Engine& engine, const HttpOptions& o) {
  httplib::Server svr;
  Api api(engine, o);
  const serve::EngineParams& ep = engine.params();
  const int threads = o.n_http_threads > 0 ? o.n_http_threads : ep.n_parallel + ep.max_queue + 8;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool((size_t)threads); };
  svr.set_payload_max_length(8 << 20);
  svr.set_read_timeout(30, 0);

  svr.set_pre_routing_handler([&o](const httplib::Request& req, httplib::Response& res) {
    const bool open = req.path == "/" || req.path == "/health" || req.path.rfind("/web/", 0) == 0;
    if (o.api_key.empty() || open) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.rfind(prefix, 0) == 0 && constant_time_equal(auth.substr(prefix.size()), o.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, 401, "invalid or missing API key (send 'Authorization: Bearer KEY')", "", "invalid_api_key");
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.Post("/v1/chat/completions",
           [&](const httplib::Request& req, httplib::Response& res) { api.completions(req, res, Endpoint::Chat); });
  svr.Post("/v1/completions",
           [&](const httplib::Request& req, httplib::Response& res) { api.completions(req, res, Endpoint::Completions); });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    const json m = {{"id", o.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "kvforge"}};
    res.set_content(serve::dump({{"object", "list"}, {"data", json::array({m})}}), "application/json");
  });
  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) { api.metrics(res); });
  svr.Get("/", [&](const httplib::Request&, httplib::Response& res) {
    const std::string page = read_file(o.web_dir + "/index.html");
    if (page.empty()) return send_error(res, 404, "the chat page is not there: " + o.web_dir + "/index.html (--web-dir)");
    res.set_content(page, "text/html; charset=utf-8");
  });
  svr.Get(R"(/web/([a-z_]+\.(js|css)))", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string body = read_file(o.web_dir + "/" + req.matches[1].str());
    if (body.empty()) return send_error(res, 404, "no such file: " + req.path);
    res.set_content(body, req.matches[2].str() == "js" ? "text/javascript" : "text/css");
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error
    if (res.status == 404) return send_error(res, 404, "no such endpoint: " + req.method + " " + req.path);
    if (res.status == 413) return send_error(res, 413, "the request body is too large");
    send_error(res, res.status, "bad request");
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, what);
  });

  if (!svr.bind_to_port(o.host, o.port)) fail("cannot listen on {}:{} (in use, or not an address of this machine)", o.host, o.port);
  std::thread watcher([&] {
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    svr.stop();
  });
  std::fprintf(stderr, "[kvforge] listening on http://%s:%d (%d sequences in parallel, queue %d, context %d, kv %s)\n",
               o.host.c_str(), o.port, ep.n_parallel, ep.max_queue, ep.context.n_ctx, ep.context.kv.describe().c_str());
  std::fflush(stderr);
  svr.listen_after_bind();
  g_stop = true;
  watcher.join();
  std::fprintf(stderr, "[kvforge] shut down\n");
}

}  // namespace kvforge::cli
