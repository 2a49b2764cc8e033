// scalpel/steer/intervention.hpp — what every intervention shares: the model
// it was made for (a fingerprint that tells a fine-tune of the same shape
// apart), attaching to a model as a scoped HookHandle, and the one file
// format.
//
// The file is one safetensors file: the intervention's tensors, and in the
// metadata "scalpel.intervention" a JSON description — kind, format version,
// scalpel version, the model fingerprint and the kind's own fields (sites,
// ranks, δ, …). Round trips are bit-exact; nothing is pickled. Read it with
// any safetensors reader; load_intervention refuses a file of another kind
// or version, or with missing or misshapen tensors, naming the file.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/hooks/hook_point.hpp"

namespace scalpel {

class Transformer;
namespace steer_detail {
struct AttachState;
}

/// Which model an intervention belongs to: its architecture, the names and
/// shapes of the weights that write into the residual stream, and a checksum
/// of a strided sample of those weights rounded to bfloat16 (so the same
/// checkpoint loaded as float32 or bfloat16 matches, and a fine-tune of the
/// same shape does not).
struct ModelFingerprint {
  std::string architecture;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  std::string checksum;  // 16 hex digits

  static ModelFingerprint of(const Transformer& model);
  /// "" when `model` matches; else what differs, in words.
  std::string mismatch(const Transformer& model) const;
  bool empty() const { return architecture.empty() && shapes.empty(); }
};

/// The base of every intervention (circuit breakers today; steering vectors,
/// probes and gates build on it).
class Intervention {
 public:
  virtual ~Intervention() = default;
  /// "circuit_breaker", …
  virtual std::string kind() const = 0;
  /// Applies it to `model` until the handle is removed (or destroyed).
  /// `strength` overrides the intervention's own (δ for a breaker) for this
  /// attachment. check_model: refuse a model whose fingerprint differs
  /// (InvalidArgument saying what differs); false attaches anyway to a model
  /// of the same shapes (e.g. a fine-tune, knowingly).
  virtual HookHandle attach(Transformer& model, std::optional<double> strength = std::nullopt,
                            bool check_model = true) const = 0;
  /// The tensors the file stores, by name.
  virtual std::vector<std::pair<std::string, at::Tensor>> tensors() const = 0;
  /// The kind's own fields as a JSON object (text).
  virtual std::string fields_json() const = 0;

  /// The model it was made for.
  ModelFingerprint model;

  /// For gates (steer/gate.hpp): the hook points the edit sits at, and its
  /// attachment with a state the gate shares (the positions rule, the
  /// per-example scale its probe sets). Kinds that cannot be gated throw
  /// Unsupported (the defaults).
  virtual std::vector<std::string> site_hooks() const;
  virtual HookHandle attach_shared(Transformer& model, std::optional<double> strength,
                                   const std::shared_ptr<steer_detail::AttachState>& state) const;
  /// "all", "prompt" or "generated".
  virtual std::string positions_rule() const { return "all"; }

  /// Throws InvalidArgument, saying what differs, when check_model and `model`
  /// is not the one it was made for.
  void check_model_matches(const Transformer& model, bool check_model = true) const;
};

/// Writes `intervention` to `path` (one safetensors file, atomically).
void save_intervention(const Intervention& intervention, const std::string& path);
/// Reads a file written by save_intervention (FileNotFound, FormatError).
std::shared_ptr<Intervention> load_intervention(const std::string& path);
/// The JSON description stored in the file (kind, version, model, fields).
std::string intervention_description(const std::string& path);

}  // namespace scalpel
