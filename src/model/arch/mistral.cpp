// SCALPEL_USES_TORCH
// Mistral: the Llama graph with sliding-window attention on every layer.
#include "model/weights.hpp"

namespace scalpel::detail {

ArchSpec mistral_arch() {
  auto config = [](const HFConfig& hf) {
    ModelConfig c = llama_config(hf, "mistral");
    if (hf.sliding_window && *hf.sliding_window > 0)
      c.sliding_window.assign(static_cast<size_t>(c.n_layers), *hf.sliding_window);
    return c;
  };
  return {"mistral", {"MistralForCausalLM"}, config, llama_weights};
}

}  // namespace scalpel::detail
