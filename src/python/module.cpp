// kvforge._core: the extension module. kvforge::Error becomes
// kvforge.Error (a RuntimeError) carrying the engine's message.
#include "python/bindings.h"
#include "util/error.h"

namespace nb = nanobind;

NB_MODULE(_core, m) {
  m.doc() = "kvforge engine bindings (use the kvforge package, not this module)";
  nb::exception<kvforge::Error>(m, "Error", PyExc_RuntimeError);
  kvforge::python::bind_model(m);
  kvforge::python::bind_context(m);
  kvforge::python::bind_batch(m);
  kvforge::python::bind_generate(m);
  kvforge::python::bind_eval(m);
  kvforge::python::bind_heads(m);
}
