// Context: a running sequence. Arrays handed to NumPy are the buffers the
// engine wrote into (owned by a capsule), never copies.
#include "python/context_handle.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "model/logprob.h"
#include "python/bindings.h"
#include "python/numpy_owning.h"

namespace nb = nanobind;

namespace kvforge::python {

Busy::Lock Busy::lock() {
  Lock l(mutex_, std::try_to_lock);
  if (!l.owns_lock()) fail("this {0} is in use by another thread; give each thread its own {0}", what_);
  return l;
}

ContextHandle::ContextHandle(const Model& model, const ContextParams& params) : ctx(model, params) {}

void bind_context(nb::module_& m) {
  nb::class_<ContextHandle>(m, "Context",
                            "One running sequence over a Model: its KV cache, threads and buffers. "
                            "Not shared between threads (one Context per thread).")
      .def(
          "__init__",
          [](ContextHandle* self, const Model& model, int32_t n_ctx, int32_t n_batch, int n_threads,
             const std::string& kv, const std::string& mla_attn) {
            ContextParams p;
            p.n_ctx = n_ctx;
            p.n_batch = n_batch;
            p.n_threads = n_threads;
            p.kv = parse_kv_policy(kv);
            p.mla_attn = parse_mla_attn(mla_attn);
            new (self) ContextHandle(model, p);
          },
          nb::arg("model"), nb::arg("n_ctx") = 0, nb::arg("n_batch") = 256, nb::arg("n_threads") = 0,
          nb::arg("kv") = "full", nb::arg("mla_attn") = "absorbed", nb::keep_alive<1, 2>(),
          "n_ctx: cache capacity in tokens (0 = min(training context, 4096)); n_threads: 0 = physical "
          "cores; kv: a cache policy as spelled by the CLI's --kv (e.g. 'window:256,sinks:4+q8'); "
          "mla_attn: latent (MLA) attention path, as the CLI's --mla-attn (absorbed, naive, auto).")
      .def_prop_ro("n_past", [](ContextHandle& h) { return h.ctx.n_past(); })
      .def_prop_ro("n_ctx", [](ContextHandle& h) { return h.ctx.n_ctx(); })
      .def_prop_ro("n_threads", [](ContextHandle& h) { return h.ctx.n_threads(); })
      .def_prop_ro("model", [](ContextHandle& h) -> const Model& { return h.ctx.model(); },
                   nb::rv_policy::reference_internal)
      .def(
          "reset",
          [](ContextHandle& h) {
            auto l = h.lock();
            h.ctx.reset();
          },
          "Empties the cache (n_past = 0).")
      .def(
          "eval",
          [](ContextHandle& h, const std::vector<TokenId>& tokens, bool all_logits) {
            const size_t n_vocab = (size_t)h.ctx.model().config().n_vocab;
            const size_t rows = all_logits ? tokens.size() : 1;
            std::vector<float> logits(rows * n_vocab);  // [rows][n_vocab]
            {
              auto l = h.lock();  // then let go of the GIL (see Busy)
              nb::gil_scoped_release release;
              h.ctx.eval(tokens.data(), (int32_t)tokens.size(), logits.data(), all_logits);
            }
            if (all_logits) return nb::object(nb::cast(numpy_owning(std::move(logits), {rows, n_vocab})));
            return nb::object(nb::cast(numpy_owning(std::move(logits), {n_vocab})));
          },
          nb::arg("tokens"), nb::arg("all_logits") = false,
          "Appends tokens to the sequence; returns the logits float32 [n_vocab] of the last token, or "
          "[len(tokens), n_vocab] when all_logits.")
      .def(
          "logprobs",
          [](ContextHandle& h, const std::vector<TokenId>& tokens) {
            const int32_t n_vocab = h.ctx.model().config().n_vocab;
            std::vector<float> out(tokens.size() > 0 ? tokens.size() - 1 : 0);  // [n - 1]
            {
              auto l = h.lock();  // then let go of the GIL (see Busy)
              nb::gil_scoped_release release;
              if (tokens.size() < 2) fail("log-probabilities need at least 2 tokens (got {})", tokens.size());
              std::vector<float> logits(tokens.size() * (size_t)n_vocab);  // [n][n_vocab]
              h.ctx.eval(tokens.data(), (int32_t)tokens.size(), logits.data(), true);
              token_logprobs(logits.data(), n_vocab, tokens.data() + 1, (int32_t)out.size(), out.data());
            }
            const size_t n = out.size();
            return numpy_owning(std::move(out), {n});
          },
          nb::arg("tokens"),
          "Appends tokens to the sequence; returns float32 [len(tokens) - 1]: log p(tokens[i + 1] | "
          "everything before) under the model's raw distribution.");
}

}  // namespace kvforge::python
