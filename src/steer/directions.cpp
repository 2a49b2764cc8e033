// SCALPEL_USES_TORCH
// Directions and direction edits (see scalpel/steer/directions.hpp).
#include "scalpel/steer/directions.hpp"

#include <torch/torch.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "scalpel/errors.hpp"
#include "scalpel/hooks/edits.hpp"
#include "scalpel/log.hpp"
#include "scalpel/eval/metrics.hpp"
#include "util/logging.hpp"
#include "util/messages.hpp"
#include "util/json_text.hpp"
#include "eval/detail.hpp"
#include "scalpel/hooks/names.hpp"
#include "steer/detail.hpp"

namespace scalpel {
namespace {

using detail::check_prompts;
using detail::left_padded;
using detail::shape_of;

at::Tensor as_vector(const at::Tensor& v, int64_t d, const char* what) {
  if (!v.defined() || v.dim() != 1 || v.size(0) != d)
    throw ShapeError(detail::expected_got(what, "a vector of shape [" + std::to_string(d) + "] (d_model)",
                                          shape_of(v)));
  const double n = v.to(at::kDouble).norm().item<double>();
  if (!(n > 0) || !std::isfinite(n))
    throw InvalidArgument(detail::expected_got(what, "a finite nonzero vector", "norm " + std::to_string(n)));
  return v;
}

}  // namespace

at::Tensor collect_activations(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                               const std::vector<std::string>& names, const std::vector<int64_t>& positions,
                               int64_t batch_size) {
  check_prompts(prompts, "collect_activations prompt");
  if (names.empty()) throw InvalidArgument(detail::expected_got("collect_activations names", "at least one hook name", "none"));
  if (positions.empty())
    throw InvalidArgument(detail::expected_got("collect_activations positions", "at least one position", "none",
                                               "use e.g. [-1] for each prompt's last token"));
  if (batch_size < 1) throw InvalidArgument(detail::expected_got("batch_size", "at least 1", std::to_string(batch_size)));
  size_t min_len = prompts[0].size();
  for (const auto& p : prompts) min_len = std::min(min_len, p.size());
  for (int64_t p : positions) {
    const int64_t need = p < 0 ? -p : p + 1;
    if (need > static_cast<int64_t>(min_len))
      throw InvalidArgument(detail::expected_got("collect_activations position " + std::to_string(p),
                                                 "a position inside every prompt (the shortest has " +
                                                     std::to_string(min_len) + " tokens)",
                                                 std::to_string(p)));
  }
  // The forward pass stops after the last block a name belongs to.
  int64_t stop = 0;
  for (const auto& n : names) {
    const auto h = HookName::try_parse(n);
    const int64_t l = h ? h->layer : -1;
    if (l >= 0)
      stop = std::max(stop, l + 1);
    else if (!h || (h->component != "embed" && h->component != "pos_embed"))
      stop = model.config().n_layers;  // the final norm, the unembedding (or an unknown name run_with_cache refuses)
  }
  if (stop >= model.config().n_layers) stop = -1;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> out;
  Progress progress("collecting activations", static_cast<int64_t>(prompts.size()));
  for (size_t s = 0; s < prompts.size(); s += static_cast<size_t>(batch_size)) {
    const size_t e = std::min(prompts.size(), s + static_cast<size_t>(batch_size));
    auto [tokens, mask] = left_padded(prompts, s, e);
    // The logits are not needed: unembed one position only (the unembedding of every position
    // can cost more than the blocks for a large vocabulary).
    auto cache = model.run_with_cache(tokens, names, mask, /*last_position_only=*/true, stop).second;
    const int64_t L = tokens.size(1);
    std::vector<at::Tensor> per_name;
    for (const auto& n : names) {
      // Per-head hooks ([batch, pos, heads, d_head]) are read flattened, head-major: [batch, pos, heads·d_head].
      const auto& raw = cache.at(n);
      const auto a = raw.dim() == 4 ? raw.flatten(2) : raw;
      if (a.dim() != 3)
        throw ShapeError(detail::expected_got("collect_activations hook " + n, "[batch, pos, d] or [batch, pos, heads, d_head] activations",
                                              shape_of(raw)));
      std::vector<at::Tensor> per_pos;
      for (size_t i = 0; i < positions.size(); ++i) {
        const int64_t p = positions[i];
        if (p < 0) {
          per_pos.push_back(a.select(1, L + p));
        } else {  // absolute position p of each prompt: left padding shifts it by L - len
          std::vector<at::Tensor> rows;
          for (size_t r = s; r < e; ++r)
            rows.push_back(a[static_cast<int64_t>(r - s)][L - static_cast<int64_t>(prompts[r].size()) + p]);
          per_pos.push_back(at::stack(rows));
        }
      }
      per_name.push_back(at::stack(per_pos, 1));  // [b, positions, d]
    }
    out.push_back(at::stack(per_name, 1).to(at::kFloat));
    progress.update(static_cast<int64_t>(e - s));
  }
  return at::cat(out);
}

at::Tensor mean_difference(const at::Tensor& positive, const at::Tensor& negative) {
  if (!positive.defined() || !negative.defined() || positive.dim() < 2 ||
      positive.sizes().slice(1) != negative.sizes().slice(1))
    throw ShapeError(detail::expected_got("mean_difference", "two tensors [n, ...] with equal trailing shapes",
                                          shape_of(positive) + " and " +
                                              shape_of(negative)));
  if (positive.size(0) == 0 || negative.size(0) == 0)
    throw InvalidArgument(detail::expected_got("mean_difference", "at least one example in each set", "an empty set"));
  return positive.to(at::kFloat).mean(0) - negative.to(at::kFloat).mean(0);
}

at::Tensor pca_directions(const at::Tensor& positive, const at::Tensor& negative, int64_t k) {
  auto diff = mean_difference(positive, negative);  // also checks the shapes
  const int64_t n = positive.size(0) + negative.size(0), d = positive.size(-1);
  if (k < 1 || k > std::min(n, d))
    throw InvalidArgument(detail::expected_got("pca_directions k", "1.." + std::to_string(std::min(n, d)), std::to_string(k)));
  auto x = at::cat({positive, negative}).to(at::kDouble);  // [n, ..., d]
  auto trailing = x.sizes().slice(1, x.dim() - 2).vec();
  x = x.reshape({n, -1, d}).transpose(0, 1);  // [m, n, d]
  x = x - x.mean(1, true);
  auto svd = at::linalg_svd(x, false);  // Vh [m, min(n,d), d]
  auto comps = std::get<2>(svd).narrow(1, 0, k);  // [m, k, d]
  auto dd = diff.to(at::kDouble).reshape({-1, 1, d});
  auto sign = at::sign((comps * dd).sum(-1, true));
  sign = at::where(sign == 0, at::ones_like(sign), sign);
  comps = (comps * sign).transpose(0, 1);  // [k, m, d]
  std::vector<int64_t> shape{k};
  shape.insert(shape.end(), trailing.begin(), trailing.end());
  shape.push_back(d);
  return comps.reshape(shape).to(at::kFloat);
}

at::Tensor unit(const at::Tensor& v) {
  if (!v.defined() || v.dim() < 1) throw ShapeError(detail::expected_got("unit", "a tensor with a last dimension", "none"));
  auto n = v.norm(2, -1, true);
  if ((n == 0).any().item<bool>()) throw InvalidArgument(detail::expected_got("unit", "nonzero vectors", "a zero vector"));
  return v / n;
}

std::string RidgeResult::to_json() const { return detail::json_text(detail::ridge_object(*this)); }

RidgeResult ridge_residualize(const at::Tensor& v, const at::Tensor& atoms, double lambda, int64_t grid) {
  if (!v.defined() || v.dim() != 1)
    throw ShapeError(detail::expected_got("ridge_residualize v", "a vector [d]", shape_of(v)));
  const int64_t d = v.size(0);
  if (!atoms.defined() || atoms.dim() != 2 || atoms.size(1) != d || atoms.size(0) < 1)
    throw ShapeError(detail::expected_got("ridge_residualize atoms", "atoms as rows, [k, " + std::to_string(d) + "] with k ≥ 1",
                                          shape_of(atoms)));
  if (grid < 2) throw InvalidArgument(detail::expected_got("ridge_residualize grid", "at least 2 values", std::to_string(grid)));
  const int64_t k = atoms.size(0);
  auto vc = v.to(at::kDouble).contiguous().cpu();
  auto ac = atoms.to(at::kDouble).contiguous().cpu();
  Eigen::Map<const Eigen::VectorXd> y(vc.data_ptr<double>(), d);
  // A: d × k, atoms as columns (the Map reads the row-major [k, d] buffer as column-major d × k).
  Eigen::Map<const Eigen::MatrixXd> A(ac.data_ptr<double>(), d, k);
  if (!y.allFinite() || !A.allFinite())
    throw InvalidArgument(detail::expected_got("ridge_residualize", "finite values", "NaN or infinity"));
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(A, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::VectorXd s = svd.singularValues();
  const Eigen::MatrixXd& U = svd.matrixU();
  const Eigen::VectorXd uty = U.transpose() * y;
  const double smax2 = s.size() ? s(0) * s(0) : 0.0;
  RidgeResult r;
  auto residual_of = [&](double lam, double* trace) {
    Eigen::VectorXd f(s.size());
    double tr = 0;
    for (Eigen::Index i = 0; i < s.size(); ++i) {
      const double s2 = s(i) * s(i);
      f(i) = s2 + lam > 0 ? s2 / (s2 + lam) : 0.0;
      tr += f(i);
    }
    if (trace) *trace = tr;
    return Eigen::VectorXd(y - U * (f.cwiseProduct(uty)));
  };
  if (lambda < 0) {
    if (!(smax2 > 0)) throw InvalidArgument(detail::expected_got("ridge_residualize atoms", "nonzero atoms", "all zero"));
    double best = std::numeric_limits<double>::infinity();
    for (int64_t g = 0; g < grid; ++g) {
      const double lam = smax2 * std::pow(10.0, -8.0 + 11.0 * static_cast<double>(g) / static_cast<double>(grid - 1));
      double tr = 0;
      const auto res = residual_of(lam, &tr);
      const double denom = 1.0 - tr / static_cast<double>(d);
      const double score = res.squaredNorm() / static_cast<double>(d) / (denom * denom);
      r.gcv_lambdas.push_back(lam);
      r.gcv_scores.push_back(score);
      if (score < best) best = score, r.lambda = lam;
    }
  } else {
    r.lambda = lambda;
  }
  // β = (AᵀA + λI)⁻¹ Aᵀ y = V diag(s / (s² + λ)) Uᵀ y
  Eigen::VectorXd g(s.size());
  for (Eigen::Index i = 0; i < s.size(); ++i) {
    const double den = s(i) * s(i) + r.lambda;
    g(i) = den > 0 ? s(i) / den : 0.0;
  }
  const Eigen::VectorXd beta = svd.matrixV() * g.cwiseProduct(uty);
  const Eigen::VectorXd clean = y - A * beta;
  r.coefficients.assign(beta.data(), beta.data() + beta.size());
  r.clean = at::empty({d}, at::kDouble);
  std::copy(clean.data(), clean.data() + d, r.clean.data_ptr<double>());
  const double yy = y.squaredNorm();
  r.explained = yy > 0 ? 1.0 - clean.squaredNorm() / yy : 0.0;
  const double cn = clean.norm() * std::sqrt(yy);
  r.cosine = cn > 0 ? clean.dot(y) / cn : 0.0;
  return r;
}

AtomAudit audit_directions(const at::Tensor& atoms, double collinear_cosine) {
  if (!atoms.defined() || atoms.dim() != 2 || atoms.size(0) < 1)
    throw ShapeError(detail::expected_got("audit_directions atoms", "atoms as rows, [k, d]", shape_of(atoms)));
  auto u = unit(atoms.to(at::kDouble));
  AtomAudit a;
  a.cosines = at::matmul(u, u.t()).to(at::kFloat);
  auto sv = at::linalg_svdvals(u);
  const double smin = sv[-1].item<double>(), smax = sv[0].item<double>();
  a.condition_number = smin > 0 ? smax / smin : std::numeric_limits<double>::infinity();
  auto c = a.cosines.accessor<float, 2>();
  for (int64_t i = 0; i < atoms.size(0); ++i)
    for (int64_t j = i + 1; j < atoms.size(0); ++j)
      if (std::abs(c[i][j]) > collinear_cosine) {
        a.collinear.emplace_back(i, j);
        detail::log(detail::LogLevel::warn, "atoms " + std::to_string(i) + " and " + std::to_string(j) +
                                                " are near-collinear (cos " + std::to_string(c[i][j]) +
                                                "): ridge cannot tell their contributions apart");
      }
  return a;
}

namespace {
void check_from_layer(const Transformer& model, int64_t from_layer, const char* what) {
  const int64_t L = model.config().n_layers;
  if (from_layer < 0 || from_layer >= L)
    throw InvalidArgument(detail::expected_got(std::string(what) + " from_layer", "0.." + std::to_string(L - 1),
                                               std::to_string(from_layer)));
}
}  // namespace

std::vector<std::string> residual_write_points(const Transformer& model, int64_t from_layer) {
  check_from_layer(model, from_layer, "residual_write_points");
  const auto& cfg = model.config();
  std::vector<std::string> names;
  if (from_layer == 0) names.push_back(hook_name("embed"));
  if (from_layer == 0 && cfg.positions == PositionKind::Learned) names.push_back(hook_name("pos_embed"));
  for (int64_t l = from_layer; l < cfg.n_layers; ++l) {
    names.push_back(hook_name("attn_out", l));
    names.push_back(hook_name("mlp_out", l));
  }
  return names;
}

HookHandle ablate_direction(Transformer& model, const at::Tensor& v, double gamma, int64_t from_layer) {
  as_vector(v, model.config().d_model, "ablate_direction v");
  auto fn = project_out_hook(v, gamma);
  std::vector<std::pair<std::string, HookFn>> hooks;
  for (const auto& n : residual_write_points(model, from_layer)) hooks.emplace_back(n, fn);
  return model.add_hooks(hooks);
}

HookHandle add_direction(Transformer& model, const at::Tensor& v, double alpha, int64_t layer,
                         const std::vector<int64_t>& positions, bool normalize) {
  as_vector(v, model.config().d_model, "add_direction v");
  const int64_t L = model.config().n_layers;
  if (layer < 0 || layer >= L)
    throw InvalidArgument(detail::expected_got("add_direction layer", "0.." + std::to_string(L - 1), std::to_string(layer)));
  auto vec = normalize ? unit(v.to(at::kDouble)).to(at::kFloat) : v.to(at::kFloat);
  return model.add_hook(hook_name("resid_pre", layer), add_vector_hook(vec, alpha, positions));
}

std::vector<std::string> orthogonalize_weights(Transformer& model, const at::Tensor& v, double gamma,
                                               int64_t from_layer) {
  const auto& cfg = model.config();
  as_vector(v, cfg.d_model, "orthogonalize_weights v");
  check_from_layer(model, from_layer, "orthogonalize_weights");
  if (cfg.post_norms)
    throw Unsupported(detail::expected_got("orthogonalize_weights", "an architecture whose writes reach the residual stream directly",
                                           "post-norms on the attention and MLP outputs (Gemma)",
                                           "use ablate_direction (inference time) for this model"));
  if (model.tied_embeddings() && from_layer == 0)
    throw Unsupported(detail::expected_got(
        "orthogonalize_weights", "separate embedding and unembedding matrices", "tied embeddings",
        "editing the shared matrix would change the unembedding too: call model.untie_embeddings() first "
        "(the export then has its own lm_head), use from_layer > 0, or ablate_direction"));
  at::NoGradGuard no_grad;
  const auto u = unit(v.to(at::kDouble));
  std::vector<std::string> edited;
  const auto writers = model.residual_writers(from_layer);
  for (const auto& writer : writers) {
    const auto& w = writer.tensor;
    const bool rows = writer.layer < 0;  // embedding rows
    auto wd = w.to(at::kDouble);
    at::Tensor out;
    if (rows || w.dim() == 1) {  // embedding rows or a bias: x − γ(x·u)u
      out = wd - gamma * at::matmul(wd, u).unsqueeze(-1) * u;
    } else {  // W [d_model, in]: (I − γuuᵀ)W
      out = wd - gamma * at::outer(u, at::matmul(u, wd));
    }
    at::Tensor live = w;
    live.copy_(out.to(w.scalar_type()));
    edited.push_back(writer.name);
  }
  return edited;
}

}  // namespace scalpel
