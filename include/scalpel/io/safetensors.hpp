// scalpel/io/safetensors.hpp — memory-mapped, validated safetensors reading
// (single files and sharded checkpoints) and an atomic writer whose output is
// byte-identical to the `safetensors` Python package's.
//
// Format (https://huggingface.co/docs/safetensors): 8-byte little-endian header
// length N, N bytes of JSON header (padded with spaces), then the data section.
// Every check of the format spec is enforced at open time; a failed check
// throws scalpel::FormatError naming the file, the field and the byte offset.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "scalpel/io/pickle.hpp"

namespace scalpel {

/// The dtypes of the safetensors format, in the format's own order (the
/// writer lays tensors out by descending dtype, then by name, as the Python
/// package does).
enum class DType : uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

/// Bytes per element.
size_t dtype_size(DType dtype);
/// "F32", "BF16", ...
std::string dtype_name(DType dtype);
/// Inverse of dtype_name; throws InvalidArgument for an unknown name.
DType dtype_from_name(const std::string& name);
c10::ScalarType to_scalar_type(DType dtype);
/// Throws InvalidArgument for a torch dtype safetensors cannot store.
DType from_scalar_type(c10::ScalarType type);

/// One tensor entry of a header. Offsets are relative to the data section.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;
  uint64_t data_end = 0;

  uint64_t nbytes() const { return data_end - data_begin; }
  int64_t numel() const;
};

/// One .safetensors file, memory-mapped (copy-on-write private mapping: a
/// tensor may be modified in memory, the file never is).
class SafetensorsFile {
 public:
  /// Opens and validates. Throws FileNotFound or FormatError.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const;
  uint64_t file_size() const;
  /// N, the JSON header's length in bytes (padding included).
  uint64_t header_size() const;

  /// Entries ordered by their data offset.
  const std::vector<TensorInfo>& tensors() const;
  /// Tensor names, ordered by data offset.
  std::vector<std::string> keys() const;
  bool contains(const std::string& name) const;
  /// Throws UnknownName (listing the nearest names) for a missing tensor.
  const TensorInfo& info(const std::string& name) const;
  /// The `__metadata__` string map (empty when absent).
  const std::map<std::string, std::string>& metadata() const;

  /// The tensor. Zero-copy (a view of the mapping, which it keeps alive) when
  /// the data is aligned for its dtype; otherwise a copy.
  at::Tensor get(const std::string& name) const;
  /// Whether get(name) returns a view of the mapping.
  bool is_zero_copy(const std::string& name) const;
  /// The raw little-endian bytes of a tensor (valid while this object or any
  /// tensor obtained from it lives).
  const uint8_t* data(const std::string& name) const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

/// A checkpoint: one .safetensors file, or shards listed by a
/// model.safetensors.index.json ("weight_map": tensor name -> shard file).
class SafetensorsCheckpoint {
 public:
  /// `path`: a .safetensors file, an index .json file, or a directory holding
  /// model.safetensors.index.json or exactly one *.safetensors file. A
  /// directory with only pickle checkpoints (pytorch_model.bin, *.pt, *.pth,
  /// *.ckpt) is refused with instructions to convert; scalpel never unpickles.
  static SafetensorsCheckpoint open(const std::string& path);

  std::vector<std::string> keys() const;
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  at::Tensor get(const std::string& name) const;
  /// Metadata of the index ("metadata") or of the single file.
  const std::map<std::string, std::string>& metadata() const;
  /// The shard files, in index order.
  std::vector<std::string> files() const;
  /// Sum of the tensors' byte sizes.
  uint64_t total_bytes() const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> index_;  // tensor name -> files_ position
  std::map<std::string, std::string> metadata_;
};

/// Writes `tensors` (in any order; names unique and not "__metadata__") with
/// `metadata` to `path` atomically: a temporary file in the same directory,
/// flushed, then renamed over `path`. The bytes equal what
/// safetensors.torch.save_file writes (metadata keys in sorted order; the
/// Python package orders them by hash, so files with ≥ 2 metadata keys agree
/// in content, not in byte order). Tensors need not be contiguous or on CPU.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads every tensor of a file or checkpoint (zero-copy where possible).
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

}  // namespace scalpel
