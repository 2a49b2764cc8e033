// scalpel/model/prompts.hpp — the prompt functions of scalpel/io/prompts.hpp
// for a model (its tokenizer; InvalidArgument for a model without one), and
// greedy completion: the one place a prompt set is answered.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "scalpel/io/prompts.hpp"

namespace scalpel {

class Transformer;

PromptFormat chat_formatter(const Transformer& model);
std::vector<int64_t> encode_formatted(const Transformer& model, const std::string& text, const PromptFormat& fmt);
std::vector<std::vector<int64_t>> encode_prompts(const Transformer& model, const std::vector<std::string>& prompts,
                                                 const PromptFormat& fmt);
std::vector<int64_t> post_instruction_positions(const Transformer& model, const PromptFormat& fmt,
                                                const std::string& probe = "Tell me a story about a dog.");

/// Greedy completions of token prompts, decoded without special tokens,
/// stopping at default_stop_tokens (with whatever hooks are active).
std::vector<std::string> complete(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                                  int64_t max_new_tokens = 24);

}  // namespace scalpel
