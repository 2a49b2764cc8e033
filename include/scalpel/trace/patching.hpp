// scalpel/trace/patching.hpp — activation patching sweeps: for every layer
// (and head, and position) of one component, copy the activation of a source
// run into a target run and measure a metric on the patched logits.
//
// Exact and fast: many patched variants run as the rows of one batch, the
// source activations come from one cached run, and each variant starts at the
// patched layer from the target run's cached residual stream (forward_from),
// so the layers before it are never recomputed. patch_sweep_naive does the
// same with one full forward per patch (TransformerLens's method): the
// reference in tests and benchmarks.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace scalpel {

class Transformer;

/// logits [variants, pos, vocab] -> one score per variant [variants].
using Metric = std::function<at::Tensor(const at::Tensor& logits)>;

struct SweepOptions {
  /// What is patched, per layer: "resid_pre", "resid_mid", "resid_post",
  /// "attn_out", "mlp_out" ([batch, pos, d_model]); "z", "result", "q", "k",
  /// "v" (per head); "mlp_post" (per neuron: needs per_position = false and
  /// is slow, d_mlp variants per layer).
  std::string component = "resid_pre";
  /// One variant per position (else the whole sequence at once).
  bool per_position = true;
  /// Variants per forward pass (rows of one batch).
  int64_t batch_size = 32;
  /// Layers to sweep (empty: all).
  std::vector<int64_t> layers;
  /// Positions to sweep when per_position (empty: all; negative counts from
  /// the end), e.g. the tokens where the two prompts differ and the last few.
  std::vector<int64_t> positions;
  /// The metric reads only the last position: unembed just that one
  /// (logits [variants, 1, vocab]) — much faster with large vocabularies.
  /// Per-head, per-position sweeps then also recompute only the positions
  /// from the patched one on (earlier positions cannot change), with the
  /// target run's keys and values for the rest; other hooks on the model see
  /// those shorter activations.
  bool last_position_only = false;
  /// attribution_patch of "q" or "k" only — AtP*'s QK fix: the attention
  /// pattern each query / key patch makes is computed exactly (from the target
  /// run's queries, keys and scores and the source's patched ones) and only the
  /// pattern's effect on the metric is linearized. Plain AtP linearizes the
  /// softmax too and misses patches that move a saturated attention pattern.
  bool qk_fix = false;
};

struct SweepResult {
  /// The metric with each patch: [layers] + [heads or neurons] + [pos], the
  /// bracketed dimensions present when the component has them / per_position.
  at::Tensor scores;
  /// The metric on the unpatched source and target runs.
  double source_score = 0.0;
  double target_score = 0.0;
  std::string component;
  std::vector<int64_t> layers;
  /// The positions of the "pos" dimension (ascending; empty without it).
  std::vector<int64_t> positions;
  /// Names of the dimensions of `scores`, e.g. {"layer", "head", "pos"}.
  std::vector<std::string> dims;
};

/// The sweep, fast. `source` and `target` are [1, pos] token tensors of the
/// same length (positions align; ShapeError otherwise, saying to pad or trim
/// the pair). Denoising: source = clean/neutral, target = corrupted/harmful;
/// noising: the other way round. Hooks already on the model stay active.
SweepResult patch_sweep(Transformer& model, const at::Tensor& source, const at::Tensor& target, const Metric& metric,
                        const SweepOptions& options = {});

/// The same numbers with one full forward pass per patched variant.
SweepResult patch_sweep_naive(Transformer& model, const at::Tensor& source, const at::Tensor& target,
                              const Metric& metric, const SweepOptions& options = {});

/// Attribution patching (AtP): the first-order estimate of every patch of the
/// sweep at once, metric(target) + Σ (source − target activation) · ∂metric/∂activation,
/// from one forward pass of the source and one forward + backward pass of the
/// target (≈ 3 forward-equivalents). Same result layout as patch_sweep
/// (batch_size is ignored; last_position_only unembeds only the last position). The metric must be
/// differentiable (torch operations on the logits).
SweepResult attribution_patch(Transformer& model, const at::Tensor& source, const at::Tensor& target,
                              const Metric& metric, const SweepOptions& options = {});

/// The hook name a component reads at `layer` ("z" -> blocks.{layer}.attn.hook_z).
std::string component_hook_name(const std::string& component, int64_t layer);

}  // namespace scalpel
