// scalpel/io/prompts.hpp — how a request becomes the ids a model reads: the
// one chat wrapper (a user turn in the tokenizer's chat template), encoding
// with or without the tokenizer's special tokens, the post-instruction
// positions, and the tokens where a chat answer stops. Torch-free; each
// function has a model overload in scalpel/model/prompts.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace scalpel {

class Tokenizer;

/// How a request becomes the text the model reads. `apply` maps the request to
/// the prompt text (empty = the request itself). `templated`: the text carries
/// the template's own special tokens (BOS included), so it is encoded without
/// adding the tokenizer's; otherwise the tokenizer's special tokens are added.
struct PromptFormat {
  std::function<std::string(const std::string&)> apply;
  bool templated = false;
  std::string operator()(const std::string& request) const { return apply ? apply(request) : request; }
};

/// One user turn in the tokenizer's chat template with the generation prompt
/// (templated), or the plain request (BOS added) when it has no template.
PromptFormat chat_formatter(const Tokenizer& tokenizer);

/// The ids of a text `fmt` produced (special tokens added unless fmt.templated).
std::vector<int64_t> encode_formatted(const Tokenizer& tokenizer, const std::string& text, const PromptFormat& fmt);

/// Each request formatted by `fmt` and encoded as the model will see it.
std::vector<std::vector<int64_t>> encode_prompts(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                                                 const PromptFormat& fmt);

/// The positions (negative, from the end) of the template's tokens after the
/// instruction (Arditi et al.'s post-instruction tokens); at least {-1}.
std::vector<int64_t> post_instruction_positions(const Tokenizer& tokenizer, const PromptFormat& fmt,
                                                const std::string& probe = "Tell me a story about a dog.");

/// EOS and the end-of-turn tokens (<end_of_turn>, <|im_end|>, <|eot_id|>,
/// <|end|>) the vocabulary has: where a chat answer stops.
std::vector<int64_t> default_stop_tokens(const Tokenizer& tokenizer);

/// The token a model conditions on when a context is empty and the first
/// token of every rolling window: BOS when the tokenizer has one, else EOS
/// (lm-evaluation-harness's prefix_token_id). InvalidArgument when it has
/// neither.
int64_t prefix_token_id(const Tokenizer& tokenizer);

/// Text to ids as lm-evaluation-harness encodes a prompt or document: with
/// the tokenizer's special tokens (e.g. BOS), unless the text already starts
/// with the prefix token's text (BOS, else EOS).
std::vector<int64_t> encode_text(const Tokenizer& tokenizer, const std::string& text);

/// A (context, continuation) pair as token ids, split the way
/// lm-evaluation-harness splits it: trailing whitespace of the context (as
/// Python's rstrip() finds it) moves to the front of the continuation; the
/// context is encode_text(context) and the continuation is the part of
/// encode_text(context + continuation) after as many tokens, so the
/// continuation's tokens are the ones the model would see.
/// InvalidArgument when the continuation adds no token.
std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_continuation(const Tokenizer& tokenizer,
                                                                          const std::string& context,
                                                                          const std::string& continuation);

}  // namespace scalpel
