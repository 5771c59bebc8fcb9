#pragma once
// The kvforge Python extension (kvforge._core): thin nanobind wrappers over
// the C++ API, one file per area. No logic of their own: argument
// conversion, the GIL, and ownership of the arrays handed to NumPy.
#include <nanobind/nanobind.h>

namespace kvforge::python {

void bind_model(nanobind::module_& m);     // Model, ModelConfig, tokenizer calls
void bind_context(nanobind::module_& m);   // Context, eval, log-probs
void bind_batch(nanobind::module_& m);     // BatchContext: several sequences at once
void bind_generate(nanobind::module_& m);  // SamplingParams, GenerateParams, generate
void bind_eval(nanobind::module_& m);      // evaluation tasks (passkey retrieval)
void bind_heads(nanobind::module_& m);     // soft gates, verifiable tasks, head-pattern files

}  // namespace kvforge::python
