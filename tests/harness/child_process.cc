#include "tests/harness/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/file_util.h"
#include "tests/harness/harness.h"

namespace hoist::testing {

std::vector<absl::string_view> CompleteLines(absl::string_view text) {
  std::vector<absl::string_view> lines;
  for (size_t end = text.find('\n'); end != absl::string_view::npos;
       end = text.find('\n')) {
    lines.push_back(text.substr(0, end));
    text.remove_prefix(end + 1);
  }
  return lines;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv,
                           const std::string& log)
    : log_(log) {
  // Everything the child needs is built before fork: only async-signal-safe
  // calls run between fork and exec.
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ != 0) return;
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  // Daemons block signals in their own main(); start with none blocked.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

ChildProcess::~ChildProcess() {
  if (running()) {
    Signal(SIGKILL);
    Wait(absl::Seconds(10));
  }
}

void ChildProcess::Signal(int sig) {
  if (running()) kill(pid_, sig);
}

std::optional<int> ChildProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return std::nullopt;
  const bool done = WaitFor(
      [this] {
        int status = 0;
        if (!exited_ && waitpid(pid_, &status, WNOHANG) == pid_) {
          status_ = status;
          exited_ = true;
        }
        return exited_;
      },
      timeout);
  if (!done) return std::nullopt;
  return status_;
}

std::string ChildProcess::Log() const { return ReadFile(log_).value_or(""); }

std::optional<std::string> ChildProcess::AwaitLine(const std::string& prefix,
                                                   absl::Duration timeout) {
  std::optional<std::string> found;
  WaitFor(
      [&] {
        // Checked before the log is read: once it has exited, the log read
        // after holds everything it printed.
        const bool exited = Wait(absl::ZeroDuration()).has_value();
        const std::string log = Log();
        for (absl::string_view line : CompleteLines(log)) {
          if (line.substr(0, prefix.size()) == prefix) {
            found = std::string(line.substr(prefix.size()));
            return true;
          }
        }
        return exited;
      },
      timeout);
  if (!found.has_value() || found->empty()) return std::nullopt;
  return found;
}

}  // namespace hoist::testing
