// What the gate trainers need of the engine: soft gates on a Context, the
// verifiable tasks of `kvforge eval tasks`, and the head-pattern files.
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "eval/tasks.h"
#include "kv/head_pattern.h"
#include "python/bindings.h"
#include "python/context_handle.h"
#include "python/numpy_owning.h"

namespace nb = nanobind;

namespace kvforge::python {

using Gates = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

void bind_heads(nb::module_& m) {
  m.def(
      "set_gates",
      [](ContextHandle& h, Gates alpha, int32_t sinks, int32_t recent) {
        const ModelConfig& c = h.ctx.model().config();
        if (alpha.shape(0) != (size_t)c.n_layer || alpha.shape(1) != (size_t)c.n_kv_head)
          fail("gates of shape [{}, {}] do not fit this model ([n_layer, n_kv_head] = [{}, {}])", alpha.shape(0),
               alpha.shape(1), c.n_layer, c.n_kv_head);
        std::vector<float> a(alpha.data(), alpha.data() + alpha.size());  // [n_layer][n_kv_head]
        auto l = h.lock();
        h.ctx.set_gates(a, sinks, recent);
      },
      nb::arg("context"), nb::arg("alpha"), nb::arg("sinks"), nb::arg("recent"),
      "Soft gates: every head attends alpha * full + (1 - alpha) * (first `sinks` + last `recent` tokens); "
      "alpha float32 [n_layer, n_kv_head] in [0, 1]; needs a full-history cache. From the next eval on.");

  nb::class_<TaskPrompt>(m, "TaskCase", "A verifiable task case (src/eval/tasks.h)")
      .def_prop_ro("task", [](const TaskPrompt& p) { return p.c.task; })
      .def_prop_ro("expected", [](const TaskPrompt& p) { return p.c.expected; }, "the exact answer")
      .def_prop_ro("prompt", [](const TaskPrompt& p) { return p.c.prompt; }, "the text given to the model")
      .def_prop_ro("tokens", [](const TaskPrompt& p) { return p.tokens; }, "its token ids");
  m.def("task_names", &task_names, "The generated tasks of `kvforge eval tasks`.");
  m.def("default_task_names", &default_task_names, "The tasks `kvforge eval tasks` runs by default.");
  m.def("task_case", &task_prompt, nb::arg("model"), nb::arg("task"), nb::arg("seed"), nb::arg("length"),
        nb::arg("trial"), nb::arg("chat") = true, "The case of `kvforge eval tasks` for (task, seed, length, trial).");
  m.def("task_answer_correct", &task_answer_correct, nb::arg("answer"), nb::arg("expected"),
        nb::arg("gsm8k") = false, "The tasks' verifier (exact answer; gsm8k: the final number).");
  m.def(
      "read_gsm8k_jsonl",
      [](const std::string& path) {
        std::vector<std::pair<std::string, std::string>> out;
        for (const JsonlCase& c : read_gsm8k_jsonl(path)) out.emplace_back(c.question, c.expected);
        return out;
      },
      nb::arg("path"), "[(question, expected final answer)] of a GSM8K-format JSONL file.");
  m.def("question_prompt", &question_prompt, nb::arg("model"), nb::arg("question"), nb::arg("chat") = true,
        "The tokens of a question as `kvforge eval tasks --jsonl` gives it to the model.");

  m.def(
      "read_head_gates",
      [](const std::string& path) {
        HeadGates g = read_head_gates(path);
        return numpy_owning(std::move(g.alpha), {(size_t)g.n_layer, (size_t)g.n_kv_head});
      },
      nb::arg("path"), "A gate file (adapter_weights.tsv / full_attention_heads.tsv) as float64 [n_layer, n_kv_head], "
                       "clipped to [0, 1] as the research code loads it.");
  m.def(
      "write_head_gates",
      [](const std::string& path, nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu> alpha) {
        HeadGates g;
        g.n_layer = (int)alpha.shape(0);
        g.n_kv_head = (int)alpha.shape(1);
        g.alpha.assign(alpha.data(), alpha.data() + alpha.size());
        write_head_gates(path, g);
      },
      nb::arg("path"), nb::arg("alpha"), "Writes float64 [n_layer, n_kv_head] as np.savetxt(path, alpha, delimiter='\\t').");
}

}  // namespace kvforge::python
