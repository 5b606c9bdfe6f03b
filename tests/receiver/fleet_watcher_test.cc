// FleetWatcher over scripted agents (FakeAgentClientPool) and a StepClock:
// the fleet's state from the agents' WatchContainers streams (docs/design.md,
// "Desired state and convergence").
#include "receiver/fleet_watcher.h"

#include <dirent.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/fleet_changes.h"
#include "tests/receiver/step_clock.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::FakeAgentClientPool;
using ::hoist::receiver::testing::FleetChanges;
using ::hoist::receiver::testing::StepClock;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

AgentEntry Agent(const std::string& name, const std::string& role = "web") {
  AgentEntry a;
  a.name = name;
  a.address = absl::StrCat(name, ".test:7981");
  a.labels["role"] = role;
  return a;
}

hoist::v1::ManagedContainer Container(const std::string& name,
                                      const std::string& state = "running") {
  hoist::v1::ManagedContainer c;
  c.set_name(name);
  c.set_service(name);
  c.set_state(state);
  c.set_digest("sha256:" + std::string(64, 'a'));
  return c;
}

hoist::v1::ContainersEvent Snapshot(
    const std::vector<hoist::v1::ManagedContainer>& containers) {
  hoist::v1::ContainersEvent e;
  e.set_snapshot(true);
  e.set_docker_reachable(true);
  for (const auto& c : containers) *e.add_containers() = c;
  return e;
}

std::vector<std::string> Names(const AgentState& agent) {
  std::vector<std::string> names;
  for (const auto& [name, c] : agent.containers) names.push_back(name);
  return names;
}

class FleetWatcherTest : public ::testing::Test {
 protected:
  FleetWatcherOptions Options() {
    FleetWatcherOptions o;
    o.pool = &pool_;
    o.clock = &clock_;
    o.jitter = 0;  // exact delays; JitteredDelay has its own test
    return o;
  }
  void Start(
      const std::vector<AgentEntry>& agents,
      const std::map<std::string, std::vector<std::string>>& names = {}) {
    watcher_ = std::make_unique<FleetWatcher>(Options());
    changes_ = std::make_unique<FleetChanges>(watcher_.get());
    watcher_->Update(agents, names);
  }
  // Sends a snapshot of `containers` once `agent`'s next stream is open and
  // waits until it is applied and the versions arrived.
  void Connect(const std::string& agent, int opens,
               const std::vector<hoist::v1::ManagedContainer>& containers) {
    ASSERT_TRUE(pool_.WaitWatchOpens(agent, opens));
    pool_.SendWatchEvent(agent, Snapshot(containers));
    ASSERT_TRUE(changes_->WaitFor(agent, [](const AgentState& s) {
      return s.connected && !s.version.empty();
    }));
  }
  // Moves time by `d` once the timer waits, and again waits until it has
  // looked at the new time.
  void Advance(absl::Duration d) {
    ASSERT_TRUE(clock_.AwaitSettled(1));
    clock_.Advance(d);
    ASSERT_TRUE(clock_.AwaitSettled(1));
  }

  FakeAgentClientPool pool_;
  StepClock clock_;
  std::unique_ptr<FleetChanges> changes_;  // outlives the watcher
  std::unique_ptr<FleetWatcher> watcher_;
};

TEST(ContainerNamesByAgentTest, ListsTheContainersOfTheServicesTargetingEach) {
  ReceiverConfig config;
  config.agents = {Agent("web-1"), Agent("web-2"), Agent("db-1", "db")};
  ServiceConfig app;
  app.name = "app";
  app.targets.labels["role"] = "web";
  app.container.set_name("app-main");
  ServiceConfig sidecar;
  sidecar.name = "sidecar";  // container name defaults to the service's
  sidecar.targets.names = {"web-2"};
  config.services = {app, sidecar};
  const auto names = ContainerNamesByAgent(config);
  EXPECT_THAT(names.at("web-1"), ElementsAre("app-main"));
  EXPECT_THAT(names.at("web-2"), ElementsAre("app-main", "sidecar"));
  EXPECT_THAT(names.at("db-1"), IsEmpty());
}

TEST(JitteredDelayTest, StaysBetweenTheBackoffLessTheJitterAndTheBackoff) {
  EXPECT_EQ(JitteredDelay(absl::Seconds(10), 0.2, 0.0), absl::Seconds(10));
  EXPECT_EQ(JitteredDelay(absl::Seconds(10), 0.2, 1.0), absl::Seconds(8));
  EXPECT_EQ(JitteredDelay(absl::Seconds(10), 0.2, 0.5), absl::Seconds(9));
  EXPECT_EQ(JitteredDelay(absl::Seconds(10), 0.0, 0.7), absl::Seconds(10));
  EXPECT_EQ(JitteredDelay(absl::Seconds(10), 5.0, 1.0), absl::ZeroDuration());
}

TEST_F(FleetWatcherTest, OpensOneStreamPerAgentAskingForItsContainerNames) {
  Start({Agent("web-1"), Agent("web-2")},
        {{"web-1", {"app"}}, {"web-2", {"app", "sidecar"}}});
  ASSERT_TRUE(pool_.WaitWatchOpens("web-1", 1));
  ASSERT_TRUE(pool_.WaitWatchOpens("web-2", 1));
  EXPECT_THAT(pool_.WatchNames("web-1"), ElementsAre("app"));
  EXPECT_THAT(pool_.WatchNames("web-2"), ElementsAre("app", "sidecar"));
  // Configured but not connected until a snapshot arrives.
  const std::vector<AgentState> agents = watcher_->Agents();
  ASSERT_EQ(agents.size(), 2u);
  EXPECT_EQ(agents[0].name, "web-1");
  EXPECT_EQ(agents[0].address, "web-1.test:7981");
  EXPECT_EQ(agents[0].labels.at("role"), "web");
  EXPECT_FALSE(agents[0].connected);
  EXPECT_EQ(agents[0].last_seen, absl::InfinitePast());
  EXPECT_EQ(agents[1].name, "web-2");
}

TEST_F(FleetWatcherTest, ASnapshotConnectsTheAgentAndAGetStatusFillsVersions) {
  Start({Agent("web-1")});
  Connect("web-1", 1, {Container("app"), Container("old", "exited")});
  const AgentState s = *watcher_->Agent("web-1");
  EXPECT_TRUE(s.connected);
  EXPECT_TRUE(s.docker_reachable);
  EXPECT_TRUE(s.Reachable());
  EXPECT_THAT(Names(s), ElementsAre("app", "old"));
  EXPECT_EQ(s.containers.at("old").state(), "exited");
  EXPECT_EQ(s.version, "0.1.0-fake");
  EXPECT_EQ(s.docker_version, "20.10-fake");
  EXPECT_EQ(s.last_seen, clock_.Now());
  EXPECT_THAT(s.last_error, IsEmpty());
  EXPECT_EQ(pool_.status_calls(), 1);
  EXPECT_FALSE(watcher_->Agent("web-9").has_value());
}

TEST_F(FleetWatcherTest, ChangedUpsertsRemovedErasesAndASnapshotReplaces) {
  Start({Agent("web-1")});
  Connect("web-1", 1, {Container("a"), Container("b")});
  hoist::v1::ContainersEvent stopped;
  *stopped.mutable_changed() = Container("a", "exited");
  pool_.SendWatchEvent("web-1", stopped);
  hoist::v1::ContainersEvent created;
  *created.mutable_changed() = Container("c", "created");
  pool_.SendWatchEvent("web-1", created);
  hoist::v1::ContainersEvent removed;
  removed.set_removed("b");
  pool_.SendWatchEvent("web-1", removed);
  AgentState s = *watcher_->Agent("web-1");
  EXPECT_THAT(Names(s), ElementsAre("a", "c"));
  EXPECT_EQ(s.containers.at("a").state(), "exited");
  EXPECT_EQ(s.containers.at("c").state(), "created");
  EXPECT_TRUE(s.Reachable());  // changes do not carry docker_reachable

  pool_.SendWatchEvent("web-1", Snapshot({Container("z")}));
  EXPECT_THAT(Names(*watcher_->Agent("web-1")), ElementsAre("z"));
  EXPECT_EQ(pool_.status_calls(), 2);  // versions asked again
}

TEST_F(FleetWatcherTest, AReportedDeployIsRememberedAfterItsContainerIsGone) {
  Start({Agent("web-1")});
  Connect("web-1", 1, {});
  hoist::v1::ContainersEvent deployed;
  *deployed.mutable_changed() = Container("a");
  deployed.mutable_changed()->set_last_deploy_id("r1-web-1");
  pool_.SendWatchEvent("web-1", deployed);
  hoist::v1::ContainersEvent removed;
  removed.set_removed("a");
  pool_.SendWatchEvent("web-1", removed);
  pool_.SendWatchEvent("web-1", Snapshot({}));
  AgentState s = *watcher_->Agent("web-1");
  EXPECT_TRUE(s.containers.empty());
  EXPECT_THAT(
      s.reported_deploys,
      ElementsAre(std::pair<const std::string, std::string>("a", "r1-web-1")));
}

TEST_F(FleetWatcherTest, SnapshotsAreSharedAndNeverChangeUnderTheirHolder) {
  Start({Agent("web-1")});
  Connect("web-1", 1, {Container("a")});
  const std::shared_ptr<const AgentState> before =
      watcher_->AgentSnapshot("web-1");
  ASSERT_NE(before, nullptr);
  // Nothing changed: the same state, not a copy.
  EXPECT_EQ(watcher_->AgentSnapshot("web-1"), before);
  hoist::v1::ContainersEvent stopped;
  *stopped.mutable_changed() = Container("a", "exited");
  pool_.SendWatchEvent("web-1", stopped);
  const std::shared_ptr<const AgentState> after =
      watcher_->AgentSnapshot("web-1");
  EXPECT_NE(after, before);
  EXPECT_EQ(before->containers.at("a").state(), "running");
  EXPECT_EQ(after->containers.at("a").state(), "exited");
  EXPECT_EQ(watcher_->AgentSnapshot("web-9"), nullptr);
}

TEST_F(FleetWatcherTest, DockerUnreachableUntilTheNextSnapshot) {
  Start({Agent("web-1")});
  Connect("web-1", 1, {Container("app")});
  hoist::v1::ContainersEvent down;
  down.set_docker_reachable(false);
  pool_.SendWatchEvent("web-1", down);
  AgentState s = *watcher_->Agent("web-1");
  EXPECT_TRUE(s.connected);
  EXPECT_FALSE(s.Reachable());
  EXPECT_THAT(s.last_error, HasSubstr("dockerd"));
  pool_.SendWatchEvent("web-1", Snapshot({Container("app")}));
  s = *watcher_->Agent("web-1");
  EXPECT_TRUE(s.Reachable());
  EXPECT_THAT(s.last_error, IsEmpty());
}

TEST_F(FleetWatcherTest, AStreamThatEndsDisconnectsAndReopensAfterOneSecond) {
  Start({Agent("web-1")});
  Connect("web-1", 1, {Container("app")});
  const absl::Time seen = clock_.Now();
  Advance(absl::Seconds(5));
  pool_.EndWatches("web-1", absl::UnavailableError("connection reset"));
  AgentState s = *watcher_->Agent("web-1");
  EXPECT_FALSE(s.connected);
  EXPECT_FALSE(s.Reachable());
  EXPECT_THAT(s.last_error, HasSubstr("connection reset"));
  EXPECT_EQ(s.last_seen, seen);  // the last time it answered
  Advance(absl::Milliseconds(999));
  EXPECT_EQ(pool_.WatchOpens("web-1"), 1);
  Advance(absl::Milliseconds(1));
  ASSERT_TRUE(pool_.WaitWatchOpens("web-1", 2));
  Connect("web-1", 2, {Container("app")});
  EXPECT_THAT(watcher_->Agent("web-1")->last_error, IsEmpty());
}

TEST_F(FleetWatcherTest, BackoffDoublesToThirtySecondsAndASnapshotResetsIt) {
  pool_.SetWatchFailure("web-1", absl::UnavailableError("connection refused"));
  Start({Agent("web-1")});
  ASSERT_TRUE(pool_.WaitWatchOpens("web-1", 1));
  ASSERT_TRUE(changes_->WaitFor(
      "web-1", [](const AgentState& s) { return !s.last_error.empty(); }));
  AgentState s = *watcher_->Agent("web-1");
  EXPECT_THAT(s.last_error, HasSubstr("UNAVAILABLE: connection refused"));
  EXPECT_EQ(s.last_seen, absl::InfinitePast());
  int opens = 1;
  for (int seconds : {1, 2, 4, 8, 16, 30, 30}) {
    Advance(absl::Seconds(seconds) - absl::Milliseconds(1));
    EXPECT_EQ(pool_.WatchOpens("web-1"), opens) << "before " << seconds;
    Advance(absl::Milliseconds(1));
    ASSERT_TRUE(pool_.WaitWatchOpens("web-1", ++opens)) << seconds;
  }
  pool_.SetWatchFailure("web-1", absl::OkStatus());
  Advance(absl::Seconds(30));
  Connect("web-1", ++opens, {});
  pool_.EndWatches("web-1", absl::UnavailableError("gone"));
  Advance(absl::Seconds(1));
  ASSERT_TRUE(pool_.WaitWatchOpens("web-1", ++opens));
}

TEST_F(FleetWatcherTest, UpdateAddsRemovesAndReopensForNewContainerNames) {
  Start({Agent("web-1"), Agent("web-2")},
        {{"web-1", {"app"}}, {"web-2", {"app"}}});
  Connect("web-1", 1, {Container("app")});
  Connect("web-2", 1, {Container("app")});
  watcher_->Update({Agent("web-2"), Agent("web-3")},
                   {{"web-2", {"app", "sidecar"}}, {"web-3", {"app"}}});
  // web-1: cancelled and forgotten (its callback saw it gone).
  EXPECT_EQ(pool_.OpenWatches("web-1"), 0);
  EXPECT_FALSE(watcher_->Agent("web-1").has_value());
  EXPECT_THAT(changes_->removed(), ElementsAre("web-1"));
  // web-2: a new stream with the new names; not connected until its
  // snapshot, whose containers replace the old ones.
  EXPECT_FALSE(watcher_->Agent("web-2")->connected);
  ASSERT_TRUE(pool_.WaitWatchOpens("web-2", 2));
  EXPECT_THAT(pool_.WatchNames("web-2"), ElementsAre("app", "sidecar"));
  EXPECT_EQ(pool_.OpenWatches("web-2"), 1);
  Connect("web-2", 2, {Container("app"), Container("sidecar")});
  // web-3: new.
  ASSERT_TRUE(pool_.WaitWatchOpens("web-3", 1));
  const std::vector<AgentState> agents = watcher_->Agents();
  ASSERT_EQ(agents.size(), 2u);
  EXPECT_EQ(agents[0].name, "web-2");
  EXPECT_EQ(agents[1].name, "web-3");

  // The same again: nothing is re-opened (a re-open cancels at once).
  watcher_->Update({Agent("web-2"), Agent("web-3")},
                   {{"web-2", {"app", "sidecar"}}, {"web-3", {"app"}}});
  EXPECT_EQ(pool_.OpenWatches("web-2"), 1);
  EXPECT_TRUE(watcher_->Agent("web-2")->connected);
}

TEST_F(FleetWatcherTest, UpdateReopensWhenThePoolReplacedTheAgentsClient) {
  Start({Agent("web-1"), Agent("web-2")});
  Connect("web-1", 1, {Container("app")});
  Connect("web-2", 1, {Container("app")});
  pool_.ReplaceClient("web-1");  // e.g. new certificates on SIGHUP
  watcher_->Update({Agent("web-1"), Agent("web-2")}, {});
  EXPECT_FALSE(watcher_->Agent("web-1")->connected);
  ASSERT_TRUE(pool_.WaitWatchOpens("web-1", 2));
  EXPECT_EQ(pool_.WatchOpens("web-2"), 1);
  EXPECT_TRUE(watcher_->Agent("web-2")->connected);
}

TEST_F(FleetWatcherTest, TheCallbackFiresAfterEachChange) {
  Start({Agent("web-1")});
  ASSERT_TRUE(pool_.WaitWatchOpens("web-1", 1));
  const size_t added = changes_->count("web-1");
  EXPECT_GE(added, 1u);  // Update added it
  pool_.SendWatchEvent("web-1", Snapshot({}));
  // The snapshot, then the GetStatus answer.
  EXPECT_EQ(changes_->count("web-1"), added + 2);
  hoist::v1::ContainersEvent changed;
  *changed.mutable_changed() = Container("app");
  pool_.SendWatchEvent("web-1", changed);
  EXPECT_EQ(changes_->count("web-1"), added + 3);
  pool_.EndWatches("web-1", absl::UnavailableError("gone"));
  EXPECT_EQ(changes_->count("web-1"), added + 4);
}

TEST_F(FleetWatcherTest, StopCancelsEveryStreamAndNothingFollows) {
  Start({Agent("web-1"), Agent("web-2")});
  Connect("web-1", 1, {Container("app")});
  ASSERT_TRUE(pool_.WaitWatchOpens("web-2", 1));
  watcher_->Stop();
  EXPECT_EQ(pool_.OpenWatches("web-1"), 0);
  EXPECT_EQ(pool_.OpenWatches("web-2"), 0);
  const size_t calls = changes_->count("web-1");
  watcher_->Update({Agent("web-1")}, {});  // ignored after Stop
  clock_.Advance(absl::Minutes(5));
  EXPECT_EQ(pool_.WatchOpens("web-1"), 1);
  EXPECT_EQ(changes_->count("web-1"), calls);
  watcher_->Stop();  // again: returns
}

int ThreadCount() {
  int n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* e = readdir(dir)) n += e->d_name[0] != '.';
  closedir(dir);
  return n;
}

TEST_F(FleetWatcherTest, OneTimerThreadWhateverTheNumberOfAgents) {
  const int before = ThreadCount();
  std::vector<AgentEntry> agents;
  for (int i = 0; i < 300; ++i) agents.push_back(Agent(absl::StrCat("h", i)));
  Start(agents);
  for (const AgentEntry& a : agents) {
    ASSERT_TRUE(pool_.WaitWatchOpens(a.name, 1));
    pool_.EndWatches(a.name, absl::UnavailableError("down"));
  }
  Advance(absl::Seconds(1));
  for (const AgentEntry& a : agents)
    ASSERT_TRUE(pool_.WaitWatchOpens(a.name, 2));
  EXPECT_EQ(ThreadCount(), before + 1);
}

// For TSan: events, stream ends, reloads and reads from several threads.
TEST_F(FleetWatcherTest, ConcurrentEventsReloadsAndReadsAreSafe) {
  std::vector<AgentEntry> agents;
  for (int i = 0; i < 8; ++i) agents.push_back(Agent(absl::StrCat("h", i)));
  Start(agents);
  for (const AgentEntry& a : agents)
    ASSERT_TRUE(pool_.WaitWatchOpens(a.name, 1));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round) {
        const std::string& agent = agents[(t * 2 + round) % agents.size()].name;
        pool_.SendWatchEvent(agent, Snapshot({Container("app")}));
        hoist::v1::ContainersEvent e;
        *e.mutable_changed() = Container(absl::StrCat("c", round));
        pool_.SendWatchEvent(agent, e);
        if (round % 10 == 9) pool_.EndWatches(agent, absl::AbortedError("x"));
      }
    });
  }
  threads.emplace_back([&] {
    for (int round = 0; round < 50; ++round) {
      std::map<std::string, std::vector<std::string>> names;
      names["h0"] = {absl::StrCat("n", round % 3)};
      watcher_->Update(agents, names);
      clock_.Advance(absl::Seconds(1));
    }
  });
  threads.emplace_back([&] {
    for (int round = 0; round < 200; ++round) {
      EXPECT_EQ(watcher_->Agents().size(), agents.size());
    }
  });
  for (auto& t : threads) t.join();
  watcher_->Stop();
  for (const AgentEntry& a : agents) EXPECT_EQ(pool_.OpenWatches(a.name), 0);
}

}  // namespace
}  // namespace hoist::receiver
