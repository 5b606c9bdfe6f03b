#include "tests/harness/child_process.h"

#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace hoist::testing {
namespace {

using ::testing::ElementsAre;

TEST(CompleteLinesTest, LeavesOutAnUnterminatedLastLine) {
  EXPECT_THAT(CompleteLines("a\nb\nlisten"), ElementsAre("a", "b"));
  EXPECT_THAT(CompleteLines("a\n\nb\n"), ElementsAre("a", "", "b"));
  EXPECT_THAT(CompleteLines("partial"), ElementsAre());
  EXPECT_THAT(CompleteLines(""), ElementsAre());
}

class ChildProcessTest : public ::testing::Test {
 protected:
  // Not MakeTempDir(): that starts the real-parts harness, which this test
  // does not need.
  void SetUp() override {
    char dir[] = "/tmp/hoist-child-test.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::string dir_;
};

// The child prints half a line and finishes it only when told to: AwaitLine
// must not take the half line for the whole one.
TEST_F(ChildProcessTest, AwaitLineWaitsForTheWholeLine) {
  const std::string go = dir_ + "/go";
  ChildProcess child(
      {"sh", "-c",
       absl::StrCat("printf 'listening on 127.0.'; "
                    "while [ ! -e ",
                    go, " ]; do sleep 0.01; done; echo '0.1:5'; sleep 60")},
      dir_ + "/log");
  ASSERT_TRUE(WaitFor([&] { return child.Log() == "listening on 127.0."; },
                      absl::Seconds(30)))
      << child.Log();
  EXPECT_EQ(child.AwaitLine("listening on ", absl::Milliseconds(200)),
            std::nullopt);
  ASSERT_TRUE(WriteFileAtomically(go, "").ok());
  EXPECT_EQ(child.AwaitLine("listening on ", absl::Seconds(30)), "127.0.0.1:5");
}

TEST_F(ChildProcessTest, AwaitLineGivesUpWhenTheChildExits) {
  ChildProcess child({"sh", "-c", "echo other; exit 3"}, dir_ + "/log");
  EXPECT_EQ(child.AwaitLine("listening on ", absl::Seconds(60)), std::nullopt);
  EXPECT_FALSE(child.running());
  std::optional<int> status = child.Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 3);
  EXPECT_EQ(child.Log(), "other\n");
}

TEST_F(ChildProcessTest, ALineWrittenJustBeforeExitIsFound) {
  ChildProcess child({"sh", "-c", "echo 'ready 42'"}, dir_ + "/log");
  EXPECT_EQ(child.AwaitLine("ready ", absl::Seconds(60)), "42");
}

TEST_F(ChildProcessTest, DestructorKillsARunningChild) {
  pid_t pid;
  {
    ChildProcess child({"sleep", "600"}, dir_ + "/log");
    pid = child.pid();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, 0), 0);
  }
  EXPECT_NE(kill(pid, 0), 0);  // reaped: the pid is gone
}

}  // namespace
}  // namespace hoist::testing
