// src/io/tokenizer_bpe.cpp — the BPE model (HF `tokenizers::models::bpe`).
//
// A pre-token is split into characters (each looked up in the vocabulary,
// with continuing_subword_prefix / end_of_word_suffix, byte fallback and
// unknown-token handling), then adjacent symbols are merged by ascending merge
// rank — leftmost first among equal ranks — with a priority queue over a
// doubly linked list of symbols: O(n log n) in the length of the pre-token.
#include <cstdio>
#include <functional>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "io/tokenizer_pipeline.hpp"
#include "io/unicode.hpp"

namespace scalpel::tok {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

/// A candidate merge of the symbol at `pos` with its right neighbour.
struct MergeCandidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
};

/// Orders the max-heap so that the lowest rank, then the leftmost position, is on top.
struct MergeOrder {
  bool operator()(const MergeCandidate& a, const MergeCandidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.pos > b.pos;
  }
};

}  // namespace

struct BpeModel::Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
};

BpeModel::BpeModel(const std::vector<std::pair<std::string, int64_t>>& vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
                   const std::string& file)
    : options_(std::move(options)), cache_(new CacheShard[kCacheShards]) {
  // id -> token table first, so that the map's string_views stay valid.
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0 || id >= (int64_t{1} << 31)) {
      throw FormatError(file + ": field \"model.vocab\": expected ids in [0, 2^31), got " + std::to_string(id) +
                        " for token \"" + token + "\"");
    }
    max_id = std::max(max_id, id);
  }
  id_to_token_.resize(static_cast<std::size_t>(max_id + 1));
  has_id_.assign(id_to_token_.size(), false);
  for (const auto& [token, id] : vocab) {
    if (!has_id_[id]) {
      id_to_token_[id] = token;
      has_id_[id] = true;
    } else {
      // Another token with the same id: encodable, but decodes as the first.
      extra_.emplace_back(std::make_unique<std::string>(token), static_cast<int32_t>(id));
    }
  }
  vocab_.reserve(vocab.size());
  for (std::size_t id = 0; id < id_to_token_.size(); ++id) {
    if (has_id_[id]) vocab_[std::string_view(id_to_token_[id])] = static_cast<int32_t>(id);
  }
  for (const auto& [token, id] : extra_) vocab_.emplace(std::string_view(*token), id);

  if (options_.continuing_subword_prefix) prefix_ = *options_.continuing_subword_prefix;
  if (options_.end_of_word_suffix) suffix_ = *options_.end_of_word_suffix;

  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto where = [&]() { return file + ": field \"model.merges[" + std::to_string(rank) + "]\""; };
    const auto a_id = lookup(a);
    if (!a_id) throw FormatError(where() + ": expected tokens of the vocabulary, got \"" + a + "\" which is not one");
    const auto b_id = lookup(b);
    if (!b_id) throw FormatError(where() + ": expected tokens of the vocabulary, got \"" + b + "\" which is not one");
    std::string merged = a;
    if (!prefix_.empty() && b.compare(0, prefix_.size(), prefix_) == 0) {
      merged.append(b, prefix_.size(), std::string::npos);
    } else {
      merged += b;
    }
    const auto new_id = lookup(merged);
    if (!new_id) {
      throw FormatError(where() + ": expected the merged token \"" + merged +
                        "\" in the vocabulary, got a merge that produces a token missing from it");
    }
    merges_[pair_key(*a_id, *b_id)] = {static_cast<int32_t>(rank), *new_id};
  }

  if (options_.unk_token) unk_id_ = lookup(*options_.unk_token);
  if (options_.byte_fallback) {
    byte_ids_.assign(256, -1);
    char name[8];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      if (auto id = lookup(name)) byte_ids_[b] = *id;
    }
  }
}

BpeModel::~BpeModel() = default;

std::optional<int32_t> BpeModel::lookup(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::optional<int64_t> BpeModel::token_to_id(std::string_view token) const {
  auto id = lookup(token);
  if (!id) return std::nullopt;
  return *id;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size())) return nullptr;
  if (!has_id_[static_cast<std::size_t>(id)]) return nullptr;  // a hole in the id range
  return &id_to_token_[static_cast<std::size_t>(id)];
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  int32_t pending_unk = -1;  // a (possibly fused) run of unknown characters, or -1
  const auto push = [&symbols](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, n - 1, n + 1});
  };
  std::string scratch;
  std::size_t i = 0;
  while (i < word.size()) {
    const std::size_t start = i;
    i += unicode::utf8_len(static_cast<unsigned char>(word[i]));
    if (i > word.size()) i = word.size();
    std::string_view piece = word.substr(start, i - start);
    const bool add_prefix = !prefix_.empty() && start > 0;
    const bool add_suffix = !suffix_.empty() && i == word.size();
    if (add_prefix || add_suffix) {
      scratch.clear();
      if (add_prefix) scratch += prefix_;
      scratch += piece;
      if (add_suffix) scratch += suffix_;
      piece = scratch;
    }
    if (auto id = lookup(piece)) {
      if (pending_unk >= 0) {
        push(pending_unk);
        pending_unk = -1;
      }
      push(*id);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char ch : piece) all = all && byte_ids_[static_cast<unsigned char>(ch)] >= 0;
      if (all) {
        // As in HF, a pending unknown token is not flushed before the bytes.
        for (char ch : piece) push(byte_ids_[static_cast<unsigned char>(ch)]);
        continue;
      }
    }
    if (options_.unk_token) {
      if (!unk_id_) {
        throw FormatError("tokenizer: field \"model.unk_token\": expected a token of the vocabulary, got \"" +
                          *options_.unk_token + "\" which is not one (needed for an unknown character)");
      }
      if (pending_unk >= 0 && !options_.fuse_unk) push(pending_unk);
      pending_unk = *unk_id_;
    }
    // Without an unknown token the character is dropped, as in HF.
  }
  if (pending_unk >= 0) push(pending_unk);
  if (!symbols.empty()) symbols.back().next = -1;

  // Merge by rank.
  std::priority_queue<MergeCandidate, std::vector<MergeCandidate>, MergeOrder> queue;
  const auto candidate = [this](int32_t left, int32_t right, int32_t pos, auto&& sink) {
    auto it = merges_.find(pair_key(left, right));
    if (it != merges_.end()) sink(MergeCandidate{it->second.first, pos, it->second.second});
  };
  {
    std::vector<MergeCandidate> initial;
    initial.reserve(symbols.size());
    for (std::size_t k = 0; k + 1 < symbols.size(); ++k) {
      candidate(symbols[k].id, symbols[k + 1].id, static_cast<int32_t>(k),
                [&initial](const MergeCandidate& m) { initial.push_back(m); });
    }
    queue = decltype(queue)(MergeOrder(), std::move(initial));
  }
  const auto enqueue = [&queue](const MergeCandidate& m) { queue.push(m); };
  while (!queue.empty()) {
    const MergeCandidate top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.id < 0 || cur.next < 0) continue;  // removed, or last symbol
    Symbol& right = symbols[cur.next];
    // Skip stale entries: the pair at this position must still merge to new_id.
    auto it = merges_.find(pair_key(cur.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    cur.id = top.new_id;
    right.id = -1;
    cur.next = right.next;
    if (cur.next >= 0) symbols[cur.next].prev = top.pos;
    if (cur.prev >= 0) candidate(symbols[cur.prev].id, cur.id, cur.prev, enqueue);
    if (cur.next >= 0) candidate(cur.id, symbols[cur.next].id, top.pos, enqueue);
  }
  for (const Symbol& s : symbols) {
    if (s.id >= 0) ids.push_back(s.id);
  }
}

void BpeModel::tokenize(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto id = lookup(word)) {
      out.push_back(*id);
      return;
    }
  }
  if (word.size() > kLongWordBytes && prefix_.empty() && suffix_.empty()) {
    tokenize_long(word, out);
    return;
  }
  tokenize_chunk(word, out);
}

// A long pre-token (a whole text when there is no pre-tokenizer, as for
// Llama-2 / Mistral) is cut where no merge can ever cross, and the pieces are
// merged independently — which gives exactly the same ids.
//
// Every symbol's string starts with the string of its first character and
// ends with that of its last, so a merge across the boundary between two
// in-vocabulary characters a|b yields a token containing "ab". If no
// vocabulary token contains the pair, nothing crosses that boundary, and as
// merges on either side never interact, their relative order is irrelevant.
// Boundaries next to characters outside the vocabulary (unknown / byte
// fallback symbols, whose strings differ from the text) are never cut.
void BpeModel::tokenize_long(std::string_view word, std::vector<int64_t>& out) const {
  std::call_once(pairs_once_, [this]() {
    for (const auto& [token, id] : vocab_) {
      std::size_t i = 0;
      char32_t prev = 0;
      bool has_prev = false;
      while (i < token.size()) {
        const char32_t c = unicode::next_code_point(token, i);
        if (has_prev) inner_pairs_.insert(pair_key(static_cast<int32_t>(prev), static_cast<int32_t>(c)));
        prev = c;
        has_prev = true;
      }
    }
  });
  std::size_t chunk_start = 0;
  char32_t prev = 0;
  bool prev_known = false;
  std::size_t i = 0;
  while (i < word.size()) {
    const std::size_t start = i;
    const char32_t c = unicode::next_code_point(word, i);
    const bool known = lookup(word.substr(start, i - start)).has_value();
    if (start > chunk_start && prev_known && known &&
        !inner_pairs_.count(pair_key(static_cast<int32_t>(prev), static_cast<int32_t>(c)))) {
      tokenize_chunk(word.substr(chunk_start, start - chunk_start), out);
      chunk_start = start;
    }
    prev = c;
    prev_known = known;
  }
  tokenize_chunk(word.substr(chunk_start), out);
}

void BpeModel::tokenize_chunk(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  CacheShard* shard = nullptr;
  if (cacheable) {
    shard = &cache_[std::hash<std::string_view>()(word) % kCacheShards];
    std::lock_guard<std::mutex> lock(shard->mutex);
    auto it = shard->map.find(std::string(word));
    if (it != shard->map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard->mutex);
    if (shard->map.size() < kCacheEntriesPerShard) shard->map.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace scalpel::tok
