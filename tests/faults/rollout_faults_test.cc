// Receiver-level faults with a real hoist-receiver and real hoist-agents in
// the harness's network-namespace hosts:
//   - one agent unreachable for the whole rollout (nothing listens at its
//     address): its host FAILED after retry_seconds, on_failure continue lets
//     the other host succeed, the rollout ends FAILED naming the host;
//   - one agent that comes back mid-rollout (started after the receiver has
//     begun retrying it, within retry_seconds): its host SUCCEEDED;
//   - the receiver SIGKILLed while an agent is mid-deploy.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "receiver/journal_sqlite.h"
#include "tests/faults/fault_fleet.h"

namespace hoist::faults {
namespace {

using ::hoist::testing::WaitFor;

const hoist::v1::HostResult* HostOf(const hoist::v1::Rollout& r,
                                    const std::string& agent) {
  for (const auto& h : r.hosts()) {
    if (h.agent() == agent) return &h;
  }
  return nullptr;
}

TEST(RolloutFaultsTest, UnreachableAgentFailsItsHostAndOthersContinue) {
  FaultFleetOptions options;
  options.on_failure = "continue";
  options.batch = "1";
  options.retry_seconds = 6;
  options.connect_timeout_seconds = 2;
  options.start_agents = {true, false};  // h2: nothing listens
  FaultFleet fleet(options);
  ASSERT_TRUE(fleet.AwaitAgents(absl::Seconds(60), 1));

  const absl::Time posted = absl::Now();
  auto answer = fleet.Post(FaultFleet::PromotedEvent("v1", "v1"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id = FaultFleet::RolloutId(answer.second);
  hoist::v1::Rollout r = fleet.AwaitFinal(id, absl::Seconds(120));
  const absl::Duration took = absl::Now() - posted;
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_FAILED) << r.DebugString();
  const hoist::v1::HostResult* h1 = HostOf(r, "h1");
  const hoist::v1::HostResult* h2 = HostOf(r, "h2");
  ASSERT_NE(h1, nullptr);
  ASSERT_NE(h2, nullptr);
  EXPECT_EQ(h1->phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED) << h1->error();
  EXPECT_EQ(h2->phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_TRUE(absl::StrContains(h2->error(), "unreachable"))
      << h2->ShortDebugString();
  // It was retried for retry_seconds before giving up, and no longer.
  EXPECT_GE(took, absl::Seconds(options.retry_seconds)) << took;
  EXPECT_LT(took, absl::Seconds(options.retry_seconds + 60)) << took;
  std::cout << "h2: " << h2->error() << " (rollout took " << took << ")"
            << std::endl;
  EXPECT_EQ(FaultFleet::Serves(0), "hoist-test v1");
}

TEST(RolloutFaultsTest, AgentBackMidRolloutSucceeds) {
  FaultFleetOptions options;
  options.on_failure = "rollback";
  options.batch = "100%";
  options.retry_seconds = 60;
  options.connect_timeout_seconds = 2;
  options.start_agents = {true, false};
  FaultFleet fleet(options);
  ASSERT_TRUE(fleet.AwaitAgents(absl::Seconds(60), 1));

  auto answer = fleet.Post(FaultFleet::PromotedEvent("v2", "v2"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id = FaultFleet::RolloutId(answer.second);
  // The receiver has found h2 unreachable and is retrying it.
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = fleet.receiver_process()->Log();
        return absl::StrContains(log, "agent unreachable, retrying") &&
               absl::StrContains(log, "h2");
      },
      absl::Seconds(30)))
      << fleet.receiver_process()->Log();
  auto mid = fleet.Get(id);
  ASSERT_TRUE(mid.ok());
  ASSERT_EQ(mid->state(), hoist::v1::ROLLOUT_STATE_RUNNING)
      << mid->DebugString();
  // Now h2's agent comes up, well within retry_seconds.
  fleet.StartAgent(1);
  hoist::v1::Rollout r = fleet.AwaitFinal(id, absl::Seconds(150));
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (const auto& h : r.hosts()) {
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
        << h.ShortDebugString();
  }
  EXPECT_EQ(FaultFleet::Serves(0), "hoist-test v2");
  EXPECT_EQ(FaultFleet::Serves(1), "hoist-test v2");
}

// The receiver SIGKILLed while an agent is in the middle of a deploy (not in
// a pause between batches; tests/e2e covers that): the old container is
// `stubborn` (ignores SIGTERM, stop_timeout_seconds 2), so h1's deploy is
// certainly in STOPPING_OLD when the kill lands. The journal passes
// PRAGMA integrity_check, and after a restart the rollout ends explicitly.
TEST(RolloutFaultsTest, ReceiverKilledMidDeployEndsTheRolloutExplicitly) {
  FaultFleetOptions options;
  options.batch = "1";
  FaultFleet fleet(options);
  ASSERT_TRUE(fleet.AwaitAgents());
  auto first = fleet.Post(FaultFleet::PromotedEvent("k1", "stubborn"));
  ASSERT_EQ(first.first, 202) << first.second;
  ASSERT_EQ(fleet.AwaitFinal(FaultFleet::RolloutId(first.second)).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(FaultFleet::Serves(0), "hoist-test stubborn");

  auto answer = fleet.Post(FaultFleet::PromotedEvent("k2", "v2"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id = FaultFleet::RolloutId(answer.second);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = fleet.Get(id);
        return r.ok() && r->hosts_size() > 0 &&
               r->hosts(0).phase() == hoist::v1::DEPLOY_PHASE_STOPPING_OLD;
      },
      absl::Seconds(60)));
  fleet.KillReceiver();
  {
    auto journal = receiver::SqliteJournal::Open(fleet.db_path());
    ASSERT_TRUE(journal.ok()) << journal.status();
    auto check = (*journal)->IntegrityCheck();
    ASSERT_TRUE(check.ok()) << check.status();
    EXPECT_EQ(*check, "ok");
    auto stored = (*journal)->GetRollout(id);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  }
  fleet.StartReceiver();
  hoist::v1::Rollout r = fleet.AwaitFinal(id, absl::Seconds(120));
  EXPECT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (const auto& h : r.hosts()) {
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
        << h.ShortDebugString();
  }
  EXPECT_EQ(FaultFleet::Serves(0), "hoist-test v2");
  EXPECT_EQ(FaultFleet::Serves(1), "hoist-test v2");
}

}  // namespace
}  // namespace hoist::faults
