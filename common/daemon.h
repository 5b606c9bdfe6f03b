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
  std::string config;         // --config FILE (required unless help/version)
  bool check_config = false;  // --check-config
  bool help = false;          // --help
  bool version = false;       // --version
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

// Process settings both daemons want; call in main() before any thread
// starts. Tests do not call it, so they keep Abseil's checks.
//  - One glibc malloc arena: gRPC allocates and frees channel and call state
//    on different threads, and with an arena per thread what one frees cannot
//    serve another. Receiver at 1000 agents: peak RSS 205-209 MB with the
//    default arenas, 194-195 MB with one (docs/scaling.md); the agent rarely
//    allocates from two threads at once, and saves ~0.1 MB idle. An
//    operator's MALLOC_ARENA_MAX in the environment is left in force (more
//    arenas trade memory for less allocator contention between threads).
//  - Abseil's mutex deadlock detection off: Debian's Abseil is built without
//    NDEBUG, so every Mutex::Lock would feed a process-wide lock-order graph
//    behind one global lock (about 8 % of the receiver's CPU during a
//    1000-host rollout, and ~9 MB of its RSS).
void TuneDaemonProcess();

// Waits for one of the blocked signals and returns its number.
int WaitForDaemonSignal();

}  // namespace hoist

#endif  // HOIST_COMMON_DAEMON_H_
