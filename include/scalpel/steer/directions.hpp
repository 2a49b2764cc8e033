// scalpel/steer/directions.hpp — behaviour directions in the residual
// stream, and the edits that remove or add them.
//
//   acts = collect_activations(model, prompts, {"blocks.1.hook_resid_pre"}, {-3, -2, -1});
//   v    = mean_difference(harmful_acts, harmless_acts);         // [names, positions, d_model]
//   r    = ridge_residualize(v_dirty, shield_and_confound_atoms); // Surgical Refusal Ablation
//   { auto h = ablate_direction(model, r.clean); ... }             // inference-time ablation
//   orthogonalize_weights(model, r.clean, 1.0);                   // the same edit, baked into W
//
// Every write into the residual stream (the token and position embeddings, each
// attention output and each MLP output) is what the ablation projects and what
// the weight edit rewrites, so with gamma = 1 the two give the same logits.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "scalpel/hooks/edits.hpp"
#include "scalpel/model/transformer.hpp"

namespace scalpel {

/// Activations of each prompt at `names` (hook points with [batch, pos, d]
/// activations, or per-head ones [batch, pos, heads, d_head] read flattened
/// head-major to d = heads·d_head; names of one call share d) and `positions`
/// (negative = from the end of each prompt, so
/// prompts of different lengths align at their last tokens): a float32 tensor
/// [prompts, names, positions, d]. Prompts run left-padded in batches of
/// `batch_size`; progress is logged for long runs.
at::Tensor collect_activations(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                               const std::vector<std::string>& names, const std::vector<int64_t>& positions,
                               int64_t batch_size = 32);

/// mean(positive) − mean(negative) over the first dimension (prompts): the
/// unnormalized difference-in-means direction, shape positive.shape[1:].
at::Tensor mean_difference(const at::Tensor& positive, const at::Tensor& negative);

/// The first `k` principal components of the two sets pooled and centred on
/// the pooled mean, per trailing index: inputs [n, ..., d] → [k, ..., d], unit
/// vectors, each signed so that it points from `negative` towards `positive`.
at::Tensor pca_directions(const at::Tensor& positive, const at::Tensor& negative, int64_t k = 1);

/// v / |v| along the last dimension (InvalidArgument for a zero vector).
at::Tensor unit(const at::Tensor& v);

/// Ridge regression of `v` [d] on the columns of `atoms` (given as rows,
/// [k, d]) and the residual: clean = v − Aᵀβ with β = (A Aᵀ + λI)⁻¹ A v.
struct RidgeResult {
  at::Tensor clean;                 ///< [d] float64: v minus what the atoms predict
  std::vector<double> coefficients; ///< β, one per atom
  double lambda = 0.0;              ///< the λ used (given, or chosen by GCV)
  double explained = 0.0;           ///< 1 − |clean|² / |v|²
  double cosine = 0.0;              ///< cos(v, clean)
  std::vector<double> gcv_lambdas;  ///< the GCV grid (empty when λ was given)
  std::vector<double> gcv_scores;   ///< GCV(λ) on that grid
  /// {"coefficients", "lambda", "explained", "cosine", "gcv_lambdas", "gcv_scores"}
  std::string to_json() const;
};

/// `lambda` < 0 chooses λ by generalized cross-validation over a log grid of
/// `grid` values spanning 1e-8…1e3 × the largest squared singular value of A.
/// Computed in float64 with Eigen.
RidgeResult ridge_residualize(const at::Tensor& v, const at::Tensor& atoms, double lambda = -1.0, int64_t grid = 60);

/// An audit of a set of directions (rows of [k, d]): pairwise cosines, the
/// condition number of the row-normalized matrix, and the pairs whose |cos|
/// exceeds `collinear_cosine` (also logged as a warning).
struct AtomAudit {
  at::Tensor cosines;  ///< [k, k]
  double condition_number = 0.0;
  std::vector<std::pair<int64_t, int64_t>> collinear;
};
AtomAudit audit_directions(const at::Tensor& atoms, double collinear_cosine = 0.9);

/// The hook points that write into the residual stream: hook_embed,
/// hook_pos_embed (learned positions), and every block's hook_attn_out and
/// hook_mlp_out. With from_layer > 0: only the writes of blocks from_layer..
/// (no embeddings).
std::vector<std::string> residual_write_points(const Transformer& model, int64_t from_layer = 0);

/// Directional ablation at inference time: projects `v` out of every write into
/// the residual stream, at every layer and position, until the handle is
/// removed (Python: a `with` block). from_layer > 0 leaves the embeddings and
/// the blocks before it alone.
HookHandle ablate_direction(Transformer& model, const at::Tensor& v, double gamma = 1.0, int64_t from_layer = 0);

/// Activation addition: adds alpha·v̂ to the residual stream entering `layer`
/// (blocks.{layer}.hook_resid_pre) at `positions` (empty = all), until the
/// handle is removed. `normalize` = false adds alpha·v as given.
HookHandle add_direction(Transformer& model, const at::Tensor& v, double alpha, int64_t layer,
                         const std::vector<int64_t>& positions = {}, bool normalize = true);

/// The directional ablation baked into the weights: W ← (I − gamma·v̂v̂ᵀ)W for
/// every matrix and bias that writes into the residual stream
/// (Transformer::residual_writers: the embeddings, each attention output and
/// MLP output projection, read from the model's structure, so it works on
/// every architecture — Llama family, GPT-2, GPT-NeoX, Phi-3). In place, on
/// the model's live weights.
/// Tied embeddings: Unsupported unless from_layer > 0 (the embedding is not
/// edited) or the model was untied first (Transformer::untie_embeddings), since
/// editing the shared matrix would change the unembedding too. Unsupported for
/// architectures whose writes pass through a norm (Gemma's post-norms).
/// from_layer > 0 edits only blocks from_layer.. (equal to ablate_direction
/// with the same from_layer). Returns the names of the edited tensors.
std::vector<std::string> orthogonalize_weights(Transformer& model, const at::Tensor& v, double gamma = 1.0,
                                               int64_t from_layer = 0);

}  // namespace scalpel
