// BatchContext: several sequences over one Model in a multi-sequence (paged)
// KV cache; decode() runs tokens of several sequences in one forward pass
// (Context::decode), each run's logits bit-identical to evaluating it alone.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "kv/kv_policy.h"
#include "python/bindings.h"
#include "python/context_handle.h"
#include "python/numpy_owning.h"

namespace nb = nanobind;

namespace kvforge::python {

namespace {

using Run = std::pair<int32_t, std::vector<TokenId>>;  // (sequence, tokens)

}  // namespace

BatchHandle::BatchHandle(const Model& model, ContextParams params, int32_t n_seqs, int32_t n_blocks)
    : BatchHandle(model, params, make_paged_cache(model.config(), params, n_seqs, n_blocks)) {}

BatchHandle::BatchHandle(const Model& model, const ContextParams& params, std::unique_ptr<PagedKvCache> c)
    : cache(c.get()), ctx(model, params, std::move(c)) {}

void bind_batch(nb::module_& m) {
  nb::class_<BatchHandle>(m, "BatchContext",
                          "Several sequences over a Model in one multi-sequence (paged) KV cache, decoded "
                          "together. Sequence 0 exists from the start (and after reset). Not shared between "
                          "threads.")
      .def(
          "__init__",
          [](BatchHandle* self, const Model& model, int32_t n_seqs, int32_t n_ctx, int32_t n_blocks, int32_t n_batch,
             int n_threads, const std::string& kv) {
            ContextParams p;
            p.n_ctx = n_ctx;
            p.n_batch = n_batch;
            p.n_threads = n_threads;
            p.kv = parse_kv_policy(kv);
            new (self) BatchHandle(model, p, n_seqs, n_blocks);
          },
          nb::arg("model"), nb::arg("n_seqs"), nb::arg("n_ctx") = 0, nb::arg("n_blocks") = 0,
          nb::arg("n_batch") = 256, nb::arg("n_threads") = 0, nb::arg("kv") = "full", nb::keep_alive<1, 2>(),
          "n_seqs: sequence ids 0 .. n_seqs-1; n_ctx: most tokens of one sequence (0 = min(training context, "
          "4096)); n_blocks: cache blocks of 16 tokens shared by all sequences (0 = enough for every sequence "
          "to reach n_ctx); n_batch: most tokens of one decode() in all; kv: a full-history policy as spelled by "
          "the CLI's --kv (e.g. 'full+q8').")
      .def_prop_ro("n_ctx", [](BatchHandle& h) { return h.ctx.n_ctx(); })
      .def_prop_ro("n_threads", [](BatchHandle& h) { return h.ctx.n_threads(); })
      .def_prop_ro("model", [](BatchHandle& h) -> const Model& { return h.ctx.model(); },
                   nb::rv_policy::reference_internal)
      .def(
          "add_sequence",
          [](BatchHandle& h, int32_t seq) {
            auto l = h.lock();
            h.cache->add_sequence(seq);
          },
          nb::arg("seq"), "Adds an empty sequence.")
      .def(
          "remove_sequence",
          [](BatchHandle& h, int32_t seq) {
            auto l = h.lock();
            h.cache->remove_sequence(seq);
          },
          nb::arg("seq"), "Removes a sequence and releases its blocks.")
      .def(
          "has_sequence",
          [](BatchHandle& h, int32_t seq) {
            auto l = h.lock();
            return h.cache->has_sequence(seq);
          },
          nb::arg("seq"))
      .def(
          "fork",
          [](BatchHandle& h, int32_t src, int32_t dst) {
            auto l = h.lock();
            h.cache->fork(src, dst);
          },
          nb::arg("src"), nb::arg("dst"), "A new sequence dst sharing all of src's cache (copied on write).")
      .def(
          "truncate",
          [](BatchHandle& h, int32_t seq, int32_t n_keep) {
            auto l = h.lock();
            h.cache->truncate(seq, n_keep);
          },
          nb::arg("seq"), nb::arg("n_keep"), "Keeps the first n_keep tokens of a sequence.")
      .def(
          "n_past",
          [](BatchHandle& h, int32_t seq) {
            auto l = h.lock();
            return h.cache->n_past_of(seq);
          },
          nb::arg("seq"), "Tokens a sequence holds.")
      .def(
          "reset",
          [](BatchHandle& h) {
            auto l = h.lock();
            h.ctx.reset();
          },
          "Removes every sequence, then adds sequence 0.")
      .def(
          "decode",
          [](BatchHandle& h, const std::vector<Run>& runs, bool all_logits) {
            const size_t n_vocab = (size_t)h.ctx.model().config().n_vocab;
            std::vector<std::vector<float>> logits(runs.size());  // each [n_vocab] or [n_tokens][n_vocab]
            {
              auto l = h.lock();  // then let go of the GIL (see Busy)
              nb::gil_scoped_release release;
              std::vector<BatchRun> batch;
              for (size_t r = 0; r < runs.size(); ++r) {
                const auto& [seq, tokens] = runs[r];
                logits[r].resize((all_logits ? tokens.size() : 1) * n_vocab);
                batch.push_back({h.cache->plan_for(seq, (int32_t)tokens.size()), tokens.data(), logits[r].data(),
                                 all_logits});
              }
              h.ctx.decode(batch);
            }
            nb::list out;
            for (size_t r = 0; r < runs.size(); ++r) {
              if (all_logits)
                out.append(numpy_owning(std::move(logits[r]), {runs[r].second.size(), n_vocab}));
              else
                out.append(numpy_owning(std::move(logits[r]), {n_vocab}));
            }
            return out;
          },
          nb::arg("runs"), nb::arg("all_logits") = false,
          "Appends tokens to several sequences in one forward pass: runs [(seq, tokens), ...], one run per "
          "sequence, at most n_batch tokens in all. Returns one float32 array per run: the logits [n_vocab] of "
          "its last token, or [len(tokens), n_vocab] when all_logits; each bit-identical to evaluating the run "
          "alone.");
}

}  // namespace kvforge::python
