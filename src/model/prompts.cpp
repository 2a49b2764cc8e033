// SCALPEL_USES_TORCH
// The prompt functions for a model, and greedy completion (scalpel/model/prompts.hpp).
#include "scalpel/model/prompts.hpp"

#include "model/prompts_detail.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "scalpel/model/transformer.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace detail {
const Tokenizer& tokenizer_of(const Transformer& model, const char* what) {
  if (!model.has_tokenizer())
    throw InvalidArgument(detail::expected_got(std::string(what) + " model", "a model with a tokenizer", "none",
                                               "load a model directory with tokenizer.json"));
  return model.tokenizer();
}
}  // namespace detail

PromptFormat chat_formatter(const Transformer& model) { return chat_formatter(detail::tokenizer_of(model, "chat_formatter")); }

std::vector<int64_t> encode_formatted(const Transformer& model, const std::string& text, const PromptFormat& fmt) {
  return encode_formatted(detail::tokenizer_of(model, "encode_formatted"), text, fmt);
}

std::vector<std::vector<int64_t>> encode_prompts(const Transformer& model, const std::vector<std::string>& prompts,
                                                 const PromptFormat& fmt) {
  return encode_prompts(detail::tokenizer_of(model, "encode_prompts"), prompts, fmt);
}

std::vector<int64_t> post_instruction_positions(const Transformer& model, const PromptFormat& fmt,
                                                const std::string& probe) {
  return post_instruction_positions(detail::tokenizer_of(model, "post_instruction_positions"), fmt, probe);
}

std::vector<std::string> complete(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                                  int64_t max_new_tokens) {
  const Tokenizer& tok = detail::tokenizer_of(model, "complete");
  GenerateOptions opts;
  opts.max_new_tokens = max_new_tokens;
  opts.stop_tokens = default_stop_tokens(tok);
  auto res = model.generate(prompts, opts);
  std::vector<std::string> out;
  for (const auto& t : res.new_tokens) out.push_back(tok.decode(t, /*skip_special_tokens=*/true));
  return out;
}

namespace detail {
PromptFormat resolve_format(const Transformer& model, const std::optional<PromptFormat>& fmt) {
  return fmt ? *fmt : chat_formatter(model);
}
}  // namespace detail

}  // namespace scalpel
