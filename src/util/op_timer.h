#pragma once
// Wall-clock time per kind of op of the forward pass (`kvforge bench
// --op-times`). Off unless someone hands a timer to a Context: every timed
// place holds an OpScope built from a pointer that is null when off, so the
// cost then is one branch per op (never per element). Not thread-safe: only
// the thread that drives the forward pass (the pool's caller) records.
//
// Scopes nest: an inner scope's time (and the pool's wait, which the thread
// pool records as an inner scope of its own) is taken out of the enclosing
// one, so the kinds add up to the wall time of the timed region.
#include <array>
#include <chrono>
#include <cstdint>

namespace kvforge {

enum class Op : int {
  Embed,          // token (and position) embeddings, RoPE angles
  Norm,           // block norms (pre and post), the final norm
  QkvMatmul,      // Q, K and V projections (one hand-off)
  QkNorm,         // per-head Q/K norms
  Rope,           // RoPE on Q and K
  KvWrite,        // K/V rows into the cache
  Attention,      // scores, softmax, weighted V (GQA), or a whole MLA block
  OMatmul,        // attention output projection
  Residual,       // residual adds
  GateUpMatmul,   // gate and up projections (one hand-off, with the GLU product), or up (GELU)
  DownMatmul,     // down projection
  Moe,            // a whole MoE feed-forward block
  OutputMatmul,   // output head
  Quantize,       // activations converted for the matmuls (inside them)
  PoolWait,       // thread pool: hand-off and wait for the other threads' tasks
  kCount
};

const char* op_name(Op op);

struct OpTimer {
  std::array<int64_t, (int)Op::kCount> ns{};     // exclusive time per kind
  std::array<int64_t, (int)Op::kCount> calls{};  // scopes (PoolWait: pool jobs)
  int64_t nested = 0;  // time already attributed; an enclosing scope subtracts its growth

  static int64_t now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void reset() { *this = OpTimer{}; }
  // Records dt of a scope whose inner scopes grew `nested` by `inner`.
  void add(Op op, int64_t dt, int64_t inner) {
    ns[(int)op] += dt - inner;
    ++calls[(int)op];
    nested += dt - inner;
  }
};

// Times its own lifetime as `op` when t is not null.
class OpScope {
 public:
  OpScope(OpTimer* t, Op op) : t_(t), op_(op) {
    if (t_) t0_ = OpTimer::now(), n0_ = t_->nested;
  }
  ~OpScope() {
    if (t_) t_->add(op_, OpTimer::now() - t0_, t_->nested - n0_);
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  OpTimer* t_;
  Op op_;
  int64_t t0_ = 0, n0_ = 0;
};

}  // namespace kvforge
