// src/io/tokenizer_pipeline.hpp — private: the stages of the tokenizer pipeline.
//
// encode:  text ─▶ AddedVocabulary (raw tokens) ─▶ Normalizer ─▶ AddedVocabulary
//          (normalized tokens) ─▶ PreTokenizer ─▶ BpeModel ─▶ PostProcessor
// decode:  ids ─▶ token strings ─▶ Decoder chain ─▶ text
//
// Each stage mirrors the component of the same name in Hugging Face
// `tokenizers`; parse_* build one from its tokenizer.json object and throw
// FormatError (malformed) or Unsupported (a type scalpel does not implement).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "io/tokenizer_json.hpp"
#include "scalpel/io/tokenizer.hpp"

namespace scalpel::tok {

/// A span of text flowing through normalization and pre-tokenization.
struct Piece {
  std::string text;
  /// How many leading bytes of `text` stem from the first character of the
  /// input (HF: bytes whose original offset is 0). Metaspace with
  /// prepend_scheme "first" prepends only to a piece where this is non-zero.
  std::size_t origin_bytes = 0;
};

/// Origin bytes of a sub-piece [start, end) of a piece.
inline std::size_t sub_origin(std::size_t origin_bytes, std::size_t start, std::size_t end) {
  if (start >= origin_bytes) return 0;
  return std::min(origin_bytes, end) - start;
}

class Regex;

/// The `pattern` of a Replace normalizer or decoder: {"String": literal} or
/// {"Regex": pattern}. HF compiles the literal as an escaped regex; only the
/// empty literal (which matches between characters) needs the regex engine.
class ReplacePattern {
 public:
  /// Throws FormatError for anything but the two forms above or a bad regex.
  explicit ReplacePattern(const JsonField& pattern);
  /// Appends the byte ranges of the successive non-overlapping matches.
  void find_all(const std::string& text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

// ───────────────────────────── normalizers ─────────────────────────────────

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  /// Normalizes `text` in place and updates `origin_bytes` (see Piece).
  virtual void normalize(std::string& text, std::size_t& origin_bytes) const = 0;
  virtual std::string describe() const = 0;

  std::string apply(std::string text) const {
    std::size_t origin = text.size();
    normalize(text, origin);
    return text;
  }
};

/// null -> nullptr.
std::unique_ptr<Normalizer> parse_normalizer(const JsonField& j);
/// The NFC normalizer (Qwen2 from vocab.json + merges.txt).
std::unique_ptr<Normalizer> make_nfc_normalizer();

// ──────────────────────────── pre-tokenizers ───────────────────────────────

/// How a split pattern's matches are kept (HF SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  /// Splits / rewrites one piece, appending the non-empty results to `out`.
  virtual void split(Piece&& piece, std::vector<Piece>& out) const = 0;
  /// Applies the stage to every piece.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const;
  virtual std::string describe() const = 0;
};

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const JsonField& j);
/// ByteLevel pre-tokenizer (GPT-2 regex when use_regex).
std::unique_ptr<PreTokenizer> make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex);
/// Split on a regex (Oniguruma syntax) with the given behavior.
std::unique_ptr<PreTokenizer> make_regex_split_pre_tokenizer(const std::string& regex, SplitBehavior behavior,
                                                             bool invert);
std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(std::vector<std::unique_ptr<PreTokenizer>> stages);

/// The GPT-2 pre-tokenization regex.
extern const char* const kGpt2Pattern;
/// The Qwen2 pre-tokenization regex.
extern const char* const kQwen2Pattern;

// ─────────────────────────────── BPE model ─────────────────────────────────

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::optional<std::string> continuing_subword_prefix;
  std::optional<std::string> end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  /// `vocab`: token -> id. `merges`: in rank order. `file` names the source in
  /// error messages (a merge whose parts or result are not in the vocabulary
  /// is a FormatError).
  BpeModel(const std::vector<std::pair<std::string, int64_t>>& vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& file);
  ~BpeModel();

  /// Appends the ids of one pre-token.
  void tokenize(std::string_view word, std::vector<int64_t>& out) const;

  std::optional<int64_t> token_to_id(std::string_view token) const;
  /// nullptr when no token has this id.
  const std::string* id_to_token(int64_t id) const;
  /// Number of vocabulary entries (HF Model::get_vocab_size).
  std::size_t size() const { return vocab_.size(); }
  /// Largest id + 1.
  int64_t id_bound() const { return static_cast<int64_t>(id_to_token_.size()); }
  std::size_t merge_count() const { return merges_.size(); }
  const BpeOptions& options() const { return options_; }

 private:
  struct Symbol;
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;
  void tokenize_chunk(std::string_view word, std::vector<int64_t>& out) const;
  void tokenize_long(std::string_view word, std::vector<int64_t>& out) const;
  std::optional<int32_t> lookup(std::string_view token) const;

  BpeOptions options_;
  std::unordered_map<std::string_view, int32_t> vocab_;  // views into id_to_token_ / extra_
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;  // false for holes in the id range
  std::vector<std::pair<std::unique_ptr<std::string>, int32_t>> extra_;  // tokens sharing an id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, new id)
  std::optional<int32_t> unk_id_;
  std::vector<int32_t> byte_ids_;  // <0xNN> ids or -1 (byte_fallback)
  std::string prefix_;             // continuing_subword_prefix or ""
  std::string suffix_;             // end_of_word_suffix or ""

  // Adjacent code-point pairs occurring inside some token (built on first use
  // by tokenize_long).
  static constexpr std::size_t kLongWordBytes = 256;
  mutable std::once_flag pairs_once_;
  mutable std::unordered_set<uint64_t> inner_pairs_;

  // Thread-safe cache of recent words -> ids (never changes results).
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  static constexpr std::size_t kCacheShards = 16;
  static constexpr std::size_t kCacheEntriesPerShard = 4096;
  static constexpr std::size_t kCacheMaxWordBytes = 128;
  mutable std::unique_ptr<CacheShard[]> cache_;
};

// ─────────────────────────── added vocabulary ──────────────────────────────

class AddedVocabulary {
 public:
  /// One split of a text: a run of text, or an added token.
  struct Split {
    std::size_t start = 0, end = 0;  // byte range in the text
    int64_t id = -1;                 // -1: text
  };

  AddedVocabulary() = default;
  /// Registers `tokens` in order (HF AddedVocabulary::add_tokens): ids come
  /// from the existing vocabulary or the next free id; the JSON id is only a
  /// hint. `normalizer` computes the content normalized tokens match.
  void build(const std::vector<AddedToken>& tokens, const BpeModel& model, const Normalizer* normalizer);

  /// Splits `text` on the tokens (normalized ones when `normalized`), with
  /// leftmost-longest matching and single_word / lstrip / rstrip as HF does.
  void split(std::string_view text, bool normalized, std::vector<Split>& out) const;

  bool empty() const { return tokens_.empty(); }
  /// The tokens with their final ids, sorted by id.
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  std::optional<int64_t> token_to_id(const std::string& content) const;
  /// Decoding text of an added id (the normalized content for normalized
  /// tokens, as HF tokenizers >= 0.20 does), or nullptr.
  const std::string* id_to_token(int64_t id) const;
  bool is_special_content(const std::string& token) const;
  int64_t id_bound() const;

 private:
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
      int32_t pattern = -1;                                     // index into ids
    };
    std::vector<Node> nodes{Node{}};
    std::vector<int64_t> ids;  // pattern -> token id
    bool first_byte[256] = {};
    void insert(const std::string& pattern, int64_t id);
    /// Longest pattern starting at `pos`: (length, pattern index) or (0, -1).
    std::pair<std::size_t, int32_t> longest_at(std::string_view text, std::size_t pos) const;
  };

  const AddedToken* by_id(int64_t id) const;

  std::vector<AddedToken> tokens_;                          // sorted by id
  std::unordered_map<std::string, int64_t> content_to_id_;  // raw content
  std::unordered_map<int64_t, std::size_t> id_index_;       // id -> index in tokens_
  std::unordered_map<int64_t, std::string> decode_text_;    // id -> text for decoding
  std::unordered_map<std::string, bool> special_contents_;
  Trie raw_trie_, normalized_trie_;
};

// ─────────────────────────── post-processors ───────────────────────────────

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// Adds the special tokens of a single sequence (add_special_tokens=true).
  virtual void process(std::vector<int64_t>& ids) const = 0;
  virtual std::string describe() const = 0;
};

std::unique_ptr<PostProcessor> parse_post_processor(const JsonField& j);
/// Prepends / appends fixed ids (add_bos_token / add_eos_token).
std::unique_ptr<PostProcessor> make_affix_post_processor(std::vector<int64_t> prefix, std::vector<int64_t> suffix);

// ─────────────────────────────── decoders ──────────────────────────────────

class Decoder {
 public:
  virtual ~Decoder() = default;
  /// HF Decoder::decode_chain: rewrites the list of token strings.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  virtual std::string describe() const = 0;
};

std::unique_ptr<Decoder> parse_decoder(const JsonField& j);
std::unique_ptr<Decoder> make_byte_level_decoder();

// ───────────────────────────────── misc ────────────────────────────────────

/// Reads `type` of a component object, throwing Unsupported with the list of
/// supported types when it is not one of them.
std::string component_type(const JsonField& j, const char* what, const std::vector<std::string>& supported);

/// Parses a split behavior name ("Isolated", ...).
SplitBehavior parse_split_behavior(const JsonField& j);

}  // namespace scalpel::tok
