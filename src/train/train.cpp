// SCALPEL_USES_TORCH
// Training (see scalpel/train/train.hpp).
#include "scalpel/train/train.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "scalpel/errors.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/log.hpp"
#include "scalpel/model/transformer.hpp"
#include "io/atomic_file.hpp"
#include "util/messages.hpp"

namespace fs = std::filesystem;

namespace scalpel {

double learning_rate(const TrainOptions& o, int64_t step) {
  if (o.warmup_steps > 0 && step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / span);
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(M_PI * progress));
}

void save_checkpoint(const Transformer& model, const std::string& directory, int64_t step,
                     const std::vector<std::pair<std::string, at::Tensor>>& optimizer_state) {
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", std::to_string(step)}};
  auto params = model.named_parameters();
  for (auto& [n, t] : params) t = t.detach();
  write_directory_atomic(directory, /*overwrite=*/true, "", [&](const std::string& dir) {
    save_safetensors((fs::path(dir) / "model.safetensors").string(), params, meta);
    if (!optimizer_state.empty()) save_safetensors((fs::path(dir) / "optimizer.safetensors").string(), optimizer_state, meta);
  });
}

namespace {

int64_t restore(Transformer& model, const std::string& directory, std::map<std::string, at::Tensor>* optimizer_state) {
  const auto path = (fs::path(directory) / "model.safetensors").string();
  SafetensorsFile file(path);
  at::NoGradGuard no_grad;
  for (auto& [name, t] : model.named_parameters()) {
    const auto keys = file.keys();
    if (std::find(keys.begin(), keys.end(), name) == keys.end())
      throw FormatError(detail::expected_got(path, "tensor \"" + name + "\" (the model has it)", "absent",
                                             "a checkpoint of a different model?"));
    auto v = file.get(name);
    if (v.sizes() != t.sizes())
      throw ShapeError(detail::expected_got(path + ": " + name, "shape " + c10::str(t.sizes()), "shape " + c10::str(v.sizes())));
    t.copy_(v);
  }
  const auto& meta = file.metadata();
  auto it = meta.find("step");
  if (it == meta.end()) throw FormatError(detail::expected_got(path, "metadata \"step\"", "absent", "written by save_checkpoint?"));
  if (optimizer_state) {
    const auto opt = (fs::path(directory) / "optimizer.safetensors").string();
    if (!fs::exists(opt))
      throw FileNotFound(detail::expected_got("optimizer state", opt, "no such file", "resume needs a training checkpoint"));
    SafetensorsFile of(opt);
    for (const auto& k : of.keys()) (*optimizer_state)[k] = of.get(k).clone();
  }
  return std::stoll(it->second);
}

bool selected(const std::string& name, const std::vector<std::string>& trainable) {
  if (trainable.empty()) return true;
  for (const auto& p : trainable)
    if (name.compare(0, p.size(), p) == 0) return true;
  return false;
}

}  // namespace

int64_t load_checkpoint(Transformer& model, const std::string& directory) { return restore(model, directory, nullptr); }

TrainResult optimize(std::vector<TrainParam> params, const StepLoss& loss_fn, const TrainOptions& o,
                     const CheckpointFn& checkpoint, int64_t start,
                     const std::map<std::string, at::Tensor>& optimizer_state) {
  if (o.steps <= 0 || o.batch_size <= 0)
    throw InvalidArgument(detail::expected_got("TrainOptions.steps and batch_size", "positive",
                                               std::to_string(o.steps) + " and " + std::to_string(o.batch_size)));
  if (params.empty()) throw InvalidArgument(detail::expected_got("parameters to train", "at least one", "none"));
  struct State {
    at::Tensor m, v;
  };
  std::vector<State> state;
  for (const auto& p : params) {
    if (!p.tensor.defined() || !at::isFloatingType(p.tensor.scalar_type()))
      throw InvalidArgument(detail::expected_got("parameter " + p.name, "a floating-point tensor",
                                                 p.tensor.defined() ? c10::toString(p.tensor.scalar_type()) : "undefined"));
    if (!p.tensor.is_leaf())
      throw InvalidArgument(detail::expected_got("parameter " + p.name, "a leaf tensor", "the result of a computation",
                                                 "pass the tensor itself (e.g. x.detach()), not an expression of it"));
    State st{at::zeros_like(p.tensor), at::zeros_like(p.tensor)};
    if (start > 0) {
      auto m = optimizer_state.find("exp_avg." + p.name), v = optimizer_state.find("exp_avg_sq." + p.name);
      if (m == optimizer_state.end() || v == optimizer_state.end())
        throw FormatError(detail::expected_got(o.resume_from + "/optimizer.safetensors", "the state of " + p.name, "absent",
                                               "resume with the trainable set of the run that wrote it"));
      if (m->second.sizes() != p.tensor.sizes() || v->second.sizes() != p.tensor.sizes())
        throw ShapeError(detail::expected_got(o.resume_from + "/optimizer.safetensors: state of " + p.name,
                                              "shape " + c10::str(p.tensor.sizes()), "shape " + c10::str(m->second.sizes())));
      st = {m->second, v->second};
    }
    state.push_back(st);
  }
  auto state_tensors = [&]() {
    std::vector<std::pair<std::string, at::Tensor>> s;
    for (size_t i = 0; i < params.size(); ++i) {
      s.emplace_back("exp_avg." + params[i].name, state[i].m);
      s.emplace_back("exp_avg_sq." + params[i].name, state[i].v);
    }
    return s;
  };
  std::vector<std::string> csv;
  std::vector<std::string> part_names;  // fixed by the first step
  if (!o.run_dir.empty()) {
    fs::create_directories(o.run_dir);
    std::ifstream old(fs::path(o.run_dir) / "losses.csv");
    std::string line;
    while (start > 0 && std::getline(old, line))
      if (!line.empty() && line[0] != 's' && std::stoll(line.substr(0, line.find(','))) <= start) csv.push_back(line);
  }
  std::vector<bool> had_grad;  // requires_grad as the caller had it, restored at the end
  for (const auto& p : params) had_grad.push_back(p.tensor.requires_grad());
  auto release = [&]() {
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].tensor.requires_grad_(had_grad[i]);
      params[i].tensor.mutable_grad() = at::Tensor();
    }
  };
  for (auto& p : params) p.tensor.requires_grad_(true);
  TrainResult res;
  const auto t0 = std::chrono::steady_clock::now();
  Progress progress("training", o.steps - start);
  try {
    for (int64_t s = start; s < o.steps; ++s) {
      for (auto& p : params) p.tensor.mutable_grad() = at::Tensor();
      std::vector<std::pair<std::string, double>> parts;
      at::Tensor loss;
      {
        at::AutoGradMode grad_mode(true);
        loss = loss_fn(s, parts);
        if (!loss.defined() || loss.numel() != 1)
          throw InvalidArgument(detail::expected_got("the step's loss", "a scalar tensor",
                                                     loss.defined() ? "shape " + c10::str(loss.sizes()) : "undefined"));
        if (!loss.requires_grad())
          throw InvalidArgument(detail::expected_got("the step's loss", "a value computed from the trained parameters",
                                                     "no gradient reaches them",
                                                     "compute the loss with the parameters (hooks attached) in grad mode"));
        loss.backward();
      }
      at::NoGradGuard no_grad;
      const double loss_value = loss.item<double>();
      double sq = 0.0;
      for (auto& p : params)
        if (p.tensor.grad().defined()) sq += p.tensor.grad().pow(2).sum().item<double>();
      const double norm = std::sqrt(sq);
      if (!std::isfinite(loss_value) || !std::isfinite(norm)) {
        std::string what = "loss " + std::to_string(loss_value);
        for (const auto& [n, v] : parts) what += ", " + n + " " + std::to_string(v);
        throw NumericalError(detail::expected_got("training step " + std::to_string(s + 1), "a finite loss and gradient",
                                                  what + ", gradient norm " + std::to_string(norm),
                                                  "the parameters keep the values of the last finite step; lower the "
                                                  "learning rate, raise grad_clip's effect, or check the data"));
      }
      const double clip = o.grad_clip > 0 ? std::min(1.0, o.grad_clip / (norm + 1e-6)) : 1.0;
      const double lr = learning_rate(o, s);
      const double t = static_cast<double>(s + 1);
      const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
      for (size_t i = 0; i < params.size(); ++i) {
        auto& p = params[i].tensor;
        auto& st = state[i];
        at::Tensor g = p.grad();
        if (!g.defined()) g = at::zeros_like(p);
        if (clip < 1.0) g = g * clip;
        if (params[i].decay && o.weight_decay != 0) p.mul_(1.0 - lr * o.weight_decay);
        st.m.lerp_(g, 1.0 - o.beta1);
        st.v.mul_(o.beta2).addcmul_(g, g, 1.0 - o.beta2);
        auto denom = (st.v.sqrt() / std::sqrt(bc2)).add_(o.eps);
        p.addcdiv_(st.m, denom, -lr / bc1);
      }
      if (s == start)
        for (const auto& [n, v] : parts) part_names.push_back(n);
      res.loss.push_back(loss_value);
      res.lr.push_back(lr);
      res.grad_norm.push_back(norm);
      for (const auto& [n, v] : parts) res.parts[n].push_back(v);
      res.steps = s + 1;
      std::ostringstream row;
      row << (s + 1) << "," << loss_value;
      for (const auto& n : part_names) {
        auto it = std::find_if(parts.begin(), parts.end(), [&](const auto& kv) { return kv.first == n; });
        row << "," << (it == parts.end() ? std::nan("") : it->second);
      }
      row << "," << lr << "," << norm;
      csv.push_back(row.str());
      progress.update();
      const bool last = s + 1 == o.steps;
      if (!o.run_dir.empty() && ((o.checkpoint_every > 0 && (s + 1) % o.checkpoint_every == 0) || last)) {
        if (checkpoint) checkpoint((fs::path(o.run_dir) / ("checkpoint-" + std::to_string(s + 1))).string(), s + 1, state_tensors());
        std::string text = "step,loss,";
        for (const auto& n : part_names) text += n + ",";
        text += "lr,grad_norm\n";
        for (const auto& l : csv) text += l + "\n";
        write_file_atomic((fs::path(o.run_dir) / "losses.csv").string(), text);
      }
    }
  } catch (...) {
    release();
    throw;
  }
  progress.finish();
  release();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

TrainResult train_lm(Transformer& model, const std::vector<LMExample>& data, const TrainOptions& o) {
  if (data.empty()) throw InvalidArgument(detail::expected_got("training data", "at least one example", "none"));
  if (model.dtype() != at::kFloat)
    throw InvalidArgument(detail::expected_got("model dtype for training", "float32", c10::toString(model.dtype()),
                                               "load the model with dtype=\"float32\""));
  std::vector<TrainParam> params;
  for (auto& [name, t] : model.named_parameters())
    if (selected(name, o.trainable)) params.push_back({name, t, t.dim() >= 2});
  for (const auto& prefix : o.trainable) {
    bool any = false;
    for (const auto& p : params) any = any || p.name.compare(0, prefix.size(), prefix) == 0;
    if (!any)
      throw InvalidArgument(detail::expected_got("TrainOptions.trainable \"" + prefix + "\"", "a parameter name or prefix",
                                                 "matches none", "see model.named_parameters()"));
  }
  int64_t start = 0;
  std::map<std::string, at::Tensor> state;
  if (!o.resume_from.empty()) start = restore(model, o.resume_from, &state);
  auto step_loss = [&](int64_t s, std::vector<std::pair<std::string, double>>&) {
    std::mt19937_64 rng(o.seed * 1000003ULL + static_cast<uint64_t>(s));
    std::uniform_int_distribution<size_t> pick(0, data.size() - 1);
    std::vector<LMExample> rows;
    for (int64_t i = 0; i < o.batch_size; ++i) rows.push_back(data[pick(rng)]);
    return lm_loss(model, make_lm_batch(rows));
  };
  auto save = [&](const std::string& dir, int64_t step, const std::vector<std::pair<std::string, at::Tensor>>& opt) {
    save_checkpoint(model, dir, step, opt);
  };
  return optimize(std::move(params), step_loss, o, save, start, state);
}

}  // namespace scalpel
