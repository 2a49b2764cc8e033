// SCALPEL_USES_TORCH
// The tiny random Llama the intervention tests share (3 blocks, d = 32, 4 heads
// over 2 KV heads, vocabulary 50), seeded.
#pragma once

#include <memory>

#include <torch/torch.h>

#include "scalpel/model/transformer.hpp"
#include "scalpel/steer/breaker.hpp"

namespace scalpel::test {

inline std::shared_ptr<Transformer> tiny_llama(uint64_t seed = 7) {
  return Transformer::from_config(
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": false})",
      seed, 0.2);
}

/// Six random 5-token prompts (seed 3) for tiny_llama, each with a one-token harmful completion
/// (1 + i) and a neutral one (20 + i), and a preserve sequence per prompt.
inline BreakerData tiny_harm_data() {
  torch::manual_seed(3);
  BreakerData data;
  for (int i = 0; i < 6; ++i) {
    auto p = torch::randint(1, 50, {5}, torch::TensorOptions().dtype(torch::kLong));
    data.prompts.push_back(std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + 5));
    data.harmful.push_back({1 + i});
    data.neutral.push_back({20 + i});
    data.preserve.push_back({3, 4, 5, 6, 7, 8});
  }
  return data;
}

}  // namespace scalpel::test
