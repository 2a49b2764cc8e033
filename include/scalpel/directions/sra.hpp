// scalpel/directions/sra.hpp — Surgical Refusal Ablation end to end: prompt
// formatting, the concept-atom registry, Arditi et al.'s direction selection,
// the ridge-cleaned ("surgical") direction, the evaluation battery,
// hard-negative mining and the export of the edited weights (docs/sra.md).
//
//   auto fmt   = chat_formatter(*model);
//   auto reg   = Registry::default_registry();                  // shields + confounds
//   auto cands = candidate_directions(*model, harmful, harmless, fmt);
//   auto sel   = select_direction(*model, cands, harmful_val, harmless_val, fmt);
//   reg.extract(*model, {sel.hook}, {sel.position}, fmt);
//   auto res   = surgical_direction(sel.direction, reg, sel.hook, sel.position);
//   { auto h = ablate_direction(*model, res.clean); auto ev = evaluate(*model, harm, safe, fmt); }
//   export_ablated(source_dir, out_dir, res.clean);              // baked into the weights
//
// Python: scalpel.sra, with the same names (Registry.default() for
// default_registry(); dicts where C++ returns JSON). The JSON of results writes
// non-finite numbers as Infinity, -Infinity and NaN, as Python's json does.
// A malformed registry or evaluation file raises FormatError naming the file
// and the entry.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/directions/directions.hpp"

namespace scalpel {

class Tokenizer;

// ------------------------------------------------------------------ prompts --

/// How a request becomes the text the model reads. `apply` maps the request to
/// the prompt text (empty = the request itself). `templated`: the text carries
/// the template's own special tokens (BOS included), so it is encoded without
/// adding the tokenizer's; otherwise the tokenizer's special tokens are added.
struct PromptFormat {
  std::function<std::string(const std::string&)> apply;
  bool templated = false;
  std::string operator()(const std::string& request) const { return apply ? apply(request) : request; }
};

/// One user turn in the model's chat template with the generation prompt
/// (templated), or the plain request (BOS added) when the tokenizer has no
/// template. Throws InvalidArgument for a model without a tokenizer.
PromptFormat chat_formatter(const Transformer& model);
PromptFormat chat_formatter(const Tokenizer& tokenizer);

/// The ids of a text `fmt` produced (special tokens added unless fmt.templated).
std::vector<int64_t> encode_formatted(const Transformer& model, const std::string& text, const PromptFormat& fmt);
std::vector<int64_t> encode_formatted(const Tokenizer& tokenizer, const std::string& text, const PromptFormat& fmt);

/// Each request formatted by `fmt` and encoded as the model will see it.
std::vector<std::vector<int64_t>> encode_prompts(const Transformer& model, const std::vector<std::string>& prompts,
                                                 const PromptFormat& fmt);
std::vector<std::vector<int64_t>> encode_prompts(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                                                 const PromptFormat& fmt);

/// The positions (negative, from the end) of the template's tokens after the
/// instruction (Arditi et al.'s post-instruction tokens); at least {-1}.
/// These prompt functions need only the tokenizer; each has a Tokenizer overload.
std::vector<int64_t> post_instruction_positions(const Tokenizer& tokenizer, const PromptFormat& fmt,
                                                const std::string& probe = "Tell me a story about a dog.");
std::vector<int64_t> post_instruction_positions(const Transformer& model, const PromptFormat& fmt,
                                                const std::string& probe = "Tell me a story about a dog.");

/// The first token of each refusal phrase as the model would write it after a
/// prompt (where the phrase may merge with the template's end), sorted, unique.
std::vector<int64_t> refusal_tokens(const Tokenizer& tokenizer, const PromptFormat& fmt,
                                    const std::vector<std::string>& phrases = {"I cannot", "I can't", "I'm sorry",
                                                                               "I am sorry", "As an AI", "Sorry"});
std::vector<int64_t> refusal_tokens(const Transformer& model, const PromptFormat& fmt,
                                    const std::vector<std::string>& phrases = {"I cannot", "I can't", "I'm sorry",
                                                                               "I am sorry", "As an AI", "Sorry"});

/// EOS and the end-of-turn tokens (<end_of_turn>, <|im_end|>, <|eot_id|>,
/// <|end|>) the vocabulary has: where a chat answer stops.
std::vector<int64_t> default_stop_tokens(const Tokenizer& tokenizer);

/// Greedy completions of token prompts, decoded without special tokens,
/// stopping at default_stop_tokens (with whatever hooks are active).
std::vector<std::string> complete(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                                  int64_t max_new_tokens = 24);

// ----------------------------------------------------------- concept atoms --

/// The atom kinds: "target", "shield", "confound".
const std::vector<std::string>& atom_kinds();

/// A named concept: a positive and a negative prompt set that differ only in it.
struct Atom {
  std::string name;
  std::string kind;  ///< one of atom_kinds()
  std::vector<std::string> positive;
  std::vector<std::string> negative;
  std::string description;
  std::vector<std::string> hooks;  ///< where it is read (empty: wherever the target direction is)

  Atom() = default;
  /// Throws InvalidArgument for an unknown kind or an empty prompt set.
  Atom(std::string name, std::string kind, std::vector<std::string> positive, std::vector<std::string> negative,
       std::string description = "", std::vector<std::string> hooks = {});

  /// From a registry entry (JSON object text): name, kind, positive, negative;
  /// optional description, hooks, fill. A prompt set is a list of strings
  /// ("{x}" templates expanded over "fill", outer loop over fill) or
  /// {"file": path (relative to base_dir), "field": key, "limit": n} naming a
  /// .json list or a JSONL file.
  static Atom from_json(const std::string& json, const std::string& base_dir = "");
  std::string to_json() const;
  /// InvalidArgument for an unknown kind or an empty prompt set (the
  /// constructor and Registry::add check it).
  void validate() const;
};

/// Pairwise cosines, condition number and near-collinear pairs of a registry's
/// atoms at one site.
struct RegistryAudit {
  std::vector<std::string> atoms;
  AtomAudit audit;
  std::string to_json() const;  ///< {"atoms", "cosines", "condition_number", "collinear": [[a, b], ...]}
};

/// "atom|hook|position": the key of an atom's direction in a registry.
std::string direction_key(const std::string& atom, const std::string& hook, int64_t position);

/// Concept atoms and their extracted directions. On disk: NAME.json (format
/// "scalpel.atoms/1") and NAME.safetensors beside it (directions keyed by
/// direction_key).
class Registry {
 public:
  explicit Registry(const std::vector<Atom>& atoms = {}, std::map<std::string, at::Tensor> directions = {});

  /// FileNotFound for a missing file, FormatError for a malformed one (names
  /// the file and the entry).
  static Registry load(const std::string& path);
  /// The shipped registry (compiled into the library): shields math, coding,
  /// logic, factual, story; confounds imperative, formal, long, polite,
  /// list_format. Prompts written for scalpel.
  static Registry default_registry();
  /// From the text of a registry file; `base_dir` resolves prompt files.
  static Registry from_json(const std::string& json, const std::string& base_dir = "", const std::string& name = "registry");

  /// Writes NAME.json and (when there are directions) NAME.safetensors, each
  /// atomically. Returns `path`.
  std::string save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  std::string to_json() const;

  /// InvalidArgument when an atom of that name is already registered.
  void add(const Atom& atom);
  /// Atom names of the given kinds (empty = all), in registration order.
  std::vector<std::string> names(const std::vector<std::string>& kinds = {}) const;
  const std::vector<Atom>& atoms() const { return atoms_; }
  /// KeyError naming the registered atoms for an unknown name.
  const Atom& atom(const std::string& name) const;

  std::map<std::string, at::Tensor>& directions() { return directions_; }
  const std::map<std::string, at::Tensor>& directions() const { return directions_; }

  /// Each atom's direction (mean difference, or with method "pca" the first
  /// principal component) at every hook and position; `names` empty = all atoms.
  void extract(Transformer& model, const std::vector<std::string>& hooks, const std::vector<int64_t>& positions,
               const std::optional<PromptFormat>& fmt = std::nullopt, const std::vector<std::string>& names = {},
               const std::string& method = "mean", int64_t batch_size = 32);
  /// KeyError (saying to run extract) when the direction is missing.
  at::Tensor direction(const std::string& atom, const std::string& hook, int64_t position) const;
  /// The atoms of `kinds` not in `exclude` and their directions stacked [k, d].
  std::pair<std::vector<std::string>, at::Tensor> matrix(const std::string& hook, int64_t position,
                                                         const std::vector<std::string>& kinds = {"shield", "confound"},
                                                         const std::vector<std::string>& exclude = {}) const;
  RegistryAudit audit(const std::string& hook, int64_t position,
                      const std::vector<std::string>& kinds = {"shield", "confound"},
                      double collinear_cosine = 0.9) const;

 private:
  std::vector<Atom> atoms_;
  std::map<std::string, at::Tensor> directions_;
};

// -------------------------------------------------------------- selection --

/// Directions per hook and position: directions[h, p] is [d].
struct Candidates {
  std::vector<std::string> hooks;
  std::vector<int64_t> positions;
  at::Tensor directions;  ///< [hooks, positions, d]
};

/// Directions between two request sets at `hooks` (default: every layer's
/// resid_pre and resid_mid) and `positions` (default: the post-instruction
/// positions). method "mean": difference in means; "pca": the first principal
/// component scaled to the mean difference's norm.
Candidates candidate_directions(Transformer& model, const std::vector<std::string>& harmful,
                                const std::vector<std::string>& harmless,
                                const std::optional<PromptFormat>& fmt = std::nullopt,
                                const std::vector<std::string>& hooks = {}, const std::vector<int64_t>& positions = {},
                                const std::string& method = "mean", int64_t batch_size = 32);

/// One candidate's scores in select_direction (bypass, kl and induce are unset
/// for a zero direction).
struct CandidateScore {
  std::string hook;
  int64_t layer = 0;
  int64_t position = 0;
  double norm = 0;
  std::optional<double> bypass;  ///< mean refusal score on harmful prompts, direction ablated
  std::optional<double> kl;      ///< mean first-token KL on harmless prompts, direction ablated
  std::optional<double> induce;  ///< mean refusal score on harmless prompts, direction added at its layer
  bool eligible = false;
  std::string reason;            ///< why not eligible ("" when eligible)
  double baseline = 0;           ///< mean refusal score on harmful prompts, no edit
};

struct Selection {
  std::string hook;
  int64_t position = 0;
  at::Tensor direction;
  std::vector<CandidateScore> rows;  ///< every candidate
  std::string to_json() const;       ///< {"hook", "position", "candidates": [...]}
};

/// Arditi et al.'s selection: for each candidate, bypass (lower is better),
/// induce (must be > 0) and KL (must be < kl_threshold); candidates in the last
/// `exclude_last` fraction of layers are excluded. The eligible candidate with
/// the lowest bypass wins; RuntimeError naming the filters when none passes.
/// `tokens` empty = refusal_tokens(model, fmt).
Selection select_direction(Transformer& model, const Candidates& candidates, const std::vector<std::string>& harmful_val,
                           const std::vector<std::string>& harmless_val,
                           const std::optional<PromptFormat>& fmt = std::nullopt, const std::vector<int64_t>& tokens = {},
                           double kl_threshold = 0.1, double exclude_last = 0.2, bool progress = true);

// -------------------------------------------------------------------- SRA --

struct SRAResult {
  at::Tensor dirty;  ///< as given
  at::Tensor clean;  ///< float32: dirty minus what the atoms predict
  std::vector<std::string> atoms;
  RidgeResult ridge;
  std::string hook;
  int64_t position = 0;
  AtomAudit audit;
  std::string audit_json() const;  ///< {"cosines", "condition_number", "collinear": [[a, b], ...]}
  std::string to_json() const;
};

/// Surgical Refusal Ablation's direction: `dirty` minus what the registry's
/// atoms of `kinds` (not in `exclude`) at the same site predict by ridge
/// regression (λ by GCV when lambda < 0).
SRAResult surgical_direction(const at::Tensor& dirty, const Registry& registry, const std::string& hook,
                             int64_t position, double lambda = -1.0,
                             const std::vector<std::string>& kinds = {"shield", "confound"},
                             const std::vector<std::string>& exclude = {});

// ------------------------------------------------------------- evaluation --

/// $SCALPEL_DATA, else $SCALPEL_SHARED/data, when the directory exists
/// (Python's sra.shared_data_dir also looks beside the repository).
std::optional<std::string> shared_data_dir();

/// `n` consecutive windows of `seq_len` tokens (after the BOS the tokenizer
/// adds, if any) from WikiText-2 (raw) test: data_dir/wikitext-2-raw/wiki.test.raw.
/// data_dir "" = shared_data_dir(). FileNotFound saying how to point at the data.
std::vector<std::vector<int64_t>> wikitext2(const Tokenizer& tokenizer, int64_t n = 32, int64_t seq_len = 128,
                                            const std::string& data_dir = "");
/// (question, reference solution) pairs from data_dir/gsm8k/test.jsonl.
std::vector<std::pair<std::string, std::string>> gsm8k(int64_t n = 32, const std::string& data_dir = "");
/// (task, reference code) pairs from data_dir/mbpp/mbpp.jsonl.
std::vector<std::pair<std::string, std::string>> mbpp(int64_t n = 32, const std::string& data_dir = "");

/// Perplexity of the reference solutions given their prompts (fmt(prompt) then
/// the solution; prompt tokens are not scored; at most max_tokens per pair).
double solution_perplexity(Transformer& model, const std::vector<std::pair<std::string, std::string>>& pairs,
                           const PromptFormat& fmt = {}, int64_t max_tokens = 256, int64_t batch_size = 8);

using Judge = std::function<bool(const std::string& completion)>;

struct EvalOptions {
  at::Tensor reference_logits;      ///< last_logits of the harmless prompts, unedited (undefined: no KL)
  std::vector<int64_t> tokens;      ///< refusal tokens (empty: refusal_tokens(model, fmt))
  std::vector<std::vector<int64_t>> texts;  ///< token windows for perplexity (e.g. wikitext2)
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> solutions;  ///< name → pairs
  int64_t max_new_tokens = 24;
  Judge judge;                      ///< empty: is_refusal (substring judge)
};

struct EvalReport {
  double refusal_rate = 0;   ///< judged refusals of greedy completions on harmful
  double over_refusal = 0;   ///< the same on harmless
  double refusal_score = 0;  ///< mean logit refusal score on harmful
  std::optional<double> first_token_kl;
  std::optional<double> perplexity;
  std::vector<std::pair<std::string, double>> solution_perplexities;  ///< reported as NAME_perplexity
  std::vector<std::string> harmful_completions, harmless_completions;
  std::vector<std::string> harmful, harmless;
  std::string to_json() const;  ///< the numbers and three examples of each set
};

/// The evaluation battery under whatever edit is active.
EvalReport evaluate(Transformer& model, const std::vector<std::string>& harmful, const std::vector<std::string>& harmless,
                    const std::optional<PromptFormat>& fmt = std::nullopt, const EvalOptions& options = {});

// ---------------------------------------------------------- mining, export --

struct MiningRound {
  int64_t round = 0;
  double refusal_rate = 0;  ///< on the harmful pool, edit active
  double mean_kl = 0, max_kl = 0;  ///< first-token KL on the harmless pool
  int64_t harmful_set = 0, harmless_set = 0;  ///< set sizes the round's direction came from
  std::vector<std::string> added_harmful, added_harmless;
  std::string to_json() const;
};

struct MiningOptions {
  int64_t rounds = 3;
  double target_refusal = 0.02;
  int64_t top_kl = 4;
  double gamma = 1.0;
  int64_t max_new_tokens = 16;
  Judge judge;  ///< empty: is_refusal
  std::function<void(const std::string&)> log;  ///< empty: scalpel's logger (info)
};

/// Iterates: direction from the current sets (make_direction); ablate it;
/// requests of harmful_pool still refused and the top_kl requests of
/// harmless_pool whose first-token KL is highest join the sets. Stops when the
/// pool's refusal rate ≤ target_refusal, nothing new is found, or after
/// `rounds`. Returns the last direction and one row per round.
std::pair<at::Tensor, std::vector<MiningRound>> mine_hard_negatives(
    Transformer& model,
    const std::function<at::Tensor(const std::vector<std::string>&, const std::vector<std::string>&)>& make_direction,
    const std::vector<std::string>& harmful, const std::vector<std::string>& harmless,
    const std::vector<std::string>& harmful_pool, const std::vector<std::string>& harmless_pool,
    const std::optional<PromptFormat>& fmt = std::nullopt, const MiningOptions& options = {});

/// A Hugging Face directory whose weights have `direction` projected out
/// (orthogonalize_weights with gamma and from_layer), with the direction and γ
/// recorded in scalpel_edit.json; written atomically, the source only read. A
/// tied model is untied when its embedding is edited. Returns `out`.
std::string export_ablated(const std::string& source, const std::string& out, const at::Tensor& direction,
                           double gamma = 1.0, bool overwrite = false, int64_t from_layer = 0);

}  // namespace scalpel
