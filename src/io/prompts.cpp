// Prompt formats and encoding (scalpel/io/prompts.hpp). Torch-free.
#include "scalpel/io/prompts.hpp"

#include <algorithm>

#include "scalpel/errors.hpp"
#include "scalpel/io/chat_template.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "util/messages.hpp"

namespace scalpel {

PromptFormat chat_formatter(const Tokenizer& tok) {
  if (!tok.has_chat_template()) return PromptFormat{};
  PromptFormat f;
  f.apply = [tok](const std::string& text) { return tok.apply_chat_template({ChatMessage{"user", text}}, true); };
  f.templated = true;
  return f;
}

std::vector<int64_t> encode_formatted(const Tokenizer& tok, const std::string& text, const PromptFormat& fmt) {
  return tok.encode(text, !fmt.templated);
}

std::vector<std::vector<int64_t>> encode_prompts(const Tokenizer& tok, const std::vector<std::string>& prompts,
                                                 const PromptFormat& fmt) {
  std::vector<std::vector<int64_t>> out;
  out.reserve(prompts.size());
  for (const auto& p : prompts) out.push_back(encode_formatted(tok, fmt(p), fmt));
  return out;
}

std::vector<int64_t> post_instruction_positions(const Tokenizer& tok, const PromptFormat& fmt, const std::string& probe) {
  const std::string full = fmt(probe);
  const size_t at = full.rfind(probe);
  if (at == std::string::npos)
    throw InvalidArgument(detail::expected_got("post_instruction_positions", "a format whose output contains the request",
                                               "\"" + full + "\""));
  const auto n = static_cast<int64_t>(encode_formatted(tok, full, fmt).size()) -
                 static_cast<int64_t>(encode_formatted(tok, full.substr(0, at + probe.size()), fmt).size());
  std::vector<int64_t> out;
  for (int64_t i = -std::max<int64_t>(n, 1); i < 0; ++i) out.push_back(i);
  return out;
}

std::vector<int64_t> default_stop_tokens(const Tokenizer& tokenizer) {
  std::vector<int64_t> ids;
  if (auto eos = tokenizer.eos_token_id()) ids.push_back(*eos);
  for (const char* t : {"<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>"})
    if (auto i = tokenizer.token_to_id(t); i && std::find(ids.begin(), ids.end(), *i) == ids.end()) ids.push_back(*i);
  return ids;
}

}  // namespace scalpel
