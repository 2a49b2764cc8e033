// src/io/tokenizer_pretokenizers.cpp — pre-tokenizers (HF `tokenizers::pre_tokenizers`).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/tokenizer_pipeline.hpp"
#include "io/tokenizer_regex.hpp"
#include "io/unicode.hpp"

namespace scalpel::tok {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

void PreTokenizer::pre_tokenize(std::vector<Piece>& pieces) const {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) split(std::move(p), out);
  pieces.swap(out);
}

namespace {

/// A range of the text and whether the pattern matched it (HF Pattern::find_matches).
struct Span {
  std::size_t start, end;
  bool match;
};

/// Spans covering a text of `len` bytes from a list of regex matches.
void spans_from_matches(std::size_t len, const std::vector<std::pair<std::size_t, std::size_t>>& matches,
                        std::vector<Span>& spans) {
  if (len == 0) {
    spans.push_back({0, 0, false});
    return;
  }
  std::size_t prev = 0;
  for (const auto& [s, e] : matches) {
    if (prev != s) spans.push_back({prev, s, false});
    spans.push_back({s, e, true});
    prev = e;
  }
  if (prev != len) spans.push_back({prev, len, false});
}

/// Spans where every character satisfying `pred` is its own match.
template <typename Pred>
void spans_from_chars(const std::string& text, Pred pred, std::vector<Span>& spans) {
  if (text.empty()) {
    spans.push_back({0, 0, false});
    return;
  }
  std::size_t last = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    const char32_t c = unicode::next_code_point(text, i);
    if (pred(c)) {
      if (last < start) spans.push_back({last, start, false});
      spans.push_back({start, i, true});
      last = i;
    }
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
}

/// Applies a delimiter behavior (HF NormalizedString::split) and appends the
/// kept, non-empty sub-pieces of `piece` to `out`.
void emit_split(const Piece& piece, std::vector<Span>& spans, SplitBehavior behavior, bool invert,
                std::vector<Piece>& out) {
  if (invert) {
    for (auto& s : spans) s.match = !s.match;
  }
  // `keep` holds (start, end, removed).
  std::vector<Span> keep;
  keep.reserve(spans.size());
  switch (behavior) {
    case SplitBehavior::Removed:
      keep = spans;
      break;
    case SplitBehavior::Isolated:
      for (const auto& s : spans) keep.push_back({s.start, s.end, false});
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.match && !previous_match && !keep.empty()) {
          keep.back().end = s.end;
        } else {
          keep.push_back({s.start, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !keep.empty()) {
          keep.back().start = it->start;
        } else {
          keep.push_back({it->start, it->end, false});
        }
        previous_match = it->match;
      }
      std::reverse(keep.begin(), keep.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.match == previous_match && !keep.empty()) {
          keep.back().end = s.end;
        } else {
          keep.push_back({s.start, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    }
  }
  for (const auto& k : keep) {
    if (k.match || k.start >= k.end) continue;  // removed, or empty
    out.push_back(Piece{piece.text.substr(k.start, k.end - k.start), sub_origin(piece.origin_bytes, k.start, k.end)});
  }
}

std::unique_ptr<Regex> compile_regex(const std::string& pattern, const JsonField* where) {
  try {
    return std::make_unique<Regex>(pattern);
  } catch (const std::invalid_argument& e) {
    if (where != nullptr) throw FormatError(where->where() + ": expected a valid regex, got one that " + e.what());
    throw;
  }
}

// ---------------------------------------------------------------------------

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> stages) : stages_(std::move(stages)) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    std::vector<Piece> pieces;
    pieces.push_back(std::move(piece));
    pre_tokenize(pieces);
    for (auto& p : pieces) out.push_back(std::move(p));
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& s : stages_) s->pre_tokenize(pieces);
  }
  std::string describe() const override {
    std::string d = "Sequence[";
    for (std::size_t i = 0; i < stages_.size(); ++i) d += (i ? "," : "") + stages_[i]->describe();
    return d + "]";
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> stages_;
};

/// GPT-2 byte-level: optional leading space, GPT-2 regex split, then every
/// byte replaced by its printable stand-in character.
class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern) : nullptr) {}

  void split(Piece&& piece, std::vector<Piece>& out) const override {
    if (add_prefix_space_ && !piece.text.empty() && piece.text[0] != ' ') {
      piece.text.insert(0, " ");
      if (piece.origin_bytes > 0) ++piece.origin_bytes;
    }
    if (!regex_) {
      if (!piece.text.empty()) out.push_back(map_bytes(piece.text, 0, piece.text.size(), piece.origin_bytes));
      return;
    }
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    regex_->find_all(piece.text, matches);
    std::vector<Span> spans;
    spans.reserve(matches.size() * 2 + 1);
    spans_from_matches(piece.text.size(), matches, spans);
    for (const auto& s : spans) {
      if (s.start < s.end) {
        out.push_back(map_bytes(piece.text, s.start, s.end, sub_origin(piece.origin_bytes, s.start, s.end)));
      }
    }
  }
  std::string describe() const override { return "ByteLevel"; }

 private:
  static Piece map_bytes(const std::string& text, std::size_t start, std::size_t end, std::size_t origin) {
    const auto& table = unicode::byte_to_unicode();
    Piece p;
    p.text.reserve((end - start) * 2);
    for (std::size_t i = start; i < end; ++i) {
      p.text += table[static_cast<unsigned char>(text[i])];
      if (i - start < origin) p.origin_bytes = p.text.size();
    }
    return p;
  }

  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

/// Split on a regex / literal pattern.
class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    regex_->find_all(piece.text, matches);
    std::vector<Span> spans;
    spans.reserve(matches.size() * 2 + 1);
    spans_from_matches(piece.text.size(), matches, spans);
    emit_split(piece, spans, behavior_, invert_, out);
  }
  std::string describe() const override { return "Split"; }

 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

/// Split on every character satisfying a predicate.
template <typename Pred>
class CharSplitPreTokenizer final : public PreTokenizer {
 public:
  CharSplitPreTokenizer(Pred pred, SplitBehavior behavior, const char* name)
      : pred_(pred), behavior_(behavior), name_(name) {}
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    std::vector<Span> spans;
    spans_from_chars(piece.text, pred_, spans);
    emit_split(piece, spans, behavior_, false, out);
  }
  std::string describe() const override { return name_; }

 private:
  Pred pred_;
  SplitBehavior behavior_;
  const char* name_;
};

template <typename Pred>
std::unique_ptr<PreTokenizer> make_char_split(Pred pred, SplitBehavior behavior, const char* name) {
  return std::make_unique<CharSplitPreTokenizer<Pred>>(pred, behavior, name);
}

/// SentencePiece-style: spaces become the replacement character, which is
/// prepended according to the prepend scheme; optionally split before it.
class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  MetaspacePreTokenizer(std::string replacement, Prepend scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  void split(Piece&& piece, std::vector<Piece>& out) const override {
    // Spaces -> replacement.
    std::string text;
    text.reserve(piece.text.size() + 8);
    std::size_t origin = 0;
    for (std::size_t i = 0; i < piece.text.size(); ++i) {
      if (piece.text[i] == ' ') {
        text += replacement_;
      } else {
        text += piece.text[i];
      }
      if (i < piece.origin_bytes) origin = text.size();
    }
    const bool starts_with_rep = text.compare(0, replacement_.size(), replacement_) == 0;
    const bool prepend = !text.empty() && !starts_with_rep &&
                         (scheme_ == Prepend::Always || (scheme_ == Prepend::First && piece.origin_bytes > 0));
    if (prepend) {
      text.insert(0, replacement_);
      if (origin > 0) origin += replacement_.size();
    }
    Piece p{std::move(text), origin};
    if (!split_) {
      if (!p.text.empty()) out.push_back(std::move(p));
      return;
    }
    const char32_t rep = first_code_point();
    std::vector<Span> spans;
    spans_from_chars(p.text, [rep](char32_t c) { return c == rep; }, spans);
    emit_split(p, spans, SplitBehavior::MergedWithNext, false, out);
  }
  std::string describe() const override { return "Metaspace"; }

 private:
  char32_t first_code_point() const {
    std::size_t i = 0;
    return replacement_.empty() ? U'\u2581' : unicode::next_code_point(replacement_, i);
  }

  std::string replacement_;
  Prepend scheme_;
  bool split_;
};

/// HF Whitespace: runs of word characters and runs of other non-space
/// characters (the regex \w+|[^\w\s]+ with Rust-regex \w and \s); spaces dropped.
class WhitespacePreTokenizer final : public PreTokenizer {
 public:
  void split(Piece&& piece, std::vector<Piece>& out) const override {
    enum Class { kWord, kSpace, kOther };
    const std::string& t = piece.text;
    std::size_t i = 0;
    std::size_t run_start = 0;
    int run_class = kSpace;
    const auto flush = [&](std::size_t end) {
      if (run_class != kSpace && run_start < end) {
        out.push_back(Piece{t.substr(run_start, end - run_start), sub_origin(piece.origin_bytes, run_start, end)});
      }
    };
    while (i < t.size()) {
      const std::size_t start = i;
      const char32_t c = unicode::next_code_point(t, i);
      const int cls = unicode::is_word_char(c) ? kWord : unicode::is_white_space(c) ? kSpace : kOther;
      if (cls != run_class) {
        flush(start);
        run_class = cls;
        run_start = start;
      }
    }
    flush(t.size());
  }
  std::string describe() const override { return "Whitespace"; }
};

}  // namespace

SplitBehavior parse_split_behavior(const JsonField& j) {
  const std::string& b = j.str();
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  throw Unsupported(j.where() + ": expected one of Removed, Isolated, MergedWithPrevious, MergedWithNext, " +
                    "Contiguous, got \"" + b + "\"");
}

std::unique_ptr<PreTokenizer> make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
}

std::unique_ptr<PreTokenizer> make_regex_split_pre_tokenizer(const std::string& regex, SplitBehavior behavior,
                                                             bool invert) {
  return std::make_unique<SplitPreTokenizer>(compile_regex(regex, nullptr), behavior, invert);
}

std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(std::vector<std::unique_ptr<PreTokenizer>> stages) {
  return std::make_unique<SequencePreTokenizer>(std::move(stages));
}

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const JsonField& j) {
  if (j.is_null()) return nullptr;
  static const std::vector<std::string> kSupported = {"Sequence",        "ByteLevel",   "Split",
                                                      "Digits",          "Metaspace",   "Whitespace",
                                                      "WhitespaceSplit", "Punctuation", "CharDelimiterSplit",
                                                      "BertPreTokenizer"};
  const std::string type = component_type(j, "pre_tokenizer", kSupported);
  if (type == "Sequence") {
    const JsonField list = j.at("pretokenizers");
    if (!list.is_array()) list.fail("an array of pre-tokenizers");
    std::vector<std::unique_ptr<PreTokenizer>> stages;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto p = parse_pre_tokenizer(list.index(i));
      if (p) stages.push_back(std::move(p));
    }
    return make_sequence_pre_tokenizer(std::move(stages));
  }
  if (type == "ByteLevel") {
    return make_byte_level_pre_tokenizer(j.opt_bool("add_prefix_space", true), j.opt_bool("use_regex", true));
  }
  if (type == "Split") {
    const JsonField pattern = j.at("pattern");
    std::string regex;
    if (auto s = pattern.find("String")) {
      regex = Regex::escape(s->str());
    } else if (auto r = pattern.find("Regex")) {
      regex = r->str();
    } else {
      pattern.fail("an object with \"String\" or \"Regex\"");
    }
    const JsonField where = pattern;
    return std::make_unique<SplitPreTokenizer>(compile_regex(regex, &where), parse_split_behavior(j.at("behavior")),
                                               j.opt_bool("invert", false));
  }
  if (type == "Digits") {
    const bool individual = j.opt_bool("individual_digits", false);
    return make_char_split([](char32_t c) { return unicode::is_numeric(c); },
                           individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous, "Digits");
  }
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (auto r = j.find("replacement")) replacement = r->str();
    MetaspacePreTokenizer::Prepend scheme = MetaspacePreTokenizer::Prepend::Always;
    if (auto s = j.find("prepend_scheme")) {
      const std::string& v = s->str();
      if (v == "always") {
        scheme = MetaspacePreTokenizer::Prepend::Always;
      } else if (v == "first") {
        scheme = MetaspacePreTokenizer::Prepend::First;
      } else if (v == "never") {
        scheme = MetaspacePreTokenizer::Prepend::Never;
      } else {
        s->fail("one of \"always\", \"first\", \"never\"");
      }
    } else if (!j.opt_bool("add_prefix_space", true)) {
      scheme = MetaspacePreTokenizer::Prepend::Never;
    }
    return std::make_unique<MetaspacePreTokenizer>(replacement, scheme, j.opt_bool("split", true));
  }
  if (type == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
  if (type == "WhitespaceSplit") {
    return make_char_split([](char32_t c) { return unicode::is_white_space(c); }, SplitBehavior::Removed,
                           "WhitespaceSplit");
  }
  if (type == "CharDelimiterSplit") {
    const JsonField delimiter = j.at("delimiter");
    std::size_t k = 0;
    if (delimiter.str().empty()) delimiter.fail("a single character");
    const char32_t d = unicode::next_code_point(delimiter.str(), k);
    return make_char_split([d](char32_t c) { return c == d; }, SplitBehavior::Removed, "CharDelimiterSplit");
  }
  if (type == "BertPreTokenizer") {
    // Whitespace removed, then every punctuation character on its own.
    std::vector<std::unique_ptr<PreTokenizer>> stages;
    stages.push_back(make_char_split([](char32_t c) { return unicode::is_white_space(c); }, SplitBehavior::Removed,
                                     "WhitespaceSplit"));
    stages.push_back(make_char_split([](char32_t c) { return unicode::is_punctuation(c); }, SplitBehavior::Isolated,
                                     "Punctuation"));
    return make_sequence_pre_tokenizer(std::move(stages));
  }
  // Punctuation
  SplitBehavior behavior = SplitBehavior::Isolated;
  if (auto b = j.find("behavior")) behavior = parse_split_behavior(*b);
  return make_char_split([](char32_t c) { return unicode::is_punctuation(c); }, behavior, "Punctuation");
}

}  // namespace scalpel::tok
