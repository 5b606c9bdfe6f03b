#include "receiver/retry_policy.h"

#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

const absl::Time kFirst = absl::FromUnixSeconds(1700000000);

RetryPolicy Policy() {
  return RetryPolicy(absl::Seconds(1), absl::Seconds(10), 60);
}

TEST(RetryPolicyTest, RetriesOnlyAnUnreachableAgent) {
  const RetryPolicy p = Policy();
  EXPECT_TRUE(p.ShouldRetry(absl::UnavailableError("connection refused"),
                            kFirst, kFirst));
  // Answers from the agent: asking again gets the same answer.
  EXPECT_FALSE(p.ShouldRetry(absl::OkStatus(), kFirst, kFirst));
  EXPECT_FALSE(p.ShouldRetry(absl::AbortedError("busy"), kFirst, kFirst));
  EXPECT_FALSE(
      p.ShouldRetry(absl::DeadlineExceededError("deadline"), kFirst, kFirst));
  EXPECT_FALSE(
      p.ShouldRetry(absl::PermissionDeniedError("role"), kFirst, kFirst));
}

TEST(RetryPolicyTest, GivesUpOnceRetrySecondsPassedSinceTheFirstAttempt) {
  const RetryPolicy p = Policy();
  const absl::Status down = absl::UnavailableError("connection refused");
  EXPECT_TRUE(p.ShouldRetry(down, kFirst, kFirst + absl::Seconds(59)));
  EXPECT_TRUE(p.ShouldRetry(down, kFirst,
                            kFirst + absl::Seconds(60) - absl::Nanoseconds(1)));
  EXPECT_FALSE(p.ShouldRetry(down, kFirst, kFirst + absl::Seconds(60)));
  EXPECT_FALSE(p.ShouldRetry(down, kFirst, kFirst + absl::Hours(1)));
}

TEST(RetryPolicyTest, ZeroRetrySecondsNeverRetries) {
  const RetryPolicy p(absl::Seconds(1), absl::Seconds(10), 0);
  EXPECT_FALSE(p.ShouldRetry(absl::UnavailableError("down"), kFirst, kFirst));
}

TEST(RetryPolicyTest, BackoffDoublesUpToTheMaximum) {
  const RetryPolicy p = Policy();
  EXPECT_EQ(p.initial_backoff(), absl::Seconds(1));
  absl::Duration b = p.initial_backoff();
  std::vector<absl::Duration> waits;
  for (int i = 0; i < 6; ++i) {
    waits.push_back(b);
    b = p.NextBackoff(b);
  }
  EXPECT_EQ(waits,
            (std::vector<absl::Duration>{
                absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                absl::Seconds(8), absl::Seconds(10), absl::Seconds(10)}));
}

TEST(RetryPolicyTest, GiveUpMessageNamesTheWindowAndTheCause) {
  EXPECT_EQ(
      Policy().GiveUpMessage(absl::UnavailableError("connection refused")),
      "unreachable for 60s: connection refused");
}

}  // namespace
}  // namespace hoist::receiver
