// scalpel/trace/circuit.hpp — the minimal circuit (SCALPEL §2.1.3): rank the
// components of one kind (heads, or attention / MLP outputs per layer) by
// their mean patching effect over a dataset of pairs, then find the smallest
// set S whose joint patching (source -> target, all positions) brings the
// mean metric under a threshold τ — or recovers a fraction of the gap — by
// adding components in rank order and pruning those the set can do without.
// Every candidate set is a row of one batched forward pass per pair.
// Validation: ablations (zero, mean, resample) of component sets, and the
// circuit on held-out pairs and on unrelated text (KL, perplexity) next to
// random sets of its size, so a circuit that breaks everything shows as such.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "scalpel/trace/patching.hpp"

namespace scalpel {

/// The metric of each pair (or prompt): one for all, or one per pair — e.g.
/// a logit difference whose answer tokens differ from pair to pair.
class PairMetric {
 public:
  PairMetric(Metric metric) : metrics_{std::move(metric)} {}  // NOLINT: one metric converts implicitly
  template <typename F, typename = std::enable_if_t<std::is_invocable_r_v<at::Tensor, F, const at::Tensor&> &&
                                                    !std::is_same_v<std::decay_t<F>, Metric> &&
                                                    !std::is_same_v<std::decay_t<F>, PairMetric>>>
  PairMetric(F fn) : metrics_{Metric(std::move(fn))} {}  // NOLINT
  PairMetric(std::vector<Metric> per_pair) : metrics_(std::move(per_pair)) {}  // NOLINT
  /// The metric of pair i.
  const Metric& operator[](size_t i) const { return metrics_.size() == 1 ? metrics_[0] : metrics_.at(i); }
  /// InvalidArgument unless one metric, or one per pair.
  void check(size_t pairs) const;

 private:
  std::vector<Metric> metrics_;
};

/// (layer, unit): unit is a head (z, result, q; k/v heads for k, v) or -1 for
/// whole-layer components (attn_out, mlp_out, resid_*).
using CircuitComponent = std::pair<int64_t, int64_t>;

struct CircuitOptions {
  std::string component = "z";
  /// τ: stop when the mean metric with S patched is <= τ (SCALPEL: harm falls
  /// under τ). NaN: use min_recovered instead.
  double threshold = std::numeric_limits<double>::quiet_NaN();
  /// Else: stop when (mean metric(S) − mean target) / (mean source − mean target) >= this.
  double min_recovered = 0.9;
  /// Drop members the set can do without, after the greedy growth.
  bool prune = true;
  /// Candidate sets per forward pass.
  int64_t batch_size = 32;
  /// The metric reads only the last position: unembed just that one (logits
  /// [rows, 1, vocab]) — much faster with large vocabularies.
  bool last_position_only = false;
};

struct CircuitResult {
  std::vector<CircuitComponent> ranking;  // every component, most effective first
  at::Tensor ranking_effect;              // its mean effect toward the source, [n]
  at::Tensor curve;                       // mean metric with the top-k patched, k = 0..n: [n + 1]
  std::vector<CircuitComponent> circuit;  // the minimal set found (rank order)
  double circuit_metric = 0.0;            // mean metric with the circuit patched
  double source_mean = 0.0, target_mean = 0.0;
  double recovered = 0.0;                 // fraction of the gap the circuit recovers
  bool reached = false;                   // whether the criterion was met at all
};

/// Mean metric over the pairs with each set of components patched from its
/// source run into its target run: [sets]. sources[i], targets[i]: [1, pos_i].
at::Tensor patch_sets(Transformer& model, const std::vector<at::Tensor>& sources, const std::vector<at::Tensor>& targets,
                      const PairMetric& metric, const std::string& component,
                      const std::vector<std::vector<CircuitComponent>>& sets, int64_t batch_size = 32,
                      bool last_position_only = false);

CircuitResult minimal_circuit(Transformer& model, const std::vector<at::Tensor>& sources,
                              const std::vector<at::Tensor>& targets, const PairMetric& metric,
                              const CircuitOptions& options = {});

/// What an ablated component's activation is replaced with.
struct AblationOptions {
  /// "zero"; "mean": the mean activation over the `reference` prompts;
  /// "resample": the activation of a reference prompt drawn at random (it
  /// must have the ablated prompt's token length), averaged over `samples` draws.
  std::string kind = "mean";
  /// [1, pos] prompts the mean / resampled activations come from (empty: the
  /// ablated prompts themselves; a prompt never resamples itself then).
  std::vector<at::Tensor> reference;
  /// "mean": one mean per position (all prompts and references of one length)
  /// instead of one over all positions.
  bool per_position = false;
  int64_t samples = 1;
  uint64_t seed = 0;
  /// Sets per forward pass.
  int64_t batch_size = 32;
  /// The metric reads only the last position: unembed just that one (logits
  /// [rows, 1, vocab]) — much faster with large vocabularies.
  bool last_position_only = false;
};

/// Mean metric over `prompts` ([1, pos] each) with each set of components
/// ablated (replaced as `options` says): [sets]. An empty set is the
/// unablated model.
at::Tensor ablate_sets(Transformer& model, const std::vector<at::Tensor>& prompts, const PairMetric& metric,
                       const std::string& component, const std::vector<std::vector<CircuitComponent>>& sets,
                       const AblationOptions& options = {});

struct CircuitValidationOptions {
  std::string component = "z";
  /// Random component sets of the circuit's size, for comparison (0: none).
  int64_t random_sets = 5;
  uint64_t seed = 0;
  int64_t batch_size = 32;
  /// For the pairs' metric (the unrelated text always uses every position).
  bool last_position_only = false;
};

/// How a circuit found on some pairs holds up on others, and what it costs
/// elsewhere. "Recovered" is the fraction of the source − target gap.
struct CircuitValidation {
  int64_t pairs = 0;
  double source_mean = 0.0, target_mean = 0.0;
  /// The circuit patched from each pair's own source run.
  double patched_mean = 0.0, recovered = 0.0;
  /// Everything of the component except the circuit patched (faithfulness:
  /// near 0 when the circuit carries the behaviour alone).
  double complement_recovered = 0.0;
  /// Random same-size sets patched: mean over the sets.
  double random_recovered = 0.0;
  /// The edit one can deploy without a paired run: the circuit replaced by
  /// its mean over the source runs (all pairs, all positions).
  double mean_patched_mean = 0.0, mean_patched_recovered = 0.0;
  /// That edit on unrelated text: mean per-token KL(unedited ‖ edited) of the
  /// next-token distributions, and perplexity without and with it.
  int64_t text_tokens = 0;
  double kl = 0.0, perplexity = 0.0, edited_perplexity = 0.0;
  /// The same for the random sets (means over the sets).
  double random_kl = 0.0, random_edited_perplexity = 0.0;
};

/// Validates `circuit` on held-out pairs (sources[i] -> targets[i]) and on
/// unrelated `texts` ([1, pos] each, at least 2 tokens; may be empty).
CircuitValidation validate_circuit(Transformer& model, const std::vector<CircuitComponent>& circuit,
                                   const std::vector<at::Tensor>& sources, const std::vector<at::Tensor>& targets,
                                   const PairMetric& metric, const std::vector<at::Tensor>& texts,
                                   const CircuitValidationOptions& options = {});

}  // namespace scalpel
