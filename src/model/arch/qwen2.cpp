// SCALPEL_USES_TORCH
// Qwen2: the Llama graph with biases on q/k/v, and a sliding window only when
// use_sliding_window says so.
#include "model/weights.hpp"

namespace scalpel::detail {

ArchSpec qwen2_arch() {
  auto config = [](const HFConfig& hf) {
    ModelConfig c = llama_config(hf, "qwen2");
    c.qkv_bias = true;
    if (hf.get_bool("use_sliding_window", false) && hf.sliding_window && *hf.sliding_window > 0)
      c.sliding_window.assign(static_cast<size_t>(c.n_layers), *hf.sliding_window);
    return c;
  };
  return {"qwen2", {"Qwen2ForCausalLM"}, config, llama_weights};
}

}  // namespace scalpel::detail
