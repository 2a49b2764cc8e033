// Bindings: causal-tracing metrics (scalpel/eval/metrics.hpp).
#include "bindings.hpp"

#include "scalpel/model/transformer.hpp"
#include "scalpel/trace/circuit.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/trace/pairs.hpp"
#include "scalpel/trace/patching.hpp"
#include "scalpel/io/tokenizer.hpp"

namespace scalpel::python {

void bind_trace(py::module_& m) {
  m.def("token_logprobs", &token_logprobs, py::arg("logits"), py::arg("tokens"),
        "log p(tokens[:, t+1] | tokens[:, <=t]) -> [batch, pos-1]");
  m.def("masked_logprob", &masked_logprob, py::arg("logits"), py::arg("tokens"), py::arg("target_mask"),
        "Sum of token log-probabilities where target_mask is 1 -> [batch]");
  m.def("logit_diff", &logit_diff, py::arg("logits"), py::arg("correct"), py::arg("wrong"), py::arg("position") = -1,
        "logits[b, position, correct[b]] - logits[b, position, wrong[b]] -> [batch]");
  m.def("refusal_score", &refusal_score, py::arg("logits"), py::arg("refusal_tokens"), py::arg("position") = -1,
        "Log-odds of the refusal tokens at position -> [batch]");
  m.def("kl_divergence", &kl_divergence, py::arg("logits"), py::arg("reference_logits"), py::arg("position") = -1,
        "KL(reference || p) of the next-token distributions at position -> [batch]");
  m.def("auroc", &auroc, py::arg("scores"), py::arg("labels"),
        "Area under the ROC curve of scores for binary labels (Mann-Whitney U / (n+ n-), ties half)");
  m.def("sequence_kl", &sequence_kl, py::arg("logits"), py::arg("reference_logits"), py::arg("mask"),
        "KL(reference || p) at every position where mask is 1, averaged per row -> [batch] (differentiable, float32)");
  m.def("causal_effect", &causal_effect, py::arg("base"), py::arg("patched"), "H(base) - H(patched)");
  m.def("gap_recovered", &gap_recovered, py::arg("patched"), py::arg("clean"), py::arg("corrupted"),
        "(patched - corrupted) / (clean - corrupted); 0 where clean == corrupted");
  py::class_<TeacherForcedBatch>(m, "TeacherForcedBatch", "prompt + completion rows, left-padded")
      .def_readonly("tokens", &TeacherForcedBatch::tokens)
      .def_readonly("attention_mask", &TeacherForcedBatch::attention_mask)
      .def_readonly("target_mask", &TeacherForcedBatch::target_mask);
  m.def("teacher_forced_batch", &teacher_forced_batch, py::arg("prompts"), py::arg("completions"), py::arg("pad_id") = 0);
  m.def("target_logprob", &target_logprob, py::arg("model"), py::arg("batch"), py::call_guard<py::gil_scoped_release>(),
        "masked_logprob of the model's logits on a TeacherForcedBatch, unembedding only the positions that predict a "
        "target -> [batch] (differentiable)");
  m.def("completion_logprob", &completion_logprob, py::arg("model"), py::arg("prompts"), py::arg("completions"),
        py::arg("batch_size") = 16, py::call_guard<py::gil_scoped_release>(),
        "log p(completion | prompt) of each pair (teacher-forced, batched) -> [n]");
  m.def("harm_score", &harm_score, py::arg("model"), py::arg("prompts"), py::arg("harmful"), py::arg("neutral"),
        py::arg("batch_size") = 16, py::call_guard<py::gil_scoped_release>(),
        "H = logp(harmful | prompt) - logp(neutral | prompt) -> [n]");

  py::class_<SweepResult>(m, "SweepResult", "Scores of a patching sweep")
      .def_readonly("scores", &SweepResult::scores)
      .def_readonly("source_score", &SweepResult::source_score)
      .def_readonly("target_score", &SweepResult::target_score)
      .def_readonly("component", &SweepResult::component)
      .def_readonly("layers", &SweepResult::layers)
      .def_readonly("dims", &SweepResult::dims)
      .def_readonly("positions", &SweepResult::positions)
      .def("__repr__", [](const SweepResult& r) {
        std::string dims;
        for (const auto& d : r.dims) dims += (dims.empty() ? "" : ", ") + d;
        return "SweepResult(" + r.component + ", scores[" + dims + "] " + c10::str(r.scores.sizes()) +
               ", source " + std::to_string(r.source_score) + ", target " + std::to_string(r.target_score) + ")";
      });
  auto to_metric = [](py::function fn) -> Metric { return wrap_callable<at::Tensor, const at::Tensor&>(std::move(fn)); };
  // One callable, or a list of callables (one per pair / prompt).
  auto to_pair_metric = [to_metric](const py::object& obj) -> PairMetric {
    if (PyCallable_Check(obj.ptr())) return PairMetric(to_metric(obj.cast<py::function>()));
    if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
      throw py::type_error("metric: expected a callable or a list of callables (one per pair), got " +
                           std::string(py::str(py::type::handle_of(obj))));
    std::vector<Metric> per_pair;
    for (const auto& item : obj.cast<py::sequence>()) {
      if (!PyCallable_Check(item.ptr()))
        throw py::type_error("metric list: expected callables, got " + std::string(py::str(py::type::handle_of(py::object(item)))));
      per_pair.push_back(to_metric(py::reinterpret_borrow<py::function>(item)));
    }
    return PairMetric(std::move(per_pair));
  };
  auto options = [](const std::string& component, bool per_position, int64_t batch_size, std::vector<int64_t> layers,
                    bool last_position_only, std::vector<int64_t> positions) {
    SweepOptions o;
    o.positions = std::move(positions);
    o.last_position_only = last_position_only;
    o.component = component;
    o.per_position = per_position;
    o.batch_size = batch_size;
    o.layers = std::move(layers);
    return o;
  };
  // The three sweeps share one signature: (model, source, target, metric, options).
  using SweepFn = SweepResult (*)(Transformer&, const at::Tensor&, const at::Tensor&, const Metric&, const SweepOptions&);
  auto bind_sweep = [&](const char* name, SweepFn fn, const char* default_component, bool batched, const char* doc) {
    auto call = [=](Transformer& model, const at::Tensor& source, const at::Tensor& target, py::function metric,
                    const std::string& component, bool per_position, int64_t batch_size, std::vector<int64_t> layers,
                    bool last_position_only, std::vector<int64_t> positions) {
      auto mt = to_metric(std::move(metric));
      auto o = options(component, per_position, batched ? batch_size : 1, std::move(layers), batched && last_position_only,
                       std::move(positions));
      py::gil_scoped_release release;
      return fn(model, source, target, mt, o);
    };
    if (batched)
      m.def(name, call, py::arg("model"), py::arg("source"), py::arg("target"), py::arg("metric"),
            py::arg("component") = default_component, py::arg("per_position") = true, py::arg("batch_size") = 32,
            py::arg("layers") = std::vector<int64_t>{}, py::arg("last_position_only") = false,
            py::arg("positions") = std::vector<int64_t>{}, doc);
    else
      m.def(
          name,
          [call](Transformer& model, const at::Tensor& source, const at::Tensor& target, py::function metric,
                 const std::string& component, bool per_position, std::vector<int64_t> layers,
                 std::vector<int64_t> positions) {
            return call(model, source, target, std::move(metric), component, per_position, 1, std::move(layers), false,
                        std::move(positions));
          },
          py::arg("model"), py::arg("source"), py::arg("target"), py::arg("metric"), py::arg("component") = default_component,
          py::arg("per_position") = true, py::arg("layers") = std::vector<int64_t>{},
          py::arg("positions") = std::vector<int64_t>{}, doc);
  };
  bind_sweep("patch_sweep", &patch_sweep, "resid_pre", true,
             "Patch each layer (x head x position) of `component` from the source run into the target run; "
             "metric(logits [variants, pos, vocab]) -> [variants]. Batched, starting at the patched layer.");
  bind_sweep("patch_sweep_naive", &patch_sweep_naive, "resid_pre", false,
             "patch_sweep with one full forward pass per patch (the reference).");
  m.def(
      "attribution_patch",
      [=](Transformer& model, const at::Tensor& source, const at::Tensor& target, py::function metric,
          const std::string& component, bool per_position, std::vector<int64_t> layers, std::vector<int64_t> positions,
          bool qk_fix, bool last_position_only) {
        auto mt = to_metric(std::move(metric));
        auto o = options(component, per_position, 1, std::move(layers), last_position_only, std::move(positions));
        o.qk_fix = qk_fix;
        py::gil_scoped_release release;
        return attribution_patch(model, source, target, mt, o);
      },
      py::arg("model"), py::arg("source"), py::arg("target"), py::arg("metric"), py::arg("component") = "z",
      py::arg("per_position") = true, py::arg("layers") = std::vector<int64_t>{},
      py::arg("positions") = std::vector<int64_t>{}, py::arg("qk_fix") = false, py::arg("last_position_only") = false,
      "First-order estimate of every patch of the sweep (attribution patching): one source forward, "
      "one target forward + backward. Same layout as patch_sweep. qk_fix (component q or k): AtP*'s "
      "exact attention pattern, linearized only after the softmax.");
  py::class_<CompletionPair>(m, "CompletionPair", "{prompt, harmful, neutral}")
      .def(py::init([](std::string p, std::string h, std::string n) { return CompletionPair{std::move(p), std::move(h), std::move(n)}; }),
           py::arg("prompt"), py::arg("harmful"), py::arg("neutral"))
      .def_readwrite("prompt", &CompletionPair::prompt)
      .def_readwrite("harmful", &CompletionPair::harmful)
      .def_readwrite("neutral", &CompletionPair::neutral);
  py::class_<PromptPair>(m, "PromptPair", "{clean, corrupted, answers, corrupted_answers}")
      .def(py::init([](std::string c, std::string k, std::vector<std::string> a, std::vector<std::string> ka) {
             return PromptPair{std::move(c), std::move(k), std::move(a), std::move(ka)};
           }),
           py::arg("clean"), py::arg("corrupted"), py::arg("answers"), py::arg("corrupted_answers") = std::vector<std::string>{})
      .def_readwrite("clean", &PromptPair::clean)
      .def_readwrite("corrupted", &PromptPair::corrupted)
      .def_readwrite("answers", &PromptPair::answers)
      .def_readwrite("corrupted_answers", &PromptPair::corrupted_answers);
  py::class_<TokenizedPromptPair>(m, "TokenizedPromptPair")
      .def_readonly("clean", &TokenizedPromptPair::clean)
      .def_readonly("corrupted", &TokenizedPromptPair::corrupted)
      .def_readonly("answer", &TokenizedPromptPair::answer)
      .def_readonly("corrupted_answer", &TokenizedPromptPair::corrupted_answer);
  m.def("load_completion_pairs", &load_completion_pairs, py::arg("path"), "JSONL {prompt, harmful, neutral} rows");
  m.def("load_prompt_pairs", &load_prompt_pairs, py::arg("path"), "JSONL {clean, corrupted, answer(s)} rows");
  m.def("tokenize_prompt_pair", &tokenize_prompt_pair, py::arg("tokenizer"), py::arg("pair"),
        "Token ids of a prompt pair (same length, checked) and the answers' next-token ids");
  py::class_<CircuitResult>(m, "CircuitResult", "A minimal circuit and how it was found")
      .def_readonly("ranking", &CircuitResult::ranking)
      .def_readonly("ranking_effect", &CircuitResult::ranking_effect)
      .def_readonly("curve", &CircuitResult::curve)
      .def_readonly("circuit", &CircuitResult::circuit)
      .def_readonly("circuit_metric", &CircuitResult::circuit_metric)
      .def_readonly("source_mean", &CircuitResult::source_mean)
      .def_readonly("target_mean", &CircuitResult::target_mean)
      .def_readonly("recovered", &CircuitResult::recovered)
      .def_readonly("reached", &CircuitResult::reached)
      .def("__repr__", [](const CircuitResult& r) {
        return "CircuitResult(" + std::to_string(r.circuit.size()) + " of " + std::to_string(r.ranking.size()) +
               " components, recovered " + std::to_string(r.recovered) + (r.reached ? "" : ", criterion not reached") + ")";
      });
  m.def(
      "patch_sets",
      [=](Transformer& model, const std::vector<at::Tensor>& sources, const std::vector<at::Tensor>& targets,
          const py::object& metric, const std::string& component, const std::vector<std::vector<CircuitComponent>>& sets,
          int64_t batch_size, bool last_position_only) {
        auto mt = to_pair_metric(metric);
        py::gil_scoped_release release;
        return patch_sets(model, sources, targets, mt, component, sets, batch_size, last_position_only);
      },
      py::arg("model"), py::arg("sources"), py::arg("targets"), py::arg("metric"), py::arg("component"), py::arg("sets"),
      py::arg("batch_size") = 32, py::arg("last_position_only") = false, "Mean metric over the pairs with each set of (layer, unit) components patched: [sets]");
  m.def(
      "minimal_circuit",
      [=](Transformer& model, const std::vector<at::Tensor>& sources, const std::vector<at::Tensor>& targets,
          const py::object& metric, const std::string& component, std::optional<double> threshold, double min_recovered,
          bool prune, int64_t batch_size, bool last_position_only) {
        auto mt = to_pair_metric(metric);
        CircuitOptions o;
        o.component = component;
        if (threshold) o.threshold = *threshold;
        o.min_recovered = min_recovered;
        o.prune = prune;
        o.batch_size = batch_size;
        o.last_position_only = last_position_only;
        py::gil_scoped_release release;
        return minimal_circuit(model, sources, targets, mt, o);
      },
      py::arg("model"), py::arg("sources"), py::arg("targets"), py::arg("metric"), py::arg("component") = "z",
      py::arg("threshold") = py::none(), py::arg("min_recovered") = 0.9, py::arg("prune") = true,
      py::arg("batch_size") = 32, py::arg("last_position_only") = false,
      "Smallest set of components whose joint patching brings the mean metric under threshold "
      "(or recovers min_recovered of the gap): rank, grow in rank order, prune.");
  m.def(
      "ablate_sets",
      [=](Transformer& model, const std::vector<at::Tensor>& prompts, const py::object& metric, const std::string& component,
          const std::vector<std::vector<CircuitComponent>>& sets, const std::string& kind,
          const std::vector<at::Tensor>& reference, bool per_position, int64_t samples, uint64_t seed, int64_t batch_size,
          bool last_position_only) {
        auto mt = to_pair_metric(metric);
        AblationOptions o;
        o.last_position_only = last_position_only;
        o.kind = kind;
        o.reference = reference;
        o.per_position = per_position;
        o.samples = samples;
        o.seed = seed;
        o.batch_size = batch_size;
        py::gil_scoped_release release;
        return ablate_sets(model, prompts, mt, component, sets, o);
      },
      py::arg("model"), py::arg("prompts"), py::arg("metric"), py::arg("component"), py::arg("sets"),
      py::arg("kind") = "mean", py::arg("reference") = std::vector<at::Tensor>{}, py::arg("per_position") = false,
      py::arg("samples") = 1, py::arg("seed") = 0, py::arg("batch_size") = 32, py::arg("last_position_only") = false,
      "Mean metric over the prompts with each set of (layer, unit) components ablated: kind \"zero\", \"mean\" "
      "(over the reference prompts; per position or over all positions) or \"resample\" (a random reference "
      "prompt of the same length, averaged over `samples` draws): [sets]");
  py::class_<CircuitValidation>(m, "CircuitValidation", "A circuit on held-out pairs and on unrelated text")
      .def_readonly("pairs", &CircuitValidation::pairs)
      .def_readonly("source_mean", &CircuitValidation::source_mean)
      .def_readonly("target_mean", &CircuitValidation::target_mean)
      .def_readonly("patched_mean", &CircuitValidation::patched_mean)
      .def_readonly("recovered", &CircuitValidation::recovered)
      .def_readonly("complement_recovered", &CircuitValidation::complement_recovered)
      .def_readonly("random_recovered", &CircuitValidation::random_recovered)
      .def_readonly("mean_patched_mean", &CircuitValidation::mean_patched_mean)
      .def_readonly("mean_patched_recovered", &CircuitValidation::mean_patched_recovered)
      .def_readonly("text_tokens", &CircuitValidation::text_tokens)
      .def_readonly("kl", &CircuitValidation::kl)
      .def_readonly("perplexity", &CircuitValidation::perplexity)
      .def_readonly("edited_perplexity", &CircuitValidation::edited_perplexity)
      .def_readonly("random_kl", &CircuitValidation::random_kl)
      .def_readonly("random_edited_perplexity", &CircuitValidation::random_edited_perplexity)
      .def("to_dict", [](const CircuitValidation& v) {
        py::dict d;
        d["pairs"] = v.pairs;
        d["source_mean"] = v.source_mean;
        d["target_mean"] = v.target_mean;
        d["patched_mean"] = v.patched_mean;
        d["recovered"] = v.recovered;
        d["complement_recovered"] = v.complement_recovered;
        d["random_recovered"] = v.random_recovered;
        d["mean_patched_mean"] = v.mean_patched_mean;
        d["mean_patched_recovered"] = v.mean_patched_recovered;
        d["text_tokens"] = v.text_tokens;
        d["kl"] = v.kl;
        d["perplexity"] = v.perplexity;
        d["edited_perplexity"] = v.edited_perplexity;
        d["random_kl"] = v.random_kl;
        d["random_edited_perplexity"] = v.random_edited_perplexity;
        return d;
      })
      .def("__repr__", [](const CircuitValidation& v) {
        return "CircuitValidation(" + std::to_string(v.pairs) + " pairs: recovered " + std::to_string(v.recovered) +
               " (random sets " + std::to_string(v.random_recovered) + "), unrelated text KL " + std::to_string(v.kl) +
               ", perplexity " + std::to_string(v.perplexity) + " -> " + std::to_string(v.edited_perplexity) + ")";
      });
  m.def(
      "validate_circuit",
      [=](Transformer& model, const std::vector<CircuitComponent>& circuit, const std::vector<at::Tensor>& sources,
          const std::vector<at::Tensor>& targets, const py::object& metric, const std::vector<at::Tensor>& texts,
          const std::string& component, int64_t random_sets, uint64_t seed, int64_t batch_size,
          bool last_position_only) {
        auto mt = to_pair_metric(metric);
        CircuitValidationOptions o;
        o.last_position_only = last_position_only;
        o.component = component;
        o.random_sets = random_sets;
        o.seed = seed;
        o.batch_size = batch_size;
        py::gil_scoped_release release;
        return validate_circuit(model, circuit, sources, targets, mt, texts, o);
      },
      py::arg("model"), py::arg("circuit"), py::arg("sources"), py::arg("targets"), py::arg("metric"),
      py::arg("texts") = std::vector<at::Tensor>{}, py::arg("component") = "z", py::arg("random_sets") = 5,
      py::arg("seed") = 0, py::arg("batch_size") = 32, py::arg("last_position_only") = false,
      "The circuit on held-out pairs (patched, complement, random same-size sets, mean edit) and the mean edit's "
      "KL and perplexity on unrelated text");
  m.def("component_hook_name", &component_hook_name, py::arg("component"), py::arg("layer"));
}

}  // namespace scalpel::python
