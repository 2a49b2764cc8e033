// Files written atomically, and the row reader's public face (scalpel/io/files.hpp).
#include "io/atomic_file.hpp"

#include "io/json_rows.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace fs = std::filesystem;

namespace scalpel::detail {

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  fs::path p(path);
  fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw FileNotFound(expected_got("output file " + path, "an existing directory " + dir.string(),
                                    "no such directory", "create it first"));
  if (fs::is_directory(p, ec))
    throw InvalidArgument(expected_got("output file " + path, "a file path", "an existing directory"));
  std::string templ = (dir / ("." + p.filename().string() + ".tmp.XXXXXX")).string();
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  if (fd_ < 0)
    throw FormatError(expected_got("output file " + path, "a writable directory", std::strerror(errno)));
  tmp_ = buf.data();
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw FormatError(expected_got("writing " + path_, "success", std::strerror(errno), "is the disk full?"));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    throw FormatError(expected_got("writing " + path_, "success", std::strerror(errno)));
  }
  fd_ = -1;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw FormatError(expected_got("renaming into " + path_, "success", std::strerror(errno)));
  committed_ = true;
}

}  // namespace scalpel::detail

namespace scalpel {

using detail::expected_got;

void write_file_atomic(const std::string& path, const std::string& text) {
  detail::AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}


void write_directory_atomic(const std::string& out_dir, bool overwrite, const std::string& protect,
                            const std::function<void(const std::string& tmp)>& fill) {
  fs::path out = fs::absolute(out_dir).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "out/" names the directory out
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)) && !overwrite)
    throw InvalidArgument(expected_got("output directory " + out.string(), "absent or empty", "not empty",
                                       "choose another directory or pass overwrite=True"));
  std::error_code ec;
  if (!protect.empty() && fs::exists(out)) {
    // Refuse the source itself and any directory holding it (overwriting would delete it).
    const fs::path src = fs::weakly_canonical(fs::absolute(protect), ec);
    const fs::path dst = fs::weakly_canonical(out, ec);
    const auto mismatch = std::mismatch(dst.begin(), dst.end(), src.begin(), src.end());
    if (mismatch.first == dst.end())
      throw InvalidArgument(expected_got("output directory " + out.string(),
                                         "a directory that is not the source " + protect + " and does not contain it",
                                         out.string()));
  }
  fs::create_directories(out.parent_path());
  const std::string pid = std::to_string(::getpid());
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".partial-" + pid);
  const fs::path old = out.parent_path() / ("." + out.filename().string() + ".old-" + pid);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    fill(tmp.string());
    // The old output moves aside before the new one moves in, so a crash leaves one of them.
    fs::remove_all(old);
    if (fs::exists(out)) fs::rename(out, old);
    fs::rename(tmp, out);
  } catch (...) {
    fs::remove_all(tmp, ec);
    if (!fs::exists(out) && fs::exists(old)) fs::rename(old, out, ec);
    throw;
  }
  fs::remove_all(old, ec);
}

}  // namespace scalpel

namespace scalpel {

// The one row reader's public face: each row as JSON text (torch- and nlohmann-free header).
std::vector<std::string> read_rows(const std::string& path, size_t max_rows) {
  std::vector<std::string> out;
  for (const auto& row : detail::read_json_rows(path, "rows of " + path, max_rows)) out.push_back(row.value.dump());
  return out;
}

}  // namespace scalpel
