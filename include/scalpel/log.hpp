// scalpel/log.hpp — one level switch for all of scalpel's logging, and progress
// reporting for long jobs.
//
// The level comes from the environment variable SCALPEL_LOG_LEVEL at first use
// (trace, debug, info, warn, error, off; default info) and can be changed at
// any time with set_log_level (Python: scalpel.set_log_level).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace scalpel {

/// Sets the level: one of "trace", "debug", "info", "warn", "error", "off".
/// Throws InvalidArgument for anything else.
void set_log_level(const std::string& level);
std::string get_log_level();

/// Emits a message through scalpel's logger at the given level (used by the
/// Python layer so its messages share the switch).
void log_message(const std::string& level, const std::string& message);

/// Receives progress events instead of the default logger line (Python sets
/// one to drive a notebook progress bar). `done == total` marks the end.
using ProgressCallback = std::function<void(const std::string& label, int64_t done, int64_t total)>;
void set_progress_callback(ProgressCallback callback);

/// Progress of a long job: `Progress p("tracing heads", n); ... p.update();`
/// Reports at most twice per second, with rate and ETA, at level info; a job
/// that ends within a second logs nothing. A progress callback, when set,
/// receives every report instead.
class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(int64_t n = 1);
  void finish();
  int64_t done() const { return done_; }

 private:
  void report(bool final_report);
  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_report_;
};

}  // namespace scalpel
