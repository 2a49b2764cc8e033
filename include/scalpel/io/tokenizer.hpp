// scalpel/io/tokenizer.hpp — Hugging Face tokenizers, exactly.
//
// Reads tokenizer.json (BPE: byte-level as in GPT-2 / Qwen2 / Llama-3 / SmolLM /
// Pythia, and SentencePiece-style with `▁` and byte fallback as in Llama-2 /
// Mistral / Gemma / TinyStories), or vocab.json + merges.txt, plus
// tokenizer_config.json (special tokens, chat template) when it sits beside it.
// encode/decode give the same ids and strings as the `tokenizers` library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scalpel/io/chat_template.hpp"

namespace scalpel {

/// An entry of tokenizer.json's "added_tokens".
struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class Tokenizer {
 public:
  /// `path`: a directory (tokenizer.json, or vocab.json + merges.txt; with
  /// tokenizer_config.json / special_tokens_map.json / chat_template.jinja
  /// when present) or a tokenizer.json file. Throws FileNotFound, FormatError
  /// (malformed file: names the file and field) or Unsupported (a model,
  /// normalizer, pre-tokenizer, ... type scalpel does not implement; the
  /// message lists the supported ones).
  static Tokenizer from_file(const std::string& path);

  /// From the text of a tokenizer.json (and optionally of a
  /// tokenizer_config.json). `name` appears in error messages.
  static Tokenizer from_json(const std::string& tokenizer_json,
                             const std::string& tokenizer_config_json = "",
                             const std::string& name = "tokenizer.json");

  /// Text (UTF-8) to ids. add_special_tokens applies the post-processor
  /// (e.g. BOS for Llama). Invalid UTF-8 throws InvalidArgument.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  std::vector<std::vector<int64_t>> encode_batch(const std::vector<std::string>& texts,
                                                 bool add_special_tokens = true) const;

  /// Ids to text. An id outside [0, vocab_size()) throws InvalidArgument.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  /// Token strings of `ids` as stored in the vocabulary (e.g. "Ġthe", "▁the").
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids) const;

  /// Number of ids, added tokens included (HF: len(tokenizer)).
  int64_t vocab_size() const;
  std::optional<int64_t> token_to_id(const std::string& token) const;
  /// Throws InvalidArgument for an id outside the vocabulary.
  std::string id_to_token(int64_t id) const;

  std::optional<std::string> bos_token() const;
  std::optional<std::string> eos_token() const;
  std::optional<std::string> pad_token() const;
  std::optional<std::string> unk_token() const;
  std::optional<int64_t> bos_token_id() const;
  std::optional<int64_t> eos_token_id() const;
  std::optional<int64_t> pad_token_id() const;
  std::optional<int64_t> unk_token_id() const;
  const std::vector<AddedToken>& added_tokens() const;

  bool has_chat_template() const;
  /// Throws InvalidArgument when the tokenizer has no chat template.
  const ChatTemplate& chat_template() const;
  /// Renders the chat template as transformers' apply_chat_template(...,
  /// tokenize=False) does: special tokens (bos_token, eos_token, ...) are
  /// template variables, extra_context_json adds more.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = true,
                                  const std::string& extra_context_json = "{}") const;
  std::string apply_chat_template_json(const std::string& messages_json,
                                       bool add_generation_prompt = true,
                                       const std::string& extra_context_json = "{}") const;

  /// "BPE" today; describes the pipeline for repr()/logging.
  std::string describe() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

/// Same as Tokenizer::from_file.
Tokenizer load_tokenizer(const std::string& path);

}  // namespace scalpel
