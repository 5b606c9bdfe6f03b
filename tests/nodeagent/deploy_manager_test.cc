// Unit tests of the deploy state machine against FakeDockerClient and
// FakeClock.
#include "nodeagent/deploy_manager.h"

#include <filesystem>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/temp_dir.h"
#include "tests/nodeagent/fake_docker_client.h"
#include "tests/nodeagent/fake_health_prober.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployEvent;
using hoist::v1::DeployPhase;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kRepo[] = "registry.test:5000/app";
const std::string kD1 = "sha256:" + std::string(64, '1');
const std::string kD2 = "sha256:" + std::string(64, '2');
const std::string kD3 = "sha256:" + std::string(64, '3');
const std::string kBad = "sha256:" + std::string(64, 'b');

class DeployManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    docker_ = std::make_shared<FakeDockerClient>();
    docker_->AddRemoteImage(kRepo, kD1);
    docker_->AddRemoteImage(kRepo, kD2);
    docker_->AddRemoteImage(kRepo, kD3);
    FakeDockerClient::Behavior crash;
    crash.exits = true;
    crash.exit_code = 3;
    crash.logs = "boom\n";
    docker_->AddRemoteImage(kRepo, Crash(), crash);
    FakeDockerClient::Behavior unhealthy;
    unhealthy.health = "unhealthy";
    docker_->AddRemoteImage(kRepo, Unhealthy(), unhealthy);
    FakeDockerClient::Behavior starting;
    starting.health = "starting";
    docker_->AddRemoteImage(kRepo, Starting(), starting);
    manager_ = NewManager();
  }

  std::unique_ptr<DeployManager> NewManager(int keep_images = 3) {
    DeployManager::Options options;
    options.docker = docker_;
    options.clock = &clock_;
    options.prober = &prober_;
    options.host = "host-a";
    options.state_dir = state_dir_;
    options.keep_images = keep_images;
    options.registries = registries_;
    auto manager = DeployManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return std::move(*manager);
  }

  static std::string Crash() { return "sha256:" + std::string(64, 'c'); }
  static std::string Unhealthy() { return "sha256:" + std::string(64, 'd'); }
  static std::string Starting() { return "sha256:" + std::string(64, 'e'); }

  hoist::v1::DeployRequest Request(const std::string& id,
                                   const std::string& digest,
                                   const std::string& name = "web") {
    hoist::v1::DeployRequest request;
    request.set_deploy_id(id);
    request.set_service("websvc");
    request.set_image(kRepo);
    request.set_digest(digest);
    request.mutable_container()->set_name(name);
    request.mutable_container()->add_ports("127.0.0.1:8080:8080/tcp");
    request.mutable_container()->set_restart("unless-stopped");
    request.mutable_container()->set_stop_timeout_seconds(5);
    return request;
  }

  // Moves the fake clock whenever the deploy waits, until the log is finished.
  bool Drive(const std::shared_ptr<DeployLog>& log) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (!log->finished() && absl::Now() < give_up) {
      if (clock_.sleepers() > 0) clock_.Advance(absl::Milliseconds(500));
      log->WaitFinished(absl::Milliseconds(2));
    }
    return log->finished();
  }

  std::vector<DeployEvent> Events(const std::shared_ptr<DeployLog>& log) {
    std::vector<DeployEvent> events;
    log->Read(0, &events);
    return events;
  }

  // Phases with consecutive duplicates (pull progress) collapsed.
  std::vector<DeployPhase> Phases(const std::shared_ptr<DeployLog>& log) {
    std::vector<DeployPhase> phases;
    for (const DeployEvent& e : Events(log)) {
      if (phases.empty() || phases.back() != e.phase())
        phases.push_back(e.phase());
    }
    return phases;
  }

  DeployEvent RunDeploy(const hoist::v1::DeployRequest& request) {
    auto log = manager_->Deploy(request);
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return DeployEvent();
    EXPECT_TRUE(Drive(*log));
    return (*log)->last();
  }

  FakeClock clock_;
  std::shared_ptr<FakeDockerClient> docker_;
  FakeHealthProber prober_;
  // Declared before everything that writes into it, so it goes last.
  hoist::testing::ScopedTempDir temp_{"dm-"};
  const std::string state_dir_ = temp_.path();
  std::vector<RegistryAuth> registries_;
  std::unique_ptr<DeployManager> manager_;
};

TEST_F(DeployManagerTest, FirstDeployEventsInOrderAndContainerConfigured) {
  auto log = manager_->Deploy(Request("d-1", kD1));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_THAT(Phases(*log), ElementsAre(hoist::v1::DEPLOY_PHASE_PULLING,
                                        hoist::v1::DEPLOY_PHASE_PULLED,
                                        hoist::v1::DEPLOY_PHASE_CREATING,
                                        hoist::v1::DEPLOY_PHASE_STARTING,
                                        hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
                                        hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  bool saw_progress = false;
  for (const DeployEvent& e : Events(*log)) {
    EXPECT_EQ(e.host(), "host-a");
    EXPECT_EQ(e.deploy_id(), "d-1");
    if (e.pull().total_bytes() == 100) saw_progress = true;
  }
  EXPECT_TRUE(saw_progress);
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_TRUE(web->running);
  EXPECT_EQ(web->restart_policy, "unless-stopped");
  EXPECT_EQ(web->labels.at("hoist.service"), "websvc");
  EXPECT_EQ(web->labels.at("hoist.digest"), kD1);
  EXPECT_EQ(web->labels.at("hoist.deploy_id"), "d-1");
  EXPECT_EQ((*log)->last().container_id(), web->id);
  // Created under a temporary name with restart policy "no".
  const std::string temp =
      absl::StrCat("web.hoist-new-", Sha256Hex("d-1").substr(0, 12));
  EXPECT_EQ(docker_->LastConfig(temp).restart_policy, "no");
  EXPECT_EQ(docker_->LastConfig(temp).image, absl::StrCat(kRepo, "@", kD1));
  EXPECT_EQ(docker_->LastConfig(temp).ports,
            std::vector<std::string>{"127.0.0.1:8080:8080/tcp"});
}

TEST_F(DeployManagerTest, RestartPolicyIsUpdatedOnlyWhenNotNo) {
  // Created with "no"; the spec's policy is applied once healthy, and an
  // empty or "no" policy needs no second call.
  hoist::v1::DeployRequest plain = Request("d-1", kD1);
  plain.mutable_container()->clear_restart();
  EXPECT_EQ(RunDeploy(plain).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  hoist::v1::DeployRequest no = Request("d-2", kD2);
  no.mutable_container()->set_restart("no");
  EXPECT_EQ(RunDeploy(no).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  for (const std::string& call : docker_->calls())
    EXPECT_FALSE(absl::StartsWith(call, "Update ")) << call;
  EXPECT_EQ(docker_->Find("web")->restart_policy, "no");
  EXPECT_EQ(RunDeploy(Request("d-3", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->restart_policy, "unless-stopped");
  EXPECT_THAT(docker_->calls(),
              Contains(absl::StrCat("Update ", web->id, " unless-stopped")));
}

TEST_F(DeployManagerTest,
       PullEventsAreThrottledPerDeployAndPulledCarriesTheTotals) {
  // The fake reports, at one instant of the fake clock, 50/100 and 100/100
  // for layer1, "Pull complete" for layer1, then 10/40 and 40/40 for layer2
  // and "Pull complete" for layer2: after the first byte count every other
  // event, completions included, falls in the deploy's 250 ms window,
  // whatever its layer. PULLED then carries the download sizes' sum.
  auto log = manager_->Deploy(Request("d-1", kD1));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(Drive(*log));
  std::vector<std::string> seen;
  for (const DeployEvent& e : Events(*log)) {
    if (e.phase() == hoist::v1::DEPLOY_PHASE_PULLING &&
        !e.pull().layer().empty()) {
      seen.push_back(absl::StrCat(e.message(), " ", e.pull().current_bytes(),
                                  "/", e.pull().total_bytes()));
    }
    if (e.phase() == hoist::v1::DEPLOY_PHASE_PULLED) {
      seen.push_back(absl::StrCat("PULLED [", e.pull().layer(), "] ",
                                  e.pull().current_bytes(), "/",
                                  e.pull().total_bytes()));
    }
  }
  EXPECT_THAT(seen,
              ElementsAre("layer1: Downloading 50/100", "PULLED [] 140/140"));
}

TEST_F(DeployManagerTest, UpgradeStopsOldSwapsAndRemembersPrevious) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->Find("web")->id;
  auto log = manager_->Deploy(Request("d-2", kD2));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(Drive(*log));
  EXPECT_THAT(Phases(*log), ElementsAre(hoist::v1::DEPLOY_PHASE_PULLING,
                                        hoist::v1::DEPLOY_PHASE_PULLED,
                                        hoist::v1::DEPLOY_PHASE_CREATING,
                                        hoist::v1::DEPLOY_PHASE_STOPPING_OLD,
                                        hoist::v1::DEPLOY_PHASE_STARTING,
                                        hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
                                        hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  EXPECT_EQ(docker_->CountCalls("Stop " + old_id), 1);
  EXPECT_EQ(docker_->CountCalls("Remove " + old_id), 1);
  EXPECT_THAT(docker_->ContainerNames(), ElementsAre("web"));
  EXPECT_EQ(docker_->Find("web")->labels.at("hoist.digest"), kD2);
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->containers_size(), 1);
  EXPECT_EQ(list->containers(0).digest(), kD2);
  EXPECT_EQ(list->containers(0).last_deploy_id(), "d-2");
  EXPECT_EQ(list->containers(0).last_phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(list->containers(0).previous_digests(), ElementsAre(kD1));
}

// One failure injected at each step of an upgrade from kD1.
struct FailureCase {
  std::string name;
  std::string digest;       // what the second deploy asks for
  std::string fail_method;  // FakeDockerClient method to fail once ("" none)
  DeployPhase terminal;
  bool touches_old;  // whether the old container was stopped at all
  std::string error_contains;
  int exit_code = 0;
};

class DeployFailureTest : public DeployManagerTest,
                          public ::testing::WithParamInterface<FailureCase> {};

TEST_P(DeployFailureTest, OldKeepsServing) {
  const FailureCase& c = GetParam();
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->Find("web")->id;
  if (c.fail_method == "mismatch") {
    docker_->AddRemoteImage(kRepo, kBad, {}, {absl::StrCat(kRepo, "@", kD3)});
  } else if (!c.fail_method.empty()) {
    docker_->FailNext(c.fail_method,
                      absl::InternalError("injected " + c.fail_method),
                      c.fail_method == "StopContainer" ? old_id : "");
  }
  const DeployEvent last = RunDeploy(Request("d-2", c.digest));
  EXPECT_EQ(last.phase(), c.terminal) << last.DebugString();
  EXPECT_THAT(last.error(), HasSubstr(c.error_contains));
  EXPECT_EQ(last.exit_code(), c.exit_code);
  // The old container runs again under its name, and nothing else is left.
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->id, old_id);
  EXPECT_TRUE(web->running);
  EXPECT_THAT(docker_->ContainerNames(), ElementsAre("web"));
  EXPECT_EQ(docker_->CountCalls("Stop " + old_id) > 0, c.touches_old);
  EXPECT_EQ(docker_->CountCalls("Remove " + old_id), 0);
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->containers(0).last_phase(), c.terminal);
  EXPECT_EQ(list->containers(0).last_deploy_id(), "d-2");
  EXPECT_EQ(list->containers(0).digest(), kD1);
}

INSTANTIATE_TEST_SUITE_P(
    Steps, DeployFailureTest,
    ::testing::Values(
        FailureCase{"PullFails", kD2, "PullImage",
                    hoist::v1::DEPLOY_PHASE_FAILED, false,
                    "injected PullImage"},
        FailureCase{"NoSuchDigest", "sha256:" + std::string(64, '9'), "",
                    hoist::v1::DEPLOY_PHASE_FAILED, false, "manifest unknown"},
        FailureCase{"DigestMismatch", kBad, "mismatch",
                    hoist::v1::DEPLOY_PHASE_FAILED, false, "digest mismatch"},
        FailureCase{"CreateFails", kD2, "CreateContainer",
                    hoist::v1::DEPLOY_PHASE_FAILED, false,
                    "injected CreateContainer"},
        FailureCase{"StopFails", kD2, "StopContainer",
                    hoist::v1::DEPLOY_PHASE_ROLLED_BACK, true,
                    "could not stop the old container"},
        FailureCase{"StartFails", kD2, "StartContainer",
                    hoist::v1::DEPLOY_PHASE_ROLLED_BACK, true, "start failed"},
        FailureCase{"Crashes", "sha256:" + std::string(64, 'c'), "",
                    hoist::v1::DEPLOY_PHASE_ROLLED_BACK, true,
                    "exited with code 3", 3}),
    [](const ::testing::TestParamInfo<FailureCase>& info) {
      return info.param.name;
    });

TEST_F(DeployManagerTest, CrashKeepsExitCodeAndLogTail) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto log = manager_->Deploy(Request("d-2", Crash()));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(Drive(*log));
  EXPECT_THAT(Phases(*log), ElementsAre(hoist::v1::DEPLOY_PHASE_PULLING,
                                        hoist::v1::DEPLOY_PHASE_PULLED,
                                        hoist::v1::DEPLOY_PHASE_CREATING,
                                        hoist::v1::DEPLOY_PHASE_STOPPING_OLD,
                                        hoist::v1::DEPLOY_PHASE_STARTING,
                                        hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
                                        hoist::v1::DEPLOY_PHASE_ROLLING_BACK,
                                        hoist::v1::DEPLOY_PHASE_ROLLED_BACK));
  EXPECT_EQ((*log)->last().exit_code(), 3);
  EXPECT_EQ((*log)->last().log_tail(), "boom\n");
}

TEST_F(DeployManagerTest, OldThatCannotStartAgainFailsWithBothContainersTails) {
  FakeDockerClient::Behavior old_behavior;
  old_behavior.exit_code = 143;  // once stopped
  old_behavior.logs = "old served\n";
  const std::string old_digest = "sha256:" + std::string(64, 'a');
  docker_->AddRemoteImage(kRepo, old_digest, old_behavior);
  ASSERT_EQ(RunDeploy(Request("d-1", old_digest)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->Find("web")->id;
  docker_->FailNext("StartContainer", absl::InternalError("injected no exec"),
                    old_id);
  const DeployEvent last = RunDeploy(Request("d-2", Crash()));
  // Nothing runs any more: not a rollback.
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED) << last.DebugString();
  EXPECT_THAT(last.error(), HasSubstr("exited with code 3"));
  EXPECT_THAT(last.error(),
              HasSubstr("could not start the old container again: injected "
                        "no exec (old container exit code 143)"));
  EXPECT_EQ(last.exit_code(), 3);  // the new container's
  EXPECT_EQ(last.log_tail(),
            "new container:\nboom\nold container:\nold served\n");
  EXPECT_FALSE(docker_->Find("web")->running);
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->containers(0).last_phase(), hoist::v1::DEPLOY_PHASE_FAILED);
}

TEST_F(DeployManagerTest, WithoutHealthCheckAnExitWithinTheSettleRollsBack) {
  // Running at the first look, exited at the next: only the settle wait
  // (1 s by default) tells it from a healthy container.
  FakeDockerClient::Behavior dies;
  dies.exits_after_inspects = 1;
  dies.exit_code = 1;
  const std::string digest = "sha256:" + std::string(64, '7');
  docker_->AddRemoteImage(kRepo, digest, dies);
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const DeployEvent last = RunDeploy(Request("d-2", digest));  // no health
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK)
      << last.DebugString();
  EXPECT_THAT(last.error(), HasSubstr("new container exited with code 1"));
  EXPECT_EQ(last.exit_code(), 1);
  EXPECT_TRUE(docker_->Find("web")->running);
}

TEST_F(DeployManagerTest, DockerUnhealthyRollsBack) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto request = Request("d-2", Unhealthy());
  request.mutable_health()->set_docker(true);
  const DeployEvent last = RunDeploy(request);
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_THAT(last.error(), HasSubstr("unhealthy"));
  EXPECT_TRUE(docker_->Find("web")->running);
}

TEST_F(DeployManagerTest, HealthTimeoutRollsBackAfterTimeoutSeconds) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto request = Request("d-2", Starting());
  request.mutable_health()->set_docker(true);
  request.mutable_health()->set_timeout_seconds(7);
  request.mutable_health()->set_interval_seconds(2);
  auto log = manager_->Deploy(request);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(Drive(*log));
  const DeployEvent last = (*log)->last();
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_THAT(last.error(), HasSubstr("not healthy within 7s"));
  // It waited out the timeout on the clock, not less.
  absl::Time health_start;
  for (const DeployEvent& e : Events(*log)) {
    if (e.phase() == hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING) {
      health_start = absl::FromUnixSeconds(e.time().seconds()) +
                     absl::Nanoseconds(e.time().nanos());
    }
  }
  const absl::Time end = absl::FromUnixSeconds(last.time().seconds()) +
                         absl::Nanoseconds(last.time().nanos());
  EXPECT_GE(end - health_start, absl::Seconds(7));
  EXPECT_TRUE(docker_->Find("web")->running);
}

TEST_F(DeployManagerTest, HealthIsProbedOnAFastRampNotOncePerInterval) {
  // The old container is stopped while the new one is health-checked, so a
  // probe cadence of `interval` alone would add up to a whole interval of
  // downtime. Healthy on the third probe must take tens of ms, not seconds.
  FakeDockerClient::Behavior slow_start;
  slow_start.health = "starting";
  slow_start.healthy_after_inspects = 3;
  const std::string digest = "sha256:" + std::string(64, 'f');
  docker_->AddRemoteImage(kRepo, digest, slow_start);
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto request = Request("d-2", digest);
  request.mutable_health()->set_docker(true);
  request.mutable_health()->set_interval_seconds(5);
  auto log = manager_->Deploy(request);
  ASSERT_TRUE(log.ok());
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!(*log)->finished() && absl::Now() < give_up) {
    if (clock_.sleepers() > 0) clock_.Advance(absl::Milliseconds(10));
    (*log)->WaitFinished(absl::Milliseconds(2));
  }
  ASSERT_TRUE((*log)->finished());
  EXPECT_EQ((*log)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto time_of = [](const DeployEvent& e) {
    return absl::FromUnixSeconds(e.time().seconds()) +
           absl::Nanoseconds(e.time().nanos());
  };
  absl::Time health_start;
  for (const DeployEvent& e : Events(*log)) {
    if (e.phase() == hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING)
      health_start = time_of(e);
  }
  EXPECT_LT(time_of((*log)->last()) - health_start, absl::Milliseconds(500));
}

TEST_F(DeployManagerTest, FirstDeployThatCrashesEndsFailedAndLeavesNothing) {
  const DeployEvent last = RunDeploy(Request("d-1", Crash()));
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(last.exit_code(), 3);
  EXPECT_TRUE(docker_->ContainerNames().empty());
}

TEST_F(DeployManagerTest, StoppedOldContainerStaysStoppedOnRollback) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->Find("web")->id;
  ASSERT_TRUE(docker_->StopContainer(old_id, absl::Seconds(1)).ok());
  const int starts = docker_->CountCalls("Start " + old_id);
  const DeployEvent last = RunDeploy(Request("d-2", Crash()));
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_FALSE(docker_->Find("web")->running);
  EXPECT_EQ(docker_->CountCalls("Start " + old_id), starts);
}

TEST_F(DeployManagerTest, ForeignContainerIsNeverClobbered) {
  const std::string foreign =
      docker_->AddContainer("web", "nginx", {{"team", "x"}}, true);
  auto log = manager_->Deploy(Request("d-1", kD1));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("hoist.service"));
  EXPECT_TRUE(docker_->Find("web")->running);
  EXPECT_EQ(docker_->CountCalls("Stop"), 0);
  EXPECT_EQ(docker_->CountCalls("Pull"), 0);
  // The name is free again for a later (equally refused) attempt.
  EXPECT_EQ(manager_->Deploy(Request("d-2", kD1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DeployManagerTest, BusyNameAbortsOtherIdsAndAttachesSameId) {
  docker_->BlockPulls();
  auto first = manager_->Deploy(Request("d-1", kD1));
  ASSERT_TRUE(first.ok());
  auto other = manager_->Deploy(Request("d-2", kD2));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("d-1"));
  auto again = manager_->Deploy(Request("d-1", kD1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), first->get());
  // Another container name is independent.
  auto elsewhere = manager_->Deploy(Request("d-3", kD1, "api"));
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_THAT(manager_->GetStatus().in_flight(),
              ::testing::UnorderedElementsAre("d-1", "d-3"));
  docker_->Release();
  ASSERT_TRUE(Drive(*first));
  ASSERT_TRUE(Drive(*elsewhere));
  EXPECT_EQ((*again)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_TRUE(manager_->GetStatus().in_flight().empty());
  // Once finished, the name is free.
  EXPECT_EQ(RunDeploy(Request("d-4", kD2)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  // A finished deploy's id still attaches to its log, starting nothing.
  auto replay = manager_->Deploy(Request("d-1", kD1));
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->get(), first->get());
  auto watch = manager_->Watch("d-1");
  ASSERT_TRUE(watch.ok());
  EXPECT_EQ(watch->get(), first->get());
  EXPECT_EQ(manager_->Watch("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(DeployManagerTest, InvalidRequests) {
  struct Case {
    std::string name;
    std::function<void(hoist::v1::DeployRequest*)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty id", [](auto* r) { r->set_deploy_id(""); }, "deploy_id"},
      {"shell in name",
       [](auto* r) { r->mutable_container()->set_name("web;rm -rf"); },
       "container.name"},
      {"leading dot", [](auto* r) { r->mutable_container()->set_name(".web"); },
       "container.name"},
      {"short digest", [](auto* r) { r->set_digest("sha256:abc"); }, "digest"},
      {"upper digest",
       [](auto* r) { r->set_digest("sha256:" + std::string(64, 'A')); },
       "digest"},
      {"no digest no tag", [](auto* r) { r->set_digest(""); }, "digest or tag"},
      {"image dots", [](auto* r) { r->set_image("reg/../etc"); }, "image"},
      {"image with digest", [](auto* r) { r->set_image("reg/app@sha256"); },
       "image"},
      {"image shell", [](auto* r) { r->set_image("reg/app$(x)"); }, "image"},
      {"bad port",
       [](auto* r) { r->mutable_container()->add_ports("127.0.0.1:99999:80"); },
       "port"},
      {"env file dots",
       [](auto* r) { r->mutable_container()->add_env_files("/etc/../shadow"); },
       ".."},
      {"volume relative",
       [](auto* r) { r->mutable_container()->add_volumes("/a:rel"); },
       "volume target"},
      {"reserved label",
       [](auto* r) {
         (*r->mutable_container()->mutable_labels())["hoist.x"] = "1";
       },
       "reserved"},
      {"restart",
       [](auto* r) { r->mutable_container()->set_restart("sometimes"); },
       "restart"},
      {"health url",
       [](auto* r) { r->mutable_health()->set_http_get("ftp://x"); },
       "http_get"},
      {"env no key", [](auto* r) { r->mutable_container()->add_env("=x"); },
       "KEY=VALUE"},
  };
  for (const Case& c : cases) {
    auto request = Request("d-1", kD1);
    c.mutate(&request);
    auto result = manager_->Deploy(request);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(c.message))
        << c.name;
  }
  EXPECT_EQ(docker_->calls().size(), 0u);
  // A tag-only request is fine.
  auto request = Request("d-tag", "");
  request.set_tag("v1.2");
  EXPECT_TRUE(DeployManager::ValidateRequest(request).ok());
}

// Every refusal in the words operators and scripts already know; the first
// wrong field (in request order) is the one named.
TEST_F(DeployManagerTest, ValidateRequestNamesTheFieldInTheSameWords) {
  using R = hoist::v1::DeployRequest;
  const std::string must_match = " must match [a-zA-Z0-9][a-zA-Z0-9_.-]*";
  const std::vector<std::pair<std::function<void(R*)>, std::string>> cases = {
      {[](R* r) { r->set_deploy_id(""); }, "deploy_id is required"},
      {[](R* r) { r->set_deploy_id(std::string(129, 'a')); },
       "deploy_id is longer than 128"},
      {[](R* r) { r->set_service("a b"); }, "service \"a b\"" + must_match},
      {[](R* r) { r->mutable_container()->set_name("a/b"); },
       "container.name \"a/b\"" + must_match},
      {[](R* r) { r->mutable_container()->set_name("w.hoist-new-1"); },
       "container.name must not contain \".hoist-new-\""},
      {[](R* r) { r->set_image(""); }, "image is required"},
      {[](R* r) { r->set_image("reg//app"); },
       "image \"reg//app\" must be a repository name like "
       "registry:5000/team/app (letters, digits, . _ - / :), without tag "
       "or digest"},
      {[](R* r) { r->set_digest("sha256:abc"); },
       "digest \"sha256:abc\" must be sha256:<64 lowercase hex>"},
      {[](R* r) { r->set_digest(""); }, "digest or tag is required"},
      {[](R* r) { r->set_tag("v 1"); },
       "tag \"v 1\" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"},
      {[](R* r) { r->mutable_container()->add_ports("80/icmp"); },
       "port \"80/icmp\": protocol must be tcp, udp or sctp"},
      {[](R* r) { r->mutable_container()->add_env("SECRET"); },
       "env entry must be KEY=VALUE (entry SECRET)"},
      {[](R* r) { r->mutable_container()->add_env_files("a.env"); },
       "env_file \"a.env\" must be an absolute path"},
      {[](R* r) { r->mutable_container()->add_env_files("/a/../b"); },
       "env_file \"/a/../b\" must not contain \"..\""},
      {[](R* r) { r->mutable_container()->add_env_files("/a$b"); },
       "env_file \"/a$b\" contains a forbidden character"},
      {[](R* r) { r->mutable_container()->add_volumes("/a"); },
       "volume \"/a\" must be src:dst[:opts]"},
      {[](R* r) { r->mutable_container()->add_volumes("/a;b:/c"); },
       "volume source \"/a;b\" contains a forbidden character"},
      {[](R* r) { r->mutable_container()->add_volumes("v!:/c"); },
       "volume name \"v!\"" + must_match},
      {[](R* r) { r->mutable_container()->add_volumes("v:c"); },
       "volume target \"c\" must be an absolute path"},
      {[](R* r) { r->mutable_container()->add_volumes("v:/c:r o"); },
       "volume \"v:/c:r o\": bad options"},
      {[](R* r) {
         (*r->mutable_container()->mutable_labels())["hoist.x"] = "";
       },
       "label \"hoist.x\": hoist.* labels are reserved"},
      {[](R* r) { (*r->mutable_container()->mutable_labels())[""] = "x"; },
       "label keys must not be empty"},
      {[](R* r) { r->mutable_container()->set_network("a b"); },
       "network \"a b\"" + must_match},
      {[](R* r) { r->mutable_container()->set_user("a b"); },
       "user \"a b\" must be NAME[:GROUP] or UID[:GID]"},
      {[](R* r) { r->mutable_container()->set_memory_mb(-1); },
       "memory_mb must be >= 0"},
      {[](R* r) { r->mutable_container()->set_cpus(-1); }, "cpus must be >= 0"},
      {[](R* r) { r->mutable_container()->set_stop_timeout_seconds(-1); },
       "stop_timeout_seconds must be >= 0"},
      {[](R* r) { r->mutable_container()->set_log_driver("a b"); },
       "log_driver \"a b\"" + must_match},
      {[](R* r) { r->mutable_container()->set_restart("x"); },
       "restart policy \"x\": want no, always, unless-stopped or "
       "on-failure[:N]"},
      {[](R* r) { r->mutable_health()->set_timeout_seconds(-1); },
       "health interval_seconds and timeout_seconds must be >= 0"},
      {[](R* r) { r->mutable_health()->set_http_get("ftp://x"); },
       "health.http_get \"ftp://x\" must be an http:// or https:// URL"},
      {[](R* r) { r->mutable_health()->set_tcp("host"); },
       "health.tcp \"host\" must be host:port"},
      // Several wrong fields: the earliest one is named.
      {[](R* r) {
         r->set_image("/x");
         r->mutable_container()->set_name("a/b");
       },
       "container.name \"a/b\"" + must_match},
      {[](R* r) {
         r->mutable_health()->set_tcp("host");
         r->mutable_container()->set_user("a b");
         r->set_image("/x");
       },
       "image \"/x\" must be a repository name like "
       "registry:5000/team/app (letters, digits, . _ - / :), without tag "
       "or digest"},
  };
  for (const auto& [mutate, message] : cases) {
    R request = Request("d-1", kD1);
    mutate(&request);
    const absl::Status status = DeployManager::ValidateRequest(request);
    EXPECT_EQ(status, absl::InvalidArgumentError(message));
  }
}

TEST_F(DeployManagerTest, RollbackDeploysThePreviousDigest) {
  hoist::v1::RollbackRequest rollback;
  rollback.set_deploy_id("r-0");
  rollback.set_container_name("web");
  EXPECT_EQ(manager_->Rollback(rollback).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(manager_->Rollback(rollback).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(RunDeploy(Request("d-2", kD2)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  rollback.set_deploy_id("r-1");
  auto log = manager_->Rollback(rollback);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_EQ((*log)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(docker_->Find("web")->labels.at("hoist.digest"), kD1);
  EXPECT_EQ(docker_->Find("web")->labels.at("hoist.deploy_id"), "r-1");
  EXPECT_EQ(docker_
                ->LastConfig(absl::StrCat("web.hoist-new-",
                                          Sha256Hex("r-1").substr(0, 12)))
                .ports,
            std::vector<std::string>{"127.0.0.1:8080:8080/tcp"});
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(list->containers(0).previous_digests(), ElementsAre(kD2));
}

TEST_F(DeployManagerTest, KeepImagesPrunesOlderImagesAfterSuccess) {
  manager_ = NewManager(/*keep_images=*/2);
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_EQ(RunDeploy(Request("d-2", kD2)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(docker_->CountCalls("RemoveImage"), 0);
  ASSERT_EQ(RunDeploy(Request("d-3", kD3)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(docker_->CountCalls("RemoveImage " + absl::StrCat(kRepo, "@", kD1)),
            1);
  EXPECT_THAT(docker_->LocalImages(),
              ::testing::UnorderedElementsAre(absl::StrCat(kRepo, "@", kD2),
                                              absl::StrCat(kRepo, "@", kD3)));
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(list->containers(0).previous_digests(), ElementsAre(kD2));
}

TEST_F(DeployManagerTest, EnvFilesAndRegistryCredentialsAreReadOnTheHost) {
  const std::string env_file = state_dir_ + "/app.env";
  ASSERT_TRUE(WriteFileAtomically(
                  env_file, "# comment\n\nDB=postgres://x\n  SPACED = yes \n")
                  .ok());
  const std::string password_file = state_dir_ + "/pw";
  ASSERT_TRUE(WriteFileAtomically(password_file, "s3cret\n").ok());
  registries_ = {{"registry.test:5000", "deployer", password_file}};
  manager_ = NewManager();
  auto request = Request("d-1", kD1);
  request.mutable_container()->add_env("MODE=prod");
  request.mutable_container()->add_env_files(env_file);
  ASSERT_EQ(RunDeploy(request).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const ContainerConfig config = docker_->LastConfig(
      absl::StrCat("web.hoist-new-", Sha256Hex("d-1").substr(0, 12)));
  EXPECT_THAT(config.env,
              ElementsAre("MODE=prod", "DB=postgres://x", "SPACED= yes "));
  std::string decoded;
  std::string auth = docker_->last_registry_auth();
  std::replace(auth.begin(), auth.end(), '-', '+');
  std::replace(auth.begin(), auth.end(), '_', '/');
  ASSERT_TRUE(absl::Base64Unescape(auth, &decoded));
  auto json = nlohmann::json::parse(decoded);
  EXPECT_EQ(json["username"], "deployer");
  EXPECT_EQ(json["password"], "s3cret");
  EXPECT_EQ(json["serveraddress"], "registry.test:5000");
  // A missing env file fails the deploy before anything is touched.
  auto missing = Request("d-2", kD2);
  missing.mutable_container()->add_env_files(state_dir_ + "/missing.env");
  const DeployEvent last = RunDeploy(missing);
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_THAT(last.error(), HasSubstr("missing.env"));
  EXPECT_EQ(docker_->CountCalls("Stop"), 0);
}

TEST_F(DeployManagerTest, RecoverRestoresAHalfSwappedPair) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->Find("web")->id;
  // What a SIGKILL during the health check leaves: old stopped, new created
  // under its temporary name, journal written.
  manager_.reset();
  docker_->AddLocalImage(kRepo, kD2);
  ASSERT_TRUE(docker_->StopContainer(old_id, absl::Seconds(1)).ok());
  const std::string temp = "web.hoist-new-abc";
  ContainerConfig config;
  config.image = absl::StrCat(kRepo, "@", kD2);
  config.labels = {{"hoist.service", "websvc"}, {"hoist.deploy_id", "d-2"}};
  auto new_id = docker_->CreateContainer(temp, config);
  ASSERT_TRUE(new_id.ok());
  ASSERT_TRUE(docker_->StartContainer(*new_id).ok());
  // An orphan from some other, unjournaled attempt.
  auto orphan = docker_->CreateContainer("api.hoist-new-zzz", config);
  ASSERT_TRUE(orphan.ok());
  {
    auto store = StateStore::Open(state_dir_ + "/state.json");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)
                    ->Update("web",
                             [&](ContainerState* s) {
                               s->journal = DeployJournal{
                                   "d-2",    old_id,
                                   true,     temp,
                                   *new_id,  JournalPhase::kHealthChecking,
                                   "always", kD2};
                             })
                    .ok());
  }
  manager_ = NewManager();
  ASSERT_TRUE(manager_->Recover().ok());
  EXPECT_THAT(docker_->ContainerNames(), ElementsAre("web"));
  EXPECT_TRUE(docker_->Find("web")->running);
  EXPECT_EQ(docker_->Find("web")->id, old_id);
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->containers(0).last_deploy_id(), "d-2");
  EXPECT_EQ(list->containers(0).last_phase(),
            hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_THAT(list->containers(0).last_error(),
              HasSubstr("agent restarted mid-deploy"));
  EXPECT_EQ(list->containers(0).digest(), kD1);
  // The journal is gone: a second Recover does nothing.
  const size_t calls = docker_->calls().size();
  ASSERT_TRUE(manager_->Recover().ok());
  EXPECT_EQ(docker_->calls().size(), calls);
}

TEST_F(DeployManagerTest, RecoverFinishesASwapWhoseOldContainerIsGone) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->Find("web")->id;
  manager_.reset();
  docker_->AddLocalImage(kRepo, kD2);
  const std::string temp = "web.hoist-new-abc";
  ContainerConfig config;
  config.image = absl::StrCat(kRepo, "@", kD2);
  config.labels = {{"hoist.service", "websvc"}, {"hoist.digest", kD2}};
  auto new_id = docker_->CreateContainer(temp, config);
  ASSERT_TRUE(new_id.ok());
  ASSERT_TRUE(docker_->StartContainer(*new_id).ok());
  ASSERT_TRUE(docker_->RemoveContainer(old_id, true).ok());
  {
    auto store = StateStore::Open(state_dir_ + "/state.json");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)
                    ->Update("web",
                             [&](ContainerState* s) {
                               s->journal = DeployJournal{
                                   "d-2",    old_id,  true,
                                   temp,     *new_id, JournalPhase::kSwapping,
                                   "always", kD2};
                             })
                    .ok());
  }
  manager_ = NewManager();
  ASSERT_TRUE(manager_->Recover().ok());
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->id, *new_id);
  EXPECT_TRUE(web->running);
  EXPECT_EQ(web->restart_policy, "always");
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->containers(0).last_phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(list->containers(0).last_error(), HasSubstr("finished the swap"));
  EXPECT_THAT(list->containers(0).previous_digests(), ElementsAre(kD1));
}

TEST_F(DeployManagerTest, AFinishedDeployLeavesNoJournalForRecover) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_EQ(RunDeploy(Request("d-2", Crash())).phase(),
            hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  ASSERT_EQ(RunDeploy(Request("d-3", kBad)).phase(),  // not in the registry
            hoist::v1::DEPLOY_PHASE_FAILED);
  auto store = StateStore::Open(state_dir_ + "/state.json");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->Get("web").journal.has_value());
  // So a restart touches nothing and keeps the last outcome.
  manager_ = NewManager();
  const size_t calls = docker_->calls().size();
  ASSERT_TRUE(manager_->Recover().ok());
  EXPECT_EQ(docker_->calls().size(), calls);
  EXPECT_EQ((*store)->Get("web").last_deploy_id, "d-3");
}

TEST_F(DeployManagerTest, RenameFailureIsFinishedByRecover) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  docker_->FailNext("RenameContainer", absl::InternalError("injected rename"));
  const DeployEvent last = RunDeploy(Request("d-2", kD2));
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_THAT(last.error(), HasSubstr("injected rename"));
  EXPECT_FALSE(docker_->Find("web").ok());  // old removed, new under temp name
  manager_ = NewManager();
  ASSERT_TRUE(manager_->Recover().ok());
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_TRUE(web->running);
  EXPECT_EQ(web->labels.at("hoist.digest"), kD2);
  EXPECT_EQ(web->restart_policy, "unless-stopped");
  EXPECT_THAT(docker_->ContainerNames(), ElementsAre("web"));
}

TEST_F(DeployManagerTest, HttpAndTcpChecksUseTheProberOfTheOptions) {
  const std::string url = "http://127.0.0.1:8080/healthz";
  prober_.FailFirst(url, 2, absl::UnavailableError("GET url: HTTP 503"));
  auto request = Request("d-1", kD1);
  request.mutable_health()->set_http_get(url);
  request.mutable_health()->set_tcp("127.0.0.1:8080");
  EXPECT_EQ(RunDeploy(request).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(prober_.CountCalls("http " + url), 3);
  EXPECT_EQ(prober_.CountCalls("tcp 127.0.0.1:8080"), 1);
  // A check that never passes rolls back with the last problem it saw.
  prober_.FailAlways("127.0.0.1:8080",
                     absl::UnavailableError("tcp x: Connection refused"));
  request = Request("d-2", kD2);
  request.mutable_health()->set_tcp("127.0.0.1:8080");
  request.mutable_health()->set_timeout_seconds(3);
  const DeployEvent last = RunDeploy(request);
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_EQ(last.error(),
            "unhealthy: not healthy within 3s: tcp x: Connection refused");
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok()) << web.status();
  EXPECT_EQ(web->labels.at("hoist.digest"), kD1);
}

// Deploys `first` then `second`, then `third` up to a rename that fails:
// the old container is gone, the new one healthy under its temporary name,
// the journal at "swapping". A new manager's Recover then finishes the swap.
class RecoverPromoteTest : public DeployManagerTest {
 protected:
  void FinishSwapByRecover(int keep_images, const std::string& first,
                           const std::string& second,
                           const std::string& third) {
    manager_ = NewManager(keep_images);
    ASSERT_EQ(RunDeploy(Request("d-1", first)).phase(),
              hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    ASSERT_EQ(RunDeploy(Request("d-2", second)).phase(),
              hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    docker_->FailNext("RenameContainer", absl::InternalError("injected"));
    ASSERT_EQ(RunDeploy(Request("d-3", third)).phase(),
              hoist::v1::DEPLOY_PHASE_FAILED);
    manager_ = NewManager(keep_images);
    ASSERT_TRUE(manager_->Recover().ok());
    ASSERT_EQ(docker_->Find("web")->labels.at("hoist.digest"), third);
  }

  std::vector<std::string> PreviousDigests() {
    auto list = manager_->ListContainers();
    EXPECT_TRUE(list.ok()) << list.status();
    if (!list.ok() || list->containers_size() != 1) return {};
    return {list->containers(0).previous_digests().begin(),
            list->containers(0).previous_digests().end()};
  }
};

TEST_F(RecoverPromoteTest, FinishedSwapTakesItsDigestOutOfThePreviousOnes) {
  // Back to kD1, which was a previous digest: it must not stay one.
  FinishSwapByRecover(/*keep_images=*/3, kD1, kD2, kD1);
  EXPECT_THAT(PreviousDigests(), ElementsAre(kD2));
}

TEST_F(RecoverPromoteTest, FinishedSwapKeepsKeepImagesAndPrunesTheRest) {
  FinishSwapByRecover(/*keep_images=*/2, kD1, kD2, kD3);
  EXPECT_THAT(PreviousDigests(), ElementsAre(kD2));
  EXPECT_EQ(docker_->CountCalls("RemoveImage " + absl::StrCat(kRepo, "@", kD1)),
            1);
  EXPECT_THAT(docker_->LocalImages(),
              ::testing::UnorderedElementsAre(absl::StrCat(kRepo, "@", kD2),
                                              absl::StrCat(kRepo, "@", kD3)));
}

TEST_F(DeployManagerTest, RecoverReadsTheJournalAnEarlierAgentWrote) {
  // state.json as agents before the journal phase became an enum wrote it:
  // "swapping" must still finish the swap, "pulling" still be reported as
  // an interrupted pull.
  docker_->AddLocalImage(kRepo, kD2);
  ContainerConfig config;
  config.image = absl::StrCat(kRepo, "@", kD2);
  config.labels = {{"hoist.service", "websvc"}, {"hoist.digest", kD2}};
  auto new_id = docker_->CreateContainer("web.hoist-new-abc", config);
  ASSERT_TRUE(new_id.ok());
  ASSERT_TRUE(docker_->StartContainer(*new_id).ok());
  // Written out key by key, as those agents did, not through StateStore.
  auto entry = [](const std::string& current, const std::string& last_id,
                  const std::string& last_phase, nlohmann::json journal) {
    return nlohmann::json{{"current_digest", current},
                          {"previous_digests", nlohmann::json::array()},
                          {"last_deploy_id", last_id},
                          {"last_phase", last_phase},
                          {"last_error", ""},
                          {"journal", std::move(journal)}};
  };
  nlohmann::json containers;
  containers["api"] = entry("", "", "DEPLOY_PHASE_UNSPECIFIED",
                            {{"deploy_id", "a-1"},
                             {"old_id", ""},
                             {"old_was_running", false},
                             {"new_name", "api.hoist-new-def"},
                             {"new_id", ""},
                             {"phase", "pulling"},
                             {"restart_policy", ""},
                             {"digest", ""}});
  containers["web"] = entry(kD1, "d-1", "DEPLOY_PHASE_SUCCEEDED",
                            {{"deploy_id", "d-2"},
                             {"old_id", "gone"},
                             {"old_was_running", true},
                             {"new_name", "web.hoist-new-abc"},
                             {"new_id", *new_id},
                             {"phase", "swapping"},
                             {"restart_policy", "always"},
                             {"digest", kD2}});
  const std::string state =
      nlohmann::json{{"version", 1}, {"containers", containers}}.dump(2);
  manager_.reset();
  ASSERT_TRUE(WriteFileAtomically(state_dir_ + "/state.json", state).ok());
  manager_ = NewManager();
  ASSERT_TRUE(manager_->Recover().ok());
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->id, *new_id);
  EXPECT_EQ(web->restart_policy, "always");
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->containers_size(), 1);
  EXPECT_EQ(list->containers(0).last_phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(list->containers(0).previous_digests(), ElementsAre(kD1));
  auto store = StateStore::Open(state_dir_ + "/state.json");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Get("api").last_error,
            "agent restarted mid-deploy a-1: interrupted while pulling; "
            "nothing running was touched");
  EXPECT_FALSE((*store)->Get("web").journal.has_value());
}

TEST_F(DeployManagerTest, StatusReportsDockerAndVersion) {
  hoist::v1::AgentStatus status = manager_->GetStatus();
  EXPECT_EQ(status.host(), "host-a");
  EXPECT_TRUE(status.docker_reachable());
  EXPECT_EQ(status.docker_version(), "20.10.24-fake");
  EXPECT_FALSE(status.version().empty());
  EXPECT_TRUE(manager_->DockerReachable());
  docker_->FailNext("Version", absl::UnavailableError("down"));
  docker_->FailNext("Ping", absl::UnavailableError("down"));
  EXPECT_FALSE(manager_->GetStatus().docker_reachable());
  EXPECT_FALSE(manager_->DockerReachable());
}

TEST_F(DeployManagerTest, StateSurvivesARestart) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_EQ(RunDeploy(Request("d-2", kD2)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  manager_ = NewManager();
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->containers(0).last_deploy_id(), "d-2");
  EXPECT_THAT(list->containers(0).previous_digests(), ElementsAre(kD1));
  hoist::v1::RollbackRequest rollback;
  rollback.set_deploy_id("r-1");
  rollback.set_container_name("web");
  auto log = manager_->Rollback(rollback);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_EQ((*log)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
}

// ---- a finished deploy id is answered, never run again ----

TEST_F(DeployManagerTest, FinishedDeployIsAnsweredFromDiskAfterARestart) {
  ASSERT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_EQ(RunDeploy(Request("d-2", kBad)).phase(),
            hoist::v1::DEPLOY_PHASE_FAILED);
  std::vector<DeployEvent> before_restart = Events(*manager_->Watch("d-1"));
  const std::vector<std::string> calls = docker_->calls();

  manager_ = NewManager();  // the agent restarted
  std::vector<DeployEvent> after_restart;
  for (const std::string id : {"d-1", "d-2"}) {
    auto log = manager_->Deploy(Request(id, id == "d-1" ? kD1 : kBad));
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_TRUE((*log)->finished()) << id << " runs again";
    ASSERT_TRUE(Drive(*log));
    if (id == "d-1") after_restart = Events(*log);
  }
  EXPECT_EQ(docker_->calls(), calls) << "a finished deploy ran again";
  ASSERT_EQ(after_restart.size(), before_restart.size());
  for (size_t i = 0; i < after_restart.size(); ++i) {
    EXPECT_EQ(after_restart[i].SerializeAsString(),
              before_restart[i].SerializeAsString())
        << "event " << i;
  }
  EXPECT_EQ(after_restart.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(after_restart.back().deploy_id(), "d-1");
  EXPECT_EQ((*manager_->Watch("d-2"))->last().phase(),
            hoist::v1::DEPLOY_PHASE_FAILED);
  // A new id still deploys.
  EXPECT_EQ(RunDeploy(Request("d-3", kD2)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
}

TEST_F(DeployManagerTest, OnlyTheLastMaxLogsDeploysAreKeptOnDisk) {
  auto with_max_logs = [this](size_t max_logs) {
    DeployManager::Options options;
    options.docker = docker_;
    options.clock = &clock_;
    options.prober = &prober_;
    options.state_dir = state_dir_;
    options.max_logs = max_logs;
    auto manager = DeployManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return std::move(*manager);
  };
  manager_ = with_max_logs(2);
  for (const char* id : {"d-1", "d-2", "d-3"}) {
    ASSERT_EQ(RunDeploy(Request(id, kD1)).phase(),
              hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  }
  size_t files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(state_dir_ + "/deploys")) {
    files += entry.path().extension() == ".json" ? 1 : 0;
  }
  EXPECT_EQ(files, 2u);
  manager_ = with_max_logs(2);
  EXPECT_EQ(manager_->Watch("d-1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager_->Watch("d-2").ok());
  EXPECT_TRUE(manager_->Watch("d-3").ok());
}

// ---- DeployEvent.digest ----

TEST_F(DeployManagerTest, EventsCarryTheVerifiedDigestFromPulledOn) {
  auto log = manager_->Deploy(Request("d-1", kD1));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  bool pulled = false;
  for (const DeployEvent& event : Events(*log)) {
    pulled = pulled || event.phase() == hoist::v1::DEPLOY_PHASE_PULLED;
    EXPECT_EQ(event.digest(), pulled ? kD1 : "")
        << DeployPhase_Name(event.phase()) << ": " << event.message();
  }
  EXPECT_TRUE(pulled);
  // A digest that does not verify is never reported as the deploy's.
  EXPECT_EQ(RunDeploy(Request("d-2", kBad)).digest(), "");
}

// ---- start_existing ----

class StartExistingTest : public DeployManagerTest {
 protected:
  // Deploys kD1 to "web" and stops it; returns its container id.
  std::string DeployAndStop() {
    EXPECT_EQ(RunDeploy(Request("d-1", kD1)).phase(),
              hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    auto web = docker_->Find("web");
    EXPECT_TRUE(web.ok()) << web.status();
    if (!web.ok()) return "";
    EXPECT_TRUE(docker_->StopContainer(web->id, absl::Seconds(1)).ok());
    return web->id;
  }
  hoist::v1::DeployRequest StartExisting(const std::string& id,
                                         const std::string& digest) {
    hoist::v1::DeployRequest request = Request(id, digest);
    request.set_start_existing(true);
    return request;
  }
};

TEST_F(StartExistingTest, StoppedContainerOfTheDigestIsStartedNotRecreated) {
  const std::string id = DeployAndStop();
  const int pulls = docker_->CountCalls("Pull ");
  const int creates = docker_->CountCalls("Create ");
  auto log = manager_->Deploy(StartExisting("d-2", kD1));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_THAT(Phases(*log), ElementsAre(hoist::v1::DEPLOY_PHASE_STARTING,
                                        hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
                                        hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  for (const DeployEvent& event : Events(*log)) {
    EXPECT_EQ(event.digest(), kD1);
    EXPECT_EQ(event.container_id(), id);
  }
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->id, id);
  EXPECT_TRUE(web->running);
  EXPECT_EQ(docker_->CountCalls("Pull "), pulls);
  EXPECT_EQ(docker_->CountCalls("Create "), creates);
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->containers(0).last_deploy_id(), "d-2");
  EXPECT_EQ(list->containers(0).last_phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
}

TEST_F(StartExistingTest, UnhealthyStartEndsFailedAndLeavesItStopped) {
  const std::string id = DeployAndStop();
  const std::string url = "http://127.0.0.1:8080/healthz";
  prober_.FailAlways(url, absl::UnavailableError("GET url: HTTP 503"));
  hoist::v1::DeployRequest request = StartExisting("d-2", kD1);
  request.mutable_health()->set_http_get(url);
  request.mutable_health()->set_timeout_seconds(2);
  auto log = manager_->Deploy(request);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_THAT(Phases(*log), ElementsAre(hoist::v1::DEPLOY_PHASE_STARTING,
                                        hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
                                        hoist::v1::DEPLOY_PHASE_FAILED));
  EXPECT_THAT((*log)->last().error(), HasSubstr("HTTP 503"));
  auto web = docker_->Find("web");
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->id, id) << "recreated";
  EXPECT_FALSE(web->running) << "not left stopped";
  EXPECT_THAT(docker_->ContainerNames(), ElementsAre("web"));
}

TEST_F(StartExistingTest, AStartThatFailsEndsFailedWithTheSameContainer) {
  const std::string id = DeployAndStop();
  docker_->FailNext("StartContainer", absl::InternalError("no such file"));
  const DeployEvent last = RunDeploy(StartExisting("d-2", kD1));
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_THAT(last.error(), HasSubstr("start failed"));
  EXPECT_EQ(docker_->Find("web")->id, id);
  EXPECT_FALSE(docker_->Find("web")->running);
}

TEST_F(StartExistingTest, AnotherDigestOrARunningContainerDeploysAsUsual) {
  const std::string id = DeployAndStop();
  auto log = manager_->Deploy(StartExisting("d-2", kD2));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_EQ(Phases(*log).front(), hoist::v1::DEPLOY_PHASE_PULLING);
  EXPECT_EQ((*log)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string second = docker_->Find("web")->id;
  EXPECT_NE(second, id);
  // Running already: a normal deploy replaces it.
  log = manager_->Deploy(StartExisting("d-3", kD2));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_EQ(Phases(*log).front(), hoist::v1::DEPLOY_PHASE_PULLING);
  EXPECT_NE(docker_->Find("web")->id, second);
}

TEST_F(StartExistingTest, AStoppedContainerHoistDidNotCreateIsNotStarted) {
  docker_->AddContainer("web", "nginx", {}, /*running=*/false);
  auto log = manager_->Deploy(StartExisting("d-1", kD1));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(docker_->Find("web")->running);
}

}  // namespace
}  // namespace hoist::nodeagent
