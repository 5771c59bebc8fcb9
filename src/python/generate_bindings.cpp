// Sampling and generation. on_text is called with the GIL held, from the
// thread that called generate; the forward passes run without it.
#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "model/generate.h"
#include "python/bindings.h"
#include "python/context_handle.h"

namespace nb = nanobind;

namespace kvforge::python {

void bind_generate(nb::module_& m) {
  nb::class_<SamplingParams>(m, "SamplingParams", "Sampler settings (see src/model/sampler.h for the order of steps)")
      .def(nb::init<>())
      .def_rw("temperature", &SamplingParams::temperature, "0 = greedy")
      .def_rw("top_k", &SamplingParams::top_k, "0 = off")
      .def_rw("top_p", &SamplingParams::top_p, "1 = off; in (0, 1]")
      .def_rw("min_p", &SamplingParams::min_p, "0 = off; in [0, 1]")
      .def_rw("repeat_penalty", &SamplingParams::repeat_penalty, "1 = off; > 0")
      .def_rw("repeat_last_n", &SamplingParams::repeat_last_n, "accepted tokens the penalty looks at")
      .def_rw("seed", &SamplingParams::seed)
      .def("validate", &SamplingParams::validate, "Raises kvforge.Error naming a bad field.");

  nb::class_<GenerateParams>(m, "GenerateParams", "Generation settings")
      .def(nb::init<>())
      .def_rw("n_predict", &GenerateParams::n_predict, "max new tokens (-1 = until EOS or context full)")
      .def_rw("sampling", &GenerateParams::sampling)
      .def_rw("stop", &GenerateParams::stop, "stop strings (not emitted)")
      .def_rw("ignore_eos", &GenerateParams::ignore_eos)
      .def_rw("use_cache", &GenerateParams::use_cache, "False: recompute the whole text every step")
      .def_rw("context_shift", &GenerateParams::context_shift, "shift a full context instead of stopping")
      .def_rw("n_keep", &GenerateParams::n_keep, "tokens a context shift keeps at the start");

  nb::class_<GenerateResult>(m, "GenerateResult")
      .def_ro("tokens", &GenerateResult::tokens, "generated ids (end-of-generation token excluded)")
      .def_prop_ro(
          "logprobs",
          [](nb::handle_t<GenerateResult> self) {
            const auto& r = nb::cast<const GenerateResult&>(self);
            // A view on the result's own vector; the array keeps the result alive.
            return nb::ndarray<nb::numpy, const float, nb::ndim<1>>(r.logprobs.data(), {r.logprobs.size()}, self);
          },
          "float32 [len(tokens)]: log p(token) under the model's raw distribution (a view)")
      .def_ro("stop_reason", &GenerateResult::stop_reason, "'eos', 'stop string', 'length' or 'context full'")
      .def_ro("n_prompt", &GenerateResult::n_prompt)
      .def_ro("prefill_seconds", &GenerateResult::prefill_seconds)
      .def_ro("decode_seconds", &GenerateResult::decode_seconds)
      .def_ro("n_decoded", &GenerateResult::n_decoded)
      .def_ro("n_shifts", &GenerateResult::n_shifts);

  m.def(
      "generate",
      [](ContextHandle& h, const std::vector<TokenId>& prompt, const GenerateParams& params,
         std::function<void(const std::string&)> on_text) {
        auto l = h.lock();  // then let go of the GIL (see Busy)
        nb::gil_scoped_release release;
        return generate(h.ctx, prompt, params, [&](const std::string& text) {
          if (!on_text) return;
          nb::gil_scoped_acquire acquire;
          on_text(text);
        });
      },
      nb::arg("context"), nb::arg("prompt"), nb::arg("params"), nb::arg("on_text").none() = nb::none(),
      "Evaluates prompt, then samples up to params.n_predict tokens, appending all of them to the context. "
      "on_text(str) receives complete UTF-8 text as it is produced.");
}

}  // namespace kvforge::python
