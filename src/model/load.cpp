// SCALPEL_USES_TORCH
// Loading and saving the model: Hugging Face directories, GGUF files, random
// initialization from a config, named_parameters and save_pretrained.
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "model/impl.hpp"
#include "scalpel/io/gguf.hpp"
#include "scalpel/io/gguf_convert.hpp"
#include "scalpel/io/gguf_tokenizer.hpp"
#include "scalpel/io/hf_model.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "io/atomic_file.hpp"

namespace scalpel {

namespace {
void check_device(const std::string& device) {
  if (device != "cpu")
    throw Unsupported(detail::expected_got("device", "\"cpu\"", "\"" + device + "\"", "CUDA support is not built yet"));
}

// dtype as asked; "" takes the checkpoint's (float16 checkpoints run in float32 on CPU).
at::ScalarType parse_dtype(const std::string& dtype, const std::string& checkpoint_dtype) {
  const std::string want = dtype.empty() ? checkpoint_dtype : dtype;
  if (want == "bfloat16" || want == "bf16") return at::kBFloat16;
  if (dtype.empty() || want == "float32" || want == "float" || want == "fp32") return at::kFloat;
  throw InvalidArgument(detail::expected_got("dtype", "\"float32\" or \"bfloat16\"", "\"" + dtype + "\""));
}
}  // namespace

std::shared_ptr<Transformer> Transformer::from_gguf(const std::string& path, const std::string& dtype,
                                                    const std::string& device) {
  check_device(device);
  const at::ScalarType type = parse_dtype(dtype, "float32");
  GGUFFile file(path);
  HFConfig hf = HFConfig::from_json(gguf_hf_config_json(file), path + " (GGUF metadata)");
  const auto& spec = detail::find_architecture(hf);
  ModelConfig cfg = spec.make_config(hf);
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, t] : gguf_hf_state_dict(file, type)) weights.emplace(name, std::move(t));
  std::shared_ptr<Transformer> model(new Transformer(cfg, weights, type, /*release_copied_sources=*/false));
  weights.clear();
  model->impl_->config_json = hf.raw_json;
  model->impl_->source_gguf = path;
  if (file.contains("tokenizer.ggml.model")) model->tokenizer_ = std::make_shared<Tokenizer>(tokenizer_from_gguf(file));
  return model;
}

std::shared_ptr<Transformer> Transformer::from_pretrained(const std::string& directory, const std::string& dtype,
                                                          const std::string& device) {
  check_device(device);
  if (directory.size() > 5 && directory.compare(directory.size() - 5, 5, ".gguf") == 0) return from_gguf(directory, dtype, device);
  auto dir = HFModelDir::open(directory);
  const auto& spec = detail::find_architecture(dir.config());
  ModelConfig cfg = spec.make_config(dir.config());
  const at::ScalarType type = parse_dtype(dtype, dir.config().torch_dtype);
  std::map<std::string, at::Tensor> weights;
  for (const auto& k : dir.keys()) weights.emplace(k, dir.get(k));
  // The checkpoint's mappings are ours alone here, so copied weights may give their pages back.
  std::shared_ptr<Transformer> model(new Transformer(cfg, weights, type, /*release_copied_sources=*/true));
  model->impl_->config_json = dir.config().raw_json;
  model->impl_->source_dir = dir.files().directory;
  if (dir.has_tokenizer()) model->tokenizer_ = std::make_shared<Tokenizer>(dir.tokenizer());
  return model;
}

std::vector<std::pair<std::string, at::Tensor>> Transformer::named_parameters() const {
  if (!impl_->derived.empty())
    throw Unsupported(detail::expected_got(
        "named_parameters of a " + impl_->cfg.architecture + " model", "weights stored as the checkpoint stores them",
        std::to_string(impl_->derived.size()) + " re-laid out at load (e.g. " + impl_->derived.front() + ")",
        "parameters and export are supported for Llama, Mistral and Qwen2 layouts"));
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, slot] : impl_->named) out.emplace_back(name, *slot);
  return out;
}

std::vector<ResidualWriter> Transformer::residual_writers(int64_t from_layer) const {
  const int64_t L = impl_->cfg.n_layers;
  if (from_layer < 0 || from_layer >= L)
    throw InvalidArgument(detail::expected_got("residual_writers from_layer", "0.." + std::to_string(L - 1),
                                               std::to_string(from_layer)));
  auto& W = impl_->w;
  std::vector<ResidualWriter> out;
  auto add = [&](const at::Tensor* slot, const std::string& kind, int64_t layer) {
    if (!slot->defined()) return;
    std::string name = layer < 0 ? kind : "blocks." + std::to_string(layer) + "." + kind;  // TransformerLens names
    for (const auto& [hf, ptr] : impl_->named)
      if (ptr == slot) name = hf;
    out.push_back({name, kind, layer, *slot});
  };
  if (from_layer == 0) {
    add(&W.embed, "embed.W_E", -1);
    add(&W.pos_embed, "pos_embed.W_pos", -1);
  }
  for (int64_t l = from_layer; l < L; ++l) {
    auto& layer = W.layers[static_cast<size_t>(l)];
    add(&layer.wo, "attn.W_O", l);
    add(&layer.bo, "attn.b_O", l);
    add(&layer.w_out, "mlp.W_out", l);
    add(&layer.b_out, "mlp.b_out", l);
  }
  return out;
}

bool Transformer::tied_embeddings() const { return impl_->w.unembed.defined() && impl_->w.unembed.is_same(impl_->w.embed); }

bool Transformer::untie_embeddings() {
  auto& W = impl_->w;
  if (!W.unembed.defined() || !W.unembed.is_same(W.embed)) return false;
  W.unembed = W.embed.detach().clone();
  impl_->named.emplace_back("lm_head.weight", &W.unembed);
  return true;
}

void Transformer::save_pretrained(const std::string& directory, const std::string& dtype, bool overwrite) const {
  const auto params = named_parameters();
  if (impl_->config_json.empty())
    throw InvalidArgument(detail::expected_got("save_pretrained", "a model built from a Hugging Face config", "none known"));
  auto config = nlohmann::json::parse(impl_->config_json);
  const at::ScalarType type = dtype.empty() ? impl_->dtype : parse_dtype(dtype, "float32");
  config["torch_dtype"] = type == at::kBFloat16 ? "bfloat16" : "float32";
  const bool tied = impl_->w.unembed.is_same(impl_->w.embed);
  config["tie_word_embeddings"] = tied;
  write_directory_atomic(directory, overwrite, impl_->source_dir, [&](const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path out(dir);
    write_file_atomic((out / "config.json").string(), config.dump(2) + "\n");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, t] : params) tensors.emplace_back(name, t.detach().to(type));
    save_safetensors((out / "model.safetensors").string(), tensors, {{"format", "pt"}});
    if (!impl_->source_dir.empty()) {
      for (const char* f : {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                            "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja"}) {
        const fs::path src = fs::path(impl_->source_dir) / f;
        if (fs::exists(src)) fs::copy_file(src, out / f);
      }
    } else if (!impl_->source_gguf.empty()) {
      GGUFFile file(impl_->source_gguf);
      write_gguf_tokenizer_files(file, dir);
    }
  });
}

namespace {
// Shapes of the Llama-layout tensors by name, for random initialization.
std::vector<int64_t> llama_shape(const ModelConfig& c, const std::string& name) {
  auto ends = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  const int64_t d = c.d_model, q = c.n_heads * c.d_head, kv = c.n_kv_heads * c.d_head;
  if (ends("embed_tokens.weight") || ends("lm_head.weight")) return {c.d_vocab, d};
  if (ends("norm.weight") || ends("layernorm.weight")) return {d};
  if (ends("q_proj.weight")) return {q, d};
  if (ends("k_proj.weight") || ends("v_proj.weight")) return {kv, d};
  if (ends("o_proj.weight")) return {d, q};
  if (ends("q_proj.bias")) return {q};
  if (ends("k_proj.bias") || ends("v_proj.bias")) return {kv};
  if (ends("o_proj.bias") || ends("down_proj.bias")) return {d};
  if (ends("gate_proj.weight") || ends("up_proj.weight")) return {c.d_mlp, d};
  if (ends("gate_proj.bias") || ends("up_proj.bias")) return {c.d_mlp};
  if (ends("down_proj.weight")) return {d, c.d_mlp};
  throw Unsupported(detail::expected_got("random initialization of \"" + name + "\"", "a Llama-layout tensor", "unknown"));
}
}  // namespace

std::shared_ptr<Transformer> Transformer::from_config(const std::string& config_json, uint64_t seed, double init_std,
                                                      const std::string& dtype) {
  HFConfig hf = HFConfig::from_json(config_json, "config");
  const auto& spec = detail::find_architecture(hf);
  if (spec.name != "llama" && spec.name != "mistral" && spec.name != "qwen2")
    throw Unsupported(detail::expected_got("from_config architecture", "llama, mistral or qwen2", spec.name));
  ModelConfig cfg = spec.make_config(hf);
  const at::ScalarType type = parse_dtype(dtype, "float32");
  // Ask the architecture which tensors it reads, with the biases the config implies.
  std::map<std::string, at::Tensor> weights;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  detail::WeightSource probe{
      [&](const std::string& n) {
        auto shape = llama_shape(cfg, n);
        at::Tensor t;
        if (shape.size() == 1) t = (n.find("norm") != std::string::npos) ? at::ones(shape) : at::zeros(shape);
        else t = at::normal(0.0, init_std, shape, gen);
        weights[n] = t;
        return t;
      },
      [&](const std::string& n) {
        if (n == "lm_head.weight") return !cfg.tie_embeddings;
        const bool bias = n.size() > 5 && n.compare(n.size() - 5, 5, ".bias") == 0;
        if (!bias) return true;
        if (n.find("o_proj") != std::string::npos) return cfg.o_bias;
        if (n.find("_proj") != std::string::npos && n.find("mlp") != std::string::npos) return cfg.mlp_bias;
        return cfg.qkv_bias;
      }};
  spec.load_weights(cfg, probe);
  std::shared_ptr<Transformer> model(new Transformer(cfg, weights, type, false));
  model->impl_->config_json = hf.raw_json;
  return model;
}

}  // namespace scalpel
