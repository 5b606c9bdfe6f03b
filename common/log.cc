#include "common/log.h"

#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

std::string EscapeForTextLog(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (byte < 0x20 || byte == 0x7f) {
      out.append(absl::StrFormat("\\x%02x", byte));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string FormatLogLine(LogFormat format, LogLevel level, absl::Time time,
                          absl::string_view message, const LogFields& fields) {
  const std::string when =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
  if (format == LogFormat::kJson) {
    nlohmann::json j;
    j["time"] = when;
    j["level"] = LevelName(level);
    j["msg"] = std::string(message);
    for (const auto& [k, v] : fields) j[k] = v;
    // nlohmann escapes every character below 0x20 (RFC 8259). Invalid UTF-8
    // is replaced rather than thrown on: log lines may quote input.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line =
      absl::StrCat(when, " ", LevelName(level), " ", EscapeForTextLog(message));
  for (const auto& [k, v] : fields) {
    absl::StrAppend(&line, " ", EscapeForTextLog(k), "=", EscapeForTextLog(v));
  }
  return line;
}

void Log(LogLevel level, absl::string_view message, const LogFields& fields) {
  if (level < g_min_level.load()) return;
  std::string line =
      FormatLogLine(g_format.load(), level, absl::Now(), message, fields);
  line.push_back('\n');
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace hoist
