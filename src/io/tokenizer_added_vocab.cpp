// src/io/tokenizer_added_vocab.cpp — added tokens (HF `AddedVocabulary`).
//
// Added tokens are cut out of the input before the model sees it:
// non-normalized tokens on the raw text, normalized ones on the normalized
// text (matching their normalized content). Matching is leftmost-longest over
// a byte trie; single_word, lstrip and rstrip follow HF's find_matches.
#include <algorithm>
#include <string>
#include <vector>

#include "io/tokenizer_pipeline.hpp"
#include "io/unicode.hpp"

namespace scalpel::tok {

namespace {

bool same_token(const AddedToken& a, const AddedToken& b) {
  return a.content == b.content && a.special == b.special && a.lstrip == b.lstrip && a.rstrip == b.rstrip &&
         a.single_word == b.single_word && a.normalized == b.normalized;
}

/// Whether the last character of text[0, end) is a word character.
bool ends_with_word(std::string_view text, std::size_t end) {
  if (end == 0) return false;
  std::size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return unicode::is_word_char(unicode::next_code_point(text, start));
}

/// Whether the first character of text[begin, ...) is a word character.
bool starts_with_word(std::string_view text, std::size_t begin) {
  if (begin >= text.size()) return false;
  return unicode::is_word_char(unicode::next_code_point(text, begin));
}

/// Start of the run of whitespace that ends at `end`.
std::size_t whitespace_run_start(std::string_view text, std::size_t end) {
  std::size_t pos = end;
  while (pos > 0) {
    std::size_t start = pos - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    std::size_t i = start;
    if (!unicode::is_white_space(unicode::next_code_point(text, i))) break;
    pos = start;
  }
  return pos;
}

/// End of the run of whitespace that starts at `begin`.
std::size_t whitespace_run_end(std::string_view text, std::size_t begin) {
  std::size_t pos = begin;
  while (pos < text.size()) {
    std::size_t i = pos;
    if (!unicode::is_white_space(unicode::next_code_point(text, i))) break;
    pos = i;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::Trie::insert(const std::string& pattern, int64_t id) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (char ch : pattern) {
    const auto byte = static_cast<unsigned char>(ch);
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{-1}));
    if (it != children.end() && it->first == byte) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(nodes.size());
      children.insert(it, {byte, child});
      nodes.emplace_back();
      node = child;
    }
  }
  if (nodes[node].pattern < 0) {  // the first of duplicate patterns wins
    nodes[node].pattern = static_cast<int32_t>(ids.size());
    ids.push_back(id);
  }
  first_byte[static_cast<unsigned char>(pattern[0])] = true;
}

std::pair<std::size_t, int32_t> AddedVocabulary::Trie::longest_at(std::string_view text, std::size_t pos) const {
  std::pair<std::size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{-1}));
    if (it == children.end() || it->first != byte) break;
    node = it->second;
    if (nodes[node].pattern >= 0) best = {i + 1 - pos, nodes[node].pattern};
  }
  return best;
}

void AddedVocabulary::build(const std::vector<AddedToken>& tokens, const BpeModel& model,
                            const Normalizer* normalizer) {
  // Special tokens first, then the others, each in the order given (HF).
  std::vector<AddedToken> special_list, classic_list;
  for (const auto& t : tokens) {
    if (t.special && !t.content.empty() && !special_contents_.count(t.content)) {
      special_list.push_back(t);
      special_contents_[t.content] = true;
    }
  }
  std::unordered_map<int64_t, AddedToken> by_id_map;
  std::unordered_map<std::string, std::vector<AddedToken>> seen;  // content -> tokens registered
  int64_t max_added = -1;
  const auto lookup = [&](const std::string& content) -> std::optional<int64_t> {
    auto it = content_to_id_.find(content);
    if (it != content_to_id_.end()) return it->second;
    return model.token_to_id(content);
  };
  for (const auto& t : tokens) {
    if (t.content.empty()) continue;
    auto& same_content = seen[t.content];
    if (std::any_of(same_content.begin(), same_content.end(),
                    [&t](const AddedToken& e) { return same_token(e, t); })) {
      continue;  // exactly this token was already added
    }
    same_content.push_back(t);
    int64_t id = 0;
    if (auto known = lookup(t.content)) {
      id = *known;
    } else {
      const auto model_size = static_cast<int64_t>(model.size());
      if (max_added < 0) {
        id = model_size;
      } else {
        id = (max_added >= model_size || model_size == 0) ? max_added + 1 : model_size;
      }
    }
    content_to_id_[t.content] = id;
    AddedToken stored = t;
    stored.id = id;
    by_id_map[id] = stored;
    max_added = std::max(max_added, id);
    if (!special_contents_.count(t.content)) classic_list.push_back(t);
  }

  tokens_.clear();
  for (const auto& [id, t] : by_id_map) tokens_.push_back(t);
  std::sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    id_index_[t.id] = i;
    decode_text_[t.id] = (t.normalized && normalizer != nullptr) ? normalizer->apply(t.content) : t.content;
  }

  for (const auto* list : {&special_list, &classic_list}) {
    for (const auto& t : *list) {
      const auto id = lookup(t.content);
      if (!id) continue;
      if (t.normalized) {
        normalized_trie_.insert(normalizer != nullptr ? normalizer->apply(t.content) : t.content, *id);
      } else {
        raw_trie_.insert(t.content, *id);
      }
    }
  }
}

const AddedToken* AddedVocabulary::by_id(int64_t id) const {
  auto it = id_index_.find(id);
  return it == id_index_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int64_t> AddedVocabulary::token_to_id(const std::string& content) const {
  auto it = content_to_id_.find(content);
  if (it == content_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* AddedVocabulary::id_to_token(int64_t id) const {
  auto it = decode_text_.find(id);
  return it == decode_text_.end() ? nullptr : &it->second;
}

bool AddedVocabulary::is_special_content(const std::string& token) const { return special_contents_.count(token) > 0; }

int64_t AddedVocabulary::id_bound() const { return tokens_.empty() ? 0 : tokens_.back().id + 1; }

void AddedVocabulary::split(std::string_view text, bool normalized, std::vector<Split>& out) const {
  const Trie& trie = normalized ? normalized_trie_ : raw_trie_;
  const std::size_t n = text.size();
  if (trie.ids.empty() || n == 0) {
    out.push_back({0, n, -1});
    return;
  }
  std::size_t start_offset = 0;
  std::size_t pos = 0;
  while (pos < n) {
    // Leftmost position where some token starts, longest token there.
    std::size_t start = pos;
    std::pair<std::size_t, int32_t> found{0, -1};
    for (; start < n; ++start) {
      if (!trie.first_byte[static_cast<unsigned char>(text[start])]) continue;
      found = trie.longest_at(text, start);
      if (found.second >= 0) break;
    }
    if (found.second < 0) break;
    std::size_t stop = start + found.first;
    pos = stop;  // the search resumes after the raw match
    const int64_t id = trie.ids[static_cast<std::size_t>(found.second)];
    const AddedToken* tok = by_id(id);
    if (tok != nullptr && tok->single_word) {
      const bool start_space = start == 0 || !ends_with_word(text, start);
      const bool stop_space = stop == n || !starts_with_word(text, stop);
      if (!start_space || !stop_space) continue;
    }
    if (tok != nullptr && tok->lstrip) start = std::max(whitespace_run_start(text, start), start_offset);
    if (tok != nullptr && tok->rstrip) stop = whitespace_run_end(text, stop);
    if (start_offset < start) out.push_back({start_offset, start, -1});
    // A token whose range collapsed (lstrip clamped onto the previous token's
    // rstrip) is an empty split, which HF drops.
    if (start < stop) out.push_back({start, stop, id});
    start_offset = stop;
  }
  if (start_offset != n) out.push_back({start_offset, n, -1});
}

}  // namespace scalpel::tok
