// SCALPEL_USES_TORCH
// The minimal circuit (see scalpel/trace/circuit.hpp).
#include "scalpel/trace/circuit.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "scalpel/errors.hpp"
#include "scalpel/hooks/edits.hpp"
#include "scalpel/log.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/eval/metrics.hpp"
#include "trace/patch_rows.hpp"
#include "util/messages.hpp"

namespace scalpel {
void PairMetric::check(size_t pairs) const {
  if (metrics_.empty() || (metrics_.size() != 1 && metrics_.size() != pairs))
    throw InvalidArgument(detail::expected_got("metrics", "one metric, or one per pair (" + std::to_string(pairs) + ")",
                                               std::to_string(metrics_.size()) + " metrics"));
  for (const auto& m : metrics_)
    if (!m) throw InvalidArgument(detail::expected_got("metric", "a callable", "an empty function"));
}

namespace {

void check_pairs(const std::vector<at::Tensor>& sources, const std::vector<at::Tensor>& targets) {
  if (sources.empty() || sources.size() != targets.size())
    throw InvalidArgument(detail::expected_got("circuit pairs", "as many targets as sources (at least one)",
                                               std::to_string(sources.size()) + " sources, " +
                                                   std::to_string(targets.size()) + " targets"));
  for (size_t i = 0; i < sources.size(); ++i)
    if (sources[i].dim() != 2 || targets[i].dim() != 2 || sources[i].size(0) != 1 || targets[i].size(0) != 1 ||
        sources[i].size(1) != targets[i].size(1))
      throw ShapeError(detail::expected_got("circuit pair " + std::to_string(i), "[1, pos] source and target of the same length",
                                            c10::str(sources[i].sizes()) + " and " + c10::str(targets[i].sizes()),
                                            "positions must align; pad or trim the pair"));
}

}  // namespace

namespace {

// metric(logits [rows, pos, vocab], prompt, first set, rows) -> [rows]
using RowMetric = std::function<at::Tensor(const at::Tensor&, size_t, int64_t, int64_t)>;
// prompt -> layer -> the replacement activation without its batch dimension ([pos or 1, ...])
using Replacements = std::function<std::map<int64_t, at::Tensor>(size_t)>;

std::set<int64_t> check_sets(const Transformer& model, const std::string& component,
                             const std::vector<std::vector<CircuitComponent>>& sets, int64_t batch_size) {
  if (batch_size <= 0) throw InvalidArgument(detail::expected_got("batch_size", "a positive number", std::to_string(batch_size)));
  const int64_t n_layers = model.config().n_layers, units = detail::component_units(model.config(), component);
  std::set<int64_t> layers;
  for (const auto& s : sets)
    for (const auto& [l, u] : s) {
      if (l < 0 || l >= n_layers)
        throw InvalidArgument(detail::expected_got("circuit component layer", "in [0, " + std::to_string(n_layers) + ")",
                                                   std::to_string(l)));
      if (units ? (u < 0 || u >= units) : u != -1)
        throw InvalidArgument(detail::expected_got(
            "circuit component (" + std::to_string(l) + ", " + std::to_string(u) + ") of \"" + component + "\"",
            units ? "a unit in [0, " + std::to_string(units) + ")" : "unit -1 (a whole-layer component)", std::to_string(u)));
      layers.insert(l);
    }
  return layers;
}

// The metric for every (prompt, set) with the set's components replaced; each
// set is a batch row, starting at the earliest replaced layer: [prompts, sets].
at::Tensor replace_sets(Transformer& model, const std::vector<at::Tensor>& prompts, const RowMetric& metric,
                        const std::string& component, const std::vector<std::vector<CircuitComponent>>& sets,
                        int64_t batch_size, const Replacements& replacements, const std::string& label,
                        bool last_position_only = false) {
  check_sets(model, component, sets, batch_size);
  at::NoGradGuard no_grad;
  const int64_t n_layers = model.config().n_layers;
  const auto n = static_cast<int64_t>(sets.size());
  const auto resid = detail::resid_pre_names(n_layers);
  // The batches of sets, the same for every prompt: each starts at the earliest layer
  // any of its rows replaces, so only those layers' resid_pre is cached per prompt.
  struct Batch {
    int64_t start, rows, first;
    std::map<int64_t, std::vector<std::vector<int64_t>>> units;  // layer -> per row -> units
  };
  std::vector<Batch> batches;
  std::set<std::string> starts;
  for (int64_t start = 0; start < n; start += batch_size) {
    Batch b{start, std::min(batch_size, n - start), n_layers, {}};
    for (int64_t r = 0; r < b.rows; ++r)
      for (const auto& [l, u] : sets[static_cast<size_t>(start + r)]) {
        auto& per_row = b.units[l];
        per_row.resize(static_cast<size_t>(b.rows));
        per_row[static_cast<size_t>(r)].push_back(u);
        b.first = std::min(b.first, l);
      }
    if (b.first < n_layers) starts.insert(resid[static_cast<size_t>(b.first)]);
    batches.push_back(std::move(b));
  }
  const std::vector<std::string> cached(starts.begin(), starts.end());
  auto out = torch::zeros({static_cast<int64_t>(prompts.size()), n});
  Progress progress(label, static_cast<int64_t>(prompts.size()) * n);
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::map<std::string, at::Tensor> target_cache;
    if (!cached.empty()) target_cache = model.run_with_cache(prompts[i], cached).second;
    const auto repl = replacements(i);
    for (const auto& b : batches) {
      std::vector<std::pair<std::string, HookFn>> hooks;
      for (const auto& [l, per_row] : b.units)
        hooks.emplace_back(component_hook_name(component, l), [src = repl.at(l), per_row = per_row](const at::Tensor& x, const HookPoint&) {
          for (size_t r = 0; r < per_row.size(); ++r) {
            if (per_row[r].empty()) continue;
            const bool whole = per_row[r].front() < 0;  // unit -1: a whole-layer component
            patch_into(x.narrow(0, static_cast<int64_t>(r), 1), src.unsqueeze(0), {},
                       whole ? std::vector<int64_t>{} : per_row[r]);
          }
          return x;
        });
      auto handle = model.add_hooks(hooks);
      at::Tensor logits;
      if (b.first < n_layers) {
        auto x = target_cache.at(resid[static_cast<size_t>(b.first)]).expand({b.rows, -1, -1}).contiguous();
        logits = model.forward_from(b.first, x, {}, last_position_only);
      } else {
        logits = model.forward(prompts[i].expand({b.rows, -1}).contiguous(), {}, last_position_only);
      }
      out[static_cast<int64_t>(i)].narrow(0, b.start, b.rows).copy_(metric(logits, i, b.start, b.rows));
      progress.update(b.rows);
    }
  }
  progress.finish();
  return out;
}

RowMetric rows_of(const PairMetric& metric) {
  return [&metric](const at::Tensor& logits, size_t i, int64_t, int64_t rows) {
    return detail::score_rows(metric[i], logits, rows);
  };
}

std::vector<std::string> hook_names_of(const std::string& component, const std::set<int64_t>& layers) {
  std::vector<std::string> names;
  for (auto l : layers) names.push_back(component_hook_name(component, l));
  return names;
}

std::set<int64_t> layers_of(const std::vector<std::vector<CircuitComponent>>& sets) {
  std::set<int64_t> layers;
  for (const auto& s : sets)
    for (const auto& c : s) layers.insert(c.first);
  return layers;
}

// Each prompt's own activations at the layers (from the source runs).
Replacements own_runs(Transformer& model, const std::vector<at::Tensor>& prompts, const std::string& component,
                      const std::set<int64_t>& layers) {
  return [&model, &prompts, component, layers](size_t i) {
    at::NoGradGuard no_grad;
    auto cache = model.run_with_cache(prompts[i], hook_names_of(component, layers)).second;
    std::map<int64_t, at::Tensor> r;
    for (auto l : layers) r[l] = cache.at(component_hook_name(component, l)).select(0, 0);
    return r;
  };
}

// Running sums for mean activations: one prompt's activation a [pos, ...] at
// `layer` adds a.sum over positions ([1, ...]), or a itself per position.
void add_to_sum(std::map<int64_t, at::Tensor>& sum, int64_t layer, const at::Tensor& a, bool per_position) {
  auto x = a.to(at::kFloat);
  x = per_position ? x : x.sum(0, /*keepdim=*/true);
  sum[layer] = sum.count(layer) ? sum[layer] + x : x;
}

std::map<int64_t, at::Tensor> means_of(std::map<int64_t, at::Tensor> sum, int64_t count, at::ScalarType dtype) {
  for (auto& [l, t] : sum) t = (t / static_cast<double>(count)).to(dtype);
  return sum;
}

// The mean activation over `prompts` at each layer: [1, ...] (over all
// positions) or [pos, ...] (per position; all prompts of one length).
std::map<int64_t, at::Tensor> mean_activations(Transformer& model, const std::vector<at::Tensor>& prompts,
                                               const std::string& component, const std::set<int64_t>& layers,
                                               bool per_position) {
  at::NoGradGuard no_grad;
  std::map<int64_t, at::Tensor> sum;
  int64_t count = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (per_position && prompts[i].size(1) != prompts[0].size(1))
      throw ShapeError(detail::expected_got("per-position mean ablation", "reference prompts of one token length",
                                            std::to_string(prompts[0].size(1)) + " and " + std::to_string(prompts[i].size(1)) +
                                                " tokens (prompt " + std::to_string(i) + ")",
                                            "use per_position=False for one mean over all positions"));
    auto cache = model.run_with_cache(prompts[i], hook_names_of(component, layers)).second;
    for (auto l : layers) add_to_sum(sum, l, cache.at(component_hook_name(component, l)).select(0, 0), per_position);
    count += per_position ? 1 : prompts[i].size(1);
  }
  return means_of(std::move(sum), count, model.dtype());
}

void check_prompts(const std::vector<at::Tensor>& prompts, const std::string& what) {
  if (prompts.empty()) throw InvalidArgument(detail::expected_got(what, "at least one [1, pos] prompt", "none"));
  for (size_t i = 0; i < prompts.size(); ++i)
    if (!prompts[i].defined() || prompts[i].dim() != 2 || prompts[i].size(0) != 1 || prompts[i].size(1) < 1)
      throw ShapeError(detail::expected_got(what + " " + std::to_string(i), "a [1, pos] token tensor",
                                            prompts[i].defined() ? "shape " + c10::str(prompts[i].sizes()) : "undefined"));
}

}  // namespace

at::Tensor patch_sets(Transformer& model, const std::vector<at::Tensor>& sources, const std::vector<at::Tensor>& targets,
                      const PairMetric& metric, const std::string& component,
                      const std::vector<std::vector<CircuitComponent>>& sets, int64_t batch_size,
                      bool last_position_only) {
  check_pairs(sources, targets);
  metric.check(sources.size());
  return replace_sets(model, targets, rows_of(metric), component, sets, batch_size,
                      own_runs(model, sources, component, layers_of(sets)), "patching sets of " + component,
                      last_position_only)
      .mean(0);
}

at::Tensor ablate_sets(Transformer& model, const std::vector<at::Tensor>& prompts, const PairMetric& metric,
                       const std::string& component, const std::vector<std::vector<CircuitComponent>>& sets,
                       const AblationOptions& o) {
  check_prompts(prompts, "ablation prompt");
  metric.check(prompts.size());
  const auto& reference = o.reference.empty() ? prompts : o.reference;
  if (!o.reference.empty()) check_prompts(o.reference, "ablation reference prompt");
  check_sets(model, component, sets, o.batch_size);
  const auto layers = layers_of(sets);
  const std::string label = o.kind + "-ablating sets of " + component;
  if (o.kind == "zero" || o.kind == "mean") {
    std::map<int64_t, at::Tensor> values;
    if (o.kind == "mean") {
      if (o.per_position)
        for (size_t i = 0; i < prompts.size(); ++i)
          if (prompts[i].size(1) != reference[0].size(1))
            throw ShapeError(detail::expected_got("per-position mean ablation", "prompts as long as the reference prompts (" +
                                                                                    std::to_string(reference[0].size(1)) + " tokens)",
                                                  std::to_string(prompts[i].size(1)) + " tokens (prompt " + std::to_string(i) + ")",
                                                  "use per_position=False for one mean over all positions"));
      values = mean_activations(model, reference, component, layers, o.per_position);
    } else {
      values = mean_activations(model, {reference[0]}, component, layers, false);
      for (auto& [l, t] : values) t = at::zeros_like(t);
    }
    return replace_sets(model, prompts, rows_of(metric), component, sets, o.batch_size,
                        [&values](size_t) { return values; }, label, o.last_position_only)
        .mean(0);
  }
  if (o.kind != "resample")
    throw InvalidArgument(detail::expected_got("ablation kind", "\"zero\", \"mean\" or \"resample\"", "\"" + o.kind + "\""));
  if (o.samples <= 0) throw InvalidArgument(detail::expected_got("ablation samples", "a positive number", std::to_string(o.samples)));
  // Candidates of each prompt's length (never the prompt itself when resampling from the prompts).
  std::vector<std::vector<size_t>> candidates(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (size_t j = 0; j < reference.size(); ++j)
      if (reference[j].size(1) == prompts[i].size(1) && !(o.reference.empty() && j == i)) candidates[i].push_back(j);
    if (candidates[i].empty())
      throw ShapeError(detail::expected_got("resample ablation of prompt " + std::to_string(i),
                                            "a reference prompt of its length (" + std::to_string(prompts[i].size(1)) + " tokens)",
                                            "none", "give reference prompts of that length, or use kind=\"mean\""));
  }
  std::mt19937_64 rng(o.seed);
  std::map<size_t, std::map<int64_t, at::Tensor>> cached;
  auto own = own_runs(model, reference, component, layers);
  at::Tensor total;
  for (int64_t s = 0; s < o.samples; ++s) {
    std::vector<size_t> draw(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i)
      draw[i] = candidates[i][std::uniform_int_distribution<size_t>(0, candidates[i].size() - 1)(rng)];
    auto m = replace_sets(model, prompts, rows_of(metric), component, sets, o.batch_size,
                          [&](size_t i) {
                            auto j = draw[i];
                            if (!cached.count(j)) cached[j] = own(j);
                            return cached[j];
                          },
                          label, o.last_position_only)
                 .mean(0);
    total = total.defined() ? total + m : m;
  }
  return total / static_cast<double>(o.samples);
}

CircuitValidation validate_circuit(Transformer& model, const std::vector<CircuitComponent>& circuit,
                                   const std::vector<at::Tensor>& sources, const std::vector<at::Tensor>& targets,
                                   const PairMetric& metric, const std::vector<at::Tensor>& texts,
                                   const CircuitValidationOptions& o) {
  check_pairs(sources, targets);
  metric.check(sources.size());
  if (circuit.empty()) throw InvalidArgument(detail::expected_got("validate_circuit circuit", "at least one component", "none"));
  check_sets(model, o.component, {circuit}, o.batch_size);
  for (size_t i = 0; i < texts.size(); ++i)
    if (!texts[i].defined() || texts[i].dim() != 2 || texts[i].size(0) != 1 || texts[i].size(1) < 2)
      throw ShapeError(detail::expected_got("validate_circuit text " + std::to_string(i), "a [1, pos] token tensor of at least 2 tokens",
                                            texts[i].defined() ? "shape " + c10::str(texts[i].sizes()) : "undefined"));
  CircuitValidation v;
  v.pairs = static_cast<int64_t>(sources.size());
  // Every component of the kind; the complement; random sets of the circuit's size.
  const int64_t n_layers = model.config().n_layers, units = detail::component_units(model.config(), o.component);
  std::set<CircuitComponent> members(circuit.begin(), circuit.end());
  std::vector<CircuitComponent> all, others;
  for (int64_t l = 0; l < n_layers; ++l)
    for (int64_t u = 0; u < std::max<int64_t>(units, 1); ++u) all.emplace_back(l, units ? u : -1);
  for (const auto& c : all)
    if (!members.count(c)) others.push_back(c);
  const auto& pool = others.size() >= circuit.size() ? others : all;
  std::mt19937_64 rng(o.seed);
  std::vector<std::vector<CircuitComponent>> randoms;
  for (int64_t k = 0; k < o.random_sets; ++k) {
    auto p = pool;
    std::shuffle(p.begin(), p.end(), rng);
    randoms.emplace_back(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(circuit.size()));
  }
  // Held-out pairs: rows {none, circuit, complement, randoms...} patched from the sources.
  std::vector<std::vector<CircuitComponent>> sets = {{}, circuit, others};
  sets.insert(sets.end(), randoms.begin(), randoms.end());
  // One pass over the sources gives their scores, their activations for the patched rows and
  // the mean for the deployable edit.
  const auto layers = layers_of(sets);  // the circuit and the random sets are among them
  const auto names = hook_names_of(o.component, layers);
  std::vector<std::map<int64_t, at::Tensor>> own(sources.size());
  std::map<int64_t, at::Tensor> sums;
  int64_t count = 0;
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < sources.size(); ++i) {
      auto [logits, cache] = model.run_with_cache(sources[i], names, {}, o.last_position_only);
      v.source_mean += detail::score_rows(metric[i], logits, 1).item<double>();
      for (auto l : layers) {
        own[i][l] = cache.at(component_hook_name(o.component, l)).select(0, 0);
        add_to_sum(sums, l, own[i][l], /*per_position=*/false);
      }
      count += sources[i].size(1);
    }
  }
  const auto means = means_of(std::move(sums), count, model.dtype());
  auto m = replace_sets(model, targets, rows_of(metric), o.component, sets, o.batch_size,
                        [&own](size_t i) { return own[i]; }, "validating circuit", o.last_position_only)
               .mean(0);
  v.source_mean /= static_cast<double>(sources.size());
  v.target_mean = m[0].item<double>();
  auto recovered = [&](double x) { return v.source_mean == v.target_mean ? 0.0 : (x - v.target_mean) / (v.source_mean - v.target_mean); };
  v.patched_mean = m[1].item<double>();
  v.recovered = recovered(v.patched_mean);
  v.complement_recovered = recovered(m[2].item<double>());
  for (int64_t k = 0; k < o.random_sets; ++k) v.random_recovered += recovered(m[3 + k].item<double>()) / static_cast<double>(o.random_sets);
  // The deployable edit: each set replaced by its mean over the source runs.
  std::vector<std::vector<CircuitComponent>> edits = {circuit};
  edits.insert(edits.end(), randoms.begin(), randoms.end());
  const Replacements constant = [&means](size_t) { return means; };
  auto e = replace_sets(model, targets, rows_of(metric), o.component, {circuit}, o.batch_size, constant,
                        "validating circuit (mean edit)", o.last_position_only);
  v.mean_patched_mean = e.mean().item<double>();
  v.mean_patched_recovered = recovered(v.mean_patched_mean);
  if (texts.empty()) return v;
  // Unrelated text: KL to the unedited run and perplexity, per predicted token.
  std::vector<at::Tensor> base_logp;
  std::vector<std::vector<int64_t>> text_ids;
  {
    at::NoGradGuard no_grad;
    for (const auto& t : texts) {
      auto logits = model.forward(t).to(at::kFloat);
      base_logp.push_back(at::log_softmax(logits.narrow(1, 0, t.size(1) - 1), -1));
      v.text_tokens += t.size(1) - 1;
      const auto flat = t.reshape({-1}).to(at::kLong).contiguous();
      text_ids.emplace_back(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
    }
  }
  // The unedited model's perplexity is eval's (the edited sets' below come from the same
  // token log-probabilities, summed per batched variant).
  v.perplexity = perplexity(model, text_ids);
  auto nll = torch::zeros({static_cast<int64_t>(texts.size()), static_cast<int64_t>(edits.size())});
  RowMetric kl_metric = [&](const at::Tensor& logits, size_t i, int64_t first, int64_t rows) {
    const auto& t = texts[i];
    nll[static_cast<int64_t>(i)].narrow(0, first, rows).copy_(-token_logprobs(logits, t.expand({rows, -1})).sum(1));
    auto lp = at::log_softmax(logits.to(at::kFloat).narrow(1, 0, t.size(1) - 1), -1);
    const auto& ref = base_logp[i];
    return (ref.exp() * (ref - lp)).sum(-1).sum(-1);  // [rows]
  };
  auto kl = replace_sets(model, texts, kl_metric, o.component, edits, o.batch_size, constant,
                         "validating circuit (unrelated text)")
                .sum(0) / static_cast<double>(v.text_tokens);
  auto ppl = (nll.sum(0) / static_cast<double>(v.text_tokens)).exp();
  v.kl = kl[0].item<double>();
  v.edited_perplexity = ppl[0].item<double>();
  if (o.random_sets > 0) {
    v.random_kl = kl.narrow(0, 1, o.random_sets).mean().item<double>();
    v.random_edited_perplexity = ppl.narrow(0, 1, o.random_sets).mean().item<double>();
  }
  return v;
}

CircuitResult minimal_circuit(Transformer& model, const std::vector<at::Tensor>& sources,
                              const std::vector<at::Tensor>& targets, const PairMetric& metric,
                              const CircuitOptions& o) {
  check_pairs(sources, targets);
  metric.check(sources.size());
  CircuitResult res;
  // 1. Rank: each component's mean effect toward the source over the pairs.
  SweepOptions so;
  so.component = o.component;
  so.per_position = false;
  so.batch_size = o.batch_size;
  so.last_position_only = o.last_position_only;
  at::Tensor effect;
  std::vector<int64_t> dims;
  for (size_t i = 0; i < sources.size(); ++i) {
    auto r = patch_sweep(model, sources[i], targets[i], metric[i], so);
    const double sign = r.source_score >= r.target_score ? 1.0 : -1.0;
    auto e = (r.scores - r.target_score) * sign;
    effect = effect.defined() ? effect + e : e;
    res.source_mean += r.source_score;
    res.target_mean += r.target_score;
    dims = r.scores.sizes().vec();
  }
  const double pairs = static_cast<double>(sources.size());
  effect = (effect / pairs).reshape({-1});
  res.source_mean /= pairs;
  res.target_mean /= pairs;
  const int64_t units = dims.size() == 2 ? dims[1] : 0, count = effect.numel();
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), 0);
  auto eff = effect.contiguous();
  const float* ep = eff.data_ptr<float>();
  std::stable_sort(order.begin(), order.end(), [ep](int64_t a, int64_t b) { return ep[a] > ep[b]; });
  std::vector<float> ranked;
  for (auto k : order) {
    res.ranking.emplace_back(units ? k / units : k, units ? k % units : -1);
    ranked.push_back(ep[k]);
  }
  res.ranking_effect = torch::tensor(ranked);

  const double gap = res.source_mean - res.target_mean;
  auto recovered = [&](double m) { return gap == 0 ? 0.0 : (m - res.target_mean) / gap; };
  auto ok = [&](double m) { return std::isnan(o.threshold) ? recovered(m) >= o.min_recovered : m <= o.threshold; };

  // 2. Grow: the mean metric with the top-k components patched, k = 0..n, all in batched rows.
  std::vector<std::vector<CircuitComponent>> prefixes(1);
  for (const auto& c : res.ranking) {
    auto next = prefixes.back();
    next.push_back(c);
    prefixes.push_back(std::move(next));
  }
  Progress progress("minimal circuit (" + o.component + ")", 2);
  res.curve = patch_sets(model, sources, targets, metric, o.component, prefixes, o.batch_size, o.last_position_only);
  progress.update();
  int64_t k = -1;
  for (int64_t i = 0; i < res.curve.numel(); ++i)
    if (ok(res.curve[i].item<double>())) {
      k = i;
      break;
    }
  res.reached = k >= 0;
  res.circuit = prefixes[static_cast<size_t>(res.reached ? k : count)];
  res.circuit_metric = res.curve[res.reached ? k : count].item<double>();

  // 3. Prune: drop, one at a time, the member whose removal keeps the criterion
  // and leaves the best metric; stop when none can go.
  while (o.prune && res.reached && res.circuit.size() > 1) {
    std::vector<std::vector<CircuitComponent>> without;
    for (size_t i = 0; i < res.circuit.size(); ++i) {
      auto s = res.circuit;
      s.erase(s.begin() + static_cast<std::ptrdiff_t>(i));
      without.push_back(std::move(s));
    }
    auto m = patch_sets(model, sources, targets, metric, o.component, without, o.batch_size, o.last_position_only);
    int64_t best = -1;
    for (int64_t i = 0; i < m.numel(); ++i)
      if (ok(m[i].item<double>()) && (best < 0 || recovered(m[i].item<double>()) > recovered(m[best].item<double>())))
        best = i;
    if (best < 0) break;
    res.circuit = without[static_cast<size_t>(best)];
    res.circuit_metric = m[best].item<double>();
  }
  progress.finish();
  res.recovered = recovered(res.circuit_metric);
  return res;
}

}  // namespace scalpel
