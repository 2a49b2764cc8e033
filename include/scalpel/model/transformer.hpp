// scalpel/model/transformer.hpp — the hooked transformer: a LibTorch model
// whose every activation is a named HookPoint (docs/hook_names.md), matching
// Hugging Face transformers numerically.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/hooks/hook_point.hpp"
#include "scalpel/model/config.hpp"

namespace scalpel {

class Tokenizer;
class Transformer;

/// A weight that writes into the residual stream (Transformer::residual_writers).
struct ResidualWriter {
  std::string name;   // Hugging Face name, or TransformerLens name when the slot is not a checkpoint tensor
  std::string kind;   // "embed.W_E", "pos_embed.W_pos", "attn.W_O", "attn.b_O", "mlp.W_out", "mlp.b_out"
  int64_t layer = -1; // the block; -1 for the embeddings
  at::Tensor tensor;  // the live weight ([d_model, in] matrices as at::linear reads them)
};

/// The keys and values of token rows a forward pass has run
/// (Transformer::final_residual), kept to continue those rows later without
/// running them again: shared prompts, few-shot contexts, answer choices.
struct KVCache {
  /// One per layer: [batch, n_kv_heads, length, d_head], keys after rotary
  /// (the values of hook_rot_k / hook_k and hook_v, heads first).
  std::vector<at::Tensor> keys, values;
  /// [batch, length] int64: 1 where a token sits, 0 for padding.
  at::Tensor mask;

  int64_t length() const;
  int64_t batch() const;
  /// The cache of rows `rows` (a row may repeat; e.g. one context row per
  /// answer choice). InvalidArgument for a row out of range.
  KVCache select(const std::vector<int64_t>& rows) const;
};

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool do_sample = false;      // greedy when false
  double temperature = 1.0;
  int64_t top_k = 0;           // 0: off
  double top_p = 1.0;          // 1: off
  uint64_t seed = 0;           // sampling is reproducible for a given seed
  std::vector<int64_t> stop_tokens;  // generation of a row ends after one of these
  std::optional<int64_t> pad_token_id;  // for left padding; defaults to the first stop token or 0
  /// Called after each generated token with a row and its generated ids so
  /// far; returning true ends that row (stop strings: eval's generate_until).
  std::function<bool(int64_t row, const std::vector<int64_t>& generated)> stop_when;
};

struct GenerateResult {
  /// [batch, prompt_len + generated] with the prompts left-padded.
  at::Tensor tokens;
  /// The generated ids of each row, stop token included, padding excluded.
  std::vector<std::vector<int64_t>> new_tokens;
};

class Transformer {
 public:
  /// Builds the modules from a config and a name -> tensor map in the
  /// architecture's Hugging Face naming (see src/model/arch/). `dtype`:
  /// kFloat or kBFloat16 (weights are converted once).
  Transformer(ModelConfig config, const std::map<std::string, at::Tensor>& hf_weights, at::ScalarType dtype);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  /// Loads a Hugging Face model directory. dtype: "float32", "bfloat16", or
  /// "" for the checkpoint's torch_dtype (float32 when absent). Throws
  /// Unsupported for an architecture not in the registry (naming the
  /// supported ones).
  /// A GGUF file (a path ending in .gguf) is read with from_gguf.
  static std::shared_ptr<Transformer> from_pretrained(const std::string& directory, const std::string& dtype = "",
                                                      const std::string& device = "cpu");
  /// Loads a GGUF file: every tensor dequantized once to `dtype` ("float32",
  /// the default, or "bfloat16"), the config and tokenizer from its metadata
  /// (see scalpel/io/gguf_convert.hpp and gguf_tokenizer.hpp).
  static std::shared_ptr<Transformer> from_gguf(const std::string& path, const std::string& dtype = "",
                                                const std::string& device = "cpu");

  const ModelConfig& config() const;
  at::ScalarType dtype() const;
  /// The tokenizer of the directory the model came from (FileNotFound if none).
  const Tokenizer& tokenizer() const;
  bool has_tokenizer() const;

  /// tokens [batch, pos] (int64) -> logits [batch, pos, vocab] (float32).
  /// attention_mask [batch, pos] (1 = token, 0 = left padding); position ids
  /// follow the mask, so a padded row gives the logits of the unpadded one.
  /// last_position_only: unembed the last position only (logits [batch, 1, vocab]).
  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& attention_mask = {}, bool last_position_only = false);

  /// The forward pass from block `layer` on: `resid_pre` [batch, pos, d_model]
  /// is the residual stream entering that block (the value of
  /// blocks.{layer}.hook_resid_pre, which runs on it again, so hooks there
  /// apply); layer == n_layers runs only the final norm and unembedding.
  /// Equal to forward() when resid_pre comes from the same tokens: causal
  /// sweeps patch at layer l and skip recomputing the layers before it.
  /// last_position_only: unembed only the last position (logits [batch, 1, vocab]).
  at::Tensor forward_from(int64_t layer, const at::Tensor& resid_pre, const at::Tensor& attention_mask = {},
                          bool last_position_only = false);

  /// forward_from for the last positions only: `resid_pre_suffix` [batch, q,
  /// d_model] enters block `layer` at positions start..start+q-1, and the keys
  /// and values of positions 0..start-1 at layers layer..n_layers-1 come from
  /// an earlier run: past_k[i], past_v[i] = [1 or batch, n_kv_heads, start,
  /// d_head] for layer + i (the values of hook_rot_k — hook_k without rotary —
  /// and hook_v, transposed to heads-first). Equal to the last q positions of
  /// forward_from when the past comes from the same run: a patch at position p
  /// cannot change positions before it, so sweeps recompute only the suffix.
  at::Tensor forward_from_suffix(int64_t layer, const at::Tensor& resid_pre_suffix, const std::vector<at::Tensor>& past_k,
                                 const std::vector<at::Tensor>& past_v, bool last_position_only = false);

  /// The final residual stream after the final norm (the value of
  /// ln_final.hook_normalized times the norm's weight: what the unembedding
  /// reads), [batch, pos, d_model], for tokens [batch, pos] that continue the
  /// rows of `past` (nullptr: rows start at position 0). attention_mask
  /// [batch, pos] (1 = token, 0 = padding, left or right; undefined: all
  /// tokens); positions follow the past's mask and this one, so padding
  /// anywhere gives the values of the unpadded rows. Hooks run as in
  /// forward(). With `cache_out`, it receives the keys and values of the past
  /// and these tokens, to continue again. Logits at chosen positions are
  /// unembed(final_residual(...) at those positions): with a large vocabulary
  /// the unembedding is most of a forward pass.
  at::Tensor final_residual(const at::Tensor& tokens, const at::Tensor& attention_mask = {}, const KVCache* past = nullptr,
                            KVCache* cache_out = nullptr);
  /// The unembedding: final_residual values [..., d_model] -> logits
  /// [..., vocab] (float32; Gemma 2's final softcap applied), as forward().
  at::Tensor unembed(const at::Tensor& final_residual) const;

  /// The weights under their Hugging Face names: the live tensors the
  /// forward pass reads (edit them in place; train them by setting
  /// requires_grad). A tied output head appears once, as the embedding.
  /// Unsupported for architectures whose weights are re-laid out at load
  /// (GPT-2's Conv1D, Gemma's norm offsets, fused GPT-NeoX projections).
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;

  /// The live weights that write into the residual stream, read from the
  /// model's structure (every architecture): the token embedding and learned
  /// position embedding (only when from_layer == 0), then per block from
  /// `from_layer` on the attention output matrix [d_model, heads·d_head] and
  /// bias, and the MLP output matrix [d_model, d_mlp] and bias (when present).
  /// Each under its Hugging Face name when the slot holds a checkpoint tensor
  /// unchanged, else under its TransformerLens name (e.g. blocks.3.attn.W_O
  /// for GPT-2's transposed Conv1D); `kind` is the TransformerLens parameter
  /// ("embed.W_E", "pos_embed.W_pos", "attn.W_O", "attn.b_O", "mlp.W_out",
  /// "mlp.b_out") and `layer` its block (-1 for embeddings). Edit them in
  /// place (no grad).
  std::vector<ResidualWriter> residual_writers(int64_t from_layer = 0) const;
  /// Whether the output head is the embedding matrix itself (tied).
  bool tied_embeddings() const;

  /// Gives a tied output head its own copy of the embedding (then
  /// named_parameters() lists lm_head.weight, and save_pretrained writes
  /// tie_word_embeddings = false), so that the embedding can be edited
  /// without changing the unembedding. Returns false when already untied.
  bool untie_embeddings();

  /// Writes the model as a Hugging Face directory transformers loads:
  /// config.json (the source's, torch_dtype set), model.safetensors
  /// (named_parameters() in `dtype`: "" keeps the model's), and the tokenizer
  /// and generation files of the directory it came from. Built beside
  /// `directory` and renamed into place; refuses a non-empty `directory`
  /// unless `overwrite`, and the directory the model was loaded from.
  void save_pretrained(const std::string& directory, const std::string& dtype = "", bool overwrite = false) const;

  /// A model with random weights from a Hugging Face config.json text
  /// (Llama, Mistral, Qwen2 layouts): matrices N(0, init_std²) from `seed`,
  /// norms 1, biases 0. No tokenizer (save_pretrained writes none).
  static std::shared_ptr<Transformer> from_config(const std::string& config_json, uint64_t seed = 0,
                                                  double init_std = 0.02, const std::string& dtype = "float32");

  /// True while generate() runs a step after the prompt (the forward pass
  /// covers generated tokens only); false in every other forward pass.
  /// Hooks that act on the prompt's or the generated positions read it.
  bool decoding() const;

  /// Every hook point name, in forward order.
  std::vector<std::string> hook_names() const;
  /// Throws UnknownName listing the nearest names.
  HookPoint& hook_point(const std::string& name);
  HookHandle add_hook(const std::string& name, HookFn fn);
  HookHandle add_hooks(const std::vector<std::pair<std::string, HookFn>>& hooks);
  /// Gradient hooks: called with d(loss)/d(activation) when backward() runs
  /// through a forward pass made with grad mode on (the embedding output is
  /// made to require grad when needed, so no parameter gradients are built).
  HookHandle add_backward_hooks(const std::vector<std::pair<std::string, BackwardHookFn>>& hooks);
  void reset_hooks();

  /// Logits and the activations at `names` (all hook points when empty);
  /// `last_position_only` unembeds the last position only, as in forward().
  /// stop_at_layer = k in [0, n_layers) runs blocks 0..k-1 only and returns,
  /// instead of logits, the residual stream entering block k (hook points of
  /// block k and later do not run; as TransformerLens' stop_at_layer); -1 or
  /// n_layers: the whole pass, with logits.
  std::pair<at::Tensor, std::map<std::string, at::Tensor>> run_with_cache(
      const at::Tensor& tokens, const std::vector<std::string>& names = {}, const at::Tensor& attention_mask = {},
      bool last_position_only = false, int64_t stop_at_layer = -1);

  /// Generates from token prompts of any lengths (left-padded into a batch),
  /// with a KV cache; hooks stay active at every step.
  GenerateResult generate(const std::vector<std::vector<int64_t>>& prompts, const GenerateOptions& options);

  struct Impl;

 private:
  Transformer(ModelConfig config, const std::map<std::string, at::Tensor>& hf_weights, at::ScalarType dtype,
              bool release_copied_sources);
  std::unique_ptr<Impl> impl_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  // Alive as long as the model: hook handles hold a weak reference to it, so
  // a handle that outlives its model removes nothing instead of touching freed
  // hook points.
  std::shared_ptr<const char> life_ = std::make_shared<const char>('\0');
};

/// Names of the architectures the registry knows (e.g. "LlamaForCausalLM").
std::vector<std::string> supported_architectures();

}  // namespace scalpel
