// SCALPEL_USES_TORCH
// Metrics, padded batches, the LM loss and perplexity (scalpel/eval/metrics.hpp).
#include "scalpel/eval/metrics.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "eval/detail.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/log.hpp"
#include "scalpel/model/transformer.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

void check_logits(const at::Tensor& logits, const char* what) {
  if (!logits.defined() || logits.dim() != 3)
    throw ShapeError(detail::expected_got(what, "logits [batch, pos, vocab]",
                                          logits.defined() ? "shape " + c10::str(logits.sizes()) : "undefined"));
}

// The next-token log-probabilities at `position` (negative: from the end): [batch, vocab] float32.
// Log-probabilities at `position` [batch, vocab], in float32 (or `dtype`).
at::Tensor logprobs_at(const at::Tensor& logits, int64_t position, const char* what,
                       at::ScalarType dtype = at::kFloat) {
  check_logits(logits, what);
  const int64_t n = logits.size(1);
  const int64_t p = position < 0 ? n + position : position;
  if (p < 0 || p >= n)
    throw InvalidArgument(detail::expected_got(std::string(what) + " position", "a position in [-" + std::to_string(n) +
                                                   ", " + std::to_string(n) + ")", std::to_string(position)));
  return logits.select(1, p).to(dtype).log_softmax(-1);
}

// KL(q ‖ p) over the last dimension from log-probabilities (the one formula).
at::Tensor kl_of_logprobs(const at::Tensor& lp, const at::Tensor& lq) { return (lq.exp() * (lq - lp)).sum(-1); }

at::Tensor row_ids(const at::Tensor& ids, int64_t batch, const char* what) {
  auto t = ids.to(at::kLong).reshape({-1});
  if (t.numel() != batch)
    throw ShapeError(detail::expected_got(what, "one token id per row (" + std::to_string(batch) + ")",
                                          std::to_string(t.numel()) + " ids"));
  return t;
}

}  // namespace

at::Tensor token_logprobs(const at::Tensor& logits, const at::Tensor& tokens) {
  check_logits(logits, "token_logprobs");
  if (tokens.dim() != 2 || tokens.size(0) != logits.size(0) || tokens.size(1) != logits.size(1))
    throw ShapeError(detail::expected_got("token_logprobs tokens", "shape [" + std::to_string(logits.size(0)) + ", " +
                                              std::to_string(logits.size(1)) + "]", "shape " + c10::str(tokens.sizes())));
  const int64_t n = logits.size(1);
  auto lp = logits.narrow(1, 0, n - 1).to(at::kFloat).log_softmax(-1);
  return lp.gather(-1, tokens.narrow(1, 1, n - 1).to(at::kLong).unsqueeze(-1)).squeeze(-1);
}

at::Tensor masked_logprob(const at::Tensor& logits, const at::Tensor& tokens, const at::Tensor& target_mask) {
  auto lp = token_logprobs(logits, tokens);
  if (target_mask.sizes() != tokens.sizes())
    throw ShapeError(detail::expected_got("masked_logprob target_mask", "the shape of tokens " + c10::str(tokens.sizes()),
                                          "shape " + c10::str(target_mask.sizes())));
  auto m = target_mask.narrow(1, 1, tokens.size(1) - 1).to(at::kFloat);
  return (lp * m).sum(1);
}

at::Tensor logit_diff(const at::Tensor& logits, const at::Tensor& correct, const at::Tensor& wrong, int64_t position) {
  check_logits(logits, "logit_diff");
  const int64_t n = logits.size(1), p = position < 0 ? n + position : position;
  if (p < 0 || p >= n)
    throw InvalidArgument(detail::expected_got("logit_diff position", "inside the sequence", std::to_string(position)));
  auto last = logits.select(1, p).to(at::kFloat);
  const int64_t b = logits.size(0);
  auto c = row_ids(correct, b, "logit_diff correct"), w = row_ids(wrong, b, "logit_diff wrong");
  return last.gather(1, c.unsqueeze(1)).squeeze(1) - last.gather(1, w.unsqueeze(1)).squeeze(1);
}

at::Tensor refusal_score(const at::Tensor& logits, const std::vector<int64_t>& refusal_tokens, int64_t position) {
  if (refusal_tokens.empty())
    throw InvalidArgument(detail::expected_got("refusal_score refusal_tokens", "at least one token id", "none"));
  auto lp = logprobs_at(logits, position, "refusal_score");
  for (auto t : refusal_tokens)
    if (t < 0 || t >= lp.size(1))
      throw InvalidArgument(detail::expected_got("refusal token id", "an id in [0, " + std::to_string(lp.size(1)) + ")",
                                                 std::to_string(t)));
  auto idx = torch::tensor(refusal_tokens, torch::kLong);
  auto log_p = lp.index_select(1, idx).logsumexp(1);
  // log(1 - p) computed stably: log1p(-exp(log p)), clamped away from log 0.
  auto log_not = at::log1p(-log_p.exp().clamp_max(1.0 - 1e-7));
  return log_p - log_not;
}

at::Tensor kl_divergence(const at::Tensor& logits, const at::Tensor& reference_logits, int64_t position) {
  if (logits.sizes() != reference_logits.sizes())
    throw ShapeError(detail::expected_got("kl_divergence reference_logits", "the shape of logits " + c10::str(logits.sizes()),
                                          "shape " + c10::str(reference_logits.sizes())));
  // In float64: the KLs of small edits (1e-5 and below) are lost in float32's rounding of the sum.
  auto lp = logprobs_at(logits, position, "kl_divergence", at::kDouble);
  auto lq = logprobs_at(reference_logits, position, "kl_divergence", at::kDouble);
  return kl_of_logprobs(lp, lq).to(at::kFloat);
}

at::Tensor sequence_kl(const at::Tensor& logits, const at::Tensor& reference_logits, const at::Tensor& mask) {
  check_logits(logits, "sequence_kl");
  if (logits.sizes() != reference_logits.sizes())
    throw ShapeError(detail::expected_got("sequence_kl reference_logits", "the shape of logits " + c10::str(logits.sizes()),
                                          "shape " + c10::str(reference_logits.sizes())));
  if (!mask.defined() || mask.dim() != 2 || mask.size(0) != logits.size(0) || mask.size(1) != logits.size(1))
    throw ShapeError(detail::expected_got("sequence_kl mask", "shape [" + std::to_string(logits.size(0)) + ", " +
                                              std::to_string(logits.size(1)) + "]",
                                          mask.defined() ? "shape " + c10::str(mask.sizes()) : "undefined"));
  auto kl = kl_of_logprobs(logits.to(at::kFloat).log_softmax(-1), reference_logits.to(at::kFloat).log_softmax(-1));
  auto m = mask.to(at::kFloat);
  return (kl * m).sum(1) / m.sum(1).clamp_min(1.0);
}

double auroc(const at::Tensor& scores, const at::Tensor& labels) {
  if (!scores.defined() || !labels.defined() || scores.dim() != 1 || labels.sizes() != scores.sizes())
    throw ShapeError(detail::expected_got("auroc", "scores [n] and labels [n]",
                                          (scores.defined() ? c10::str(scores.sizes()) : std::string("undefined")) + " and " +
                                              (labels.defined() ? c10::str(labels.sizes()) : std::string("undefined"))));
  const auto s = scores.to(at::kDouble).contiguous();
  const auto y = labels.to(at::kDouble).contiguous();
  const int64_t n = s.size(0);
  const double n_pos = y.sum().item<double>(), n_neg = static_cast<double>(n) - n_pos;
  if (!(n_pos > 0) || !(n_neg > 0))
    throw InvalidArgument(detail::expected_got("auroc labels", "both classes (1 and 0)", std::to_string(static_cast<int64_t>(n_pos)) +
                                                                                            " positives of " + std::to_string(n)));
  // Average ranks (1-based) with ties sharing their mean rank.
  auto order = s.argsort();
  auto sorted = s.index_select(0, order);
  std::vector<double> rank(static_cast<size_t>(n));
  const double* v = sorted.data_ptr<double>();
  const int64_t* o = order.data_ptr<int64_t>();
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && v[j + 1] == v[i]) ++j;
    const double r = 0.5 * static_cast<double>(i + j) + 1.0;
    for (int64_t k = i; k <= j; ++k) rank[static_cast<size_t>(o[k])] = r;
    i = j + 1;
  }
  double sum_pos = 0.0;
  const double* yy = y.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i)
    if (yy[i] > 0.5) sum_pos += rank[static_cast<size_t>(i)];
  return (sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg);
}

at::Tensor causal_effect(const at::Tensor& base, const at::Tensor& patched) { return base.to(at::kFloat) - patched.to(at::kFloat); }

at::Tensor gap_recovered(const at::Tensor& patched, const at::Tensor& clean, const at::Tensor& corrupted) {
  auto gap = clean.to(at::kFloat) - corrupted.to(at::kFloat);
  auto frac = (patched.to(at::kFloat) - corrupted.to(at::kFloat)) / gap;
  return at::where(gap == 0, at::zeros_like(frac), frac);
}

TeacherForcedBatch teacher_forced_batch(const std::vector<std::vector<int64_t>>& prompts,
                                        const std::vector<std::vector<int64_t>>& completions, int64_t pad_id) {
  if (prompts.size() != completions.size())
    throw InvalidArgument(detail::expected_got("completions", std::to_string(prompts.size()) + " (one per prompt)",
                                               std::to_string(completions.size())));
  if (prompts.empty()) throw InvalidArgument(detail::expected_got("prompts", "at least one", "none"));
  size_t len = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (completions[i].empty())
      throw InvalidArgument(detail::expected_got("completion " + std::to_string(i), "at least one token", "none"));
    if (prompts[i].empty())
      throw InvalidArgument(detail::expected_got("prompt " + std::to_string(i), "at least one token (e.g. BOS)", "none"));
    len = std::max(len, prompts[i].size() + completions[i].size());
  }
  const auto n = static_cast<int64_t>(prompts.size()), L = static_cast<int64_t>(len);
  TeacherForcedBatch b{torch::full({n, L}, pad_id, torch::kLong), torch::zeros({n, L}, torch::kLong),
                       torch::zeros({n, L}, torch::kLong)};
  auto tok = b.tokens.accessor<int64_t, 2>();
  auto am = b.attention_mask.accessor<int64_t, 2>();
  auto tm = b.target_mask.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& p = prompts[static_cast<size_t>(i)];
    const auto& c = completions[static_cast<size_t>(i)];
    int64_t at = L - static_cast<int64_t>(p.size() + c.size());
    for (auto t : p) { tok[i][at] = t; am[i][at++] = 1; }
    for (auto t : c) { tok[i][at] = t; am[i][at] = 1; tm[i][at++] = 1; }
  }
  return b;
}

at::Tensor target_logprob(Transformer& model, const TeacherForcedBatch& batch) {
  const auto& tokens = batch.tokens;
  if (tokens.dim() != 2 || batch.target_mask.sizes() != tokens.sizes() || batch.attention_mask.sizes() != tokens.sizes())
    throw ShapeError(detail::expected_got("target_logprob batch", "tokens, attention_mask and target_mask of one shape",
                                          c10::str(tokens.sizes()) + ", " + c10::str(batch.attention_mask.sizes()) +
                                              ", " + c10::str(batch.target_mask.sizes())));
  const int64_t b = tokens.size(0), n = tokens.size(1);
  auto hidden = model.final_residual(tokens, batch.attention_mask);  // [b, n, d_model]
  // Position t predicts token t + 1: the rows and positions whose next token is a target.
  auto where = batch.target_mask.narrow(1, 1, n - 1).nonzero();  // [T, 2]: (row, t)
  auto rows = where.select(1, 0), pos = where.select(1, 1);
  auto h = hidden.reshape({b * n, hidden.size(2)}).index_select(0, rows * n + pos);
  auto lp = model.unembed(h).log_softmax(-1);                                 // [T, vocab] float32
  auto next = tokens.to(at::kLong).reshape({-1}).index_select(0, rows * n + pos + 1);
  auto picked = lp.gather(1, next.unsqueeze(1)).squeeze(1);
  return at::zeros({b}, picked.options()).index_add(0, rows, picked);
}

at::Tensor completion_logprob(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                              const std::vector<std::vector<int64_t>>& completions, int64_t batch_size) {
  if (batch_size <= 0) throw InvalidArgument(detail::expected_got("batch_size", "a positive number", std::to_string(batch_size)));
  if (prompts.size() != completions.size())
    throw InvalidArgument(detail::expected_got("completions", std::to_string(prompts.size()) + " (one per prompt)",
                                               std::to_string(completions.size())));
  std::vector<at::Tensor> out;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < prompts.size(); i += static_cast<size_t>(batch_size)) {
    const size_t j = std::min(prompts.size(), i + static_cast<size_t>(batch_size));
    auto b = teacher_forced_batch({prompts.begin() + i, prompts.begin() + j}, {completions.begin() + i, completions.begin() + j});
    out.push_back(target_logprob(model, b));
  }
  return out.empty() ? torch::zeros({0}) : at::cat(out);
}

at::Tensor harm_score(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                      const std::vector<std::vector<int64_t>>& harmful, const std::vector<std::vector<int64_t>>& neutral,
                      int64_t batch_size) {
  return completion_logprob(model, prompts, harmful, batch_size) - completion_logprob(model, prompts, neutral, batch_size);
}


// ------------------------------------------------- batches, loss, perplexity --

namespace detail {

std::string shape_of(const at::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : "an undefined tensor"; }

void check_prompts(const std::vector<std::vector<int64_t>>& prompts, const char* what, size_t min_len) {
  if (prompts.empty()) throw InvalidArgument(detail::expected_got(what, "at least one prompt", "none"));
  for (size_t i = 0; i < prompts.size(); ++i)
    if (prompts[i].size() < min_len)
      throw InvalidArgument(detail::expected_got(std::string(what) + " " + std::to_string(i),
                                                 "at least " + std::to_string(min_len) + " token(s)",
                                                 std::to_string(prompts[i].size())));
}

// Left-padded batch of prompts [begin, end) (mask undefined when no padding is needed).
std::pair<at::Tensor, at::Tensor> left_padded(const std::vector<std::vector<int64_t>>& prompts, size_t begin,
                                              size_t end) {
  std::vector<LMExample> ex;
  for (size_t i = begin; i < end; ++i) ex.push_back(LMExample{prompts[i], {}});
  auto b = make_lm_batch(ex);
  const bool padded = !b.attention_mask.all().item<bool>();
  return {b.tokens, padded ? b.attention_mask : at::Tensor()};
}

}  // namespace detail

using detail::check_prompts;
using detail::left_padded;
using detail::shape_of;

LMBatch make_lm_batch(const std::vector<LMExample>& examples, int64_t pad_id) {
  if (examples.empty()) throw InvalidArgument(detail::expected_got("training batch", "at least one example", "none"));
  size_t len = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    const auto& e = examples[i];
    if (e.tokens.empty())
      throw InvalidArgument(detail::expected_got("training example " + std::to_string(i), "at least one token", "none"));
    if (!e.loss_mask.empty() && e.loss_mask.size() != e.tokens.size())
      throw InvalidArgument(detail::expected_got("training example " + std::to_string(i) + " loss_mask",
                                                 "one entry per token (" + std::to_string(e.tokens.size()) + ")",
                                                 std::to_string(e.loss_mask.size())));
    len = std::max(len, e.tokens.size());
  }
  const auto b = static_cast<int64_t>(examples.size()), L = static_cast<int64_t>(len);
  LMBatch batch{at::full({b, L}, pad_id, at::kLong), at::zeros({b, L}, at::kLong), at::zeros({b, L}, at::kLong)};
  auto tok = batch.tokens.accessor<int64_t, 2>();
  auto att = batch.attention_mask.accessor<int64_t, 2>();
  auto los = batch.loss_mask.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const auto& e = examples[static_cast<size_t>(r)];
    const int64_t n = static_cast<int64_t>(e.tokens.size()), off = L - n;
    for (int64_t t = 0; t < n; ++t) {
      tok[r][off + t] = e.tokens[static_cast<size_t>(t)];
      att[r][off + t] = 1;
      los[r][off + t] = e.loss_mask.empty() ? (t > 0) : (e.loss_mask[static_cast<size_t>(t)] != 0 && t > 0);
    }
  }
  return batch;
}

at::Tensor lm_loss(Transformer& model, const LMBatch& batch) {
  const bool padded = !batch.attention_mask.all().item<bool>();
  auto logits = model.forward(batch.tokens, padded ? batch.attention_mask : at::Tensor());
  const int64_t L = batch.tokens.size(1);
  if (L < 2) throw InvalidArgument(detail::expected_got("lm_loss batch", "sequences of at least 2 tokens", "1"));
  auto logp = at::log_softmax(logits.narrow(1, 0, L - 1).to(at::kFloat), -1);
  auto nll = -logp.gather(-1, batch.tokens.narrow(1, 1, L - 1).unsqueeze(-1)).squeeze(-1);
  auto m = batch.loss_mask.narrow(1, 1, L - 1).to(at::kFloat);
  return (nll * m).sum() / m.sum().clamp_min(1.0);
}

at::Tensor last_logits(Transformer& model, const std::vector<std::vector<int64_t>>& prompts, int64_t batch_size) {
  check_prompts(prompts, "last_logits prompt");
  if (batch_size < 1) throw InvalidArgument(detail::expected_got("batch_size", "at least 1", std::to_string(batch_size)));
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> out;
  for (size_t s = 0; s < prompts.size(); s += static_cast<size_t>(batch_size)) {
    const size_t e = std::min(prompts.size(), s + static_cast<size_t>(batch_size));
    auto [tokens, mask] = left_padded(prompts, s, e);
    auto logits = model.forward(tokens, mask, /*last_position_only=*/true);
    out.push_back(logits.select(1, logits.size(1) - 1).to(at::kFloat));
  }
  return at::cat(out);
}

at::Tensor first_token_kl(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                          const at::Tensor& reference_logits, int64_t batch_size) {
  auto edited = last_logits(model, prompts, batch_size);
  if (!reference_logits.defined() || reference_logits.sizes() != edited.sizes())
    throw ShapeError(detail::expected_got("first_token_kl reference_logits", "[" + std::to_string(edited.size(0)) + ", " +
                                              std::to_string(edited.size(1)) + "] (last_logits of the same prompts)",
                                          shape_of(reference_logits)));
  return kl_divergence(edited.unsqueeze(1), reference_logits.unsqueeze(1), -1);
}

double perplexity(Transformer& model, const std::vector<std::vector<int64_t>>& sequences, int64_t batch_size,
                  const std::vector<std::vector<uint8_t>>& loss_masks) {
  check_prompts(sequences, "perplexity sequence", 2);
  if (batch_size < 1) throw InvalidArgument(detail::expected_got("batch_size", "at least 1", std::to_string(batch_size)));
  if (!loss_masks.empty() && loss_masks.size() != sequences.size())
    throw InvalidArgument(detail::expected_got("perplexity loss_masks", "one per sequence (" +
                                               std::to_string(sequences.size()) + ") or none",
                                               std::to_string(loss_masks.size())));
  at::NoGradGuard no_grad;
  double nll = 0;
  int64_t count = 0;
  Progress progress("perplexity", static_cast<int64_t>(sequences.size()));
  for (size_t s = 0; s < sequences.size(); s += static_cast<size_t>(batch_size)) {
    const size_t e = std::min(sequences.size(), s + static_cast<size_t>(batch_size));
    std::vector<LMExample> ex;
    for (size_t i = s; i < e; ++i)
      ex.push_back(LMExample{sequences[i], loss_masks.empty() ? std::vector<uint8_t>{} : loss_masks[i]});
    auto b = make_lm_batch(ex);
    const int64_t targets = b.loss_mask.sum().item<int64_t>();
    if (targets > 0) nll += lm_loss(model, b).item<double>() * static_cast<double>(targets);
    count += targets;
    progress.update(static_cast<int64_t>(e - s));
  }
  if (count == 0)
    throw InvalidArgument(detail::expected_got("perplexity loss_masks", "at least one scored token after the first",
                                               "none"));
  return std::exp(nll / static_cast<double>(count));
}

}  // namespace scalpel
