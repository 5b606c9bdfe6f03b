// Checks the TSan build itself (built only with -DHOIST_TSAN=ON): that
// absl::Mutex, absl::CondVar and absl::Notification are visible to TSan
// through common/tsan_shim.cc, and that a real race is still reported, so a
// clean TSan run of the other tests means something.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace {

// Set in the child processes that RaceIsReported starts.
bool InChild() { return std::getenv("HOIST_TSAN_CHILD") != nullptr; }

TEST(TsanShim, MutexProtectedCounterIsNotARace) {
  absl::Mutex mu;
  long counter = 0;  // guarded by mu, but TSan only knows that via the shim
  auto work = [&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(counter, 2000);
}

TEST(TsanShim, AwaitAndCondVarHandOffIsNotARace) {
  absl::Mutex mu;
  absl::CondVar cv;
  std::string message;  // written by the producer, read by the consumer
  bool ready = false;
  bool second = false;
  std::thread producer([&] {
    absl::MutexLock lock(&mu);
    message = "hello";
    ready = true;
  });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&ready));
    EXPECT_EQ(message, "hello");
  }
  producer.join();
  std::thread signaller([&] {
    absl::MutexLock lock(&mu);
    message = "again";
    second = true;
    cv.Signal();
  });
  {
    absl::MutexLock lock(&mu);
    while (!second) cv.Wait(&mu);
    EXPECT_EQ(message, "again");
  }
  signaller.join();
}

TEST(TsanShim, NotificationPublishesWrites) {
  absl::Notification done;
  int value = 0;
  std::thread writer([&] {
    value = 42;
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(value, 42);  // plain read: ordered only by the Notification
  writer.join();
}

// Run only in a child: one thread writes under the mutex, the other without
// it. The shim must not turn "a mutex exists" into "everything is ordered".
TEST(TsanChild, HalfLockedWrite) {
  if (!InChild()) GTEST_SKIP() << "runs as RaceIsReported's child";
  absl::Mutex mu;
  long counter = 0;
  std::thread a([&] {
    absl::MutexLock lock(&mu);
    ++counter;
  });
  std::thread b([&] { ++counter; });
  a.join();
  b.join();
}

// Runs HalfLockedWrite in a child process and expects TSan to fail it.
TEST(TsanShim, RaceIsReported) {
  if (InChild()) GTEST_SKIP();
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  std::string command =
      std::string("HOIST_TSAN_CHILD=1 TSAN_OPTIONS=exitcode=66 '") + self +
      "' --gtest_filter=TsanChild.HalfLockedWrite 2>&1";
  FILE* child = popen(command.c_str(), "r");
  ASSERT_NE(child, nullptr);
  std::string output;
  char buffer[4096];
  while (fgets(buffer, sizeof(buffer), child) != nullptr) output += buffer;
  int status = pclose(child);
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 66) << output;
  EXPECT_NE(output.find("WARNING: ThreadSanitizer: data race"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("HalfLockedWrite"), std::string::npos) << output;
}

}  // namespace
