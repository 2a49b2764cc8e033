// SCALPEL_USES_TORCH
// The tiny random Llama the intervention tests share (3 blocks, d = 32, 4 heads
// over 2 KV heads, vocabulary 50), seeded.
#pragma once

#include <memory>

#include "scalpel/model/transformer.hpp"

namespace scalpel::test {

inline std::shared_ptr<Transformer> tiny_llama(uint64_t seed = 7) {
  return Transformer::from_config(
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": false})",
      seed, 0.2);
}

}  // namespace scalpel::test
