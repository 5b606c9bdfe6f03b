// Structured logging to stderr, as text or as one JSON object per line.
//
//   Log(LogLevel::kInfo, "pulled image", {{"deploy_id", id}, {"digest", d}});
//
// Fields carry ids (deploy_id, rollout_id) so every line can be correlated.
// Never log secrets: callers pass only what is safe to print.
#ifndef HOIST_COMMON_LOG_H_
#define HOIST_COMMON_LOG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hoist {

enum class LogLevel { kDebug, kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

using LogFields = std::vector<std::pair<std::string, std::string>>;

// Process-wide settings, set once by main() before threads start.
void SetLogFormat(LogFormat format);
void SetMinLogLevel(LogLevel level);
// Parses "text" or "json".
absl::Status ParseLogFormat(absl::string_view text, LogFormat* format);

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
