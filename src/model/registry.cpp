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
ArchSpec gpt2_arch();
ArchSpec gpt_neox_arch();
ArchSpec gemma_arch();
ArchSpec gemma2_arch();

const std::vector<ArchSpec>& architectures() {
  static const std::vector<ArchSpec> table = {llama_arch(),   mistral_arch(), qwen2_arch(), gpt2_arch(),
                                             gpt_neox_arch(), gemma_arch(),   gemma2_arch()};
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

}  // namespace scalpel::detail

namespace scalpel {
std::vector<std::string> supported_architectures() {
  std::vector<std::string> out;
  for (const auto& a : detail::architectures())
    for (const auto& h : a.hf_architectures) out.push_back(h);
  return out;
}
}  // namespace scalpel
