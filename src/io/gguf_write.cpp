// SCALPEL_USES_TORCH
// Writing GGUF files of float32 tensors (scalpel/io/gguf.hpp: write_gguf) —
// what control vectors need; the layout is GGUF version 3's.
#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "scalpel/errors.hpp"
#include "scalpel/io/files.hpp"
#include "scalpel/io/gguf.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

constexpr uint64_t kAlignment = 32;

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // GGUF is little-endian, as every machine scalpel builds for
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void pad(std::string& out, uint64_t base) {
  while ((out.size() - base) % kAlignment != 0) out.push_back('\0');
}

void put_value(std::string& out, const std::string& key, const GGUFWriteValue& v) {
  put<uint32_t>(out, static_cast<uint32_t>(v.type));
  auto range = [&](int64_t lo, int64_t hi) {
    if (v.integer < lo || v.integer > hi)
      throw InvalidArgument(detail::expected_got("write_gguf metadata \"" + key + "\"",
                                                 "a value in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] for " +
                                                     gguf_value_type_name(v.type),
                                                 std::to_string(v.integer)));
  };
  switch (v.type) {
    case GGUFValueType::STRING: put_string(out, v.text); break;
    case GGUFValueType::UINT8: range(0, 255); put<uint8_t>(out, static_cast<uint8_t>(v.integer)); break;
    case GGUFValueType::INT8: range(-128, 127); put<int8_t>(out, static_cast<int8_t>(v.integer)); break;
    case GGUFValueType::UINT16: range(0, 65535); put<uint16_t>(out, static_cast<uint16_t>(v.integer)); break;
    case GGUFValueType::INT16: range(-32768, 32767); put<int16_t>(out, static_cast<int16_t>(v.integer)); break;
    case GGUFValueType::UINT32: range(0, 4294967295LL); put<uint32_t>(out, static_cast<uint32_t>(v.integer)); break;
    case GGUFValueType::INT32: range(-2147483648LL, 2147483647LL); put<int32_t>(out, static_cast<int32_t>(v.integer)); break;
    case GGUFValueType::UINT64: range(0, INT64_MAX); put<uint64_t>(out, static_cast<uint64_t>(v.integer)); break;
    case GGUFValueType::INT64: put<int64_t>(out, v.integer); break;
    case GGUFValueType::FLOAT32: put<float>(out, static_cast<float>(v.real)); break;
    case GGUFValueType::FLOAT64: put<double>(out, v.real); break;
    case GGUFValueType::BOOL: range(0, 1); put<uint8_t>(out, static_cast<uint8_t>(v.integer)); break;
    case GGUFValueType::ARRAY:
    default:
      throw InvalidArgument(detail::expected_got("write_gguf metadata \"" + key + "\"", "a scalar or string type",
                                                 gguf_value_type_name(v.type)));
  }
}

}  // namespace

void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GGUFWriteValue>>& metadata,
                const std::vector<std::pair<std::string, at::Tensor>>& tensors, bool overwrite) {
  if (!overwrite && std::filesystem::exists(path))
    throw InvalidArgument(detail::expected_got("write_gguf path", "a new file", "existing file " + path,
                                               "pass overwrite=true to replace it"));
  std::set<std::string> keys, names;
  for (const auto& [k, _] : metadata) {
    if (!keys.insert(k).second) throw InvalidArgument(detail::expected_got("write_gguf metadata", "each key once", "\"" + k + "\" twice"));
    if (k == "general.alignment")
      throw InvalidArgument(detail::expected_got("write_gguf metadata", "no general.alignment (the writer aligns to 32)", "general.alignment"));
  }
  std::vector<at::Tensor> data;
  for (const auto& [n, t] : tensors) {
    if (!names.insert(n).second) throw InvalidArgument(detail::expected_got("write_gguf tensors", "each name once", "\"" + n + "\" twice"));
    if (!t.defined() || t.scalar_type() != at::kFloat || t.dim() < 1)
      throw InvalidArgument(detail::expected_got("write_gguf tensor \"" + n + "\"", "a float32 tensor of at least one dimension",
                                                 t.defined() ? std::string(c10::toString(t.scalar_type())) + " " + c10::str(t.sizes())
                                                             : std::string("undefined")));
    if (t.dim() > 4 || n.size() >= 64)
      throw InvalidArgument(detail::expected_got("write_gguf tensor \"" + n + "\"", "at most 4 dimensions and a name under 64 bytes (ggml's limits)",
                                                 std::to_string(t.dim()) + " dimensions, " + std::to_string(n.size()) + " bytes"));
    data.push_back(t.detach().to(at::kCPU).contiguous());
  }
  std::string out;
  out += "GGUF";
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors.size());
  put<uint64_t>(out, metadata.size());
  for (const auto& [k, v] : metadata) {
    put_string(out, k);
    put_value(out, k, v);
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    put_string(out, tensors[i].first);
    const auto& t = data[i];
    put<uint32_t>(out, static_cast<uint32_t>(t.dim()));
    for (int64_t d = t.dim() - 1; d >= 0; --d) put<uint64_t>(out, static_cast<uint64_t>(t.size(d)));  // ggml order
    put<uint32_t>(out, static_cast<uint32_t>(GGMLType::F32));
    put<uint64_t>(out, offset);
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * 4;
    offset += (bytes + kAlignment - 1) / kAlignment * kAlignment;
  }
  pad(out, 0);
  const uint64_t base = out.size();
  for (const auto& t : data) {
    out.append(reinterpret_cast<const char*>(t.data_ptr<float>()), static_cast<size_t>(t.numel()) * 4);
    pad(out, base);
  }
  write_file_atomic(path, out);
}

}  // namespace scalpel
