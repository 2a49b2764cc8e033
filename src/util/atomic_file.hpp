// Private: a file written atomically — bytes go to a temporary file in the
// target's directory, which commit() flushes, fsyncs and renames over the
// target. Destroyed without commit(), the temporary file is removed and the
// target is left as it was.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace scalpel::detail {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void commit();

 private:
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Writes `text` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace scalpel::detail

namespace scalpel::detail {

/// Writes a directory atomically: `fill` writes into a hidden directory
/// beside `out`, which is then renamed over it (removed if `fill` throws).
/// Refuses a non-empty `out` unless `overwrite`, and `out` when it is the
/// directory `protect` (a source that must stay untouched; "" for none).
void write_directory_atomic(const std::string& out, bool overwrite, const std::string& protect,
                            const std::function<void(const std::string& tmp)>& fill);

}  // namespace scalpel::detail
