// SCALPEL_USES_TORCH
// What circuit breakers and steering vectors share (see edit_training.hpp).
#include "edit_training.hpp"

#include <algorithm>
#include <random>

#include "scalpel/errors.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/io/files.hpp"
#include "scalpel/io/prompts.hpp"
#include "scalpel/model/transformer.hpp"
#include "util/messages.hpp"

namespace scalpel::steer_detail {

namespace {
const std::vector<std::string>& edit_components() {
  static const std::vector<std::string> c = {"z", "mlp_post", "attn_out", "mlp_out", "resid_pre", "resid_mid", "resid_post"};
  return c;
}
}  // namespace


// The site's component and the width of the vector its adapters act on.
SiteInfo site_info(const Transformer& model, const BreakerSite& site, const std::string& what) {
  const auto name = HookName::parse(site.hook);
  const auto& comps = edit_components();
  if (std::find(comps.begin(), comps.end(), name.component) == comps.end())
    throw Unsupported(detail::expected_got(what + " site \"" + site.hook + "\"",
                                           "one of the components " + detail::join_names(comps),
                                           "component " + name.component,
                                           "edits sit on head outputs (attn.hook_z), MLP activations (mlp.hook_post), "
                                           "block outputs or the residual stream"));
  const auto names = model.hook_names();
  if (std::find(names.begin(), names.end(), site.hook) == names.end())
    throw UnknownName(detail::expected_got(what + " site \"" + site.hook + "\"", "a hook point of this model", "no such hook",
                                           "nearest: " + detail::join_names(detail::nearest_names(site.hook, names))));
  const auto& cfg = model.config();
  if (name.component != "z" && site.head != -1)
    throw InvalidArgument(detail::expected_got(what + " site \"" + site.hook + "\" head", "-1 (heads are attn.hook_z's)",
                                               std::to_string(site.head)));
  if (name.component == "z") {
    if (site.head < -1 || site.head >= cfg.n_heads)
      throw InvalidArgument(detail::expected_got(what + " site \"" + site.hook + "\" head",
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

void check_positions(const std::string& positions, const std::string& what) {
  if (positions != "all" && positions != "prompt" && positions != "generated")
    throw InvalidArgument(detail::expected_got(what + " positions", "\"all\", \"prompt\" or \"generated\"", "\"" + positions + "\""));
}

bool position_gate(const AttachState& state, const at::Tensor& x, at::Tensor& gate) {
  gate = at::Tensor();
  if (state.positions != "all") {
    const bool want_generated = state.positions == "generated";
    if (state.completion_mask.defined() && state.completion_mask.size(0) == x.size(0) &&
        state.completion_mask.size(1) == x.size(1)) {
      gate = want_generated ? state.completion_mask : 1.0 - state.completion_mask;
    } else if (state.model->decoding() != want_generated) {
      return false;
    }
  }
  if (state.row_scale.defined()) {
    if (state.row_scale.size(0) != x.size(0))
      throw ShapeError(detail::expected_got("gated edit", "one gate value per example (" + std::to_string(x.size(0)) + ")",
                                            std::to_string(state.row_scale.size(0)),
                                            "the gate's probe ran on another batch: attach the gate to one forward at a time"));
    auto rows = state.row_scale.to(at::kFloat).unsqueeze(1);  // [b, 1]
    gate = gate.defined() ? gate.to(at::kFloat) * rows : rows.expand({x.size(0), x.size(1)});
  }
  return true;
}

TrainResult train_edit(Transformer& model, EditTraining& edit, const BreakerData& data, const BreakerObjective& obj,
                       const TrainOptions& options) {
  SCALPEL_ASSERT(edit.target != nullptr, edit.what + ": no intervention to train");
  const std::string positions = edit.target->positions_rule();
  int64_t last_layer = 0;  // the last layer an edit site sits at
  for (const auto& h : edit.target->site_hooks()) last_layer = std::max(last_layer, hook_layer(h));
  if (options.steps <= 0 || options.batch_size <= 0)
    throw InvalidArgument(detail::expected_got("TrainOptions.steps and batch_size", "positive",
                                               std::to_string(options.steps) + " and " + std::to_string(options.batch_size)));
  if (!options.resume_from.empty() || !options.trainable.empty())
    throw InvalidArgument(detail::expected_got("TrainOptions for " + edit.what, "no resume_from and no trainable",
                                               "resume_from \"" + options.resume_from + "\", " +
                                                   std::to_string(options.trainable.size()) + " trainable prefixes",
                                               "an edit trains its own parameters and does not resume; load its "
                                               "checkpoint's intervention file and train on"));
  const auto& cfg = model.config();
  const std::vector<std::string> harms = {"margin", "squared", "reroute", "custom"};
  const std::vector<std::string> keeps = {"kl", "hidden", "none"};
  if (std::find(harms.begin(), harms.end(), obj.harm) == harms.end())
    throw InvalidArgument(detail::expected_got("BreakerObjective.harm", detail::join_names(harms), "\"" + obj.harm + "\""));
  if (std::find(keeps.begin(), keeps.end(), obj.preserve) == keeps.end())
    throw InvalidArgument(detail::expected_got("BreakerObjective.preserve", detail::join_names(keeps), "\"" + obj.preserve + "\""));
  if (obj.harm == "custom" && positions != "all")
    throw InvalidArgument(detail::expected_got("BreakerObjective.harm = \"custom\"", "an edit with positions \"all\"",
                                               "positions \"" + positions + "\"",
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
  if (layers.empty()) layers.push_back(last_layer);
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
  state->positions = positions;
  if (edit.params.empty()) throw InvalidArgument(detail::expected_got(edit.what, "parameters to train", "none"));
  // cos(h', h) is at its maximum where the edit is a no-op, so its gradient
  // vanishes there: a rerouting run starting from a no-op is nudged off it.
  if (obj.harm == "reroute" && edit.leave_no_op) edit.leave_no_op(options.seed + 7919);

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
    auto breaker = edit.attach(state);
    auto hooks = model.add_hooks(capture);
    model.run_with_cache(tokens, {resid_names.front()}, mask, false, stop);
    for (const auto& nm : resid_names) out.push_back(store->at(nm));
    return out;
  };
  auto masked_mean = [](const at::Tensor& v, const at::Tensor& mask) {  // v, mask [b, pos]
    auto m = mask.to(at::kFloat);
    return (v * m).sum() / m.sum().clamp_min(1.0);
  };

  // Each row's last prompt token in a teacher-forced batch (a gate's probe reads there): the batch
  // is left-padded, so row i's prompt ends completion_i tokens before the end.
  auto prompt_ends = [](const TeacherForcedBatch& tf, const std::vector<std::vector<int64_t>>& completions) {
    std::vector<int64_t> idx;
    for (const auto& c : completions) idx.push_back(tf.tokens.size(1) - static_cast<int64_t>(c.size()) - 1);
    return at::tensor(idx, at::kLong);
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
        state->last_index = prompt_ends(tf, completions);
        auto handle = edit.attach(state);
        auto lp = target_logprob(model, tf);
        const auto b = static_cast<int64_t>(rows.size());
        auto H = lp.narrow(0, 0, b) - lp.narrow(0, b, b);
        harm = obj.harm == "margin" ? at::softplus(H).mean() : H.pow(2).mean();
      } else if (obj.harm == "reroute") {
        std::vector<std::vector<int64_t>> prompts, completions;
        for (auto r : rows) prompts.push_back(data.prompts[r]), completions.push_back(data.harmful[r]);
        const auto tf = teacher_forced_batch(prompts, completions);
        state->completion_mask = tf.target_mask.to(at::kFloat);
        state->last_index = prompt_ends(tf, completions);
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
        state->last_index = at::Tensor();
        auto handle = edit.attach(state);
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
      state->last_index = at::Tensor();  // left-padded: every sequence ends at the last position
      // The preserve text stands for any input: the breaker acts on all of it, whatever its positions
      // rule (a "generated" breaker acts on every generated token at inference).
      state->completion_mask = positions == "generated" ? at::ones_like(batch.attention_mask, at::kFloat)
                                                            : at::zeros_like(batch.attention_mask, at::kFloat);
      if (obj.preserve == "kl") {
        at::Tensor ref;
        {
          at::NoGradGuard no_grad;
          ref = model.forward(batch.tokens, batch.attention_mask);
        }
        auto handle = edit.attach(state);
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
    state->last_index = at::Tensor();
    state->row_scale = at::Tensor();
    at::Tensor loss;
    if (harm.defined()) loss = obj.lambda_harm * harm;
    if (keep.defined()) loss = loss.defined() ? loss + obj.lambda_preserve * keep : obj.lambda_preserve * keep;
    if (!loss.defined())
      throw InvalidArgument(detail::expected_got("BreakerObjective", "a non-zero lambda_harm or lambda_preserve", "both zero"));
    return loss;
  };
  auto save = [&](const std::string& dir, int64_t, const std::vector<std::pair<std::string, at::Tensor>>&) {
    write_directory_atomic(dir, /*overwrite=*/true, "", [&](const std::string& tmp) { edit.save(tmp); });
  };
  return optimize(edit.params, step_loss, options, save);
}

}  // namespace scalpel::steer_detail
