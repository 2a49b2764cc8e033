// tests/cpp/test_tokenizer.cpp — scalpel::Tokenizer.
//
// Unit tests on tiny hand-made tokenizer.json documents (expected values were
// produced by the Hugging Face `tokenizers` library on the same documents),
// every malformed-input path, and the real tokenizer files under
// $SCALPEL_SHARED (skipped when that directory is missing).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "scalpel/errors.hpp"
#include "scalpel/io/tokenizer.hpp"

namespace {

using nlohmann::json;
using scalpel::Tokenizer;
using Ids = std::vector<int64_t>;

const std::string kMeta = "\xE2\x96\x81";  // ▁

// ─────────────────────────────── fixtures ──────────────────────────────────

json added_token(int64_t id, const std::string& content, bool special, bool normalized = false, bool lstrip = false,
                 bool rstrip = false, bool single_word = false) {
  return json{{"id", id},         {"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
              {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}};
}

json bpe_model(json vocab, json merges) {
  return json{{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", false},
              {"vocab", std::move(vocab)},
              {"merges", std::move(merges)}};
}

/// SentencePiece-style BPE (Llama-2 layout): Prepend ▁ + spaces -> ▁, byte
/// fallback, <s> template, Replace/ByteFallback/Fuse/Strip decoder.
json sp_tokenizer() {
  json vocab = json::object();
  const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", kMeta, "a", "b", "c", "ab", kMeta + "a", kMeta + "ab",
                                           "abc", "h", "e", "l", "o", "he", "ll", "llo", "hello", kMeta + "hello",
                                           kMeta + "h"};
  for (const std::string& t : tokens) {
    vocab[t] = vocab.size();
  }
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = vocab.size();
  }
  json model = bpe_model(vocab, json::array({"a b", kMeta + " a", kMeta + "a b", "ab c", "h e", "l l", "ll o", "he llo",
                                             kMeta + " h", kMeta + " hello"}));
  model["unk_token"] = "<unk>";
  model["fuse_unk"] = true;
  model["byte_fallback"] = true;
  json doc;
  doc["version"] = "1.0";
  doc["added_tokens"] = json::array({added_token(0, "<unk>", true), added_token(1, "<s>", true), added_token(2, "</s>", true)});
  doc["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        json::array({{{"type", "Prepend"}, {"prepend", kMeta}},
                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}}})}};
  doc["pre_tokenizer"] = nullptr;
  doc["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", json::array()},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  doc["decoder"] = {{"type", "Sequence"},
                    {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                                              {{"type", "ByteFallback"}},
                                              {{"type", "Fuse"}},
                                              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  doc["model"] = model;
  return doc;
}

/// The GPT-2 byte -> character table.
std::vector<std::string> byte_chars() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs(bs);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  }
  std::vector<std::string> out(256);
  for (std::size_t i = 0; i < bs.size(); ++i) {
    const int c = cs[i];
    std::string s;
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
    out[bs[i]] = s;
  }
  return out;
}

/// Byte-level BPE (GPT-2 layout). Byte b has id b; merges given as pairs.
json byte_level_tokenizer() {
  const auto chars = byte_chars();
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[chars[b]] = b;
  for (const char* t : {"\xC4\xA0t", "he", "\xC4\xA0the", "\xC4\xA0w", "or", "ld", "orld", "\xC4\xA0world", "the",
                              "\xC4\xA0" "1", "23"}) {
    vocab[t] = vocab.size();
  }
  vocab["<|endoftext|>"] = vocab.size();  // 267
  const std::string G = "\xC4\xA0";       // Ġ
  json merges = json::array({json::array({G, "t"}), json::array({"h", "e"}), json::array({G + "t", "he"}),
                             json::array({G, "w"}), json::array({"o", "r"}), json::array({"l", "d"}),
                             json::array({"or", "ld"}), json::array({G + "w", "orld"}), json::array({"t", "he"}),
                             json::array({G, "1"}), json::array({"2", "3"})});
  json doc;
  doc["version"] = "1.0";
  doc["added_tokens"] = json::array({added_token(267, "<|endoftext|>", true)});
  doc["normalizer"] = nullptr;
  doc["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  doc["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}};
  doc["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}};
  doc["model"] = bpe_model(vocab, merges);
  return doc;
}

Tokenizer load(const json& doc, const std::string& config = "") { return Tokenizer::from_json(doc.dump(), config); }

/// Runs `fn` and returns the message of the exception of type E it throws.
template <typename E, typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception";
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ──────────────────────────── SentencePiece BPE ────────────────────────────

TEST(TokenizerSp, MergesByRankThenLeftmost) {
  const Tokenizer tok = load(sp_tokenizer());
  // "a b" (rank 0) fires before "▁ a" (rank 1), so "▁ab" is never formed.
  EXPECT_EQ(tok.encode("hello ab"), (Ids{1, 19, 3, 7}));
  EXPECT_EQ(tok.encode("hello ab", false), (Ids{19, 3, 7}));
  EXPECT_EQ(tok.encode("abc", false), (Ids{3, 10}));
  EXPECT_EQ(tok.decode({1, 19, 3, 7}), "<s> hello ab");
  EXPECT_EQ(tok.decode({1, 19, 3, 7}, true), "hello ab");
}

TEST(TokenizerSp, EmptyAndSpaces) {
  const Tokenizer tok = load(sp_tokenizer());
  EXPECT_EQ(tok.encode(""), (Ids{1}));
  EXPECT_EQ(tok.encode("", false), (Ids{}));
  EXPECT_EQ(tok.encode(" "), (Ids{1, 3, 3}));
  EXPECT_EQ(tok.decode({}), "");
}

TEST(TokenizerSp, ByteFallback) {
  const Tokenizer tok = load(sp_tokenizer());
  // 'x' and '€' are not in the vocabulary: their UTF-8 bytes become <0xNN>.
  EXPECT_EQ(tok.encode("x\xE2\x82\xAC", false), (Ids{3, 141, 247, 151, 193}));
  EXPECT_EQ(tok.decode({1, 3, 141, 247, 151, 193}, true), "x\xE2\x82\xAC");
  // A run of byte tokens that is not valid UTF-8 gives one U+FFFD per byte.
  EXPECT_EQ(tok.decode({0x21 + 0xE2, 0x21 + 0x82}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({4, 0x15 + 0xE2, 5}), "a\xEF\xBF\xBD" "b");
}

TEST(TokenizerSp, UnknownTokens) {
  json doc = sp_tokenizer();
  doc["model"]["byte_fallback"] = false;
  doc["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(doc).encode("axyzb"), (Ids{1, 8, 0, 5}));
  doc["model"]["fuse_unk"] = false;
  const Tokenizer tok = load(doc);
  EXPECT_EQ(tok.encode("axyzb"), (Ids{1, 8, 0, 0, 0, 5}));
  EXPECT_EQ(tok.decode({1, 8, 0, 0, 0, 5}), "<s> a<unk><unk><unk>b");
  EXPECT_EQ(tok.decode({1, 8, 0, 0, 0, 5}, true), "ab");
}

TEST(TokenizerSp, IgnoreMerges) {
  json doc = sp_tokenizer();
  doc["model"]["vocab"][kMeta + "abc"] = 300;
  EXPECT_EQ(load(doc).encode("abc", false), (Ids{3, 10}));
  doc["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(doc).encode("abc", false), (Ids{300}));
}

TEST(TokenizerSp, SpecialTokensSplitBeforeNormalization) {
  const Tokenizer tok = load(sp_tokenizer());
  EXPECT_EQ(tok.encode("hello<s>ab"), (Ids{1, 19, 1, 3, 7}));
  EXPECT_EQ(tok.decode({1, 19, 1, 3, 7}), "<s> hello<s> ab");
  EXPECT_EQ(tok.decode({1, 19, 1, 3, 7}, true), "hello ab");
  EXPECT_EQ(tok.encode("hello  </s>"), (Ids{1, 19, 3, 3, 2}));
}

TEST(TokenizerSp, MetaspacePrependSchemes) {
  json doc = sp_tokenizer();
  doc["normalizer"] = nullptr;
  doc["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}, {"split", true}};
  EXPECT_EQ(load(doc).encode("hello ab"), (Ids{1, 19, 3, 7}));
  EXPECT_EQ(load(doc).encode("<s>hello ab"), (Ids{1, 1, 18, 3, 7}));
  EXPECT_EQ(load(doc).encode("ab<s>ab"), (Ids{1, 3, 7, 1, 7}));
  EXPECT_EQ(load(doc).encode(" ab"), (Ids{1, 3, 7}));
  doc["pre_tokenizer"]["prepend_scheme"] = "always";
  EXPECT_EQ(load(doc).encode("ab<s>ab"), (Ids{1, 3, 7, 1, 3, 7}));
  doc["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(load(doc).encode("ab<s>ab"), (Ids{1, 7, 1, 7}));
}

TEST(TokenizerSp, LongTextWithoutPreTokenizer) {
  // A long input is one BPE word here; the result must equal the short pieces.
  const Tokenizer tok = load(sp_tokenizer());
  std::string text;
  Ids expected;
  for (int i = 0; i < 500; ++i) {
    text += i ? " hello ab" : "hello ab";
    const Ids piece = {19, 3, 7};
    expected.insert(expected.end(), piece.begin(), piece.end());
  }
  EXPECT_EQ(tok.encode(text, false), expected);
}

// ───────────────────────────── byte-level BPE ──────────────────────────────

TEST(TokenizerByteLevel, EncodeDecode) {
  const Tokenizer tok = load(byte_level_tokenizer());
  EXPECT_EQ(tok.encode("the world"), (Ids{264, 263}));
  EXPECT_EQ(tok.encode("the world<|endoftext|> 123"), (Ids{264, 263, 267, 265, 266}));
  EXPECT_EQ(tok.decode({264, 263, 267, 265, 266}), "the world<|endoftext|> 123");
  EXPECT_EQ(tok.decode({264, 263, 267, 265, 266}, true), "the world 123");
  EXPECT_EQ(tok.encode("  the"), (Ids{32, 258}));
  EXPECT_EQ(tok.encode(""), (Ids{}));
}

TEST(TokenizerByteLevel, SplitMultiByteCharacterDecodesToReplacement) {
  const Tokenizer tok = load(byte_level_tokenizer());
  const Ids ids = tok.encode("\xF0\x9F\x98\x80");  // 😀
  EXPECT_EQ(ids, (Ids{240, 159, 152, 128}));
  EXPECT_EQ(tok.decode({240, 159}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({240, 159, 152}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode(ids), "\xF0\x9F\x98\x80");
  EXPECT_EQ(tok.decode({0xFF, 'a'}), "\xEF\xBF\xBD" "a");
}

TEST(TokenizerByteLevel, MergesAsStringsOrPairs) {
  json doc = byte_level_tokenizer();
  json as_strings = json::array();
  for (const auto& m : doc["model"]["merges"]) as_strings.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  doc["model"]["merges"] = as_strings;
  EXPECT_EQ(load(doc).encode("the world 123"), (Ids{264, 263, 265, 266}));
}

TEST(TokenizerByteLevel, AddedTokenOptions) {
  json doc = byte_level_tokenizer();
  doc["normalizer"] = {{"type", "Lowercase"}};
  doc["added_tokens"].push_back(added_token(268, "<mask>", true, false, /*lstrip=*/true, /*rstrip=*/true));
  doc["added_tokens"].push_back(added_token(269, "WORLD", false, /*normalized=*/true, false, false, /*single_word=*/true));
  const Tokenizer tok = load(doc);
  EXPECT_EQ(tok.encode("a <mask> b"), (Ids{97, 268, 98}));
  EXPECT_EQ(tok.encode("a  <mask>  b"), (Ids{97, 268, 98}));
  EXPECT_EQ(tok.decode({97, 268, 98}), "a<mask>b");
  EXPECT_EQ(tok.decode({97, 268, 98}, true), "ab");
  // Normalized tokens match the normalized (lowercased) text, single_word only between non-word characters.
  EXPECT_EQ(tok.encode("the World x"), (Ids{264, 32, 269, 32, 120}));
  EXPECT_EQ(tok.encode("theWorld"), (Ids{264, 119, 262}));
  EXPECT_EQ(tok.encode("WORLD!"), (Ids{269, 33}));
  // Non-normalized tokens match the raw text only.
  EXPECT_EQ(tok.encode("x <MASK>"), (Ids{120, 32, 60, 109, 97, 115, 107, 62}));
  // A normalized added token decodes as its normalized content (HF >= 0.20).
  EXPECT_EQ(tok.id_to_token(269), "world");
  EXPECT_EQ(tok.token_to_id("WORLD"), 269);
  EXPECT_EQ(tok.token_to_id("world"), std::nullopt);
  EXPECT_EQ(tok.vocab_size(), 270);
  ASSERT_EQ(tok.added_tokens().size(), 3u);
  EXPECT_EQ(tok.added_tokens()[1].content, "<mask>");
  EXPECT_TRUE(tok.added_tokens()[1].lstrip);
}

TEST(TokenizerByteLevel, SplitBehaviors) {
  // Merges that reveal where the pre-tokenizer cut "a--b-c".
  json doc = byte_level_tokenizer();
  auto& vocab = doc["model"]["vocab"];
  for (const char* t : {"a-", "--", "-b", "b-", "-c"}) vocab[t] = vocab.size();
  for (const auto& m : {json::array({"a", "-"}), json::array({"-", "-"}), json::array({"-", "b"}), json::array({"b", "-"}),
                        json::array({"-", "c"})}) {
    doc["model"]["merges"].push_back(m);
  }
  const auto encode_with = [&](const std::string& behavior, bool invert) {
    json d = doc;
    d["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}},
                                       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
    return load(d).encode("a--b-c", false);
  };
  const int64_t a_ = 268, dd = 269, _b = 270, b_ = 271, _c = 272;
  EXPECT_EQ(encode_with("Removed", false), (Ids{'a', 'b', 'c'}));
  EXPECT_EQ(encode_with("Removed", true), (Ids{'-', '-', '-'}));
  EXPECT_EQ(encode_with("Isolated", false), (Ids{'a', '-', '-', 'b', '-', 'c'}));
  EXPECT_EQ(encode_with("MergedWithPrevious", false), (Ids{a_, '-', b_, 'c'}));
  EXPECT_EQ(encode_with("MergedWithPrevious", true), (Ids{'a', '-', _b, _c}));
  EXPECT_EQ(encode_with("MergedWithNext", false), (Ids{'a', '-', _b, _c}));
  EXPECT_EQ(encode_with("MergedWithNext", true), (Ids{a_, '-', b_, 'c'}));
  EXPECT_EQ(encode_with("Contiguous", false), (Ids{'a', dd, 'b', '-', 'c'}));
}

TEST(TokenizerByteLevel, Digits) {
  json doc = byte_level_tokenizer();
  doc["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
  EXPECT_EQ(load(doc).encode("ab123c4"), (Ids{97, 98, 49, 50, 51, 99, 52}));
  doc["pre_tokenizer"]["individual_digits"] = false;
  EXPECT_EQ(load(doc).encode("ab123c4"), (Ids{97, 98, 49, 266, 99, 52}));
}

TEST(TokenizerByteLevel, EncodeBatchAndThreads) {
  const Tokenizer tok = load(byte_level_tokenizer());
  const std::vector<std::string> texts = {"the world", "", "the world<|endoftext|> 123", "\xF0\x9F\x98\x80 the"};
  const auto batch = tok.encode_batch(texts);
  ASSERT_EQ(batch.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], tok.encode(texts[i]));
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t]() {
      bool good = true;
      for (int r = 0; r < 200; ++r) good = good && tok.encode_batch(texts) == batch;
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_TRUE(ok[t]);
}

// ───────────────────────── subword prefix / suffix ─────────────────────────

TEST(TokenizerBpe, ContinuingSubwordPrefixAndSuffix) {
  json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"##b", 3}, {"##c", 4}, {"a##b", 5}, {"ab", 6}, {"##bc", 7}, {"[UNK]", 8},
                {"a</w>", 9}, {"b</w>", 10}, {"c</w>", 11}, {"bc</w>", 12}};
  json doc;
  doc["added_tokens"] = json::array();
  doc["normalizer"] = nullptr;
  doc["pre_tokenizer"] = {{"type", "WhitespaceSplit"}};
  doc["post_processor"] = nullptr;
  doc["decoder"] = nullptr;
  doc["model"] = bpe_model(vocab, json::array({"a ##b", "##b ##c"}));
  doc["model"]["unk_token"] = "[UNK]";
  doc["model"]["continuing_subword_prefix"] = "##";
  const Tokenizer prefixed = load(doc);
  EXPECT_EQ(prefixed.encode("abc ab a"), (Ids{6, 4, 6, 0}));
  EXPECT_EQ(prefixed.decode({6, 4, 6, 0}), "ab ##c ab a");  // no decoder: tokens joined by spaces

  doc["model"]["continuing_subword_prefix"] = nullptr;
  doc["model"]["end_of_word_suffix"] = "</w>";
  doc["model"]["merges"] = json::array({"b c</w>"});
  doc["decoder"] = {{"type", "BPEDecoder"}, {"suffix", "</w>"}};
  const Tokenizer suffixed = load(doc);
  EXPECT_EQ(suffixed.encode("abc a b"), (Ids{0, 12, 9, 10}));
  EXPECT_EQ(suffixed.decode({0, 12, 9, 10}), "abc a b");
}

// ─────────────────────────── config and vocabulary ─────────────────────────

TEST(TokenizerConfig, SpecialTokensAndChatTemplate) {
  const std::string config = R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>",
    "pad_token": null,
    "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}"}]
  })";
  const Tokenizer tok = load(sp_tokenizer(), config);
  EXPECT_EQ(tok.bos_token(), "<s>");
  EXPECT_EQ(tok.eos_token(), "</s>");
  EXPECT_EQ(tok.pad_token(), std::nullopt);
  EXPECT_EQ(tok.unk_token(), std::nullopt);
  EXPECT_EQ(tok.bos_token_id(), 1);
  EXPECT_EQ(tok.eos_token_id(), 2);
  EXPECT_EQ(tok.pad_token_id(), std::nullopt);
  ASSERT_TRUE(tok.has_chat_template());
  EXPECT_EQ(tok.chat_template().source(), "{{ bos_token }}");

  const Tokenizer plain = load(sp_tokenizer());
  EXPECT_FALSE(plain.has_chat_template());
  EXPECT_EQ(plain.bos_token(), std::nullopt);
  const std::string msg = error_of<scalpel::InvalidArgument>([&]() { plain.apply_chat_template({{"user", "hi"}}); });
  EXPECT_TRUE(contains(msg, "chat template")) << msg;
}

TEST(TokenizerConfig, ApplyChatTemplatePassesSpecialTokens) {
  const std::string config = R"({"bos_token": "<s>", "eos_token": "</s>",
                                 "chat_template": "{{ bos_token }}|{{ eos_token }}"})";
  const Tokenizer tok = load(sp_tokenizer(), config);
  EXPECT_EQ(tok.apply_chat_template({{"user", "hi"}}, true), "<s>|</s>");
  EXPECT_EQ(tok.apply_chat_template_json(R"([{"role": "user", "content": "hi"}])", false, R"({"eos_token": "E"})"),
            "<s>|E");
  const std::string msg = error_of<scalpel::InvalidArgument>(
      [&]() { tok.apply_chat_template_json("[]", true, "[1, 2]"); });
  EXPECT_TRUE(contains(msg, "extra_context_json")) << msg;
}

TEST(TokenizerVocab, Lookups) {
  const Tokenizer tok = load(sp_tokenizer());
  EXPECT_EQ(tok.vocab_size(), 21 + 256);
  EXPECT_EQ(tok.token_to_id(kMeta + "hello"), 19);
  EXPECT_EQ(tok.token_to_id("nope"), std::nullopt);
  EXPECT_EQ(tok.id_to_token(19), kMeta + "hello");
  EXPECT_EQ(tok.convert_ids_to_tokens({1, 19, 21}), (std::vector<std::string>{"<s>", kMeta + "hello", "<0x00>"}));
  EXPECT_EQ(tok.describe().rfind("BPE", 0), 0u) << tok.describe();
}

// ─────────────────────────────── bad inputs ────────────────────────────────

TEST(TokenizerErrors, MissingFilesAndDirectories) {
  EXPECT_TRUE(contains(error_of<scalpel::FileNotFound>([]() { Tokenizer::from_file("/nonexistent/tokenizer.json"); }),
                       "/nonexistent/tokenizer.json"));
  const auto dir = std::filesystem::temp_directory_path() / "scalpel_tokenizer_empty_dir";
  std::filesystem::create_directories(dir);
  const std::string msg = error_of<scalpel::FileNotFound>([&]() { scalpel::load_tokenizer(dir.string()); });
  EXPECT_TRUE(contains(msg, "tokenizer.json")) << msg;
  EXPECT_TRUE(contains(msg, "merges.txt")) << msg;
  std::filesystem::remove_all(dir);
}

TEST(TokenizerErrors, MalformedJson) {
  std::string msg = error_of<scalpel::FormatError>([]() { Tokenizer::from_json("{\"model\": ", "", "my.json"); });
  EXPECT_TRUE(contains(msg, "my.json")) << msg;
  EXPECT_TRUE(contains(msg, "byte")) << msg;
  msg = error_of<scalpel::FormatError>([]() { Tokenizer::from_json("[1, 2]"); });
  EXPECT_TRUE(contains(msg, "tokenizer.json")) << msg;
  msg = error_of<scalpel::FormatError>([]() { Tokenizer::from_json("{}"); });
  EXPECT_TRUE(contains(msg, "field \"model\"")) << msg;
  msg = error_of<scalpel::FormatError>([]() { Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": [], "merges": []}})"); });
  EXPECT_EQ(msg, "tokenizer.json: field \"model.vocab\": expected an object, got array (is this a tokenizer.json file?)");
  msg = error_of<scalpel::FormatError>([]() { Tokenizer::from_json(R"({"model": {"type": "BPE", "merges": []}})"); });
  EXPECT_TRUE(contains(msg, "model.vocab")) << msg;
  msg = error_of<scalpel::FormatError>(
      []() { Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})"); });
  EXPECT_TRUE(contains(msg, "model.vocab.a")) << msg;
  EXPECT_TRUE(contains(msg, "expected an integer")) << msg;
}

TEST(TokenizerErrors, BadMerges) {
  json doc = byte_level_tokenizer();
  doc["model"]["merges"] = json::array({"a b c"});
  std::string msg = error_of<scalpel::FormatError>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "model.merges[0]")) << msg;
  doc["model"]["merges"] = json::array({"zz q"});
  msg = error_of<scalpel::FormatError>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "\"zz\"")) << msg;
  doc["model"]["merges"] = json::array({json::array({"a", "b"})});  // "ab" is not in the vocabulary
  msg = error_of<scalpel::FormatError>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "\"ab\"")) << msg;
  doc["model"]["merges"] = json::array({42});
  msg = error_of<scalpel::FormatError>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "model.merges[0]")) << msg;
}

TEST(TokenizerErrors, UnsupportedComponents) {
  std::string msg = error_of<scalpel::Unsupported>(
      []() { Tokenizer::from_json(R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})"); });
  EXPECT_TRUE(contains(msg, "Unigram")) << msg;
  EXPECT_TRUE(contains(msg, "BPE")) << msg;
  msg = error_of<scalpel::Unsupported>(
      []() { Tokenizer::from_json(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})"); });
  EXPECT_TRUE(contains(msg, "WordPiece")) << msg;
  msg = error_of<scalpel::Unsupported>([]() { Tokenizer::from_json(R"({"model": {"vocab": [["a", 0.0]]}})"); });
  EXPECT_TRUE(contains(msg, "Unigram")) << msg;

  json doc = byte_level_tokenizer();
  doc["normalizer"] = {{"type", "BertNormalizer"}};
  msg = error_of<scalpel::Unsupported>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "field \"normalizer.type\"")) << msg;
  EXPECT_TRUE(contains(msg, "NFKC")) << msg;  // lists the supported ones
  doc = byte_level_tokenizer();
  doc["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({{{"type", "UnicodeScripts"}}})}};
  msg = error_of<scalpel::Unsupported>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "pre_tokenizer.pretokenizers[0].type")) << msg;
  EXPECT_TRUE(contains(msg, "Metaspace")) << msg;
  doc = byte_level_tokenizer();
  doc["decoder"] = {{"type", "WordPiece"}};
  msg = error_of<scalpel::Unsupported>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "ByteFallback")) << msg;
  doc = byte_level_tokenizer();
  doc["post_processor"] = {{"type", "Mystery"}};
  msg = error_of<scalpel::Unsupported>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "TemplateProcessing")) << msg;
  doc = byte_level_tokenizer();
  doc["model"]["dropout"] = 0.1;
  msg = error_of<scalpel::Unsupported>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "dropout")) << msg;
  doc["model"]["dropout"] = 0.0;  // zero dropout is no dropout
  EXPECT_NO_THROW(load(doc));
}

TEST(TokenizerErrors, BadComponentFields) {
  json doc = byte_level_tokenizer();
  doc["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  std::string msg = error_of<scalpel::FormatError>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "pre_tokenizer.pattern")) << msg;
  doc["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}};
  msg = error_of<scalpel::Unsupported>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "Sideways")) << msg;
  doc = sp_tokenizer();
  doc["post_processor"]["single"][0]["SpecialToken"]["id"] = "<missing>";
  msg = error_of<scalpel::FormatError>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "<missing>")) << msg;
  doc = byte_level_tokenizer();
  doc["added_tokens"] = {{"content", "x"}};
  msg = error_of<scalpel::FormatError>([&]() { load(doc); });
  EXPECT_TRUE(contains(msg, "added_tokens")) << msg;
  msg = error_of<scalpel::FormatError>([]() { Tokenizer::from_json(byte_level_tokenizer().dump(), "{not json"); });
  EXPECT_TRUE(contains(msg, "tokenizer_config.json")) << msg;
  msg = error_of<scalpel::FormatError>(
      []() { Tokenizer::from_json(byte_level_tokenizer().dump(), R"({"bos_token": 3})"); });
  EXPECT_TRUE(contains(msg, "bos_token")) << msg;
}

TEST(TokenizerErrors, IdsOutOfRange) {
  const Tokenizer tok = load(byte_level_tokenizer());
  std::string msg = error_of<scalpel::InvalidArgument>([&]() { tok.decode({1, 268}); });
  EXPECT_TRUE(contains(msg, "268")) << msg;
  EXPECT_TRUE(contains(msg, "vocab_size is 268")) << msg;
  msg = error_of<scalpel::InvalidArgument>([&]() { tok.decode({-1}); });
  EXPECT_TRUE(contains(msg, "-1")) << msg;
  msg = error_of<scalpel::InvalidArgument>([&]() { tok.id_to_token(1000); });
  EXPECT_TRUE(contains(msg, "1000")) << msg;
  msg = error_of<scalpel::InvalidArgument>([&]() { tok.convert_ids_to_tokens({5, 99999}); });
  EXPECT_TRUE(contains(msg, "99999")) << msg;
}

TEST(TokenizerErrors, InvalidUtf8Input) {
  const Tokenizer tok = load(byte_level_tokenizer());
  for (const std::string& bad : {std::string("ab\xFF"), std::string("ab\xC3"), std::string("ab\xED\xA0\x80"),
                                 std::string("ab\xC0\xAF"), std::string("ab\xF4\x90\x80\x80")}) {
    const std::string msg = error_of<scalpel::InvalidArgument>([&]() { tok.encode(bad); });
    EXPECT_TRUE(contains(msg, "byte offset 2")) << msg;
  }
  EXPECT_NO_THROW(tok.encode(std::string("a\0b", 3)));
}

// ─────────────────────────── real tokenizer files ──────────────────────────

class TokenizerRealFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("SCALPEL_SHARED");
    shared_ = env != nullptr ? env : "";
    if (shared_.empty() || !std::filesystem::is_directory(shared_)) {
      GTEST_SKIP() << "SCALPEL_SHARED does not point at the shared data directory";
    }
  }
  std::string path(const std::string& rel) const { return shared_ + "/" + rel; }
  std::string shared_;
};

TEST_F(TokenizerRealFiles, Gpt2) {
  const Tokenizer tok = scalpel::load_tokenizer(path("tokenizers/gpt2-xl"));
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.encode("Hello world"), (Ids{15496, 995}));
  const std::string text = "I'm here <|endoftext|> 123";
  EXPECT_EQ(tok.encode(text), (Ids{40, 1101, 994, 220, 50256, 17031}));
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  EXPECT_EQ(tok.decode(tok.encode(text), true), "I'm here  123");
  EXPECT_EQ(tok.decode({47249}), "\xEF\xBF\xBD");  // first half of 😀
  EXPECT_EQ(tok.decode({47249, 222, 12876}), "\xF0\x9F\x98\x80 ok");
  // transformers' GPT2Tokenizer defaults (no tokenizer_config.json here).
  EXPECT_EQ(tok.eos_token(), "<|endoftext|>");
  EXPECT_EQ(tok.eos_token_id(), 50256);
}

TEST_F(TokenizerRealFiles, Llama2AndMistral) {
  const Tokenizer llama = scalpel::load_tokenizer(path("tokenizers/llama-2-7b-hf"));
  EXPECT_EQ(llama.encode("Hello world"), (Ids{1, 15043, 3186}));
  EXPECT_EQ(llama.encode("hi <s> there"), (Ids{1, 7251, 29871, 1, 29871, 727}));
  EXPECT_EQ(llama.encode("\xC3\xBCn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9 \xF0\x9F\x98\x80"),
            (Ids{1, 2505, 29876, 30085, 29883, 9289, 29948, 29871, 243, 162, 155, 131}));
  EXPECT_EQ(llama.decode({1, 15043, 3186}), "<s> Hello world");
  EXPECT_EQ(llama.decode({1, 15043, 3186}, true), "Hello world");
  EXPECT_EQ(llama.decode({1, 15043, 243, 3186}), "<s> Hello\xEF\xBF\xBD world");
  EXPECT_EQ(llama.bos_token_id(), 1);
  EXPECT_EQ(llama.eos_token(), "</s>");

  const Tokenizer v2 = scalpel::load_tokenizer(path("tokenizers/mistral-7b-instruct-v0.2"));
  EXPECT_EQ(v2.encode("[INST] Hi [/INST]"), (Ids{1, 733, 16289, 28793, 15359, 733, 28748, 16289, 28793}));
  EXPECT_TRUE(v2.has_chat_template());
  const Tokenizer v3 = scalpel::load_tokenizer(path("tokenizers/mistral-7b-instruct-v0.3"));
  EXPECT_EQ(v3.encode("[INST] Hi [/INST]"), (Ids{1, 3, 16127, 29473, 4}));
  EXPECT_EQ(v3.encode("<s>hello"), (Ids{1, 1, 22326}));
  EXPECT_EQ(v3.decode({1, 3, 16127, 29473, 4}, true), "Hi ");
}

TEST_F(TokenizerRealFiles, Phi3TinyStoriesSmolPythia) {
  const Tokenizer phi = scalpel::load_tokenizer(path("tokenizers/phi-3-mini-128k-instruct"));
  EXPECT_EQ(phi.encode("a</s>  b"), (Ids{263, 2, 289}));  // </s> has rstrip
  EXPECT_EQ(phi.encode("<|user|>\nHi<|end|>\n<|assistant|>"), (Ids{32010, 6324, 32007, 32001}));
  EXPECT_EQ(phi.vocab_size(), 32011);
  EXPECT_EQ(phi.pad_token(), "<|endoftext|>");

  const Tokenizer tiny = scalpel::load_tokenizer(path("models/tinystories-656k"));
  EXPECT_EQ(tiny.encode("Once upon a time, there was a little cat."), (Ids{1, 80, 147, 201, 282, 215, 286, 229, 476, 10}));
  EXPECT_EQ(tiny.encode("a <|start_story|>b"), (Ids{1, 85, 1, 54}));
  // Normalized special tokens decode as their normalized text and are not skipped (as in HF).
  EXPECT_EQ(tiny.decode({1, 85, 1, 54}, true), "<|start_story|> a <|start_story|>b");
  EXPECT_EQ(tiny.bos_token(), "<|start_story|>");

  const Tokenizer smol = scalpel::load_tokenizer(path("tokenizers/smollm2-135m-instruct"));
  EXPECT_EQ(smol.encode("<|im_start|>user\nWhat is 12345?<|im_end|>"),
            (Ids{1, 4093, 198, 1780, 314, 216, 33, 34, 35, 36, 37, 47, 2}));

  const Tokenizer pythia = scalpel::load_tokenizer(path("tokenizers/pythia/20B_tokenizer.json"));
  EXPECT_EQ(pythia.encode("def f(x):\n        return x"), (Ids{1545, 269, 9, 89, 2262, 187, 50270, 2309, 1269}));
}

TEST_F(TokenizerRealFiles, Qwen25FromVocabAndMerges) {
  const Tokenizer qwen = scalpel::load_tokenizer(path("tokenizers/qwen2.5-0.5b-instruct"));
  EXPECT_EQ(qwen.vocab_size(), 151665);
  EXPECT_EQ(qwen.encode("Hello world <|im_start|> x"), (Ids{9707, 1879, 220, 151644, 856}));
  EXPECT_EQ(qwen.encode("\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xEF\xBC\x81 12345"),
            (Ids{108386, 3837, 99489, 6313, 220, 16, 17, 18, 19, 20}));
  EXPECT_EQ(qwen.decode({9707, 1879, 220, 151644, 856}, true), "Hello world  x");
  EXPECT_EQ(qwen.eos_token(), "<|im_end|>");
  EXPECT_EQ(qwen.pad_token(), "<|endoftext|>");
  EXPECT_EQ(qwen.bos_token(), std::nullopt);
  EXPECT_EQ(qwen.eos_token_id(), 151645);
  EXPECT_TRUE(qwen.has_chat_template());
}

TEST_F(TokenizerRealFiles, DirectoriesWithoutTokenizerFiles) {
  for (const char* dir : {"tokenizers/llama-3.2-1b", "tokenizers/gemma-3-1b-it", "tokenizers/qwen3"}) {
    if (!std::filesystem::is_directory(path(dir))) continue;
    const std::string msg = error_of<scalpel::FileNotFound>([&]() { scalpel::load_tokenizer(path(dir)); });
    EXPECT_TRUE(contains(msg, "tokenizer.json")) << msg;
  }
}

}  // namespace
