// SCALPEL_USES_TORCH
// Harm probes and gated interventions (see scalpel/steer/gate.hpp).
#include "scalpel/steer/gate.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "edit_training.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/hooks/names.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/directions.hpp"
#include "util/messages.hpp"

namespace fs = std::filesystem;

namespace scalpel {
namespace {

using Json = nlohmann::ordered_json;
using steer_detail::AttachState;

// [n, d] float64 activations at `hook`, each prompt's last token.
at::Tensor last_token_activations(Transformer& model, const std::string& hook, const std::vector<std::vector<int64_t>>& prompts,
                                  int64_t batch_size) {
  return collect_activations(model, prompts, {hook}, {-1}, batch_size).select(1, 0).select(1, 0).to(at::kDouble);
}

// Where `hook` runs in a forward pass (hook_names() lists them in order).
int64_t hook_order(const Transformer& model, const std::string& hook) {
  const auto names = model.hook_names();
  auto it = std::find(names.begin(), names.end(), hook);
  if (it == names.end())
    throw UnknownName(detail::expected_got("probe hook \"" + hook + "\"", "a hook point of this model", "no such hook",
                                           "nearest: " + detail::join_names(detail::nearest_names(hook, names))));
  return static_cast<int64_t>(it - names.begin());
}

HookHandle attach_with(Transformer& model, const GatedIntervention& g, std::optional<double> strength,
                       const std::shared_ptr<AttachState>& state) {
  const auto w = g.probe.weight.to(at::kFloat);
  const double c = g.probe.bias;
  const auto gate = g.gate;
  const std::string mode = g.mode;
  const double threshold = g.threshold;
  // The probe first (the inner edit reads the scale it sets), then the inner edit.
  auto probe = model.add_hook(g.probe.hook, [w, c, gate, mode, threshold, state](const at::Tensor& x, const HookPoint&) {
    if (state->model->decoding()) return at::Tensor();  // held from the prompt pass
    const auto a = x.dim() == 4 ? x.flatten(2) : x;
    const int64_t b = a.size(0);
    at::Tensor idx = state->last_index.defined() && state->last_index.size(0) == b
                         ? state->last_index
                         : at::full({b}, a.size(1) - 1, at::kLong);
    const auto rows = a.index({at::arange(b, at::kLong), idx}).to(at::kFloat);  // [b, d]
    const auto p = at::sigmoid(at::matmul(rows, w) + c);
    state->row_scale = mode == "sigmoid" ? at::sigmoid(gate[0] * p + gate[1]) : (p > threshold).to(at::kFloat);
    return at::Tensor();
  });
  auto edit = g.inner->attach_shared(model, strength, state);
  probe.absorb(std::move(edit));
  return probe;
}

}  // namespace

// ---------------------------------------------------------------- probes --

HarmProbe HarmProbe::fit(Transformer& model, const std::string& hook, const std::vector<std::vector<int64_t>>& harmful,
                         const std::vector<std::vector<int64_t>>& benign, double l2, int64_t batch_size) {
  if (harmful.empty() || benign.empty())
    throw InvalidArgument(detail::expected_got("HarmProbe::fit", "harmful and benign prompts",
                                               std::to_string(harmful.size()) + " and " + std::to_string(benign.size())));
  if (!(l2 > 0.0)) throw InvalidArgument(detail::expected_got("HarmProbe::fit l2", "a positive penalty", std::to_string(l2)));
  hook_order(model, hook);
  const auto pos = last_token_activations(model, hook, harmful, batch_size);
  const auto neg = last_token_activations(model, hook, benign, batch_size);
  auto X = at::cat({pos, neg});
  const int64_t n = X.size(0), d = X.size(1);
  auto y = at::cat({at::ones({pos.size(0)}, at::kDouble), at::zeros({neg.size(0)}, at::kDouble)});
  const auto mu = X.mean(0), sd = X.std(0, /*unbiased=*/false).clamp_min(1e-8);
  auto Z = at::cat({(X - mu) / sd, at::ones({n, 1}, at::kDouble)}, 1);  // [n, d + 1], the intercept last
  auto beta = at::zeros({d + 1}, at::kDouble);
  auto penalty = at::full({d + 1}, l2 * static_cast<double>(n), at::kDouble);
  penalty[d] = 0.0;
  for (int it = 0; it < 50; ++it) {  // Newton's method on the penalized log-likelihood
    const auto p = at::sigmoid(at::matmul(Z, beta));
    const auto grad = at::matmul(Z.t(), p - y) + penalty * beta;
    const auto wts = (p * (1.0 - p)).clamp_min(1e-12);
    const auto H = at::matmul(Z.t() * wts, Z) + at::diag(penalty) + 1e-10 * at::eye(d + 1, at::kDouble);
    const auto step = at::linalg_solve(H, grad);
    beta = beta - step;
    if (step.abs().max().item<double>() < 1e-10) break;
  }
  HarmProbe probe;
  probe.hook = hook;
  const auto u = beta.narrow(0, 0, d) / sd;  // back to the raw activations
  probe.weight = u.to(at::kFloat).contiguous();
  probe.bias = beta[d].item<double>() - at::dot(u, mu).item<double>();
  return probe;
}

at::Tensor HarmProbe::logit(const at::Tensor& activations) const {
  if (!weight.defined() || activations.size(-1) != weight.size(0))
    throw ShapeError(detail::expected_got("HarmProbe::logit activations", "last dimension " +
                                              std::to_string(weight.defined() ? weight.size(0) : 0),
                                          "shape " + c10::str(activations.sizes())));
  return at::matmul(activations.to(at::kFloat), weight.to(at::kFloat)) + bias;
}

at::Tensor HarmProbe::predict(Transformer& model, const std::vector<std::vector<int64_t>>& prompts, int64_t batch_size) const {
  return at::sigmoid(logit(last_token_activations(model, hook, prompts, batch_size)));
}

// ------------------------------------------------------------------ gates --

GatedIntervention GatedIntervention::create(const Transformer& model, std::shared_ptr<Intervention> inner, HarmProbe probe,
                                            const std::string& mode, double w, double b, double threshold) {
  GatedIntervention g;
  g.inner = std::move(inner);
  g.probe = std::move(probe);
  g.mode = mode;
  g.gate = at::tensor({w, b}, at::kFloat);
  g.threshold = threshold;
  g.model = ModelFingerprint::of(model);
  g.check(model);
  return g;
}

void GatedIntervention::check(const Transformer& model) const {
  if (!inner) throw InvalidArgument(detail::expected_got("gated intervention", "an inner intervention", "none"));
  if (mode != "sigmoid" && mode != "threshold")
    throw InvalidArgument(detail::expected_got("gate mode", "\"sigmoid\" or \"threshold\"", "\"" + mode + "\""));
  if (!gate.defined() || gate.numel() != 2 || gate.scalar_type() != at::kFloat)
    throw ShapeError(detail::expected_got("gate", "float32 [2] (w, b)", gate.defined() ? c10::str(gate.sizes()) : "undefined"));
  if (!std::isfinite(threshold) || !std::isfinite(probe.bias))
    throw InvalidArgument(detail::expected_got("gate threshold and probe bias", "finite numbers",
                                               std::to_string(threshold) + " and " + std::to_string(probe.bias)));
  const int64_t at_probe = hook_order(model, probe.hook);
  const int64_t width = steer_detail::site_info(model, {probe.hook, -1}, "gate probe").width;
  if (!probe.weight.defined() || probe.weight.dim() != 1 || probe.weight.size(0) != width)
    throw ShapeError(detail::expected_got("probe weight at " + probe.hook, "shape [" + std::to_string(width) + "]",
                                          probe.weight.defined() ? c10::str(probe.weight.sizes()) : "undefined"));
  for (const auto& h : inner->site_hooks())
    if (hook_order(model, h) < at_probe)
      throw InvalidArgument(detail::expected_got("gate probe at " + probe.hook, "a site no later than the edit's first (" + h + ")",
                                                 "a later one", "the gate must be known before the edit runs: probe an earlier layer"));
}

HookHandle GatedIntervention::attach(Transformer& model, std::optional<double> strength, bool check_model) const {
  check(model);
  check_model_matches(model, check_model);
  auto state = std::make_shared<AttachState>();
  state->model = &model;
  return attach_with(model, *this, strength, state);
}

at::Tensor GatedIntervention::gate_values(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                                          int64_t batch_size) const {
  const auto p = probe.predict(model, prompts, batch_size);
  at::NoGradGuard no_grad;
  return mode == "sigmoid" ? at::sigmoid(gate[0] * p + gate[1]) : (p > threshold).to(at::kFloat);
}

std::vector<std::pair<std::string, at::Tensor>> GatedIntervention::tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [k, t] : inner->tensors()) out.emplace_back("inner." + k, t);
  out.emplace_back("probe.weight", probe.weight.detach());
  out.emplace_back("gate", gate.detach());
  return out;
}

std::string GatedIntervention::fields_json() const {
  return Json{{"mode", mode},
              {"threshold", threshold},
              {"probe", Json{{"hook", probe.hook}, {"bias", probe.bias}}},
              {"inner", Json{{"kind", inner->kind()}, {"fields", Json::parse(inner->fields_json())}}}}
      .dump();
}

std::shared_ptr<Intervention> steer_detail::gated_from_parts(const std::string& fields_json,
                                                             const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                             const std::string& where) {
  auto g = std::make_shared<GatedIntervention>();
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  try {
    const auto f = Json::parse(fields_json);
    g->mode = f.at("mode").get<std::string>();
    g->threshold = f.at("threshold").get<double>();
    g->probe.hook = f.at("probe").at("hook").get<std::string>();
    g->probe.bias = f.at("probe").at("bias").get<double>();
    std::vector<std::pair<std::string, at::Tensor>> inner;
    for (const auto& [k, t] : tensors)
      if (k.rfind("inner.", 0) == 0) inner.emplace_back(k.substr(6), t);
    g->inner = intervention_from_parts(f.at("inner").at("kind").get<std::string>(), f.at("inner").at("fields").dump(), inner,
                                       where + " (inner)");
    if (by_name.size() != inner.size() + 2)
      throw FormatError(detail::expected_got(where, std::to_string(inner.size() + 2) + " tensors (the inner's, probe.weight, gate)",
                                             std::to_string(by_name.size())));
    for (const char* key : {"probe.weight", "gate"}) {
      auto it = by_name.find(key);
      if (it == by_name.end())
        throw FormatError(detail::expected_got(where + ": tensor " + key, "present (a gated intervention)", "absent"));
      (std::string(key) == "gate" ? g->gate : g->probe.weight) = it->second;
    }
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::expected_got(where + ": gated fields", "{mode, threshold, probe: {hook, bias}, inner: {kind, fields}}",
                                           e.what()));
  }
  return g;
}

// -------------------------------------------------------------- training --

TrainResult train_gate(Transformer& model, GatedIntervention& g, const BreakerData& data, const BreakerObjective& obj,
                       const TrainOptions& options) {
  g.check(model);
  g.check_model_matches(model);
  if (g.mode != "sigmoid")
    throw InvalidArgument(detail::expected_got("train_gate mode", "\"sigmoid\" (w and b learn)", "\"" + g.mode + "\"",
                                               "a threshold gate is tuned by a grid search over its threshold"));
  const auto inner_fields = nlohmann::json::parse(g.inner->fields_json());
  for (const char* k : {"alpha", "delta"})
    if (inner_fields.contains(k) && inner_fields[k].is_number() && inner_fields[k].get<double>() == 0.0)
      throw InvalidArgument(detail::expected_got(std::string("train_gate inner ") + k, "non-zero (the gate scales it)", "0"));
  steer_detail::EditTraining edit;
  edit.what = "train_gate";
  edit.target = &g;
  g.gate = g.gate.detach().contiguous();
  edit.params.push_back({"gate", g.gate, /*decay=*/false});
  edit.attach = [&model, &g](const std::shared_ptr<AttachState>& state) { return attach_with(model, g, std::nullopt, state); };
  edit.save = [&g](const std::string& dir) { save_intervention(g, (fs::path(dir) / "gated.safetensors").string()); };
  return steer_detail::train_edit(model, edit, data, obj, options);
}

// ---------------------------------------------------------------- exports --

void export_peft(const Transformer&, const GatedIntervention& g, const std::string&, std::optional<double>, bool, bool) {
  throw Unsupported(detail::expected_got("export_peft", "a constant-strength breaker", "a gated " + g.inner->kind(),
                                         "a LoRA adapter has no input-dependent strength; export gated.inner for the "
                                         "constant-strength form"));
}

void export_control_vector(const Transformer&, const GatedIntervention& g, const std::string&, std::optional<double>, bool) {
  throw Unsupported(detail::expected_got("export_control_vector", "a constant-strength steering vector", "a gated " + g.inner->kind(),
                                         "a control vector has no input-dependent strength; export gated.inner for the "
                                         "constant-strength form"));
}

}  // namespace scalpel
