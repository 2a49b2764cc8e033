// scalpel/steer/steering.hpp — steering vectors: a ← a + α·v at chosen
// components and positions, built from contrast prompts (mean difference or
// the first principal component of the paired differences), optimized on the
// breaker objective, saved in the intervention format and exported as a
// llama.cpp / repeng control vector.
//
//   auto sv = SteeringVector::from_contrast(model, {{"blocks.6.hook_resid_post", -1}}, positive, negative);
//   { auto h = sv.attach(model, /*alpha=*/4.0); model.generate(...); }
//   train_steering(model, sv, data, objective, options);     // optimized, from the mean difference
//   export_control_vector(model, sv, "vector.gguf");          // llama.cpp --control-vector, repeng import_gguf
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "scalpel/steer/breaker.hpp"
#include "scalpel/steer/intervention.hpp"

namespace scalpel {

/// One vector per site: a site is a hook point and, for attn.hook_z, a head
/// (-1: every head, the vector then spans heads·d_head, head-major). The
/// components are the breaker's: attn.hook_z, mlp.hook_post, hook_attn_out,
/// hook_mlp_out, hook_resid_pre / mid / post.
class SteeringVector : public Intervention {
 public:
  /// Zero vectors at `sites` (UnknownName / Unsupported / InvalidArgument for a bad site).
  static SteeringVector create(const Transformer& model, const std::vector<BreakerSite>& sites);
  /// Vectors read from contrast prompts at each site, at `read_positions` of
  /// every prompt (negative: from its end; several are averaged):
  ///   "mean":     mean(positive) − mean(negative) (the sets may differ in size)
  ///   "pca_diff": the first principal component of the paired differences
  ///               positive[i] − negative[i] (centred; equal set sizes), signed
  ///               towards the mean difference and scaled to the mean
  ///               difference's projection on it, so α = 1 is comparable.
  static SteeringVector from_contrast(Transformer& model, const std::vector<BreakerSite>& sites,
                                      const std::vector<std::vector<int64_t>>& positive,
                                      const std::vector<std::vector<int64_t>>& negative,
                                      const std::vector<int64_t>& read_positions = {-1}, const std::string& method = "mean",
                                      int64_t batch_size = 32);

  std::vector<BreakerSite> sites;
  std::vector<at::Tensor> vectors;  ///< float32 [width of the site], one per site
  double alpha = 1.0;
  /// "all", "prompt" or "generated", as a breaker's.
  std::string positions = "all";
  /// > 0: each vector acts as v·min(1, max_norm/|v|) (training stays in the ball); 0: unbounded.
  double max_norm = 0.0;

  std::string kind() const override { return "steering_vector"; }
  /// α = 0 attaches nothing (bit-identical logits). `alpha` overrides .alpha.
  HookHandle attach(Transformer& model, std::optional<double> alpha = std::nullopt, bool check_model = true) const override;
  std::vector<std::pair<std::string, at::Tensor>> tensors() const override;
  std::string fields_json() const override;
  std::vector<std::string> site_hooks() const override;
  HookHandle attach_shared(Transformer& model, std::optional<double> strength,
                           const std::shared_ptr<steer_detail::AttachState>& state) const override;
  std::string positions_rule() const override { return positions; }
  static SteeringVector from_parts(const std::string& fields_json, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                   const std::string& where);
  /// The vectors as they act (max_norm applied), detached.
  std::vector<at::Tensor> effective_vectors() const;
  int64_t num_parameters() const;
  /// Validates sites, shapes, α, positions and max_norm against `model`.
  void check(const Transformer& model) const;
};

/// Optimizes the vectors in place on the breaker objective (harm margin,
/// squared, reroute or a custom metric; KL or hidden-state preservation)
/// through train/'s loop, the model frozen; max_norm bounds them throughout.
/// Start from from_contrast's vectors (the usual case) or from create's zeros.
/// Checkpoints hold steering.safetensors.
TrainResult train_steering(Transformer& model, SteeringVector& vector, const BreakerData& data,
                           const BreakerObjective& objective, const TrainOptions& options);

/// Writes the residual-stream vectors (at `alpha`, default .alpha, max_norm
/// applied) as a llama.cpp / repeng control vector: a GGUF file with
/// general.architecture = "controlvector", controlvector.model_hint (the
/// architecture), controlvector.layer_count, and one float32 tensor
/// "direction.k" per block k whose output gets it — llama.cpp adds
/// direction.k to the output of block k (0-based) for k ≥ 1, as repeng's layer
/// k does. So hook_resid_post of layer k is direction.k and hook_resid_pre of
/// layer k is direction.(k−1); vectors of the same block are summed.
/// Unsupported, saying why, for any other site (heads, MLPs, resid_mid), the
/// output of block 0 (llama.cpp never steers it), and positions other than
/// "all" (a control vector acts at every position).
void export_control_vector(const Transformer& model, const SteeringVector& vector, const std::string& path,
                           std::optional<double> alpha = std::nullopt, bool overwrite = false);

}  // namespace scalpel
