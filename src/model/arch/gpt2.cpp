// SCALPEL_USES_TORCH
// GPT-2: learned positions, LayerNorm, GELU (tanh), biases everywhere, and
// Conv1D weights stored [in, out] (transposed here to [out, in]).
#include "model/weights.hpp"

namespace scalpel::detail {
namespace {

ModelConfig gpt2_config(const HFConfig& hf) {
  ModelConfig c = base_config(hf, "gpt2");
  c.norm = NormKind::LayerNorm;
  c.gated_mlp = false;
  const std::string act = hf.hidden_act.empty() ? "gelu_new" : hf.hidden_act;
  c.act = act == "relu" ? Activation::ReLU : act == "gelu" ? Activation::GELU : Activation::GELUTanh;
  c.positions = PositionKind::Learned;
  c.qkv_bias = c.o_bias = c.mlp_bias = true;
  c.d_mlp = hf.intermediate_size > 0 ? hf.intermediate_size : 4 * hf.hidden_size;
  return c;
}

ModelWeights gpt2_weights(const ModelConfig& c, const WeightSource& w) {
  // Files saved by GPT2LMHeadModel prefix names with "transformer."; GPT2Model files do not.
  const std::string root = w.has("transformer.wte.weight") ? "transformer." : "";
  ModelWeights m;
  m.embed = w.get(root + "wte.weight");
  m.pos_embed = w.get(root + "wpe.weight");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = root + "h." + std::to_string(l) + ".";
    LayerWeights L;
    L.ln1 = {w.get(p + "ln_1.weight"), w.get(p + "ln_1.bias")};
    L.ln2 = {w.get(p + "ln_2.weight"), w.get(p + "ln_2.bias")};
    auto qkv = w.get(p + "attn.c_attn.weight").t();  // [3 d_model, d_model]
    auto qkv_b = w.get(p + "attn.c_attn.bias");
    auto parts = qkv.chunk(3, 0);
    auto parts_b = qkv_b.chunk(3, 0);
    L.wq = parts[0], L.wk = parts[1], L.wv = parts[2];
    L.bq = parts_b[0], L.bk = parts_b[1], L.bv = parts_b[2];
    L.wo = w.get(p + "attn.c_proj.weight").t();
    L.bo = w.get(p + "attn.c_proj.bias");
    L.w_in = w.get(p + "mlp.c_fc.weight").t();
    L.b_in = w.get(p + "mlp.c_fc.bias");
    L.w_out = w.get(p + "mlp.c_proj.weight").t();
    L.b_out = w.get(p + "mlp.c_proj.bias");
    m.layers.push_back(std::move(L));
  }
  m.ln_final = {w.get(root + "ln_f.weight"), w.get(root + "ln_f.bias")};
  m.unembed = w.has("lm_head.weight") ? w.get("lm_head.weight") : m.embed;
  return m;
}

}  // namespace

ArchSpec gpt2_arch() { return {"gpt2", {"GPT2LMHeadModel"}, gpt2_config, gpt2_weights}; }

}  // namespace scalpel::detail
