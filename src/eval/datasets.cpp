// Evaluation data readers (scalpel/eval/datasets.hpp).
#include "scalpel/eval/datasets.hpp"

#include <cstdlib>
#include <filesystem>

#include "io/json_rows.hpp"
#include "scalpel/errors.hpp"
#include "scalpel/io/tokenizer.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

fs::path data_file(const std::string& data_dir, const std::string& a, const std::string& b) {
  std::optional<std::string> d = data_dir.empty() ? shared_data_dir() : std::optional<std::string>(data_dir);
  if (!d || !fs::exists(fs::path(*d) / a / b))
    throw FileNotFound(a + "/" + b + " not found" + (d ? " in " + *d : std::string()) +
                       ": set SCALPEL_DATA to a directory holding the evaluation sets (../shared/data layout; see its "
                       "SOURCES.md), or pass data_dir");
  return fs::path(*d) / a / b;
}

std::vector<std::pair<std::string, std::string>> pairs_of(const fs::path& p, int64_t n, const char* q, const char* a) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& row : detail::read_json_rows(p.string(), "evaluation set", static_cast<size_t>(std::max<int64_t>(n, 0)))) {
    const Json& r = row.value;
    if (!r.is_object() || !r.contains(q) || !r.contains(a))
      throw FormatError(detail::expected_got(row.where, std::string("fields '") + q + "' and '" + a + "'",
                                             r.dump().substr(0, 120)));
    if (!r[q].is_string() || !r[a].is_string())
      throw FormatError(detail::expected_got(p.string() + std::string(" fields '") + q + "' and '" + a + "'", "strings",
                                             r[q].type_name() + std::string(" and ") + r[a].type_name()));
    out.emplace_back(r[q].get<std::string>(), r[a].get<std::string>());
  }
  return out;
}

}  // namespace

std::optional<std::string> shared_data_dir() {
  if (const char* d = std::getenv("SCALPEL_DATA"); d != nullptr && *d && fs::is_directory(d)) return std::string(d);
  if (const char* s = std::getenv("SCALPEL_SHARED"); s != nullptr && *s && fs::is_directory(fs::path(s) / "data"))
    return (fs::path(s) / "data").string();
  return std::nullopt;
}

std::vector<std::vector<int64_t>> wikitext2(const Tokenizer& tokenizer, int64_t n, int64_t seq_len,
                                            const std::string& data_dir) {
  if (n < 1 || seq_len < 1)
    throw InvalidArgument(detail::expected_got("wikitext2 n and seq_len", "at least 1",
                                               std::to_string(n) + " and " + std::to_string(seq_len)));
  const std::string raw =
      detail::read_text_file(data_file(data_dir, "wikitext-2-raw", "wiki.test.raw").string(), "WikiText-2");
  // Universal newlines, as a text-mode read gives (the file has CRLF line ends).
  std::string text;
  text.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\r') {
      text += raw[i];
    } else {
      text += '\n';
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    }
  }
  // The first n·seq_len·8 characters (code points, not bytes).
  const int64_t chars = n * seq_len * 8;
  int64_t seen = 0;
  size_t cut = 0;
  for (; cut < text.size(); ++cut)
    if ((static_cast<unsigned char>(text[cut]) & 0xC0) != 0x80 && seen++ == chars) break;
  text.resize(cut);
  const auto ids = tokenizer.encode(text);
  const auto empty = tokenizer.encode("");
  const bool bos = !ids.empty() && !empty.empty() && empty[0] == ids[0];
  const size_t body = bos ? 1 : 0, L = static_cast<size_t>(seq_len);
  std::vector<std::vector<int64_t>> out;
  for (size_t i = 0; i < static_cast<size_t>(n) && body + (i + 1) * L <= ids.size(); ++i) {
    std::vector<int64_t> w(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(body));
    w.insert(w.end(), ids.begin() + static_cast<std::ptrdiff_t>(body + i * L),
             ids.begin() + static_cast<std::ptrdiff_t>(body + (i + 1) * L));
    out.push_back(std::move(w));
  }
  if (out.empty()) throw InvalidArgument("wikitext2: the text is shorter than one window of " + std::to_string(seq_len) +
                                         " tokens");
  return out;
}

std::vector<std::pair<std::string, std::string>> gsm8k(int64_t n, const std::string& data_dir) {
  return pairs_of(data_file(data_dir, "gsm8k", "test.jsonl"), n, "question", "answer");
}

std::vector<std::pair<std::string, std::string>> mbpp(int64_t n, const std::string& data_dir) {
  return pairs_of(data_file(data_dir, "mbpp", "mbpp.jsonl"), n, "text", "code");
}

}  // namespace scalpel
