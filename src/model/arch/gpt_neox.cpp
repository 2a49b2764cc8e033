// SCALPEL_USES_TORCH
// GPT-NeoX / Pythia: parallel residual, partial rotary, LayerNorm, GELU, and a
// fused query_key_value weight laid out per head as [head, (q, k, v), d_head].
#include "model/weights.hpp"

namespace scalpel::detail {
namespace {

ModelConfig neox_config(const HFConfig& hf) {
  ModelConfig c = base_config(hf, "gpt_neox");
  c.norm = NormKind::LayerNorm;
  c.gated_mlp = false;
  const std::string act = hf.hidden_act.empty() ? "gelu" : hf.hidden_act;
  c.act = act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast" ? Activation::GELUTanh
          : act == "relu"                                                      ? Activation::ReLU
                                                                               : Activation::GELU;
  c.parallel_residual = hf.get_bool("use_parallel_residual", true);
  c.qkv_bias = hf.get_bool("attention_bias", true);
  c.o_bias = c.qkv_bias;
  c.mlp_bias = true;
  return c;
}

ModelWeights neox_weights(const ModelConfig& c, const WeightSource& w) {
  ModelWeights m;
  m.embed = w.get("gpt_neox.embed_in.weight");
  const int64_t H = c.n_heads, D = c.d_head;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.ln1 = {w.get(p + "input_layernorm.weight"), w.get(p + "input_layernorm.bias")};
    L.ln2 = {w.get(p + "post_attention_layernorm.weight"), w.get(p + "post_attention_layernorm.bias")};
    auto qkv = w.get(p + "attention.query_key_value.weight").view({H, 3, D, c.d_model});
    L.wq = qkv.select(1, 0).reshape({H * D, c.d_model});
    L.wk = qkv.select(1, 1).reshape({H * D, c.d_model});
    L.wv = qkv.select(1, 2).reshape({H * D, c.d_model});
    if (w.has(p + "attention.query_key_value.bias")) {
      auto b = w.get(p + "attention.query_key_value.bias").view({H, 3, D});
      L.bq = b.select(1, 0).reshape({H * D});
      L.bk = b.select(1, 1).reshape({H * D});
      L.bv = b.select(1, 2).reshape({H * D});
    }
    L.wo = w.get(p + "attention.dense.weight");
    L.bo = w.opt(p + "attention.dense.bias");
    L.w_in = w.get(p + "mlp.dense_h_to_4h.weight");
    L.b_in = w.opt(p + "mlp.dense_h_to_4h.bias");
    L.w_out = w.get(p + "mlp.dense_4h_to_h.weight");
    L.b_out = w.opt(p + "mlp.dense_4h_to_h.bias");
    m.layers.push_back(std::move(L));
  }
  m.ln_final = {w.get("gpt_neox.final_layer_norm.weight"), w.get("gpt_neox.final_layer_norm.bias")};
  m.unembed = w.get("embed_out.weight");
  return m;
}

}  // namespace

ArchSpec gpt_neox_arch() { return {"gpt_neox", {"GPTNeoXForCausalLM"}, neox_config, neox_weights}; }

}  // namespace scalpel::detail
