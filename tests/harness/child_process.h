// A child process whose output goes to a log file, for tests and benchmarks
// that start Hoist's daemons (or other programs) and read what they print.
//
// Lines are read only once they are complete: a child may be between two
// write()s of one line when the log is read, and a prefix match on such a
// partial line would return a truncated rest (an address without its port,
// say). See CompleteLines().
//
// Thread-safety: one ChildProcess is used from one thread at a time.
#ifndef HOIST_TESTS_HARNESS_CHILD_PROCESS_H_
#define HOIST_TESTS_HARNESS_CHILD_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hoist::testing {

// The lines of `text` that end with '\n', without it. An unterminated last
// line is left out: its writer may not have finished it.
std::vector<absl::string_view> CompleteLines(absl::string_view text);

class ChildProcess {
 public:
  // Starts argv[0] (searched in PATH) with `argv`, its stdout and stderr
  // appended to `log`, and no signal blocked. Check running() for a failed
  // fork; a failed exec exits 127.
  ChildProcess(const std::vector<std::string>& argv, const std::string& log);
  // Kills (SIGKILL) and reaps the child if it is still running.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // False once Wait() has reaped it (or when fork failed).
  bool running() const { return pid_ > 0 && !exited_; }
  void Signal(int sig);
  // The exit status (as from waitpid) if it exits within `timeout`.
  std::optional<int> Wait(absl::Duration timeout);
  // Everything it has printed so far.
  std::string Log() const;
  // Waits until the log has a complete line starting with `prefix` and
  // returns the rest of that line. nullopt on timeout, when the child exits
  // first, or when the rest is empty.
  std::optional<std::string> AwaitLine(const std::string& prefix,
                                       absl::Duration timeout);

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::string log_;
};

}  // namespace hoist::testing

#endif  // HOIST_TESTS_HARNESS_CHILD_PROCESS_H_
