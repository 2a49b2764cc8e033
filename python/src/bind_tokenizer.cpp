#include "bindings.hpp"

#include <pybind11/stl.h>

#include "scalpel/io/chat_template.hpp"
#include "scalpel/io/tokenizer.hpp"

namespace scalpel::python {

void bind_tokenizer(py::module_& m) {
  py::class_<ChatTemplate>(m, "ChatTemplate",
                           "A Hugging Face chat template (Jinja subset, see docs/chat_templates.md), rendered "
                           "exactly as transformers renders it.")
      .def(py::init<const std::string&, const std::string&>(), py::arg("source"), py::arg("name") = "chat_template")
      .def_property_readonly("source", &ChatTemplate::source)
      .def(
          "render",
          [](const ChatTemplate& t, const py::list& messages, bool add_generation_prompt, const py::kwargs& extra) {
            std::string msgs = to_json(messages), ctx = to_json(extra);
            py::gil_scoped_release release;
            return t.render_json(msgs, add_generation_prompt, ctx);
          },
          py::arg("messages"), py::arg("add_generation_prompt") = true,
          "Render messages (list of {'role', 'content', ...} dicts); keyword arguments become template variables.");

  py::class_<AddedToken>(m, "AddedToken")
      .def_readonly("id", &AddedToken::id)
      .def_readonly("content", &AddedToken::content)
      .def_readonly("special", &AddedToken::special)
      .def_readonly("lstrip", &AddedToken::lstrip)
      .def_readonly("rstrip", &AddedToken::rstrip)
      .def_readonly("single_word", &AddedToken::single_word)
      .def_readonly("normalized", &AddedToken::normalized)
      .def("__repr__", [](const AddedToken& t) {
        return "AddedToken(" + std::to_string(t.id) + ", '" + t.content + "'" + (t.special ? ", special" : "") + ")";
      });

  py::class_<Tokenizer>(m, "Tokenizer",
                        "A Hugging Face tokenizer (tokenizer.json, or vocab.json + merges.txt) with ids identical "
                        "to the `tokenizers` library's.")
      .def_static("from_file", &Tokenizer::from_file, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static("from_json", &Tokenizer::from_json, py::arg("tokenizer_json"),
                  py::arg("tokenizer_config_json") = "", py::arg("name") = "tokenizer.json")
      .def("encode", &Tokenizer::encode, py::arg("text"), py::arg("add_special_tokens") = true,
           py::call_guard<py::gil_scoped_release>(), "Text to a list of token ids.")
      .def("encode_batch", &Tokenizer::encode_batch, py::arg("texts"), py::arg("add_special_tokens") = true,
           py::call_guard<py::gil_scoped_release>())
      .def("decode", &Tokenizer::decode, py::arg("ids"), py::arg("skip_special_tokens") = false,
           py::call_guard<py::gil_scoped_release>())
      .def("convert_ids_to_tokens", &Tokenizer::convert_ids_to_tokens, py::arg("ids"))
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
      .def("__len__", &Tokenizer::vocab_size)
      .def("token_to_id", &Tokenizer::token_to_id, py::arg("token"))
      .def("id_to_token", &Tokenizer::id_to_token, py::arg("id"))
      .def_property_readonly("bos_token", &Tokenizer::bos_token)
      .def_property_readonly("eos_token", &Tokenizer::eos_token)
      .def_property_readonly("pad_token", &Tokenizer::pad_token)
      .def_property_readonly("unk_token", &Tokenizer::unk_token)
      .def_property_readonly("bos_token_id", &Tokenizer::bos_token_id)
      .def_property_readonly("eos_token_id", &Tokenizer::eos_token_id)
      .def_property_readonly("pad_token_id", &Tokenizer::pad_token_id)
      .def_property_readonly("unk_token_id", &Tokenizer::unk_token_id)
      .def_property_readonly("added_tokens", &Tokenizer::added_tokens)
      .def_property_readonly("has_chat_template", &Tokenizer::has_chat_template)
      .def_property_readonly("chat_template", &Tokenizer::chat_template, py::return_value_policy::copy)
      .def(
          "apply_chat_template",
          [](const Tokenizer& t, const py::list& messages, bool add_generation_prompt, const py::kwargs& extra) {
            std::string msgs = to_json(messages), ctx = to_json(extra);
            py::gil_scoped_release release;
            return t.apply_chat_template_json(msgs, add_generation_prompt, ctx);
          },
          py::arg("messages"), py::arg("add_generation_prompt") = true,
          "Render the chat template as transformers' apply_chat_template(..., tokenize=False) does.")
      .def("describe", &Tokenizer::describe)
      .def("__repr__", [](const Tokenizer& t) { return "Tokenizer(" + t.describe() + ")"; });

  m.def("load_tokenizer", &load_tokenizer, py::arg("path"), py::call_guard<py::gil_scoped_release>(),
        "Load a tokenizer from a model directory or a tokenizer.json file.");
}

}  // namespace scalpel::python
