// SCALPEL_USES_TORCH
// Direction selection, the surgical direction, hard-negative mining and
// export (scalpel/steer/sra.hpp).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "scalpel/steer/sra.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/eval/refusal.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/log.hpp"
#include "scalpel/eval/metrics.hpp"
#include "io/atomic_file.hpp"
#include "util/logging.hpp"
#include "util/json_text.hpp"
#include "util/messages.hpp"
#include "eval/detail.hpp"
#include "io/json_rows.hpp"
#include "model/prompts_detail.hpp"
#include "scalpel/hooks/names.hpp"
#include "steer/detail.hpp"

namespace scalpel {

namespace detail {

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

Json tensor_json(const at::Tensor& t) {
  auto d = t.to(at::kDouble).contiguous();
  Json out = Json::array();
  if (d.dim() == 1) {
    const double* p = d.data_ptr<double>();
    for (int64_t i = 0; i < d.numel(); ++i) out.push_back(p[i]);
  } else {
    for (int64_t i = 0; i < d.size(0); ++i) out.push_back(tensor_json(d[i]));
  }
  return out;
}

Json ridge_object(const RidgeResult& r) {
  return Json{{"coefficients", r.coefficients}, {"lambda", r.lambda},           {"explained", r.explained},
              {"cosine", r.cosine},             {"gcv_lambdas", r.gcv_lambdas}, {"gcv_scores", r.gcv_scores}};
}

Json audit_object(const AtomAudit& a, const std::vector<std::string>& names) {
  Json c = Json::array();
  for (const auto& [i, j] : a.collinear) c.push_back({names[static_cast<size_t>(i)], names[static_cast<size_t>(j)]});
  return Json{{"cosines", tensor_json(a.cosines)}, {"condition_number", a.condition_number}, {"collinear", c}};
}

}  // namespace detail

namespace {

namespace fs = std::filesystem;
using detail::contains;
using detail::Json;
using detail::mean_refusal_score;

// The block a candidate's hook belongs to (0 for hooks before the blocks).
// The layer a candidate's hook reads (0 for names outside the blocks, or labels that are not hook names).
int64_t layer_of(const std::string& hook) {
  const auto h = HookName::try_parse(hook);
  return h ? std::max<int64_t>(0, h->layer) : 0;
}

std::string printf_g(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

Json score_json(const CandidateScore& r) {
  Json j{{"hook", r.hook}, {"layer", r.layer}, {"position", r.position}, {"norm", r.norm}};
  if (r.bypass) j["bypass"] = *r.bypass;
  if (r.kl) j["kl"] = *r.kl;
  if (r.induce) j["induce"] = *r.induce;
  j["eligible"] = r.eligible;
  j["reason"] = r.reason;
  j["baseline"] = r.baseline;
  return j;
}

}  // namespace

std::string CandidateScore::to_json() const { return detail::json_text(score_json(*this)); }

// -------------------------------------------------------------- selection --

Candidates candidate_directions(Transformer& model, const std::vector<std::string>& harmful,
                                const std::vector<std::string>& harmless, const std::optional<PromptFormat>& fmt,
                                const std::vector<std::string>& hooks, const std::vector<int64_t>& positions,
                                const std::string& method, int64_t batch_size) {
  if (method != "mean" && method != "pca")
    throw InvalidArgument(detail::expected_got("candidate_directions method", "'mean' or 'pca'", "'" + method + "'"));
  const PromptFormat f = detail::resolve_format(model, fmt);
  Candidates c{hooks, positions, {}};
  if (c.hooks.empty())
    for (int64_t l = 0; l < model.config().n_layers; ++l)
      for (const char* k : {"resid_pre", "resid_mid"}) c.hooks.push_back(hook_name(k, l));
  if (c.positions.empty()) c.positions = post_instruction_positions(model, f);
  auto a = collect_activations(model, encode_prompts(model, harmful, f), c.hooks, c.positions, batch_size);
  auto b = collect_activations(model, encode_prompts(model, harmless, f), c.hooks, c.positions, batch_size);
  c.directions = method == "mean"
                     ? mean_difference(a, b)
                     : pca_directions(a, b, 1)[0] * mean_difference(a, b).norm(2, {-1}, /*keepdim=*/true);
  return c;
}

std::string Selection::to_json() const {
  Json rows_j = Json::array();
  for (const auto& r : rows) rows_j.push_back(score_json(r));
  return detail::json_text(Json{{"hook", hook}, {"position", position}, {"candidates", rows_j}});
}

Selection select_direction(Transformer& model, const Candidates& cands, const std::vector<std::string>& harmful_val,
                           const std::vector<std::string>& harmless_val, const std::optional<PromptFormat>& fmt,
                           const std::vector<int64_t>& tokens_in, double kl_threshold, double exclude_last,
                           bool progress) {
  const PromptFormat f = detail::resolve_format(model, fmt);
  const auto tokens = tokens_in.empty() ? refusal_tokens(model, f) : tokens_in;
  if (!cands.directions.defined() || cands.directions.dim() != 3 ||
      cands.directions.size(0) != static_cast<int64_t>(cands.hooks.size()) ||
      cands.directions.size(1) != static_cast<int64_t>(cands.positions.size()))
    throw ShapeError(detail::expected_got("select_direction candidates.directions",
                                          "[hooks=" + std::to_string(cands.hooks.size()) + ", positions=" +
                                              std::to_string(cands.positions.size()) + ", d]",
                                          cands.directions.defined() ? c10::str(cands.directions.sizes()) : "an undefined tensor"));
  const auto H = encode_prompts(model, harmful_val, f), B = encode_prompts(model, harmless_val, f);
  const auto ref_b = last_logits(model, B);
  const double base_h = mean_refusal_score(last_logits(model, H), tokens);
  const int64_t L = model.config().n_layers;
  Selection sel;
  bool found = false;
  size_t best_i = 0;
  std::optional<Progress> bar;
  if (progress) bar.emplace("selecting a direction", static_cast<int64_t>(cands.hooks.size() * cands.positions.size()));
  for (size_t i = 0; i < cands.hooks.size(); ++i) {
    const std::string& h = cands.hooks[i];
    const int64_t layer = layer_of(h);
    for (size_t j = 0; j < cands.positions.size(); ++j) {
      const at::Tensor v = cands.directions[static_cast<int64_t>(i)][static_cast<int64_t>(j)];
      CandidateScore row;
      row.hook = h;
      row.layer = layer;
      row.position = cands.positions[j];
      row.norm = v.norm().item<double>();
      row.baseline = base_h;
      if (row.norm < 1e-8) {
        row.reason = "zero direction";
        sel.rows.push_back(row);
        if (bar) bar->update();
        continue;
      }
      {
        auto handle = ablate_direction(model, v);
        row.bypass = mean_refusal_score(last_logits(model, H), tokens);
        row.kl = first_token_kl(model, B, ref_b).mean().item<double>();
      }
      {
        auto handle = add_direction(model, v, 1.0, layer, {}, false);
        row.induce = mean_refusal_score(last_logits(model, B), tokens);
      }
      std::vector<std::string> reasons;
      if (static_cast<double>(layer) >= static_cast<double>(L) * (1 - exclude_last))
        reasons.push_back("layer " + std::to_string(layer) + " in the last " + printf_g("%.0f", exclude_last * 100) +
                          "% of layers");
      if (*row.kl >= kl_threshold)
        reasons.push_back("KL " + printf_g("%.3g", *row.kl) + " \u2265 " + printf_g("%g", kl_threshold));
      if (*row.induce <= 0) reasons.push_back("induce score " + printf_g("%.3g", *row.induce) + " \u2264 0");
      row.eligible = reasons.empty();
      for (size_t k = 0; k < reasons.size(); ++k) row.reason += (k ? "; " : "") + reasons[k];
      sel.rows.push_back(row);
      if (row.eligible && (!found || *row.bypass < *sel.rows[best_i].bypass)) {
        best_i = sel.rows.size() - 1;
        found = true;
        sel.hook = h;
        sel.position = row.position;
        sel.direction = v;
      }
      if (bar) bar->update();
    }
  }
  if (!found) {
    std::string worst;
    for (size_t k = 0; k < std::min<size_t>(6, sel.rows.size()); ++k)
      worst += (k ? "; " : "") + sel.rows[k].hook + "@" + std::to_string(sel.rows[k].position) + ": " + sel.rows[k].reason;
    throw std::runtime_error("select_direction: no candidate passed the filters (KL < " + printf_g("%g", kl_threshold) +
                             ", induce > 0, not in the last " + printf_g("%.0f", exclude_last * 100) +
                             "% of layers), e.g. " + worst + "; relax kl_threshold / exclude_last");
  }
  return sel;
}

// -------------------------------------------------------------------- SRA --

std::string SRAResult::audit_json() const { return detail::json_text(detail::audit_object(audit, atoms)); }

std::string SRAResult::to_json() const {
  Json coef = Json::object();
  for (size_t i = 0; i < atoms.size(); ++i) coef[atoms[i]] = ridge.coefficients[i];
  Json j{{"hook", hook}, {"position", position}, {"atoms", atoms}, {"coefficients", coef}};
  const Json ridge_j = detail::ridge_object(ridge);
  for (auto it = ridge_j.begin(); it != ridge_j.end(); ++it)
    if (it.key() != "coefficients") j[it.key()] = it.value();
  j["audit"] = detail::audit_object(audit, atoms);
  j["dirty_norm"] = dirty.norm().item<double>();
  j["clean_norm"] = clean.norm().item<double>();
  return detail::json_text(j);
}

SRAResult surgical_direction(const at::Tensor& dirty, const Registry& registry, const std::string& hook,
                             int64_t position, double lambda, const std::vector<std::string>& kinds,
                             const std::vector<std::string>& exclude) {
  auto [names, A] = registry.matrix(hook, position, kinds, exclude);
  SRAResult r;
  r.ridge = ridge_residualize(dirty, A, lambda);
  r.audit = audit_directions(A);
  r.dirty = dirty;
  r.clean = r.ridge.clean.to(at::kFloat);
  r.atoms = names;
  r.hook = hook;
  r.position = position;
  return r;
}

// ---------------------------------------------------------- mining, export --

std::string MiningRound::to_json() const {
  return detail::json_text(Json{{"round", round},           {"refusal_rate", refusal_rate},     {"mean_kl", mean_kl},
              {"max_kl", max_kl},         {"harmful_set", harmful_set},       {"harmless_set", harmless_set},
              {"added_harmful", added_harmful}, {"added_harmless", added_harmless}});
}

std::pair<at::Tensor, std::vector<MiningRound>> mine_hard_negatives(
    Transformer& model,
    const std::function<at::Tensor(const std::vector<std::string>&, const std::vector<std::string>&)>& make_direction,
    const std::vector<std::string>& harmful_in, const std::vector<std::string>& harmless_in,
    const std::vector<std::string>& harmful_pool, const std::vector<std::string>& harmless_pool,
    const std::optional<PromptFormat>& fmt, const MiningOptions& o) {
  if (!make_direction) throw InvalidArgument("mine_hard_negatives: expected a make_direction function, got none");
  if (harmful_pool.empty() || harmless_pool.empty())
    throw InvalidArgument(detail::expected_got("mine_hard_negatives pools", "nonempty harmful and harmless pools",
                                               std::to_string(harmful_pool.size()) + " and " +
                                                   std::to_string(harmless_pool.size())));
  const PromptFormat f = detail::resolve_format(model, fmt);
  const Judge judge = o.judge ? o.judge : Judge([](const std::string& s) { return is_refusal(s); });
  auto log = o.log ? o.log : [](const std::string& m) { detail::log(detail::LogLevel::info, m); };
  std::vector<std::string> harmful = harmful_in, harmless = harmless_in;
  const auto HP = encode_prompts(model, harmful_pool, f), BP = encode_prompts(model, harmless_pool, f);
  const auto ref = last_logits(model, BP);
  std::vector<MiningRound> history;
  at::Tensor v;
  for (int64_t r = 0; r < o.rounds; ++r) {
    v = make_direction(harmful, harmless);
    std::vector<std::string> gen;
    at::Tensor kl;
    {
      auto handle = ablate_direction(model, v, o.gamma);
      gen = complete(model, HP, o.max_new_tokens);
      kl = first_token_kl(model, BP, ref);
    }
    MiningRound row;
    row.round = r;
    size_t refused = 0;
    for (size_t i = 0; i < harmful_pool.size(); ++i) {
      if (!judge(gen[i])) continue;
      ++refused;
      if (!contains(harmful, harmful_pool[i]) && !contains(row.added_harmful, harmful_pool[i]))
        row.added_harmful.push_back(harmful_pool[i]);
    }
    auto order = at::argsort(kl, /*dim=*/-1, /*descending=*/true);
    for (int64_t k = 0; k < order.size(0) && static_cast<int64_t>(row.added_harmless.size()) < o.top_kl; ++k) {
      const auto& p = harmless_pool[static_cast<size_t>(order[k].item<int64_t>())];
      if (!contains(harmless, p) && !contains(row.added_harmless, p)) row.added_harmless.push_back(p);
    }
    row.refusal_rate = static_cast<double>(refused) / static_cast<double>(HP.size());
    row.mean_kl = kl.mean().item<double>();
    row.max_kl = kl.max().item<double>();
    row.harmful_set = static_cast<int64_t>(harmful.size());
    row.harmless_set = static_cast<int64_t>(harmless.size());
    history.push_back(row);
    log("mining round " + std::to_string(r) + ": pool refusal " + printf_g("%.1f", row.refusal_rate * 100) +
        "%, mean KL " + printf_g("%.4f", row.mean_kl) + ", +" + std::to_string(row.added_harmful.size()) + " harmful, +" +
        std::to_string(row.added_harmless.size()) + " harmless");
    if (row.refusal_rate <= o.target_refusal || (row.added_harmful.empty() && row.added_harmless.empty())) break;
    harmful.insert(harmful.end(), row.added_harmful.begin(), row.added_harmful.end());
    harmless.insert(harmless.end(), row.added_harmless.begin(), row.added_harmless.end());
  }
  return {v, history};
}

std::string export_ablated(const std::string& source, const std::string& out, const at::Tensor& direction,
                           double gamma, bool overwrite, int64_t from_layer) {
  auto model = Transformer::from_pretrained(source, "float32");
  if (from_layer == 0) model->untie_embeddings();  // the embedding is edited; a tied unembedding must not be
  const auto edited = orthogonalize_weights(*model, direction, gamma, from_layer);
  Json rec{{"edit", "directional ablation (weight orthogonalization)"},
           {"gamma", gamma},
           {"from_layer", from_layer},
           {"source", source},
           {"edited", edited},
           {"direction", detail::tensor_json(direction.reshape({-1}))}};
  // scalpel_edit.json, not a .safetensors file, which loaders would take for a weight shard.
  write_directory_atomic(out, overwrite, source, [&](const std::string& tmp) {
    model->save_pretrained(tmp, "", /*overwrite=*/true);
    write_file_atomic((fs::path(tmp) / "scalpel_edit.json").string(), rec.dump(1) + "\n");
  });
  return out;
}

}  // namespace scalpel
