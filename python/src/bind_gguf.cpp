// Bindings: GGUF files (metadata, tensor infos, dequantization) and the ggml type table.
#include "bindings.hpp"

#include <pybind11/stl.h>

#include "scalpel/errors.hpp"
#include "scalpel/io/gguf.hpp"

namespace scalpel::python {

namespace {

// GGUF strings are UTF-8 by the spec; bytes that are not decode as surrogate
// escapes instead of raising, so every file can be inspected.
py::str to_str(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

// A ggml type given as its name ("Q4_K") or its number (12).
GGMLType type_arg(const py::handle& t) {
  if (py::isinstance<py::str>(t)) return ggml_type_from_name(t.cast<std::string>());
  if (py::isinstance<py::int_>(t) && !py::isinstance<py::bool_>(t)) return static_cast<GGMLType>(t.cast<uint32_t>());
  throw InvalidArgument("ggml type: expected a name such as \"Q4_K\" or a type number, got a " +
                        py::str(py::type::of(t).attr("__name__")).cast<std::string>());
}

std::string fspath(const py::handle& path) {
  return py::str(py::module_::import("os").attr("fspath")(path)).cast<std::string>();
}

// The value as int / float / bool / str, or a list of those (nested for arrays of arrays).
py::object to_python(const GGUFValue& v) {
  switch (v.type()) {
    case GGUFValueType::STRING: return to_str(v.as_string());
    case GGUFValueType::BOOL: return py::bool_(v.as_bool());
    case GGUFValueType::FLOAT32:
    case GGUFValueType::FLOAT64: return py::float_(v.as_float());
    case GGUFValueType::UINT8:
    case GGUFValueType::UINT16:
    case GGUFValueType::UINT32:
    case GGUFValueType::UINT64: return py::int_(v.as_uint());
    case GGUFValueType::ARRAY: break;
    default: return py::int_(v.as_int());
  }
  const size_t n = v.size();
  py::list out(n);
  switch (v.array_type()) {
    case GGUFValueType::STRING: {
      const auto items = v.as_string_array();
      for (size_t i = 0; i < n; ++i) out[i] = to_str(items[i]);
      break;
    }
    case GGUFValueType::FLOAT32:
    case GGUFValueType::FLOAT64: {
      const auto items = v.as_float_array();
      for (size_t i = 0; i < n; ++i) out[i] = py::float_(items[i]);
      break;
    }
    case GGUFValueType::BOOL: {
      const auto items = v.as_bool_array();
      for (size_t i = 0; i < n; ++i) out[i] = py::bool_(items[i]);
      break;
    }
    case GGUFValueType::UINT64:
    case GGUFValueType::ARRAY:
      for (size_t i = 0; i < n; ++i) out[i] = to_python(v.at(i));  // UINT64 may exceed int64
      break;
    default: {
      const auto items = v.as_int_array();
      for (size_t i = 0; i < n; ++i) out[i] = py::int_(items[i]);
    }
  }
  return std::move(out);
}

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

void bind_gguf(py::module_& m) {
  py::class_<GGUFValue>(m, "GGUFValue",
                        "One GGUF metadata value with its GGUF type (GGUFFile.value(key)); .value is the native "
                        "Python value that GGUFFile.get(key) returns.")
      .def_property_readonly("type", [](const GGUFValue& v) { return gguf_value_type_name(v.type()); })
      .def_property_readonly("array_type", [](const GGUFValue& v) { return gguf_value_type_name(v.array_type()); })
      .def_property_readonly("is_array", &GGUFValue::is_array)
      .def_property_readonly("value", &to_python)
      .def("size", &GGUFValue::size)
      .def("__len__", &GGUFValue::size)
      .def("as_int", &GGUFValue::as_int)
      .def("as_uint", &GGUFValue::as_uint)
      .def("as_float", &GGUFValue::as_float)
      .def("as_bool", &GGUFValue::as_bool)
      .def("as_string", [](const GGUFValue& v) { return to_str(v.as_string()); })
      .def("as_int_array", &GGUFValue::as_int_array)
      .def("as_float_array", &GGUFValue::as_float_array)
      .def("as_string_array", [](const GGUFValue& v) { return to_python(v); })
      .def("as_bool_array", &GGUFValue::as_bool_array)
      .def("at", &GGUFValue::at, py::arg("i"))
      .def("__getitem__", &GGUFValue::at, py::arg("i"))
      .def("to_json", &GGUFValue::to_json, py::arg("max_array") = 0,
           "Compact JSON text; arrays longer than max_array (when > 0) are abbreviated.")
      .def("__repr__", [](const GGUFValue& v) {
        return "GGUFValue(" + gguf_value_type_name(v.type()) + ", " + v.to_json(8) + ")";
      });

  py::class_<GGUFTensorInfo>(m, "GGUFTensorInfo", "One tensor info of a GGUF file.")
      .def_readonly("name", &GGUFTensorInfo::name)
      .def_property_readonly("type", [](const GGUFTensorInfo& t) { return ggml_type_name(t.type); })
      .def_property_readonly("type_id", [](const GGUFTensorInfo& t) { return static_cast<uint32_t>(t.type); })
      .def_readonly("dims", &GGUFTensorInfo::dims, "ggml order: dims[0] is the contiguous dimension.")
      .def_property_readonly("shape", &GGUFTensorInfo::shape, "PyTorch order (dims reversed).")
      .def_readonly("offset", &GGUFTensorInfo::offset, "Relative to the data section.")
      .def_readonly("nbytes", &GGUFTensorInfo::nbytes)
      .def_property_readonly("numel", &GGUFTensorInfo::numel)
      .def("__repr__", [](const GGUFTensorInfo& t) {
        return "GGUFTensorInfo(" + t.name + ", " + ggml_type_name(t.type) + ", dims=" + dims_text(t.dims) + ")";
      });

  py::class_<GGUFFile>(m, "GGUFFile",
                       "A memory-mapped GGUF file (v2/v3), validated when opened: metadata, tensor infos, and "
                       "dequantization to float32 / bfloat16 / float16.")
      .def(py::init([](const py::object& path) {
             std::string p = fspath(path);
             py::gil_scoped_release release;
             return GGUFFile(p);
           }),
           py::arg("path"))
      .def_static(
          "from_parts",
          [](const py::iterable& parts) {
            std::vector<std::string> paths;
            for (auto p : parts) paths.push_back(fspath(p));
            py::gil_scoped_release release;
            return GGUFFile::from_parts(paths);
          },
          py::arg("parts"), "A GGUF split into chunk files (in order), read into memory as one file.")
      .def_property_readonly("path", &GGUFFile::path)
      .def_property_readonly("version", &GGUFFile::version)
      .def_property_readonly("file_size", &GGUFFile::file_size)
      .def_property_readonly("alignment", &GGUFFile::alignment)
      .def_property_readonly("data_offset", &GGUFFile::data_offset)
      .def(
          "keys",
          [](const GGUFFile& f) {
            py::list out;
            for (const auto& k : f.keys()) out.append(to_str(k));
            return out;
          },
          "Metadata keys in file order.")
      .def("__contains__", &GGUFFile::contains, py::arg("key"))
      .def("contains", &GGUFFile::contains, py::arg("key"))
      .def(
          "get", [](const GGUFFile& f, const std::string& key) { return to_python(f.get(key)); }, py::arg("key"),
          "The metadata value as int / float / bool / str / list (KeyError listing the nearest keys if absent).")
      .def("value", &GGUFFile::get, py::arg("key"), "The metadata value as a GGUFValue (with its GGUF type).")
      .def("__getitem__", [](const GGUFFile& f, const std::string& key) { return to_python(f.get(key)); },
           py::arg("key"))
      .def(
          "metadata",
          [](const GGUFFile& f) {
            py::dict out;
            for (const auto& k : f.keys()) out[to_str(k)] = to_python(f.get(k));
            return out;
          },
          "Every metadata entry, {key: native value}, in file order.")
      .def("architecture", &GGUFFile::architecture)
      .def("tensors", &GGUFFile::tensors, "Tensor infos in file order.")
      .def("tensor_info", &GGUFFile::tensor_info, py::arg("name"), py::return_value_policy::copy)
      .def("has_tensor", &GGUFFile::has_tensor, py::arg("name"))
      .def(
          "tensor_data",
          [](const GGUFFile& f, const std::string& name) {
            const auto& t = f.tensor_info(name);
            auto keep = std::make_shared<GGUFFile>(f);  // the tensor keeps the file's memory alive
            return at::from_blob(const_cast<uint8_t*>(f.tensor_data(name)), {static_cast<int64_t>(t.nbytes)},
                                 [keep](void*) mutable { keep.reset(); }, at::TensorOptions().dtype(at::kByte));
          },
          py::arg("name"), "A zero-copy uint8 view of the tensor's bytes (treat it as read-only).")
      .def("dequantize", &GGUFFile::dequantize, py::arg("name"), py::arg("dtype") = at::kFloat,
           py::call_guard<py::gil_scoped_release>(),
           "The tensor as float32 / bfloat16 / float16 with shape tensor_info(name).shape.")
      .def("raw", &GGUFFile::raw, py::arg("name"), "A copy of the tensor's raw bytes (uint8).")
      .def("__len__", [](const GGUFFile& f) { return f.tensors().size(); })
      .def("__repr__", [](const GGUFFile& f) {
        return "GGUFFile('" + f.path() + "', v" + std::to_string(f.version()) + ", " +
               std::to_string(f.keys().size()) + " keys, " + std::to_string(f.tensors().size()) + " tensors)";
      });

  m.def(
      "gguf_value_type_name", [](uint32_t t) { return gguf_value_type_name(static_cast<GGUFValueType>(t)); },
      py::arg("type"), "The name of a GGUF metadata value type number (8 -> 'STRING').");
  m.def(
      "ggml_type_name", [](const py::object& t) { return ggml_type_name(type_arg(t)); }, py::arg("type"),
      "The name of a ggml type given by number or name.");
  m.def(
      "ggml_type_from_name", [](const std::string& name) { return static_cast<uint32_t>(ggml_type_from_name(name)); },
      py::arg("name"), "The number of a ggml type.");
  m.def(
      "ggml_block_size", [](const py::object& t) { return ggml_block_size(type_arg(t)); }, py::arg("type"),
      "Elements per block of a ggml type.");
  m.def(
      "ggml_type_size", [](const py::object& t) { return ggml_type_size(type_arg(t)); }, py::arg("type"),
      "Bytes per block of a ggml type.");
  m.def(
      "ggml_can_dequantize", [](const py::object& t) { return ggml_can_dequantize(type_arg(t)); }, py::arg("type"),
      "Whether scalpel dequantizes this ggml type.");
  m.def(
      "dequantize_blocks",
      [](const py::object& t, const at::Tensor& raw) {
        GGMLType type = type_arg(t);
        py::gil_scoped_release release;
        return dequantize_blocks(type, raw);
      },
      py::arg("type"), py::arg("raw_bytes"), "Raw blocks (a uint8 tensor) of a ggml type to a float32 tensor.");
  m.def(
      "dequantize_row",
      [](const py::object& t, const at::Tensor& raw, int64_t n) {
        GGMLType type = type_arg(t);
        const int64_t block = ggml_block_size(type), size = ggml_type_size(type);
        if (raw.scalar_type() != at::kByte || !raw.is_contiguous() || !raw.device().is_cpu() || n < 0 ||
            n % block != 0 || raw.numel() < n / block * size)
          throw InvalidArgument("dequantize_row: expected a contiguous CPU uint8 tensor holding n / " +
                                std::to_string(block) + " blocks of " + std::to_string(size) + " bytes and n a " +
                                "multiple of " + std::to_string(block) + ", got " + std::to_string(raw.numel()) +
                                " bytes and n = " + std::to_string(n));
        auto out = at::empty({n}, at::TensorOptions().dtype(at::kFloat));
        py::gil_scoped_release release;
        dequantize_row(type, raw.data_ptr<uint8_t>(), out.data_ptr<float>(), n);
        return out;
      },
      py::arg("type"), py::arg("raw_bytes"), py::arg("n"),
      "The first n elements of raw blocks (a uint8 tensor) as a float32 tensor.");
  m.def(
      "write_gguf",
      [](const py::object& path, const py::iterable& metadata, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
         bool overwrite) {
        std::vector<std::pair<std::string, GGUFWriteValue>> meta;
        for (auto item : metadata) {
          auto t = py::reinterpret_borrow<py::sequence>(item);
          if (t.size() != 3) throw InvalidArgument("write_gguf metadata: expected (key, type name, value) triples");
          GGUFWriteValue v;
          const auto type = t[1].cast<std::string>();
          bool found = false;
          for (uint32_t k = 0; k <= 12 && !found; ++k)
            if (gguf_value_type_name(static_cast<GGUFValueType>(k)) == type) v.type = static_cast<GGUFValueType>(k), found = true;
          if (!found)
            throw InvalidArgument("write_gguf metadata \"" + t[0].cast<std::string>() + "\": expected a type name such as "
                                  "STRING, UINT32, INT32, FLOAT32, BOOL, got \"" + type + "\"");
          if (v.type == GGUFValueType::STRING) v.text = t[2].cast<std::string>();
          else if (v.type == GGUFValueType::FLOAT32 || v.type == GGUFValueType::FLOAT64) v.real = t[2].cast<double>();
          else v.integer = t[2].cast<int64_t>();
          meta.emplace_back(t[0].cast<std::string>(), std::move(v));
        }
        const auto p = fspath(path);
        py::gil_scoped_release release;
        write_gguf(p, meta, tensors, overwrite);
      },
      py::arg("path"), py::arg("metadata"), py::arg("tensors"), py::arg("overwrite") = false,
      "Write a GGUF (v3) of float32 tensors [(name, tensor)], metadata [(key, type name, value)], atomically");
}

}  // namespace scalpel::python
