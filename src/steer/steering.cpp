// SCALPEL_USES_TORCH
// Steering vectors (see scalpel/steer/steering.hpp).
#include "scalpel/steer/steering.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "edit_training.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/hooks/names.hpp"
#include "scalpel/io/gguf.hpp"
#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/directions.hpp"
#include "util/messages.hpp"

namespace fs = std::filesystem;

namespace scalpel {
namespace {

using Json = nlohmann::ordered_json;
using steer_detail::AttachState;
using steer_detail::site_label;

steer_detail::SiteInfo site_info(const Transformer& model, const BreakerSite& site) {
  return steer_detail::site_info(model, site, "steering vector");
}

// v, shrunk onto the ball of radius max_norm when it lies outside (differentiable).
at::Tensor bounded(const at::Tensor& v, double max_norm) {
  if (max_norm <= 0.0) return v;
  return v * (max_norm / v.norm().clamp_min(1e-12)).clamp_max(1.0);
}

HookHandle attach_with(Transformer& model, const SteeringVector& sv, double alpha, const std::shared_ptr<AttachState>& state) {
  if (alpha == 0.0) return HookHandle();
  std::map<std::string, std::vector<size_t>> by_site;
  std::vector<std::string> order;
  for (size_t i = 0; i < sv.sites.size(); ++i) {
    if (!by_site.count(sv.sites[i].hook)) order.push_back(sv.sites[i].hook);
    by_site[sv.sites[i].hook].push_back(i);
  }
  const int64_t heads = model.config().n_heads;
  std::vector<std::pair<std::string, HookFn>> hooks;
  for (const auto& hook : order) {
    const bool per_head = HookName::parse(hook).component == "z";
    // The vectors of this hook (the live tensors: read at each forward, so training and later
    // edits of .vectors see the current values and every forward builds its own graph).
    struct Item {
      at::Tensor v;
      int64_t head;
    };
    std::vector<Item> items;
    for (auto i : by_site[hook]) items.push_back({sv.vectors[i], sv.sites[i].head});
    const int64_t d_head = model.config().d_head;
    const double max_norm = sv.max_norm;
    hooks.emplace_back(hook, [items, per_head, heads, d_head, max_norm, alpha, state](const at::Tensor& x,
                                                                                       const HookPoint&) -> at::Tensor {
      at::Tensor gate;
      if (!steer_detail::position_gate(*state, x, gate)) return at::Tensor();
      // The vector this hook adds: [d], or for attn.hook_z [heads, d_head] (a head's vector placed in
      // its row by a one-hot outer product, so gradients flow).
      at::Tensor add;
      for (const auto& it : items) {
        auto v = bounded(it.v, max_norm);
        if (per_head) {
          if (it.head < 0) {
            v = v.view({heads, d_head});
          } else {
            auto onehot = at::zeros({heads, 1}, v.options());
            onehot[it.head][0] = 1.0;
            v = onehot * v.view({1, d_head});
          }
        }
        add = add.defined() ? add + v : v;
      }
      add = add * alpha;
      at::Tensor update = add;
      if (gate.defined()) {
        auto g = gate.to(at::kFloat);
        for (int64_t k = 0; k < add.dim(); ++k) g = g.unsqueeze(-1);
        update = g * add;  // [b, pos, ...]
      }
      return x + update.to(x.scalar_type());
    });
  }
  return model.add_hooks(hooks);
}

// [n, d] activations of `prompts` at every site (read_positions averaged), one forward per width.
std::vector<at::Tensor> site_activations(Transformer& model, const std::vector<BreakerSite>& sites,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const std::vector<int64_t>& read_positions, int64_t batch_size) {
  std::map<int64_t, std::vector<std::string>> hooks_by_width;  // flattened hook width -> hooks
  const auto& cfg = model.config();
  for (const auto& s : sites) {
    auto& list = hooks_by_width[site_info(model, {s.hook, -1}).width];
    if (std::find(list.begin(), list.end(), s.hook) == list.end()) list.push_back(s.hook);
  }
  std::map<std::string, at::Tensor> by_hook;  // [n, d]
  for (const auto& [w, hooks] : hooks_by_width) {
    auto acts = collect_activations(model, prompts, hooks, read_positions, batch_size);  // [n, hooks, P, d]
    for (size_t j = 0; j < hooks.size(); ++j) by_hook[hooks[j]] = acts.select(1, static_cast<int64_t>(j)).mean(1);
  }
  std::vector<at::Tensor> out;
  for (const auto& s : sites) {
    auto a = by_hook.at(s.hook);
    if (s.head >= 0) a = a.narrow(1, s.head * cfg.d_head, cfg.d_head);
    out.push_back(a.to(at::kDouble));
  }
  return out;
}

}  // namespace

// -------------------------------------------------------------- the vector --

SteeringVector SteeringVector::create(const Transformer& model, const std::vector<BreakerSite>& sites) {
  if (sites.empty()) throw InvalidArgument(detail::expected_got("steering vector sites", "at least one", "none"));
  std::set<std::pair<std::string, int64_t>> seen;
  SteeringVector sv;
  for (const auto& s : sites) {
    const auto info = site_info(model, s);
    if (!seen.insert({s.hook, s.head}).second)
      throw InvalidArgument(detail::expected_got("steering vector sites", "each site once", site_label(s) + " twice"));
    sv.sites.push_back(s);
    sv.vectors.push_back(at::zeros({info.width}, at::kFloat));
  }
  sv.model = ModelFingerprint::of(model);
  return sv;
}

SteeringVector SteeringVector::from_contrast(Transformer& model, const std::vector<BreakerSite>& sites,
                                             const std::vector<std::vector<int64_t>>& positive,
                                             const std::vector<std::vector<int64_t>>& negative,
                                             const std::vector<int64_t>& read_positions, const std::string& method,
                                             int64_t batch_size) {
  if (method != "mean" && method != "pca_diff")
    throw InvalidArgument(detail::expected_got("from_contrast method", "\"mean\" or \"pca_diff\"", "\"" + method + "\""));
  if (positive.empty() || negative.empty())
    throw InvalidArgument(detail::expected_got("from_contrast prompts", "at least one positive and one negative prompt",
                                               std::to_string(positive.size()) + " and " + std::to_string(negative.size())));
  if (method == "pca_diff" && (positive.size() != negative.size() || positive.size() < 2))
    throw InvalidArgument(detail::expected_got("from_contrast \"pca_diff\"", "paired prompts (as many positive as negative, at least 2)",
                                               std::to_string(positive.size()) + " positive and " + std::to_string(negative.size()) +
                                                   " negative",
                                               "use method \"mean\" for unpaired sets"));
  auto sv = create(model, sites);
  const auto pos = site_activations(model, sites, positive, read_positions, batch_size);
  const auto neg = site_activations(model, sites, negative, read_positions, batch_size);
  for (size_t i = 0; i < sites.size(); ++i) {
    const auto mean = pos[i].mean(0) - neg[i].mean(0);
    if (method == "mean") {
      sv.vectors[i] = mean.to(at::kFloat).contiguous();
      continue;
    }
    auto diffs = pos[i] - neg[i];
    diffs = diffs - diffs.mean(0, /*keepdim=*/true);
    auto svd = at::linalg_svd(diffs, /*full_matrices=*/false);
    auto pc = std::get<2>(svd)[0];  // unit, the first right singular vector
    const double proj = at::dot(mean, pc).item<double>();
    sv.vectors[i] = (pc * proj).to(at::kFloat).contiguous();  // signed towards the mean difference
  }
  return sv;
}

void SteeringVector::check(const Transformer& model) const {
  if (!std::isfinite(alpha)) throw InvalidArgument(detail::expected_got("steering vector alpha", "a finite number", std::to_string(alpha)));
  if (!(max_norm >= 0.0) || !std::isfinite(max_norm))
    throw InvalidArgument(detail::expected_got("steering vector max_norm", "a finite number >= 0 (0: unbounded)", std::to_string(max_norm)));
  steer_detail::check_positions(positions, "steering vector");
  if (vectors.size() != sites.size())
    throw ShapeError(detail::expected_got("steering vector", "one vector per site (" + std::to_string(sites.size()) + ")",
                                          std::to_string(vectors.size()) + " vectors"));
  for (size_t i = 0; i < sites.size(); ++i) {
    const auto info = site_info(model, sites[i]);
    const auto& v = vectors[i];
    const std::string what = "steering vector " + std::to_string(i) + " (" + site_label(sites[i]) + ")";
    if (!v.defined() || v.dim() != 1 || v.size(0) != info.width)
      throw ShapeError(detail::expected_got(what, "shape [" + std::to_string(info.width) + "]",
                                            v.defined() ? c10::str(v.sizes()) : std::string("undefined")));
    if (v.scalar_type() != at::kFloat)
      throw InvalidArgument(detail::expected_got(what, "float32", std::string(c10::toString(v.scalar_type()))));
  }
}

HookHandle SteeringVector::attach(Transformer& model, std::optional<double> a, bool check_model) const {
  check(model);
  if (a && !std::isfinite(*a)) throw InvalidArgument(detail::expected_got("attach alpha", "a finite number", std::to_string(*a)));
  check_model_matches(model, check_model);
  auto state = std::make_shared<AttachState>();
  state->model = &model;
  state->positions = positions;
  return attach_with(model, *this, a.value_or(alpha), state);
}

std::vector<std::string> SteeringVector::site_hooks() const {
  std::vector<std::string> out;
  for (const auto& s : sites) out.push_back(s.hook);
  return out;
}

HookHandle SteeringVector::attach_shared(Transformer& model, std::optional<double> a,
                                         const std::shared_ptr<AttachState>& state) const {
  check(model);
  state->positions = positions;
  return attach_with(model, *this, a.value_or(alpha), state);
}

std::vector<at::Tensor> SteeringVector::effective_vectors() const {
  std::vector<at::Tensor> out;
  for (const auto& v : vectors) out.push_back(bounded(v.detach(), max_norm));
  return out;
}

int64_t SteeringVector::num_parameters() const {
  int64_t n = 0;
  for (const auto& v : vectors) n += v.numel();
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> SteeringVector::tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < vectors.size(); ++i) out.emplace_back("vectors." + std::to_string(i), vectors[i].detach());
  return out;
}

std::string SteeringVector::fields_json() const {
  Json list = Json::array();
  for (const auto& s : sites) list.push_back(Json{{"hook", s.hook}, {"head", s.head}});
  return Json{{"alpha", alpha}, {"positions", positions}, {"max_norm", max_norm}, {"sites", list}}.dump();
}

SteeringVector SteeringVector::from_parts(const std::string& fields_json, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                          const std::string& where) {
  SteeringVector sv;
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  try {
    const auto f = Json::parse(fields_json);
    sv.alpha = f.at("alpha").get<double>();
    sv.positions = f.at("positions").get<std::string>();
    sv.max_norm = f.at("max_norm").get<double>();
    const auto& list = f.at("sites");
    for (size_t i = 0; i < list.size(); ++i) {
      sv.sites.push_back({list[i].at("hook").get<std::string>(), list[i].at("head").get<int64_t>()});
      const std::string key = "vectors." + std::to_string(i);
      auto it = by_name.find(key);
      if (it == by_name.end())
        throw FormatError(detail::expected_got(where + ": tensor " + key, "present (the description lists site " + std::to_string(i) + ")",
                                               "absent"));
      if (it->second.dim() != 1)
        throw FormatError(detail::expected_got(where + ": tensor " + key, "a vector", "shape " + c10::str(it->second.sizes())));
      sv.vectors.push_back(it->second);
    }
    if (by_name.size() != sv.vectors.size())
      throw FormatError(detail::expected_got(where, std::to_string(sv.vectors.size()) + " tensors (one per site)",
                                             std::to_string(by_name.size())));
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::expected_got(where + ": steering_vector fields", "{alpha, positions, max_norm, sites: [{hook, head}]}",
                                           e.what()));
  }
  return sv;
}

// -------------------------------------------------------------- training --

TrainResult train_steering(Transformer& model, SteeringVector& sv, const BreakerData& data, const BreakerObjective& obj,
                           const TrainOptions& options) {
  sv.check(model);
  sv.check_model_matches(model);
  steer_detail::EditTraining edit;
  edit.what = "train_steering";
  edit.target = &sv;
  for (size_t i = 0; i < sv.vectors.size(); ++i) {
    sv.vectors[i] = sv.vectors[i].detach().contiguous();
    edit.params.push_back({"vectors." + std::to_string(i), sv.vectors[i], /*decay=*/false});
  }
  // α scales the vectors in the loss as at inference; α = 0 would train nothing.
  if (sv.alpha == 0.0)
    throw InvalidArgument(detail::expected_got("train_steering alpha", "non-zero (the vectors act as alpha·v)", "0"));
  edit.attach = [&model, &sv](const std::shared_ptr<AttachState>& state) { return attach_with(model, sv, sv.alpha, state); };
  edit.save = [&sv](const std::string& dir) { save_intervention(sv, (fs::path(dir) / "steering.safetensors").string()); };
  edit.leave_no_op = [&sv](uint64_t seed) {
    for (const auto& v : sv.vectors)
      if (v.abs().max().item<double>() != 0.0) return;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    at::NoGradGuard no_grad;
    for (auto& v : sv.vectors) v.copy_(at::normal(0.0, 0.01, v.sizes(), gen));
  };
  return steer_detail::train_edit(model, edit, data, obj, options);
}

// ------------------------------------------------------- control vectors --

void export_control_vector(const Transformer& model, const SteeringVector& sv, const std::string& path, std::optional<double> a,
                           bool overwrite) {
  sv.check(model);
  if (sv.positions != "all")
    throw Unsupported(detail::expected_got("export_control_vector", "a steering vector at every position (positions \"all\")",
                                           "positions \"" + sv.positions + "\"", "a control vector acts at every position"));
  const double alpha = a.value_or(sv.alpha);
  if (!std::isfinite(alpha)) throw InvalidArgument(detail::expected_got("export_control_vector alpha", "a finite number", std::to_string(alpha)));
  const auto vs = sv.effective_vectors();
  std::map<int64_t, at::Tensor> by_block;
  for (size_t i = 0; i < sv.sites.size(); ++i) {
    const auto name = HookName::parse(sv.sites[i].hook);
    int64_t block = -1;
    if (name.component == "resid_post") block = name.layer;
    else if (name.component == "resid_pre") block = name.layer - 1;
    else
      throw Unsupported(detail::expected_got("export_control_vector site " + site_label(sv.sites[i]),
                                             "the residual stream (hook_resid_pre / hook_resid_post)", "component " + name.component,
                                             "a control vector is added to a block's output; keep other sites in scalpel's format"));
    if (block < 1)
      throw Unsupported(detail::expected_got("export_control_vector site " + site_label(sv.sites[i]),
                                             "the output of block 1 or later (hook_resid_post of layer >= 1, hook_resid_pre of layer >= 2)",
                                             block < 0 ? "the embeddings" : "the output of block 0",
                                             "llama.cpp never steers block 0's output (direction.0 is rejected)"));
    auto v = vs[i] * alpha;
    by_block[block] = by_block.count(block) ? by_block[block] + v : v;
  }
  std::vector<std::pair<std::string, GGUFWriteValue>> meta;
  GGUFWriteValue arch, hint, count;
  arch.text = "controlvector";
  hint.text = model.config().architecture;
  count.type = GGUFValueType::UINT32;
  count.integer = static_cast<int64_t>(by_block.size());
  meta.emplace_back("general.architecture", arch);
  meta.emplace_back("controlvector.model_hint", hint);
  meta.emplace_back("controlvector.layer_count", count);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [block, v] : by_block) tensors.emplace_back("direction." + std::to_string(block), v.to(at::kFloat).contiguous());
  write_gguf(path, meta, tensors, overwrite);
}

}  // namespace scalpel
