// SCALPEL_USES_TORCH
// Qwen3: the Llama graph with an RMSNorm over each query and key head (QK-norm,
// before rotary), an explicit head_dim, no q/k/v biases, and a sliding window
// only when use_sliding_window says so.
#include "model/weights.hpp"

namespace scalpel::detail {

ArchSpec qwen3_arch() {
  auto config = [](const HFConfig& hf) {
    ModelConfig c = llama_config(hf, "qwen3");
    c.qk_norm = true;
    if (hf.get_bool("use_sliding_window", false) && hf.sliding_window && *hf.sliding_window > 0)
      c.sliding_window.assign(static_cast<size_t>(c.n_layers), *hf.sliding_window);
    return c;
  };
  auto weights = [](const ModelConfig& c, const WeightSource& w) {
    ModelWeights m = llama_weights(c, w);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
      m.layers[static_cast<size_t>(l)].q_ln.weight = w.get(p + "q_norm.weight");
      m.layers[static_cast<size_t>(l)].k_ln.weight = w.get(p + "k_norm.weight");
    }
    return m;
  };
  return {"qwen3", {"Qwen3ForCausalLM"}, config, weights};
}

}  // namespace scalpel::detail
