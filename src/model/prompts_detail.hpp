// Private: the model's tokenizer for a prompt function (InvalidArgument naming
// it when the model has none), and the default prompt format.
#pragma once

#include <optional>

#include "scalpel/model/prompts.hpp"

namespace scalpel {
class Tokenizer;
namespace detail {

const Tokenizer& tokenizer_of(const Transformer& model, const char* what);

/// `fmt`, or the model's chat template when none is given.
PromptFormat resolve_format(const Transformer& model, const std::optional<PromptFormat>& fmt);

}  // namespace detail
}  // namespace scalpel
