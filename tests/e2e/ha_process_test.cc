// High availability (docs/design.md, "High availability on etcd"), end to
// end: a real 3-member etcd cluster, two real hoist-receivers sharing it and
// two real agents in the harness's network-namespace hosts.
//   - one receiver leads; a webhook sent to the follower is run by the
//     leader, and the same delivery sent to the leader is a duplicate;
//   - the leader is SIGKILLed in the middle of a rollout: the follower leads
//     within lease_seconds + 2 s, resumes the rollout with the same deploy
//     ids, and every host ends on the new image;
//   - the leader is SIGSTOPped past its lease: the other leads; resumed, it
//     exits (3); started again it follows and takes webhooks;
//   - Control Deploy on a follower is run by the leader; Cancel there is
//     refused (UNAVAILABLE, "not the leader");
//   - one etcd member killed changes nothing; two killed: webhooks get 503
//     and nothing is promised; members back: the same delivery is accepted
//     and run.
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/daemon.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/harness/etcd_cluster.h"

namespace hoist::e2e {
namespace {

using ::hoist::testing::EtcdCluster;
using ::hoist::testing::WaitFor;

constexpr int64_t kLeaseSeconds = 3;

bool Leads(Process* receiver) {
  return receiver != nullptr &&
         absl::StrContains(receiver->Log(), "elected leader");
}

// Whether `receiver` logged a line with both `message` and `rollout_id`.
bool Logged(Process* receiver, const std::string& message,
            const std::string& rollout_id) {
  for (absl::string_view line : absl::StrSplit(receiver->Log(), '\n')) {
    if (absl::StrContains(line, message) &&
        absl::StrContains(line, rollout_id)) {
      return true;
    }
  }
  return false;
}

// The receiver (0 or 1) that leads, waiting for one (-1 when none does).
int AwaitLeader(Fleet& fleet, absl::Duration timeout) {
  int leader = -1;
  WaitFor(
      [&] {
        for (int i : {0, 1}) {
          if (Leads(fleet.receiver(i))) leader = i;
        }
        return leader >= 0;
      },
      timeout);
  return leader;
}

// Waits until host `agent` of rollout `id` reports a phase (its deploy
// started on the leader).
bool AwaitHostStarted(Fleet& fleet, const std::string& id,
                      const std::string& agent) {
  return WaitFor(
      [&] {
        absl::StatusOr<hoist::v1::Rollout> r = fleet.Get(id);
        if (!r.ok()) return false;
        for (const auto& h : r->hosts()) {
          if (h.agent() == agent &&
              h.phase() != hoist::v1::DEPLOY_PHASE_UNSPECIFIED) {
            return true;
          }
        }
        return false;
      },
      absl::Seconds(60));
}

TEST(HaProcessTest, FollowerTakesWebhooksAndTakesOverFromAKilledLeader) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  FleetOptions options;
  options.etcd_endpoints = (*cluster)->client_endpoints();
  options.etcd_lease_seconds = kLeaseSeconds;
  options.batch = "1";  // one host at a time: the kill lands mid-rollout
  Fleet fleet(options);
  ASSERT_EQ(fleet.StartReplica(), 1);
  const int leader = AwaitLeader(fleet, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  const int follower = 1 - leader;
  EXPECT_FALSE(Leads(fleet.receiver(follower)));
  fleet.Target(leader);
  ASSERT_TRUE(fleet.AwaitAgents());

  // v1 through the follower's webhook: journaled there, run by the leader.
  fleet.Target(follower);
  const std::string v1 = Fleet::PromotedEvent("v1", "v1");
  auto answer = fleet.Post(v1);
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id1 = Fleet::RolloutId(answer.second);
  EXPECT_EQ(fleet.AwaitFinal(id1).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v1");
  // Accepted by the follower, run by the leader alone.
  EXPECT_TRUE(Logged(fleet.receiver(follower), "rollout accepted", id1));
  EXPECT_TRUE(Logged(fleet.receiver(leader), "rollout running", id1));
  EXPECT_FALSE(Logged(fleet.receiver(follower), "rollout running", id1));
  // The same delivery at the leader: a duplicate of that rollout.
  fleet.Target(leader);
  answer = fleet.Post(v1);
  ASSERT_EQ(answer.first, 202) << answer.second;
  EXPECT_TRUE(absl::StrContains(answer.second, "\"duplicate\":true"))
      << answer.second;
  EXPECT_EQ(Fleet::RolloutId(answer.second), id1);

  // v2, and the leader SIGKILLed once its first host is deploying.
  fleet.Target(follower);
  answer = fleet.Post(Fleet::PromotedEvent("v2", "v2"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id2 = Fleet::RolloutId(answer.second);
  ASSERT_TRUE(AwaitHostStarted(fleet, id2, Harness().hosts[0].name));
  const absl::Time killed = absl::Now();
  fleet.receiver(leader)->Signal(SIGKILL);
  ASSERT_TRUE(fleet.receiver(leader)->Wait(absl::Seconds(10)).has_value());
  ASSERT_TRUE(WaitFor([&] { return Leads(fleet.receiver(follower)); },
                      absl::Seconds(kLeaseSeconds + 10)));
  const absl::Duration takeover = absl::Now() - killed;
  std::cout << "ha: leader killed -> follower leads after "
            << absl::FormatDuration(takeover) << " (lease " << kLeaseSeconds
            << " s)\n";
  EXPECT_LE(takeover, absl::Seconds(kLeaseSeconds + 2));

  const hoist::v1::Rollout done = fleet.AwaitFinal(id2);
  EXPECT_EQ(done.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED)
      << done.DebugString();
  for (const auto& h : done.hosts()) {
    EXPECT_EQ(h.deploy_id(), absl::StrCat(id2, "-", h.agent()));
  }
  // Started by the killed leader, finished by the new one.
  EXPECT_TRUE(Logged(fleet.receiver(leader), "rollout running", id2));
  EXPECT_TRUE(Logged(fleet.receiver(follower), "rollout running", id2));
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v2");
}

TEST(HaProcessTest, APausedLeaderStepsDownAndComesBackAsAFollower) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  FleetOptions options;
  options.etcd_endpoints = (*cluster)->client_endpoints();
  options.etcd_lease_seconds = kLeaseSeconds;
  options.batch = "100%";
  Fleet fleet(options);
  ASSERT_EQ(fleet.StartReplica(), 1);
  const int leader = AwaitLeader(fleet, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  const int follower = 1 - leader;
  Process* paused = fleet.receiver(leader);

  // Paused past its lease: the other receiver leads.
  paused->Signal(SIGSTOP);
  const absl::Time stopped = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return Leads(fleet.receiver(follower)); },
                      absl::Seconds(kLeaseSeconds + 10)));
  std::cout << "ha: leader paused -> the other leads after "
            << absl::FormatDuration(absl::Now() - stopped) << "\n";
  // Resumed, it finds its leadership lapsed and exits at once (3), for its
  // supervisor to start it again as a follower.
  paused->Signal(SIGCONT);
  const std::optional<int> status = paused->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << paused->Log();
  ASSERT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), kDaemonExitLeadershipLost);
  EXPECT_TRUE(absl::StrContains(paused->Log(), "leadership lost: exiting"));

  // Started again (as systemd's Restart= would), it follows, takes
  // webhooks, and the new leader runs them.
  const int restarted = fleet.StartReplica();
  fleet.Target(follower);
  ASSERT_TRUE(fleet.AwaitAgents());
  fleet.Target(restarted);
  auto answer = fleet.Post(Fleet::PromotedEvent("v1", "v1"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id = Fleet::RolloutId(answer.second);
  fleet.Target(follower);
  EXPECT_EQ(fleet.AwaitFinal(id).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(Logged(fleet.receiver(follower), "rollout running", id));
  EXPECT_FALSE(Leads(fleet.receiver(restarted)));
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v1");
}

TEST(HaProcessTest,
     ControlOnAFollowerDeploysThroughTheLeaderAndRefusesTheRest) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  FleetOptions options;
  options.etcd_endpoints = (*cluster)->client_endpoints();
  options.etcd_lease_seconds = kLeaseSeconds;
  options.batch = "100%";
  Fleet fleet(options);
  ASSERT_EQ(fleet.StartReplica(), 1);
  const int leader = AwaitLeader(fleet, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  const int follower = 1 - leader;
  fleet.Target(follower);

  grpc::ClientContext deploy_context;
  deploy_context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  hoist::v1::ManualDeployRequest deploy;
  deploy.set_service("web");
  deploy.set_digest(Harness().Digest("v2"));
  hoist::v1::Rollout started;
  const grpc::Status s =
      fleet.Control()->Deploy(&deploy_context, deploy, &started);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(fleet.AwaitFinal(started.id()).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(Logged(fleet.receiver(leader), "rollout running", started.id()));
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v2");

  // What only the leader can do, the follower refuses, naming why.
  grpc::ClientContext cancel_context;
  cancel_context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  hoist::v1::CancelRequest cancel;
  cancel.set_id(started.id());
  hoist::v1::Rollout ignored;
  const grpc::Status refused =
      fleet.Control()->Cancel(&cancel_context, cancel, &ignored);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "not the leader"))
      << refused.error_message();
}

TEST(HaProcessTest, OneMemberDownChangesNothingAndNoQuorumPromisesNothing) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(3);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  FleetOptions options;
  options.etcd_endpoints = (*cluster)->client_endpoints();
  options.etcd_lease_seconds = kLeaseSeconds;
  options.batch = "100%";
  Fleet fleet(options);
  ASSERT_EQ(fleet.StartReplica(), 1);
  const int leader = AwaitLeader(fleet, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  fleet.Target(1 - leader);  // webhooks and reads through the follower

  // One member down: webhooks and rollouts carry on.
  (*cluster)->Kill((*cluster)->Leader());
  auto answer = fleet.Post(Fleet::PromotedEvent("v1", "v1"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  EXPECT_EQ(fleet.AwaitFinal(Fleet::RolloutId(answer.second)).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v1");

  // Two down: no quorum, so 503 and no promise.
  std::vector<int> down;
  for (int i = 0; i < (*cluster)->size(); ++i) {
    if ((*cluster)->Healthy(i)) {
      down.push_back(i);
      (*cluster)->Kill(i);
      break;
    }
  }
  for (int i = 0; i < (*cluster)->size(); ++i) {
    if (std::find(down.begin(), down.end(), i) == down.end()) down.push_back(i);
  }
  const std::string v2 = Fleet::PromotedEvent("v2", "v2");
  answer = fleet.Post(v2);
  EXPECT_EQ(answer.first, 503) << answer.second;
  EXPECT_TRUE(absl::StrContains(answer.second, "\"error\"")) << answer.second;

  // Every member back: the same delivery is new (it was never promised),
  // a leader is elected again and runs it.
  for (int i : down) {
    if (!(*cluster)->Healthy(i)) {
      ASSERT_TRUE((*cluster)->Restart(i).ok());
    }
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        answer = fleet.Post(v2);
        return answer.first == 202;
      },
      absl::Seconds(60)))
      << answer.first << " " << answer.second;
  EXPECT_TRUE(absl::StrContains(answer.second, "\"duplicate\":false"))
      << answer.second;
  EXPECT_EQ(fleet.AwaitFinal(Fleet::RolloutId(answer.second)).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v2");
}

}  // namespace
}  // namespace hoist::e2e
