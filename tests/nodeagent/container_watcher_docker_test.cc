// ContainerWatcher and start_existing on the harness's real dockerd: what an
// operator does with the docker CLI (stop, rm -f) reaches subscribers
// within 2 s through the /events stream, start_existing starts the stopped
// container again (same id), and a dockerd that stops and starts again is
// reported unreachable, then re-snapshotted.
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nodeagent/container_watcher.h"
#include "nodeagent/deploy_manager.h"
#include "nodeagent/docker_client_curl.h"
#include "tests/harness/harness.h"
#include "tests/nodeagent/container_collector.h"

namespace hoist::nodeagent {
namespace {

using ::hoist::testing::Harness;
using hoist::v1::ContainersEvent;
using hoist::v1::ManagedContainer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// How soon a change made by hand must reach subscribers.
constexpr absl::Duration kEventBound = absl::Seconds(2);

absl::StatusOr<std::unique_ptr<DockerClient>> Docker(
    const std::string& endpoint) {
  CurlDockerClientOptions options;
  options.endpoint = endpoint;
  return NewCurlDockerClient(options);
}

// The docker CLI against `endpoint`; its output, or a failure.
void DockerCli(const std::string& endpoint, const std::string& args) {
  const ::hoist::testing::CommandResult r = ::hoist::testing::RunCommand(
      absl::StrCat("DOCKER_CONFIG=", Harness().root,
                   "/docker-config docker -H ", endpoint, " ", args, " 2>&1"));
  ASSERT_EQ(r.exit_code, 0) << "docker " << args << ": " << r.output;
}

class ContainerWatcherDockerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::hoist::testing::RemoveAllContainers(Harness().docker_endpoint);
    auto docker = Docker(Harness().docker_endpoint);
    ASSERT_TRUE(docker.ok()) << docker.status();
    docker_ = std::shared_ptr<DockerClient>(*std::move(docker));
    port_ = ::hoist::testing::FreeTcpPort();
    name_ = absl::StrCat(
        "cw-",
        absl::AsciiStrToLower(
            ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    DeployManager::Options options;
    options.docker = docker_;
    options.host = "it-host";
    options.state_dir = ::hoist::testing::MakeTempDir("watch-state");
    options.settle = absl::Milliseconds(300);
    options.deploy_ended = [this](const std::string& name) {
      watcher_->DeployEnded(name);
    };
    auto manager = DeployManager::Create(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
    ContainerWatcher::Options watcher_options;
    watcher_options.docker = docker_.get();
    DeployManager* manager_ptr = manager_.get();
    watcher_options.records = [manager_ptr](const std::string& name) {
      return manager_ptr->StoredState(name);
    };
    auto watcher = ContainerWatcher::Create(watcher_options);
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    watcher_ = *std::move(watcher);
    watcher_->Start();
  }
  void TearDown() override {
    manager_.reset();
    if (watcher_ != nullptr) watcher_->Stop();
    ::hoist::testing::RemoveAllContainers(Harness().docker_endpoint);
  }

  hoist::v1::DeployRequest Request(const std::string& id,
                                   bool start_existing = false) {
    hoist::v1::DeployRequest request;
    request.set_deploy_id(id);
    request.set_service("svc");
    request.set_image(Harness().image_repo);
    request.set_digest(Harness().Digest("v1"));
    request.set_start_existing(start_existing);
    request.mutable_container()->set_name(name_);
    request.mutable_container()->add_ports(
        absl::StrCat("127.0.0.1:", port_, ":8080/tcp"));
    request.mutable_container()->set_restart("unless-stopped");
    request.mutable_health()->set_http_get(
        absl::StrCat("http://127.0.0.1:", port_, "/"));
    request.mutable_health()->set_interval_seconds(1);
    request.mutable_health()->set_timeout_seconds(20);
    return request;
  }

  std::shared_ptr<DeployLog> Deploy(const hoist::v1::DeployRequest& request) {
    auto log = manager_->Deploy(request);
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return nullptr;
    EXPECT_TRUE((*log)->WaitFinished(absl::Seconds(120)));
    return *log;
  }

  // Reads changes of name_ until `accept` holds for one, each within
  // kEventBound of the previous; that change.
  template <typename Accept>
  std::optional<ContainersEvent> Await(Collector* collector, Accept accept) {
    for (;;) {
      std::optional<ContainersEvent> event = collector->Next();
      if (!event.has_value() || accept(*event)) return event;
    }
  }

  std::shared_ptr<DockerClient> docker_;
  int port_ = 0;
  std::string name_;
  std::unique_ptr<DeployManager> manager_;
  std::unique_ptr<ContainerWatcher> watcher_;
};

TEST_F(ContainerWatcherDockerTest, DockerStopAndRmArriveWithinTwoSeconds) {
  Collector collector(watcher_.get(), {}, kEventBound);
  std::shared_ptr<DeployLog> log = Deploy(Request("cw-1"));
  ASSERT_NE(log, nullptr);
  ASSERT_EQ(log->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << log->last().error();
  std::optional<ContainersEvent> deployed =
      Await(&collector, [this](const ContainersEvent& e) {
        return e.changed().name() == name_ &&
               e.changed().last_deploy_id() == "cw-1";
      });
  ASSERT_TRUE(deployed.has_value()) << "no event with the deploy's id";
  EXPECT_EQ(deployed->changed().state(), "running");
  EXPECT_EQ(deployed->changed().digest(), Harness().Digest("v1"));

  DockerCli(Harness().docker_endpoint, "stop " + name_);
  std::optional<ContainersEvent> stopped =
      Await(&collector, [this](const ContainersEvent& e) {
        return e.changed().name() == name_ && e.changed().state() == "exited";
      });
  ASSERT_TRUE(stopped.has_value()) << "docker stop: no event within 2 s";
  EXPECT_EQ(stopped->changed().digest(), Harness().Digest("v1"));
  EXPECT_FALSE(stopped->changed().foreign());

  DockerCli(Harness().docker_endpoint, "start " + name_);
  ASSERT_TRUE(Await(&collector,
                    [this](const ContainersEvent& e) {
                      return e.changed().name() == name_ &&
                             e.changed().state() == "running";
                    })
                  .has_value())
      << "docker start: no event within 2 s";

  DockerCli(Harness().docker_endpoint, "rm -f " + name_);
  std::optional<ContainersEvent> removed =
      Await(&collector,
            [this](const ContainersEvent& e) { return e.removed() == name_; });
  ASSERT_TRUE(removed.has_value()) << "docker rm -f: no event within 2 s";

  // The stream's end is prompt too (Stop wakes libcurl, no poll timeout).
  const absl::Time start = absl::Now();
  watcher_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

TEST_F(ContainerWatcherDockerTest, StartExistingStartsTheSameContainerAgain) {
  std::shared_ptr<DeployLog> first = Deploy(Request("cw-1"));
  ASSERT_NE(first, nullptr);
  ASSERT_EQ(first->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << first->last().error();
  auto before = docker_->InspectContainer(name_);
  ASSERT_TRUE(before.ok()) << before.status();
  DockerCli(Harness().docker_endpoint, "stop " + name_);
  ASSERT_FALSE(docker_->InspectContainer(name_)->running);

  Collector collector(watcher_.get(), {name_});
  std::shared_ptr<DeployLog> again = Deploy(Request("cw-2", true));
  ASSERT_NE(again, nullptr);
  std::vector<hoist::v1::DeployEvent> events;
  again->Read(0, &events);
  std::vector<hoist::v1::DeployPhase> phases;
  for (const auto& event : events) phases.push_back(event.phase());
  EXPECT_THAT(phases, ElementsAre(hoist::v1::DEPLOY_PHASE_STARTING,
                                  hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
                                  hoist::v1::DEPLOY_PHASE_SUCCEEDED))
      << again->last().error();
  auto after = docker_->InspectContainer(name_);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->id, before->id) << "recreated instead of started";
  EXPECT_TRUE(after->running);
  auto body = ::hoist::testing::HttpGet(
      absl::StrCat("http://127.0.0.1:", port_, "/"), absl::Seconds(5));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("hoist-test v1"));
  // The watcher saw it run again under the new deploy id.
  std::optional<ContainersEvent> seen =
      Await(&collector, [](const ContainersEvent& e) {
        return e.changed().last_deploy_id() == "cw-2";
      });
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->changed().state(), "running");
}

// A host of our own, whose dockerd this test stops and starts.
TEST(ContainerWatcherDockerdTest, DockerdStopIsReportedThenResnapshotted) {
  auto host = ::hoist::testing::StartExtraHost("cw1", 41);
  ASSERT_TRUE(host.ok()) << host.status();
  auto docker = Docker(host->docker_endpoint);
  ASSERT_TRUE(docker.ok()) << docker.status();
  ContainerWatcher::Options options;
  options.docker = docker->get();
  auto watcher = ContainerWatcher::Create(options);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  (*watcher)->Start();
  {
    Collector collector(watcher->get(), {}, absl::Seconds(30));
    std::optional<ContainersEvent> first = collector.Next();
    ASSERT_TRUE(first.has_value());
    EXPECT_TRUE(first->snapshot());
    EXPECT_TRUE(first->docker_reachable());

    ASSERT_TRUE(::hoist::testing::StopExtraDockerd(*host).ok());
    std::optional<ContainersEvent> down = collector.Next();
    ASSERT_TRUE(down.has_value()) << "dockerd stopped: nothing said";
    EXPECT_FALSE(down->docker_reachable());
    EXPECT_FALSE(down->snapshot());

    ASSERT_TRUE(::hoist::testing::StartExtraDockerd(*host).ok());
    std::optional<ContainersEvent> back = collector.Next();
    ASSERT_TRUE(back.has_value()) << "dockerd back: no snapshot";
    EXPECT_TRUE(back->snapshot());
    EXPECT_TRUE(back->docker_reachable());
  }
  (*watcher)->Stop();
  EXPECT_TRUE(::hoist::testing::RemoveExtraHost(*host).ok());
}

}  // namespace
}  // namespace hoist::nodeagent
