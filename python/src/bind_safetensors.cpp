#include "bindings.hpp"

#include <pybind11/stl.h>

#include "scalpel/io/files.hpp"
#include "scalpel/io/hf_model.hpp"
#include "scalpel/io/pickle.hpp"
#include "scalpel/io/safetensors.hpp"

namespace scalpel::python {

void bind_safetensors(py::module_& m) {
  m.def(
      "write_file_atomic",
      [](const py::object& path, const py::object& data) {
        // str: written as UTF-8; bytes-like (bytes, bytearray, memoryview): as they are.
        const std::string bytes = py::isinstance<py::str>(data)
                                      ? data.cast<std::string>()
                                      : py::bytes(py::module_::import("builtins").attr("bytes")(data)).cast<std::string>();
        write_file_atomic(py::str(path).cast<std::string>(), bytes);
      },
      py::arg("path"), py::arg("data"),
      "Write bytes (or text, as UTF-8) to path atomically: a temporary file beside it, fsynced and renamed over it");
  m.def(
      "read_rows",
      [](const py::object& path, std::optional<size_t> limit) {
        py::list rows;
        for (const auto& text : read_rows(py::str(path).cast<std::string>(),
                                          limit.value_or(std::numeric_limits<size_t>::max())))
          rows.append(from_json(text));
        return rows;
      },
      py::arg("path"), py::arg("limit") = py::none(),
      "The rows of a .json list or a JSONL file (blank and // lines skipped), as Python values");
  m.def(
      "write_directory_atomic",
      [](const py::object& out, const py::object& fill, bool overwrite, const py::object& protect) {
        auto f = wrap_callable<void, const std::string&>(fill);
        write_directory_atomic(py::str(out).cast<std::string>(), overwrite,
                               protect.is_none() ? std::string() : py::str(protect).cast<std::string>(), f);
      },
      py::arg("out"), py::arg("fill"), py::arg("overwrite") = false, py::arg("protect") = py::none(),
      "Write a directory atomically: fill(tmp) writes into a hidden directory beside `out`, which is then renamed "
      "over it; refuses a non-empty `out` unless overwrite, and an `out` that is or contains `protect`");
  py::class_<TensorInfo>(m, "TensorInfo", "One tensor entry of a safetensors header.")
      .def_readonly("name", &TensorInfo::name)
      .def_property_readonly("dtype", [](const TensorInfo& t) { return dtype_name(t.dtype); })
      .def_readonly("shape", &TensorInfo::shape)
      .def_property_readonly("data_offsets", [](const TensorInfo& t) { return py::make_tuple(t.data_begin, t.data_end); })
      .def_property_readonly("nbytes", &TensorInfo::nbytes)
      .def_property_readonly("numel", &TensorInfo::numel)
      .def("__repr__", [](const TensorInfo& t) {
        std::string s = "TensorInfo(" + t.name + ", " + dtype_name(t.dtype) + ", [";
        for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
        return s + "])";
      });

  py::class_<SafetensorsFile>(m, "SafetensorsFile",
                              "A memory-mapped, validated .safetensors file. get() returns zero-copy tensors "
                              "where the data is aligned (copy-on-write: the file is never modified).")
      .def(py::init<const std::string&>(), py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("path", &SafetensorsFile::path)
      .def_property_readonly("file_size", &SafetensorsFile::file_size)
      .def_property_readonly("header_size", &SafetensorsFile::header_size)
      .def_property_readonly("metadata", &SafetensorsFile::metadata)
      .def("keys", &SafetensorsFile::keys, "Tensor names in data-offset order.")
      .def("tensors", &SafetensorsFile::tensors, "TensorInfo of every tensor, in data-offset order.")
      .def("info", &SafetensorsFile::info, py::arg("name"), py::return_value_policy::copy)
      .def("get", &SafetensorsFile::get, py::arg("name"))
      .def("is_zero_copy", &SafetensorsFile::is_zero_copy, py::arg("name"))
      .def("__getitem__", &SafetensorsFile::get, py::arg("name"))
      .def("__contains__", &SafetensorsFile::contains, py::arg("name"))
      .def("__len__", [](const SafetensorsFile& f) { return f.tensors().size(); })
      .def("__repr__", [](const SafetensorsFile& f) {
        return "SafetensorsFile('" + f.path() + "', " + std::to_string(f.tensors().size()) + " tensors)";
      });

  py::class_<SafetensorsCheckpoint>(m, "SafetensorsCheckpoint",
                                    "A single-file or sharded (model.safetensors.index.json) checkpoint.")
      .def_static("open", &SafetensorsCheckpoint::open, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def("keys", &SafetensorsCheckpoint::keys)
      .def("info", &SafetensorsCheckpoint::info, py::arg("name"), py::return_value_policy::copy)
      .def("get", &SafetensorsCheckpoint::get, py::arg("name"))
      .def("files", &SafetensorsCheckpoint::files)
      .def_property_readonly("metadata", &SafetensorsCheckpoint::metadata)
      .def_property_readonly("total_bytes", &SafetensorsCheckpoint::total_bytes)
      .def("__getitem__", &SafetensorsCheckpoint::get, py::arg("name"))
      .def("__contains__", &SafetensorsCheckpoint::contains, py::arg("name"))
      .def("__len__", [](const SafetensorsCheckpoint& c) { return c.keys().size(); });

  py::class_<HFModelDir>(m, "HFModelDir",
                         "A Hugging Face model directory: config, generation config, tokenizer and weights, "
                         "with tied embeddings resolved whichever name the file stores.")
      .def_static("open", &HFModelDir::open, py::arg("directory"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("files", &HFModelDir::files)
      .def_property_readonly("config", &HFModelDir::config)
      .def_property_readonly("generation_config", &HFModelDir::generation_config)
      .def_property_readonly("weights", &HFModelDir::weights, py::return_value_policy::reference_internal)
      .def_property_readonly("has_tokenizer", &HFModelDir::has_tokenizer)
      .def_property_readonly("tokenizer", &HFModelDir::tokenizer, py::return_value_policy::copy)
      .def("keys", &HFModelDir::keys)
      .def("get", &HFModelDir::get, py::arg("name"))
      .def("resolve", &HFModelDir::resolve, py::arg("name"))
      .def("__getitem__", &HFModelDir::get, py::arg("name"))
      .def("__contains__", &HFModelDir::contains, py::arg("name"));

  m.def("load_safetensors", &load_safetensors, py::arg("path"),
        "All tensors of a .safetensors file, index or model directory, as a dict (zero-copy where possible).");
  m.def(
      "save_safetensors",
      [](const std::string& path, const py::dict& tensors, std::optional<std::map<std::string, std::string>> metadata) {
        std::vector<std::pair<std::string, at::Tensor>> items;
        for (auto [k, v] : tensors) items.emplace_back(k.cast<std::string>(), v.cast<at::Tensor>());
        py::gil_scoped_release release;
        save_safetensors(path, items, metadata.value_or(std::map<std::string, std::string>{}));
      },
      py::arg("path"), py::arg("tensors"), py::arg("metadata") = py::none(),
      "Write tensors atomically (temp file + rename); bytes equal safetensors.torch.save_file's.");
  m.def("is_pickle_checkpoint", &is_pickle_checkpoint, py::arg("path"));
  m.def("refuse_pickle", &refuse_pickle, py::arg("path"),
        "Raise FormatError with conversion instructions if path is a pickle checkpoint.");
  m.def("dtype_size", [](const std::string& name) { return dtype_size(dtype_from_name(name)); }, py::arg("dtype"));
}

}  // namespace scalpel::python
