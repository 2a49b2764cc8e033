// SCALPEL_USES_TORCH
// Phi-3: the Llama graph with fused projections — qkv_proj holds q, k and v
// stacked by rows, gate_up_proj the gate then the up projection — split at load
// into scalpel's slots (views, no copy). Sliding window as Mistral. LongRoPE
// scaling (the 128k checkpoints) is refused by ModelConfig::validate.
#include "model/weights.hpp"
#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel::detail {

ArchSpec phi3_arch() {
  auto config = [](const HFConfig& hf) {
    ModelConfig c = llama_config(hf, "phi3");
    if (hf.sliding_window && *hf.sliding_window > 0)
      c.sliding_window.assign(static_cast<size_t>(c.n_layers), *hf.sliding_window);
    return c;
  };
  auto weights = [](const ModelConfig& c, const WeightSource& w) {
    ModelWeights m;
    m.embed = w.get("model.embed_tokens.weight");
    const int64_t q = c.n_heads * c.d_head, kv = c.n_kv_heads * c.d_head;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights L;
      L.ln1.weight = w.get(p + "input_layernorm.weight");
      L.ln2.weight = w.get(p + "post_attention_layernorm.weight");
      const at::Tensor qkv = w.get(p + "self_attn.qkv_proj.weight");  // [q + 2 kv, d_model]
      if (qkv.dim() != 2 || qkv.size(0) != q + 2 * kv)
        throw FormatError(expected_got(p + "self_attn.qkv_proj.weight", "[" + std::to_string(q + 2 * kv) + ", d_model]",
                                       c10::str(qkv.sizes())));
      L.wq = qkv.narrow(0, 0, q);
      L.wk = qkv.narrow(0, q, kv);
      L.wv = qkv.narrow(0, q + kv, kv);
      L.wo = w.get(p + "self_attn.o_proj.weight");
      const at::Tensor gate_up = w.get(p + "mlp.gate_up_proj.weight");  // [2 d_mlp, d_model]
      if (gate_up.dim() != 2 || gate_up.size(0) != 2 * c.d_mlp)
        throw FormatError(expected_got(p + "mlp.gate_up_proj.weight", "[" + std::to_string(2 * c.d_mlp) + ", d_model]",
                                       c10::str(gate_up.sizes())));
      L.w_gate = gate_up.narrow(0, 0, c.d_mlp);
      L.w_in = gate_up.narrow(0, c.d_mlp, c.d_mlp);
      L.w_out = w.get(p + "mlp.down_proj.weight");
      m.layers.push_back(std::move(L));
    }
    m.ln_final.weight = w.get("model.norm.weight");
    m.unembed = c.tie_embeddings && !w.has("lm_head.weight") ? m.embed : w.get("lm_head.weight");
    return m;
  };
  return {"phi3", {"Phi3ForCausalLM"}, config, weights};
}

}  // namespace scalpel::detail
