// SCALPEL_USES_TORCH
// The evaluation battery (scalpel/eval/evaluate.hpp).
#include "scalpel/eval/evaluate.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "eval/detail.hpp"
#include "model/prompts_detail.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/eval/metrics.hpp"
#include "scalpel/eval/refusal.hpp"
#include "scalpel/model/prompts.hpp"
#include "scalpel/model/transformer.hpp"
#include "util/json_text.hpp"
#include "util/messages.hpp"

namespace scalpel {

namespace detail {
double mean_refusal_score(const at::Tensor& last, const std::vector<int64_t>& tokens) {
  return refusal_score(last.unsqueeze(1), tokens, -1).mean().item<double>();
}
}  // namespace detail

using detail::mean_refusal_score;
using Json = nlohmann::ordered_json;

double solution_perplexity(Transformer& model, const std::vector<std::pair<std::string, std::string>>& pairs,
                           const PromptFormat& fmt, int64_t max_tokens, int64_t batch_size) {
  std::vector<std::vector<int64_t>> seqs;
  std::vector<std::vector<uint8_t>> masks;
  for (const auto& [q, a] : pairs) {
    const std::string prompt = fmt(q);
    const auto p = encode_formatted(model, prompt, fmt);
    auto full = encode_formatted(model, prompt + a, fmt);
    if (static_cast<int64_t>(full.size()) > max_tokens) full.resize(static_cast<size_t>(max_tokens));
    if (full.size() <= p.size()) continue;
    std::vector<uint8_t> mask(full.size(), 1);
    std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(p.size()), 0);
    seqs.push_back(std::move(full));
    masks.push_back(std::move(mask));
  }
  if (seqs.empty())
    throw InvalidArgument(detail::expected_got("solution_perplexity pairs", "at least one solution token within max_tokens",
                                               "none (" + std::to_string(pairs.size()) + " pairs)"));
  return perplexity(model, seqs, batch_size, masks);
}

std::string EvalReport::to_json() const {
  Json j{{"refusal_rate", refusal_rate}, {"over_refusal", over_refusal}, {"refusal_score", refusal_score}};
  if (first_token_kl) j["first_token_kl"] = *first_token_kl;
  if (perplexity) j["perplexity"] = *perplexity;
  for (const auto& [name, v] : solution_perplexities) j[name + "_perplexity"] = v;
  auto ex = [](const std::vector<std::string>& p, const std::vector<std::string>& g) {
    Json a = Json::array();
    for (size_t i = 0; i < std::min<size_t>(3, std::min(p.size(), g.size())); ++i) a.push_back({p[i], g[i]});
    return a;
  };
  j["examples"] = {{"harmful", ex(harmful, harmful_completions)}, {"harmless", ex(harmless, harmless_completions)}};
  return detail::json_text(j);
}

EvalReport evaluate(Transformer& model, const std::vector<std::string>& harmful, const std::vector<std::string>& harmless,
                    const std::optional<PromptFormat>& fmt, const EvalOptions& o) {
  if (harmful.empty() || harmless.empty())
    throw InvalidArgument(detail::expected_got("evaluate prompt sets", "nonempty harmful and harmless sets",
                                               std::to_string(harmful.size()) + " and " + std::to_string(harmless.size())));
  const PromptFormat f = detail::resolve_format(model, fmt);
  const auto tokens = o.tokens.empty() ? refusal_tokens(model, f) : o.tokens;
  const Judge judge = o.judge ? o.judge : Judge([](const std::string& s) { return is_refusal(s); });
  EvalReport r;
  r.harmful = harmful;
  r.harmless = harmless;
  const auto H = encode_prompts(model, harmful, f), B = encode_prompts(model, harmless, f);
  r.harmful_completions = complete(model, H, o.max_new_tokens);
  r.harmless_completions = complete(model, B, o.max_new_tokens);
  auto rate = [&](const std::vector<std::string>& g) {
    return static_cast<double>(std::count_if(g.begin(), g.end(), judge)) / static_cast<double>(g.size());
  };
  r.refusal_rate = rate(r.harmful_completions);
  r.over_refusal = rate(r.harmless_completions);
  r.refusal_score = mean_refusal_score(last_logits(model, H), tokens);
  if (o.reference_logits.defined()) r.first_token_kl = first_token_kl(model, B, o.reference_logits).mean().item<double>();
  if (!o.texts.empty()) r.perplexity = perplexity(model, o.texts);
  for (const auto& [name, pairs] : o.solutions) r.solution_perplexities.emplace_back(name, solution_perplexity(model, pairs));
  return r;
}

}  // namespace scalpel
