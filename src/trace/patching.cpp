// SCALPEL_USES_TORCH
// Activation patching sweeps (see scalpel/trace/patching.hpp).
#include "scalpel/trace/patching.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>

#include "scalpel/errors.hpp"
#include "scalpel/hooks/edits.hpp"
#include "scalpel/hooks/names.hpp"
#include "scalpel/log.hpp"
#include "scalpel/model/config.hpp"
#include "scalpel/model/transformer.hpp"
#include "trace/patch_rows.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

struct ComponentInfo {
  const char* hook;   // the component's name in hooks/names.hpp
  char unit;          // 0: none, 'h': query heads, 'k': key/value heads, 'n': MLP neurons
};

// The patchable components (a subset of hook_components(); the unit follows its shape).
const std::map<std::string, ComponentInfo>& components() {
  static const std::map<std::string, ComponentInfo> table = [] {
    std::map<std::string, ComponentInfo> t;
    for (const char* c : {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "result", "q", "k", "v",
                          "mlp_post"}) {
      const HookShape s = hook_component(c).shape;
      const char unit = s == HookShape::Head || s == HookShape::HeadModel ? 'h'
                        : s == HookShape::KVHead                          ? 'k'
                        : s == HookShape::MLP                             ? 'n'
                                                                          : 0;
      t.emplace(c, ComponentInfo{c, unit});
    }
    return t;
  }();
  return table;
}

const ComponentInfo& component_info(const std::string& name) {
  auto it = components().find(name);
  if (it == components().end()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : components()) names.push_back(k);
    throw UnknownName(detail::expected_got("patching component \"" + name + "\"", "one of " + detail::join_names(names),
                                           "unknown"));
  }
  return it->second;
}

using detail::Variant;
using detail::score_rows;

// The plan of a sweep: layers, units, positions, and the shape of the result.
struct Plan {
  std::string component;
  ComponentInfo info;
  std::vector<int64_t> layers;
  int64_t units = 0;  // 0: the component has no unit dimension
  int64_t positions = 0;           // the sequence length
  bool per_position = true;
  std::vector<int64_t> pos_list;   // the swept positions (per_position), ascending
  std::vector<Variant> variants;  // per layer
  std::vector<int64_t> shape;
  std::vector<std::string> dims;
};

Plan make_plan(Transformer& model, const at::Tensor& source, const at::Tensor& target, const SweepOptions& o) {
  for (const auto* t : {&source, &target})
    if (!t->defined() || t->dim() != 2 || t->size(0) != 1)
      throw ShapeError(detail::expected_got("patch sweep tokens", "a [1, pos] tensor",
                                            t->defined() ? "shape " + c10::str(t->sizes()) : "undefined",
                                            "sweep one prompt pair at a time"));
  if (source.size(1) != target.size(1))
    throw ShapeError(detail::expected_got("patch sweep", "source and target of the same length (positions must align)",
                                          std::to_string(source.size(1)) + " vs " + std::to_string(target.size(1)) +
                                              " tokens",
                                          "pad or trim the pair to the same token length, or patch per layer with "
                                          "per_position=False on aligned prompts"));
  if (o.batch_size <= 0)
    throw InvalidArgument(detail::expected_got("SweepOptions.batch_size", "a positive number", std::to_string(o.batch_size)));
  const auto& cfg = model.config();
  Plan p{o.component, component_info(o.component), o.layers, 0, source.size(1), o.per_position, {}, {}, {}, {}};
  if (!o.positions.empty() && !o.per_position)
    throw InvalidArgument(detail::expected_got("SweepOptions.positions", "empty when per_position is False",
                                               std::to_string(o.positions.size()) + " positions",
                                               "per_position=False patches the whole sequence at once"));
  for (auto q : o.positions) {
    if (q < -p.positions || q >= p.positions)
      throw InvalidArgument(detail::expected_got("SweepOptions.positions", "positions in [-" + std::to_string(p.positions) + ", " +
                                                     std::to_string(p.positions) + ") (negative: from the end)",
                                                 std::to_string(q)));
    p.pos_list.push_back(q < 0 ? q + p.positions : q);
  }
  if (o.per_position && p.pos_list.empty())
    for (int64_t q = 0; q < p.positions; ++q) p.pos_list.push_back(q);
  std::sort(p.pos_list.begin(), p.pos_list.end());
  p.pos_list.erase(std::unique(p.pos_list.begin(), p.pos_list.end()), p.pos_list.end());
  if (p.layers.empty())
    for (int64_t l = 0; l < cfg.n_layers; ++l) p.layers.push_back(l);
  for (auto l : p.layers)
    if (l < 0 || l >= cfg.n_layers)
      throw InvalidArgument(detail::expected_got("SweepOptions.layers", "layers in [0, " + std::to_string(cfg.n_layers) + ")",
                                                 std::to_string(l)));
  if (p.info.unit == 'h') p.units = cfg.n_heads;
  if (p.info.unit == 'k') p.units = cfg.n_kv_heads;
  if (p.info.unit == 'n') p.units = cfg.d_mlp;
  if (p.info.unit == 'n' && o.per_position)
    throw InvalidArgument(detail::expected_got("SweepOptions.per_position for mlp_post", "False (one variant per neuron)",
                                               "True (d_mlp x pos variants per layer)"));
  for (int64_t u = 0; u < std::max<int64_t>(p.units, 1); ++u)
    if (o.per_position)
      for (auto q : p.pos_list) p.variants.push_back({p.units ? u : -1, q});
    else
      p.variants.push_back({p.units ? u : -1, -1});
  p.shape = {static_cast<int64_t>(p.layers.size())};
  p.dims = {"layer"};
  if (p.units) {
    p.shape.push_back(p.units);
    p.dims.push_back(p.info.unit == 'n' ? "neuron" : "head");
  }
  if (o.per_position) {
    p.shape.push_back(static_cast<int64_t>(p.pos_list.size()));
    p.dims.push_back("pos");
  }
  return p;
}

// Copies, for each row r of x, the source activation at variant v[r] into x[r].
// `offset`: x holds positions offset.. only (a suffix run).
void patch_rows(const at::Tensor& x, const at::Tensor& src, const Variant* v, int64_t rows, int64_t offset = 0) {
  for (int64_t r = 0; r < rows; ++r) {
    const Variant& var = v[r];
    patch_into(x.narrow(0, r, 1), src.narrow(0, 0, 1), var.pos >= 0 ? std::vector<int64_t>{var.pos} : std::vector<int64_t>{},
               var.unit >= 0 ? std::vector<int64_t>{var.unit} : std::vector<int64_t>{}, offset);
  }
}

// What every sweep starts from: the plan, the swept hook names, and the
// cached source and target runs with their scores.
struct Start {
  Plan plan;
  std::vector<std::string> names;
  std::map<std::string, at::Tensor> source_cache, target_cache;
  double source_score = 0.0, target_score = 0.0;
};

// `target_names`: what to cache of the target run (nullptr: do not run it).
Start start_sweep(Transformer& model, const at::Tensor& source, const at::Tensor& target, const Metric& metric,
                  const SweepOptions& o, const std::vector<std::string>* target_names) {
  at::NoGradGuard no_grad;
  Start st{make_plan(model, source, target, o), {}, {}, {}, 0.0, 0.0};
  for (auto l : st.plan.layers) st.names.push_back(component_hook_name(st.plan.component, l));
  auto [source_logits, source_cache] = model.run_with_cache(source, st.names, {}, o.last_position_only);
  st.source_cache = std::move(source_cache);
  st.source_score = score_rows(metric, source_logits, 1).item<double>();
  if (target_names) {
    at::Tensor target_logits;
    if (target_names->empty())  // nothing to cache (run_with_cache would cache every hook point)
      target_logits = model.forward(target, {}, o.last_position_only);
    else
      std::tie(target_logits, st.target_cache) = model.run_with_cache(target, *target_names, {}, o.last_position_only);
    st.target_score = score_rows(metric, target_logits, 1).item<double>();
  }
  return st;
}

SweepResult finish(const Plan& p, std::vector<at::Tensor>& per_layer, double source_score, double target_score) {
  SweepResult r;
  r.scores = at::stack(per_layer).reshape(p.shape);
  r.source_score = source_score;
  r.target_score = target_score;
  r.component = p.component;
  r.layers = p.layers;
  r.dims = p.dims;
  r.positions = p.pos_list;
  return r;
}

template <typename RunBatch>
SweepResult sweep(Transformer& model, const at::Tensor& source, const at::Tensor& target, const Metric& metric,
                  const SweepOptions& o, const std::vector<std::string>& extra_target_cache, RunBatch run_batch) {
  at::NoGradGuard no_grad;
  Start st = start_sweep(model, source, target, metric, o, &extra_target_cache);
  const Plan& p = st.plan;
  const auto& names = st.names;
  const auto n_variants = static_cast<int64_t>(p.variants.size());
  Progress progress("patching " + p.component, n_variants * static_cast<int64_t>(p.layers.size()));
  std::vector<at::Tensor> per_layer;
  for (size_t li = 0; li < p.layers.size(); ++li) {
    const int64_t l = p.layers[li];
    const at::Tensor& src = st.source_cache.at(names[li]);
    std::vector<at::Tensor> scores;
    for (int64_t start = 0; start < n_variants; start += o.batch_size) {
      const int64_t rows = std::min(o.batch_size, n_variants - start);
      const Variant* v = p.variants.data() + start;
      HookFn patch = [&src, v, rows](const at::Tensor& x, const HookPoint&) {
        at::Tensor y = x;
        patch_rows(y, src, v, rows);
        return y;
      };
      scores.push_back(run_batch(l, names[li], patch, rows, st.target_cache, metric));
      progress.update(rows);
    }
    per_layer.push_back(at::cat(scores));
  }
  progress.finish();
  return finish(p, per_layer, st.source_score, st.target_score);
}

}  // namespace

int64_t detail::component_units(const ModelConfig& cfg, const std::string& component) {
  switch (component_info(component).unit) {
    case 'h': return cfg.n_heads;
    case 'k': return cfg.n_kv_heads;
    case 'n': return cfg.d_mlp;
    default: return 0;
  }
}

std::string component_hook_name(const std::string& component, int64_t layer) {
  return hook_name(component_info(component).hook, layer);
}

namespace {

// Per-position sweeps of a per-head component whose metric reads the last
// position: a patch at position p cannot change positions before p, so each
// (layer, position) batch of heads runs only positions p.. from the patched
// layer, with the target run's keys and values for the positions before p.
SweepResult suffix_sweep(Transformer& model, const at::Tensor& source, const at::Tensor& target, const Metric& metric,
                         const SweepOptions& o) {
  at::NoGradGuard no_grad;
  const auto& cfg = model.config();
  const char* k_hook = cfg.positions == PositionKind::Rotary ? "rot_k" : "k";
  std::vector<std::string> target_names;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    for (const char* c : {"resid_pre", k_hook, "v"}) target_names.push_back(hook_name(c, l));
  }
  Start st = start_sweep(model, source, target, metric, o, &target_names);
  const Plan& p = st.plan;
  const auto& names = st.names;
  const auto& target_cache = st.target_cache;
  // keys / values heads-first: [1, kv_heads, pos, d_head]
  std::vector<at::Tensor> keys, values;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    keys.push_back(target_cache.at(hook_name(k_hook, l)).transpose(1, 2));
    values.push_back(target_cache.at(hook_name("v", l)).transpose(1, 2));
  }
  Progress progress("patching " + p.component, static_cast<int64_t>(p.variants.size() * p.layers.size()));
  std::vector<at::Tensor> per_layer;
  for (size_t li = 0; li < p.layers.size(); ++li) {
    const int64_t l = p.layers[li];
    const at::Tensor& src = st.source_cache.at(names[li]);
    const auto n_pos = static_cast<int64_t>(p.pos_list.size());
    auto scores = at::empty({p.units, n_pos}, at::kFloat);
    for (int64_t pi = 0; pi < n_pos; ++pi) {
      const int64_t pos = p.pos_list[static_cast<size_t>(pi)];
      std::vector<at::Tensor> past_k, past_v;
      for (int64_t j = l; j < cfg.n_layers; ++j) {
        past_k.push_back(keys[static_cast<size_t>(j)].narrow(2, 0, pos));
        past_v.push_back(values[static_cast<size_t>(j)].narrow(2, 0, pos));
      }
      const at::Tensor resid = target_cache.at(hook_name("resid_pre", l)).narrow(1, pos, p.positions - pos);
      for (int64_t u0 = 0; u0 < p.units; u0 += o.batch_size) {
        const int64_t rows = std::min(o.batch_size, p.units - u0);
        std::vector<Variant> v;
        for (int64_t u = u0; u < u0 + rows; ++u) v.push_back({u, pos});
        HookFn patch = [&src, &v, rows, pos](const at::Tensor& x, const HookPoint&) {
          at::Tensor y = x;
          patch_rows(y, src, v.data(), rows, pos);
          return y;
        };
        auto handle = model.add_hook(names[li], patch);
        auto x = resid.expand({rows, -1, -1}).contiguous();
        scores.select(1, pi).narrow(0, u0, rows).copy_(score_rows(metric, model.forward_from_suffix(l, x, past_k, past_v, true), rows));
        progress.update(rows);
      }
    }
    per_layer.push_back(scores);
  }
  progress.finish();
  return finish(p, per_layer, st.source_score, st.target_score);
}

}  // namespace

SweepResult patch_sweep(Transformer& model, const at::Tensor& source, const at::Tensor& target, const Metric& metric,
                        const SweepOptions& options) {
  if (options.last_position_only && options.per_position && component_info(options.component).unit != 0 &&
      component_info(options.component).unit != 'n')
    return suffix_sweep(model, source, target, metric, options);
  return sweep(model, source, target, metric, options, detail::resid_pre_names(model.config().n_layers),
               [&model, last = options.last_position_only](int64_t l, const std::string& hook, const HookFn& patch,
                                                             int64_t rows, const std::map<std::string, at::Tensor>& target_cache,
                                                             const Metric& m) {
                 // Start at layer l from the target's residual stream, one row per variant.
                 auto x = target_cache.at(hook_name("resid_pre", l)).expand({rows, -1, -1}).contiguous();
                 auto handle = model.add_hook(hook, patch);
                 return score_rows(m, model.forward_from(l, x, {}, last), rows);
               });
}

SweepResult patch_sweep_naive(Transformer& model, const at::Tensor& source, const at::Tensor& target,
                              const Metric& metric, const SweepOptions& options) {
  SweepOptions one = options;
  one.batch_size = 1;
  return sweep(model, source, target, metric, one, {hook_name("embed")},
               [&model, &target](int64_t, const std::string& hook, const HookFn& patch, int64_t rows,
                                 const std::map<std::string, at::Tensor>&, const Metric& m) {
                 auto handle = model.add_hook(hook, patch);
                 return score_rows(m, model.forward(target), rows);
               });
}

namespace {

// AtP*'s QK fix for one layer: the attention pattern a query or key patch makes,
// recomputed exactly from the target's queries/keys and the source's, then
// linearized through the pattern only. [units] or [units, pos] (all positions).
at::Tensor qk_fix_layer(const ModelConfig& cfg, char which, bool per_position, const at::Tensor& q_target,
                        const at::Tensor& k_target, const at::Tensor& patched, const at::Tensor& scores,
                        const at::Tensor& pattern, const at::Tensor& grad) {
  const int64_t H = cfg.n_heads, KV = cfg.n_kv_heads, rep = H / KV, D = cfg.d_head;
  const double scale = cfg.attn_scale > 0 ? cfg.attn_scale : 1.0 / std::sqrt(static_cast<double>(D));
  auto heads_first = [](const at::Tensor& t) { return t.select(0, 0).transpose(0, 1).to(at::kDouble); };  // [heads, pos, D]
  const auto s = scores.select(0, 0).to(at::kDouble), A = pattern.select(0, 0).to(at::kDouble),
             g = grad.select(0, 0).to(at::kDouble);  // [H, q, k]
  const auto allowed = at::isfinite(s);
  auto raw = [&](const at::Tensor& q, const at::Tensor& k) {
    auto sc = at::matmul(q, k.repeat_interleave(rep, 0).transpose(-1, -2)) * scale;
    if (cfg.attn_softcap) sc = at::tanh(sc / *cfg.attn_softcap) * *cfg.attn_softcap;
    return sc.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  };
  if (which == 'q') {
    auto A2 = at::softmax(raw(heads_first(patched), heads_first(k_target)), -1);  // every query row replaced
    auto d = (g * (A2 - A)).sum(-1);                                              // [H, q]
    return per_position ? d : d.sum(-1);
  }
  auto s2 = raw(heads_first(q_target), heads_first(patched));  // every key replaced
  at::Tensor per_key;                                          // [H, k] or [H]
  if (!per_position) {
    per_key = (g * (at::softmax(s2, -1) - A)).sum({1, 2});
  } else {
    // Key j alone: row i's softmax with s[i, j] -> s2[i, j]. With e = exp(s2 - s) and
    // Z = 1 + A_ij (e - 1): A'_ik = A_ik / Z (k != j), A'_ij = A_ij e / Z, so
    // sum_k g_ik (A'_ik - A_ik) = (1/Z - 1) sum_k g_ik A_ik + g_ij A_ij (e - 1) / Z.
    auto e = at::exp((s2 - s).masked_fill(allowed.logical_not(), 0.0).clamp_max(700.0));
    auto Z = 1 + A * (e - 1);
    auto G = (g * A).sum(-1, /*keepdim=*/true);
    auto c = ((1 / Z - 1) * G + g * A * (e - 1) / Z).masked_fill(allowed.logical_not(), 0.0);
    per_key = c.sum(1);  // [H, k]
  }
  // query heads -> their key/value head
  auto grouped = per_key.reshape(per_position ? std::vector<int64_t>{KV, rep, per_key.size(-1)} : std::vector<int64_t>{KV, rep});
  return grouped.sum(1);
}

}  // namespace

SweepResult attribution_patch(Transformer& model, const at::Tensor& source, const at::Tensor& target,
                              const Metric& metric, const SweepOptions& options) {
  const auto& cfg = model.config();
  if (options.qk_fix && options.component != "q" && options.component != "k")
    throw InvalidArgument(detail::expected_got("SweepOptions.qk_fix (AtP*)", "component \"q\" or \"k\"",
                                               "\"" + options.component + "\"",
                                               "the QK fix corrects patches of queries and keys through the attention pattern"));
  Start st = start_sweep(model, source, target, metric, options, nullptr);
  const Plan& p = st.plan;
  const auto& names = st.names;
  // QK fix: the target's queries, keys, scores and pattern (with its gradient), and the source's patched queries/keys.
  const bool rotary = cfg.positions == PositionKind::Rotary;
  auto qk_names = [&](int64_t l) {
    return std::array<std::string, 4>{hook_name(rotary ? "rot_q" : "q", l), hook_name(rotary ? "rot_k" : "k", l),
                                      hook_name("attn_scores", l), hook_name("pattern", l)};
  };
  std::vector<std::string> kept = names, kept_grad = names;
  std::map<std::string, at::Tensor> source_qk;
  if (options.qk_fix) {
    std::vector<std::string> src_names;
    for (auto l : p.layers) {
      auto n = qk_names(l);
      kept.insert(kept.end(), n.begin(), n.end());
      kept_grad.push_back(n[3]);
      src_names.push_back(options.component == "q" ? n[0] : n[1]);
    }
    at::NoGradGuard no_grad;
    source_qk = model.run_with_cache(source, src_names).second;
  }
  // The target run with gradients: forward hooks keep each activation, backward hooks its gradient.
  std::map<std::string, at::Tensor> acts, grads;
  std::vector<std::pair<std::string, HookFn>> keep;
  std::vector<std::pair<std::string, BackwardHookFn>> keep_grad;
  for (const auto& n : kept)
    keep.emplace_back(n, [&acts, n](const at::Tensor& x, const HookPoint&) {
      acts[n] = x.detach();
      return at::Tensor();
    });
  for (const auto& n : kept_grad)
    keep_grad.emplace_back(n, [&grads, n](const at::Tensor& g, const HookPoint&) { grads[n] = g.detach(); });
  double target_score = 0.0;
  {
    at::AutoGradMode grad_mode(true);
    auto h1 = model.add_hooks(keep);
    auto h2 = model.add_backward_hooks(keep_grad);
    auto score = score_rows(metric, model.forward(target, {}, options.last_position_only), 1);
    target_score = score.item<double>();
    if (!score.requires_grad())
      throw InvalidArgument(detail::expected_got("attribution_patch metric", "a differentiable function of the logits",
                                                 "a result without a gradient (argmax, .item(), a detached tensor?)",
                                                 "use a smooth metric such as a logit difference, or exact patch_sweep"));
    score.sum().backward();
  }
  std::vector<at::Tensor> per_layer;
  for (size_t li = 0; li < names.size(); ++li) {
    const auto& n = names[li];
    if (!grads.count(n))
      throw InvalidArgument(detail::expected_got("attribution_patch metric", "a differentiable function of the logits",
                                                 "no gradient reached " + n));
    at::Tensor per;  // [(unit,) (pos)]
    if (options.qk_fix) {
      auto qn = qk_names(p.layers[li]);
      if (!grads.count(qn[3]))
        throw InvalidArgument(detail::expected_got("attribution_patch (qk_fix) metric", "a differentiable function of the logits",
                                                   "no gradient reached " + qn[3]));
      const char which = options.component == "q" ? 'q' : 'k';
      per = qk_fix_layer(cfg, which, p.per_position, acts.at(qn[0]), acts.at(qn[1]),
                         source_qk.at(which == 'q' ? qn[0] : qn[1]), acts.at(qn[2]), acts.at(qn[3]), grads.at(qn[3]))
                .to(at::kFloat);
      if (p.per_position) per = per.index_select(1, torch::tensor(p.pos_list, at::kLong));
    } else {
      // [1, pos, (unit,) features...] -> contribution per (unit, pos)
      auto contrib = ((st.source_cache.at(n).to(at::kFloat) - acts.at(n).to(at::kFloat)) * grads.at(n).to(at::kFloat)).select(0, 0);
      if (p.units && p.info.unit != 'n') per = contrib.sum(-1);   // [pos, head]
      else if (p.units) per = contrib;                           // [pos, neuron]
      else per = contrib.sum(-1);                                // [pos]
      if (!p.per_position) {
        per = per.sum(0);
      } else {
        per = per.index_select(0, torch::tensor(p.pos_list, at::kLong));
        if (p.units) per = per.transpose(0, 1);                   // [unit, pos]
      }
    }
    per_layer.push_back(per + target_score);
  }
  return finish(p, per_layer, st.source_score, target_score);
}

}  // namespace scalpel
