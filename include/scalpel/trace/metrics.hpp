// scalpel/trace/metrics.hpp — the numbers causal tracing measures: teacher-
// forced log-probabilities of completions, the harm score
// H = logp(harmful completion) − logp(neutral completion), logit
// differences, the refusal score, KL to a reference run, and the causal
// effect of a patch (raw and as the fraction of the gap recovered).
//
// Logit-level functions take logits [batch, pos, vocab] (any float dtype;
// computed in float32) and return one float32 value per row. Model-level
// functions build the teacher-forced batch themselves (left padding).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace scalpel {

class Transformer;

/// log p(tokens[:, t+1] | tokens[:, ≤t]) for t = 0..pos-2: [batch, pos-1].
at::Tensor token_logprobs(const at::Tensor& logits, const at::Tensor& tokens);

/// Sum of log p(token_t | tokens before t) over the positions t where
/// `target_mask` [batch, pos] is 1 (position 0 cannot be a target): [batch].
at::Tensor masked_logprob(const at::Tensor& logits, const at::Tensor& tokens, const at::Tensor& target_mask);

/// logits[b, position, correct[b]] − logits[b, position, wrong[b]]: [batch].
/// `position` counts from the end when negative.
at::Tensor logit_diff(const at::Tensor& logits, const at::Tensor& correct, const at::Tensor& wrong,
                      int64_t position = -1);

/// Log-odds that the next token is one of `refusal_tokens` at `position`:
/// log p(R) − log(1 − p(R)), p(R) = Σ_{t∈R} softmax(logits)[t]. [batch].
at::Tensor refusal_score(const at::Tensor& logits, const std::vector<int64_t>& refusal_tokens, int64_t position = -1);

/// KL(reference ‖ p) of the next-token distributions at `position`: [batch]
/// float32, computed in float64 (first_token_kl uses it too).
at::Tensor kl_divergence(const at::Tensor& logits, const at::Tensor& reference_logits, int64_t position = -1);

/// CausalEffect = H(base) − H(patched), elementwise.
at::Tensor causal_effect(const at::Tensor& base, const at::Tensor& patched);
/// The fraction of the gap recovered: (patched − corrupted) / (clean − corrupted),
/// elementwise; 0 where clean == corrupted.
at::Tensor gap_recovered(const at::Tensor& patched, const at::Tensor& clean, const at::Tensor& corrupted);

/// A teacher-forced batch: each row is prompt + completion, left-padded.
struct TeacherForcedBatch {
  at::Tensor tokens;           // [batch, pos] int64
  at::Tensor attention_mask;   // [batch, pos] 1 = token
  at::Tensor target_mask;      // [batch, pos] 1 where a completion token sits
};
/// Throws InvalidArgument for different list lengths or an empty completion.
TeacherForcedBatch teacher_forced_batch(const std::vector<std::vector<int64_t>>& prompts,
                                        const std::vector<std::vector<int64_t>>& completions, int64_t pad_id = 0);

/// log p(completion | prompt) of each pair, summed over the completion's
/// tokens, in batches of `batch_size` (hooks on the model apply): [n].
at::Tensor completion_logprob(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                              const std::vector<std::vector<int64_t>>& completions, int64_t batch_size = 16);

/// H = logp(harmful | prompt) − logp(neutral | prompt) of each triple: [n].
at::Tensor harm_score(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                      const std::vector<std::vector<int64_t>>& harmful,
                      const std::vector<std::vector<int64_t>>& neutral, int64_t batch_size = 16);

}  // namespace scalpel
