// scalpel/io/files.hpp — files written atomically: the bytes go to a temporary
// file beside the target, are flushed and fsynced, and renamed over it, so a
// reader sees the old file or the new one, never half of one. Every file
// scalpel writes goes through here (Python's too). Torch-free.
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace scalpel {

/// Writes `bytes` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Writes a directory atomically: `fill` writes into a hidden directory
/// beside `out`, which is then renamed over it (removed if `fill` throws; an
/// old `out` is moved aside first, so a crash leaves one of them). Refuses a
/// non-empty `out` unless `overwrite`, and an `out` that is or contains the
/// directory `protect` (a source that must stay untouched; "" for none).
void write_directory_atomic(const std::string& out, bool overwrite, const std::string& protect,
                            const std::function<void(const std::string& tmp)>& fill);

/// The rows of a data file — a .json list, or JSONL (one value per line; blank
/// lines and lines starting with "//" are skipped) — each as its JSON text, at
/// most `max_rows`. The one reader of row files (atom prompt sets, pair
/// datasets, benchmark data, prompt files). FileNotFound for a missing file;
/// FormatError naming the file and line for invalid JSON.
std::vector<std::string> read_rows(const std::string& path,
                                   size_t max_rows = std::numeric_limits<size_t>::max());

}  // namespace scalpel
