// What both daemons share around main() (docs/design.md, "Daemons"): the
// standard flags, the config check, exit codes, process settings and the
// signal loop (SIGHUP reload, SIGTERM/SIGINT stop).
//
// A daemon's main() is
//
//   return hoist::DaemonMain(spec, argc, argv);
//
// with a DaemonSpec naming the program, how to load its config and how to
// serve with it. Serving starts the daemon's parts, calls WaitForStopSignal()
// with its reload step, then stops them.
#ifndef HOIST_COMMON_DAEMON_H_
#define HOIST_COMMON_DAEMON_H_

#include <functional>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/log.h"

namespace hoist {

// Hoist's version string, e.g. "0.1.0".
const char* HoistVersion();

// Exit codes of both daemons (docs/design.md, "Daemons").
inline constexpr int kDaemonExitOk = 0;           // stopped, or nothing to run
inline constexpr int kDaemonExitCannotStart = 1;  // TLS files, journal, port
inline constexpr int kDaemonExitBadConfig = 2;    // bad command line or config
// A receiver on etcd that lost its leadership (docs/design.md, "High
// availability on etcd"): its supervisor starts it again, as a follower.
inline constexpr int kDaemonExitLeadershipLost = 3;

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

// How one daemon runs; see RunDaemon().
template <typename Config>
struct DaemonSpec {
  const char* program = "";  // in messages and --version: "hoist-agent"
  std::string summary;       // the line under the usage in --help
  // Loads and validates the config file at `path`. Its error's message holds
  // the problems, one "FILE:LINE: problem" per line.
  std::function<absl::StatusOr<Config>(const std::string& path)> load_config;
  // Runs the daemon with a valid config until a stop signal. Returns the
  // exit code: kDaemonExitOk after a graceful stop, kDaemonExitCannotStart
  // when a part cannot start (it logs why).
  std::function<int(const DaemonFlags& flags, Config config)> serve;
  // Also log "invalid config; not starting" when a start (not
  // --check-config) finds the config invalid.
  bool log_invalid_config = false;
  // Where --help, --version and "config OK" go, and where the command line's
  // and the config's problems go. Not owned; must outlive RunDaemon().
  std::ostream* out = &std::cout;
  std::ostream* err = &std::cerr;
};

// Steps of RunDaemon(), for daemons and tests that need only one.
//
// Parses the flags and answers what needs no config: --help and --version
// (on `out`, exit kDaemonExitOk) and a bad command line (the problem and the
// usage on `err`, exit kDaemonExitBadConfig). Returns that exit code, or
// nullopt with `*flags` set and the log format applied.
std::optional<int> HandleDaemonFlags(const char* program,
                                     const std::string& summary, int argc,
                                     char** argv, std::ostream& out,
                                     std::ostream& err, DaemonFlags* flags);
// Answers a loaded config: with problems, prints them on `err` (and logs
// "invalid config; not starting" if `log_invalid` and not --check-config)
// and returns kDaemonExitBadConfig; with --check-config prints "config OK"
// on `out` and returns kDaemonExitOk; otherwise nullopt: serve it.
std::optional<int> HandleDaemonConfig(const DaemonFlags& flags,
                                      const absl::Status& loaded,
                                      bool log_invalid, std::ostream& out,
                                      std::ostream& err);

// Everything main() does after the process settings: flags, --help,
// --version, log format, config (loaded once), --check-config, then
// spec.serve. Returns the process's exit code. Does not touch signals or
// malloc, so tests call it in-process.
template <typename Config>
int RunDaemon(const DaemonSpec<Config>& spec, int argc, char** argv) {
  DaemonFlags flags;
  if (std::optional<int> code =
          HandleDaemonFlags(spec.program, spec.summary, argc, argv, *spec.out,
                            *spec.err, &flags)) {
    return *code;
  }
  absl::StatusOr<Config> config = spec.load_config(flags.config);
  if (std::optional<int> code =
          HandleDaemonConfig(flags, config.status(), spec.log_invalid_config,
                             *spec.out, *spec.err)) {
    return *code;
  }
  return spec.serve(flags, *std::move(config));
}

// Blocks SIGHUP, SIGTERM and SIGINT in the calling thread and every thread
// it creates afterwards (so only WaitForStopSignal() receives them), and
// ignores SIGPIPE. Call first thing in main().
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

// A daemon's whole main(): TuneDaemonProcess() and BlockDaemonSignals()
// before any thread starts, then RunDaemon().
template <typename Config>
int DaemonMain(const DaemonSpec<Config>& spec, int argc, char** argv) {
  TuneDaemonProcess();
  BlockDaemonSignals();
  return RunDaemon(spec, argc, argv);
}

// The serving loop: waits for the signals BlockDaemonSignals() blocked,
// calls `reload` on the calling thread for each SIGHUP, and returns the
// number of the first SIGTERM or SIGINT. A signal arriving while `reload`
// runs waits for it to return (several SIGHUPs meanwhile make one reload).
int WaitForStopSignal(const std::function<void()>& reload);

}  // namespace hoist

#endif  // HOIST_COMMON_DAEMON_H_
