// scalpel/steer/atoms.hpp — concept atoms: named prompt-set pairs whose
// directions are what a surgical edit must keep (shields) or must not be
// confused with (confounds), kept in a registry on disk (NAME.json, format
// "scalpel.atoms/1", and NAME.safetensors beside it). A malformed registry
// file raises FormatError naming the file and the entry.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/io/prompts.hpp"
#include "scalpel/steer/directions.hpp"

namespace scalpel {

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

}  // namespace scalpel
