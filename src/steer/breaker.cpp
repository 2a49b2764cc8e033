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
#include "util/messages.hpp"

namespace fs = std::filesystem;

namespace scalpel {
namespace {

using Json = nlohmann::ordered_json;

const std::vector<std::string>& breaker_components() {
  static const std::vector<std::string> c = {"z", "mlp_post", "attn_out", "mlp_out", "resid_pre", "resid_mid", "resid_post"};
  return c;
}

struct SiteInfo {
  HookName name;
  int64_t width;
};

// The site's component and the width of the vector its adapters act on.
SiteInfo site_info(const Transformer& model, const BreakerSite& site) {
  const auto name = HookName::parse(site.hook);
  const auto& comps = breaker_components();
  if (std::find(comps.begin(), comps.end(), name.component) == comps.end())
    throw Unsupported(detail::expected_got("breaker site \"" + site.hook + "\"",
                                           "one of the components " + detail::join_names(comps),
                                           "component " + name.component,
                                           "breakers sit on head outputs (attn.hook_z), MLP activations (mlp.hook_post), "
                                           "block outputs or the residual stream"));
  const auto names = model.hook_names();
  if (std::find(names.begin(), names.end(), site.hook) == names.end())
    throw UnknownName(detail::expected_got("breaker site \"" + site.hook + "\"", "a hook point of this model", "no such hook",
                                           "nearest: " + detail::join_names(detail::nearest_names(site.hook, names))));
  const auto& cfg = model.config();
  if (name.component != "z" && site.head != -1)
    throw InvalidArgument(detail::expected_got("breaker site \"" + site.hook + "\" head", "-1 (heads are attn.hook_z's)",
                                               std::to_string(site.head)));
  if (name.component == "z") {
    if (site.head < -1 || site.head >= cfg.n_heads)
      throw InvalidArgument(detail::expected_got("breaker site \"" + site.hook + "\" head",
                                                 "a head in [0, " + std::to_string(cfg.n_heads) + ") or -1 for all heads",
                                                 std::to_string(site.head)));
    return {name, site.head >= 0 ? cfg.d_head : cfg.n_heads * cfg.d_head};
  }
  if (name.component == "mlp_post") return {name, cfg.d_mlp};
  return {name, cfg.d_model};
}

std::string site_label(const BreakerSite& s) {
  return s.head >= 0 ? s.hook + " head " + std::to_string(s.head) : s.hook;
}

// What the hooks of one attachment share: the positions rule, and while
// train_breaker runs, the completion mask of the current batch ([b, pos], 1 on
// completion tokens).
struct AttachState {
  const Transformer* model = nullptr;
  std::string positions = "all";
  at::Tensor completion_mask;
};

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
      if (state->positions != "all") {
        const bool want_generated = state->positions == "generated";
        if (state->completion_mask.defined() && state->completion_mask.size(0) == x.size(0) &&
            state->completion_mask.size(1) == x.size(1)) {
          gate = want_generated ? state->completion_mask : 1.0 - state->completion_mask;
        } else if (state->model->decoding() != want_generated) {
          return at::Tensor();  // not these positions: unchanged
        }
      }
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
  if (positions != "all" && positions != "prompt" && positions != "generated")
    throw InvalidArgument(detail::expected_got("breaker positions", "\"all\", \"prompt\" or \"generated\"", "\"" + positions + "\""));
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
  if (options.steps <= 0 || options.batch_size <= 0)
    throw InvalidArgument(detail::expected_got("TrainOptions.steps and batch_size", "positive",
                                               std::to_string(options.steps) + " and " + std::to_string(options.batch_size)));
  if (!options.resume_from.empty() || !options.trainable.empty())
    throw InvalidArgument(detail::expected_got("TrainOptions for train_breaker", "no resume_from and no trainable",
                                               "resume_from \"" + options.resume_from + "\", " +
                                                   std::to_string(options.trainable.size()) + " trainable prefixes",
                                               "a breaker trains its own A and B and does not resume; load its "
                                               "checkpoint's breaker.safetensors and train on"));
  const auto& cfg = model.config();
  const std::vector<std::string> harms = {"margin", "squared", "reroute", "custom"};
  const std::vector<std::string> keeps = {"kl", "hidden", "none"};
  if (std::find(harms.begin(), harms.end(), obj.harm) == harms.end())
    throw InvalidArgument(detail::expected_got("BreakerObjective.harm", detail::join_names(harms), "\"" + obj.harm + "\""));
  if (std::find(keeps.begin(), keeps.end(), obj.preserve) == keeps.end())
    throw InvalidArgument(detail::expected_got("BreakerObjective.preserve", detail::join_names(keeps), "\"" + obj.preserve + "\""));
  if (obj.harm == "custom" && cb.positions != "all")
    throw InvalidArgument(detail::expected_got("BreakerObjective.harm = \"custom\"", "a breaker with positions \"all\"",
                                               "positions \"" + cb.positions + "\"",
                                               "a custom metric runs its own forward passes, so scalpel cannot tell its "
                                               "prompt from its completion positions"));
  if (obj.harm == "custom" && !obj.custom)
    throw InvalidArgument(detail::expected_got("BreakerObjective.custom", "a function (harm = \"custom\")", "none"));
  const size_t n = data.prompts.size();
  if (n == 0) throw InvalidArgument(detail::expected_got("BreakerData.prompts", "at least one harm prompt", "none"));
  if (obj.harm != "custom" && (data.harmful.size() != n || (obj.harm != "reroute" && data.neutral.size() != n)))
    throw ShapeError(detail::expected_got("BreakerData harmful / neutral", "one per prompt (" + std::to_string(n) + ")",
                                          std::to_string(data.harmful.size()) + " / " + std::to_string(data.neutral.size())));
  if (obj.preserve != "none" && data.preserve.empty())
    throw InvalidArgument(detail::expected_got("BreakerData.preserve", "preserve sequences (preserve = \"" + obj.preserve + "\")",
                                               "none", "or set preserve = \"none\""));
  for (const auto& s : data.preserve)
    if (s.size() < 2)
      throw InvalidArgument(detail::expected_got("BreakerData.preserve sequence", "at least 2 tokens", std::to_string(s.size())));
  std::vector<int64_t> layers = obj.layers;
  if (layers.empty()) {
    int64_t last = 0;
    for (const auto& a : cb.adapters) last = std::max(last, hook_layer(a.site.hook));
    layers.push_back(last);
  }
  for (auto l : layers)
    if (l < 0 || l >= cfg.n_layers)
      throw InvalidArgument(detail::expected_got("BreakerObjective.layers", "layers in [0, " + std::to_string(cfg.n_layers) + ")",
                                                 std::to_string(l)));
  const int64_t stop = *std::max_element(layers.begin(), layers.end()) + 1;  // resid_post of l = resid entering l + 1
  std::vector<std::string> resid_names;
  for (auto l : layers) resid_names.push_back(hook_name("resid_post", l));
  const int64_t preserve_batch = obj.preserve_batch_size > 0 ? obj.preserve_batch_size : options.batch_size;

  auto state = std::make_shared<AttachState>();
  state->model = &model;
  state->positions = cb.positions;
  std::vector<TrainParam> params;
  for (size_t i = 0; i < cb.adapters.size(); ++i) {
    auto& a = cb.adapters[i];
    if (a.A.size(0) == 0) continue;
    a.A = a.A.detach().contiguous();
    a.B = a.B.detach().contiguous();
    params.push_back({"adapters." + std::to_string(i) + ".A", a.A, true});
    params.push_back({"adapters." + std::to_string(i) + ".B", a.B, true});
  }
  if (params.empty()) throw InvalidArgument(detail::expected_got("train_breaker", "a breaker of rank > 0", "rank 0 everywhere"));
  // cos(h', h) is at its maximum where the breaker is a no-op, so its gradient
  // vanishes there: a rerouting run starting from B = 0 gets a small random B.
  if (obj.harm == "reroute" &&
      std::all_of(cb.adapters.begin(), cb.adapters.end(),
                  [](const BreakerAdapter& a) { return a.A.size(0) == 0 || a.B.abs().max().item<double>() == 0.0; })) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed + 7919);
    at::NoGradGuard no_grad;
    for (auto& a : cb.adapters)
      if (a.A.size(0) > 0) a.B.copy_(at::normal(0.0, 0.01, a.B.sizes(), gen));
  }

  // Residual streams at `resid_names` with the breaker (graph kept) or without (no grad).
  auto residuals = [&](const at::Tensor& tokens, const at::Tensor& mask, bool edited) {
    std::vector<at::Tensor> out;
    if (!edited) {
      at::NoGradGuard no_grad;
      auto [_, cache] = model.run_with_cache(tokens, resid_names, mask, false, stop);
      for (const auto& nm : resid_names) out.push_back(cache.at(nm));
      return out;
    }
    auto store = std::make_shared<std::map<std::string, at::Tensor>>();
    std::vector<std::pair<std::string, HookFn>> capture;
    for (const auto& nm : resid_names)
      capture.emplace_back(nm, [store](const at::Tensor& x, const HookPoint& p) {
        (*store)[p.name()] = x;
        return at::Tensor();
      });
    auto breaker = attach_with(model, cb, cb.delta, state);
    auto hooks = model.add_hooks(capture);
    model.run_with_cache(tokens, {resid_names.front()}, mask, false, stop);
    for (const auto& nm : resid_names) out.push_back(store->at(nm));
    return out;
  };
  auto masked_mean = [](const at::Tensor& v, const at::Tensor& mask) {  // v, mask [b, pos]
    auto m = mask.to(at::kFloat);
    return (v * m).sum() / m.sum().clamp_min(1.0);
  };

  auto step_loss = [&](int64_t s, std::vector<std::pair<std::string, double>>& parts) -> at::Tensor {
    std::mt19937_64 rng(options.seed * 1000003ULL + static_cast<uint64_t>(s));
    std::uniform_int_distribution<size_t> pick(0, n - 1);
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < options.batch_size; ++i) rows.push_back(static_cast<int64_t>(pick(rng)));
    at::Tensor harm;
    if (obj.lambda_harm != 0.0) {
      if (obj.harm == "margin" || obj.harm == "squared") {
        std::vector<std::vector<int64_t>> prompts, completions;
        for (auto r : rows) prompts.push_back(data.prompts[r]), completions.push_back(data.harmful[r]);
        for (auto r : rows) prompts.push_back(data.prompts[r]), completions.push_back(data.neutral[r]);
        const auto tf = teacher_forced_batch(prompts, completions);
        state->completion_mask = tf.target_mask.to(at::kFloat);
        auto handle = attach_with(model, cb, cb.delta, state);
        auto lp = target_logprob(model, tf);
        const auto b = static_cast<int64_t>(rows.size());
        auto H = lp.narrow(0, 0, b) - lp.narrow(0, b, b);
        harm = obj.harm == "margin" ? at::softplus(H).mean() : H.pow(2).mean();
      } else if (obj.harm == "reroute") {
        std::vector<std::vector<int64_t>> prompts, completions;
        for (auto r : rows) prompts.push_back(data.prompts[r]), completions.push_back(data.harmful[r]);
        const auto tf = teacher_forced_batch(prompts, completions);
        state->completion_mask = tf.target_mask.to(at::kFloat);
        const auto orig = residuals(tf.tokens, tf.attention_mask, false);
        const auto edit = residuals(tf.tokens, tf.attention_mask, true);
        for (size_t i = 0; i < orig.size(); ++i) {
          auto cos = at::cosine_similarity(edit[i].to(at::kFloat), orig[i].to(at::kFloat), -1);
          auto term = masked_mean(at::relu(cos), tf.attention_mask);
          harm = harm.defined() ? harm + term : term;
        }
        harm = harm / static_cast<double>(orig.size());
      } else {
        state->completion_mask = at::Tensor();
        auto handle = attach_with(model, cb, cb.delta, state);
        harm = obj.custom(model, rows);
        if (!harm.defined() || harm.numel() != 1)
          throw InvalidArgument(detail::expected_got("BreakerObjective.custom(model, rows)", "a scalar tensor",
                                                     harm.defined() ? "shape " + c10::str(harm.sizes()) : "undefined"));
        harm = harm.reshape({});
      }
      parts.emplace_back("harm", harm.item<double>());
    }
    at::Tensor keep;
    if (obj.preserve != "none" && obj.lambda_preserve != 0.0) {
      std::uniform_int_distribution<size_t> pick_p(0, data.preserve.size() - 1);
      std::vector<LMExample> ex;
      for (int64_t i = 0; i < preserve_batch; ++i) ex.push_back({data.preserve[pick_p(rng)], {}});
      const auto batch = make_lm_batch(ex);
      // The preserve text stands for any input: the breaker acts on all of it, whatever its positions
      // rule (a "generated" breaker acts on every generated token at inference).
      state->completion_mask = cb.positions == "generated" ? at::ones_like(batch.attention_mask, at::kFloat)
                                                            : at::zeros_like(batch.attention_mask, at::kFloat);
      if (obj.preserve == "kl") {
        at::Tensor ref;
        {
          at::NoGradGuard no_grad;
          ref = model.forward(batch.tokens, batch.attention_mask);
        }
        auto handle = attach_with(model, cb, cb.delta, state);
        auto logits = model.forward(batch.tokens, batch.attention_mask);
        keep = sequence_kl(logits, ref, batch.attention_mask).mean();
      } else {
        const auto orig = residuals(batch.tokens, batch.attention_mask, false);
        const auto edit = residuals(batch.tokens, batch.attention_mask, true);
        for (size_t i = 0; i < orig.size(); ++i) {
          auto d2 = (edit[i].to(at::kFloat) - orig[i].to(at::kFloat)).pow(2).sum(-1);
          auto term = masked_mean(d2, batch.attention_mask);
          keep = keep.defined() ? keep + term : term;
        }
        keep = keep / static_cast<double>(orig.size());
      }
      parts.emplace_back("preserve", keep.item<double>());
    }
    state->completion_mask = at::Tensor();
    at::Tensor loss;
    if (harm.defined()) loss = obj.lambda_harm * harm;
    if (keep.defined()) loss = loss.defined() ? loss + obj.lambda_preserve * keep : obj.lambda_preserve * keep;
    if (!loss.defined())
      throw InvalidArgument(detail::expected_got("BreakerObjective", "a non-zero lambda_harm or lambda_preserve", "both zero"));
    return loss;
  };
  auto save = [&](const std::string& dir, int64_t, const std::vector<std::pair<std::string, at::Tensor>>&) {
    write_directory_atomic(dir, /*overwrite=*/true, "", [&](const std::string& tmp) {
      save_intervention(cb, (fs::path(tmp) / "breaker.safetensors").string());
    });
  };
  return optimize(std::move(params), step_loss, options, save);
}

}  // namespace scalpel
