// scalpel/io/gguf_convert.hpp — a GGUF model as a Hugging Face model: its
// config.json, its state dict under transformers' tensor names, and
// `convert_gguf`, which writes a Hugging Face directory that transformers and
// scalpel load.
//
// The mapping is the inverse of llama.cpp's convert_hf_to_gguf for the
// architectures scalpel runs (one table in src/io/gguf_convert.cpp):
// "gemma3", "gemma2", "gemma", "llama", "mistral", "qwen2". It undoes what the
// conversion did to the weights: Gemma norms are stored as (1 + w) and come
// back as w; Llama/Mistral q/k rows are stored permuted for interleaved RoPE
// and come back in Hugging Face's rotate-half order.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace scalpel {

class GGUFFile;

/// config.json text (a Hugging Face config of the model the GGUF holds) built
/// from its `<arch>.*` and `tokenizer.ggml.*` metadata. Throws Unsupported for
/// an architecture without a mapping (naming the supported ones) and
/// FormatError for missing required keys.
std::string gguf_hf_config_json(const GGUFFile& file);

/// The Hugging Face tensor name of a GGUF tensor ("blk.3.attn_q.weight" ->
/// "model.layers.3.self_attn.q_proj.weight"). Throws UnknownName for a tensor
/// the mapping does not know.
std::string gguf_hf_tensor_name(const GGUFFile& file, const std::string& gguf_name);

/// Every tensor dequantized to `dtype` (float32 or bfloat16) under its
/// Hugging Face name, with the llama.cpp conversion undone (see above).
/// Reports progress (one step per tensor).
std::vector<std::pair<std::string, at::Tensor>> gguf_hf_state_dict(const GGUFFile& file,
                                                                   c10::ScalarType dtype = c10::ScalarType::Float);

/// Writes a Hugging Face directory for the GGUF model at `gguf_path`:
/// config.json, generation_config.json, model.safetensors (`dtype`:
/// "bfloat16" or "float32"), tokenizer.json, tokenizer_config.json (with the
/// chat template) and special_tokens_map.json. The directory is built beside
/// `out_dir` and renamed into place, so a failure leaves nothing half-written;
/// an existing non-empty `out_dir` is refused unless `overwrite`. The GGUF file
/// is only read.
void convert_gguf(const std::string& gguf_path, const std::string& out_dir, const std::string& dtype = "bfloat16",
                  bool overwrite = false);

/// tokenizer.json, tokenizer_config.json and special_tokens_map.json of the
/// file's tokenizer into directory `dir` (as convert_gguf writes them).
void write_gguf_tokenizer_files(const GGUFFile& file, const std::string& dir);

}  // namespace scalpel
