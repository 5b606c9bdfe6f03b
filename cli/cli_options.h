// hoistctl's command line: global flags, environment defaults, the command
// and its arguments. Pure parsing, no I/O, so it is table-tested.
#ifndef HOIST_CLI_CLI_OPTIONS_H_
#define HOIST_CLI_CLI_OPTIONS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hoist::cli {

enum class OutputFormat { kText, kJson };

// Exit codes of hoistctl (docs/design.md, "hoistctl").
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;       // the operation failed
inline constexpr int kExitUsage = 2;        // bad command line
inline constexpr int kExitUnreachable = 3;  // cannot reach or authenticate

struct CliOptions {
  // Connection: flag, else HOIST_SERVER / HOIST_CA / HOIST_CERT / HOIST_KEY.
  std::string server;    // HOST:PORT of the receiver's Control API
  std::string ca;        // fleet CA (PEM)
  std::string cert;      // operator client certificate (PEM)
  std::string key;       // its key (PEM)
  std::string tls_name;  // --tls-name: name to verify instead of HOST
  OutputFormat output = OutputFormat::kText;
  int timeout_seconds = 30;              // deadline of each unary call
  int watch_timeout_seconds = 6 * 3600;  // deadline of `watch`
  int terminal_columns =
      0;  // width of stdout's terminal (not a flag; 0: unknown)

  bool help = false;     // --help / -h: print usage, exit 0
  bool version = false;  // --version

  // agents, rollouts, rollout, watch, deploy, rollback, resume, cancel,
  // services, service, converge
  std::string command;
  std::vector<std::string> args;  // its positional arguments
  std::string service;            // rollouts --service
  int limit = 0;                  // rollouts --limit (0: server default)
};

// Looks up an environment variable; nullptr when unset.
using EnvLookup = std::function<const char*(const char*)>;

// Parses argv (argv[0] is the program). Flags may come before or after the
// command, as `--flag value` or `--flag=value`. INVALID_ARGUMENT (exit 2)
// for an unknown flag or command, a missing value, a wrong number of
// arguments, or missing connection settings. With --help or --version the
// rest is not validated.
absl::StatusOr<CliOptions> ParseCliOptions(const std::vector<std::string>& argv,
                                           const EnvLookup& env);

// True when `value` is a digest ("sha256:" and 64 lowercase hex digits).
// `deploy` treats any other value not starting with "sha256:" as a tag.
bool IsDigest(const std::string& value);

// The --help text.
std::string UsageText();

}  // namespace hoist::cli

#endif  // HOIST_CLI_CLI_OPTIONS_H_
