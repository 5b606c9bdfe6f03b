// End to end: webhook -> hoist-receiver -> mTLS gRPC -> hoist-agent in two
// network-namespace hosts -> their dockerd, with the harness's registry and
// test images. What each host serves is checked from inside its namespace.
#include <signal.h>
#include <sys/wait.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/journal_sqlite.h"
#include "tests/e2e/e2e_util.h"

namespace hoist::e2e {
namespace {

using ::testing::HasSubstr;

std::string Id(const std::pair<int, std::string>& answer) {
  EXPECT_EQ(answer.first, 202) << answer.second;
  return Fleet::RolloutId(answer.second);
}

TEST(ReceiverE2eTest, TokenWebhookDeploysThePromotedDigestToBothHosts) {
  Fleet fleet(FleetOptions{});
  ASSERT_TRUE(fleet.AwaitAgents());
  // A wrong token is refused and deploys nothing.
  EXPECT_EQ(fleet.Post(Fleet::PromotedEvent("v1", "v1"), "wrong-token").first,
            401);
  const std::string body = Fleet::PromotedEvent("v1", "v1");
  const std::string id = Id(fleet.Post(body));
  ASSERT_FALSE(id.empty());
  // The same delivery again is a duplicate of the first rollout.
  auto again = fleet.Post(body);
  EXPECT_EQ(again.first, 202);
  EXPECT_THAT(again.second, HasSubstr("\"duplicate\":true"));
  EXPECT_EQ(Fleet::RolloutId(again.second), id);

  hoist::v1::Rollout r = fleet.AwaitFinal(id);
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  EXPECT_EQ(r.digest(), Harness().Digest("v1"));
  ASSERT_EQ(r.hosts_size(), 2);
  for (const auto& h : r.hosts())
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v1");
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v1");
}

TEST(ReceiverE2eTest, HmacWebhookDeploys) {
  FleetOptions o;
  o.auth = "hmac-sha256";
  o.batch = "100%";
  Fleet fleet(o);
  ASSERT_TRUE(fleet.AwaitAgents());
  const std::string body = Fleet::PromotedEvent("v2", "v2");
  // The token itself is not a valid signature.
  EXPECT_EQ(fleet.Post(body, Fleet::kSecret).first, 401);
  const std::string id = Id(fleet.Post(body));
  hoist::v1::Rollout r = fleet.AwaitFinal(id);
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v2");
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v2");
}

// The whole burst arrives while the first rollout holds the service: h2's
// agent starts only after the last post, so the first rollout keeps retrying
// h2 until then however slowly the posts go (ASan, a loaded machine).
TEST(ReceiverE2eTest, BurstOfFiftyPromotionsRunsAtMostTwoRollouts) {
  FleetOptions o;
  o.batch = "100%";
  o.start_agents = {true, false};
  o.retry_seconds = 300;
  o.connect_timeout_seconds = 2;
  Fleet fleet(o);
  ASSERT_TRUE(fleet.AwaitAgents(absl::Seconds(60), 1));
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    // Distinct deliveries (tags), alternating images; the last one is v2.
    ids.push_back(Id(fleet.Post(
        Fleet::PromotedEvent(absl::StrCat("t", i), i % 2 ? "v2" : "v1"))));
  }
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        auto first = fleet.Get(ids.front());
        return first.ok() && first->state() == hoist::v1::ROLLOUT_STATE_RUNNING;
      },
      absl::Seconds(30)));
  fleet.StartAgent(1);
  hoist::v1::Rollout last = fleet.AwaitFinal(ids.back());
  ASSERT_EQ(last.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED)
      << last.DebugString();
  int ran = 0;
  for (const std::string& id : ids) {
    hoist::v1::Rollout r = fleet.AwaitFinal(id);
    if (r.state() == hoist::v1::ROLLOUT_STATE_SUPERSEDED) {
      EXPECT_EQ(r.superseded_by(), ids.back());
    } else {
      ++ran;
    }
  }
  EXPECT_EQ(ran, 2);  // the first and the newest
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v2");
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v2");
}

TEST(ReceiverE2eTest, CrashingImageIsRolledBackEverywhere) {
  FleetOptions o;
  o.batch = "100%";
  o.health_timeout_seconds = 10;
  Fleet fleet(o);
  ASSERT_TRUE(fleet.AwaitAgents());
  hoist::v1::Rollout first =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v1", "v1"))));
  ASSERT_EQ(first.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED)
      << first.DebugString();
  hoist::v1::Rollout r =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("crash", "crash"))));
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_ROLLED_BACK) << r.DebugString();
  EXPECT_FALSE(r.error().empty());
  for (const auto& h : r.hosts()) {
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK) << h.agent();
    EXPECT_FALSE(h.error().empty()) << h.agent();
  }
  // ROLLED_BACK means the old container was started again, not that it
  // answers yet: its server may still be starting.
  for (size_t i : {0u, 1u}) {
    EXPECT_TRUE(hoist::testing::WaitFor(
        [&] { return Fleet::Serves(i) == "hoist-test v1"; }, absl::Seconds(30)))
        << "h" << i + 1 << ": " << Fleet::Serves(i);
  }
}

TEST(ReceiverE2eTest, OperatorRollbackReturnsToThePreviousDigest) {
  FleetOptions o;
  o.batch = "100%";
  Fleet fleet(o);
  ASSERT_TRUE(fleet.AwaitAgents());
  ASSERT_EQ(fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v1", "v1"))))
                .state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v2", "v2"))))
                .state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v2");
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  hoist::v1::RollbackServiceRequest req;
  req.set_service("web");
  hoist::v1::Rollout rollback;
  grpc::Status s = fleet.Control()->Rollback(&c, req, &rollback);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(rollback.trigger(), "rollback");
  EXPECT_EQ(rollback.digest(), Harness().Digest("v1"));
  hoist::v1::Rollout r = fleet.AwaitFinal(rollback.id());
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v1");
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v1");
}

TEST(ReceiverE2eTest, SigtermMidDeployStopsPromptlyAndTheRestartAttaches) {
  FleetOptions o;
  o.batch = "100%";
  o.health_timeout_seconds = 8;
  Fleet fleet(o);
  ASSERT_TRUE(fleet.AwaitAgents());
  const std::string id =
      Id(fleet.Post(Fleet::PromotedEvent("unhealthy", "unhealthy")));
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        auto r = fleet.Get(id);
        return r.ok() &&
               r->hosts(0).phase() == hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING;
      },
      absl::Seconds(60)));
  fleet.receiver()->Signal(SIGTERM);
  auto status = fleet.receiver()->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value()) << "hoist-receiver did not stop within 10 s";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  fleet.StartReceiver();
  hoist::v1::Rollout r = fleet.AwaitFinal(id);
  // The agents' own deploys (attached again with the same ids) failed their
  // health check and restored nothing (there was no old container).
  ASSERT_TRUE(r.state() == hoist::v1::ROLLOUT_STATE_ROLLED_BACK ||
              r.state() == hoist::v1::ROLLOUT_STATE_FAILED)
      << r.DebugString();
  for (const auto& h : r.hosts()) {
    EXPECT_TRUE(h.phase() == hoist::v1::DEPLOY_PHASE_FAILED ||
                h.phase() == hoist::v1::DEPLOY_PHASE_ROLLED_BACK)
        << h.DebugString();
    EXPECT_FALSE(h.error().empty()) << h.DebugString();
    EXPECT_EQ(h.deploy_id(), absl::StrCat(id, "-", h.agent()));
  }
}

TEST(ReceiverE2eTest, ReceiverKilledMidRolloutRecoversAfterRestart) {
  FleetOptions o;
  o.batch = "1";
  o.pause_seconds = 4;
  Fleet fleet(o);
  ASSERT_TRUE(fleet.AwaitAgents());
  const std::string id = Id(fleet.Post(Fleet::PromotedEvent("v1", "v1")));
  // Kill it during the pause after the first host succeeded.
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        auto r = fleet.Get(id);
        return r.ok() &&
               r->hosts(0).phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED;
      },
      absl::Seconds(120)));
  fleet.KillReceiver();
  {
    auto journal = receiver::SqliteJournal::Open(fleet.db_path());
    ASSERT_TRUE(journal.ok()) << journal.status();
    auto check = (*journal)->IntegrityCheck();
    ASSERT_TRUE(check.ok());
    EXPECT_EQ(*check, "ok");
    auto stored = (*journal)->GetRollout(id);
    ASSERT_TRUE(stored.ok());
    EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  }
  fleet.StartReceiver();
  hoist::v1::Rollout r = fleet.AwaitFinal(id);
  ASSERT_TRUE(
      r.state() == hoist::v1::ROLLOUT_STATE_SUCCEEDED ||
      (r.state() == hoist::v1::ROLLOUT_STATE_FAILED && !r.error().empty()))
      << r.DebugString();
  EXPECT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v1");
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v1");
}

}  // namespace
}  // namespace hoist::e2e
