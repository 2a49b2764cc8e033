#include "bindings.hpp"

#include "scalpel/log.hpp"

namespace scalpel::python {

void bind_log(py::module_& m) {
  m.def("set_log_level", &scalpel::set_log_level, py::arg("level"),
        "Set scalpel's log level: trace, debug, info, warn, error or off (also SCALPEL_LOG_LEVEL).");
  m.def("get_log_level", &scalpel::get_log_level, "The current log level.");
  m.def("log_message", &scalpel::log_message, py::arg("level"), py::arg("message"),
        "Log through scalpel's logger (shares the level switch).");
  m.def(
      "set_progress_callback",
      [](py::object cb) {
        if (cb.is_none()) {
          scalpel::set_progress_callback(nullptr);
          return;
        }
        // Called from C++ threads that may not hold the GIL.
        scalpel::set_progress_callback(wrap_callable<void, const std::string&, int64_t, int64_t>(std::move(cb)));
      },
      py::arg("callback"),
      "Route progress events of long jobs to callback(label, done, total) instead of the log; None restores the log.");

  py::class_<Progress>(m, "Progress",
                       "Progress of a long job, reported like the C++ core's own (log line or progress callback).")
      .def(py::init<std::string, int64_t>(), py::arg("label"), py::arg("total"))
      .def("update", &Progress::update, py::arg("n") = 1)
      .def("finish", &Progress::finish)
      .def_property_readonly("done", &Progress::done)
      .def("__enter__", [](Progress& p) -> Progress& { return p; }, py::return_value_policy::reference)
      .def("__exit__", [](Progress& p, py::args) { p.finish(); });
}

}  // namespace scalpel::python
