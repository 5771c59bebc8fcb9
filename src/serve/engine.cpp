#include "serve/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "model/logprob.h"
#include "model/text_stream.h"
#include "util/error.h"

namespace kvforge::serve {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// log-softmax of the sampled token and of the k most likely ones, under
// the (tempered) logits given.
void logprobs(const float* logits, int n_vocab, TokenId sampled, int k, TokenLogprob& tok,
              std::vector<TokenLogprob>& top) {
  const double lz = log_sum_exp(logits, n_vocab);
  tok = {sampled, (float)(logits[sampled] - lz)};
  std::vector<TokenId> ids(n_vocab);
  for (int i = 0; i < n_vocab; ++i) ids[i] = i;
  k = std::min(k, n_vocab);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](TokenId a, TokenId b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  top.clear();
  for (int i = 0; i < k; ++i) top.push_back({ids[i], (float)(logits[ids[i]] - lz)});
}

}  // namespace

void Job::push(JobEvent e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

bool Job::wait(std::vector<JobEvent>& out, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !events_.empty(); })) return false;
  while (!events_.empty()) {
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return true;
}

Engine::Engine(const Model& model, const EngineParams& params) : model_(model), params_(params) {
  const ModelConfig& c = model.config();
  if (params_.n_parallel <= 0) fail("--parallel must be positive, got {}", params_.n_parallel);
  if (params_.max_queue < 0) fail("the queue limit must not be negative");
  // Every sequence can grow to a full context, plus one block each for a
  // copy-on-write: admission never overcommits the pool.
  auto cache = make_paged_cache(c, params_.context, params_.n_parallel);
  cache_ = cache.get();
  cache_->remove_sequence(0);
  ctx_ = std::make_unique<Context>(model, params_.context, std::move(cache));  // checks kv against the model
  slots_.resize(params_.n_parallel);
  stats_.kv = cache_->stats();
  stats_.kv_bytes = cache_->bytes();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  stop();
  for (int32_t s = 0; s < (int32_t)slots_.size(); ++s)
    if (slots_[s].job) finish(s, "error", "server shutting down");
  for (auto& job : queue_) job->push(JobEvent::end("error", "server shutting down"));
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<Job> Engine::submit(CompletionParams p) {
  if (p.prompt.empty()) fail("the prompt is empty");
  const int32_t n_ctx = params_.context.n_ctx;
  if ((int64_t)p.prompt.size() >= n_ctx)
    fail("the prompt has {} tokens, but the context holds {} (prompt and completion together)", p.prompt.size(),
         n_ctx);
  for (TokenId t : p.prompt)
    if (t < 0 || t >= model_.config().n_vocab) fail("token id {} out of range [0, {})", t, model_.config().n_vocab);
  p.sampling.validate();
  p.max_tokens = std::min<int32_t>(p.max_tokens, n_ctx - (int32_t)p.prompt.size());
  auto job = std::make_shared<Job>();
  job->params_ = std::move(p);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) fail("the server is shutting down");
    if ((int32_t)queue_.size() >= params_.max_queue) {
      ++stats_.rejected;
      return nullptr;
    }
    queue_.push_back(job);
    ++stats_.requests;
    stats_.queued = (int32_t)queue_.size();
  }
  cv_.notify_all();
  return job;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      const bool busy = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return (bool)s.job; });
      if (!busy) cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
    }
    admit();
    step();
  }
}

void Engine::admit() {
  std::lock_guard<std::mutex> lock(mu_);
  const int32_t n_blocks = cache_->stats().blocks;
  while (!queue_.empty()) {
    std::shared_ptr<Job>& job = queue_.front();
    if (job->cancelled()) {
      queue_.pop_front();
      continue;
    }
    const auto free_slot = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.job; });
    if (free_slot == slots_.end()) break;
    const CompletionParams& p = job->params_;
    const int32_t need = cache_->blocks_to_reserve((int32_t)p.prompt.size() + p.max_tokens, params_.context.n_batch);
    if (blocks_reserved_ + need > n_blocks) break;
    const int32_t seq = (int32_t)(free_slot - slots_.begin());
    Slot& s = *free_slot;
    s = Slot{};
    s.job = std::move(job);
    queue_.pop_front();
    s.blocks = need;
    blocks_reserved_ += need;
    s.sampler = std::make_unique<Sampler>(p.sampling);
    for (TokenId t : p.prompt) s.sampler->accept(t);
    s.stream = std::make_unique<TextStream>(p.stop);
    s.logits.resize(model_.config().n_vocab);
    cache_->add_sequence(seq);
    s.n_cached = s.n_prompt_done = cache_->reuse_prefix(seq, p.prompt.data(), (int32_t)p.prompt.size());
    stats_.prompt_tokens += (int64_t)p.prompt.size();
  }
  stats_.queued = (int32_t)queue_.size();
}

void Engine::step() {
  for (int32_t seq = 0; seq < (int32_t)slots_.size(); ++seq)
    if (slots_[seq].job && slots_[seq].job->cancelled()) finish(seq, "cancelled");
  // Decodes first (one token each), then prompt chunks in the room left.
  std::vector<BatchRun> runs;
  std::vector<int32_t> run_seq;
  int32_t budget = params_.context.n_batch;
  for (int32_t seq = 0; seq < (int32_t)slots_.size() && budget > 0; ++seq) {
    Slot& s = slots_[seq];
    if (!s.job || s.pending < 0) continue;
    runs.push_back({cache_->plan_for(seq, 1), &s.pending, s.logits.data()});
    run_seq.push_back(seq);
    --budget;
  }
  for (int32_t seq = 0; seq < (int32_t)slots_.size() && budget > 0; ++seq) {
    Slot& s = slots_[seq];
    if (!s.job) continue;
    const std::vector<TokenId>& prompt = s.job->params_.prompt;
    const int32_t left = (int32_t)prompt.size() - s.n_prompt_done;
    if (left <= 0) continue;
    const int32_t n = std::min(left, budget);
    runs.push_back({cache_->plan_for(seq, n), prompt.data() + s.n_prompt_done, n == left ? s.logits.data() : nullptr});
    run_seq.push_back(seq);
    budget -= n;
  }
  if (runs.empty()) return publish_stats(0, 0, 0);
  const double t0 = now_seconds();
  try {
    ctx_->decode(runs);
  } catch (const Error& e) {
    for (int32_t seq : run_seq) finish(seq, "error", e.what());
    return publish_stats(0, 0, 0);
  }
  const double dt = now_seconds() - t0;
  int32_t generated = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    Slot& s = slots_[run_seq[i]];
    if (s.pending < 0) s.n_prompt_done += runs[i].plan.n_tokens;
    if (runs[i].logits) {
      emit_token(s, run_seq[i]);
      ++generated;
    }
  }
  publish_stats((int32_t)runs.size(), generated, dt);
}

void Engine::publish_stats(int32_t batch, int32_t generated, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (batch > 0) {
    stats_.steps++;
    stats_.last_batch = batch;
    stats_.last_step_seconds = seconds;
    stats_.completion_tokens += generated;
    const double rate = seconds > 0 ? generated / seconds : 0;
    stats_.decode_tokens_per_second = 0.8 * stats_.decode_tokens_per_second + 0.2 * rate;
  }
  stats_.running = (int32_t)std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return (bool)s.job; });
  stats_.kv = cache_->stats();
  stats_.kv_bytes_used = cache_->bytes_used();
}

void Engine::emit_token(Slot& s, int32_t seq) {
  const CompletionParams& p = s.job->params_;
  const Tokenizer& tok = model_.tokenizer();
  const int n_vocab = model_.config().n_vocab;
  const TokenId next = s.sampler->sample(s.logits.data(), n_vocab);
  JobEvent e;
  e.token.id = next;
  if (p.top_logprobs >= 0) {  // before accept(): the penalty the draw saw
    s.sampler->tempered_logits(s.logits.data(), n_vocab, tempered_);
    logprobs(tempered_.data(), n_vocab, next, p.top_logprobs, e.token, e.top);
  }
  s.sampler->accept(next);
  s.pending = -1;
  if (!p.ignore_eos && tok.is_end_of_generation(next)) return finish(seq, "stop");
  ++s.n_generated;
  e.text = s.stream->push(tok.token_to_piece(next));
  s.job->push(std::move(e));
  if (s.stream->stopped()) return finish(seq, "stop");
  if (s.n_generated >= p.max_tokens) return finish(seq, "length");
  s.pending = next;
}

void Engine::finish(int32_t seq, const std::string& reason, const std::string& message) {
  Slot& s = slots_[seq];
  if (reason != "cancelled") {
    const std::string rest = s.stream->flush();
    if (!rest.empty()) s.job->push(JobEvent::text_only(rest));
    JobEvent e = JobEvent::end(reason, message);
    e.prompt_tokens = (int32_t)s.job->params_.prompt.size();
    e.completion_tokens = s.n_generated;
    e.cached_tokens = s.n_cached;
    s.job->push(std::move(e));
  }
  cache_->remove_sequence(seq);
  blocks_reserved_ -= s.blocks;
  s = Slot{};
}

}  // namespace kvforge::serve
