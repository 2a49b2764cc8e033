// Private: checks and batching shared by the functions that run prompt sets
// through a model (eval/, steer/).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace scalpel::detail {

/// "[2, 3]", or "an undefined tensor".
std::string shape_of(const at::Tensor& t);

/// InvalidArgument unless there is at least one prompt and each has min_len tokens.
void check_prompts(const std::vector<std::vector<int64_t>>& prompts, const char* what, size_t min_len = 1);

/// Left-padded batch of prompts [begin, end) (mask undefined when no padding is needed).
std::pair<at::Tensor, at::Tensor> left_padded(const std::vector<std::vector<int64_t>>& prompts, size_t begin, size_t end);

/// The mean logit refusal score of last-position logits [n, vocab].
double mean_refusal_score(const at::Tensor& last, const std::vector<int64_t>& tokens);

}  // namespace scalpel::detail
