// Private: a file written atomically — bytes go to a temporary file in the
// target's directory, which commit() flushes, fsyncs and renames over the
// target. Destroyed without commit(), the temporary file is removed and the
// target is left as it was.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "scalpel/io/files.hpp"

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


}  // namespace scalpel::detail
