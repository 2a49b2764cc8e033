// SCALPEL_USES_TORCH
// GGUF -> Hugging Face: config.json, tensor names, the weights with llama.cpp's
// conversion undone, and a whole directory (convert_gguf).
#include "scalpel/io/gguf_convert.hpp"

#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "io/mapped_pages.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/io/gguf.hpp"
#include "scalpel/io/gguf_tokenizer.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/log.hpp"
#include "io/atomic_file.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// One GGUF architecture: its Hugging Face names, and what the llama.cpp
// conversion did to its weights.
struct GGUFArch {
  const char* gguf;         // general.architecture
  const char* model_type;   // config.json model_type
  const char* hf_class;     // architectures[0]
  bool gemma_norms;         // norms stored as 1 + w
  bool permuted_qk;         // q/k rows permuted for interleaved RoPE (Llama)
  bool post_norms;          // ffn_norm is pre_feedforward_layernorm (Gemma 2/3)
};

const std::vector<GGUFArch>& arch_table() {
  static const std::vector<GGUFArch> table = {
      {"gemma3", "gemma3_text", "Gemma3ForCausalLM", true, false, true},
      {"gemma2", "gemma2", "Gemma2ForCausalLM", true, false, true},
      {"gemma", "gemma", "GemmaForCausalLM", true, false, false},
      {"llama", "llama", "LlamaForCausalLM", false, true, false},
      {"mistral", "mistral", "MistralForCausalLM", false, true, false},
      {"qwen2", "qwen2", "Qwen2ForCausalLM", false, false, false},
  };
  return table;
}

const GGUFArch& find_arch(const GGUFFile& f) {
  const std::string name = f.architecture();
  std::vector<std::string> names;
  for (const auto& a : arch_table()) {
    if (name == a.gguf) return a;
    names.push_back(a.gguf);
  }
  throw Unsupported(detail::expected_got(f.path() + ": general.architecture", "one of " + detail::join_names(names, true, 20),
                                         "\"" + name + "\"", "scalpel cannot map this architecture to a Hugging Face model yet"));
}

// Metadata access with the file and key in every message.
struct Meta {
  const GGUFFile& f;
  std::string arch;
  bool has(const std::string& key) const { return f.contains(arch + "." + key); }
  int64_t integer(const std::string& key) const {
    const std::string k = arch + "." + key;
    if (!f.contains(k)) throw FormatError(detail::expected_got(f.path() + ": " + k, "present", "missing"));
    return f.get(k).as_int();
  }
  int64_t integer(const std::string& key, int64_t def) const { return has(key) ? f.get(arch + "." + key).as_int() : def; }
  double number(const std::string& key, double def) const { return has(key) ? f.get(arch + "." + key).as_float() : def; }
};

std::optional<int64_t> token_id(const GGUFFile& f, const std::string& which) {
  const std::string key = "tokenizer.ggml." + which + "_token_id";
  if (!f.contains(key)) return std::nullopt;
  return f.get(key).as_int();
}

}  // namespace

std::string gguf_hf_config_json(const GGUFFile& f) {
  const GGUFArch& a = find_arch(f);
  const Meta m{f, a.gguf};
  const std::string arch = a.gguf;
  json c;
  c["architectures"] = json::array({a.hf_class});
  c["model_type"] = a.model_type;
  const int64_t d_model = m.integer("embedding_length");
  const int64_t n_heads = m.integer("attention.head_count");
  const int64_t n_layers = m.integer("block_count");
  c["hidden_size"] = d_model;
  c["intermediate_size"] = m.integer("feed_forward_length");
  c["num_hidden_layers"] = n_layers;
  c["num_attention_heads"] = n_heads;
  c["num_key_value_heads"] = m.integer("attention.head_count_kv", n_heads);
  const int64_t head_dim = m.integer("attention.key_length", m.integer("rope.dimension_count", d_model / n_heads));
  c["head_dim"] = head_dim;
  c["max_position_embeddings"] = m.integer("context_length", 2048);
  c["rms_norm_eps"] = m.number("attention.layer_norm_rms_epsilon", 1e-6);
  const auto& embd = f.tensor_info("token_embd.weight");
  c["vocab_size"] = embd.dims.size() == 2 ? embd.dims[1] : 0;
  if (f.contains("tokenizer.ggml.tokens")) c["vocab_size"] = static_cast<int64_t>(f.get("tokenizer.ggml.tokens").size());
  if (auto id = token_id(f, "bos")) c["bos_token_id"] = *id;
  if (auto id = token_id(f, "eos")) c["eos_token_id"] = *id;
  if (auto id = token_id(f, "padding")) c["pad_token_id"] = *id;
  c["tie_word_embeddings"] = !f.has_tensor("output.weight");
  const double theta = m.number("rope.freq_base", 10000.0);

  json scaling;  // rope scaling of the (global) layers, when the file has one
  if (m.has("rope.scaling.type")) {
    const std::string type = f.get(arch + ".rope.scaling.type").as_string();
    if (type == "linear") {
      scaling = {{"rope_type", "linear"}, {"factor", m.number("rope.scaling.factor", 1.0)}};
    } else if (type != "none") {
      throw Unsupported(detail::expected_got(f.path() + ": " + arch + ".rope.scaling.type", "\"linear\" or \"none\"",
                                             "\"" + type + "\""));
    }
  }
  if (f.has_tensor("rope_freqs.weight"))
    throw Unsupported(detail::expected_got(f.path() + ": tensor rope_freqs.weight", "absent",
                                           "present (Llama-3-style RoPE frequency factors)",
                                           "scalpel does not read RoPE factors from GGUF yet; load the Hugging Face checkpoint"));

  if (arch == "gemma3" || arch == "gemma2") {
    c["hidden_activation"] = "gelu_pytorch_tanh";
    const int64_t window = m.integer("attention.sliding_window", 4096);
    c["sliding_window"] = window;
    // llama.cpp's rule for the query scale: head_dim, except the 27B models,
    // which scale by d_model / n_heads.
    const bool big = (arch == "gemma3" && n_layers == 62) || (arch == "gemma2" && n_layers == 46);
    c["query_pre_attn_scalar"] = big ? d_model / n_heads : head_dim;
    c["attn_logit_softcapping"] = m.has("attn_logit_softcapping") ? json(m.number("attn_logit_softcapping", 0)) : json();
    c["final_logit_softcapping"] = m.has("final_logit_softcapping") ? json(m.number("final_logit_softcapping", 0)) : json();
    json types = json::array();
    for (int64_t l = 0; l < n_layers; ++l) {
      const bool global = arch == "gemma3" ? (l + 1) % 6 == 0 : l % 2 == 1;
      types.push_back(global ? "full_attention" : "sliding_attention");
    }
    c["layer_types"] = types;
    if (arch == "gemma3") {
      json full = {{"rope_type", "default"}, {"rope_theta", theta}};
      if (!scaling.is_null()) full.update(scaling);
      c["rope_parameters"] = {{"full_attention", full},
                              {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
    } else {
      c["rope_theta"] = theta;
    }
  } else {
    c["hidden_act"] = arch == "gemma" ? "gelu_pytorch_tanh" : "silu";
    if (arch == "gemma") c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_theta"] = theta;
    if (!scaling.is_null()) c["rope_scaling"] = scaling;
    if (arch == "llama" || arch == "mistral") {
      c["attention_bias"] = f.has_tensor("blk.0.attn_q.bias");
      c["mlp_bias"] = f.has_tensor("blk.0.ffn_up.bias");
    }
    if (arch == "mistral" && m.has("attention.sliding_window")) c["sliding_window"] = m.integer("attention.sliding_window");
  }
  c["torch_dtype"] = "bfloat16";
  return c.dump(2);
}

namespace {
std::string hf_tensor_name(const GGUFFile& f, const GGUFArch& a, const std::string& name) {
  static const std::map<std::string, std::string> global = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  if (auto it = global.find(name); it != global.end()) return it->second;
  static const std::map<std::string, std::string> block = {
      {"attn_norm", "input_layernorm"},
      {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"},
      {"attn_k_norm", "self_attn.k_norm"},
      {"post_attention_norm", "post_attention_layernorm"},
      {"post_ffw_norm", "post_feedforward_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  static const std::regex re(R"(blk\.(\d+)\.([a-z_]+)\.(weight|bias))");
  std::smatch mt;
  if (std::regex_match(name, mt, re)) {
    const std::string part = mt[2];
    std::string hf;
    if (part == "ffn_norm") hf = a.post_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm";
    else if (auto it = block.find(part); it != block.end()) hf = it->second;
    if (!hf.empty()) return "model.layers." + std::string(mt[1]) + "." + hf + "." + std::string(mt[3]);
  }
  std::vector<std::string> known;
  for (const auto& t : f.tensors()) known.push_back(t.name);
  throw UnknownName(detail::expected_got(f.path() + ": tensor \"" + name + "\"", "a tensor of the " + std::string(a.gguf) + " mapping",
                                         "unknown", "nearest: " + detail::join_names(detail::nearest_names(name, known))));
}
}  // namespace

std::string gguf_hf_tensor_name(const GGUFFile& f, const std::string& name) { return hf_tensor_name(f, find_arch(f), name); }

std::vector<std::pair<std::string, at::Tensor>> gguf_hf_state_dict(const GGUFFile& f, c10::ScalarType dtype) {
  if (dtype != at::kFloat && dtype != at::kBFloat16)
    throw InvalidArgument(detail::expected_got("dtype", "float32 or bfloat16", c10::toString(dtype)));
  const GGUFArch& a = find_arch(f);
  const Meta m{f, a.gguf};
  const int64_t n_heads = m.integer("attention.head_count"), n_kv = m.integer("attention.head_count_kv", n_heads);
  std::vector<std::pair<std::string, at::Tensor>> out;
  Progress progress("dequantizing " + fs::path(f.path()).filename().string(), static_cast<int64_t>(f.tensors().size()));
  for (const auto& info : f.tensors()) {
    const std::string hf = hf_tensor_name(f, a, info.name);
    const bool is_norm = info.name.size() >= 11 && info.name.compare(info.name.size() - 11, 11, "norm.weight") == 0;
    const bool q = info.name.find(".attn_q.") != std::string::npos, k = info.name.find(".attn_k.") != std::string::npos;
    const bool fix = (a.gemma_norms && is_norm) || (a.permuted_qk && (q || k));
    at::Tensor t = f.dequantize(info.name, fix ? at::kFloat : dtype);
    if (a.gemma_norms && is_norm) t = t - 1;
    if (a.permuted_qk && (q || k)) {
      // llama.cpp interleaves each head's rotary pairs; restore rotate-half order.
      const int64_t heads = q ? n_heads : n_kv, rows = t.size(0);
      auto sizes = t.sizes().vec();
      std::vector<int64_t> split = {heads, rows / heads / 2, 2};
      split.insert(split.end(), sizes.begin() + 1, sizes.end());
      t = t.reshape(split).transpose(1, 2).reshape(sizes);
    }
    out.emplace_back(hf, t.to(dtype).contiguous());
    // The quantized bytes are no longer needed: give their pages back (they refault from the file).
    detail::release_mapped_pages(f.tensor_data(info.name), info.nbytes);
    progress.update();
  }
  progress.finish();
  return out;
}

void write_gguf_tokenizer_files(const GGUFFile& f, const std::string& dir) {
  const fs::path tmp(dir);
  write_file_atomic((tmp / "tokenizer.json").string(), gguf_tokenizer_json(f));
  const auto tok_config = json::parse(gguf_tokenizer_config_json(f));
  write_file_atomic((tmp / "tokenizer_config.json").string(), tok_config.dump(2) + "\n");
  json special;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"})
    if (tok_config.contains(key) && tok_config[key].is_string()) special[key] = tok_config[key];
  write_file_atomic((tmp / "special_tokens_map.json").string(), special.dump(2) + "\n");
}

void convert_gguf(const std::string& gguf_path, const std::string& out_dir, const std::string& dtype, bool overwrite) {
  at::ScalarType type;
  if (dtype == "bfloat16" || dtype == "bf16") type = at::kBFloat16;
  else if (dtype == "float32" || dtype == "fp32") type = at::kFloat;
  else throw InvalidArgument(detail::expected_got("dtype", "\"bfloat16\" or \"float32\"", "\"" + dtype + "\""));
  GGUFFile f(gguf_path);
  auto config = json::parse(gguf_hf_config_json(f));
  config["torch_dtype"] = type == at::kBFloat16 ? "bfloat16" : "float32";
  write_directory_atomic(out_dir, overwrite, fs::absolute(gguf_path).parent_path().string(), [&](const std::string& dir) {
    // Gemma checkpoints tie the unembedding: keep one copy, as transformers saves it.
    auto tensors = gguf_hf_state_dict(f, type);
    if (config.value("tie_word_embeddings", false))
      tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [](const auto& p) { return p.first == "lm_head.weight"; }),
                    tensors.end());
    const fs::path tmp(dir);
    write_file_atomic((tmp / "config.json").string(), config.dump(2) + "\n");
    json gen = {{"_from_model_config", true}};
    for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"})
      if (config.contains(key)) gen[key] = config[key];
    write_file_atomic((tmp / "generation_config.json").string(), gen.dump(2) + "\n");
    save_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", "pt"}});
    tensors.clear();
    write_gguf_tokenizer_files(f, dir);
  });
}

}  // namespace scalpel
