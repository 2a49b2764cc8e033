// scalpel/steer/breaker.hpp — low-rank circuit breakers (SCALPEL §2.2.1):
// once tracing has found the components that carry a behaviour, rank-r
// adapters on them,
//
//     a ← a + δ·B(A a),   A ∈ R^{r×d}, B ∈ R^{d×r},
//
// trained with the model frozen on λ1·L_harm + λ2·L_preserve, applied at
// inference with δ as a knob, merged into the weights where the site feeds a
// linear map, and exported as a PEFT LoRA adapter.
//
//   auto cb  = CircuitBreaker::create(*model, {{"blocks.2.attn.hook_z", 1}, {"blocks.3.mlp.hook_post"}}, 4);
//   auto res = train_breaker(*model, cb, data, objective, options);   // only A and B learn
//   { auto h = cb.attach(*model); ... }                                 // scoped
//   save_intervention(cb, "rude.safetensors");
//   cb.merge(*model);                                                   // baked in (where it can be)
//   export_peft(*model, cb, "adapter/");                                // peft loads it onto transformers
//
// Sites: attn.hook_z (one head, or head -1: all heads as one vector of
// n_heads·d_head), mlp.hook_post, hook_attn_out, hook_mlp_out and the residual
// stream (hook_resid_pre / mid / post). Several adapters at one site read the
// same activation and their updates add.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "scalpel/steer/intervention.hpp"
#include "scalpel/train/train.hpp"

namespace scalpel {

class Tokenizer;

/// Where an adapter sits: a hook point and, for attn.hook_z, a head (-1: all heads).
struct BreakerSite {
  std::string hook;
  int64_t head = -1;
};

/// One rank-r adapter on a site's activation (a head's slice for a per-head site).
struct BreakerAdapter {
  BreakerSite site;
  at::Tensor A;  // [rank, d] float32
  at::Tensor B;  // [d, rank] float32
};

class CircuitBreaker : public Intervention {
 public:
  /// Rank-`rank` adapters at `sites` of `model` (each site's width read from
  /// the model): A ~ N(0, 1/d) from `seed`, B = 0, so a new breaker changes
  /// nothing until trained. Throws UnknownName for a site the model lacks and
  /// Unsupported for a component breakers do not sit on.
  static CircuitBreaker create(const Transformer& model, const std::vector<BreakerSite>& sites, int64_t rank,
                               uint64_t seed = 0);

  std::vector<BreakerAdapter> adapters;
  double delta = 1.0;
  /// "all", "prompt" (in generate(): the prompt's pass; in a plain forward:
  /// every position, or the prompt's positions while train_breaker runs) or
  /// "generated" (generate()'s later steps; the completion's positions in
  /// training).
  std::string positions = "all";

  std::string kind() const override { return "circuit_breaker"; }
  /// δ = 0 (or rank 0) attaches nothing: the logits stay bit-identical.
  HookHandle attach(Transformer& model, std::optional<double> delta = std::nullopt,
                    bool check_model = true) const override;
  std::vector<std::pair<std::string, at::Tensor>> tensors() const override;
  std::string fields_json() const override;
  std::vector<std::string> site_hooks() const override;
  HookHandle attach_shared(Transformer& model, std::optional<double> strength,
                           const std::shared_ptr<steer_detail::AttachState>& state) const override;
  std::string positions_rule() const override { return positions; }
  /// Rebuilds a breaker from its file's fields and tensors (load_intervention uses it).
  static CircuitBreaker from_parts(const std::string& fields_json,
                                   const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                   const std::string& where);

  /// Number of trained values (Σ 2·r·d).
  int64_t num_parameters() const;
  /// Validates sites and shapes against `model` (UnknownName, ShapeError).
  void check(const Transformer& model) const;
  /// "" when merge() can bake the breaker into `model`'s weights; else why not.
  std::string merge_blocker(const Transformer& model) const;
  /// Bakes it into the weights at `delta` (default: .delta): each adapter at
  /// the input of a linear map (attn.hook_z into the attention output
  /// matrix, mlp.hook_post into the MLP output matrix) or on the output of
  /// one without post-norms (hook_attn_out, hook_mlp_out) becomes a rank-r
  /// update of that matrix (and its bias). Unsupported, saying why, when a
  /// site cannot merge (the residual stream; post-norm outputs as Gemma's;
  /// positions other than "all").
  /// Refuses (as attach does) a model it was not made for: merging twice
  /// would otherwise apply the edit twice.
  void merge(Transformer& model, std::optional<double> delta = std::nullopt, bool check_model = true) const;
};

/// Writes a PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
/// that peft's PeftModel.from_pretrained loads onto the transformers model of
/// the same checkpoint, equal to the breaker at `delta` attached to `model`:
/// per target module lora_A = the adapter's A placed on the module's input,
/// lora_B its δ-scaled output map (rank_pattern when modules differ in rank;
/// lora_alpha = rank, so scaling is 1). Unsupported when merge() could not
/// (same reasons), when the matrix has a bias the update would change (LoRA
/// carries none), or when the target matrix is not a checkpoint tensor under
/// a Hugging Face name (e.g. GPT-2's Conv1D).
void export_peft(const Transformer& model, const CircuitBreaker& breaker, const std::string& directory,
                 std::optional<double> delta = std::nullopt, bool overwrite = false, bool check_model = true);

/// Data for train_breaker (token ids; build them with the model's tokenizer).
struct BreakerData {
  /// Harm triples: a prompt, the completion to suppress, the one to keep.
  std::vector<std::vector<int64_t>> prompts, harmful, neutral;
  /// Preserve text: sequences (≥ 2 tokens) whose behaviour must not change.
  std::vector<std::vector<int64_t>> preserve;
};

/// BreakerData from text: each (prompt, harmful, neutral) split as
/// encode_continuation splits it (BOS added), preserve texts encoded whole.
BreakerData breaker_data(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                         const std::vector<std::string>& harmful, const std::vector<std::string>& neutral,
                         const std::vector<std::string>& preserve = {});

/// The training objective L = λ_harm·L_harm + λ_preserve·L_preserve.
struct BreakerObjective {
  /// L_harm, with H = log p(harmful | prompt) − log p(neutral | prompt):
  ///   "margin":  mean softplus(H)  (pushes the harmful completion below the neutral one)
  ///   "squared": mean H²           (makes the two equally likely: bias removal)
  ///   "reroute": mean ReLU(cos(h', h)) of the residual stream at `layers` on
  ///              prompt + harmful, h' edited, h original (the circuit-breakers
  ///              paper); its gradient vanishes at the no-op, so a breaker whose
  ///              B are all zero starts from B ~ N(0, 0.01²) (seeded)
  ///   "custom":  `custom(model, rows)` — any differentiable scalar computed
  ///              with the breaker attached, for the harm triples `rows`
  std::string harm = "margin";
  /// L_preserve on the preserve text: "kl" (KL from the original model's
  /// next-token distributions at every position), "hidden" (mean squared
  /// distance of the residual stream at `layers`), or "none".
  std::string preserve = "kl";
  double lambda_harm = 1.0, lambda_preserve = 1.0;
  /// resid_post layers for "reroute" / "hidden" (default: the last layer a
  /// breaker sits at). With no KL or logit term the forward stops after the
  /// last of them.
  std::vector<int64_t> layers;
  std::function<at::Tensor(Transformer& model, const std::vector<int64_t>& rows)> custom;
  /// Preserve sequences per step (0: options.batch_size).
  int64_t preserve_batch_size = 0;
};

/// Trains the breaker's A and B (the model stays frozen) through train/'s
/// loop (AdamW, schedule, clipping, seeded batches, NaN guard; harm and
/// preserve logged as loss parts in run_dir/losses.csv). Weight decay applies
/// to A and B; resume_from and trainable are refused (the checkpoints hold the
/// breaker only). Returns the loop's result.
TrainResult train_breaker(Transformer& model, CircuitBreaker& breaker, const BreakerData& data,
                          const BreakerObjective& objective, const TrainOptions& options);

}  // namespace scalpel
