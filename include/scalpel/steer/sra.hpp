// scalpel/steer/sra.hpp — Surgical Refusal Ablation end to end: Arditi et
// al.'s direction selection, the ridge-cleaned ("surgical") direction,
// hard-negative mining and the export of the edited weights (docs/sra.md).
// Prompt formats are in io/prompts.hpp, atoms in steer/atoms.hpp, the
// evaluation battery in eval/evaluate.hpp.
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
// Python: scalpel.sra, with the same names (dicts where C++ returns JSON). The JSON of results writes
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

#include "scalpel/eval/evaluate.hpp"
#include "scalpel/model/prompts.hpp"
#include "scalpel/steer/atoms.hpp"
#include "scalpel/steer/directions.hpp"

namespace scalpel {

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
  std::string to_json() const;   ///< the fields; unset scores are left out
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
