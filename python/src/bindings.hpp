// The binding layer only translates: argument names, defaults, docstrings,
// the GIL, and exceptions. No logic lives here.
#pragma once

#include <torch/extension.h>

namespace py = pybind11;

namespace scalpel::python {
void bind_errors(py::module_& m);
void bind_log(py::module_& m);
void bind_safetensors(py::module_& m);
void bind_config(py::module_& m);
void bind_tokenizer(py::module_& m);
void bind_model(py::module_& m);
void bind_gguf(py::module_& m);
void bind_gguf_convert(py::module_& m);
void bind_gguf_tokenizer(py::module_& m);
void bind_eval(py::module_& m);
void bind_trace(py::module_& m);
void bind_train(py::module_& m);
void bind_directions(py::module_& m);
void bind_sra(py::module_& m);

/// Shares a Python object with C++ code that may copy or destroy it on a
/// thread without the GIL (hooks, callbacks): the GIL is taken to release it.
std::shared_ptr<py::object> gil_safe(py::object obj);

/// json.dumps(obj) — lists of dicts and keyword arguments cross into C++ as JSON.
std::string to_json(const py::handle& obj);
}  // namespace scalpel::python
