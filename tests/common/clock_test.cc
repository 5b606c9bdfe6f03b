#include "common/clock.h"

#include <thread>

#include "gtest/gtest.h"

namespace hoist {
namespace {

TEST(FakeClockTest, SleepReturnsOnlyAfterAdvance) {
  FakeClock clock;
  const absl::Time start = clock.Now();
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepFor(absl::Seconds(10));
    woke = true;
  });
  // Wait (on a condition) until the sleeper is blocked, then move time.
  while (clock.sleepers() == 0) std::this_thread::yield();
  clock.Advance(absl::Seconds(5));
  EXPECT_FALSE(woke.load());
  clock.Advance(absl::Seconds(5));
  sleeper.join();
  EXPECT_TRUE(woke.load());
  EXPECT_EQ(clock.Now() - start, absl::Seconds(10));
}

TEST(FakeClockTest, AwaitWithTimeoutSeesConditionOrFakeDeadline) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  std::thread setter([&] {
    while (clock.sleepers() == 0) std::this_thread::yield();
    absl::MutexLock lock(&mu);
    flag = true;
  });
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(
        clock.AwaitWithTimeout(&mu, absl::Condition(&flag), absl::Hours(1)));
  }
  setter.join();

  bool never = false;
  std::thread advancer([&] {
    while (clock.sleepers() == 0) std::this_thread::yield();
    clock.Advance(absl::Hours(2));
  });
  {
    absl::MutexLock lock(&mu);
    EXPECT_FALSE(
        clock.AwaitWithTimeout(&mu, absl::Condition(&never), absl::Hours(1)));
  }
  advancer.join();
}

}  // namespace
}  // namespace hoist
