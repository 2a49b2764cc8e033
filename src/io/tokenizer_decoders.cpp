// src/io/tokenizer_decoders.cpp — decoders and post-processors
// (HF `tokenizers::decoders` and `tokenizers::processors`).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/tokenizer_pipeline.hpp"
#include "io/tokenizer_regex.hpp"
#include "io/unicode.hpp"

namespace scalpel::tok {

namespace {

// ───────────────────────────────── decoders ────────────────────────────────

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> stages) : stages_(std::move(stages)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& s : stages_) s->decode_chain(tokens);
  }
  std::string describe() const override {
    std::string d = "Sequence[";
    for (std::size_t i = 0; i < stages_.size(); ++i) d += (i ? "," : "") + stages_[i]->describe();
    return d + "]";
  }

 private:
  std::vector<std::unique_ptr<Decoder>> stages_;
};

/// Byte-level stand-in characters back to bytes; the whole sequence becomes
/// one string with ill-formed UTF-8 replaced by U+FFFD. A token containing a
/// character outside the byte alphabet contributes its UTF-8 bytes as is.
class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    std::string token_bytes;
    for (const auto& t : tokens) {
      token_bytes.clear();
      bool all_mapped = true;
      std::size_t i = 0;
      while (i < t.size()) {
        const int b = unicode::unicode_to_byte(unicode::next_code_point(t, i));
        if (b < 0) {
          all_mapped = false;
          break;
        }
        token_bytes.push_back(static_cast<char>(b));
      }
      bytes += all_mapped ? token_bytes : t;
    }
    tokens.assign(1, unicode::from_utf8_lossy(bytes));
  }
  std::string describe() const override { return "ByteLevel"; }
};

/// The replacement character back to spaces; in the first token it is
/// dropped unless the prepend scheme is "never".
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool drop_in_first)
      : replacement_(std::move(replacement)), drop_in_first_(drop_in_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    char32_t rep = U'\u2581';
    if (!replacement_.empty()) {
      std::size_t k = 0;
      rep = unicode::next_code_point(replacement_, k);
    }
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      std::string out;
      out.reserve(tokens[t].size());
      std::size_t i = 0;
      while (i < tokens[t].size()) {
        const char32_t c = unicode::next_code_point(tokens[t], i);
        if (c == rep) {
          if (!(t == 0 && drop_in_first_)) out.push_back(' ');
        } else {
          unicode::append_utf8(out, c);
        }
      }
      tokens[t].swap(out);
    }
  }
  std::string describe() const override { return "Metaspace"; }

 private:
  std::string replacement_;
  bool drop_in_first_;
};

/// Replaces a literal or regex pattern inside every token.
class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(ReplacePattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    for (auto& t : tokens) {
      matches.clear();
      pattern_.find_all(t, matches);
      if (matches.empty()) continue;
      std::string out;
      std::size_t prev = 0;
      for (const auto& [a, b] : matches) {
        out.append(t, prev, a - prev);
        out += content_;
        prev = b;
      }
      out.append(t, prev, std::string::npos);
      t.swap(out);
    }
  }
  std::string describe() const override { return "Replace"; }

 private:
  ReplacePattern pattern_;
  std::string content_;
};

/// Runs of "<0xNN>" tokens back to bytes; a run that is not valid UTF-8
/// becomes one U+FFFD per byte.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;
    const auto flush = [&]() {
      if (pending.empty()) return;
      if (unicode::find_invalid_utf8(pending) == unicode::npos) {
        out.push_back(pending);
      } else {
        for (std::size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (parse_byte_token(t, byte)) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
  std::string describe() const override { return "ByteFallback"; }

 private:
  /// "<0xNN>" with two characters parsed as a hexadecimal u8 (Rust
  /// u8::from_str_radix, which also accepts a leading '+').
  static bool parse_byte_token(const std::string& t, int& byte) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
    const auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = hex(t[3]);
    const int lo = hex(t[4]);
    if (t[3] == '+' && lo >= 0) {
      byte = lo;
      return true;
    }
    if (hi < 0 || lo < 0) return false;
    byte = hi * 16 + lo;
    return true;
  }
};

/// Concatenates all tokens into one.
class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
  std::string describe() const override { return "Fuse"; }
};

/// Removes up to `start` leading and `stop` trailing `content` characters of each token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, std::size_t start, std::size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<char32_t> chars;
      std::size_t i = 0;
      while (i < t.size()) chars.push_back(unicode::next_code_point(t, i));
      std::size_t begin = 0;
      while (begin < start_ && begin < chars.size() && chars[begin] == content_) ++begin;
      std::size_t end = chars.size();
      for (std::size_t k = 0; k < stop_ && end > begin && chars[end - 1] == content_; ++k) --end;
      std::string out;
      for (std::size_t k = begin; k < end; ++k) unicode::append_utf8(out, chars[k]);
      t.swap(out);
    }
  }
  std::string describe() const override { return "Strip"; }

 private:
  char32_t content_;
  std::size_t start_, stop_;
};

/// End-of-word suffix back to spaces (none after the last token).
class BpeSuffixDecoder final : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::string replacement = (i + 1 == tokens.size()) ? "" : " ";
      std::string& t = tokens[i];
      std::string out;
      std::size_t prev = 0, pos = 0;
      while ((pos = t.find(suffix_, prev)) != std::string::npos) {
        out.append(t, prev, pos - prev);
        out += replacement;
        prev = pos + suffix_.size();
      }
      out.append(t, prev, std::string::npos);
      t.swap(out);
    }
  }
  std::string describe() const override { return "BPEDecoder"; }

 private:
  std::string suffix_;
};

// ───────────────────────────── post-processors ─────────────────────────────

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> stages) : stages_(std::move(stages)) {}
  void process(std::vector<int64_t>& ids) const override {
    for (const auto& s : stages_) s->process(ids);
  }
  std::string describe() const override {
    std::string d = "Sequence[";
    for (std::size_t i = 0; i < stages_.size(); ++i) d += (i ? "," : "") + stages_[i]->describe();
    return d + "]";
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> stages_;
};

/// Wraps the sequence in fixed prefix / suffix ids (TemplateProcessing for a
/// single sequence, RobertaProcessing, BertProcessing, add_bos_token).
class AffixProcessor final : public PostProcessor {
 public:
  AffixProcessor(std::vector<int64_t> prefix, std::vector<int64_t> suffix, std::string name)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)), name_(std::move(name)) {}
  void process(std::vector<int64_t>& ids) const override {
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }
  std::string describe() const override { return name_; }

 private:
  std::vector<int64_t> prefix_, suffix_;
  std::string name_;
};

/// Post-processors that do not change ids (ByteLevel: offsets only).
class NoOpProcessor final : public PostProcessor {
 public:
  explicit NoOpProcessor(std::string name) : name_(std::move(name)) {}
  void process(std::vector<int64_t>&) const override {}
  std::string describe() const override { return name_; }

 private:
  std::string name_;
};

/// Ids of a TemplateProcessing special token.
std::vector<int64_t> template_special_ids(const JsonField& processor, const std::string& name, const JsonField& at) {
  auto specials = processor.find("special_tokens");
  std::optional<JsonField> entry;
  if (specials) entry = specials->find(name);
  if (!entry) {
    throw FormatError(at.where() + ": expected a special token listed in \"special_tokens\", got \"" + name +
                      "\" which is not there");
  }
  const JsonField ids = entry->at("ids");
  if (!ids.is_array()) ids.fail("an array of ids");
  std::vector<int64_t> out;
  for (std::size_t i = 0; i < ids.size(); ++i) out.push_back(ids.index(i).integer());
  return out;
}

std::unique_ptr<PostProcessor> parse_template(const JsonField& j) {
  const JsonField single = j.at("single");
  std::vector<int64_t> prefix, suffix;
  bool seen_sequence = false;
  const auto add_special = [&](const std::vector<int64_t>& ids) {
    auto& target = seen_sequence ? suffix : prefix;
    target.insert(target.end(), ids.begin(), ids.end());
  };
  if (single.is_string()) {
    // "[CLS] $A [SEP]" form.
    std::string text = single.str();
    std::size_t pos = 0;
    while (pos < text.size()) {
      while (pos < text.size() && text[pos] == ' ') ++pos;
      std::size_t end = text.find(' ', pos);
      if (end == std::string::npos) end = text.size();
      if (end == pos) break;
      std::string item = text.substr(pos, end - pos);
      pos = end;
      if (item[0] == '$') {
        if (item != "$A" && item != "$" && item.rfind("$A:", 0) != 0 && item.rfind("$0", 0) != 0 &&
            item.rfind("$:", 0) != 0) {
          single.fail("a single-sequence template using only $A");
        }
        seen_sequence = true;
      } else {
        const auto colon = item.rfind(':');
        if (colon != std::string::npos && colon > 0) item = item.substr(0, colon);
        add_special(template_special_ids(j, item, single));
      }
    }
  } else {
    if (!single.is_array()) single.fail("an array of template pieces");
    for (std::size_t i = 0; i < single.size(); ++i) {
      const JsonField piece = single.index(i);
      if (auto s = piece.find("SpecialToken")) {
        add_special(template_special_ids(j, s->at("id").str(), *s));
      } else if (auto q = piece.find("Sequence")) {
        const std::string& id = q->at("id").str();
        if (id != "A") q->at("id").fail("\"A\" in the single-sequence template");
        seen_sequence = true;
      } else {
        piece.fail("an object with \"SpecialToken\" or \"Sequence\"");
      }
    }
  }
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix), "TemplateProcessing");
}

/// ["token", id] of Roberta / Bert processors.
int64_t pair_id(const JsonField& j) {
  if (!j.is_array() || j.size() != 2) j.fail("a [token, id] pair");
  return j.index(1).integer();
}

}  // namespace

std::unique_ptr<Decoder> make_byte_level_decoder() { return std::make_unique<ByteLevelDecoder>(); }

std::unique_ptr<Decoder> parse_decoder(const JsonField& j) {
  if (j.is_null()) return nullptr;
  static const std::vector<std::string> kSupported = {"Sequence", "ByteLevel", "Metaspace", "Replace", "ByteFallback",
                                                      "Fuse", "Strip", "BPEDecoder"};
  const std::string type = component_type(j, "decoder", kSupported);
  if (type == "Sequence") {
    const JsonField list = j.at("decoders");
    if (!list.is_array()) list.fail("an array of decoders");
    std::vector<std::unique_ptr<Decoder>> stages;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto d = parse_decoder(list.index(i));
      if (d) stages.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(stages));
  }
  if (type == "ByteLevel") return make_byte_level_decoder();
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (auto r = j.find("replacement")) replacement = r->str();
    bool drop_in_first = true;
    if (auto s = j.find("prepend_scheme")) {
      drop_in_first = s->str() != "never";
    } else {
      drop_in_first = j.opt_bool("add_prefix_space", true);
    }
    return std::make_unique<MetaspaceDecoder>(replacement, drop_in_first);
  }
  if (type == "Replace") {
    ReplacePattern pattern(j.at("pattern"));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), j.at("content").str());
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const JsonField content = j.at("content");
    std::size_t k = 0;
    const std::string& c = content.str();
    if (c.empty()) content.fail("a single character");
    const char32_t ch = unicode::next_code_point(c, k);
    const int64_t start = j.opt_int("start", 0);
    const int64_t stop = j.opt_int("stop", 0);
    if (start < 0 || stop < 0) j.fail("non-negative \"start\" and \"stop\"");
    return std::make_unique<StripDecoder>(ch, static_cast<std::size_t>(start), static_cast<std::size_t>(stop));
  }
  // BPEDecoder
  std::string suffix = "</w>";
  if (auto s = j.find("suffix")) suffix = s->str();
  return std::make_unique<BpeSuffixDecoder>(suffix);
}

std::unique_ptr<PostProcessor> make_affix_post_processor(std::vector<int64_t> prefix, std::vector<int64_t> suffix) {
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix), "TemplateProcessing");
}

std::unique_ptr<PostProcessor> parse_post_processor(const JsonField& j) {
  if (j.is_null()) return nullptr;
  static const std::vector<std::string> kSupported = {"TemplateProcessing", "ByteLevel", "RobertaProcessing",
                                                      "BertProcessing", "Sequence"};
  const std::string type = component_type(j, "post_processor", kSupported);
  if (type == "Sequence") {
    const JsonField list = j.at("processors");
    if (!list.is_array()) list.fail("an array of post-processors");
    std::vector<std::unique_ptr<PostProcessor>> stages;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto p = parse_post_processor(list.index(i));
      if (p) stages.push_back(std::move(p));
    }
    return std::make_unique<SequenceProcessor>(std::move(stages));
  }
  if (type == "TemplateProcessing") return parse_template(j);
  if (type == "ByteLevel") return std::make_unique<NoOpProcessor>("ByteLevel");
  // RobertaProcessing / BertProcessing: <cls> $A <sep>.
  return std::make_unique<AffixProcessor>(std::vector<int64_t>{pair_id(j.at("cls"))},
                                          std::vector<int64_t>{pair_id(j.at("sep"))}, type);
}

}  // namespace scalpel::tok
