// Structured logging to stderr, as text or as one JSON object per line.
//
//   Log(LogLevel::kInfo, "pulled image", {{"deploy_id", id}, {"digest", d}});
//
// Fields carry ids (deploy_id, rollout_id) so every line can be correlated.
// Never log secrets: callers pass only what is safe to print.
//
// Messages and fields may quote input from the network (webhook fields,
// certificate names, error texts), so no value can end a line or start a
// forged one: the text format escapes control characters
// (EscapeForTextLog), the JSON format is one JSON object per line, whose
// strings escape them too.
#ifndef HOIST_COMMON_LOG_H_
#define HOIST_COMMON_LOG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hoist {

enum class LogLevel { kDebug, kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

using LogFields = std::vector<std::pair<std::string, std::string>>;

// Process-wide settings, set once by main() before threads start.
void SetLogFormat(LogFormat format);
void SetMinLogLevel(LogLevel level);
// Parses "text" or "json".
absl::Status ParseLogFormat(absl::string_view text, LogFormat* format);

// `text` as the text format writes it: each control character (below 0x20,
// and 0x7f) becomes an escape (\n, \r, \t, else \xHH) and a backslash
// becomes \\, so the result holds no line break and reads back unambiguously.
// Other bytes, UTF-8 included, are kept.
std::string EscapeForTextLog(absl::string_view text);

// The line Log() writes at `time`, without its trailing newline. Text:
// "TIME LEVEL MESSAGE key=value ..." with message, keys and values escaped
// by EscapeForTextLog. JSON: {"time", "level", "msg", fields...} on one
// line, control characters escaped as JSON requires, invalid UTF-8 replaced.
std::string FormatLogLine(LogFormat format, LogLevel level, absl::Time time,
                          absl::string_view message, const LogFields& fields);

// Writes one line; thread-safe (one write(2) per line).
void Log(LogLevel level, absl::string_view message,
         const LogFields& fields = {});

inline void LogInfo(absl::string_view m, const LogFields& f = {}) {
  Log(LogLevel::kInfo, m, f);
}
inline void LogWarning(absl::string_view m, const LogFields& f = {}) {
  Log(LogLevel::kWarning, m, f);
}
inline void LogError(absl::string_view m, const LogFields& f = {}) {
  Log(LogLevel::kError, m, f);
}

}  // namespace hoist

#endif  // HOIST_COMMON_LOG_H_
