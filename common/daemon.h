// What both daemons share around main(): command-line flags, version, and
// signal handling (SIGHUP reload, SIGTERM/SIGINT shutdown).
#ifndef HOIST_COMMON_DAEMON_H_
#define HOIST_COMMON_DAEMON_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/log.h"

namespace hoist {

// Hoist's version string, e.g. "0.1.0".
const char* HoistVersion();

struct DaemonFlags {
  std::string config;          // --config FILE (required unless help/version)
  bool check_config = false;   // --check-config
  bool help = false;           // --help
  bool version = false;        // --version
  LogFormat log_format = LogFormat::kText;  // --log-format text|json
};

// Parses `--flag value` and `--flag=value`. INVALID_ARGUMENT on an unknown
// flag, a missing value, or no --config when one is needed.
absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, char** argv);

// Usage text for `program` (the --help output).
std::string DaemonUsage(const std::string& program, const std::string& summary);

// Blocks SIGHUP, SIGTERM and SIGINT in the calling thread and every thread
// it creates afterwards. Call first thing in main().
void BlockDaemonSignals();

// Waits for one of the blocked signals and returns its number.
int WaitForDaemonSignal();

}  // namespace hoist

#endif  // HOIST_COMMON_DAEMON_H_
