// scalpel/io/hf_model.hpp — a Hugging Face model directory opened as a whole:
// config, generation config, tokenizer and weights, with tied embeddings
// resolved whichever name the file stores.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "scalpel/io/hf_config.hpp"
#include "scalpel/io/safetensors.hpp"
#include "scalpel/io/tokenizer.hpp"

namespace scalpel {

class HFModelDir {
 public:
  /// Opens `directory` (see HFModelFiles::find for what it must hold).
  static HFModelDir open(const std::string& directory);

  const HFModelFiles& files() const { return files_; }
  const HFConfig& config() const { return config_; }
  const GenerationConfig& generation_config() const { return generation_; }
  const SafetensorsCheckpoint& weights() const { return weights_; }
  bool has_tokenizer() const { return tokenizer_.has_value(); }
  /// Throws FileNotFound when the directory has no tokenizer files.
  const Tokenizer& tokenizer() const;

  /// Tensor names, aliases of tied weights included.
  std::vector<std::string> keys() const;
  bool contains(const std::string& name) const;
  /// The tensor stored under `name`, or under the name it is tied to (the
  /// file's `__metadata__` alias map, or tie_word_embeddings between the
  /// input embedding and the output head). UnknownName otherwise.
  at::Tensor get(const std::string& name) const;
  /// The stored name behind `name` (itself when stored).
  std::string resolve(const std::string& name) const;

 private:
  HFModelFiles files_;
  HFConfig config_;
  GenerationConfig generation_;
  SafetensorsCheckpoint weights_;
  std::optional<Tokenizer> tokenizer_;
  std::vector<std::pair<std::string, std::string>> aliases_;  // alias -> stored name
};

}  // namespace scalpel
