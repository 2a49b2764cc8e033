// Prompt formats and encoding (scalpel/io/prompts.hpp). Torch-free.
#include "scalpel/io/prompts.hpp"

#include <algorithm>

#include "scalpel/errors.hpp"
#include "scalpel/io/chat_template.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "io/unicode.hpp"
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

namespace {
// Where Python's str.rstrip() would cut `s`: after its last character that
// is not whitespace (Unicode White_Space, plus U+001C..U+001F, which Python
// counts as whitespace too).
size_t rstrip_end(const std::string& s) {
  auto space = [](char32_t c) { return unicode::is_white_space(c) || (c >= 0x1C && c <= 0x1F); };
  if (unicode::find_invalid_utf8(s) != unicode::npos) {
    size_t end = s.size();
    while (end > 0 && static_cast<unsigned char>(s[end - 1]) < 0x80 && space(static_cast<unsigned char>(s[end - 1]))) --end;
    return end;
  }
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = unicode::next_code_point(s, i);
    if (!space(c)) end = i;
  }
  return end;
}
}  // namespace

int64_t prefix_token_id(const Tokenizer& tokenizer) {
  if (auto bos = tokenizer.bos_token_id()) return *bos;
  if (auto eos = tokenizer.eos_token_id()) return *eos;
  throw InvalidArgument(detail::expected_got("tokenizer prefix token", "a BOS or EOS token", "neither",
                                             "an empty context and rolling windows condition on one"));
}

std::vector<int64_t> encode_text(const Tokenizer& tokenizer, const std::string& text) {
  std::string prefix;
  if (tokenizer.bos_token_id() || tokenizer.eos_token_id()) prefix = tokenizer.decode({prefix_token_id(tokenizer)});
  const bool has_prefix = !prefix.empty() && text.compare(0, prefix.size(), prefix) == 0;
  return tokenizer.encode(text, /*add_special_tokens=*/!has_prefix);
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_continuation(const Tokenizer& tokenizer,
                                                                          const std::string& context_in,
                                                                          const std::string& continuation_in) {
  const size_t cut = rstrip_end(context_in);
  const std::string context = context_in.substr(0, cut);
  const std::string continuation = context_in.substr(cut) + continuation_in;
  auto whole = encode_text(tokenizer, context + continuation);
  auto ctx = encode_text(tokenizer, context);
  std::vector<int64_t> cont;
  if (whole.size() > ctx.size()) cont.assign(whole.begin() + static_cast<std::ptrdiff_t>(ctx.size()), whole.end());
  if (cont.empty())
    throw InvalidArgument(detail::expected_got("continuation \"" + continuation_in + "\" of \"" + context_in + "\"",
                                               "at least one token", "none"));
  return {ctx, cont};
}

}  // namespace scalpel
