#include "common/log.h"

#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace hoist {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};
std::atomic<LogLevel> g_min_level{LogLevel::kInfo};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format = format; }
void SetMinLogLevel(LogLevel level) { g_min_level = level; }

absl::Status ParseLogFormat(absl::string_view text, LogFormat* format) {
  if (text == "text") {
    *format = LogFormat::kText;
  } else if (text == "json") {
    *format = LogFormat::kJson;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-format must be text or json, got \"", text, "\""));
  }
  return absl::OkStatus();
}

void Log(LogLevel level, absl::string_view message, const LogFields& fields) {
  if (level < g_min_level.load()) return;
  const std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                            absl::UTCTimeZone());
  std::string line;
  if (g_format.load() == LogFormat::kJson) {
    nlohmann::json j;
    j["time"] = time;
    j["level"] = LevelName(level);
    j["msg"] = std::string(message);
    for (const auto& [k, v] : fields) j[k] = v;
    // Replace invalid UTF-8 rather than throw: log lines may quote input.
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = absl::StrCat(time, " ", LevelName(level), " ", message);
    for (const auto& [k, v] : fields) absl::StrAppend(&line, " ", k, "=", v);
  }
  line.push_back('\n');
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace hoist
