// scalpel/eval/evaluate.hpp — the evaluation battery of a (possibly edited)
// model: refusal and over-refusal of greedy completions under a judge, the
// logit refusal score, first-token KL to the unedited model, perplexity on
// text and on reference solutions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/io/prompts.hpp"

namespace scalpel {

class Transformer;

/// Perplexity of the reference solutions given their prompts (fmt(prompt) then
/// the solution; prompt tokens are not scored; at most max_tokens per pair).
double solution_perplexity(Transformer& model, const std::vector<std::pair<std::string, std::string>>& pairs,
                           const PromptFormat& fmt = {}, int64_t max_tokens = 256, int64_t batch_size = 8);

using Judge = std::function<bool(const std::string& completion)>;

struct EvalOptions {
  at::Tensor reference_logits;      ///< last_logits of the harmless prompts, unedited (undefined: no KL)
  std::vector<int64_t> tokens;      ///< refusal tokens (empty: refusal_tokens(model, fmt))
  std::vector<std::vector<int64_t>> texts;  ///< token windows for perplexity (e.g. wikitext2)
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> solutions;  ///< name → pairs
  int64_t max_new_tokens = 24;
  Judge judge;                      ///< empty: is_refusal (substring judge)
};

struct EvalReport {
  double refusal_rate = 0;   ///< judged refusals of greedy completions on harmful
  double over_refusal = 0;   ///< the same on harmless
  double refusal_score = 0;  ///< mean logit refusal score on harmful
  std::optional<double> first_token_kl;
  std::optional<double> perplexity;
  std::vector<std::pair<std::string, double>> solution_perplexities;  ///< reported as NAME_perplexity
  std::vector<std::string> harmful_completions, harmless_completions;
  std::vector<std::string> harmful, harmless;
  std::string to_json() const;  ///< the numbers and three examples of each set
};

/// The evaluation battery under whatever edit is active.
EvalReport evaluate(Transformer& model, const std::vector<std::string>& harmful, const std::vector<std::string>& harmless,
                    const std::optional<PromptFormat>& fmt = std::nullopt, const EvalOptions& options = {});

}  // namespace scalpel
