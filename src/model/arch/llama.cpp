// SCALPEL_USES_TORCH
// Llama (incl. Llama-3 rope scaling), Mistral and Qwen2 (qkv bias): the same
// graph — RMSNorm, rotary attention with grouped-query heads, SwiGLU MLP.
#include "model/weights.hpp"

namespace scalpel::detail {
namespace {

ModelConfig llama_config(const HFConfig& hf, const std::string& name) {
  ModelConfig c = base_config(hf, name);
  c.norm = NormKind::RMSNorm;
  c.gated_mlp = true;
  c.act = Activation::SiLU;
  c.positions = PositionKind::Rotary;
  c.qkv_bias = hf.attention_bias || name == "qwen2";
  c.o_bias = hf.attention_bias;
  c.mlp_bias = hf.mlp_bias;
  // Mistral attends within a sliding window on every layer; Qwen2 only when use_sliding_window says so.
  const bool sliding = name == "mistral" || (name == "qwen2" && hf.get_bool("use_sliding_window", false));
  if (sliding && hf.sliding_window && *hf.sliding_window > 0)
    c.sliding_window.assign(static_cast<size_t>(c.n_layers), *hf.sliding_window);
  return c;
}

ModelWeights llama_weights(const ModelConfig& c, const WeightSource& w) {
  ModelWeights m;
  m.embed = w.get("model.embed_tokens.weight");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.ln1.weight = w.get(p + "input_layernorm.weight");
    L.ln2.weight = w.get(p + "post_attention_layernorm.weight");
    read_llama_style_projections(w, p, L);
    m.layers.push_back(std::move(L));
  }
  m.ln_final.weight = w.get("model.norm.weight");
  m.unembed = w.get("lm_head.weight");
  return m;
}

}  // namespace

ArchSpec llama_arch() {
  return {"llama", {"LlamaForCausalLM"}, [](const HFConfig& hf) { return llama_config(hf, "llama"); }, llama_weights};
}
ArchSpec mistral_arch() {
  return {"mistral", {"MistralForCausalLM"}, [](const HFConfig& hf) { return llama_config(hf, "mistral"); },
          llama_weights};
}
ArchSpec qwen2_arch() {
  return {"qwen2", {"Qwen2ForCausalLM"}, [](const HFConfig& hf) { return llama_config(hf, "qwen2"); }, llama_weights};
}

}  // namespace scalpel::detail
