// scalpel/steer/gate.hpp — input-adaptive strength: a linear harm probe on a
// site's activation, and a gate that scales a breaker's δ or a steering
// vector's α per example by what the probe reads.
//
//   auto probe = HarmProbe::fit(model, "blocks.1.hook_resid_pre", harmful_ids, benign_ids);
//   auto g = GatedIntervention::create(model, std::make_shared<SteeringVector>(sv), probe);
//   train_gate(model, g, data, objective, options);        // w, b end to end through the objective
//   { auto h = g.attach(model); model.generate(...); }      // α(x) = α·σ(w·P(x) + b)
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "scalpel/steer/breaker.hpp"
#include "scalpel/steer/intervention.hpp"

namespace scalpel {

/// P(x) = σ(u·a(x) + c), a(x) the activation at `hook` at the prompt's last
/// token (per-head hooks flattened head-major).
struct HarmProbe {
  std::string hook;
  at::Tensor weight;  ///< u, float32 [d]
  double bias = 0.0;  ///< c

  /// L2-regularized logistic regression (Newton's method in float64 on
  /// standardized activations; the penalty `l2` on the standardized weights,
  /// not the intercept) of harmful (1) vs benign (0) prompts.
  static HarmProbe fit(Transformer& model, const std::string& hook, const std::vector<std::vector<int64_t>>& harmful,
                       const std::vector<std::vector<int64_t>>& benign, double l2 = 1e-2, int64_t batch_size = 32);
  /// P for each prompt (its last token), float32 [n].
  at::Tensor predict(Transformer& model, const std::vector<std::vector<int64_t>>& prompts, int64_t batch_size = 32) const;
  /// u·a + c for activations a [..., d].
  at::Tensor logit(const at::Tensor& activations) const;
};

/// An intervention whose strength depends on the input, per example:
///   "sigmoid":   s(x) = s·σ(w·P(x) + b)   (w, b: `gate`, learned by train_gate)
///   "threshold": s(x) = s·[P(x) > threshold]   (a hard gate, as conditional
///                activation steering tunes by grid search)
/// s is the inner intervention's strength (a breaker's δ, a vector's α; the
/// `strength` of attach overrides it). P is read on the prompt pass at each
/// row's last token — the last position in a plain forward or generate()'s
/// prompt pass (it left-pads), each prompt's own last token while train_gate
/// runs — and held for the generated tokens. The probe's site must come no
/// later than the inner's first site (InvalidArgument otherwise).
class GatedIntervention : public Intervention {
 public:
  static GatedIntervention create(const Transformer& model, std::shared_ptr<Intervention> inner, HarmProbe probe,
                                  const std::string& mode = "sigmoid", double w = 8.0, double b = -4.0,
                                  double threshold = 0.5);

  std::shared_ptr<Intervention> inner;
  HarmProbe probe;
  std::string mode = "sigmoid";
  at::Tensor gate;  ///< float32 [2]: w, b
  double threshold = 0.5;

  std::string kind() const override { return "gated"; }
  HookHandle attach(Transformer& model, std::optional<double> strength = std::nullopt, bool check_model = true) const override;
  std::vector<std::pair<std::string, at::Tensor>> tensors() const override;
  std::string fields_json() const override;
  /// A gate sits where its inner intervention sits, with its positions rule.
  std::vector<std::string> site_hooks() const override { return inner->site_hooks(); }
  std::string positions_rule() const override { return inner->positions_rule(); }
  /// The factor on the inner strength for each prompt (its last token), float32 [n].
  at::Tensor gate_values(Transformer& model, const std::vector<std::vector<int64_t>>& prompts, int64_t batch_size = 32) const;
  /// Validates the probe, the gate and the site order against `model`.
  void check(const Transformer& model) const;
};

/// Learns the gate's w and b end to end through the breaker objective (the
/// same harm and preservation terms as train_breaker / train_steering; the
/// inner intervention and the probe stay fixed), through train/'s loop.
/// Only a "sigmoid" gate trains. Checkpoints hold gated.safetensors.
TrainResult train_gate(Transformer& model, GatedIntervention& gated, const BreakerData& data,
                       const BreakerObjective& objective, const TrainOptions& options);

/// A PEFT adapter or a control vector cannot carry a gate: these refuse
/// (Unsupported, saying so). Export `gated.inner` — the constant-strength form —
/// when that is what you want.
void export_peft(const Transformer& model, const GatedIntervention& gated, const std::string& directory,
                 std::optional<double> delta = std::nullopt, bool overwrite = false, bool check_model = true);
void export_control_vector(const Transformer& model, const GatedIntervention& gated, const std::string& path,
                           std::optional<double> alpha = std::nullopt, bool overwrite = false);

}  // namespace scalpel
