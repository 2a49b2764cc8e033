// Bindings: evaluation (refusal judge, the log-likelihood engine).
#include "bindings.hpp"

#include "scalpel/eval/loglikelihood.hpp"
#include "scalpel/eval/refusal.hpp"
#include "scalpel/io/prompts.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/model/transformer.hpp"

namespace scalpel::python {

void bind_eval(py::module_& m) {
  m.def("refusal_substrings", &refusal_substrings, "The JailbreakBench / Arditi et al. refusal phrases.");
  m.def("is_refusal", &is_refusal, py::arg("completion"), py::arg("substrings") = std::vector<std::string>{},
        "Whether the completion contains a refusal phrase (case-insensitive).");
  m.def("refusal_rate", &refusal_rate, py::arg("completions"), py::arg("substrings") = std::vector<std::string>{},
        "Fraction of completions judged refusals by is_refusal.");

  py::class_<LoglikelihoodOptions>(m, "LoglikelihoodOptions")
      .def(py::init([](int64_t batch_size, int64_t max_batch_tokens, int64_t max_length, bool share_context,
                       bool progress) {
             return LoglikelihoodOptions{batch_size, max_batch_tokens, max_length, share_context, progress};
           }),
           py::arg("batch_size") = 16, py::arg("max_batch_tokens") = 4096, py::arg("max_length") = 0,
           py::arg("share_context") = true, py::arg("progress") = true)
      .def_readwrite("batch_size", &LoglikelihoodOptions::batch_size)
      .def_readwrite("max_batch_tokens", &LoglikelihoodOptions::max_batch_tokens)
      .def_readwrite("max_length", &LoglikelihoodOptions::max_length)
      .def_readwrite("share_context", &LoglikelihoodOptions::share_context)
      .def_readwrite("progress", &LoglikelihoodOptions::progress);
  py::class_<TokenRequest>(m, "TokenRequest", "A request as ids: the log-probability of continuation after context")
      .def(py::init([](std::vector<int64_t> context, std::vector<int64_t> continuation) {
             return TokenRequest{std::move(context), std::move(continuation)};
           }),
           py::arg("context"), py::arg("continuation"))
      .def_readwrite("context", &TokenRequest::context)
      .def_readwrite("continuation", &TokenRequest::continuation)
      .def("__repr__", [](const TokenRequest& r) {
        return "TokenRequest(" + std::to_string(r.context.size()) + " context tokens, " +
               std::to_string(r.continuation.size()) + " continuation tokens)";
      });
  py::class_<LoglikelihoodResult>(m, "LoglikelihoodResult")
      .def_readonly("logprob", &LoglikelihoodResult::logprob)
      .def_readonly("is_greedy", &LoglikelihoodResult::is_greedy)
      .def("__iter__", [](const LoglikelihoodResult& r) { return py::iter(py::make_tuple(r.logprob, r.is_greedy)); })
      .def("__repr__", [](const LoglikelihoodResult& r) {
        return "LoglikelihoodResult(logprob=" + std::to_string(r.logprob) + ", is_greedy=" +
               (r.is_greedy ? "True" : "False") + ")";
      });
  py::class_<GenerateUntilOptions>(m, "GenerateUntilOptions")
      .def(py::init([](std::vector<std::string> until, int64_t max_gen_toks, int64_t batch_size, int64_t max_length,
                       bool progress) {
             return GenerateUntilOptions{std::move(until), max_gen_toks, batch_size, max_length, progress};
           }),
           py::arg("until") = std::vector<std::string>{}, py::arg("max_gen_toks") = 256, py::arg("batch_size") = 16,
           py::arg("max_length") = 0, py::arg("progress") = true)
      .def_readwrite("until", &GenerateUntilOptions::until)
      .def_readwrite("max_gen_toks", &GenerateUntilOptions::max_gen_toks)
      .def_readwrite("batch_size", &GenerateUntilOptions::batch_size)
      .def_readwrite("max_length", &GenerateUntilOptions::max_length)
      .def_readwrite("progress", &GenerateUntilOptions::progress);

  // The tokenizer defaults to the model's own.
  auto tok = [](Transformer& model, const Tokenizer* t) -> const Tokenizer& { return t ? *t : model.tokenizer(); };
  m.def("prefix_token_id", &prefix_token_id, py::arg("tokenizer"),
        "BOS, else EOS: what an empty context and rolling windows condition on (lm-eval's prefix_token_id)");
  m.def("encode_text", &encode_text, py::arg("tokenizer"), py::arg("text"),
        "Ids of a prompt or document as lm-eval encodes it: special tokens added unless it starts with BOS's text");
  m.def("encode_request", &encode_request, py::arg("tokenizer"), py::arg("context"), py::arg("continuation"),
        "A text request as lm-eval's causal models encode it -> TokenRequest");
  m.def("loglikelihood_tokens", &loglikelihood_tokens, py::arg("model"), py::arg("requests"),
        py::arg("options") = LoglikelihoodOptions{}, py::call_guard<py::gil_scoped_release>(),
        "[TokenRequest] -> [LoglikelihoodResult(logprob, is_greedy)]: each distinct context run once, its keys and "
        "values shared by its continuations, the unembedding only where asked");
  m.def("loglikelihood",
        [=](Transformer& model, const std::vector<std::pair<std::string, std::string>>& requests,
            const LoglikelihoodOptions& options, const Tokenizer* tokenizer) {
          py::gil_scoped_release release;
          return loglikelihood(model, tok(model, tokenizer), requests, options);
        },
        py::arg("model"), py::arg("requests"), py::arg("options") = LoglikelihoodOptions{},
        py::arg("tokenizer") = nullptr,
        "[(context, continuation)] -> [LoglikelihoodResult(logprob, is_greedy)], as lm-eval's loglikelihood");
  m.def("rolling_windows", &rolling_windows, py::arg("tokens"), py::arg("prefix_token"), py::arg("max_length"),
        "The TokenRequests of a whole-document likelihood: every token predicted once");
  m.def("loglikelihood_rolling",
        [=](Transformer& model, const std::vector<std::string>& texts, const LoglikelihoodOptions& options,
            const Tokenizer* tokenizer) {
          py::gil_scoped_release release;
          return loglikelihood_rolling(model, tok(model, tokenizer), texts, options);
        },
        py::arg("model"), py::arg("texts"), py::arg("options") = LoglikelihoodOptions{}, py::arg("tokenizer") = nullptr,
        "[text] -> [log-likelihood of the whole text], as lm-eval's loglikelihood_rolling");
  m.def("generate_until",
        [=](Transformer& model, const std::vector<std::string>& contexts, const GenerateUntilOptions& options,
            const Tokenizer* tokenizer) {
          py::gil_scoped_release release;
          return generate_until(model, tok(model, tokenizer), contexts, options);
        },
        py::arg("model"), py::arg("contexts"), py::arg("options") = GenerateUntilOptions{},
        py::arg("tokenizer") = nullptr,
        "[context] -> [greedy continuation cut before the first stop string], as lm-eval's generate_until");
}

}  // namespace scalpel::python
