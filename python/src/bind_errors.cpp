#include "bindings.hpp"

#include "scalpel/errors.hpp"

namespace scalpel::python {

std::shared_ptr<py::object> gil_safe(py::object obj) {
  return std::shared_ptr<py::object>(new py::object(std::move(obj)), [](py::object* o) {
    py::gil_scoped_acquire gil;
    delete o;
  });
}

std::string to_json(const py::handle& obj) {
  // Never destroyed: a static py::object would be released after the
  // interpreter has finalized (without the GIL), aborting the process at exit.
  static py::object* dumps = new py::object(py::module_::import("json").attr("dumps"));
  return (*dumps)(obj, py::arg("ensure_ascii") = false).cast<std::string>();
}

py::object from_json(const std::string& text) {
  static py::object* loads = new py::object(py::module_::import("json").attr("loads"));  // never destroyed, as above
  return (*loads)(text);
}

void bind_errors(py::module_& m) {
  // Python classes for scalpel's exception types. UnknownNameError is both a
  // KeyError and a ValueError, so either `except` form catches it.
  static PyObject* format_error = PyErr_NewExceptionWithDoc(
      "scalpel.FormatError", "A malformed or unsupported file (names the file, field and offset).",
      PyExc_RuntimeError, nullptr);
  static PyObject* unsupported = PyErr_NewExceptionWithDoc(
      "scalpel.UnsupportedError", "Well-formed input asking for something scalpel does not implement.",
      PyExc_ValueError, nullptr);
  py::tuple bases = py::make_tuple(py::handle(PyExc_KeyError), py::handle(PyExc_ValueError));
  static PyObject* unknown_name = PyErr_NewExceptionWithDoc(
      "scalpel.UnknownNameError", "An unknown name (hook point, tensor, token); lists the nearest valid ones.",
      bases.ptr(), nullptr);
  m.attr("FormatError") = py::handle(format_error);
  m.attr("UnsupportedError") = py::handle(unsupported);
  m.attr("UnknownNameError") = py::handle(unknown_name);

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const scalpel::UnknownName& e) {
      PyErr_SetString(unknown_name, e.what());
    } catch (const scalpel::Unsupported& e) {
      PyErr_SetString(unsupported, e.what());
    } catch (const scalpel::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const scalpel::FileNotFound& e) {
      PyErr_SetString(PyExc_FileNotFoundError, e.what());
    } catch (const scalpel::FormatError& e) {
      PyErr_SetString(format_error, e.what());
    } catch (const scalpel::NumericalError& e) {
      PyErr_SetString(PyExc_FloatingPointError, e.what());
    }
  });
}

}  // namespace scalpel::python
