#include "common/daemon.h"

#include <malloc.h>
#include <signal.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace hoist {

const char* HoistVersion() { return "0.1.0"; }

absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, char** argv) {
  DaemonFlags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('=');
        absl::StartsWith(arg, "--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
      return std::string(argv[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
    } else if (arg == "--version") {
      flags.version = true;
    } else if (arg == "--check-config") {
      flags.check_config = true;
    } else if (arg == "--config") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      flags.config = *v;
    } else if (arg == "--log-format") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      absl::Status s = ParseLogFormat(*v, &flags.log_format);
      if (!s.ok()) return s;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag \"", arg, "\""));
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

void BlockDaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void TuneDaemonProcess() {
  // An operator's MALLOC_ARENA_MAX (read by glibc at start-up) wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 1);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

int WaitForDaemonSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace hoist
