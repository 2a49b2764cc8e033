// src/io/tokenizer_normalizers.cpp — normalizers (HF `tokenizers::normalizers`).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/tokenizer_pipeline.hpp"
#include "io/tokenizer_regex.hpp"
#include "io/unicode.hpp"

namespace scalpel::tok {

ReplacePattern::ReplacePattern(const JsonField& pattern) {
  if (auto lit = pattern.find("String")) {
    literal_ = lit->str();
    if (literal_.empty()) regex_ = std::make_shared<const Regex>("");
    return;
  }
  if (auto r = pattern.find("Regex")) {
    try {
      regex_ = std::make_shared<const Regex>(r->str());
    } catch (const std::invalid_argument& e) {
      throw FormatError(r->where() + ": expected a valid regex, got one that " + e.what());
    }
    return;
  }
  pattern.fail("an object with \"String\" or \"Regex\"");
}

void ReplacePattern::find_all(const std::string& text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  if (regex_) {
    regex_->find_all(text, out);
    return;
  }
  std::size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != std::string::npos) {
    out.emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
}

namespace {

/// Rewrites `text` character by character with `fn(cp, out)`, keeping
/// `origin_bytes` pointing at the output of the original leading characters.
template <typename Fn>
void map_chars(std::string& text, std::size_t& origin_bytes, Fn fn) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  std::size_t new_origin = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    const char32_t cp = unicode::next_code_point(text, i);
    fn(cp, out);
    if (start < origin_bytes) new_origin = out.size();
  }
  text.swap(out);
  origin_bytes = new_origin;
}

// ---------------------------------------------------------------------------

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> stages) : stages_(std::move(stages)) {}
  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    for (const auto& s : stages_) s->normalize(text, origin_bytes);
  }
  std::string describe() const override {
    std::string d = "Sequence[";
    for (std::size_t i = 0; i < stages_.size(); ++i) d += (i ? "," : "") + stages_[i]->describe();
    return d + "]";
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> stages_;
};

/// Prepends a string to non-empty text.
class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    if (text.empty()) return;
    text.insert(0, prepend_);
    if (origin_bytes > 0) origin_bytes += prepend_.size();
  }
  std::string describe() const override { return "Prepend"; }

 private:
  std::string prepend_;
};

/// Replaces every match of a literal string or a regex with `content`.
class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(ReplacePattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}

  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    pattern_.find_all(text, matches);
    if (matches.empty()) return;
    std::string out;
    out.reserve(text.size());
    std::size_t new_origin = 0;
    std::size_t prev = 0;
    for (const auto& [a, b] : matches) {
      if (prev < a) {
        if (prev < origin_bytes) new_origin = out.size() + std::min(a, origin_bytes) - prev;
        out.append(text, prev, a - prev);
      }
      if (a < origin_bytes) new_origin = out.size() + content_.size();
      out += content_;
      prev = b;
    }
    if (prev < text.size()) {
      if (prev < origin_bytes) new_origin = out.size() + std::min(text.size(), origin_bytes) - prev;
      out.append(text, prev, std::string::npos);
    }
    text.swap(out);
    origin_bytes = new_origin;
  }
  std::string describe() const override { return "Replace"; }

 private:
  ReplacePattern pattern_;
  std::string content_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(unicode::NormalForm form, const char* name) : form_(form), name_(name) {}
  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    std::string out = unicode::normalize(text, form_);
    if (origin_bytes > 0 && !out.empty()) {
      const std::string head = unicode::normalize(std::string_view(text).substr(0, origin_bytes), form_);
      if (out.compare(0, head.size(), head) == 0) {
        origin_bytes = head.size();
      } else {
        origin_bytes = unicode::utf8_len(static_cast<unsigned char>(out[0]));
      }
    } else {
      origin_bytes = 0;
    }
    text.swap(out);
  }
  std::string describe() const override { return name_; }

 private:
  unicode::NormalForm form_;
  const char* name_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    map_chars(text, origin_bytes, [](char32_t c, std::string& out) { unicode::append_lowercase(out, c); });
  }
  std::string describe() const override { return "Lowercase"; }
};

/// Removes leading and/or trailing whitespace.
class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    if (right_) {
      std::size_t end = text.size();
      // Walk back over whitespace characters.
      while (end > 0) {
        std::size_t start = end - 1;
        while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        std::size_t i = start;
        if (!unicode::is_white_space(unicode::next_code_point(text, i))) break;
        end = start;
      }
      text.resize(end);
      origin_bytes = std::min(origin_bytes, end);
    }
    if (left_) {
      std::size_t i = 0;
      while (i < text.size()) {
        std::size_t j = i;
        if (!unicode::is_white_space(unicode::next_code_point(text, j))) break;
        i = j;
      }
      text.erase(0, i);
      origin_bytes = origin_bytes > i ? origin_bytes - i : 0;
    }
  }
  std::string describe() const override { return "Strip"; }

 private:
  bool left_, right_;
};

/// Removes combining marks (HF StripAccents; meant to follow NFD).
class StripAccentsNormalizer final : public Normalizer {
 public:
  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    map_chars(text, origin_bytes, [](char32_t c, std::string& out) {
      if (!unicode::is_combining_mark(c)) unicode::append_utf8(out, c);
    });
  }
  std::string describe() const override { return "StripAccents"; }
};

/// Every byte replaced by its GPT-2 byte-level character.
class ByteLevelNormalizer final : public Normalizer {
 public:
  void normalize(std::string& text, std::size_t& origin_bytes) const override {
    const auto& table = unicode::byte_to_unicode();
    std::string out;
    out.reserve(text.size() * 2);
    std::size_t new_origin = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      out += table[static_cast<unsigned char>(text[i])];
      if (i < origin_bytes) new_origin = out.size();
    }
    text.swap(out);
    origin_bytes = new_origin;
  }
  std::string describe() const override { return "ByteLevel"; }
};

}  // namespace

std::unique_ptr<Normalizer> make_nfc_normalizer() {
  return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFC, "NFC");
}

std::unique_ptr<Normalizer> parse_normalizer(const JsonField& j) {
  if (j.is_null()) return nullptr;
  static const std::vector<std::string> kSupported = {"Sequence", "Prepend", "Replace",      "NFC",      "NFD",
                                                      "NFKC",     "NFKD",    "Lowercase",    "Strip",    "StripAccents",
                                                      "ByteLevel"};
  const std::string type = component_type(j, "normalizer", kSupported);
  if (type == "Sequence") {
    const JsonField list = j.at("normalizers");
    if (!list.is_array()) list.fail("an array of normalizers");
    std::vector<std::unique_ptr<Normalizer>> stages;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto n = parse_normalizer(list.index(i));
      if (n) stages.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(stages));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(j.at("prepend").str());
  if (type == "Replace") {
    ReplacePattern pattern(j.at("pattern"));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), j.at("content").str());
  }
  if (type == "NFC") return make_nfc_normalizer();
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFD, "NFD");
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFKC, "NFKC");
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(unicode::NormalForm::NFKD, "NFKD");
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(j.opt_bool("strip_left", true), j.opt_bool("strip_right", true));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  return std::make_unique<StripAccentsNormalizer>();
}

}  // namespace scalpel::tok
