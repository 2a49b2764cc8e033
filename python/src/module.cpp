#include "bindings.hpp"

#include "scalpel/version.hpp"

PYBIND11_MODULE(_scalpel, m) {
  m.doc() = "scalpel: circuits and surgical edits for transformer language models (C++ core)";
  m.attr("__version__") = scalpel::version();
  scalpel::python::bind_errors(m);
  scalpel::python::bind_log(m);
  scalpel::python::bind_safetensors(m);
  scalpel::python::bind_config(m);
  scalpel::python::bind_tokenizer(m);
  scalpel::python::bind_model(m);
  scalpel::python::bind_gguf(m);
  scalpel::python::bind_gguf_convert(m);
  scalpel::python::bind_gguf_tokenizer(m);
  scalpel::python::bind_eval(m);
  scalpel::python::bind_trace(m);
  scalpel::python::bind_train(m);
  scalpel::python::bind_directions(m);
  scalpel::python::bind_sra(m);
  scalpel::python::bind_interventions(m);
}
