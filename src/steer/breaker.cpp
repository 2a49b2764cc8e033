// SCALPEL_USES_TORCH
// Low-rank circuit breakers: the adapters, attaching, training, merging and
// the PEFT export (see scalpel/steer/breaker.hpp).
#include "scalpel/steer/breaker.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "scalpel/errors.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/hooks/names.hpp"
#include "scalpel/io/files.hpp"
#include "scalpel/io/prompts.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/model/transformer.hpp"
#include "edit_training.hpp"
#include "util/messages.hpp"

namespace fs = std::filesystem;

namespace scalpel {
namespace {

using Json = nlohmann::ordered_json;

using steer_detail::AttachState;
using steer_detail::site_label;

steer_detail::SiteInfo site_info(const Transformer& model, const BreakerSite& site) {
  return steer_detail::site_info(model, site, "breaker");
}

HookHandle attach_with(Transformer& model, const CircuitBreaker& cb, double delta,
                       const std::shared_ptr<AttachState>& state) {
  if (delta == 0.0) return HookHandle();
  std::map<std::string, std::vector<size_t>> by_site;  // hook -> adapters, in order
  std::vector<std::string> order;
  for (size_t i = 0; i < cb.adapters.size(); ++i) {
    const auto& a = cb.adapters[i];
    if (a.A.size(0) == 0) continue;  // rank 0
    if (!by_site.count(a.site.hook)) order.push_back(a.site.hook);
    by_site[a.site.hook].push_back(i);
  }
  std::vector<std::pair<std::string, HookFn>> hooks;
  for (const auto& hook : order) {
    struct Item {
      int64_t head;
      at::Tensor A, B;
    };
    std::vector<Item> items;
    for (auto i : by_site[hook]) items.push_back({cb.adapters[i].site.head, cb.adapters[i].A, cb.adapters[i].B});
    const bool per_head_site = HookName::parse(hook).component == "z";
    hooks.emplace_back(hook, [items, delta, state, per_head_site](const at::Tensor& x, const HookPoint&) -> at::Tensor {
      at::Tensor gate;  // [b, pos] float, or undefined for every position
      if (!steer_detail::position_gate(*state, x, gate)) return at::Tensor();  // not these positions: unchanged
      const auto xf = x.to(at::kFloat);
      at::Tensor update;
      if (per_head_site) {  // x [b, pos, heads, d_head]
        const int64_t heads = x.size(2), d_head = x.size(3);
        std::vector<at::Tensor> per_head(static_cast<size_t>(heads));
        at::Tensor all;
        for (const auto& it : items) {
          if (it.head < 0) {
            auto u = at::matmul(at::matmul(xf.flatten(2), it.A.t()), it.B.t());
            all = all.defined() ? all + u : u;
          } else {
            auto u = at::matmul(at::matmul(xf.select(2, it.head), it.A.t()), it.B.t());
            auto& slot = per_head[static_cast<size_t>(it.head)];
            slot = slot.defined() ? slot + u : u;
          }
        }
        if (std::any_of(per_head.begin(), per_head.end(), [](const at::Tensor& t) { return t.defined(); })) {
          auto zero = at::zeros({x.size(0), x.size(1), d_head}, xf.options());
          for (auto& t : per_head)
            if (!t.defined()) t = zero;
          update = at::stack(per_head, 2);
        }
        if (all.defined()) {
          auto u = all.view({x.size(0), x.size(1), heads, d_head});
          update = update.defined() ? update + u : u;
        }
        if (gate.defined()) update = update * gate.to(at::kFloat).unsqueeze(-1).unsqueeze(-1);
      } else {
        for (const auto& it : items) {
          auto u = at::matmul(at::matmul(xf, it.A.t()), it.B.t());
          update = update.defined() ? update + u : u;
        }
        if (gate.defined()) update = update * gate.to(at::kFloat).unsqueeze(-1);
      }
      return x + (update * delta).to(x.scalar_type());
    });
  }
  return model.add_hooks(hooks);
}

// The linear map an adapter's site feeds (input side) or follows (output side).
struct MergeTarget {
  const ResidualWriter* weight = nullptr;
  const ResidualWriter* bias = nullptr;
  bool input_side = true;  // z / mlp_post: the adapter acts on the map's input
  int64_t col0 = 0;        // input columns the adapter's vector occupies
};

MergeTarget merge_target(const Transformer& model, const std::vector<ResidualWriter>& writers, const BreakerAdapter& a,
                         std::string* why) {
  const auto name = HookName::parse(a.site.hook);
  MergeTarget t;
  const bool attn = name.component == "z" || name.component == "attn_out";
  t.input_side = name.component == "z" || name.component == "mlp_post";
  if (name.component.rfind("resid_", 0) == 0) {
    *why = site_label(a.site) + " is on the residual stream, which no single weight matrix produces or reads";
    return t;
  }
  if (!t.input_side && model.config().post_norms) {
    *why = site_label(a.site) + " follows a post-norm (ln" + std::string(attn ? "1" : "2") +
           "_post), so the edit is not linear in the weights; sit on attn.hook_z or mlp.hook_post instead";
    return t;
  }
  for (const auto& w : writers) {
    if (w.layer != name.layer) continue;
    if (w.kind == (attn ? "attn.W_O" : "mlp.W_out")) t.weight = &w;
    if (w.kind == (attn ? "attn.b_O" : "mlp.b_out")) t.bias = &w;
  }
  SCALPEL_ASSERT(t.weight != nullptr, "no output matrix for " + a.site.hook);
  if (name.component == "z" && a.site.head >= 0) t.col0 = a.site.head * model.config().d_head;
  return t;
}

// The adapters that edit one matrix, as a low-rank update, in float64.
// Adapters on the matrix's input (z, mlp_post) read the same activation and
// add: W_in = W + δ Σ W[:, cols] B A. Adapters on its output (attn_out,
// mlp_out) act on the output of W_in: W' = W_in + δ Σ B A W_in, b' = b + δ Σ B A b.
// As LoRA factors (ΔW = lora_B · lora_A): input side (A placed on cols, δ W[:, cols] B),
// output side (A W_in, δ B).
struct ModuleEdit {
  const ResidualWriter* weight = nullptr;
  const ResidualWriter* bias = nullptr;
  std::vector<std::pair<const BreakerAdapter*, int64_t>> input;  // adapter, first column
  std::vector<const BreakerAdapter*> output;

  at::Tensor W() const { return weight->tensor.detach().to(at::kDouble); }
  at::Tensor input_updated(double delta) const {
    const auto W0 = W();
    auto out = W0.clone();
    for (const auto& [a, col0] : input) {
      const auto A = a->A.detach().to(at::kDouble), B = a->B.detach().to(at::kDouble);
      out.narrow(1, col0, A.size(1)).add_(delta * at::matmul(at::matmul(W0.narrow(1, col0, A.size(1)), B), A));
    }
    return out;
  }
  // The merged weight and bias (bias undefined when it does not change).
  std::pair<at::Tensor, at::Tensor> merged(double delta) const {
    auto Win = input_updated(delta);
    auto Wout = Win.clone();
    at::Tensor b;
    if (bias && !output.empty()) b = bias->tensor.detach().to(at::kDouble).clone();
    const auto b0 = b.defined() ? b.clone() : at::Tensor();
    for (const auto* a : output) {
      const auto A = a->A.detach().to(at::kDouble), B = a->B.detach().to(at::kDouble);
      Wout.add_(delta * at::matmul(B, at::matmul(A, Win)));
      if (b.defined()) b.add_(delta * at::matmul(B, at::matmul(A, b0)));
    }
    return {Wout, b};
  }
  std::pair<at::Tensor, at::Tensor> lora(double delta) const {  // lora_A [r, in], lora_B [out, r]
    const auto W0 = W();
    std::vector<at::Tensor> As, Bs;
    for (const auto& [a, col0] : input) {
      const auto A = a->A.detach().to(at::kDouble), B = a->B.detach().to(at::kDouble);
      auto full = at::zeros({A.size(0), W0.size(1)}, A.options());
      full.narrow(1, col0, A.size(1)).copy_(A);
      As.push_back(full);
      Bs.push_back(delta * at::matmul(W0.narrow(1, col0, A.size(1)), B));
    }
    const auto Win = input_updated(delta);
    for (const auto* a : output) {
      As.push_back(at::matmul(a->A.detach().to(at::kDouble), Win));
      Bs.push_back(delta * a->B.detach().to(at::kDouble));
    }
    return {at::cat(As, 0), at::cat(Bs, 1)};
  }
};

// The matrices a mergeable breaker edits, in the order first met.
std::vector<ModuleEdit> module_edits(const Transformer& model, const std::vector<ResidualWriter>& writers,
                                     const CircuitBreaker& cb) {
  std::vector<ModuleEdit> out;
  std::string why;
  for (const auto& a : cb.adapters) {
    if (a.A.size(0) == 0) continue;
    const auto t = merge_target(model, writers, a, &why);
    SCALPEL_ASSERT(why.empty(), why);
    auto it = std::find_if(out.begin(), out.end(), [&](const ModuleEdit& e) { return e.weight == t.weight; });
    if (it == out.end()) {
      out.push_back({t.weight, t.bias, {}, {}});
      it = out.end() - 1;
    }
    if (t.input_side) it->input.emplace_back(&a, t.col0);
    else it->output.push_back(&a);
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------ the breaker --

CircuitBreaker CircuitBreaker::create(const Transformer& model, const std::vector<BreakerSite>& sites, int64_t rank,
                                      uint64_t seed) {
  if (sites.empty()) throw InvalidArgument(detail::expected_got("breaker sites", "at least one", "none"));
  if (rank < 0) throw InvalidArgument(detail::expected_got("breaker rank", "a non-negative number", std::to_string(rank)));
  std::set<std::pair<std::string, int64_t>> seen;
  CircuitBreaker cb;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (const auto& s : sites) {
    const auto info = site_info(model, s);
    if (!seen.insert({s.hook, s.head}).second)
      throw InvalidArgument(detail::expected_got("breaker sites", "each site once", site_label(s) + " twice"));
    auto A = at::normal(0.0, 1.0 / std::sqrt(static_cast<double>(info.width)), {rank, info.width}, gen);
    cb.adapters.push_back({s, A.to(at::kFloat).contiguous(), at::zeros({info.width, rank}, at::kFloat)});
  }
  cb.model = ModelFingerprint::of(model);
  return cb;
}

void CircuitBreaker::check(const Transformer& model) const {
  if (!std::isfinite(delta))
    throw InvalidArgument(detail::expected_got("breaker delta", "a finite number", std::to_string(delta)));
  steer_detail::check_positions(positions, "breaker");
  for (size_t i = 0; i < adapters.size(); ++i) {
    const auto& a = adapters[i];
    const auto info = site_info(model, a.site);
    const std::string what = "breaker adapter " + std::to_string(i) + " (" + site_label(a.site) + ")";
    if (!a.A.defined() || !a.B.defined() || a.A.dim() != 2 || a.B.dim() != 2 || a.A.size(1) != info.width ||
        a.B.size(0) != info.width || a.B.size(1) != a.A.size(0))
      throw ShapeError(detail::expected_got(what, "A [rank, " + std::to_string(info.width) + "] and B [" +
                                                      std::to_string(info.width) + ", rank]",
                                            "A " + (a.A.defined() ? c10::str(a.A.sizes()) : std::string("undefined")) +
                                                " and B " + (a.B.defined() ? c10::str(a.B.sizes()) : std::string("undefined"))));
    if (a.A.scalar_type() != at::kFloat || a.B.scalar_type() != at::kFloat)
      throw InvalidArgument(detail::expected_got(what, "float32 A and B", std::string(c10::toString(a.A.scalar_type())) + " and " +
                                                                             c10::toString(a.B.scalar_type())));
  }
}

HookHandle CircuitBreaker::attach(Transformer& model, std::optional<double> d, bool check_model) const {
  check(model);
  check_model_matches(model, check_model);
  auto state = std::make_shared<AttachState>();
  state->model = &model;
  state->positions = positions;
  return attach_with(model, *this, d.value_or(delta), state);
}

std::vector<std::string> CircuitBreaker::site_hooks() const {
  std::vector<std::string> out;
  for (const auto& a : adapters) out.push_back(a.site.hook);
  return out;
}

HookHandle CircuitBreaker::attach_shared(Transformer& model, std::optional<double> d,
                                         const std::shared_ptr<AttachState>& state) const {
  check(model);
  state->positions = positions;
  return attach_with(model, *this, d.value_or(delta), state);
}

int64_t CircuitBreaker::num_parameters() const {
  int64_t n = 0;
  for (const auto& a : adapters) n += a.A.numel() + a.B.numel();
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> CircuitBreaker::tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < adapters.size(); ++i) {
    out.emplace_back("adapters." + std::to_string(i) + ".A", adapters[i].A.detach());
    out.emplace_back("adapters." + std::to_string(i) + ".B", adapters[i].B.detach());
  }
  return out;
}

std::string CircuitBreaker::fields_json() const {
  Json sites = Json::array();
  for (const auto& a : adapters)
    sites.push_back(Json{{"hook", a.site.hook}, {"head", a.site.head}, {"rank", a.A.defined() ? a.A.size(0) : 0}});
  return Json{{"delta", delta}, {"positions", positions}, {"adapters", sites}}.dump();
}

CircuitBreaker CircuitBreaker::from_parts(const std::string& fields_json,
                                          const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                          const std::string& where) {
  CircuitBreaker cb;
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  try {
    const auto f = Json::parse(fields_json);
    cb.delta = f.at("delta").get<double>();
    cb.positions = f.at("positions").get<std::string>();
    const auto& list = f.at("adapters");
    for (size_t i = 0; i < list.size(); ++i) {
      BreakerAdapter a;
      a.site.hook = list[i].at("hook").get<std::string>();
      a.site.head = list[i].at("head").get<int64_t>();
      for (const char* part : {"A", "B"}) {
        const std::string key = "adapters." + std::to_string(i) + "." + part;
        auto it = by_name.find(key);
        if (it == by_name.end())
          throw FormatError(detail::expected_got(where + ": tensor " + key, "present (the description lists adapter " +
                                                                                std::to_string(i) + ")",
                                                 "absent"));
        (part[0] == 'A' ? a.A : a.B) = it->second;
      }
      const auto rank = list[i].at("rank").get<int64_t>();
      if (a.A.dim() != 2 || a.B.dim() != 2 || a.A.size(0) != rank || a.B.size(1) != rank || a.B.size(0) != a.A.size(1))
        throw FormatError(detail::expected_got(where + ": adapter " + std::to_string(i), "A [" + std::to_string(rank) +
                                                                                             ", d] and B [d, " + std::to_string(rank) + "]",
                                               "A " + c10::str(a.A.sizes()) + " and B " + c10::str(a.B.sizes())));
      cb.adapters.push_back(std::move(a));
    }
    if (by_name.size() != 2 * cb.adapters.size())
      throw FormatError(detail::expected_got(where, std::to_string(2 * cb.adapters.size()) + " tensors (A and B per adapter)",
                                             std::to_string(by_name.size())));
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::expected_got(where + ": circuit_breaker fields", "{delta, positions, adapters: [{hook, head, rank}]}",
                                           e.what()));
  }
  return cb;
}

std::string CircuitBreaker::merge_blocker(const Transformer& model) const {
  check(model);
  if (positions != "all")
    return "the breaker acts on the " + positions + " positions only; a weight acts on every position";
  const auto writers = model.residual_writers();
  for (const auto& a : adapters) {
    std::string why;
    merge_target(model, writers, a, &why);
    if (!why.empty()) return why;
  }
  return "";
}

void CircuitBreaker::merge(Transformer& model, std::optional<double> d, bool check_model) const {
  check_model_matches(model, check_model);  // merging twice, or into another model, would be silent otherwise
  const auto why = merge_blocker(model);
  if (!why.empty())
    throw Unsupported(detail::expected_got("merge the circuit breaker", "sites whose edit is a weight update", why,
                                           "attach it at inference instead"));
  const double dd = d.value_or(delta);
  at::NoGradGuard no_grad;
  const auto writers = model.residual_writers();
  for (const auto& e : module_edits(model, writers, *this)) {
    auto [W, b] = e.merged(dd);
    at::Tensor w = e.weight->tensor;
    w.copy_(W.to(w.scalar_type()));
    if (b.defined()) {
      at::Tensor live = e.bias->tensor;
      live.copy_(b.to(live.scalar_type()));
    }
  }
}

// ------------------------------------------------------------------ PEFT --

void export_peft(const Transformer& model, const CircuitBreaker& cb, const std::string& directory,
                 std::optional<double> d, bool overwrite, bool check_model) {
  cb.check_model_matches(model, check_model);  // LoRA factors are computed from the model's own matrices
  const auto why = cb.merge_blocker(model);
  if (!why.empty())
    throw Unsupported(detail::expected_got("export_peft", "a breaker that merges into weights", why,
                                           "attach it with scalpel instead"));
  const double dd = d.value_or(cb.delta);
  const auto writers = model.residual_writers();
  const auto edits = module_edits(model, writers, cb);
  if (edits.empty()) throw InvalidArgument(detail::expected_got("export_peft", "a breaker of rank > 0", "rank 0 everywhere"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::vector<std::string> order;
  Json rank_pattern = Json::object(), alpha_pattern = Json::object();
  int64_t base_rank = -1;
  for (const auto& e : edits) {
    const std::string& wname = e.weight->name;
    const std::string suffix = ".weight";
    if (wname.rfind("blocks.", 0) == 0 || wname.size() <= suffix.size() ||
        wname.compare(wname.size() - suffix.size(), suffix.size(), suffix) != 0)
      throw Unsupported(detail::expected_got("export_peft target", "a Hugging Face Linear weight", wname,
                                             "the checkpoint stores this matrix in another layout (e.g. GPT-2's "
                                             "Conv1D); merge() works on it, save_pretrained does not support this layout"));
    if (!e.output.empty() && e.bias && e.bias->tensor.abs().max().item<double>() != 0.0)
      throw Unsupported(detail::expected_got("export_peft " + e.output.front()->site.hook, "an output matrix without bias",
                                             "bias " + e.bias->name, "a LoRA adapter cannot change a bias; merge() can"));
    const std::string m = wname.substr(0, wname.size() - suffix.size());
    order.push_back(m);
    auto [A, B] = e.lora(dd);
    A = A.to(at::kFloat).contiguous();
    B = B.to(at::kFloat).contiguous();
    const int64_t r = A.size(0);
    if (base_rank < 0) base_rank = r;
    if (r != base_rank) {
      rank_pattern[m] = r;
      alpha_pattern[m] = r;
    }
    tensors.emplace_back("base_model.model." + m + ".lora_A.weight", A);
    tensors.emplace_back("base_model.model." + m + ".lora_B.weight", B);
  }
  Json config{{"peft_type", "LORA"},
              {"task_type", "CAUSAL_LM"},
              {"base_model_name_or_path", nullptr},
              {"r", base_rank},
              {"lora_alpha", base_rank},
              {"lora_dropout", 0.0},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"target_modules", order},
              {"rank_pattern", rank_pattern},
              {"alpha_pattern", alpha_pattern},
              {"use_rslora", false},
              {"use_dora", false},
              {"init_lora_weights", true},
              {"inference_mode", true},
              {"modules_to_save", nullptr}};
  write_directory_atomic(directory, overwrite, "", [&](const std::string& dir) {
    write_file_atomic((fs::path(dir) / "adapter_config.json").string(), config.dump(2) + "\n");
    save_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
  });
}

// -------------------------------------------------------------- training --

BreakerData breaker_data(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                         const std::vector<std::string>& harmful, const std::vector<std::string>& neutral,
                         const std::vector<std::string>& preserve) {
  if (harmful.size() != prompts.size() || (!neutral.empty() && neutral.size() != prompts.size()))
    throw ShapeError(detail::expected_got("breaker_data harmful / neutral", "one per prompt (" + std::to_string(prompts.size()) + ")",
                                          std::to_string(harmful.size()) + " / " + std::to_string(neutral.size())));
  BreakerData d;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto [ctx, h] = encode_continuation(tokenizer, prompts[i], harmful[i]);
    d.prompts.push_back(ctx);
    d.harmful.push_back(h);
    if (!neutral.empty()) d.neutral.push_back(encode_continuation(tokenizer, prompts[i], neutral[i]).second);
  }
  for (const auto& t : preserve) d.preserve.push_back(tokenizer.encode(t));
  return d;
}

TrainResult train_breaker(Transformer& model, CircuitBreaker& cb, const BreakerData& data, const BreakerObjective& obj,
                          const TrainOptions& options) {
  cb.check(model);
  cb.check_model_matches(model);
  steer_detail::EditTraining edit;
  edit.what = "train_breaker";
  edit.target = &cb;
  for (size_t i = 0; i < cb.adapters.size(); ++i) {
    auto& a = cb.adapters[i];
    if (a.A.size(0) == 0) continue;
    a.A = a.A.detach().contiguous();
    a.B = a.B.detach().contiguous();
    edit.params.push_back({"adapters." + std::to_string(i) + ".A", a.A, true});
    edit.params.push_back({"adapters." + std::to_string(i) + ".B", a.B, true});
  }
  if (edit.params.empty()) throw InvalidArgument(detail::expected_got("train_breaker", "a breaker of rank > 0", "rank 0 everywhere"));
  edit.attach = [&model, &cb](const std::shared_ptr<AttachState>& state) { return attach_with(model, cb, cb.delta, state); };
  edit.save = [&cb](const std::string& dir) { save_intervention(cb, (fs::path(dir) / "breaker.safetensors").string()); };
  // A breaker whose B are all zero is a no-op: rerouting starts it from B ~ N(0, 0.01²).
  edit.leave_no_op = [&cb](uint64_t seed) {
    if (!std::all_of(cb.adapters.begin(), cb.adapters.end(), [](const BreakerAdapter& a) {
          return a.A.size(0) == 0 || a.B.abs().max().item<double>() == 0.0;
        }))
      return;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    at::NoGradGuard no_grad;
    for (auto& a : cb.adapters)
      if (a.A.size(0) > 0) a.B.copy_(at::normal(0.0, 0.01, a.B.sizes(), gen));
  };
  return steer_detail::train_edit(model, edit, data, obj, options);
}

}  // namespace scalpel
