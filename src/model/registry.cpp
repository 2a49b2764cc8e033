// SCALPEL_USES_TORCH
// The architecture registry: adding an architecture is one file in arch/ and
// one line here.
#include "model/weights.hpp"

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel::detail {

ArchSpec llama_arch();
ArchSpec mistral_arch();
ArchSpec qwen2_arch();
ArchSpec qwen3_arch();
ArchSpec phi3_arch();
ArchSpec gpt2_arch();
ArchSpec gpt_neox_arch();
ArchSpec gemma_arch();
ArchSpec gemma2_arch();
ArchSpec gemma3_arch();

const std::vector<ArchSpec>& architectures() {
  static const std::vector<ArchSpec> table = {llama_arch(), mistral_arch(),  qwen2_arch(),  qwen3_arch(),
                                             phi3_arch(),  gpt2_arch(),     gpt_neox_arch(), gemma_arch(),
                                             gemma2_arch(), gemma3_arch()};
  return table;
}

const ArchSpec& find_architecture(const HFConfig& config) {
  std::vector<std::string> names;
  for (const auto& a : architectures()) {
    for (const auto& h : a.hf_architectures) {
      if (h == config.architecture) return a;
      names.push_back(h);
    }
  }
  for (const auto& a : architectures())
    if (config.architecture.empty() && a.name == config.model_type) return a;
  throw Unsupported(expected_got(config.source + ": architecture", "one of " + join_names(names, true, 100),
                                 "\"" + (config.architecture.empty() ? config.model_type : config.architecture) + "\""));
}

ModelConfig base_config(const HFConfig& hf, const std::string& name) {
  ModelConfig c;
  c.architecture = name;
  c.n_layers = hf.num_hidden_layers;
  c.d_model = hf.hidden_size;
  c.n_heads = hf.num_attention_heads;
  c.n_kv_heads = hf.num_key_value_heads;
  c.d_head = hf.head_dim;
  c.d_mlp = hf.intermediate_size > 0 ? hf.intermediate_size : 4 * hf.hidden_size;
  c.d_vocab = hf.vocab_size;
  c.n_ctx = hf.max_position_embeddings;
  c.norm_eps = hf.norm_eps;
  c.rope_theta = hf.rope_theta;
  c.rotary_dim = static_cast<int64_t>(hf.head_dim * hf.partial_rotary_factor);
  c.rope_scaling = hf.rope_scaling;
  c.tie_embeddings = hf.tie_word_embeddings;
  return c;
}

void read_llama_style_projections(const WeightSource& w, const std::string& p, LayerWeights& L) {
  L.wq = w.get(p + "self_attn.q_proj.weight");
  L.wk = w.get(p + "self_attn.k_proj.weight");
  L.wv = w.get(p + "self_attn.v_proj.weight");
  L.wo = w.get(p + "self_attn.o_proj.weight");
  L.bq = w.opt(p + "self_attn.q_proj.bias");
  L.bk = w.opt(p + "self_attn.k_proj.bias");
  L.bv = w.opt(p + "self_attn.v_proj.bias");
  L.bo = w.opt(p + "self_attn.o_proj.bias");
  L.w_gate = w.get(p + "mlp.gate_proj.weight");
  L.w_in = w.get(p + "mlp.up_proj.weight");
  L.w_out = w.get(p + "mlp.down_proj.weight");
  L.b_gate = w.opt(p + "mlp.gate_proj.bias");
  L.b_in = w.opt(p + "mlp.up_proj.bias");
  L.b_out = w.opt(p + "mlp.down_proj.bias");
}

}  // namespace scalpel::detail

namespace scalpel {
std::vector<std::string> supported_architectures() {
  std::vector<std::string> out;
  for (const auto& a : detail::architectures())
    for (const auto& h : a.hf_architectures) out.push_back(h);
  return out;
}
}  // namespace scalpel
