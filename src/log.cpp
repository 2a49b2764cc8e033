#include "scalpel/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include "scalpel/errors.hpp"
#include <spdlog/spdlog.h>

#include "util/logging.hpp"
#include "util/messages.hpp"

namespace scalpel {
namespace {

spdlog::level::level_enum parse_level(const std::string& s, const char* source) {
  static const char* names[] = {"trace", "debug", "info", "warn", "error", "off"};
  static const spdlog::level::level_enum levels[] = {spdlog::level::trace, spdlog::level::debug,
                                                     spdlog::level::info,  spdlog::level::warn,
                                                     spdlog::level::err,   spdlog::level::off};
  for (int i = 0; i < 6; ++i)
    if (s == names[i]) return levels[i];
  if (s == "warning") return spdlog::level::warn;
  throw InvalidArgument(detail::expected_got(source, "one of trace, debug, info, warn, error, off",
                                             "\"" + s + "\""));
}

std::mutex& callback_mutex() {
  static std::mutex m;
  return m;
}
ProgressCallback& callback() {
  static ProgressCallback cb;
  return cb;
}

}  // namespace

namespace detail {
namespace {
spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> log = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto l = std::make_shared<spdlog::logger>("scalpel", sink);
    l->set_pattern("[scalpel %L] %v");
    spdlog::level::level_enum level = spdlog::level::info;
    if (const char* env = std::getenv("SCALPEL_LOG_LEVEL"); env && *env) {
      try {
        level = parse_level(env, "SCALPEL_LOG_LEVEL");
      } catch (const InvalidArgument& e) {
        l->warn("{} -- using info", e.what());
      }
    }
    l->set_level(level);
    return l;
  }();
  return *log;
}

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::trace: return spdlog::level::trace;
    case LogLevel::debug: return spdlog::level::debug;
    case LogLevel::info: return spdlog::level::info;
    case LogLevel::warn: return spdlog::level::warn;
    case LogLevel::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}
}  // namespace

bool log_enabled(LogLevel level) { return logger().should_log(to_spdlog(level)); }
void log(LogLevel level, const std::string& message) { logger().log(to_spdlog(level), message); }
}  // namespace detail

void set_log_level(const std::string& level) { detail::logger().set_level(parse_level(level, "log level")); }

std::string get_log_level() {
  auto sv = spdlog::level::to_string_view(detail::logger().level());
  std::string s(sv.data(), sv.size());
  return s == "warning" ? "warn" : s;
}

void log_message(const std::string& level, const std::string& message) {
  detail::logger().log(parse_level(level, "log level"), message);
}

void set_progress_callback(ProgressCallback cb) {
  std::lock_guard<std::mutex> lock(callback_mutex());
  callback() = std::move(cb);
}

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()), last_report_(start_) {
  report(false);
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {
    // A progress report must never turn into an exception during unwinding.
  }
}

void Progress::update(int64_t n) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  if (now - last_report_ >= std::chrono::milliseconds(500)) {
    last_report_ = now;
    report(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  report(true);
}

void Progress::report(bool final_report) {
  ProgressCallback cb;
  {
    std::lock_guard<std::mutex> lock(callback_mutex());
    cb = callback();
  }
  if (cb) {
    cb(label_, done_, final_report ? std::max(done_, total_) : total_);
    return;
  }
  auto& log = detail::logger();
  if (!log.should_log(spdlog::level::info)) return;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = secs > 0 ? done_ / secs : 0.0;
  if (final_report) {
    // Jobs that ended before their first progress line stay quiet.
    if (secs >= 1.0) log.info("{}: {}/{} done in {:.1f}s ({:.1f}/s)", label_, done_, total_, secs, rate);
  } else if (done_ > 0) {
    double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
    double pct = total_ > 0 ? 100.0 * done_ / total_ : 0.0;
    log.info("{}: {}/{} ({:.0f}%) {:.1f}/s, ETA {:.0f}s", label_, done_, total_, pct, rate, eta);
  }
}

}  // namespace scalpel
