// scalpel/eval/metrics.hpp — the numbers scalpel measures (tracing, steering,
// training and evaluation use these, each defined once): teacher-
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
#include <string>
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

/// KL(reference ‖ p) of the next-token distributions at every position where
/// `mask` [batch, pos] is 1, averaged per row: [batch] float32 (0 for a row
/// without such positions). Differentiable, in float32 (the preservation loss
/// of interventions); kl_divergence is the float64 value at one position.
at::Tensor sequence_kl(const at::Tensor& logits, const at::Tensor& reference_logits, const at::Tensor& mask);

/// CausalEffect = H(base) − H(patched), elementwise.
/// The area under the ROC curve of `scores` [n] for binary `labels` [n] (1 =
/// positive): the Mann–Whitney U over n₊·n₋, ties counted half.
/// InvalidArgument unless both classes are present.
double auroc(const at::Tensor& scores, const at::Tensor& labels);

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
/// masked_logprob(model.forward(batch.tokens, batch.attention_mask), ...) with
/// the unembedding computed only at the positions that predict a target:
/// [batch], differentiable, hooks applied. With a large vocabulary this is
/// most of the cost of a teacher-forced pass saved.
at::Tensor target_logprob(Transformer& model, const TeacherForcedBatch& batch);

at::Tensor completion_logprob(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                              const std::vector<std::vector<int64_t>>& completions, int64_t batch_size = 16);

/// H = logp(harmful | prompt) − logp(neutral | prompt) of each triple: [n].
at::Tensor harm_score(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                      const std::vector<std::vector<int64_t>>& harmful,
                      const std::vector<std::vector<int64_t>>& neutral, int64_t batch_size = 16);

// ------------------------------------------------- batches, loss, perplexity --

/// One training sequence; `loss_mask[t]` = 1 where token t is a target
/// (predicted from the tokens before it). Empty: every token after the first.
struct LMExample {
  std::vector<int64_t> tokens;
  std::vector<uint8_t> loss_mask;
};

/// A left-padded batch.
struct LMBatch {
  at::Tensor tokens;          // [batch, pos] int64
  at::Tensor attention_mask;  // [batch, pos] 1 = token
  at::Tensor loss_mask;       // [batch, pos] 1 = target
};

/// Pads examples into a batch (InvalidArgument for an empty example or a
/// loss mask of the wrong length).
LMBatch make_lm_batch(const std::vector<LMExample>& examples, int64_t pad_id = 0);

/// Mean next-token cross-entropy over the batch's targets (differentiable
/// when grad mode is on and the weights require grad).
at::Tensor lm_loss(Transformer& model, const LMBatch& batch);

/// Perplexity exp(mean next-token NLL) over every predicted token of
/// `sequences` (each at least 2 tokens), in batches. `loss_masks` (one per
/// sequence, 1 = scored; the first token is never scored) restricts it, e.g.
/// to a reference solution after its prompt.
double perplexity(Transformer& model, const std::vector<std::vector<int64_t>>& sequences, int64_t batch_size = 8,
                  const std::vector<std::vector<uint8_t>>& loss_masks = {});

/// KL(reference ‖ edited) of the next-token distributions at each sequence's
/// last token: [n] float32. `reference_logits` are the unedited model's
/// last-position logits [n, vocab] (e.g. from last_logits() before the edit).
at::Tensor first_token_kl(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                          const at::Tensor& reference_logits, int64_t batch_size = 32);

/// The last-position logits of each prompt [n, vocab] float32 (left-padded
/// batches, with whatever hooks are active).
at::Tensor last_logits(Transformer& model, const std::vector<std::vector<int64_t>>& prompts, int64_t batch_size = 32);

}  // namespace scalpel
