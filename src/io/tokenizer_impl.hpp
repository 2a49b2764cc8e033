// src/io/tokenizer_impl.hpp — private: the state behind scalpel::Tokenizer.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "io/tokenizer_pipeline.hpp"
#include "scalpel/io/chat_template.hpp"
#include "scalpel/io/tokenizer.hpp"

namespace scalpel {

struct Tokenizer::Impl {
  std::string name;  // source named in messages ("tokenizer.json", a path, ...)

  // Pipeline.
  std::unique_ptr<tok::Normalizer> normalizer;       // may be null
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;  // may be null
  std::unique_ptr<tok::BpeModel> model;
  std::unique_ptr<tok::PostProcessor> post_processor;  // may be null
  std::unique_ptr<tok::Decoder> decoder;               // may be null
  tok::AddedVocabulary added;
  int64_t vocab_size = 0;  // largest id + 1, added tokens included

  // From tokenizer_config.json / special_tokens_map.json.
  std::optional<std::string> bos, eos, unk, pad;
  std::optional<std::string> chat_template_source;
  std::string chat_template_name = "chat_template";

  // The chat template is parsed on first use, so that a template outside the
  // supported subset does not prevent tokenizing.
  mutable std::once_flag chat_once;
  mutable std::unique_ptr<ChatTemplate> chat;
  mutable std::exception_ptr chat_error;

  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;
  /// The decoding text of an id, or nullptr for a hole in the id range.
  const std::string* token_text(int64_t id) const;
  std::optional<int64_t> token_to_id(const std::string& token) const;
  /// Throws InvalidArgument naming `what` when id is outside [0, vocab_size).
  void check_id(int64_t id, const char* what) const;
  std::string describe() const;
};

namespace tok {

/// Builds a tokenizer from the text of a tokenizer.json; `file` names it in
/// messages. Special tokens / chat template are applied by apply_config.
std::shared_ptr<Tokenizer::Impl> load_tokenizer_json(const std::string& text, const std::string& file);

/// Side files of a model directory, each optional, already parsed.
struct SideFiles {
  std::optional<Json> tokenizer_config;  // tokenizer_config.json
  std::string tokenizer_config_name = "tokenizer_config.json";
  std::optional<Json> special_tokens_map;          // special_tokens_map.json
  std::optional<std::string> chat_template_jinja;  // chat_template.jinja
  std::optional<Json> model_config;                // config.json (for model_type only)
};

/// Special tokens and chat template from the side files.
void apply_config(Tokenizer::Impl& impl, const SideFiles& side);

/// Loads a file or directory (see Tokenizer::from_file).
std::shared_ptr<Tokenizer::Impl> load_path(const std::string& path);

}  // namespace tok
}  // namespace scalpel
