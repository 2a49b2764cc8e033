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

std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_continuation(const Tokenizer& tokenizer,
                                                                          const std::string& context_in,
                                                                          const std::string& continuation_in) {
  std::string context = context_in, continuation = continuation_in;
  const size_t keep = context.find_last_not_of(' ');
  const size_t cut = keep == std::string::npos ? 0 : keep + 1;
  continuation = context.substr(cut) + continuation;
  context.resize(cut);
  auto whole = tokenizer.encode(context + continuation);
  auto ctx = tokenizer.encode(context);
  size_t split = std::min(ctx.size(), whole.size());
  std::vector<int64_t> cont(whole.begin() + static_cast<std::ptrdiff_t>(split), whole.end());
  whole.resize(split);
  if (cont.empty())
    throw InvalidArgument(detail::expected_got("continuation \"" + continuation_in + "\" of \"" + context_in + "\"",
                                               "at least one token", "none"));
  return {whole, cont};
}

}  // namespace scalpel
