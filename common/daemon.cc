#include "common/daemon.h"

#include <malloc.h>
#include <signal.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace hoist {
namespace {

// One argument, split at its first '=' when it is a --flag.
struct FlagArg {
  std::string name;
  std::optional<std::string> value;  // from --flag=value
};

FlagArg SplitFlag(const std::string& arg) {
  const size_t eq = arg.find('=');
  if (!absl::StartsWith(arg, "--") || eq == std::string::npos) return {arg, {}};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

// Sets a flag that takes no value (a `=value` is ignored); false when `name`
// is not one.
bool SetSwitch(const std::string& name, DaemonFlags* flags) {
  if (name == "--help" || name == "-h") {
    flags->help = true;
  } else if (name == "--version") {
    flags->version = true;
  } else if (name == "--check-config") {
    flags->check_config = true;
  } else {
    return false;
  }
  return true;
}

bool TakesValue(const std::string& name) {
  return name == "--config" || name == "--log-format";
}

// Sets --config or --log-format (see TakesValue()) to `value`.
absl::Status SetValue(const std::string& name, const std::string& value,
                      DaemonFlags* flags) {
  if (name == "--config") {
    flags->config = value;
    return absl::OkStatus();
  }
  return ParseLogFormat(value, &flags->log_format);
}

sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

const char* HoistVersion() { return "0.1.0"; }

absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, char** argv) {
  DaemonFlags flags;
  for (int i = 1; i < argc; ++i) {
    FlagArg arg = SplitFlag(argv[i]);
    if (SetSwitch(arg.name, &flags)) continue;
    if (!TakesValue(arg.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag \"", arg.name, "\""));
    }
    if (!arg.value.has_value()) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(
            absl::StrCat(arg.name, " needs a value"));
      }
      arg.value = argv[++i];
    }
    if (absl::Status s = SetValue(arg.name, *arg.value, &flags); !s.ok()) {
      return s;
    }
  }
  if (!flags.help && !flags.version && flags.config.empty()) {
    return absl::InvalidArgumentError("--config FILE is required");
  }
  return flags;
}

std::string DaemonUsage(const std::string& program,
                        const std::string& summary) {
  return absl::StrCat(
      "Usage: ", program,
      " --config FILE [--check-config] [--log-format text|json]\n", summary,
      "\n\n",
      "  --config FILE        YAML config (see docs/operator-guide.md)\n",
      "  --check-config       validate the config, print FILE:LINE: problem, "
      "exit 2 on error\n",
      "  --log-format FORMAT  text (default) or json, one object per line\n",
      "  --version            print the version\n",
      "  --help               this text\n\n",
      "Signals: SIGHUP reloads certificates, secrets and services; SIGTERM "
      "stops.\n");
}

std::optional<int> HandleDaemonFlags(const char* program,
                                     const std::string& summary, int argc,
                                     char** argv, std::ostream& out,
                                     std::ostream& err, DaemonFlags* flags) {
  absl::StatusOr<DaemonFlags> parsed = ParseDaemonFlags(argc, argv);
  if (!parsed.ok()) {
    err << program << ": " << parsed.status().message() << "\n\n"
        << DaemonUsage(program, summary);
    return kDaemonExitBadConfig;
  }
  if (parsed->help) {
    out << DaemonUsage(program, summary);
    return kDaemonExitOk;
  }
  if (parsed->version) {
    out << program << " " << HoistVersion() << "\n";
    return kDaemonExitOk;
  }
  SetLogFormat(parsed->log_format);
  *flags = *std::move(parsed);
  return std::nullopt;
}

std::optional<int> HandleDaemonConfig(const DaemonFlags& flags,
                                      const absl::Status& loaded,
                                      bool log_invalid, std::ostream& out,
                                      std::ostream& err) {
  if (!loaded.ok()) {
    err << loaded.message() << "\n";
    // Flush before the log line, which bypasses `err` (one write(2) to fd 2).
    err.flush();
    if (log_invalid && !flags.check_config) {
      LogError("invalid config; not starting", {{"config", flags.config}});
    }
    return kDaemonExitBadConfig;
  }
  if (flags.check_config) {
    out << "config OK\n";
    return kDaemonExitOk;
  }
  return std::nullopt;
}

void BlockDaemonSignals() {
  const sigset_t set = DaemonSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void TuneDaemonProcess() {
  // An operator's MALLOC_ARENA_MAX (read by glibc at start-up) wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 1);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

int WaitForStopSignal(const std::function<void()>& reload) {
  const sigset_t set = DaemonSignals();
  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != SIGHUP) return sig;
    reload();
  }
}

}  // namespace hoist
