// SCALPEL_USES_TORCH
#include "scalpel/io/hf_model.hpp"

#include <algorithm>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

// Input embedding / output head names, per family, in one table.
// `layers` is the prefix of the family's block weights, which tells which
// family a file belongs to when only the head is stored.
struct TiedPair {
  const char* embedding;
  const char* head;
  const char* layers;
};
const TiedPair kTiedPairs[] = {
    {"model.embed_tokens.weight", "lm_head.weight", "model.layers."},  // Llama, Qwen2, Mistral, Gemma
    {"transformer.wte.weight", "lm_head.weight", "transformer.h."},    // GPT-2
    {"wte.weight", "lm_head.weight", "h."},                            // GPT-2 saved without the prefix
    {"gpt_neox.embed_in.weight", "embed_out.weight", "gpt_neox.layers."},  // GPT-NeoX / Pythia
    {"model.language_model.embed_tokens.weight", "lm_head.weight", "model.language_model.layers."},  // Gemma 3 wrappers
};

}  // namespace

HFModelDir HFModelDir::open(const std::string& directory) {
  HFModelDir m;
  m.files_ = HFModelFiles::find(directory);
  m.config_ = HFConfig::from_file(m.files_.config_path);
  if (!m.files_.generation_config_path.empty())
    m.generation_ = GenerationConfig::from_file_or_default(m.files_.generation_config_path);
  m.weights_ = SafetensorsCheckpoint::open(m.files_.weights_path);
  if (!m.files_.tokenizer_path.empty()) m.tokenizer_ = Tokenizer::from_file(m.files_.tokenizer_path);

  // Aliases the file declares (safetensors' shared-tensor map: removed -> kept).
  for (const auto& [k, v] : m.weights_.metadata())
    if (!m.weights_.contains(k) && m.weights_.contains(v)) m.aliases_.emplace_back(k, v);
  // Tied input embedding and output head: whichever is stored serves both.
  if (m.config_.tie_word_embeddings) {
    const auto keys = m.weights_.keys();
    for (const auto& p : kTiedPairs) {
      bool has_e = m.weights_.contains(p.embedding), has_h = m.weights_.contains(p.head);
      bool family = std::any_of(keys.begin(), keys.end(), [&](const std::string& k) { return k.rfind(p.layers, 0) == 0; });
      if (has_e && !has_h) m.aliases_.emplace_back(p.head, p.embedding);
      if (has_h && !has_e && family) m.aliases_.emplace_back(p.embedding, p.head);
    }
  }
  // Keep one alias per name (the first), never shadowing a stored tensor.
  std::vector<std::pair<std::string, std::string>> unique;
  for (const auto& a : m.aliases_)
    if (!m.weights_.contains(a.first) &&
        std::none_of(unique.begin(), unique.end(), [&](const auto& u) { return u.first == a.first; }))
      unique.push_back(a);
  m.aliases_ = std::move(unique);
  return m;
}

const Tokenizer& HFModelDir::tokenizer() const {
  if (!tokenizer_)
    throw FileNotFound(detail::expected_got("tokenizer of " + files_.directory,
                                            "tokenizer.json or vocab.json + merges.txt", "none",
                                            "load one with load_tokenizer(path)"));
  return *tokenizer_;
}

std::vector<std::string> HFModelDir::keys() const {
  auto k = weights_.keys();
  for (const auto& a : aliases_) k.push_back(a.first);
  std::sort(k.begin(), k.end());
  return k;
}

bool HFModelDir::contains(const std::string& name) const {
  return weights_.contains(name) ||
         std::any_of(aliases_.begin(), aliases_.end(), [&](const auto& a) { return a.first == name; });
}

std::string HFModelDir::resolve(const std::string& name) const {
  if (weights_.contains(name)) return name;
  for (const auto& a : aliases_)
    if (a.first == name) return a.second;
  throw UnknownName(detail::expected_got("tensor \"" + name + "\" of " + files_.directory,
                                         "a stored or tied tensor", "no such tensor",
                                         "nearest: " + detail::join_names(detail::nearest_names(name, keys()))));
}

at::Tensor HFModelDir::get(const std::string& name) const { return weights_.get(resolve(name)); }

}  // namespace scalpel
