// Bindings: Surgical Refusal Ablation end to end (scalpel/steer/sra.hpp).
// Results that C++ gives as JSON arrive in Python as dicts; a `fmt` may be a
// PromptFormat, any callable str -> str (with an optional `templated`
// attribute), or None (the model's chat template).
#include "bindings.hpp"

#include <pybind11/stl.h>

#include "scalpel/eval/datasets.hpp"
#include "scalpel/eval/refusal.hpp"
#include "scalpel/steer/sra.hpp"
#include "scalpel/io/tokenizer.hpp"

namespace scalpel::python {

namespace {

std::optional<PromptFormat> to_format(const py::object& fmt) {
  if (fmt.is_none()) return std::nullopt;
  if (py::isinstance<PromptFormat>(fmt)) return fmt.cast<PromptFormat>();
  if (!PyCallable_Check(fmt.ptr()))
    throw py::type_error("fmt: expected None, a PromptFormat or a callable str -> str, got " +
                         py::str(py::type::of(fmt)).cast<std::string>());
  PromptFormat f;
  f.templated = py::getattr(fmt, "templated", py::bool_(false)).cast<bool>();
  f.apply = wrap_callable<std::string, const std::string&>(fmt);
  return f;
}

Judge to_judge(const py::object& judge) {
  return judge.is_none() ? Judge() : wrap_callable<bool, const std::string&>(judge);
}

py::dict atoms_dict(const Registry& r) {
  py::dict d;
  for (const auto& a : r.atoms()) d[py::str(a.name)] = a;
  return d;
}

}  // namespace

void bind_sra(py::module_& m) {
  py::class_<PromptFormat>(m, "PromptFormat",
                           "How a request becomes prompt text: apply(request) (None = the request itself); templated: "
                           "the text carries the template's special tokens (encoded without adding BOS)")
      .def(py::init([](const py::object& apply, bool templated) {
             PromptFormat f;
             if (!apply.is_none()) f.apply = wrap_callable<std::string, const std::string&>(apply);
             f.templated = templated;
             return f;
           }),
           py::arg("apply") = py::none(), py::arg("templated") = false)
      .def_readwrite("templated", &PromptFormat::templated)
      .def("__call__", [](const PromptFormat& f, const std::string& s) { return f(s); }, py::arg("request"));
  // The prompt functions need only a tokenizer: each takes a model or a Tokenizer.
  m.def("chat_formatter", py::overload_cast<const Transformer&>(&chat_formatter), py::arg("model"),
        "One user turn in the model's chat template with the generation prompt (plain text when it has none)");
  m.def("chat_formatter", py::overload_cast<const Tokenizer&>(&chat_formatter), py::arg("tokenizer"));
  auto encode_formatted_ = [](const auto& owner, const std::string& text, const py::object& fmt) {
    return encode_formatted(owner, text, to_format(fmt).value_or(PromptFormat{}));
  };
  m.def("encode_formatted", [=](const Transformer& o, const std::string& t, const py::object& f) {
          return encode_formatted_(o, t, f); }, py::arg("model"), py::arg("text"), py::arg("fmt"),
        "The ids of a text fmt produced (special tokens added unless fmt is templated)");
  m.def("encode_formatted", [=](const Tokenizer& o, const std::string& t, const py::object& f) {
          return encode_formatted_(o, t, f); }, py::arg("tokenizer"), py::arg("text"), py::arg("fmt"));
  auto encode_prompts_ = [](const auto& owner, const std::vector<std::string>& prompts, const py::object& fmt) {
    return encode_prompts(owner, prompts, to_format(fmt).value_or(chat_formatter(owner)));
  };
  m.def("encode_prompts", [=](const Transformer& o, const std::vector<std::string>& p, const py::object& f) {
          return encode_prompts_(o, p, f); }, py::arg("model"), py::arg("prompts"), py::arg("fmt") = py::none(),
        "Each request formatted by fmt (default: the chat template) and encoded as the model will see it");
  m.def("encode_prompts", [=](const Tokenizer& o, const std::vector<std::string>& p, const py::object& f) {
          return encode_prompts_(o, p, f); }, py::arg("tokenizer"), py::arg("prompts"), py::arg("fmt") = py::none());
  auto positions_ = [](const auto& owner, const py::object& fmt, const std::string& probe) {
    return post_instruction_positions(owner, to_format(fmt).value_or(chat_formatter(owner)), probe);
  };
  m.def("post_instruction_positions", [=](const Transformer& o, const py::object& f, const std::string& p) {
          return positions_(o, f, p); }, py::arg("model"), py::arg("fmt") = py::none(),
        py::arg("probe") = "Tell me a story about a dog.",
        "Positions (negative) of the template's tokens after the instruction; at least [-1]");
  m.def("post_instruction_positions", [=](const Tokenizer& o, const py::object& f, const std::string& p) {
          return positions_(o, f, p); }, py::arg("tokenizer"), py::arg("fmt") = py::none(),
        py::arg("probe") = "Tell me a story about a dog.");
  const std::vector<std::string> phrases{"I cannot", "I can't", "I'm sorry", "I am sorry", "As an AI", "Sorry"};
  auto refusal_tokens_ = [](const auto& owner, const py::object& fmt, const std::vector<std::string>& ph) {
    return refusal_tokens(owner, to_format(fmt).value_or(chat_formatter(owner)), ph);
  };
  m.def("refusal_tokens", [=](const Transformer& o, const py::object& f, const std::vector<std::string>& ph) {
          return refusal_tokens_(o, f, ph); }, py::arg("model"), py::arg("fmt") = py::none(),
        py::arg("phrases") = phrases, "The first token of each refusal phrase as the model would write it after a prompt");
  m.def("refusal_tokens", [=](const Tokenizer& o, const py::object& f, const std::vector<std::string>& ph) {
          return refusal_tokens_(o, f, ph); }, py::arg("tokenizer"), py::arg("fmt") = py::none(),
        py::arg("phrases") = phrases);
  m.def("encode_continuation", &encode_continuation, py::arg("tokenizer"), py::arg("context"), py::arg("continuation"),
        "(context ids, continuation ids), split as lm-evaluation-harness splits them (trailing context spaces move "
        "into the continuation; BOS added)");
  m.def("default_stop_tokens", &default_stop_tokens, py::arg("tokenizer"),
        "EOS and the end-of-turn tokens the vocabulary has");
  m.def("complete", &complete, py::arg("model"), py::arg("prompts"), py::arg("max_new_tokens") = 24,
        py::call_guard<py::gil_scoped_release>(), "Greedy completions of token prompts, decoded");

  m.def("atom_kinds", &atom_kinds, "The atom kinds: target, shield, confound");
  py::class_<Atom>(m, "Atom", "A named concept: a positive and a negative prompt set that differ only in it")
      .def(py::init([](std::string name, std::string kind, std::vector<std::string> positive,
                       std::vector<std::string> negative, std::string description,
                       std::optional<std::vector<std::string>> hooks) {
             return Atom(std::move(name), std::move(kind), std::move(positive), std::move(negative),
                         std::move(description), hooks.value_or(std::vector<std::string>{}));
           }),
           py::arg("name"), py::arg("kind"), py::arg("positive"), py::arg("negative"), py::arg("description") = "",
           py::arg("hooks") = py::none())
      .def_readwrite("name", &Atom::name)
      .def_readwrite("kind", &Atom::kind)
      .def_readwrite("positive", &Atom::positive)
      .def_readwrite("negative", &Atom::negative)
      .def_readwrite("description", &Atom::description)
      .def_readwrite("hooks", &Atom::hooks)
      .def_static("from_dict", [](const py::handle& d, const py::object& base) {
                    return Atom::from_json(to_json(d), base.is_none() ? "" : py::str(base).cast<std::string>());
                  }, py::arg("d"), py::arg("base") = py::none())
      .def("to_dict", [](const Atom& a) { return from_json(a.to_json()); })
      .def("__repr__", [](const Atom& a) {
        return "Atom(" + a.name + ", " + a.kind + ", " + std::to_string(a.positive.size()) + " positive, " +
               std::to_string(a.negative.size()) + " negative)";
      });
  py::class_<Registry>(m, "Registry",
                       "Concept atoms and their extracted directions (NAME.json + NAME.safetensors)")
      .def(py::init([](const std::vector<Atom>& atoms, std::optional<std::map<std::string, at::Tensor>> directions) {
             return Registry(atoms, directions.value_or(std::map<std::string, at::Tensor>{}));
           }),
           py::arg("atoms") = std::vector<Atom>{}, py::arg("directions") = py::none())
      .def_static("load", [](const py::object& path) { return Registry::load(py::str(path)); }, py::arg("path"))
      .def_static("default_registry", &Registry::default_registry,
                  "The shipped registry: shields math, coding, logic, factual, story; confounds imperative, formal, "
                  "long, polite, list_format")
      .def_static("from_json", &Registry::from_json, py::arg("json"), py::arg("base_dir") = "",
                  py::arg("name") = "registry")
      .def("save", [](const Registry& r, const py::object& path, std::optional<std::map<std::string, std::string>> meta) {
             r.save(py::str(path), meta.value_or(std::map<std::string, std::string>{}));
             return py::module_::import("pathlib").attr("Path")(path);
           }, py::arg("path"), py::arg("metadata") = py::none(), "Writes NAME.json and NAME.safetensors atomically")
      .def("to_json", &Registry::to_json)
      .def("add", &Registry::add, py::arg("atom"))
      .def("names", &Registry::names, py::arg("kinds") = std::vector<std::string>{},
           "Atom names of the given kinds (empty = all), in registration order")
      .def_property_readonly("atoms", &atoms_dict, "name -> Atom (a copy)")
      .def_property("directions", [](const Registry& r) { return r.directions(); },
                    [](Registry& r, const std::map<std::string, at::Tensor>& d) { r.directions() = d; },
                    "'atom|hook|position' -> direction (a copy of the mapping; assign to replace it)")
      .def("extract", [](Registry& r, Transformer& model, const std::vector<std::string>& hooks,
                         const std::vector<int64_t>& positions, const py::object& fmt,
                         std::optional<std::vector<std::string>> names, const std::string& method, int64_t batch_size) {
             auto f = to_format(fmt);
             py::gil_scoped_release release;
             r.extract(model, hooks, positions, f, names.value_or(std::vector<std::string>{}), method, batch_size);
           }, py::arg("model"), py::arg("hooks"), py::arg("positions"), py::arg("fmt") = py::none(),
           py::arg("names") = py::none(), py::arg("method") = "mean", py::arg("batch_size") = 32,
           "Each atom's direction (mean difference, or 'pca') at every hook and position")
      .def("direction", &Registry::direction, py::arg("atom"), py::arg("hook"), py::arg("position"))
      .def("matrix", &Registry::matrix, py::arg("hook"), py::arg("position"),
           py::arg("kinds") = std::vector<std::string>{"shield", "confound"},
           py::arg("exclude") = std::vector<std::string>{}, "(names, [k, d] directions) of the chosen atoms")
      .def("audit", [](const Registry& r, const std::string& hook, int64_t position, const std::vector<std::string>& kinds,
                       double cc) { return from_json(r.audit(hook, position, kinds, cc).to_json()); },
           py::arg("hook"), py::arg("position"), py::arg("kinds") = std::vector<std::string>{"shield", "confound"},
           py::arg("collinear_cosine") = 0.9, "Pairwise cosines, condition number and near-collinear pairs (a dict)");
  m.def("direction_key", &direction_key, py::arg("atom"), py::arg("hook"), py::arg("position"));

  py::class_<Candidates>(m, "Candidates", "Directions per hook and position: directions[h, p] is [d]")
      .def(py::init([](std::vector<std::string> hooks, std::vector<int64_t> positions, at::Tensor directions) {
             return Candidates{std::move(hooks), std::move(positions), std::move(directions)};
           }),
           py::arg("hooks"), py::arg("positions"), py::arg("directions"))
      .def_readwrite("hooks", &Candidates::hooks)
      .def_readwrite("positions", &Candidates::positions)
      .def_readwrite("directions", &Candidates::directions);
  m.def("candidate_directions", [](Transformer& model, const std::vector<std::string>& harmful,
                                   const std::vector<std::string>& harmless, const py::object& fmt,
                                   std::optional<std::vector<std::string>> hooks,
                                   std::optional<std::vector<int64_t>> positions, const std::string& method,
                                   int64_t batch_size) {
          auto f = to_format(fmt);
          py::gil_scoped_release release;
          return candidate_directions(model, harmful, harmless, f, hooks.value_or(std::vector<std::string>{}),
                                      positions.value_or(std::vector<int64_t>{}), method, batch_size);
        }, py::arg("model"), py::arg("harmful"), py::arg("harmless"), py::arg("fmt") = py::none(),
        py::arg("hooks") = py::none(), py::arg("positions") = py::none(), py::arg("method") = "mean",
        py::arg("batch_size") = 32,
        "Directions between two request sets at every layer's resid_pre/resid_mid and post-instruction position");
  py::class_<CandidateScore>(m, "CandidateScore", "One candidate's scores in select_direction (None: unset)")
      .def_readonly("hook", &CandidateScore::hook)
      .def_readonly("layer", &CandidateScore::layer)
      .def_readonly("position", &CandidateScore::position)
      .def_readonly("norm", &CandidateScore::norm)
      .def_readonly("bypass", &CandidateScore::bypass)
      .def_readonly("kl", &CandidateScore::kl)
      .def_readonly("induce", &CandidateScore::induce)
      .def_readonly("eligible", &CandidateScore::eligible)
      .def_readonly("reason", &CandidateScore::reason)
      .def_readonly("baseline", &CandidateScore::baseline)
      .def("to_json", &CandidateScore::to_json)
      .def("to_dict", [](const CandidateScore& s) { return from_json(s.to_json()); });
  py::class_<MiningRound>(m, "MiningRound", "One round of hard-negative mining")
      .def_readonly("round", &MiningRound::round)
      .def_readonly("refusal_rate", &MiningRound::refusal_rate)
      .def_readonly("mean_kl", &MiningRound::mean_kl)
      .def_readonly("max_kl", &MiningRound::max_kl)
      .def_readonly("harmful_set", &MiningRound::harmful_set)
      .def_readonly("harmless_set", &MiningRound::harmless_set)
      .def_readonly("added_harmful", &MiningRound::added_harmful)
      .def_readonly("added_harmless", &MiningRound::added_harmless)
      .def("to_json", &MiningRound::to_json)
      .def("to_dict", [](const MiningRound& r) { return from_json(r.to_json()); });
  py::class_<Selection>(m, "Selection", "The selected direction and every candidate's scores")
      .def_readonly("hook", &Selection::hook)
      .def_readonly("position", &Selection::position)
      .def_readonly("direction", &Selection::direction)
      .def_readonly("rows", &Selection::rows, "Every candidate's scores (CandidateScore)")
      .def("to_dict", [](const Selection& s) { return from_json(s.to_json()); });
  m.def("select_direction", [](Transformer& model, const Candidates& cands, const std::vector<std::string>& harmful_val,
                               const std::vector<std::string>& harmless_val, const py::object& fmt,
                               std::optional<std::vector<int64_t>> tokens, double kl_threshold, double exclude_last,
                               bool progress) {
          auto f = to_format(fmt);
          py::gil_scoped_release release;
          return select_direction(model, cands, harmful_val, harmless_val, f, tokens.value_or(std::vector<int64_t>{}),
                                  kl_threshold, exclude_last, progress);
        }, py::arg("model"), py::arg("cands"), py::arg("harmful_val"), py::arg("harmless_val"),
        py::arg("fmt") = py::none(), py::arg("tokens") = py::none(), py::arg("kl_threshold") = 0.1,
        py::arg("exclude_last") = 0.2, py::arg("progress") = true,
        "Arditi et al.'s selection: lowest bypass score among candidates with induce > 0, KL < kl_threshold and "
        "not in the last exclude_last of layers");

  py::class_<SRAResult>(m, "SRAResult", "The dirty direction, the clean one, and the ridge fit between them")
      .def_readonly("dirty", &SRAResult::dirty)
      .def_readonly("clean", &SRAResult::clean)
      .def_readonly("atoms", &SRAResult::atoms)
      .def_readonly("hook", &SRAResult::hook)
      .def_readonly("position", &SRAResult::position)
      .def_readonly("ridge", &SRAResult::ridge)
      .def_property_readonly("audit", [](const SRAResult& r) { return from_json(r.audit_json()); })
      .def("to_dict", [](const SRAResult& r) { return from_json(r.to_json()); });
  m.def("surgical_direction", &surgical_direction, py::arg("dirty"), py::arg("registry"), py::arg("hook"),
        py::arg("position"), py::arg("lambda_") = -1.0,
        py::arg("kinds") = std::vector<std::string>{"shield", "confound"},
        py::arg("exclude") = std::vector<std::string>{},
        "The dirty direction minus what the registry's atoms at the same site predict (ridge; GCV when lambda_ < 0)");

  m.def("shared_data_dir", &shared_data_dir, "$SCALPEL_DATA, else $SCALPEL_SHARED/data, when present");
  m.def("wikitext2", &wikitext2, py::arg("tokenizer"), py::arg("n") = 32, py::arg("seq_len") = 128,
        py::arg("data_dir") = "", "n windows of seq_len tokens from WikiText-2 (raw) test");
  m.def("gsm8k", &gsm8k, py::arg("n") = 32, py::arg("data_dir") = "", "(question, solution) pairs from GSM8K test");
  m.def("mbpp", &mbpp, py::arg("n") = 32, py::arg("data_dir") = "", "(task, code) pairs from MBPP");
  m.def("solution_perplexity", [](Transformer& model, const std::vector<std::pair<std::string, std::string>>& pairs,
                                  const py::object& fmt, int64_t max_tokens, int64_t batch_size) {
          auto f = to_format(fmt).value_or(PromptFormat{});
          py::gil_scoped_release release;
          return solution_perplexity(model, pairs, f, max_tokens, batch_size);
        }, py::arg("model"), py::arg("pairs"), py::arg("fmt") = py::none(), py::arg("max_tokens") = 256,
        py::arg("batch_size") = 8, "Perplexity of reference solutions given their prompts (prompt tokens not scored)");
  m.def("evaluate", [](Transformer& model, const std::vector<std::string>& harmful,
                       const std::vector<std::string>& harmless, const py::object& fmt,
                       std::optional<at::Tensor> reference_logits, std::optional<std::vector<int64_t>> tokens,
                       std::optional<std::vector<std::vector<int64_t>>> texts, const py::object& solutions,
                       int64_t max_new_tokens, const py::object& judge) {
          auto f = to_format(fmt);
          EvalOptions o;
          if (reference_logits) o.reference_logits = *reference_logits;
          if (tokens) o.tokens = *tokens;
          if (texts) o.texts = *texts;
          if (!solutions.is_none())
            for (auto [k, v] : solutions.cast<py::dict>())
              o.solutions.emplace_back(py::str(k), v.cast<std::vector<std::pair<std::string, std::string>>>());
          o.max_new_tokens = max_new_tokens;
          o.judge = to_judge(judge);
          EvalReport r;
          {
            py::gil_scoped_release release;
            r = evaluate(model, harmful, harmless, f, o);
          }
          return from_json(r.to_json());
        }, py::arg("model"), py::arg("harmful"), py::arg("harmless"), py::arg("fmt") = py::none(),
        py::arg("reference_logits") = py::none(), py::arg("tokens") = py::none(), py::arg("texts") = py::none(),
        py::arg("solutions") = py::none(), py::arg("max_new_tokens") = 24, py::arg("judge") = py::none(),
        "The evaluation battery under whatever edit is active (a dict): refusal_rate, over_refusal, refusal_score, "
        "first_token_kl, perplexity, NAME_perplexity, examples");

  m.def("mine_hard_negatives", [](Transformer& model, const py::object& make_direction,
                                  const std::vector<std::string>& harmful, const std::vector<std::string>& harmless,
                                  const std::vector<std::string>& harmful_pool,
                                  const std::vector<std::string>& harmless_pool, const py::object& fmt, int64_t rounds,
                                  double target_refusal, int64_t top_kl, double gamma, int64_t max_new_tokens,
                                  const py::object& judge, const py::object& log) {
          auto f = to_format(fmt);
          MiningOptions o;
          o.rounds = rounds;
          o.target_refusal = target_refusal;
          o.top_kl = top_kl;
          o.gamma = gamma;
          o.max_new_tokens = max_new_tokens;
          o.judge = to_judge(judge);
          if (!log.is_none()) o.log = wrap_callable<void, const std::string&>(log);
          auto fn = wrap_callable<at::Tensor, const std::vector<std::string>&, const std::vector<std::string>&>(
              make_direction);
          std::pair<at::Tensor, std::vector<MiningRound>> res;
          {
            py::gil_scoped_release release;
            res = mine_hard_negatives(model, fn, harmful, harmless, harmful_pool, harmless_pool, f, o);
          }
          return res;
        }, py::arg("model"), py::arg("make_direction"), py::arg("harmful"), py::arg("harmless"),
        py::arg("harmful_pool"), py::arg("harmless_pool"), py::arg("fmt") = py::none(), py::arg("rounds") = 3,
        py::arg("target_refusal") = 0.02, py::arg("top_kl") = 4, py::arg("gamma") = 1.0,
        py::arg("max_new_tokens") = 16, py::arg("judge") = py::none(), py::arg("log") = py::none(),
        "Hard-negative mining: (last direction, one MiningRound per round)");
  m.def("export_ablated", [](const py::object& source, const py::object& out, const at::Tensor& direction, double gamma,
                             bool overwrite, int64_t from_layer) {
          const std::string s = py::str(source), o = py::str(out);
          {
            py::gil_scoped_release release;
            export_ablated(s, o, direction, gamma, overwrite, from_layer);
          }
          return py::module_::import("pathlib").attr("Path")(o);
        }, py::arg("source"), py::arg("out"), py::arg("direction"), py::arg("gamma") = 1.0,
        py::arg("overwrite") = false, py::arg("from_layer") = 0,
        "A Hugging Face directory with the direction projected out of the weights (+ scalpel_edit.json)");
}

}  // namespace scalpel::python
