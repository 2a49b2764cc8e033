// SCALPEL_USES_TORCH
#include "scalpel/io/safetensors.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "scalpel/errors.hpp"
#include "io/atomic_file.hpp"
#include "util/logging.hpp"
#include "util/messages.hpp"
#include "io/mapped_file.hpp"
#include "io/model_dir.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace scalpel {

// ---------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------
namespace {
struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
  c10::ScalarType scalar;
};
// One table, one place: name, element size and torch type of every dtype.
const DTypeRow kDTypes[] = {
    {DType::BOOL, "BOOL", 1, c10::kBool},          {DType::U8, "U8", 1, c10::kByte},
    {DType::I8, "I8", 1, c10::kChar},              {DType::F8_E5M2, "F8_E5M2", 1, c10::kFloat8_e5m2},
    {DType::F8_E4M3, "F8_E4M3", 1, c10::kFloat8_e4m3fn}, {DType::I16, "I16", 2, c10::kShort},
    {DType::U16, "U16", 2, c10::kUInt16},          {DType::F16, "F16", 2, c10::kHalf},
    {DType::BF16, "BF16", 2, c10::kBFloat16},      {DType::I32, "I32", 4, c10::kInt},
    {DType::U32, "U32", 4, c10::kUInt32},          {DType::F32, "F32", 4, c10::kFloat},
    {DType::F64, "F64", 8, c10::kDouble},          {DType::I64, "I64", 8, c10::kLong},
    {DType::U64, "U64", 8, c10::kUInt64},
};
const DTypeRow& row(DType d) { return kDTypes[static_cast<size_t>(d)]; }

std::string all_dtype_names() {
  std::vector<std::string> names;
  for (const auto& r : kDTypes) names.emplace_back(r.name);
  return detail::join_names(names, false, 100);
}
}  // namespace

size_t dtype_size(DType d) { return row(d).size; }
std::string dtype_name(DType d) { return row(d).name; }
c10::ScalarType to_scalar_type(DType d) { return row(d).scalar; }

DType dtype_from_name(const std::string& name) {
  for (const auto& r : kDTypes)
    if (name == r.name) return r.dtype;
  throw InvalidArgument(detail::expected_got("safetensors dtype", "one of " + all_dtype_names(), "\"" + name + "\""));
}

DType from_scalar_type(c10::ScalarType t) {
  for (const auto& r : kDTypes)
    if (r.scalar == t) return r.dtype;
  throw InvalidArgument(detail::expected_got("tensor dtype", "one safetensors can store (" + all_dtype_names() + ")",
                                             c10::toString(t), "convert it with .to(...) first"));
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct SafetensorsFile::Impl {
  std::string path;
  std::shared_ptr<detail::MappedFile> map;
  uint64_t file_size = 0;
  uint64_t header_size = 0;
  std::vector<TensorInfo> tensors;
  std::map<std::string, size_t> by_name;
  std::map<std::string, std::string> metadata;

  const uint8_t* data_start() const { return map->data() + 8 + header_size; }
  [[noreturn]] void fail(const std::string& field, const std::string& expected, const std::string& got,
                         const std::string& hint = {}) const {
    throw FormatError(detail::expected_got("safetensors file " + path + ": " + field, expected, got, hint));
  }
  const TensorInfo& lookup(const std::string& name) const {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      std::vector<std::string> names;
      for (const auto& t : tensors) names.push_back(t.name);
      throw UnknownName(detail::expected_got("tensor \"" + name + "\" in " + path, "one of the file's tensors",
                                             "no such tensor",
                                             "nearest: " + detail::join_names(detail::nearest_names(name, names))));
    }
    return tensors[it->second];
  }
};

namespace {

// Multiplies with an overflow check (false on overflow).
bool mul_checked(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

std::string json_type(const json& j) { return j.type_name(); }

// Parses the header JSON, rejecting duplicate keys (nlohmann would keep the last silently).
json parse_header(const SafetensorsFile::Impl& f, const char* text, size_t n) {
  std::vector<std::set<std::string>> keys_stack;
  std::string duplicate;
  auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) keys_stack.emplace_back();
    else if (ev == json::parse_event_t::object_end) keys_stack.pop_back();
    else if (ev == json::parse_event_t::key && !keys_stack.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys_stack.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + n, cb);
  } catch (const json::parse_error& e) {
    f.fail("header", "well-formed JSON", std::string("a parse error at header byte ") + std::to_string(e.byte) +
                                             " (file offset " + std::to_string(8 + e.byte) + "): " + e.what());
  }
  if (!duplicate.empty()) f.fail("header", "unique keys", "key \"" + duplicate + "\" twice");
  return header;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  refuse_pickle(path);

  impl->map = detail::MappedFile::open(path, "safetensors file");
  impl->file_size = impl->map->size();
  if (impl->file_size < 8)
    impl->fail("header length (bytes 0-7)", "at least 8 bytes", std::to_string(impl->file_size) + " bytes",
               "the file is truncated or not a safetensors file");
  const auto* bytes = impl->map->data();

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  constexpr uint64_t kMaxHeader = 100'000'000;
  if (n > kMaxHeader)
    impl->fail("header length (bytes 0-7)", "at most 100000000", std::to_string(n), "not a safetensors file, or corrupted");
  if (n > impl->file_size - 8)
    impl->fail("header length (bytes 0-7)", "at most the file size minus 8 (" + std::to_string(impl->file_size - 8) + ")",
               std::to_string(n), "the file is truncated");
  impl->header_size = n;
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  if (n == 0 || text[0] != '{')
    impl->fail("header (offset 8)", "a JSON object starting with '{'",
               n == 0 ? std::string("an empty header") : "byte 0x" + [&] {
                 char buf[8];
                 std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(bytes[8]));
                 return std::string(buf);
               }());
  json header = parse_header(*impl, text, n);
  if (!header.is_object()) impl->fail("header", "a JSON object", json_type(header));

  const uint64_t data_size = impl->file_size - 8 - n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) impl->fail("__metadata__", "an object of string values", json_type(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          impl->fail("__metadata__[\"" + m.key() + "\"]", "a string", json_type(m.value()),
                     "safetensors metadata is a string-to-string map");
        impl->metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string field = "tensor \"" + name + "\"";
    if (!v.is_object()) impl->fail(field, "an object with dtype, shape, data_offsets", json_type(v));
    for (auto k = v.begin(); k != v.end(); ++k)
      if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
        impl->fail(field, "only the keys dtype, shape, data_offsets", "key \"" + k.key() + "\"");
    TensorInfo info;
    info.name = name;
    if (!v.contains("dtype") || !v["dtype"].is_string())
      impl->fail(field + ".dtype", "a string", v.contains("dtype") ? json_type(v["dtype"]) : "nothing");
    const auto dname = v["dtype"].get<std::string>();
    bool known = false;
    for (const auto& r : kDTypes)
      if (dname == r.name) {
        info.dtype = r.dtype;
        known = true;
      }
    if (!known) impl->fail(field + ".dtype", "one of " + all_dtype_names(), "\"" + dname + "\"");
    if (!v.contains("shape") || !v["shape"].is_array())
      impl->fail(field + ".shape", "an array of non-negative integers", v.contains("shape") ? json_type(v["shape"]) : "nothing");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned())
        impl->fail(field + ".shape", "an array of non-negative integers", "an element " + d.dump());
      uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || !mul_checked(numel, dim, &numel))
        impl->fail(field + ".shape", "a shape whose element count fits in 64 bits", v["shape"].dump(), "overflow");
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    const json& off = v.contains("data_offsets") ? v["data_offsets"] : json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      impl->fail(field + ".data_offsets", "[begin, end] with non-negative integers", off.is_null() ? "nothing" : off.dump());
    info.data_begin = off[0].get<uint64_t>();
    info.data_end = off[1].get<uint64_t>();
    if (info.data_end < info.data_begin)
      impl->fail(field + ".data_offsets", "begin <= end", off.dump());
    uint64_t nbytes = 0;
    if (!mul_checked(numel, dtype_size(info.dtype), &nbytes))
      impl->fail(field, "a byte size that fits in 64 bits", "overflow for shape " + v["shape"].dump());
    if (nbytes != info.nbytes())
      impl->fail(field + ".data_offsets", "a span of prod(shape) x dtype size = " + std::to_string(nbytes) + " bytes",
                 std::to_string(info.nbytes()) + " bytes (" + off.dump() + ")");
    if (info.data_end > data_size)
      impl->fail(field + ".data_offsets", "inside the data section (" + std::to_string(data_size) + " bytes)",
                 off.dump() + ", i.e. up to file offset " + std::to_string(8 + n + info.data_end), "the file is truncated");
    impl->tensors.push_back(std::move(info));
  }

  // Offsets must tile the data section exactly: contiguous from 0, no holes, no overlaps.
  std::stable_sort(impl->tensors.begin(), impl->tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
  });
  uint64_t expected = 0;
  for (const auto& t : impl->tensors) {
    if (t.data_begin != expected)
      impl->fail("tensor \"" + t.name + "\".data_offsets",
                 "begin = " + std::to_string(expected) + " (offsets contiguous from 0)",
                 std::to_string(t.data_begin),
                 t.data_begin < expected ? "it overlaps the previous tensor" : "there is a hole before it");
    expected = t.data_end;
  }
  if (expected != data_size)
    impl->fail("data section", std::to_string(expected) + " bytes (the end of the last tensor)",
               std::to_string(data_size) + " bytes", "trailing bytes after the last tensor, or a truncated file");
  for (size_t i = 0; i < impl->tensors.size(); ++i) impl->by_name[impl->tensors[i].name] = i;
  if (detail::log_enabled(detail::LogLevel::debug))
    detail::log(detail::LogLevel::debug, "opened " + path + ": " + std::to_string(impl->tensors.size()) +
                                             " tensors, header " + std::to_string(n) + " bytes");
  impl_ = std::move(impl);
}

const std::string& SafetensorsFile::path() const { return impl_->path; }
uint64_t SafetensorsFile::file_size() const { return impl_->file_size; }
uint64_t SafetensorsFile::header_size() const { return impl_->header_size; }
const std::vector<TensorInfo>& SafetensorsFile::tensors() const { return impl_->tensors; }
std::vector<std::string> SafetensorsFile::keys() const {
  std::vector<std::string> k;
  for (const auto& t : impl_->tensors) k.push_back(t.name);
  return k;
}
bool SafetensorsFile::contains(const std::string& name) const { return impl_->by_name.count(name) > 0; }
const TensorInfo& SafetensorsFile::info(const std::string& name) const { return impl_->lookup(name); }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }
const uint8_t* SafetensorsFile::data(const std::string& name) const {
  return impl_->data_start() + impl_->lookup(name).data_begin;
}

bool SafetensorsFile::is_zero_copy(const std::string& name) const {
  const auto& t = impl_->lookup(name);
  auto addr = reinterpret_cast<uintptr_t>(impl_->data_start() + t.data_begin);
  return addr % dtype_size(t.dtype) == 0;
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  const auto& t = impl_->lookup(name);
  auto options = at::TensorOptions().dtype(to_scalar_type(t.dtype)).device(at::kCPU);
  auto* ptr = const_cast<uint8_t*>(impl_->data_start() + t.data_begin);
  if (t.numel() == 0) return at::empty(t.shape, options);
  if (is_zero_copy(name)) {
    auto keep = impl_->map;  // the tensor owns a reference to the mapping
    return at::from_blob(ptr, t.shape, [keep](void*) mutable { keep.reset(); }, options);
  }
  auto out = at::empty(t.shape, options);
  std::memcpy(out.data_ptr(), ptr, t.nbytes());
  return out;
}

// ---------------------------------------------------------------------------
// Sharded checkpoints
// ---------------------------------------------------------------------------
SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path_in) {
  fs::path path(path_in);
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw FileNotFound(detail::expected_got("checkpoint", "an existing file or directory", "no such path: " + path_in));
  SafetensorsCheckpoint ck;
  fs::path index;
  if (fs::is_directory(path)) {
    path = detail::find_weights_file(path_in);
    if (path.extension() == ".json") index = path;
  } else if (path.extension() == ".json") {
    index = path;
  }

  if (index.empty()) {
    ck.files_.push_back(std::make_shared<SafetensorsFile>(path.string()));
    for (const auto& k : ck.files_[0]->keys()) ck.index_[k] = 0;
    ck.metadata_ = ck.files_[0]->metadata();
    return ck;
  }

  const std::string idx_name = index.string();
  json j;
  try {
    j = json::parse(detail::read_text_file(idx_name, "checkpoint index"));
  } catch (const json::parse_error& e) {
    throw FormatError(detail::expected_got(idx_name, "well-formed JSON", std::string("a parse error: ") + e.what()));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw FormatError(detail::expected_got(idx_name + ": field \"weight_map\"", "an object {tensor name: shard file}",
                                           j.is_object() && j.contains("weight_map") ? j["weight_map"].type_name() : "nothing"));
  if (j.contains("metadata") && j["metadata"].is_object())
    for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it)
      ck.metadata_[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();

  std::map<std::string, size_t> file_pos;
  const fs::path dir = index.parent_path();
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw FormatError(detail::expected_got(idx_name + ": weight_map[\"" + it.key() + "\"]", "a shard file name",
                                             it.value().type_name()));
    const std::string shard = it.value().get<std::string>();
    if (fs::path(shard).is_absolute() || shard.find("..") != std::string::npos)
      throw FormatError(detail::expected_got(idx_name + ": weight_map[\"" + it.key() + "\"]",
                                             "a file name inside the checkpoint directory", "\"" + shard + "\""));
    auto [pos, inserted] = file_pos.emplace(shard, ck.files_.size());
    if (inserted) ck.files_.push_back(std::make_shared<SafetensorsFile>((dir / shard).string()));
    const auto& f = *ck.files_[pos->second];
    if (!f.contains(it.key()))
      throw FormatError(detail::expected_got(idx_name + ": weight_map[\"" + it.key() + "\"]",
                                             "a tensor present in " + shard, "no such tensor in that shard"));
    ck.index_[it.key()] = pos->second;
  }
  // Tensors in shards but not in the index are a sign of a broken checkpoint.
  for (size_t i = 0; i < ck.files_.size(); ++i)
    for (const auto& k : ck.files_[i]->keys()) {
      auto found = ck.index_.find(k);
      if (found == ck.index_.end() || found->second != i)
        throw FormatError(detail::expected_got(idx_name, "every shard tensor listed in weight_map",
                                               "\"" + k + "\" in " + ck.files_[i]->path() + " is not listed there"));
    }
  return ck;
}

std::vector<std::string> SafetensorsCheckpoint::keys() const {
  std::vector<std::string> k;
  for (const auto& [name, _] : index_) k.push_back(name);
  return k;
}
bool SafetensorsCheckpoint::contains(const std::string& name) const { return index_.count(name) > 0; }
const TensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw UnknownName(detail::expected_got("tensor \"" + name + "\"", "a tensor of the checkpoint", "no such tensor",
                                           "nearest: " + detail::join_names(detail::nearest_names(name, keys()))));
  return files_[it->second]->info(name);
}
at::Tensor SafetensorsCheckpoint::get(const std::string& name) const {
  info(name);  // throws UnknownName with hints
  return files_[index_.at(name)]->get(name);
}
const std::map<std::string, std::string>& SafetensorsCheckpoint::metadata() const { return metadata_; }
std::vector<std::string> SafetensorsCheckpoint::files() const {
  std::vector<std::string> f;
  for (const auto& p : files_) f.push_back(p->path());
  return f;
}
uint64_t SafetensorsCheckpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, i] : index_) total += files_[i]->info(name).nbytes();
  return total;
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  auto ck = SafetensorsCheckpoint::open(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& k : ck.keys()) out.emplace(k, ck.get(k));
  return out;
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  struct Entry {
    const std::string* name;
    DType dtype;
    at::Tensor data;  // CPU, contiguous
  };
  std::vector<Entry> entries;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      throw InvalidArgument(detail::expected_got("tensor name", "any name but \"__metadata__\"", "\"__metadata__\"",
                                                 "that key is reserved for the metadata map"));
    if (!seen.insert(name).second)
      throw InvalidArgument(detail::expected_got("tensor names", "unique names", "\"" + name + "\" twice"));
    if (!t.defined())
      throw InvalidArgument(detail::expected_got("tensor \"" + name + "\"", "a defined tensor", "an undefined one"));
    entries.push_back({&name, from_scalar_type(t.scalar_type()), t.to(at::kCPU).contiguous()});
  }
  // The Python package's layout: by dtype, largest first, then by name.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.dtype != b.dtype ? a.dtype > b.dtype : *a.name < *b.name;
  });

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      header += json(k).dump() + ":" + json(v).dump();
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (const auto& e : entries) {
    if (header.size() > 1) header += ",";
    header += json(*e.name).dump() + ":{\"dtype\":\"" + dtype_name(e.dtype) + "\",\"shape\":[";
    for (int64_t i = 0; i < e.data.dim(); ++i) header += (i ? "," : "") + std::to_string(e.data.size(i));
    uint64_t nbytes = static_cast<uint64_t>(e.data.numel()) * dtype_size(e.dtype);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  detail::AtomicFile out(path);
  uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(header.data(), header.size());
  for (const auto& e : entries)
    out.write(e.data.data_ptr(), static_cast<size_t>(e.data.numel()) * dtype_size(e.dtype));
  out.commit();
}

}  // namespace scalpel
