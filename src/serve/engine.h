#pragma once
// The serving engine: one thread that runs every admitted request's tokens
// through one Context over a paged, prefix-shared KV cache (continuous
// batching). Each step it
//  - drops cancelled requests (their blocks go back to the pool),
//  - admits queued requests while a sequence slot and enough blocks are free
//    (the prompt reuses whatever cached prefix matches),
//  - builds one batch: one token for every decoding request, then chunks of
//    waiting prompts up to the batch size (a long prompt is prefilled over
//    several steps, never stalling the decodes),
//  - samples the requests whose logits came back and streams their text.
// Requests are submitted from any thread; their results arrive as events on
// the request's own queue (Job), which the HTTP layer drains.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kv/paged_cache.h"
#include "model/context.h"
#include "model/sampler.h"
#include "model/text_stream.h"

namespace kvforge::serve {

struct EngineParams {
  // n_ctx: most tokens of one sequence (prompt + completion; 0 = min(training
  // context, 4096)); n_batch: tokens per forward pass; kv: full-history
  // policies (storage f16, f32, q8, q4).
  ContextParams context;
  int32_t n_parallel = 4;    // sequences decoded together
  int32_t max_queue = 64;    // requests waiting beyond the running ones
};

struct CompletionParams {
  std::vector<TokenId> prompt;
  int32_t max_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;
  int32_t top_logprobs = -1;  // -1: no log-probs; 0..20: the sampled token's and this many alternatives
  bool ignore_eos = false;
};

struct TokenLogprob {
  TokenId id = 0;
  float logprob = 0;  // under the distribution sampled from (Sampler::tempered_logits)
};

// What a request's consumer receives, in order: tokens with their text
// (text may be empty while a UTF-8 character or a possible stop string is
// held back), then one final event.
struct JobEvent {
  std::string text;
  bool final = false;
  // A token event:
  TokenLogprob token;
  std::vector<TokenLogprob> top;  // the top_logprobs most likely tokens
  // The final event:
  std::string finish_reason;  // "stop", "length", "error" (then text is the message)
  int32_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;

  static JobEvent text_only(std::string text) {
    JobEvent e;
    e.text = std::move(text);
    return e;
  }
  static JobEvent end(std::string reason, std::string message = "") {
    JobEvent e;
    e.final = true;
    e.finish_reason = std::move(reason);
    e.text = std::move(message);
    return e;
  }
};

// One request's mailbox, shared by the engine and the consumer.
class Job {
 public:
  // Waits up to timeout_ms for events; moves them into out. Returns false on timeout.
  bool wait(std::vector<JobEvent>& out, int timeout_ms);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  void push(JobEvent e);

  CompletionParams params_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
  std::atomic<bool> cancelled_{false};
};

struct EngineStats {
  int32_t queued = 0, running = 0;
  int64_t requests = 0, rejected = 0, prompt_tokens = 0, completion_tokens = 0;
  int64_t steps = 0;  // forward passes
  double last_step_seconds = 0;
  int32_t last_batch = 0;  // sequences in the last forward pass
  double decode_tokens_per_second = 0;  // generated tokens / busy seconds over the last few steps
  PagedKvStats kv;
  size_t kv_bytes = 0, kv_bytes_used = 0;
};

class Engine {
 public:
  Engine(const Model& model, const EngineParams& params);
  ~Engine();  // stops the loop; pending jobs end with finish_reason "error"

  // Queues a request. Returns nullptr when the queue is full (the caller
  // answers 429). Throws kvforge::Error for a request that can never run
  // (prompt empty or longer than the context).
  std::shared_ptr<Job> submit(CompletionParams params);
  void stop();
  EngineStats stats() const;
  const EngineParams& params() const { return params_; }
  const Model& model() const { return model_; }

 private:
  struct Slot {  // a running request
    std::shared_ptr<Job> job;
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<TextStream> stream;
    int32_t n_prompt_done = 0;  // prompt tokens in the cache
    int32_t n_generated = 0;
    int32_t n_cached = 0;       // prompt tokens reused from the prefix cache
    TokenId pending = -1;       // sampled, not yet evaluated
    std::vector<float> logits;  // [n_vocab]
    int32_t blocks = 0;         // blocks reserved for it (admission)
  };

  void loop();
  void admit();
  void step();
  // Ends a request: its last text and a final event (none when cancelled:
  // nobody listens), its sequence and reserved blocks released.
  void finish(int32_t seq, const std::string& reason, const std::string& message = "");
  void emit_token(Slot& s, int32_t seq);
  // Copies the step's numbers and the cache's state where stats() reads them.
  void publish_stats(int32_t batch, int32_t generated, double seconds);

  const Model& model_;
  EngineParams params_;
  PagedKvCache* cache_ = nullptr;  // owned by ctx_
  std::unique_ptr<Context> ctx_;
  std::vector<Slot> slots_;  // [n_parallel], by sequence id
  std::vector<float> tempered_;  // [n_vocab] scratch: a slot's logits as sampled, for its log-probs
  int32_t blocks_reserved_ = 0;

  mutable std::mutex mu_;  // guards queue_, stats_, stop_
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  EngineStats stats_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvforge::serve
