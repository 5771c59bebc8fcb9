// Evaluation tasks the trainers draw their data from (passkey retrieval).
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "eval/needle.h"
#include "python/bindings.h"

namespace nb = nanobind;

namespace kvforge::python {

void bind_eval(nb::module_& m) {
  nb::class_<NeedlePrompt>(m, "NeedleCase", "A passkey-retrieval case (src/eval/needle.h)")
      .def_prop_ro("key", [](const NeedlePrompt& p) { return p.c.key; }, "the five-digit pass key")
      .def_prop_ro("prompt", [](const NeedlePrompt& p) { return p.c.prompt; }, "the text given to the model")
      .def_prop_ro("tokens", [](const NeedlePrompt& p) { return p.tokens; }, "its token ids")
      .def_prop_ro("needle_index", [](const NeedlePrompt& p) { return p.c.needle_index; })
      .def_prop_ro("n_sentences", [](const NeedlePrompt& p) { return p.c.n_sentences; });
  m.def(
      "needle_case",
      [](const Model& model, uint64_t seed, int32_t length, double depth, int32_t trial, bool chat) {
        return needle_prompt(model, NeedleCaseSpec{seed, length, depth, trial}, chat);
      },
      nb::arg("model"), nb::arg("seed"), nb::arg("length"), nb::arg("depth") = 0.5, nb::arg("trial") = 0,
      nb::arg("chat") = true,
      "The passkey case of `kvforge eval needle` for (seed, length in tokens, depth in [0, 1], trial), in the "
      "model's chat template (chat) with the answer started as 'The pass key is'.");
  m.def("needle_answer_correct", &needle_answer_correct, nb::arg("answer"), nb::arg("key"),
        "Whether an answer contains the key (the needle task's verifier).");
}

}  // namespace kvforge::python
