// scalpel/eval/loglikelihood.hpp — the log-likelihood engine: the three
// request types of lm-evaluation-harness (loglikelihood, loglikelihood_rolling,
// generate_until), answered as lm-eval's own `hf` backend answers them (same
// tokens, same numbers) but with each distinct context run once and its keys
// and values shared by every continuation of it, and the unembedding computed
// only at the positions whose log-probabilities are asked for. Whatever hooks
// or interventions are attached to the model apply.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/io/prompts.hpp"

namespace scalpel {

class Tokenizer;
class Transformer;

struct LoglikelihoodOptions {
  /// Rows per forward pass: distinct contexts in the context pass,
  /// continuations in the continuation pass.
  int64_t batch_size = 16;
  /// At most this many context tokens per pass (rows × the longest row),
  /// whatever batch_size says: on CPU, passes over long rows run faster in
  /// fewer rows (activations that fit the caches). 0: no limit.
  int64_t max_batch_tokens = 4096;
  /// The longest input (tokens); longer context + continuation is cut from
  /// the left as lm-eval cuts it. 0: the model's n_ctx, else 2048 (lm-eval's
  /// default).
  int64_t max_length = 0;
  /// Run each distinct context once and continue its keys and values for
  /// every continuation (true), or run context + continuation as one
  /// sequence per request (false; for hooks that must see whole sequences,
  /// e.g. a patch of a fixed [batch, pos] activation). Same numbers either way.
  bool share_context = true;
  /// Report progress through the logger's progress callback.
  bool progress = true;
};

/// A request as token ids: the log-probability of `continuation` after
/// `context` (context non-empty: an empty text context is the prefix token,
/// see encode_request).
struct TokenRequest {
  std::vector<int64_t> context;
  std::vector<int64_t> continuation;
};

struct LoglikelihoodResult {
  double logprob = 0;      ///< sum of the continuation tokens' log-probabilities
  bool is_greedy = false;  ///< every continuation token is the argmax of its position
};

/// A text request as lm-eval's causal models encode it: an empty context
/// becomes the prefix token (prefix_token_id, scalpel/io/prompts.hpp) (or the continuation's own first token when that
/// is the prefix token), else encode_continuation's split.
TokenRequest encode_request(const Tokenizer& tokenizer, const std::string& context, const std::string& continuation);

/// The engine: one result per request, in order. Deterministic for a given
/// batch size.
std::vector<LoglikelihoodResult> loglikelihood_tokens(Transformer& model, const std::vector<TokenRequest>& requests,
                                                      const LoglikelihoodOptions& options = {});

/// Text (context, continuation) requests, encoded with encode_request.
std::vector<LoglikelihoodResult> loglikelihood(Transformer& model, const Tokenizer& tokenizer,
                                               const std::vector<std::pair<std::string, std::string>>& requests,
                                               const LoglikelihoodOptions& options = {});

/// The windows of a whole-document likelihood over `tokens`: every token
/// predicted once, the first after the prefix token, each window at most
/// max_length tokens long and conditioned on as many earlier tokens as fit
/// (lm-eval's rolling windows with context_len 1, made disjoint).
std::vector<TokenRequest> rolling_windows(const std::vector<int64_t>& tokens, int64_t prefix_token, int64_t max_length);

/// The log-likelihood of each whole text (encoded with the tokenizer's
/// special tokens, as lm-eval encodes it) summed over its rolling windows.
std::vector<double> loglikelihood_rolling(Transformer& model, const Tokenizer& tokenizer,
                                          const std::vector<std::string>& texts,
                                          const LoglikelihoodOptions& options = {});

struct GenerateUntilOptions {
  /// Generation of a row stops once its text contains one of these; the
  /// returned text is cut before the first. The EOS token's text is added
  /// (as lm-eval adds it); a row also stops at the EOS and end-of-turn ids
  /// (default_stop_tokens).
  std::vector<std::string> until;
  int64_t max_gen_toks = 256;
  /// Rows per generation batch.
  int64_t batch_size = 16;
  /// 0: the model's n_ctx, else 2048; a context longer than max_length -
  /// max_gen_toks keeps its last tokens, as lm-eval does.
  int64_t max_length = 0;
  bool progress = true;
};

/// Greedy continuations of each context (encoded with special tokens, as
/// lm-eval encodes it), stopped at EOS or a stop string and cut before the
/// first stop string.
std::vector<std::string> generate_until(Transformer& model, const Tokenizer& tokenizer,
                                        const std::vector<std::string>& contexts,
                                        const GenerateUntilOptions& options = {});

}  // namespace scalpel
