// ContainerWatcher against FakeDockerClient's event streams: what is
// reported (Hoist's containers, requested foreign names, never temporary
// names), which events reach subscribers (only real changes), Docker going
// away and coming back, slow subscribers, and each deploy's end.
#include "nodeagent/container_watcher.h"

#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nodeagent/deploy_manager.h"
#include "tests/common/temp_dir.h"
#include "tests/nodeagent/container_collector.h"
#include "tests/nodeagent/fake_docker_client.h"
#include "tests/nodeagent/fake_health_prober.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::ContainersEvent;
using hoist::v1::ManagedContainer;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kRepo[] = "registry.test:5000/app";
const std::string kD1 = "sha256:" + std::string(64, '1');
const std::string kD2 = "sha256:" + std::string(64, '2');

std::map<std::string, std::string> HoistLabels(const std::string& service,
                                               const std::string& digest) {
  return {{kLabelService, service},
          {kLabelDigest, digest},
          {kLabelImage, kRepo},
          {kLabelDeployId, "d-0"}};
}

std::vector<std::string> Names(const ContainersEvent& event) {
  std::vector<std::string> names;
  for (const ManagedContainer& c : event.containers())
    names.push_back(c.name());
  return names;
}

class ContainerWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    docker_ = std::make_shared<FakeDockerClient>();
    docker_->AddLocalImage(kRepo, kD1);
  }
  void TearDown() override {
    if (watcher_ != nullptr) watcher_->Stop();
  }

  void StartWatcher(size_t max_queued = 1024) {
    ContainerWatcher::Options options;
    options.docker = docker_.get();
    options.records = [this](const std::string& name) {
      absl::MutexLock lock(&records_mu_);
      auto it = records_.find(name);
      return it == records_.end() ? ContainerState() : it->second;
    };
    options.initial_backoff = absl::Milliseconds(5);
    options.max_backoff = absl::Milliseconds(40);
    options.max_queued = max_queued;
    auto watcher = ContainerWatcher::Create(options);
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    watcher_ = *std::move(watcher);
    watcher_->Start();
  }

  void SetRecord(const std::string& name, const std::string& deploy_id) {
    absl::MutexLock lock(&records_mu_);
    ContainerState& state = records_[name];
    state.last_deploy_id = deploy_id;
    state.last_phase = hoist::v1::DEPLOY_PHASE_SUCCEEDED;
    state.previous_digests = {kD2};
  }

  std::shared_ptr<FakeDockerClient> docker_;
  absl::Mutex records_mu_;
  std::map<std::string, ContainerState> records_ ABSL_GUARDED_BY(records_mu_);
  std::unique_ptr<ContainerWatcher> watcher_;
};

TEST_F(ContainerWatcherTest, SnapshotHasHoistsContainersAndRequestedNamesOnly) {
  docker_->AddContainer("web", kRepo + std::string("@") + kD1,
                        HoistLabels("websvc", kD1), /*running=*/true);
  docker_->AddContainer("stopped", "x", HoistLabels("other", kD2), false);
  docker_->AddContainer("db", "postgres:15", {}, true);
  docker_->AddContainer("cache", "redis", {}, true);
  docker_->AddContainer("web.hoist-new-0123456789ab", "x",
                        HoistLabels("websvc", kD2), false);
  SetRecord("web", "d-7");
  StartWatcher();
  Collector named(watcher_.get(), {"db", "web"});
  Collector plain(watcher_.get(), {});

  std::optional<ContainersEvent> first = named.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->snapshot());
  EXPECT_TRUE(first->docker_reachable());
  EXPECT_TRUE(first->has_time());
  EXPECT_THAT(Names(*first), ElementsAre("db", "stopped", "web"));
  const ManagedContainer& db = first->containers(0);
  EXPECT_TRUE(db.foreign());
  EXPECT_EQ(db.digest(), "");
  EXPECT_EQ(db.image(), "postgres:15");
  const ManagedContainer& stopped = first->containers(1);
  EXPECT_FALSE(stopped.foreign());
  EXPECT_EQ(stopped.digest(), kD2) << "a stopped container keeps its digest";
  EXPECT_EQ(stopped.state(), "exited");
  const ManagedContainer& web = first->containers(2);
  EXPECT_EQ(web.service(), "websvc");
  EXPECT_EQ(web.image(), kRepo);
  EXPECT_EQ(web.digest(), kD1);
  EXPECT_EQ(web.state(), "running");
  EXPECT_EQ(web.last_deploy_id(), "d-7");
  EXPECT_THAT(web.previous_digests(), ElementsAre(kD2));

  std::optional<ContainersEvent> other = plain.Next();
  ASSERT_TRUE(other.has_value());
  EXPECT_THAT(Names(*other), ElementsAre("stopped", "web"));
}

TEST_F(ContainerWatcherTest, TemporaryNamesAreNeverReported) {
  StartWatcher();
  Collector collector(watcher_.get(), {"api"});
  ASSERT_TRUE(collector.Next().has_value());  // the (empty) snapshot
  ContainerConfig config;
  config.image = kRepo + std::string("@") + kD1;
  config.labels = HoistLabels("api", kD1);
  auto id = docker_->CreateContainer("api.hoist-new-0123456789ab", config);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(docker_->StartContainer(*id).ok());
  // Events are handled in order: once this one arrived, the temporary
  // container's create and start were handled, and said nothing.
  docker_->AddContainer("marker", "x", HoistLabels("marker", kD1), false);
  std::optional<ContainersEvent> marker = collector.Next();
  ASSERT_TRUE(marker.has_value());
  EXPECT_EQ(marker->changed().name(), "marker");
  ASSERT_TRUE(docker_->RenameContainer(*id, "api").ok());
  // The rename's old name is the temporary one: only the new name is told.
  std::optional<ContainersEvent> change = collector.Next();
  ASSERT_TRUE(change.has_value());
  EXPECT_EQ(change->changed().name(), "api");
  EXPECT_EQ(change->changed().state(), "running");
  EXPECT_EQ(change->removed(), "");
  EXPECT_EQ(collector.pending(), 0u);
}

// Health checks exec into containers every few seconds; those events, and
// events that change nothing reported, reach no subscriber.
TEST_F(ContainerWatcherTest, ExecAndUnchangedEventsMakeNoNoise) {
  const std::string id = docker_->AddContainer(
      "web", "x", HoistLabels("websvc", kD1), /*running=*/true);
  StartWatcher();
  Collector collector(watcher_.get(), {});
  ASSERT_TRUE(collector.Next().has_value());
  for (const char* action :
       {"exec_create: /bin/sh -c curl -f localhost", "exec_start: /bin/sh -c",
        "exec_die", "health_status: healthy", "start", "unpause", "kill",
        "attach", "update"}) {
    DockerEvent event;
    event.type = "container";
    event.action = action;
    event.id = id;
    event.attributes = {{"name", "web"}};
    docker_->EmitEvent(event);
  }
  // Then a real change: it is the next (and only) event.
  ASSERT_TRUE(docker_->StopContainer(id, absl::Seconds(1)).ok());
  std::optional<ContainersEvent> change = collector.Next();
  ASSERT_TRUE(change.has_value());
  EXPECT_FALSE(change->snapshot());
  EXPECT_EQ(change->changed().name(), "web");
  EXPECT_EQ(change->changed().state(), "exited");
  EXPECT_EQ(collector.pending(), 0u) << "kill, die and stop made one change";
}

TEST_F(ContainerWatcherTest, StopPauseAndRemoveArriveAsChanges) {
  const std::string id = docker_->AddContainer(
      "web", "x", HoistLabels("websvc", kD1), /*running=*/true);
  StartWatcher();
  Collector collector(watcher_.get(), {});
  ASSERT_TRUE(collector.Next().has_value());

  docker_->SetContainerState("web", "pause");
  std::optional<ContainersEvent> paused = collector.Next();
  ASSERT_TRUE(paused.has_value());
  EXPECT_EQ(paused->changed().state(), "paused");
  docker_->SetContainerState("web", "unpause");
  ASSERT_EQ(collector.Next()->changed().state(), "running");

  ASSERT_TRUE(docker_->StopContainer(id, absl::Seconds(1)).ok());
  std::optional<ContainersEvent> stopped = collector.Next();
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->changed().state(), "exited");
  EXPECT_EQ(stopped->changed().digest(), kD1);
  EXPECT_TRUE(stopped->docker_reachable());

  ASSERT_TRUE(docker_->RemoveContainer(id, /*force=*/true).ok());
  std::optional<ContainersEvent> removed = collector.Next();
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(removed->removed(), "web");
  EXPECT_FALSE(removed->has_changed());
}

TEST_F(ContainerWatcherTest, ForeignNamesGoOnlyToSubscribersThatNamedThem) {
  const std::string db = docker_->AddContainer("db", "postgres", {}, true);
  const std::string web = docker_->AddContainer(
      "web", "x", HoistLabels("websvc", kD1), /*running=*/true);
  StartWatcher();
  Collector named(watcher_.get(), {"db"});
  Collector plain(watcher_.get(), {});
  ASSERT_TRUE(named.Next().has_value());
  ASSERT_TRUE(plain.Next().has_value());

  ASSERT_TRUE(docker_->StopContainer(db, absl::Seconds(1)).ok());
  ASSERT_TRUE(docker_->StopContainer(web, absl::Seconds(1)).ok());
  std::optional<ContainersEvent> first = named.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->changed().name(), "db");
  EXPECT_TRUE(first->changed().foreign());
  EXPECT_EQ(named.Next()->changed().name(), "web");
  // The other subscriber only hears of Hoist's container.
  EXPECT_EQ(plain.Next()->changed().name(), "web");

  // A foreign container replaced by Hoist's own under that name, and back.
  ASSERT_TRUE(docker_->RemoveContainer(db, true).ok());
  EXPECT_EQ(named.Next()->removed(), "db");
  docker_->AddContainer("db", "x", HoistLabels("dbsvc", kD1), false);
  std::optional<ContainersEvent> adopted = plain.Next();
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->changed().name(), "db");
  EXPECT_FALSE(adopted->changed().foreign());
}

TEST_F(ContainerWatcherTest, DockerDownIsReportedOnceThenANewSnapshotFollows) {
  docker_->AddContainer("web", "x", HoistLabels("websvc", kD1), true);
  StartWatcher();
  Collector collector(watcher_.get(), {});
  ASSERT_TRUE(collector.Next().has_value());

  docker_->SetUnreachable(true);
  std::optional<ContainersEvent> down = collector.Next();
  ASSERT_TRUE(down.has_value());
  EXPECT_FALSE(down->docker_reachable());
  EXPECT_FALSE(down->snapshot());
  EXPECT_FALSE(watcher_->docker_reachable());
  // A subscriber arriving now learns it at once, with the last known set.
  Collector late(watcher_.get(), {});
  std::optional<ContainersEvent> late_first = late.Next();
  ASSERT_TRUE(late_first.has_value());
  EXPECT_TRUE(late_first->snapshot());
  EXPECT_FALSE(late_first->docker_reachable());

  // While it is down, a container appears; then Docker is back.
  docker_->AddContainer("api", "x", HoistLabels("apisvc", kD1), true);
  docker_->SetUnreachable(false);
  for (Collector* c : {&collector, &late}) {
    std::optional<ContainersEvent> back = c->Next();
    ASSERT_TRUE(back.has_value());
    EXPECT_TRUE(back->snapshot()) << "retries made no noise before it";
    EXPECT_TRUE(back->docker_reachable());
    EXPECT_THAT(Names(*back), ElementsAre("api", "web"));
  }
  EXPECT_TRUE(watcher_->docker_reachable());
  // And events flow again.
  docker_->SetContainerState("api", "die");
  EXPECT_EQ(collector.Next()->changed().state(), "exited");
}

TEST_F(ContainerWatcherTest, FirstSnapshotWaitsForDockerOrItsAbsence) {
  docker_->SetUnreachable(true);
  StartWatcher();
  Collector collector(watcher_.get(), {});
  std::optional<ContainersEvent> first = collector.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->snapshot());
  EXPECT_FALSE(first->docker_reachable());
  EXPECT_THAT(Names(*first), IsEmpty());
  docker_->SetUnreachable(false);
  std::optional<ContainersEvent> back = collector.Next();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(back->snapshot());
  EXPECT_TRUE(back->docker_reachable());
}

// A subscriber that does not read never holds the watcher up: past
// max_queued its queue becomes one snapshot of the current state.
TEST_F(ContainerWatcherTest, ASubscriberThatFallsBehindGetsASnapshot) {
  const std::string id = docker_->AddContainer(
      "web", "x", HoistLabels("websvc", kD1), /*running=*/true);
  StartWatcher(/*max_queued=*/4);
  auto slow = watcher_->Subscribe({}, [] {});
  Collector fast(watcher_.get(), {});
  ASSERT_TRUE(fast.Next().has_value());
  // Each change waits until the watcher reported it (to the reader that
  // keeps up), so none is folded into the next.
  constexpr int kToggles = 10;
  for (int i = 0; i < kToggles; ++i) {
    ASSERT_TRUE(docker_->StopContainer(id, absl::Seconds(1)).ok());
    ASSERT_EQ(fast.Next()->changed().state(), "exited");
    ASSERT_TRUE(docker_->StartContainer(id).ok());
    ASSERT_EQ(fast.Next()->changed().state(), "running");
  }
  ASSERT_TRUE(docker_->StopContainer(id, absl::Seconds(1)).ok());
  ASSERT_EQ(fast.Next()->changed().state(), "exited");
  std::vector<ContainersEvent> queued;
  ContainersEvent event;
  while (slow->Take(&event) == ContainerWatcher::Next::kEvent)
    queued.push_back(event);
  ASSERT_FALSE(queued.empty());
  EXPECT_LE(queued.size(), 4u);
  EXPECT_TRUE(queued.front().snapshot());
  // Applied in order, the queue ends in Docker's state.
  std::string state;
  for (const ContainersEvent& e : queued) {
    if (e.snapshot()) state = e.containers(0).state();
    if (e.has_changed()) state = e.changed().state();
  }
  EXPECT_EQ(state, "exited");
}

TEST_F(ContainerWatcherTest, StopEndsEverySubscription) {
  StartWatcher();
  Collector collector(watcher_.get(), {});
  ASSERT_TRUE(collector.Next().has_value());
  watcher_->Stop();
  EXPECT_TRUE(collector.WaitEnded());
  EXPECT_EQ(docker_->OpenEventStreams(), 0);
  auto after = watcher_->Subscribe({}, [] {});
  ContainersEvent event;
  EXPECT_EQ(after->Take(&event), ContainerWatcher::Next::kEnded);
}

// ---- each deploy's end, with the real DeployManager ----

class DeployEndTest : public ContainerWatcherTest {
 protected:
  void SetUp() override {
    ContainerWatcherTest::SetUp();
    docker_->AddRemoteImage(kRepo, kD1);
    docker_->AddRemoteImage(kRepo, kD2);
    DeployManager::Options options;
    options.docker = docker_;
    options.clock = &clock_;
    options.prober = &prober_;
    options.host = "host-a";
    options.state_dir = state_dir_.path();
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
    ContainerWatcherTest::TearDown();
  }

  hoist::v1::DeployRequest Request(const std::string& id,
                                   const std::string& digest) {
    hoist::v1::DeployRequest request;
    request.set_deploy_id(id);
    request.set_service("websvc");
    request.set_image(kRepo);
    request.set_digest(digest);
    request.mutable_container()->set_name("web");
    return request;
  }

  // Runs a deploy to its end, moving the fake clock when it waits.
  hoist::v1::DeployEvent Deploy(const hoist::v1::DeployRequest& request) {
    auto log = manager_->Deploy(request);
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return {};
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (!(*log)->finished() && absl::Now() < give_up) {
      if (clock_.sleepers() > 0) clock_.Advance(absl::Milliseconds(500));
      (*log)->WaitFinished(absl::Milliseconds(2));
    }
    return (*log)->last();
  }

  // The last change carrying `deploy_id` among those already taken, without
  // waiting: the deploy's end is sent before its terminal event is
  // appended, so once the deploy finished it is there.
  static std::optional<ManagedContainer> SeenDeploy(
      Collector* collector, const std::string& deploy_id) {
    std::optional<ManagedContainer> seen;
    for (const ContainersEvent& event : collector->TakePending()) {
      if (event.changed().last_deploy_id() == deploy_id) seen = event.changed();
    }
    return seen;
  }

  FakeClock clock_;
  FakeHealthProber prober_;
  hoist::testing::ScopedTempDir state_dir_{"watch-"};  // outlives manager_
  std::unique_ptr<DeployManager> manager_;
};

TEST_F(DeployEndTest, EveryDeploysEndIsSentWithItsDeployId) {
  Collector collector(watcher_.get(), {"web"});
  ASSERT_TRUE(collector.Next().has_value());

  // A first deploy that fails leaves no container: its record alone.
  const std::string bad = "sha256:" + std::string(64, 'b');
  ASSERT_EQ(Deploy(Request("d-0", bad)).phase(),
            hoist::v1::DEPLOY_PHASE_FAILED);
  std::optional<ManagedContainer> none = SeenDeploy(&collector, "d-0");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->state(), "");
  EXPECT_EQ(none->last_phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_FALSE(none->last_error().empty());

  ASSERT_EQ(Deploy(Request("d-1", kD1)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  std::optional<ManagedContainer> first = SeenDeploy(&collector, "d-1");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->digest(), kD1);
  EXPECT_EQ(first->state(), "running");
  EXPECT_EQ(first->last_phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);

  // A deploy that fails before touching anything changes only the record:
  // still sent.
  ASSERT_EQ(Deploy(Request("d-2", bad)).phase(),
            hoist::v1::DEPLOY_PHASE_FAILED);
  std::optional<ManagedContainer> failed = SeenDeploy(&collector, "d-2");
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->digest(), kD1);
  EXPECT_EQ(failed->state(), "running");
  EXPECT_EQ(failed->last_phase(), hoist::v1::DEPLOY_PHASE_FAILED);

  ASSERT_EQ(Deploy(Request("d-3", kD2)).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  std::optional<ManagedContainer> upgraded = SeenDeploy(&collector, "d-3");
  ASSERT_TRUE(upgraded.has_value());
  EXPECT_EQ(upgraded->digest(), kD2);
  EXPECT_THAT(upgraded->previous_digests(), ElementsAre(kD1));
}

TEST_F(DeployEndTest, ARefusedDeployIsSentToo) {
  docker_->AddContainer("web", "nginx", {}, true);  // not Hoist's
  Collector collector(watcher_.get(), {"web"});
  ASSERT_TRUE(collector.Next().has_value());
  EXPECT_EQ(manager_->Deploy(Request("d-1", kD1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::optional<ManagedContainer> refused = SeenDeploy(&collector, "d-1");
  ASSERT_TRUE(refused.has_value());
  EXPECT_TRUE(refused->foreign());
  EXPECT_EQ(refused->last_phase(), hoist::v1::DEPLOY_PHASE_FAILED);
}

}  // namespace
}  // namespace hoist::nodeagent
