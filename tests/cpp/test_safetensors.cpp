// SCALPEL_USES_TORCH
// safetensors reader/writer: every malformed-file case of the format spec is
// an error that names the field; valid files round-trip bit-exactly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "scalpel/errors.hpp"
#include "scalpel/io/hf_model.hpp"
#include "scalpel/io/safetensors.hpp"
#include "support/test_util.hpp"

namespace fs = std::filesystem;
using scalpel::test::TempDir;

namespace {

// A file made of an explicit header and data section.
std::string write_raw(const TempDir& dir, const std::string& name, const std::string& header,
                      const std::string& data, int64_t forced_len = -1) {
  std::string path = dir.path(name);
  std::ofstream out(path, std::ios::binary);
  uint64_t n = forced_len >= 0 ? static_cast<uint64_t>(forced_len) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << data;
  return path;
}

// Expects FormatError whose message contains every fragment.
void expect_format_error(const std::string& path, std::initializer_list<const char*> fragments) {
  try {
    scalpel::SafetensorsFile f(path);
    FAIL() << "expected FormatError for " << path;
  } catch (const scalpel::FormatError& e) {
    std::string msg = e.what();
    for (const char* frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << "message: " << msg << "\nmissing: " << frag;
  }
}

}  // namespace

TEST(Safetensors, RoundTripAllDtypes) {
  TempDir dir;
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", torch::randn({3, 4})},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"f16", torch::randn({2, 2}).to(torch::kHalf)},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"i64", torch::arange(7, torch::kLong)},
      {"i32", torch::arange(3, torch::kInt)},
      {"i16", torch::arange(3, torch::kShort)},
      {"i8", torch::arange(3, torch::kChar)},
      {"u8", torch::arange(3, torch::kByte)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::randn({4, 6}).t()},  // non-contiguous input
  };
  std::string path = dir.path("all.safetensors");
  scalpel::save_safetensors(path, tensors, {{"format", "pt"}});
  scalpel::SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.tensors().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    auto back = f.get(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(back, t.contiguous())) << name;
  }
  EXPECT_EQ(f.header_size() % 8, 0u);
}

TEST(Safetensors, ZeroCopyViewIsCopyOnWrite) {
  TempDir dir;
  std::string path = dir.path("w.safetensors");
  scalpel::save_safetensors(path, {{"w", torch::ones({16})}});
  auto bytes_before = scalpel::test::read_file(path);
  {
    scalpel::SafetensorsFile f(path);
    ASSERT_TRUE(f.is_zero_copy("w"));
    auto t = f.get("w");
    EXPECT_EQ(static_cast<const void*>(t.data_ptr()), static_cast<const void*>(f.data("w")));
    t.mul_(3);  // writes to a private page, never to the file
    EXPECT_EQ(t.sum().item<float>(), 48.0f);
  }
  EXPECT_EQ(scalpel::test::read_file(path), bytes_before);
}

TEST(Safetensors, TensorOutlivesFileObject) {
  TempDir dir;
  std::string path = dir.path("w.safetensors");
  scalpel::save_safetensors(path, {{"w", torch::arange(10, torch::kFloat)}});
  at::Tensor t;
  { t = scalpel::SafetensorsFile(path).get("w"); }
  EXPECT_EQ(t.sum().item<float>(), 45.0f);
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  EXPECT_THROW(scalpel::save_safetensors(dir.path("a"), {{"x", torch::ones(1)}, {"x", torch::ones(1)}}),
               scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::save_safetensors(dir.path("a"), {{"__metadata__", torch::ones(1)}}), scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::save_safetensors(dir.path("a"), {{"c", torch::ones(1, torch::kComplexFloat)}}),
               scalpel::InvalidArgument);
  EXPECT_THROW(scalpel::save_safetensors(dir.path("missing/dir/a.safetensors"), {{"x", torch::ones(1)}}),
               scalpel::FileNotFound);
  EXPECT_FALSE(fs::exists(dir.path("a")));
}

TEST(Safetensors, AtomicWriteLeavesNoTemporaryFiles) {
  TempDir dir;
  std::string path = dir.path("m.safetensors");
  scalpel::save_safetensors(path, {{"x", torch::ones(3)}});
  scalpel::save_safetensors(path, {{"x", torch::zeros(3)}});  // replaces atomically
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir.root())) (void)e, ++n;
  EXPECT_EQ(n, 1);
  EXPECT_EQ(scalpel::SafetensorsFile(path).get("x").sum().item<float>(), 0.0f);
}

TEST(SafetensorsMalformed, MissingFile) {
  EXPECT_THROW(scalpel::SafetensorsFile("/nonexistent/model.safetensors"), scalpel::FileNotFound);
}

TEST(SafetensorsMalformed, TooShortForHeaderLength) {
  TempDir dir;
  std::string path = dir.path("short.safetensors");
  std::ofstream(path, std::ios::binary) << "abc";
  expect_format_error(path, {"header length", "at least 8 bytes", "3 bytes"});
}

TEST(SafetensorsMalformed, HeaderLongerThanFile) {
  TempDir dir;
  expect_format_error(write_raw(dir, "a.safetensors", "{}", "", 1000), {"header length", "1000", "truncated"});
}

TEST(SafetensorsMalformed, HeaderLengthAbsurd) {
  TempDir dir;
  expect_format_error(write_raw(dir, "a.safetensors", "{}", "", int64_t(1) << 40), {"at most 100000000"});
}

TEST(SafetensorsMalformed, HeaderNotJsonObject) {
  TempDir dir;
  expect_format_error(write_raw(dir, "a.safetensors", "[1,2]", ""), {"header", "'{'"});
  expect_format_error(write_raw(dir, "b.safetensors", "{\"a\": ", ""), {"well-formed JSON"});
}

TEST(SafetensorsMalformed, DuplicateKey) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, "x"), {"unique keys", "\"a\""});
}

TEST(SafetensorsMalformed, UnknownDtype) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, "x"), {"tensor \"a\".dtype", "\"F7\"", "BF16"});
}

TEST(SafetensorsMalformed, ShapeTimesDtypeNotSpan) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(12, '\0')), {"16 bytes", "12 bytes"});
}

TEST(SafetensorsMalformed, ShapeOverflow) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(4, '\0')), {"overflow"});
}

TEST(SafetensorsMalformed, NegativeShape) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(4, '\0')), {"non-negative"});
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(6, '\0')), {"overlaps"});
}

TEST(SafetensorsMalformed, HoleInOffsets) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(6, '\0')), {"hole"});
}

TEST(SafetensorsMalformed, OffsetsOutOfRange) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(4, '\0')), {"inside the data section", "truncated"});
}

TEST(SafetensorsMalformed, TrailingBytes) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(5, '\0')), {"data section", "trailing"});
}

TEST(SafetensorsMalformed, BeginAfterEnd) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[2,0]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, std::string(2, '\0')), {"begin <= end"});
}

TEST(SafetensorsMalformed, MetadataMustBeStrings) {
  TempDir dir;
  std::string h = R"({"__metadata__":{"n":3},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, "x"), {"__metadata__[\"n\"]", "a string"});
}

TEST(SafetensorsMalformed, UnknownFieldInEntry) {
  TempDir dir;
  std::string h = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}})";
  expect_format_error(write_raw(dir, "a.safetensors", h, "x"), {"\"extra\""});
}

TEST(SafetensorsMalformed, UnknownTensorNameListsNearest) {
  TempDir dir;
  std::string path = dir.path("m.safetensors");
  scalpel::save_safetensors(path, {{"model.embed_tokens.weight", torch::ones(2)}, {"lm_head.weight", torch::ones(2)}});
  scalpel::SafetensorsFile f(path);
  try {
    f.get("model.embed_token.weight");
    FAIL();
  } catch (const scalpel::UnknownName& e) {
    EXPECT_NE(std::string(e.what()).find("model.embed_tokens.weight"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsMalformed, PickleRefusedWithInstructions) {
  TempDir dir;
  std::string path = dir.path("pytorch_model.bin");
  std::ofstream(path, std::ios::binary) << "PK\x03\x04 not really a zip";
  try {
    scalpel::SafetensorsCheckpoint::open(dir.root());
    FAIL();
  } catch (const scalpel::FormatError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("never unpickles"), std::string::npos) << msg;
    EXPECT_NE(msg.find("save_file"), std::string::npos) << msg;
  }
}

TEST(SafetensorsSharded, IndexResolvesShards) {
  TempDir dir;
  scalpel::save_safetensors(dir.path("model-00001-of-00002.safetensors"), {{"a", torch::ones(2)}});
  scalpel::save_safetensors(dir.path("model-00002-of-00002.safetensors"), {{"b", torch::zeros(3)}});
  std::ofstream(dir.path("model.safetensors.index.json"))
      << R"({"metadata":{"total_size":20},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})";
  auto ck = scalpel::SafetensorsCheckpoint::open(dir.root());
  EXPECT_EQ(ck.keys(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ck.files().size(), 2u);
  EXPECT_EQ(ck.get("a").sum().item<float>(), 2.0f);
  EXPECT_EQ(ck.total_bytes(), 20u);
}

TEST(SafetensorsSharded, IndexNamingMissingTensorIsError) {
  TempDir dir;
  scalpel::save_safetensors(dir.path("s1.safetensors"), {{"a", torch::ones(2)}});
  std::ofstream(dir.path("model.safetensors.index.json")) << R"({"weight_map":{"a":"s1.safetensors","zz":"s1.safetensors"}})";
  EXPECT_THROW(scalpel::SafetensorsCheckpoint::open(dir.root()), scalpel::FormatError);
}

TEST(SafetensorsSharded, IndexWithMissingShardIsFileNotFound) {
  TempDir dir;
  std::ofstream(dir.path("model.safetensors.index.json")) << R"({"weight_map":{"a":"gone.safetensors"}})";
  EXPECT_THROW(scalpel::SafetensorsCheckpoint::open(dir.root()), scalpel::FileNotFound);
}

TEST(SafetensorsReal, TinyStoriesLoads) {
  auto shared = scalpel::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "SCALPEL_SHARED not set and ../shared missing";
  // The fp32 file stores only lm_head.weight, the bf16 one only
  // model.embed_tokens.weight: tied embeddings resolve both ways.
  at::Tensor f32_head;
  for (const char* sub : {"models/tinystories-656k", "models/tinystories-656k-bf16"}) {
    auto m = scalpel::HFModelDir::open(shared + "/" + sub);
    EXPECT_EQ(m.config().architecture, "LlamaForCausalLM");
    EXPECT_TRUE(m.config().tie_word_embeddings);
    ASSERT_TRUE(m.contains("lm_head.weight")) << sub;
    ASSERT_TRUE(m.contains("model.embed_tokens.weight")) << sub;
    auto head = m.get("lm_head.weight");
    EXPECT_TRUE(torch::equal(head, m.get("model.embed_tokens.weight")));
    EXPECT_EQ(head.size(0), 2048);
    EXPECT_EQ(head.size(1), 128);
    if (!f32_head.defined()) {
      EXPECT_EQ(head.scalar_type(), torch::kFloat);
      f32_head = head;
    } else {
      EXPECT_EQ(head.scalar_type(), torch::kBFloat16);
      // The bf16 copy is the fp32 weights rounded.
      EXPECT_TRUE(torch::allclose(head.to(torch::kFloat), f32_head, 1e-2, 1e-2));
    }
  }
}
