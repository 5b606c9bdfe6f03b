// End to end, convergence (docs/design.md, "Desired state and convergence"):
// a real hoist-receiver following real hoist-agents' WatchContainers streams
// in two network-namespace hosts, their dockerds changed behind Hoist's back
// with the docker CLI, and the fleet brought back to the desired digest with
// no webhook.
#include <signal.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"

namespace hoist::e2e {
namespace {

using hoist::v1::Convergence;

std::string Id(const std::pair<int, std::string>& answer) {
  EXPECT_EQ(answer.first, 202) << answer.second;
  return Fleet::RolloutId(answer.second);
}

// `docker ARGS` against harness host `i`'s dockerd; its trimmed output.
std::string Docker(size_t i, const std::string& args) {
  const auto& host = Harness().hosts.at(i);
  hoist::testing::CommandResult r = hoist::testing::RunCommand(
      absl::StrCat("docker -H ", host.docker_endpoint, " ", args, " 2>&1"));
  EXPECT_EQ(r.exit_code, 0) << "docker " << args << ": " << r.output;
  return std::string(absl::StripAsciiWhitespace(r.output));
}

std::string ContainerId(size_t i) {
  return Docker(i, absl::StrCat("inspect -f '{{.Id}}' ", Fleet::kContainer));
}

absl::StatusOr<hoist::v1::Service> GetService(Fleet& fleet) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  hoist::v1::GetServiceRequest req;
  req.set_name("web");
  hoist::v1::Service s;
  grpc::Status st = fleet.Control()->GetService(&c, req, &s);
  if (!st.ok()) return FromGrpcStatus(st);
  return s;
}

Convergence HostState(Fleet& fleet, const std::string& agent) {
  absl::StatusOr<hoist::v1::Service> s = GetService(fleet);
  if (!s.ok()) return hoist::v1::CONVERGENCE_UNSPECIFIED;
  for (const auto& h : s->hosts()) {
    if (h.agent() == agent) return h.convergence();
  }
  return hoist::v1::CONVERGENCE_UNSPECIFIED;
}

// Samples host `agent`'s convergence every 20 ms until it is `last` after
// having been something else (or the timeout), and returns the distinct
// states seen, in order.
std::vector<Convergence> StatesUntil(Fleet& fleet, const std::string& agent,
                                     Convergence last, absl::Duration timeout) {
  std::vector<Convergence> seen;
  hoist::testing::WaitFor(
      [&] {
        const Convergence now = HostState(fleet, agent);
        if (seen.empty() || seen.back() != now) seen.push_back(now);
        return now == last && seen.size() > 1;
      },
      timeout);
  return seen;
}

bool AwaitHostState(Fleet& fleet, const std::string& agent, Convergence want,
                    absl::Duration timeout) {
  return hoist::testing::WaitFor(
      [&] { return HostState(fleet, agent) == want; }, timeout);
}

std::vector<hoist::v1::Rollout> Rollouts(Fleet& fleet) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  hoist::v1::ListRolloutsRequest req;
  req.set_service("web");
  req.set_limit(100);
  hoist::v1::ListRolloutsResponse resp;
  EXPECT_TRUE(fleet.Control()->ListRollouts(&c, req, &resp).ok());
  return {resp.rollouts().begin(), resp.rollouts().end()};
}

int ConvergeRollouts(Fleet& fleet) {
  int n = 0;
  for (const auto& r : Rollouts(fleet)) n += r.trigger() == "converge";
  return n;
}

// A fleet where both hosts run v1 through a webhook, in sync.
void DeployV1(Fleet& fleet) {
  ASSERT_TRUE(fleet.AwaitAgents());
  hoist::v1::Rollout r =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v1", "v1"))));
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (const char* h : {"h1", "h2"}) {
    ASSERT_TRUE(AwaitHostState(fleet, h, hoist::v1::CONVERGENCE_IN_SYNC,
                               absl::Seconds(10)))
        << h << " never IN_SYNC";
  }
}

TEST(ConvergenceE2eTest,
     RemovedContainerIsRecreatedThroughMissingAndConverging) {
  Fleet fleet(FleetOptions{});
  DeployV1(fleet);
  const absl::Time removed = absl::Now();
  Docker(1, absl::StrCat("rm -f ", Fleet::kContainer));
  const std::vector<Convergence> seen = StatesUntil(
      fleet, "h2", hoist::v1::CONVERGENCE_IN_SYNC, absl::Seconds(15));
  EXPECT_LT(absl::Now() - removed, absl::Seconds(15));
  EXPECT_THAT(seen, ::testing::IsSupersetOf({hoist::v1::CONVERGENCE_MISSING,
                                             hoist::v1::CONVERGENCE_CONVERGING,
                                             hoist::v1::CONVERGENCE_IN_SYNC}))
      << ::testing::PrintToString(seen);
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v1");
  EXPECT_EQ(ConvergeRollouts(fleet), 1);
}

TEST(ConvergenceE2eTest, StoppedContainerIsStartedAgainNotRecreated) {
  Fleet fleet(FleetOptions{});
  DeployV1(fleet);
  const std::string id = ContainerId(0);
  Docker(0, absl::StrCat("stop -t 1 ", Fleet::kContainer));
  ASSERT_TRUE(hoist::testing::WaitFor(
      [] { return Fleet::Serves(0) == "hoist-test v1"; }, absl::Seconds(15)))
      << "h1 not serving again within 15 s";
  EXPECT_EQ(ContainerId(0), id) << "recreated instead of started";
  EXPECT_TRUE(AwaitHostState(fleet, "h1", hoist::v1::CONVERGENCE_IN_SYNC,
                             absl::Seconds(5)));
}

TEST(ConvergenceE2eTest, AHostDownDuringAPromotionCatchesUpWhenItReturns) {
  FleetOptions o;
  o.retry_seconds = 3;  // h2 counts as unreachable after 3 s
  Fleet fleet(o);
  DeployV1(fleet);
  const std::string h1_id = ContainerId(0);
  fleet.agent(1)->Signal(SIGTERM);
  ASSERT_TRUE(fleet.agent(1)->Wait(absl::Seconds(10)).has_value());
  hoist::v1::Rollout v2 =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v2", "v2"))));
  ASSERT_EQ(v2.state(), hoist::v1::ROLLOUT_STATE_FAILED) << v2.DebugString();
  EXPECT_EQ(v2.hosts(1).phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  const std::string h1_v2 = ContainerId(0);
  EXPECT_NE(h1_v2, h1_id);
  EXPECT_EQ(HostState(fleet, "h2"), hoist::v1::CONVERGENCE_UNREACHABLE);

  fleet.StartAgent(1);
  const absl::Time back = absl::Now();
  ASSERT_TRUE(hoist::testing::WaitFor(
      [] { return Fleet::Serves(1) == "hoist-test v2"; }, absl::Seconds(30)))
      << "h2 did not catch up within 30 s";
  EXPECT_LT(absl::Now() - back, absl::Seconds(30));
  EXPECT_EQ(ContainerId(0), h1_v2) << "h1, already upgraded, was redeployed";
  for (const auto& r : Rollouts(fleet)) {
    if (r.trigger() != "converge") continue;
    ASSERT_EQ(r.hosts_size(), 1) << r.DebugString();
    EXPECT_EQ(r.hosts(0).agent(), "h2");
    EXPECT_EQ(r.digest(), Harness().Digest("v2"));
  }
}

TEST(ConvergenceE2eTest, AHostAddedToTheConfigGetsTheDesiredDigest) {
  FleetOptions o;
  o.configured = {true, false};
  Fleet fleet(o);
  ASSERT_TRUE(fleet.AwaitAgents(absl::Seconds(60), 1));
  hoist::v1::Rollout r =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v2", "v2"))));
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  ASSERT_EQ(r.hosts_size(), 1);
  o.configured = {true, true};
  fleet.Reconfigure(o);
  ASSERT_TRUE(hoist::testing::WaitFor(
      [] { return Fleet::Serves(1) == "hoist-test v2"; }, absl::Seconds(30)))
      << "the new host did not get v2";
  EXPECT_TRUE(AwaitHostState(fleet, "h2", hoist::v1::CONVERGENCE_IN_SYNC,
                             absl::Seconds(5)));
}

TEST(ConvergenceE2eTest, AForeignContainerIsReportedAndNeverTouched) {
  Fleet fleet(FleetOptions{});
  ASSERT_TRUE(fleet.AwaitAgents());
  // h2's name is taken by a container Hoist did not create, before v1.
  Docker(1, absl::StrCat("run -d --name ", Fleet::kContainer, " ",
                         Harness().image_repo_bridge, "@",
                         Harness().Digest("v2")));
  const std::string foreign = ContainerId(1);
  hoist::v1::Rollout r =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v1", "v1"))));
  EXPECT_EQ(ContainerId(1), foreign);
  ASSERT_TRUE(AwaitHostState(fleet, "h2", hoist::v1::CONVERGENCE_FOREIGN,
                             absl::Seconds(10)));
  // Well past delay_seconds: still foreign, still the same container.
  const absl::Time until = absl::Now() + absl::Seconds(6);
  EXPECT_FALSE(hoist::testing::WaitFor(
      [&] {
        return HostState(fleet, "h2") != hoist::v1::CONVERGENCE_FOREIGN ||
               ConvergeRollouts(fleet) > 0;
      },
      until - absl::Now()));
  EXPECT_EQ(ContainerId(1), foreign);
}

TEST(ConvergenceE2eTest, ReportModeShowsDriftAndDeploysNothing) {
  FleetOptions o;
  o.converge = "report";
  Fleet fleet(o);
  DeployV1(fleet);
  Docker(0, absl::StrCat("rm -f ", Fleet::kContainer));
  ASSERT_TRUE(AwaitHostState(fleet, "h1", hoist::v1::CONVERGENCE_MISSING,
                             absl::Seconds(5)));
  EXPECT_FALSE(hoist::testing::WaitFor(
      [&] {
        return HostState(fleet, "h1") != hoist::v1::CONVERGENCE_MISSING ||
               ConvergeRollouts(fleet) > 0;
      },
      absl::Seconds(6)));
  absl::StatusOr<hoist::v1::Service> s = GetService(fleet);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->converge_mode(), "report");
}

// An image that always crashes, promoted under `continue`: every host's
// agent rolls back to v1 and keeps serving it, the desired digest stays
// the crashing one, convergence retries each host with backoff, gives up
// after max_attempts, and a receiver killed and restarted remembers all of
// it.
TEST(ConvergenceE2eTest, ACrashingImageBacksOffToGaveUpAndSurvivesSigkill) {
  FleetOptions o;
  o.on_failure = "continue";
  o.batch = "100%";
  o.health_timeout_seconds = 5;
  Fleet fleet(o);
  DeployV1(fleet);
  hoist::v1::Rollout crash =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("crash", "crash"))));
  ASSERT_EQ(crash.state(), hoist::v1::ROLLOUT_STATE_FAILED)
      << crash.DebugString();
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return HostState(fleet, "h1") == hoist::v1::CONVERGENCE_GAVE_UP &&
               HostState(fleet, "h2") == hoist::v1::CONVERGENCE_GAVE_UP;
      },
      absl::Seconds(150)))
      << GetService(fleet)->DebugString();
  // Never a tight loop: max_attempts rollouts, spaced by the backoff.
  std::vector<hoist::v1::Rollout> converges;
  for (const auto& r : Rollouts(fleet)) {
    if (r.trigger() == "converge") converges.insert(converges.begin(), r);
  }
  ASSERT_EQ(converges.size(), 3u);
  for (size_t i = 1; i < converges.size(); ++i) {
    const absl::Duration gap = FromProto(converges[i].created()) -
                               FromProto(converges[i - 1].finished());
    EXPECT_GE(gap, absl::Seconds(2) - absl::Milliseconds(100)) << i;
  }
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v1");
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v1");

  fleet.KillReceiver();
  fleet.StartReceiver();
  ASSERT_TRUE(fleet.AwaitAgents());
  ASSERT_TRUE(AwaitHostState(fleet, "h1", hoist::v1::CONVERGENCE_GAVE_UP,
                             absl::Seconds(10)));
  absl::StatusOr<hoist::v1::Service> s = GetService(fleet);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->desired_digest(), Harness().Digest("crash"));
  for (const auto& h : s->hosts()) EXPECT_EQ(h.attempts(), 3) << h.agent();
  EXPECT_EQ(ConvergeRollouts(fleet), 3);
}

}  // namespace
}  // namespace hoist::e2e
