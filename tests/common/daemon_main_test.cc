// RunDaemon(), the start both daemons share, and WaitForStopSignal(), their
// serving loop (docs/design.md, "Daemons"), driven with a fake daemon.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/daemon.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hoist {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kProgram[] = "fake-daemon";
constexpr char kSummary[] = "A daemon for tests.";
constexpr char kProblems[] =
    "bad.yaml:3: unknown key \"x\" in config\n"
    "bad.yaml:4: listen \"y\" must be HOST:PORT";

struct FakeConfig {
  std::string path;
};

// Everything written to file descriptor 2 while it lives: the log lines
// (Log() writes there directly, not through std::cerr).
class CaptureFd2 {
 public:
  CaptureFd2() : file_(std::tmpfile()), saved_(dup(STDERR_FILENO)) {
    std::fflush(stderr);
    dup2(fileno(file_), STDERR_FILENO);
  }
  ~CaptureFd2() {
    Restore();
    std::fclose(file_);
  }
  std::string Text() {
    Restore();
    std::string text;
    std::rewind(file_);
    for (int c = std::fgetc(file_); c != EOF; c = std::fgetc(file_)) {
      text.push_back(static_cast<char>(c));
    }
    return text;
  }

 private:
  void Restore() {
    if (saved_ < 0) return;
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    saved_ = -1;
  }
  FILE* file_;
  int saved_;
};

// A daemon whose config "bad.yaml" has kProblems and any other is valid.
// Counts what RunDaemon() asks of it.
class RunDaemonTest : public ::testing::Test {
 protected:
  RunDaemonTest() {
    spec_.program = kProgram;
    spec_.summary = kSummary;
    spec_.load_config =
        [this](const std::string& path) -> absl::StatusOr<FakeConfig> {
      ++loads_;
      if (path == "bad.yaml") return absl::InvalidArgumentError(kProblems);
      return FakeConfig{path};
    };
    spec_.serve = [this](const DaemonFlags& flags, FakeConfig config) {
      ++serves_;
      served_flags_ = flags;
      served_config_ = std::move(config);
      return serve_exit_code_;
    };
    spec_.out = &out_;
    spec_.err = &err_;
  }
  ~RunDaemonTest() override { SetLogFormat(LogFormat::kText); }

  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), kProgram);
    std::vector<char*> argv;
    argv.reserve(args.size());
    for (std::string& arg : args) argv.push_back(arg.data());
    return RunDaemon(spec_, static_cast<int>(argv.size()), argv.data());
  }

  DaemonSpec<FakeConfig> spec_;
  std::ostringstream out_, err_;
  int loads_ = 0, serves_ = 0;
  int serve_exit_code_ = kDaemonExitOk;
  DaemonFlags served_flags_;
  FakeConfig served_config_;
};

TEST_F(RunDaemonTest, HelpPrintsTheUsageAndNeedsNoConfig) {
  for (const char* help : {"--help", "-h"}) {
    out_.str("");
    EXPECT_EQ(Run({help}), 0) << help;
    EXPECT_EQ(out_.str(), DaemonUsage(kProgram, kSummary)) << help;
  }
  EXPECT_EQ(err_.str(), "");
  EXPECT_EQ(loads_, 0);
  EXPECT_EQ(serves_, 0);
}

TEST_F(RunDaemonTest, VersionPrintsTheProgramAndVersion) {
  EXPECT_EQ(Run({"--version", "--config", "a.yaml"}), 0);
  EXPECT_EQ(out_.str(), absl::StrCat(kProgram, " ", HoistVersion(), "\n"));
  EXPECT_EQ(loads_, 0);
  EXPECT_EQ(serves_, 0);
}

TEST_F(RunDaemonTest, BadCommandLineExits2WithTheProblemAndTheUsage) {
  EXPECT_EQ(Run({"--config", "a.yaml", "--bogus"}), 2);
  EXPECT_EQ(err_.str(), absl::StrCat(kProgram, ": unknown flag \"--bogus\"\n\n",
                                     DaemonUsage(kProgram, kSummary)));
  EXPECT_EQ(out_.str(), "");

  err_.str("");
  EXPECT_EQ(Run({}), 2);
  EXPECT_THAT(err_.str(), HasSubstr(": --config FILE is required\n\n"));
  EXPECT_EQ(loads_, 0);
  EXPECT_EQ(serves_, 0);
}

TEST_F(RunDaemonTest, CheckConfigPrintsConfigOkAndDoesNotServe) {
  EXPECT_EQ(Run({"--check-config", "--config", "good.yaml"}), 0);
  EXPECT_EQ(out_.str(), "config OK\n");
  EXPECT_EQ(err_.str(), "");
  EXPECT_EQ(loads_, 1);
  EXPECT_EQ(serves_, 0);
}

TEST_F(RunDaemonTest, InvalidConfigExits2WithEveryProblemOnStderr) {
  for (bool check : {true, false}) {
    err_.str("");
    std::vector<std::string> args = {"--config", "bad.yaml"};
    if (check) args.push_back("--check-config");
    EXPECT_EQ(Run(args), 2) << check;
    EXPECT_EQ(err_.str(), absl::StrCat(kProblems, "\n")) << check;
  }
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(serves_, 0);
}

TEST_F(RunDaemonTest, InvalidConfigAtStartIsLoggedOnlyWhenTheSpecAsks) {
  spec_.log_invalid_config = true;
  {
    CaptureFd2 log;
    EXPECT_EQ(Run({"--config", "bad.yaml"}), 2);
    EXPECT_THAT(
        log.Text(),
        HasSubstr("error invalid config; not starting config=bad.yaml"));
  }
  {
    CaptureFd2 log;  // --check-config only prints the problems
    EXPECT_EQ(Run({"--config", "bad.yaml", "--check-config"}), 2);
    EXPECT_THAT(log.Text(), Not(HasSubstr("not starting")));
  }
  spec_.log_invalid_config = false;
  {
    CaptureFd2 log;
    EXPECT_EQ(Run({"--config", "bad.yaml"}), 2);
    EXPECT_THAT(log.Text(), Not(HasSubstr("not starting")));
  }
}

TEST_F(RunDaemonTest, LogFormatAppliesBeforeTheConfigIsChecked) {
  spec_.log_invalid_config = true;
  CaptureFd2 log;
  EXPECT_EQ(Run({"--log-format=json", "--config", "bad.yaml"}), 2);
  EXPECT_THAT(log.Text(),
              HasSubstr("\"msg\":\"invalid config; not starting\""));
}

TEST_F(RunDaemonTest, ValidConfigIsLoadedOnceAndServedWithItsExitCode) {
  serve_exit_code_ = kDaemonExitCannotStart;
  EXPECT_EQ(Run({"--config=good.yaml", "--log-format", "json"}), 1);
  EXPECT_EQ(loads_, 1);
  EXPECT_EQ(serves_, 1);
  EXPECT_EQ(served_config_.path, "good.yaml");
  EXPECT_EQ(served_flags_.config, "good.yaml");
  EXPECT_EQ(served_flags_.log_format, LogFormat::kJson);
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(err_.str(), "");

  serve_exit_code_ = kDaemonExitOk;
  EXPECT_EQ(Run({"--config", "good.yaml"}), 0);
}

// Blocks the daemon signals on this thread only (raise() directs a signal
// to the calling thread), and on destruction drops what is still pending
// before unblocking, so that a failing test cannot kill the test binary.
class BlockSignalsOnThisThread {
 public:
  BlockSignalsOnThisThread() {
    sigemptyset(&set_);
    for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&set_, sig);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~BlockSignalsOnThisThread() {
    const timespec now = {0, 0};
    while (sigtimedwait(&set_, nullptr, &now) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t set_, old_;
};

// Linux hands pending standard signals to sigwait() lowest number first
// (SIGHUP 1, SIGINT 2, SIGTERM 15), so a SIGTERM raised up front ends each
// test even when the loop under test is broken.
TEST(WaitForStopSignalTest, ReloadsOnEachSighupThenReturnsTheStopSignal) {
  BlockSignalsOnThisThread blocked;
  int reloads = 0;
  raise(SIGHUP);
  raise(SIGTERM);
  const int sig = WaitForStopSignal([&reloads] {
    if (++reloads < 3) raise(SIGHUP);
  });
  EXPECT_EQ(sig, SIGTERM);
  EXPECT_EQ(reloads, 3);
}

TEST(WaitForStopSignalTest, SigintStopsWithoutReloading) {
  BlockSignalsOnThisThread blocked;
  int reloads = 0;
  raise(SIGINT);
  raise(SIGTERM);
  EXPECT_EQ(WaitForStopSignal([&reloads] { ++reloads; }), SIGINT);
  EXPECT_EQ(reloads, 0);
}

// The whole of a daemon's main() in a child process: DaemonMain() blocks the
// signals in every thread, so signals sent to the process (as systemd and
// kill(1) do) from any thread reach the serving loop instead of killing it.
// The child re-runs this test binary ("threadsafe" death tests), so the
// signals never touch the test process itself.
int ServeUntilSignalled(const DaemonFlags&, const FakeConfig&) {
  std::thread sender([] {
    kill(getpid(), SIGHUP);
    kill(getpid(), SIGTERM);
  });
  int reloads = 0;
  const int sig = WaitForStopSignal([&reloads] { ++reloads; });
  sender.join();
  std::fprintf(stderr, "reloads=%d stop=%d\n", reloads, sig);
  return reloads == 1 && sig == SIGTERM ? 0 : 1;
}

void RunDaemonMainInThisProcess() {
  DaemonSpec<FakeConfig> spec;
  spec.program = kProgram;
  spec.load_config = [](const std::string& path) {
    return absl::StatusOr<FakeConfig>(FakeConfig{path});
  };
  spec.serve = ServeUntilSignalled;
  std::string program = kProgram, flag = "--config", path = "good.yaml";
  char* argv[] = {program.data(), flag.data(), path.data(), nullptr};
  std::exit(DaemonMain(spec, 3, argv));
}

TEST(DaemonMainTest, ProcessSignalsReachTheServingLoop) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(RunDaemonMainInThisProcess(), ::testing::ExitedWithCode(0),
              "reloads=1 stop=15");
}

}  // namespace
}  // namespace hoist
