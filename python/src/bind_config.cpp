#include "bindings.hpp"

#include <pybind11/stl.h>

#include "scalpel/io/hf_config.hpp"

namespace scalpel::python {

void bind_config(py::module_& m) {
  py::class_<RopeScaling>(m, "RopeScaling")
      .def_readonly("rope_type", &RopeScaling::rope_type)
      .def_readonly("factor", &RopeScaling::factor)
      .def_readonly("low_freq_factor", &RopeScaling::low_freq_factor)
      .def_readonly("high_freq_factor", &RopeScaling::high_freq_factor)
      .def_readonly("original_max_position_embeddings", &RopeScaling::original_max_position_embeddings)
      .def_readonly("beta_fast", &RopeScaling::beta_fast)
      .def_readonly("beta_slow", &RopeScaling::beta_slow);

  py::class_<HFConfig>(m, "HFConfig", "config.json of a Hugging Face model, with each family's key spellings unified.")
      .def_static("from_file", &HFConfig::from_file, py::arg("path"))
      .def_static("from_json", &HFConfig::from_json, py::arg("text"), py::arg("source") = "config.json")
      .def_readonly("architecture", &HFConfig::architecture)
      .def_readonly("model_type", &HFConfig::model_type)
      .def_readonly("vocab_size", &HFConfig::vocab_size)
      .def_readonly("hidden_size", &HFConfig::hidden_size)
      .def_readonly("intermediate_size", &HFConfig::intermediate_size)
      .def_readonly("num_hidden_layers", &HFConfig::num_hidden_layers)
      .def_readonly("num_attention_heads", &HFConfig::num_attention_heads)
      .def_readonly("num_key_value_heads", &HFConfig::num_key_value_heads)
      .def_readonly("head_dim", &HFConfig::head_dim)
      .def_readonly("max_position_embeddings", &HFConfig::max_position_embeddings)
      .def_readonly("norm_eps", &HFConfig::norm_eps)
      .def_readonly("hidden_act", &HFConfig::hidden_act)
      .def_readonly("rope_theta", &HFConfig::rope_theta)
      .def_readonly("partial_rotary_factor", &HFConfig::partial_rotary_factor)
      .def_readonly("rope_scaling", &HFConfig::rope_scaling)
      .def_readonly("tie_word_embeddings", &HFConfig::tie_word_embeddings)
      .def_readonly("attention_bias", &HFConfig::attention_bias)
      .def_readonly("mlp_bias", &HFConfig::mlp_bias)
      .def_readonly("sliding_window", &HFConfig::sliding_window)
      .def_readonly("torch_dtype", &HFConfig::torch_dtype)
      .def_readonly("bos_token_id", &HFConfig::bos_token_id)
      .def_readonly("eos_token_ids", &HFConfig::eos_token_ids)
      .def_readonly("pad_token_id", &HFConfig::pad_token_id)
      .def_readonly("raw_json", &HFConfig::raw_json)
      .def_readonly("source", &HFConfig::source)
      .def("has", &HFConfig::has, py::arg("key"))
      .def("get_int", &HFConfig::get_int, py::arg("key"), py::arg("default"))
      .def("get_double", &HFConfig::get_double, py::arg("key"), py::arg("default"))
      .def("get_bool", &HFConfig::get_bool, py::arg("key"), py::arg("default"))
      .def("get_string", &HFConfig::get_string, py::arg("key"), py::arg("default"))
      .def("__repr__", [](const HFConfig& c) {
        return "HFConfig(" + c.architecture + ", layers=" + std::to_string(c.num_hidden_layers) +
               ", d_model=" + std::to_string(c.hidden_size) + ", heads=" + std::to_string(c.num_attention_heads) +
               "/" + std::to_string(c.num_key_value_heads) + ", vocab=" + std::to_string(c.vocab_size) + ")";
      });

  py::class_<GenerationConfig>(m, "GenerationConfig", "generation_config.json (every field optional).")
      .def_static("from_json", &GenerationConfig::from_json, py::arg("text"), py::arg("source") = "generation_config.json")
      .def_static("from_file_or_default", &GenerationConfig::from_file_or_default, py::arg("path"))
      .def_readonly("bos_token_id", &GenerationConfig::bos_token_id)
      .def_readonly("eos_token_ids", &GenerationConfig::eos_token_ids)
      .def_readonly("pad_token_id", &GenerationConfig::pad_token_id)
      .def_readonly("do_sample", &GenerationConfig::do_sample)
      .def_readonly("temperature", &GenerationConfig::temperature)
      .def_readonly("top_k", &GenerationConfig::top_k)
      .def_readonly("top_p", &GenerationConfig::top_p)
      .def_readonly("max_length", &GenerationConfig::max_length)
      .def_readonly("max_new_tokens", &GenerationConfig::max_new_tokens)
      .def_readonly("repetition_penalty", &GenerationConfig::repetition_penalty);

  py::class_<HFModelFiles>(m, "HFModelFiles", "The files of a Hugging Face model directory.")
      .def_static("find", &HFModelFiles::find, py::arg("directory"))
      .def_readonly("directory", &HFModelFiles::directory)
      .def_readonly("config_path", &HFModelFiles::config_path)
      .def_readonly("generation_config_path", &HFModelFiles::generation_config_path)
      .def_readonly("tokenizer_path", &HFModelFiles::tokenizer_path)
      .def_readonly("tokenizer_config_path", &HFModelFiles::tokenizer_config_path)
      .def_readonly("special_tokens_map_path", &HFModelFiles::special_tokens_map_path)
      .def_readonly("weights_path", &HFModelFiles::weights_path);
}

}  // namespace scalpel::python
