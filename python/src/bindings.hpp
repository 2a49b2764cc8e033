// The binding layer only translates: argument names, defaults, docstrings,
// the GIL, and exceptions. No logic lives here.
#pragma once

#include <torch/extension.h>

#include <functional>
#include <type_traits>

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
void bind_interventions(py::module_& m);

/// Shares a Python object with C++ code that may copy or destroy it on a
/// thread without the GIL (hooks, callbacks): the GIL is taken to release it.
std::shared_ptr<py::object> gil_safe(py::object obj);

/// json.dumps(obj) — lists of dicts and keyword arguments cross into C++ as JSON.
std::string to_json(const py::handle& obj);
/// json.loads(text) — results C++ gives as JSON text cross into Python as dicts.
py::object from_json(const std::string& text);

/// A Python callable as a C++ function that C++ may call, copy or destroy
/// without the GIL: each call takes the GIL and casts the result to R (a bool
/// result is the result's truth value).
template <class R, class... Args>
std::function<R(Args...)> wrap_callable(py::object fn) {
  auto holder = gil_safe(std::move(fn));
  return [holder](Args... args) -> R {
    py::gil_scoped_acquire gil;
    py::object out = (*holder)(args...);
    if constexpr (std::is_same_v<R, bool>) return PyObject_IsTrue(out.ptr()) == 1;
    else if constexpr (!std::is_void_v<R>) return out.cast<R>();
  };
}
}  // namespace scalpel::python
