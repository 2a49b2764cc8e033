// SCALPEL_USES_TORCH
// Causal tracing from C++ (trace/): activation patching sweeps (fast against
// one forward per patch, and exact identities: clean -> clean is a no-op,
// resid_pre at layer 0 everywhere is the source run), attribution patching
// against an independent autograd computation of the same first-order term,
// patched / ablated component sets against hand-written hooks, the minimal
// circuit's bookkeeping, the metrics against their formulas, and the pair
// files. On a tiny random Llama (from_config, init_std 0.2), so patches move
// the metric. Python oracles (transformers) are in tests/python/test_trace_*.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "scalpel/scalpel.hpp"
#include "support/test_util.hpp"

namespace {

using scalpel::CircuitComponent;
using Sets = std::vector<std::vector<CircuitComponent>>;

constexpr int64_t kLayers = 2, kHeads = 4, kKvHeads = 2, kPos = 8, kVocab = 50;

scalpel::Transformer& tiny_model() {
  static auto model = scalpel::Transformer::from_config(
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": false})",
      11, 0.2);
  return *model;
}

at::Tensor tokens(std::vector<int64_t> ids) { return torch::tensor(ids, torch::kLong).unsqueeze(0); }

// Two aligned pairs: the corrupted prompt differs from the clean one at position 2.
at::Tensor clean0() { return tokens({3, 17, 25, 8, 41, 12, 30, 6}); }
at::Tensor corrupt0() { return tokens({3, 17, 44, 8, 41, 12, 30, 6}); }
at::Tensor clean1() { return tokens({5, 22, 9, 33, 14, 47, 2, 19}); }
at::Tensor corrupt1() { return tokens({5, 22, 38, 33, 14, 47, 2, 19}); }

// logit[a] − logit[b] at the last position (works for [rows, 1, vocab] too): [rows].
scalpel::Metric diff_metric(int64_t a, int64_t b) {
  return [a, b](const at::Tensor& logits) {
    auto last = logits.select(1, -1);
    return last.select(-1, a) - last.select(-1, b);
  };
}

// The metric of pair 0: the clean run's top token against the corrupted run's.
scalpel::Metric pair_metric() {
  static const scalpel::Metric m = [] {
    torch::NoGradGuard no_grad;
    auto& model = tiny_model();
    const int64_t a = model.forward(clean0()).select(1, -1).argmax(-1).item<int64_t>();
    auto corrupt_last = model.forward(corrupt0()).select(1, -1)[0];
    auto top2 = std::get<1>(corrupt_last.topk(2));
    int64_t b = top2[0].item<int64_t>();
    if (b == a) b = top2[1].item<int64_t>();
    return diff_metric(a, b);
  }();
  return m;
}

double run_metric(const scalpel::Metric& m, const at::Tensor& toks) {
  torch::NoGradGuard no_grad;
  return m(tiny_model().forward(toks)).item<double>();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

double pearson(const at::Tensor& x, const at::Tensor& y) {
  auto a = x.reshape({-1}).to(torch::kDouble), b = y.reshape({-1}).to(torch::kDouble);
  a = a - a.mean();
  b = b - b.mean();
  return ((a * b).sum() / (a.norm() * b.norm())).item<double>();
}

// ---------------------------------------------------------------- sweeps ----

TEST(TracePatching, CleanToCleanIsANoOp) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  const double expected = run_metric(metric, clean0());
  for (const std::string comp : {"resid_pre", "attn_out", "z", "mlp_out", "v"}) {
    for (bool per_position : {true, false}) {
      scalpel::SweepOptions o;
      o.component = comp;
      o.per_position = per_position;
      auto r = scalpel::patch_sweep(model, clean0(), clean0(), metric, o);
      EXPECT_NEAR(r.source_score, expected, 1e-5) << comp;
      EXPECT_NEAR(r.target_score, expected, 1e-5) << comp;
      EXPECT_LT(max_abs_diff(r.scores, torch::full_like(r.scores, r.target_score)), 1e-5) << comp << " " << per_position;
      // The first-order estimate of a zero change is no change.
      auto atp = scalpel::attribution_patch(model, clean0(), clean0(), metric, o);
      EXPECT_LT(max_abs_diff(atp.scores, torch::full_like(atp.scores, expected)), 1e-5) << comp << " " << per_position;
    }
  }
}

TEST(TracePatching, ResidPreAtLayer0ReproducesTheSource) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  const double source = run_metric(metric, clean0()), target = run_metric(metric, corrupt0());
  ASSERT_GT(std::abs(source - target), 1e-2) << "the pair must move the metric for this test to mean anything";
  scalpel::SweepOptions o;
  o.per_position = false;
  o.layers = {0};
  auto r = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
  EXPECT_NEAR(r.source_score, source, 1e-5);
  EXPECT_NEAR(r.target_score, target, 1e-5);
  ASSERT_EQ(r.scores.sizes(), (std::vector<int64_t>{1}));
  EXPECT_EQ(r.dims, (std::vector<std::string>{"layer"}));
  EXPECT_TRUE(r.positions.empty());
  EXPECT_NEAR(r.scores[0].item<double>(), source, 1e-5);
  // Per position at layer 0 (the embeddings): only the differing token moves the
  // metric, and it moves it all the way to the source.
  o.per_position = true;
  auto pp = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
  ASSERT_EQ(pp.scores.sizes(), (std::vector<int64_t>{1, kPos}));
  EXPECT_EQ(pp.dims, (std::vector<std::string>{"layer", "pos"}));
  for (int64_t p = 0; p < kPos; ++p)
    EXPECT_NEAR(pp.scores[0][p].item<double>(), p == 2 ? source : target, 1e-5) << "position " << p;
  // Patching every layer's whole residual stream is the source run too.
  o.per_position = false;
  o.layers = {};
  auto all = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
  EXPECT_LT(max_abs_diff(all.scores, torch::full({kLayers}, source)), 1e-5);
}

TEST(TracePatching, FastSweepEqualsOneForwardPerPatch) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  for (const std::string comp : {"resid_pre", "z", "mlp_out", "attn_out", "k"}) {
    for (bool last : {false, true}) {
      for (bool per_position : {true, false}) {
        scalpel::SweepOptions o;
        o.component = comp;
        o.last_position_only = last;
        o.per_position = per_position;
        o.batch_size = 3;  // several batches with a remainder
        auto fast = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
        auto naive = scalpel::patch_sweep_naive(model, clean0(), corrupt0(), metric, o);
        const std::string what = comp + (last ? " last_position_only" : "") + (per_position ? " per_position" : "");
        ASSERT_EQ(fast.scores.sizes(), naive.scores.sizes()) << what;
        EXPECT_EQ(fast.dims, naive.dims) << what;
        EXPECT_EQ(fast.positions, naive.positions) << what;
        EXPECT_EQ(fast.layers, (std::vector<int64_t>{0, 1})) << what;
        EXPECT_LT(max_abs_diff(fast.scores, naive.scores), 1e-5) << what;
        EXPECT_NEAR(fast.source_score, naive.source_score, 1e-5) << what;
        EXPECT_NEAR(fast.target_score, naive.target_score, 1e-5) << what;
        const int64_t units = comp == "z" ? kHeads : comp == "k" ? kKvHeads : 0;
        std::vector<int64_t> shape{kLayers};
        if (units) shape.push_back(units);
        if (per_position) shape.push_back(kPos);
        EXPECT_EQ(fast.scores.sizes(), shape) << what;
        // A patch is not a no-op everywhere: the sweep measures something.
        EXPECT_GT((fast.scores - fast.target_score).abs().max().item<double>(), 1e-3) << what;
      }
    }
  }
}

TEST(TracePatching, ChosenPositionsAreColumnsOfTheFullSweep) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  for (const std::string comp : {"resid_pre", "z"}) {
    scalpel::SweepOptions o;
    o.component = comp;
    auto full = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
    o.positions = {-1, 2, 2};
    auto part = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
    EXPECT_EQ(part.positions, (std::vector<int64_t>{2, kPos - 1}));
    auto cols = torch::tensor(std::vector<int64_t>{2, kPos - 1}, torch::kLong);
    EXPECT_LT(max_abs_diff(part.scores, full.scores.index_select(-1, cols)), 1e-5) << comp;
    auto atp_full = scalpel::attribution_patch(model, clean0(), corrupt0(), metric, {comp});
    auto atp = scalpel::attribution_patch(model, clean0(), corrupt0(), metric, o);
    EXPECT_LT(max_abs_diff(atp.scores, atp_full.scores.index_select(-1, cols)), 1e-5) << comp;
  }
}

// -------------------------------------------------------------------- AtP ----

// target score + d/dε metric(target run with the activation moved by ε·(source − target))
// at ε = 0, one ε per (position[, unit]), by autograd through a hook: the first-order
// term AtP estimates, computed without its backward hooks. [units?, pos] or [units?].
at::Tensor linearized_patch(scalpel::Transformer& model, const std::string& comp, int64_t layer, bool per_head,
                            bool per_position, const scalpel::Metric& metric) {
  const std::string name = scalpel::component_hook_name(comp, layer);
  at::Tensor src;
  {
    torch::NoGradGuard no_grad;
    src = model.run_with_cache(clean0(), {name}).second.at(name);
  }
  std::vector<int64_t> shape{1, per_position ? kPos : 1};
  if (per_head) shape.push_back(src.size(2));
  shape.push_back(1);
  auto eps = torch::zeros(shape, torch::requires_grad());
  at::Tensor score;
  {
    at::AutoGradMode grad(true);
    auto handle = model.add_hook(name, [&](const at::Tensor& x, const scalpel::HookPoint&) {
      return x + eps * (src - x.detach());
    });
    score = metric(model.forward(corrupt0()));
    score.sum().backward();
  }
  auto g = eps.grad().reshape(per_head ? std::vector<int64_t>{shape[1], shape[2]} : std::vector<int64_t>{shape[1]});
  if (per_head) g = per_position ? g.t() : g.select(0, 0);  // [units, pos] or [units]
  else if (!per_position) g = g.select(0, 0);
  return g + score.item<double>();
}

TEST(TraceAttribution, EqualsTheFirstOrderTermComputedByAutograd) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  const double target = run_metric(metric, corrupt0());
  for (const std::string comp : {"resid_pre", "z", "mlp_out", "v"}) {
    const bool per_head = comp == "z" || comp == "v";
    for (bool per_position : {true, false}) {
      for (bool last : {false, true}) {
        scalpel::SweepOptions o;
        o.component = comp;
        o.per_position = per_position;
        o.last_position_only = last;
        auto atp = scalpel::attribution_patch(model, clean0(), corrupt0(), metric, o);
        auto exact = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
        const std::string what = comp + (per_position ? " per_position" : "") + (last ? " last" : "");
        EXPECT_EQ(atp.scores.sizes(), exact.scores.sizes()) << what;
        EXPECT_EQ(atp.dims, exact.dims) << what;
        EXPECT_EQ(atp.positions, exact.positions) << what;
        EXPECT_EQ(atp.layers, exact.layers) << what;
        EXPECT_NEAR(atp.target_score, target, 1e-5) << what;
        EXPECT_NEAR(atp.source_score, exact.source_score, 1e-5) << what;
        for (int64_t l = 0; l < kLayers; ++l) {
          auto expected = linearized_patch(model, comp, l, per_head, per_position, metric);
          const double scale = 1.0 + expected.abs().max().item<double>();
          EXPECT_LT(max_abs_diff(atp.scores[l], expected), 1e-4 * scale) << what << " layer " << l;
        }
      }
    }
  }
}

TEST(TraceAttribution, CorrelatesWithExactPatching) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  // resid_pre at layer 0: positions other than the corrupted one are exact no-ops, and
  // AtP must say so too; the corrupted position moves both the same way.
  scalpel::SweepOptions o;
  o.layers = {0};
  auto exact = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
  auto atp = scalpel::attribution_patch(model, clean0(), corrupt0(), metric, o);
  for (int64_t p = 0; p < kPos; ++p)
    if (p != 2) EXPECT_NEAR(atp.scores[0][p].item<double>(), atp.target_score, 1e-5) << p;
  EXPECT_GT((atp.scores[0][2].item<double>() - atp.target_score) * (exact.scores[0][2].item<double>() - exact.target_score), 0.0);
  // Heads per position, every layer: a first-order estimate follows the exact effects.
  o.component = "z";
  o.layers = {};
  exact = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
  atp = scalpel::attribution_patch(model, clean0(), corrupt0(), metric, o);
  // Positions before the corrupted token cannot change anything.
  auto early = atp.scores.narrow(-1, 0, 2);
  EXPECT_LT(max_abs_diff(early, torch::full_like(early, atp.target_score)), 1e-5);
  EXPECT_GT(pearson(atp.scores, exact.scores), 0.5);
}

// -------------------------------------------------------------- circuits ----

std::vector<CircuitComponent> every_head() {
  std::vector<CircuitComponent> all;
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t h = 0; h < kHeads; ++h) all.emplace_back(l, h);
  return all;
}

// The metric over prompts with hook `fn` on blocks.{layer}.attn.hook_z, averaged.
double mean_metric_with_hook(const std::vector<at::Tensor>& prompts, const scalpel::Metric& metric, int64_t layer,
                             const std::function<at::Tensor(size_t, const at::Tensor&)>& fn) {
  auto& model = tiny_model();
  torch::NoGradGuard no_grad;
  double sum = 0.0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto handle = model.add_hook(scalpel::component_hook_name("z", layer),
                                 [&fn, i](const at::Tensor& x, const scalpel::HookPoint&) { return fn(i, x); });
    sum += metric(model.forward(prompts[i])).item<double>();
  }
  return sum / static_cast<double>(prompts.size());
}

TEST(TraceCircuit, AblationsMatchHandWrittenHooks) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  const std::vector<at::Tensor> prompts = {clean0(), clean1()};
  const double plain = (run_metric(metric, clean0()) + run_metric(metric, clean1())) / 2;
  const int64_t L = 1, H = 2;
  const Sets sets = {{}, every_head(), {{L, H}}};
  // zero
  scalpel::AblationOptions zero;
  zero.kind = "zero";
  zero.batch_size = 2;
  auto z = scalpel::ablate_sets(model, prompts, metric, "z", sets, zero);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{3}));
  EXPECT_NEAR(z[0].item<double>(), plain, 1e-5) << "an empty set is the unablated model";
  EXPECT_GT(std::abs(z[1].item<double>() - plain), 1e-3) << "zeroing every head changes the metric";
  const double zero_hand = mean_metric_with_hook(prompts, metric, L, [&](size_t, const at::Tensor& x) {
    auto y = x.clone();
    y.select(2, H).zero_();
    return y;
  });
  EXPECT_NEAR(z[2].item<double>(), zero_hand, 1e-5);
  // mean over every position of every reference prompt
  const std::vector<at::Tensor> reference = {clean1(), corrupt1(), tokens({7, 1, 2})};
  at::Tensor mean;
  {
    torch::NoGradGuard no_grad;
    int64_t count = 0;
    const auto name = scalpel::component_hook_name("z", L);
    for (const auto& r : reference) {
      auto a = model.run_with_cache(r, {name}).second.at(name)[0].select(1, H);  // [pos, d_head]
      mean = mean.defined() ? mean + a.sum(0) : a.sum(0);
      count += r.size(1);
    }
    mean = mean / static_cast<double>(count);
  }
  scalpel::AblationOptions mo;
  mo.kind = "mean";
  mo.reference = reference;
  auto m = scalpel::ablate_sets(model, prompts, metric, "z", {{{L, H}}, {}}, mo);
  const double mean_hand = mean_metric_with_hook(prompts, metric, L, [&](size_t, const at::Tensor& x) {
    auto y = x.clone();
    y.select(2, H).copy_(mean.expand({x.size(1), -1}));
    return y;
  });
  EXPECT_NEAR(m[0].item<double>(), mean_hand, 1e-5);
  EXPECT_NEAR(m[1].item<double>(), plain, 1e-5);
  // resample from the prompts themselves: each prompt's only candidate is the other one
  at::Tensor own[2];
  {
    torch::NoGradGuard no_grad;
    const auto name = scalpel::component_hook_name("z", L);
    for (size_t i = 0; i < 2; ++i) own[i] = model.run_with_cache(prompts[i], {name}).second.at(name);
  }
  scalpel::AblationOptions ro;
  ro.kind = "resample";
  ro.samples = 3;
  auto rs = scalpel::ablate_sets(model, prompts, metric, "z", {{{L, H}}}, ro);
  const double resample_hand = mean_metric_with_hook(prompts, metric, L, [&](size_t i, const at::Tensor& x) {
    auto y = x.clone();
    y.select(2, H).copy_(own[1 - i].select(2, H));
    return y;
  });
  EXPECT_NEAR(rs[0].item<double>(), resample_hand, 1e-5);
}

TEST(TraceCircuit, PatchSetsAgreeWithTheSweep) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  const std::vector<at::Tensor> sources = {clean0()}, targets = {corrupt0()};
  Sets singles;
  for (const auto& c : every_head()) singles.push_back({c});
  singles.push_back({});
  auto sets = scalpel::patch_sets(model, sources, targets, metric, "z", singles, 3);
  scalpel::SweepOptions o;
  o.component = "z";
  o.per_position = false;
  auto sweep = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
  ASSERT_EQ(sets.numel(), kLayers * kHeads + 1);
  EXPECT_LT(max_abs_diff(sets.narrow(0, 0, kLayers * kHeads), sweep.scores.reshape({-1})), 1e-5);
  EXPECT_NEAR(sets[kLayers * kHeads].item<double>(), sweep.target_score, 1e-5);
  // Whole-layer components: unit -1; resid_pre at layer 0 is the source run.
  auto resid = scalpel::patch_sets(model, sources, targets, metric, "resid_pre", {{{0, -1}}, {{1, -1}}, {}}, 32, true);
  EXPECT_NEAR(resid[0].item<double>(), sweep.source_score, 1e-5);
  EXPECT_NEAR(resid[1].item<double>(), sweep.source_score, 1e-5);
  EXPECT_NEAR(resid[2].item<double>(), sweep.target_score, 1e-5);
  // Two pairs with a metric each: the mean of the pairs' own patched metrics.
  const auto m1 = diff_metric(4, 9);
  scalpel::PairMetric both(std::vector<scalpel::Metric>{metric, m1});
  auto two = scalpel::patch_sets(model, {clean0(), clean1()}, {corrupt0(), corrupt1()}, both, "resid_pre", {{{0, -1}}, {}});
  EXPECT_NEAR(two[0].item<double>(), (run_metric(metric, clean0()) + run_metric(m1, clean1())) / 2, 1e-5);
  EXPECT_NEAR(two[1].item<double>(), (run_metric(metric, corrupt0()) + run_metric(m1, corrupt1())) / 2, 1e-5);
}

TEST(TraceCircuit, MinimalCircuitBookkeeping) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  const std::vector<at::Tensor> sources = {clean0()}, targets = {corrupt0()};
  scalpel::CircuitOptions co;
  co.component = "z";
  co.batch_size = 4;
  auto r = scalpel::minimal_circuit(model, sources, targets, metric, co);
  const int64_t n = kLayers * kHeads;
  ASSERT_EQ(static_cast<int64_t>(r.ranking.size()), n);
  EXPECT_EQ(std::set<CircuitComponent>(r.ranking.begin(), r.ranking.end()).size(), static_cast<size_t>(n));
  ASSERT_EQ(r.ranking_effect.numel(), n);
  ASSERT_EQ(r.curve.numel(), n + 1);
  EXPECT_NEAR(r.source_mean, run_metric(metric, clean0()), 1e-5);
  EXPECT_NEAR(r.target_mean, run_metric(metric, corrupt0()), 1e-5);
  // The ranking is by effect toward the source, and the effects are the sweep's.
  scalpel::SweepOptions o;
  o.component = "z";
  o.per_position = false;
  auto sweep = scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o);
  const double sign = r.source_mean >= r.target_mean ? 1.0 : -1.0;
  for (int64_t i = 0; i < n; ++i) {
    const auto [l, h] = r.ranking[static_cast<size_t>(i)];
    EXPECT_NEAR(r.ranking_effect[i].item<double>(), sign * (sweep.scores[l][h].item<double>() - r.target_mean), 1e-5);
    if (i > 0) EXPECT_GE(r.ranking_effect[i - 1].item<double>(), r.ranking_effect[i].item<double>());
  }
  // The curve is the top-k patched together; the circuit's metric is its own patch.
  Sets prefixes(1);
  for (const auto& c : r.ranking) {
    prefixes.push_back(prefixes.back());
    prefixes.back().push_back(c);
  }
  EXPECT_LT(max_abs_diff(r.curve, scalpel::patch_sets(model, sources, targets, metric, "z", prefixes)), 1e-5);
  EXPECT_NEAR(r.curve[0].item<double>(), r.target_mean, 1e-5);
  ASSERT_FALSE(r.circuit.empty());
  EXPECT_NEAR(scalpel::patch_sets(model, sources, targets, metric, "z", {r.circuit})[0].item<double>(), r.circuit_metric, 1e-5);
  const double gap = r.source_mean - r.target_mean;
  EXPECT_NEAR(r.recovered, (r.circuit_metric - r.target_mean) / gap, 1e-6);
  if (r.reached) EXPECT_GE(r.recovered, co.min_recovered - 1e-9);
  else EXPECT_EQ(r.circuit.size(), static_cast<size_t>(n));
  for (const auto& c : r.circuit) EXPECT_NE(std::find(r.ranking.begin(), r.ranking.end(), c), r.ranking.end());

  // resid_pre: any one layer's whole residual stream is the source run, so the
  // minimal circuit is one component and recovers everything.
  co.component = "resid_pre";
  auto one = scalpel::minimal_circuit(model, sources, targets, metric, co);
  EXPECT_TRUE(one.reached);
  EXPECT_EQ(one.circuit.size(), 1u);
  EXPECT_NEAR(one.recovered, 1.0, 1e-4);
  EXPECT_EQ(one.ranking.size(), static_cast<size_t>(kLayers));
  // A threshold criterion τ above the target mean is met by the empty set.
  co.component = "z";
  co.threshold = r.target_mean + std::abs(gap);
  auto none = scalpel::minimal_circuit(model, sources, targets, metric, co);
  EXPECT_TRUE(none.reached);
  EXPECT_TRUE(none.circuit.empty());
  EXPECT_NEAR(none.circuit_metric, r.target_mean, 1e-5);
}

TEST(TraceCircuit, ValidateCircuit) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  const std::vector<at::Tensor> sources = {clean0(), clean1()}, targets = {corrupt0(), corrupt1()};
  const std::vector<at::Tensor> texts = {tokens({1, 2, 3, 4, 5}), tokens({9, 8, 7})};
  const double source_mean = (run_metric(metric, clean0()) + run_metric(metric, clean1())) / 2;
  const double target_mean = (run_metric(metric, corrupt0()) + run_metric(metric, corrupt1())) / 2;
  // resid_pre at layer 0: the circuit, the complement (layer 1) and every random set
  // (layer 1 again) each carry the whole source run.
  scalpel::CircuitValidationOptions vo;
  vo.component = "resid_pre";
  vo.random_sets = 3;
  auto v = scalpel::validate_circuit(model, {{0, -1}}, sources, targets, metric, texts, vo);
  EXPECT_EQ(v.pairs, 2);
  EXPECT_NEAR(v.source_mean, source_mean, 1e-5);
  EXPECT_NEAR(v.target_mean, target_mean, 1e-5);
  EXPECT_NEAR(v.patched_mean, source_mean, 1e-5);
  EXPECT_NEAR(v.recovered, 1.0, 1e-4);
  EXPECT_NEAR(v.complement_recovered, 1.0, 1e-4);
  EXPECT_NEAR(v.random_recovered, 1.0, 1e-4);
  // Unrelated text: the tokens predicted, the unedited perplexity, and KL >= 0.
  EXPECT_EQ(v.text_tokens, 4 + 2);
  double nll = 0.0;
  {
    torch::NoGradGuard no_grad;
    for (const auto& t : texts) nll -= scalpel::token_logprobs(model.forward(t), t).sum().item<double>();
  }
  EXPECT_NEAR(v.perplexity, std::exp(nll / 6.0), 1e-4 * v.perplexity);
  EXPECT_GT(v.kl, 1e-6) << "replacing every embedding by their mean changes the predictions";
  EXPECT_GT(v.edited_perplexity, 0.0);
  EXPECT_GE(v.random_kl, 0.0);
  // Heads: the circuit's patched mean is patch_sets' (two pairs, one metric).
  vo.component = "z";
  const std::vector<CircuitComponent> circuit = {{1, 0}, {0, 3}};
  auto vz = scalpel::validate_circuit(model, circuit, sources, targets, metric, {}, vo);
  auto ps = scalpel::patch_sets(model, sources, targets, metric, "z", {circuit, {}});
  EXPECT_NEAR(vz.patched_mean, ps[0].item<double>(), 1e-5);
  EXPECT_NEAR(vz.target_mean, ps[1].item<double>(), 1e-5);
  EXPECT_NEAR(vz.recovered, (vz.patched_mean - target_mean) / (source_mean - target_mean), 1e-5);
  EXPECT_EQ(vz.text_tokens, 0);
  EXPECT_THROW(scalpel::validate_circuit(model, {}, sources, targets, metric, {}, vo), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::validate_circuit(model, circuit, sources, targets, metric, {tokens({1})}, vo), scalpel::ShapeError);
}

// ----------------------------------------------------------------- errors ----

TEST(TraceErrors, BadInputThrowsTypedErrors) {
  auto& model = tiny_model();
  const auto metric = pair_metric();
  auto shorter = corrupt0().narrow(1, 0, 5);
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), shorter, metric), scalpel::ShapeError);
  EXPECT_THROW(scalpel::patch_sweep_naive(model, clean0(), shorter, metric), scalpel::ShapeError);
  EXPECT_THROW(scalpel::attribution_patch(model, clean0(), shorter, metric), scalpel::ShapeError);
  EXPECT_THROW(scalpel::patch_sweep(model, clean0().expand({2, -1}), corrupt0().expand({2, -1}), metric), scalpel::ShapeError);
  EXPECT_THROW(scalpel::patch_sets(model, {clean0()}, {shorter}, metric, "z", {{}}), scalpel::ShapeError);
  try {
    scalpel::patch_sweep(model, clean0(), shorter, metric);
  } catch (const scalpel::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("8 vs 5"), std::string::npos) << e.what();
  }

  scalpel::SweepOptions o;
  o.component = "attention";
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o), scalpel::UnknownName);
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o), std::invalid_argument);
  EXPECT_THROW(scalpel::attribution_patch(model, clean0(), corrupt0(), metric, o), std::invalid_argument);
  EXPECT_THROW(scalpel::component_hook_name("attention", 0), scalpel::UnknownName);
  EXPECT_EQ(scalpel::component_hook_name("z", 1), "blocks.1.attn.hook_z");

  o = {};
  o.layers = {kLayers};
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o), scalpel::InvalidArgument);
  o = {};
  o.positions = {kPos};
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o), scalpel::InvalidArgument);
  o = {};
  o.positions = {1};
  o.per_position = false;
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o), scalpel::InvalidArgument);
  o = {};
  o.batch_size = 0;
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o), scalpel::InvalidArgument);
  o = {};
  o.component = "mlp_post";
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), metric, o), scalpel::InvalidArgument);
  o = {};
  o.component = "z";
  o.qk_fix = true;
  EXPECT_THROW(scalpel::attribution_patch(model, clean0(), corrupt0(), metric, o), scalpel::InvalidArgument);
  // A metric with a graph that does not reach the activations.
  scalpel::Metric detached = [](const at::Tensor& logits) {
    return logits.select(1, -1).select(-1, 0).detach() + torch::zeros({1}, torch::requires_grad());
  };
  EXPECT_THROW(scalpel::attribution_patch(model, clean0(), corrupt0(), detached), scalpel::InvalidArgument);
  // A metric that does not give one score per row.
  scalpel::Metric whole = [](const at::Tensor& logits) { return logits.select(1, -1); };
  EXPECT_THROW(scalpel::patch_sweep(model, clean0(), corrupt0(), whole), scalpel::ShapeError);

  // Component sets: units out of range, whole-layer components with a unit, bad kinds.
  EXPECT_THROW(scalpel::patch_sets(model, {clean0()}, {corrupt0()}, metric, "z", {{{0, kHeads}}}), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::patch_sets(model, {clean0()}, {corrupt0()}, metric, "z", {{{kLayers, 0}}}), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::patch_sets(model, {clean0()}, {corrupt0()}, metric, "resid_pre", {{{0, 0}}}), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::patch_sets(model, {clean0()}, {}, metric, "z", {{}}), scalpel::InvalidArgument);
  scalpel::PairMetric three(std::vector<scalpel::Metric>{metric, metric, metric});
  EXPECT_THROW(scalpel::patch_sets(model, {clean0(), clean1()}, {corrupt0(), corrupt1()}, three, "z", {{}}),
               scalpel::InvalidArgument);
  scalpel::AblationOptions ao;
  ao.kind = "bogus";
  EXPECT_THROW(scalpel::ablate_sets(model, {clean0()}, metric, "z", {{{0, 0}}}, ao), scalpel::InvalidArgument);
  ao.kind = "resample";  // a lone prompt has nothing to resample from
  EXPECT_THROW(scalpel::ablate_sets(model, {clean0()}, metric, "z", {{{0, 0}}}, ao), scalpel::ShapeError);
  ao.kind = "mean";
  ao.per_position = true;
  ao.reference = {tokens({1, 2, 3})};
  EXPECT_THROW(scalpel::ablate_sets(model, {clean0()}, metric, "z", {{{0, 0}}}, ao), scalpel::ShapeError);
}

// A metric without any autograd graph (argmax, .item(), torch ops under NoGradGuard)
// is refused with a typed error, not a raw c10::Error from backward().
TEST(TraceErrors, NonDifferentiableMetricThrowsInvalidArgument) {
  scalpel::Metric argmax = [](const at::Tensor& logits) { return logits.select(1, -1).argmax(-1).to(at::kFloat); };
  EXPECT_THROW(scalpel::attribution_patch(tiny_model(), clean0(), corrupt0(), argmax), scalpel::InvalidArgument);
}

// ---------------------------------------------------------------- metrics ----

TEST(TraceMetrics, MatchTheirFormulas) {
  torch::manual_seed(3);
  auto logits = torch::randn({3, 5, 11}) * 3;
  auto toks = torch::randint(0, 11, {3, 5}, torch::kLong);
  auto lp = logits.log_softmax(-1);
  // token_logprobs / masked_logprob
  auto tl = scalpel::token_logprobs(logits, toks);
  ASSERT_EQ(tl.sizes(), (std::vector<int64_t>{3, 4}));
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t < 4; ++t)
      EXPECT_NEAR(tl[b][t].item<double>(), lp[b][t][toks[b][t + 1].item<int64_t>()].item<double>(), 1e-5);
  auto mask = torch::zeros({3, 5}, torch::kLong);
  mask.narrow(1, 3, 2).fill_(1);
  mask[0][0] = 1;  // position 0 cannot be a target: ignored
  EXPECT_LT(max_abs_diff(scalpel::masked_logprob(logits, toks, mask), tl.narrow(1, 2, 2).sum(1)), 1e-5);
  // logit_diff, at the last and at a given position
  auto correct = torch::tensor(std::vector<int64_t>{1, 2, 3}), wrong = torch::tensor(std::vector<int64_t>{4, 4, 0});
  for (int64_t pos : {-1, 1}) {
    auto d = scalpel::logit_diff(logits, correct, wrong, pos);
    const int64_t p = pos < 0 ? 5 + pos : pos;
    for (int64_t b = 0; b < 3; ++b)
      EXPECT_NEAR(d[b].item<double>(),
                  (logits[b][p][correct[b].item<int64_t>()] - logits[b][p][wrong[b].item<int64_t>()]).item<double>(), 1e-6);
  }
  EXPECT_THROW(scalpel::logit_diff(logits, correct.narrow(0, 0, 2), wrong), scalpel::ShapeError);
  EXPECT_THROW(scalpel::logit_diff(logits, correct, wrong, 5), scalpel::InvalidArgument);
  // refusal_score: log-odds of the token set
  auto rs = scalpel::refusal_score(logits, {2, 7});
  for (int64_t b = 0; b < 3; ++b) {
    auto pr = logits[b][4].to(torch::kDouble).softmax(-1);
    const double p = pr[2].item<double>() + pr[7].item<double>();
    EXPECT_NEAR(rs[b].item<double>(), std::log(p / (1 - p)), 1e-4);
  }
  EXPECT_THROW(scalpel::refusal_score(logits, {11}), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::refusal_score(logits, {}), scalpel::InvalidArgument);
  // kl_divergence: KL(reference ‖ p), zero for itself
  auto ref = logits + torch::randn({3, 5, 11});
  auto kl = scalpel::kl_divergence(logits, ref, 2);
  auto q = ref.select(1, 2).to(torch::kDouble).log_softmax(-1), pp = logits.select(1, 2).to(torch::kDouble).log_softmax(-1);
  EXPECT_LT(max_abs_diff(kl.to(torch::kDouble), (q.exp() * (q - pp)).sum(-1)), 1e-5);
  EXPECT_LT(scalpel::kl_divergence(logits, logits).abs().max().item<double>(), 1e-7);
  EXPECT_THROW(scalpel::kl_divergence(logits, ref.narrow(0, 0, 2)), scalpel::ShapeError);
  // causal effect and gap recovered (0 where there is no gap)
  auto base = torch::tensor({3.0, 1.0, 2.0}), patched = torch::tensor({1.0, 1.5, 2.0});
  EXPECT_LT(max_abs_diff(scalpel::causal_effect(base, patched), torch::tensor({2.0, -0.5, 0.0})), 1e-7);
  auto clean = torch::tensor({5.0, 1.0, 2.0}), corrupted = torch::tensor({1.0, 3.0, 2.0});
  EXPECT_LT(max_abs_diff(scalpel::gap_recovered(patched, clean, corrupted), torch::tensor({0.0, 0.75, 0.0})), 1e-7);
}

TEST(TraceMetrics, TeacherForcedBatchesAreLeftPaddedAndPaddingFree) {
  auto b = scalpel::teacher_forced_batch({{1, 2}, {3}}, {{4}, {5, 6, 7}}, 9);
  EXPECT_TRUE(torch::equal(b.tokens, torch::tensor(std::vector<int64_t>{9, 1, 2, 4, 3, 5, 6, 7}).reshape({2, 4})));
  EXPECT_TRUE(torch::equal(b.attention_mask, torch::tensor(std::vector<int64_t>{0, 1, 1, 1, 1, 1, 1, 1}).reshape({2, 4})));
  EXPECT_TRUE(torch::equal(b.target_mask, torch::tensor(std::vector<int64_t>{0, 0, 0, 1, 0, 1, 1, 1}).reshape({2, 4})));
  EXPECT_THROW(scalpel::teacher_forced_batch({{1}}, {{}}), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::teacher_forced_batch({{1}}, {{2}, {3}}), scalpel::InvalidArgument);
  // completion_logprob in left-padded batches equals each pair run alone.
  auto& model = tiny_model();
  const std::vector<std::vector<int64_t>> prompts = {{1, 2, 3, 4, 5}, {6}, {7, 8, 9}};
  const std::vector<std::vector<int64_t>> harmful = {{10, 11}, {12, 13, 14, 15}, {16}};
  const std::vector<std::vector<int64_t>> neutral = {{20}, {21, 22}, {23, 24, 25}};
  auto alone = [&](const std::vector<std::vector<int64_t>>& completions) {
    torch::NoGradGuard no_grad;
    std::vector<double> out;
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto ids = prompts[i];
      ids.insert(ids.end(), completions[i].begin(), completions[i].end());
      auto t = tokens(ids);
      auto tl = scalpel::token_logprobs(model.forward(t), t)[0];
      out.push_back(tl.narrow(0, static_cast<int64_t>(prompts[i].size()) - 1, static_cast<int64_t>(completions[i].size()))
                        .sum()
                        .item<double>());
    }
    return torch::tensor(out, torch::kFloat);
  };
  auto h_alone = alone(harmful), n_alone = alone(neutral);
  auto h = scalpel::completion_logprob(model, prompts, harmful, 2);
  EXPECT_LT(max_abs_diff(h, h_alone), 1e-4);
  EXPECT_LT(max_abs_diff(scalpel::harm_score(model, prompts, harmful, neutral, 3), h_alone - n_alone), 1e-4);
  EXPECT_THROW(scalpel::completion_logprob(model, prompts, harmful, 0), scalpel::InvalidArgument);
}

// ------------------------------------------------------------------ pairs ----

TEST(TracePairs, LoadsJsonlAndNamesTheBadLine) {
  scalpel::test::TempDir dir;
  const auto good = dir.path("pairs.jsonl");
  scalpel::test::write_file(good,
                            "// prompt pairs\n"
                            "{\"clean\": \"When Mary\", \"corrupted\": \"When John\", \"answer\": \" John\"}\n"
                            "\n"
                            "   \n"
                            "{\"clean\": \"a\", \"corrupted\": \"b\", \"answers\": [\" x\", \" y\"], "
                            "\"corrupted_answers\": [\" z\"]}\n");
  auto pairs = scalpel::load_prompt_pairs(good);
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].clean, "When Mary");
  EXPECT_EQ(pairs[0].corrupted, "When John");
  EXPECT_EQ(pairs[0].answers, (std::vector<std::string>{" John"}));
  EXPECT_TRUE(pairs[0].corrupted_answers.empty());
  EXPECT_EQ(pairs[1].answers, (std::vector<std::string>{" x", " y"}));
  EXPECT_EQ(pairs[1].corrupted_answers, (std::vector<std::string>{" z"}));

  const auto comp = dir.path("completions.jsonl");
  scalpel::test::write_file(comp, "{\"prompt\": \"p\", \"harmful\": \"h\", \"neutral\": \"n\"}\n");
  auto cps = scalpel::load_completion_pairs(comp);
  ASSERT_EQ(cps.size(), 1u);
  EXPECT_EQ(cps[0].prompt, "p");
  EXPECT_EQ(cps[0].harmful, "h");
  EXPECT_EQ(cps[0].neutral, "n");

  auto expect_format_error = [&](const std::string& text, const std::string& needle) {
    const auto path = dir.path("bad.jsonl");
    scalpel::test::write_file(path, text);
    try {
      scalpel::load_prompt_pairs(path);
      ADD_FAILURE() << "no FormatError for: " << text;
    } catch (const scalpel::FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_format_error("{\"clean\": \"a\", \"corrupted\": \"b\", \"answer\": \" x\"}\n{\"clean\": \"a\", \"answer\": \" x\"}\n",
                      "bad.jsonl:2");
  expect_format_error("{\"clean\": \"a\", \"corrupted\": \"b\"}\n", "answer");
  expect_format_error("{\"clean\": \"a\", \"corrupted\": 3, \"answer\": \" x\"}\n", "corrupted");
  expect_format_error("{\"clean\": \"a\", \"corrupted\": \"b\", \"answers\": []}\n", "answers");
  expect_format_error("not json\n", "bad.jsonl:1");
  expect_format_error("[1, 2]\n", "a JSON object");
  expect_format_error("// only a comment\n\n", "at least one");
  EXPECT_THROW(scalpel::load_prompt_pairs(dir.path("missing.jsonl")), scalpel::FileNotFound);
}

}  // namespace
