// Faults around one real hoist-agent process and real Docker parts:
//   - the agent SIGKILLed while a pull is in flight (the registry stalls, so
//     the pull is certainly in progress when the kill lands);
//   - the host's dockerd stopped in the middle of a deploy (a private dockerd
//     in an extra harness host, stopped and started by the test);
//   - the registry down (a private registry, stopped by the test).
// The SIGKILL between stopping the old container and starting the new one is
// covered by tests/nodeagent/agent_process_test.cc
// (DeployThroughTheProcessAndSurviveSigkillMidDeploy).
#include <signal.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/faults/fault_util.h"

namespace hoist::faults {
namespace {

using ::hoist::testing::RunCommand;
using ::hoist::testing::TestHost;
using ::hoist::testing::WaitFor;
using ::hoist::v1::DeployEvent;

// Reads the deploy's events until `phase` shows; fails on a terminal phase.
bool ReadUntil(grpc::ClientReader<DeployEvent>* reader,
               hoist::v1::DeployPhase phase) {
  DeployEvent event;
  while (reader->Read(&event)) {
    if (event.phase() == phase) return true;
    if (event.phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED ||
        event.phase() == hoist::v1::DEPLOY_PHASE_FAILED ||
        event.phase() == hoist::v1::DEPLOY_PHASE_ROLLED_BACK) {
      ADD_FAILURE() << "deploy ended first: " << event.ShortDebugString();
      return false;
    }
  }
  return false;
}

std::string Names(const std::string& endpoint) {
  return RunCommand(absl::StrCat("docker -H ", endpoint,
                                 " ps -a --format '{{.Names}}' 2>&1"))
      .output;
}

// ---- 1. agent SIGKILLed during a pull ----

// Deploys v1 (k1), starts k2 (v2 from a stalled registry), SIGKILLs the
// agent while Docker is pulling, restarts it and checks the service was
// never touched. Returns the record ListContainers then shows, and leaves the
// agent running in `agent`.
std::optional<hoist::v1::ManagedContainer> KillDuringPull(
    Agent* agent, const std::string& name, int port) {
  const auto& env = Harness();
  EXPECT_NO_FATAL_FAILURE(agent->Start());
  auto first = agent->DeployToEnd(
      DeployOf("k1", env.image_repo, env.Digest("v1"), name, port));
  if (first.empty() ||
      first.back().phase() != hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
    ADD_FAILURE() << "k1 did not succeed\n" << agent->Log();
    return std::nullopt;
  }
  EXPECT_EQ(Body(port), "hoist-test v1");
  const std::string old_id = Inspect(env.docker_endpoint, name, "{{.Id}}");

  // v2 from a registry that accepts and stalls: the pull is in flight.
  StalledRegistry stalled("127.0.0.1");
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    auto reader = agent->Stub()->Deploy(
        &context, DeployOf("k2", stalled.host_port() + "/hoist-test",
                           env.Digest("v2"), name, port));
    if (!ReadUntil(reader.get(), hoist::v1::DEPLOY_PHASE_PULLING)) {
      ADD_FAILURE() << "no PULLING event";
      return std::nullopt;
    }
    // Docker is talking to the stalled registry: the pull is under way.
    EXPECT_TRUE(
        WaitFor([&] { return stalled.connections() > 0; }, absl::Seconds(30)));
    EXPECT_NO_FATAL_FAILURE(agent->Kill());
    context.TryCancel();
  }

  EXPECT_NO_FATAL_FAILURE(agent->Start());
  // The old container was never touched: same container, still serving.
  EXPECT_EQ(Body(port), "hoist-test v1");
  EXPECT_EQ(Inspect(env.docker_endpoint, name, "{{.Id}}"), old_id);
  EXPECT_EQ(Inspect(env.docker_endpoint, name, "{{.State.Running}}"), "true");
  auto record = agent->Container(name);
  EXPECT_TRUE(record.has_value());
  if (record.has_value()) {
    EXPECT_EQ(record->digest(), env.Digest("v1")) << record->ShortDebugString();
    EXPECT_EQ(record->state(), "running");
  }
  return record;
}

TEST(AgentFaultsTest, AgentKilledDuringPullKeepsTheServiceAndDeploysAgain) {
  const auto& env = Harness();
  hoist::testing::RemoveAllContainers(env.docker_endpoint);
  const std::string dir = hoist::testing::MakeTempDir("fault-pull");
  const std::string name = "fault-pull";
  const int port = hoist::testing::FreeTcpPort();
  Agent agent(dir, "", "127.0.0.1", env.docker_endpoint, "fault-host");
  ASSERT_TRUE(KillDuringPull(&agent, name, port).has_value());

  // A new deploy goes through the restarted agent.
  auto next = agent.DeployToEnd(
      DeployOf("k3", env.image_repo, env.Digest("v2"), name, port));
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << next.back().error() << "\n"
      << agent.Log();
  EXPECT_EQ(Body(port), "hoist-test v2");
  EXPECT_FALSE(absl::StrContains(Names(env.docker_endpoint), "hoist-new"));
  hoist::testing::RemoveAllContainers(env.docker_endpoint);
}

// The agent journals a deploy before its pull, so after a SIGKILL during the
// pull Recover() records that k2 was interrupted (not just k1's success).
TEST(AgentFaultsTest, AgentKilledDuringPullIsRecorded) {
  const auto& env = Harness();
  hoist::testing::RemoveAllContainers(env.docker_endpoint);
  const std::string dir = hoist::testing::MakeTempDir("fault-pull-rec");
  const int port = hoist::testing::FreeTcpPort();
  Agent agent(dir, "", "127.0.0.1", env.docker_endpoint, "fault-host");
  auto record = KillDuringPull(&agent, "fault-pull-rec", port);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->last_deploy_id(), "k2")
      << "a deploy interrupted during its pull left no trace: "
      << record->ShortDebugString();
  EXPECT_TRUE(absl::StrContains(record->last_error(), "restarted"))
      << record->ShortDebugString();
  hoist::testing::RemoveAllContainers(env.docker_endpoint);
}

// ---- 2, 3: a host of our own, whose dockerd and registry we may stop ----

class ExtraHostFaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto h = hoist::testing::StartExtraHost("f1", 9);
    ASSERT_TRUE(h.ok()) << h.status();
    host_ = new TestHost(*h);
  }
  static void TearDownTestSuite() {
    if (host_ != nullptr) {
      EXPECT_TRUE(hoist::testing::RemoveExtraHost(*host_).ok());
      delete host_;
      host_ = nullptr;
    }
  }
  void SetUp() override {
    ASSERT_NE(host_, nullptr);
    hoist::testing::RemoveAllContainers(host_->docker_endpoint);
  }

  static TestHost* host_;
};
TestHost* ExtraHostFaultsTest::host_ = nullptr;

TEST_F(ExtraHostFaultsTest, DockerdStoppedDuringDeployFailsAndOldSurvives) {
  const auto& env = Harness();
  const TestHost& host = *host_;
  const std::string dir = hoist::testing::MakeTempDir("fault-dockerd");
  const std::string name = "fault-dockerd";
  Agent agent(dir, host.netns, host.address, host.docker_endpoint, "f1");
  ASSERT_NO_FATAL_FAILURE(agent.Start());

  auto first = agent.DeployToEnd(
      DeployOf("d1", env.image_repo_bridge, env.Digest("v1"), name, 8080));
  ASSERT_FALSE(first.empty()) << agent.Log();
  ASSERT_EQ(first.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << first.back().error();
  ASSERT_EQ(Body(8080, host.netns), "hoist-test v1");
  const std::string old_id = Inspect(host.docker_endpoint, name, "{{.Id}}");

  // v2 from a stalled registry; once the pull is under way, stop dockerd.
  const std::string bridge_ip =
      env.registry_bridge.substr(0, env.registry_bridge.find(':'));
  StalledRegistry stalled(bridge_ip);
  std::vector<DeployEvent> events;
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    auto reader = agent.Stub()->Deploy(
        &context, DeployOf("d2", stalled.host_port() + "/hoist-test",
                           env.Digest("v2"), name, 8080));
    ASSERT_TRUE(ReadUntil(reader.get(), hoist::v1::DEPLOY_PHASE_PULLING));
    ASSERT_TRUE(
        WaitFor([&] { return stalled.connections() > 0; }, absl::Seconds(30)));
    absl::Status stopped = hoist::testing::StopExtraDockerd(host);
    ASSERT_TRUE(stopped.ok()) << stopped;
    DeployEvent event;
    while (reader->Read(&event)) events.push_back(event);
    EXPECT_TRUE(reader->Finish().ok());
  }
  ASSERT_FALSE(events.empty()) << agent.Log();
  const DeployEvent& last = events.back();
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED)
      << last.ShortDebugString();
  EXPECT_FALSE(last.error().empty()) << last.ShortDebugString();
  std::cout << "deploy d2 ended " << DeployPhase_Name(last.phase()) << ": "
            << last.error() << std::endl;
  hoist::v1::AgentStatus status;
  ASSERT_TRUE(agent.GetStatus(&status).ok());
  EXPECT_FALSE(status.docker_reachable());

  // dockerd returns: the old container is intact and, by its restart
  // policy, serves again.
  absl::Status started = hoist::testing::StartExtraDockerd(host);
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_EQ(Inspect(host.docker_endpoint, name, "{{.Id}}"), old_id);
  EXPECT_TRUE(WaitFor([&] { return Body(8080, host.netns) == "hoist-test v1"; },
                      absl::Seconds(30)))
      << Body(8080, host.netns);
  EXPECT_FALSE(absl::StrContains(Names(host.docker_endpoint), "hoist-new"))
      << Names(host.docker_endpoint);
  auto record = agent.Container(name);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->digest(), env.Digest("v1"));
  EXPECT_EQ(record->last_deploy_id(), "d2");
  EXPECT_EQ(record->last_phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(record->last_error(), last.error());

  // And the agent deploys again once Docker is back.
  auto next = agent.DeployToEnd(
      DeployOf("d3", env.image_repo_bridge, env.Digest("v2"), name, 8080));
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << next.back().error() << "\n"
      << agent.Log();
  EXPECT_EQ(Body(8080, host.netns), "hoist-test v2");
}

TEST_F(ExtraHostFaultsTest, RegistryDownFailsAndLeavesTheServiceRunning) {
  const auto& env = Harness();
  const TestHost& host = *host_;
  const std::string dir = hoist::testing::MakeTempDir("fault-registry");
  const std::string name = "fault-registry";

  // A private registry holding v1 and v2 (pushed from the root engine).
  auto registry = hoist::testing::StartExtraRegistry("r1");
  ASSERT_TRUE(registry.ok()) << registry.status();
  const std::string repo = *registry + "/hoist-test";
  std::map<std::string, std::string> digests;
  for (const std::string tag : {"v1", "v2"}) {
    auto push = RunCommand(
        absl::StrCat("docker -H ", env.docker_endpoint, " tag ", env.image_repo,
                     ":", tag, " ", repo, ":", tag, " && docker -H ",
                     env.docker_endpoint, " push ", repo, ":", tag, " 2>&1"));
    ASSERT_EQ(push.exit_code, 0) << push.output;
    const size_t at = push.output.find("digest: sha256:");
    ASSERT_NE(at, std::string::npos) << push.output;
    digests[tag] = push.output.substr(at + 8, 71);
  }

  Agent agent(dir, host.netns, host.address, host.docker_endpoint, "f1");
  ASSERT_NO_FATAL_FAILURE(agent.Start());
  auto first =
      agent.DeployToEnd(DeployOf("r1", repo, digests["v1"], name, 8080));
  ASSERT_FALSE(first.empty()) << agent.Log();
  ASSERT_EQ(first.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << first.back().error();
  const std::string old_id = Inspect(host.docker_endpoint, name, "{{.Id}}");
  const std::string old_started =
      Inspect(host.docker_endpoint, name, "{{.State.StartedAt}}");

  absl::Status stopped = hoist::testing::StopExtraRegistry("r1");
  ASSERT_TRUE(stopped.ok()) << stopped;
  auto events =
      agent.DeployToEnd(DeployOf("r2", repo, digests["v2"], name, 8080));
  ASSERT_FALSE(events.empty());
  const DeployEvent& last = events.back();
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED)
      << last.ShortDebugString();
  EXPECT_TRUE(absl::StrContains(last.error(), *registry))
      << "the error should name the registry: " << last.error();
  std::cout << "deploy r2 ended " << DeployPhase_Name(last.phase()) << ": "
            << last.error() << std::endl;
  // No phase past the pull: nothing running was touched.
  for (const DeployEvent& e : events) {
    EXPECT_NE(e.phase(), hoist::v1::DEPLOY_PHASE_STOPPING_OLD);
    EXPECT_NE(e.phase(), hoist::v1::DEPLOY_PHASE_CREATING);
  }
  EXPECT_EQ(Inspect(host.docker_endpoint, name, "{{.Id}}"), old_id);
  EXPECT_EQ(Inspect(host.docker_endpoint, name, "{{.State.StartedAt}}"),
            old_started);
  EXPECT_EQ(Body(8080, host.netns), "hoist-test v1");
  auto record = agent.Container(name);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->digest(), digests["v1"]);
  EXPECT_EQ(record->last_deploy_id(), "r2");
  EXPECT_EQ(record->last_phase(), hoist::v1::DEPLOY_PHASE_FAILED);
}

}  // namespace
}  // namespace hoist::faults
