// The leader's fleet view published for followers (receiver/
// fleet_publication.h): a FleetPublisher over the leader's EtcdJournal and a
// PublishedFleet over a follower's, both on one FakeEtcd, as two receivers
// over one cluster.
#include "receiver/fleet_publication.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/journal_etcd.h"
#include "tests/common/eventually.h"
#include "tests/receiver/fake_etcd.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::MakeConfig;
using ::testing::ElementsAre;

using ::hoist::testing::Eventually;

// The leader's own view, scripted.
class ScriptedView : public FleetView, public ServiceStates {
 public:
  void SetAgent(const std::string& name, bool reachable,
                const std::string& error = "") {
    absl::MutexLock lock(&mu_);
    AgentState& a = agents_[name];
    a.name = name;
    a.address = absl::StrCat(name, ":7981");
    a.labels["role"] = "web";
    a.connected = reachable;
    a.docker_reachable = reachable;
    a.version = "0.1.0";
    a.last_error = error;
    a.last_seen = absl::Now();  // moves; never published
  }
  void RemoveAgent(const std::string& name) {
    absl::MutexLock lock(&mu_);
    agents_.erase(name);
  }
  void SetService(const std::string& name, hoist::v1::Convergence state) {
    absl::MutexLock lock(&mu_);
    hoist::v1::Service& s = services_[name];
    s.set_name(name);
    s.set_desired_digest(testing::Digest(1));
    s.clear_hosts();
    hoist::v1::ServiceHost* h = s.add_hosts();
    h->set_agent("web-1");
    h->set_convergence(state);
  }

  std::vector<AgentState> Agents() const override {
    absl::MutexLock lock(&mu_);
    std::vector<AgentState> out;
    for (const auto& [name, a] : agents_) out.push_back(a);
    return out;
  }
  std::optional<AgentState> Agent(const std::string& name) const override {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(name);
    if (it == agents_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<hoist::v1::Service> ListServices() override {
    absl::MutexLock lock(&mu_);
    std::vector<hoist::v1::Service> out;
    for (const auto& [name, s] : services_) out.push_back(s);
    return out;
  }
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override {
    absl::MutexLock lock(&mu_);
    auto it = services_.find(name);
    if (it == services_.end()) return absl::NotFoundError(name);
    return it->second;
  }
  absl::StatusOr<hoist::v1::Rollout> Converge(const std::string&) override {
    hoist::v1::Rollout r;
    r.set_id("r-converge");
    return r;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, AgentState> agents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, hoist::v1::Service> services_ ABSL_GUARDED_BY(mu_);
};

class FleetPublicationTest : public ::testing::Test {
 protected:
  FleetPublicationTest() {
    config_ = MakeConfig(3, RolloutPolicy{});
    for (const char* agent : {"web-1", "web-2", "web-3"}) {
      leader_.SetAgent(agent, true);
    }
    leader_.SetService("app", hoist::v1::CONVERGENCE_IN_SYNC);
  }

  std::unique_ptr<FleetPublisher> Publisher(
      absl::Duration interval = absl::Seconds(1)) {
    FleetPublisherOptions o;
    o.journal = &leader_journal_;
    o.fleet = &leader_;
    o.services = &leader_;
    o.interval = interval;
    return std::make_unique<FleetPublisher>(o);
  }
  // Every fleet key with its mod revision.
  std::map<std::string, int64_t> Revisions() {
    std::map<std::string, int64_t> out;
    auto kvs = etcd_.Get("/hoist/fleet/", EtcdPrefixEnd("/hoist/fleet/"));
    EXPECT_TRUE(kvs.ok()) << kvs.status();
    if (kvs.ok()) {
      for (const EtcdKeyValue& kv : *kvs) out[kv.key] = kv.mod_revision;
    }
    return out;
  }

  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
  EtcdJournal leader_journal_{&etcd_, "/hoist/"};
  EtcdJournal follower_journal_{&etcd_, "/hoist/"};
  std::shared_ptr<ReceiverConfig> config_;
  ScriptedView leader_;
  PublishedFleet follower_{&follower_journal_, [this] { return config_; }};
};

TEST_F(FleetPublicationTest, AFollowerSeesWhatTheLeaderPublished) {
  leader_.SetAgent("web-2", false, "docker unreachable");
  ASSERT_TRUE(Publisher()->PublishNow().ok());

  std::vector<AgentState> agents = follower_.Agents();
  ASSERT_EQ(agents.size(), 3u);
  EXPECT_EQ(agents[0].name, "web-1");
  EXPECT_TRUE(agents[0].Reachable());
  EXPECT_EQ(agents[0].version, "0.1.0");
  EXPECT_EQ(agents[0].labels.at("role"), "web");
  EXPECT_EQ(agents[0].last_seen, absl::InfinitePast());  // not published
  EXPECT_FALSE(agents[1].Reachable());
  EXPECT_EQ(agents[1].last_error, "docker unreachable");
  EXPECT_EQ(follower_.Agent("web-2")->last_error, "docker unreachable");
  EXPECT_FALSE(follower_.Agent("nope").has_value());

  absl::StatusOr<hoist::v1::Service> app = follower_.GetService("app");
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(app->desired_digest(), testing::Digest(1));
  ASSERT_EQ(app->hosts_size(), 1);
  EXPECT_EQ(app->hosts(0).convergence(), hoist::v1::CONVERGENCE_IN_SYNC);
  ASSERT_EQ(follower_.ListServices().size(), 1u);
  EXPECT_EQ(follower_.ListServices()[0].desired_digest(), testing::Digest(1));
  EXPECT_EQ(follower_.GetService("nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(follower_.Converge("app").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(FleetPublicationTest, NothingPublishedYetIsShownAsSuch) {
  std::vector<AgentState> agents = follower_.Agents();
  ASSERT_EQ(agents.size(), 3u);
  EXPECT_FALSE(agents[0].Reachable());
  EXPECT_EQ(agents[0].address, "10.0.0.1:7981");  // from the config
  EXPECT_EQ(agents[0].last_error, "not published by the leader yet");
  absl::StatusOr<hoist::v1::Service> app = follower_.GetService("app");
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(app->name(), "app");
  EXPECT_EQ(app->image(), "registry.test/prod/app");
  EXPECT_EQ(app->hosts_size(), 0);

  etcd_.SetUnavailable(true);
  EXPECT_THAT(follower_.Agents()[0].last_error,
              ::testing::StartsWith("fleet view unavailable: "));
  EXPECT_EQ(follower_.GetService("app").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(FleetPublicationTest, OnlyChangedEntriesAreWrittenAndRemovedOnesGo) {
  std::unique_ptr<FleetPublisher> publisher = Publisher();
  ASSERT_TRUE(publisher->PublishNow().ok());
  const std::map<std::string, int64_t> first = Revisions();
  ASSERT_EQ(first.size(), 4u);  // 3 agents, 1 service

  leader_.SetAgent("web-1", true);  // only last_seen moved
  ASSERT_TRUE(publisher->PublishNow().ok());
  EXPECT_EQ(Revisions(), first);

  leader_.SetAgent("web-3", false, "stream ended");
  leader_.RemoveAgent("web-2");
  ASSERT_TRUE(publisher->PublishNow().ok());
  std::map<std::string, int64_t> now = Revisions();
  EXPECT_EQ(now.count("/hoist/fleet/agents/web-2"), 0u);
  EXPECT_EQ(now["/hoist/fleet/agents/web-1"],
            first.at("/hoist/fleet/agents/web-1"));
  EXPECT_GT(now["/hoist/fleet/agents/web-3"],
            first.at("/hoist/fleet/agents/web-3"));
  EXPECT_EQ(now["/hoist/fleet/services/app"],
            first.at("/hoist/fleet/services/app"));
}

TEST_F(FleetPublicationTest, ANewLeaderRemovesWhatTheOldOneLeftBehind) {
  ASSERT_TRUE(Publisher()->PublishNow().ok());
  leader_.RemoveAgent("web-3");
  ASSERT_TRUE(Publisher()->PublishNow().ok());  // a new leader's first
  std::vector<std::string> keys;
  for (const auto& [key, rev] : Revisions()) keys.push_back(key);
  EXPECT_THAT(keys, ElementsAre("/hoist/fleet/agents/web-1",
                                "/hoist/fleet/agents/web-2",
                                "/hoist/fleet/services/app"));
}

TEST_F(FleetPublicationTest, ADeposedLeaderPublishesNothing) {
  auto rev = etcd_.Put("/hoist/leader/1", "me");
  ASSERT_TRUE(rev.ok());
  EtcdCompare fence;
  fence.key = "/hoist/leader/1";
  fence.target = EtcdCompare::Target::kCreateRevision;
  fence.number = *rev;
  leader_journal_.SetFence(fence);
  std::unique_ptr<FleetPublisher> publisher = Publisher();
  ASSERT_TRUE(publisher->PublishNow().ok());
  const std::map<std::string, int64_t> before = Revisions();
  ASSERT_TRUE(etcd_.Delete("/hoist/leader/1").ok());  // its lease lapsed
  leader_.SetAgent("web-1", false, "stream ended");
  absl::Status s = publisher->PublishNow();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(Revisions(), before);
}

TEST_F(FleetPublicationTest, ByRoleAsksTheLeadersViewOnlyWhileLeading) {
  bool leading = false;
  ByRole view([&leading] { return leading; }, &leader_, &leader_, &follower_);
  EXPECT_EQ(view.Agents()[0].last_error, "not published by the leader yet");
  EXPECT_EQ(view.Converge("app").status().code(),
            absl::StatusCode::kUnavailable);
  leading = true;
  EXPECT_TRUE(view.Agents()[0].Reachable());
  EXPECT_TRUE(view.Converge("app").ok());
}

TEST_F(FleetPublicationTest, TheThreadPublishesEachChangeWithinTheInterval) {
  std::unique_ptr<FleetPublisher> publisher = Publisher(absl::Milliseconds(50));
  publisher->Start();
  ASSERT_TRUE(Eventually([&] { return follower_.Agents()[2].Reachable(); },
                         absl::Seconds(10)));
  leader_.SetAgent("web-3", false, "stream ended");
  publisher->Changed();
  EXPECT_TRUE(Eventually(
      [&] { return follower_.Agent("web-3")->last_error == "stream ended"; },
      absl::Seconds(10)));
  publisher->Stop();
}

}  // namespace
}  // namespace hoist::receiver
