// scalpel/io/gguf.hpp — GGUF files (llama.cpp's format, versions 2 and 3):
// validated reading of the header, typed metadata and tensor infos, and
// dequantization of ggml block formats to float32 / bfloat16 / float16.
//
// Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count,
// metadata (key string, u32 value type, value), tensor infos (name, u32 n_dims,
// u64 dims in ggml order = fastest-varying first, u32 ggml type, u64 offset
// relative to the data section), padding to `general.alignment` (default 32),
// data section. Every bound, count and offset is checked when the file is
// opened; a failed check throws scalpel::FormatError naming the file, the
// field and the byte offset.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace scalpel {

/// Metadata value types, numbered as in the GGUF specification.
enum class GGUFValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
/// "UINT32", "STRING", ...
std::string gguf_value_type_name(GGUFValueType type);

/// ggml tensor types, numbered as in ggml.h. Types 4 and 5 (the removed
/// Q4_2/Q4_3) are not valid.
enum class GGMLType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};
/// "Q4_K", "BF16", ...; throws InvalidArgument for a number that is no ggml type.
std::string ggml_type_name(GGMLType type);
/// Inverse of ggml_type_name; throws InvalidArgument listing the known names.
GGMLType ggml_type_from_name(const std::string& name);
/// Elements per block (1 for F32/F16/BF16/I*, 32 for Q4_0..Q8_1, 256 for K-quants).
int64_t ggml_block_size(GGMLType type);
/// Bytes per block.
int64_t ggml_type_size(GGMLType type);
/// Whether scalpel can dequantize this type.
bool ggml_can_dequantize(GGMLType type);

/// One metadata value. Scalars are held as int64 / uint64 / double / bool /
/// string; arrays as a vector of values of one element type (arrays of arrays
/// are allowed by the format and supported).
class GGUFValue {
 public:
  GGUFValueType type() const;
  /// The element type of an array (throws InvalidArgument for a non-array).
  GGUFValueType array_type() const;
  bool is_array() const;
  /// Number of elements of an array (throws for a scalar).
  size_t size() const;

  /// Typed accessors; each throws InvalidArgument naming the expected and
  /// actual type when the value is of another kind. as_int accepts every
  /// integer type (and throws for a UINT64 above INT64_MAX); as_float accepts
  /// FLOAT32/FLOAT64 and integers.
  int64_t as_int() const;
  uint64_t as_uint() const;
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;
  std::vector<int64_t> as_int_array() const;
  std::vector<double> as_float_array() const;
  std::vector<std::string> as_string_array() const;
  std::vector<bool> as_bool_array() const;
  /// Element i of an array, as a value.
  GGUFValue at(size_t i) const;

  /// Compact JSON text of the value (strings escaped; arrays longer than
  /// `max_array` elements abbreviated as [first..., "... (N more)"] when
  /// max_array > 0).
  std::string to_json(size_t max_array = 0) const;

  struct Impl;
  explicit GGUFValue(std::shared_ptr<const Impl> impl);

 private:
  std::shared_ptr<const Impl> impl_;
};

/// One tensor info.
struct GGUFTensorInfo {
  std::string name;
  GGMLType type = GGMLType::F32;
  /// ggml order: dims[0] is the fastest-varying (contiguous) dimension.
  std::vector<int64_t> dims;
  /// Offset of the data relative to the start of the data section.
  uint64_t offset = 0;
  /// Bytes of the data (number of blocks × type size).
  uint64_t nbytes = 0;

  int64_t numel() const;
  /// The shape in PyTorch (row-major) order: dims reversed, as the `gguf`
  /// package's GGUFReader reports it after dequantization.
  std::vector<int64_t> shape() const;
};

class GGUFFile {
 public:
  /// Memory-maps and validates `path`. Throws FileNotFound or FormatError.
  explicit GGUFFile(const std::string& path);
  /// The concatenation of `parts` (a GGUF split into chunk files in order,
  /// as a package may ship it), read into memory and validated as one file.
  static GGUFFile from_parts(const std::vector<std::string>& parts);

  const std::string& path() const;
  uint32_t version() const;
  uint64_t file_size() const;
  /// `general.alignment`, or 32.
  uint64_t alignment() const;
  /// Byte offset of the data section in the file.
  uint64_t data_offset() const;

  /// Metadata keys in file order.
  std::vector<std::string> keys() const;
  bool contains(const std::string& key) const;
  /// Throws UnknownName (listing the nearest keys) for a missing key.
  GGUFValue get(const std::string& key) const;
  /// `general.architecture` (throws FormatError when absent).
  std::string architecture() const;

  /// Tensor infos in file order.
  const std::vector<GGUFTensorInfo>& tensors() const;
  bool has_tensor(const std::string& name) const;
  /// Throws UnknownName (listing the nearest names) for a missing tensor.
  const GGUFTensorInfo& tensor_info(const std::string& name) const;
  /// The raw bytes of a tensor (valid while this object lives).
  const uint8_t* tensor_data(const std::string& name) const;

  /// The tensor dequantized to `dtype` (float32, bfloat16 or float16) with
  /// shape tensor_info(name).shape(). Throws Unsupported for a type scalpel
  /// cannot dequantize (the message names the type and the supported ones).
  at::Tensor dequantize(const std::string& name, c10::ScalarType dtype = c10::ScalarType::Float) const;
  /// The tensor's raw bytes as a uint8 tensor (a copy), for re-export.
  at::Tensor raw(const std::string& name) const;

  struct Impl;

 private:
  explicit GGUFFile(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

/// Dequantizes `n` elements (a multiple of the block size) of `type` stored at
/// `src` to float32 at `dst`. Throws InvalidArgument for a bad n and
/// Unsupported for an unsupported type.
void dequantize_row(GGMLType type, const void* src, float* dst, int64_t n);

/// dequantize_row over a uint8 tensor of raw blocks; returns float32 [n].
at::Tensor dequantize_blocks(GGMLType type, const at::Tensor& raw_bytes);

/// A metadata value for write_gguf: its type and the field that holds it
/// (text for STRING; integer for the integer types and BOOL; real for
/// FLOAT32 / FLOAT64). Arrays are not written.
struct GGUFWriteValue {
  GGUFValueType type = GGUFValueType::STRING;
  std::string text;
  int64_t integer = 0;
  double real = 0.0;
};

/// Writes a GGUF file (version 3, alignment 32) of float32 tensors, each given
/// in PyTorch (row-major) order and stored in ggml order, with `metadata` in
/// the order given — atomically; an existing file is refused unless
/// `overwrite`. InvalidArgument for a duplicate key or tensor name, a
/// non-float32 or non-contiguous-able tensor, or an array type.
void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GGUFWriteValue>>& metadata,
                const std::vector<std::pair<std::string, at::Tensor>>& tensors, bool overwrite = false);

}  // namespace scalpel
