// A follower's WatchRollout (receiver/rollout_follow.h): the leader's
// journal writes, made here through the leader's EtcdJournal, reach a
// follower's watcher through its own EtcdJournal on the same FakeEtcd.
#include "receiver/rollout_follow.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "receiver/journal_etcd.h"
#include "tests/common/eventually.h"
#include "tests/receiver/fake_etcd.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using hoist::v1::Rollout;
using hoist::v1::RolloutEvent;

using ::hoist::testing::Eventually;

// The leader's side: only Watch is asked of it here.
class LeaderRollouts : public RolloutController {
 public:
  absl::StatusOr<Rollout> ManualDeploy(const std::string&, const std::string&,
                                       const std::string&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<Rollout> RollbackService(const std::string&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<Rollout> Resume(const std::string&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<Rollout> GetRollout(const std::string&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<std::vector<Rollout>> ListRollouts(const std::string&,
                                                    int) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<std::shared_ptr<RolloutSubscription>> Watch(
      const std::string& id, std::function<void()>) override {
    watched.push_back(id);
    return absl::UnimplementedError("the leader's own");
  }
  absl::StatusOr<Rollout> Cancel(const std::string&) override {
    return absl::UnimplementedError("");
  }
  std::vector<std::string> watched;
};

class RolloutFollowTest : public ::testing::Test {
 protected:
  Rollout Pending(const std::string& id) {
    Rollout r;
    r.set_id(id);
    r.set_service("app");
    r.set_digest(testing::Digest(1));
    r.set_state(hoist::v1::ROLLOUT_STATE_PENDING);
    for (const char* agent : {"web-1", "web-2"}) {
      hoist::v1::HostResult* h = r.add_hosts();
      h->set_agent(agent);
      h->set_deploy_id(absl::StrCat(id, "-", agent));
    }
    EXPECT_TRUE(leader_journal_.SaveRollout(r).ok());
    return r;
  }
  void SetPhase(const std::string& id, int index,
                hoist::v1::DeployPhase phase) {
    Journal::HostUpdate u;
    u.index = index;
    u.result.set_agent(index == 0 ? "web-1" : "web-2");
    u.result.set_phase(phase);
    ASSERT_TRUE(leader_journal_.SaveHostProgress(id, {u}, {}).ok());
  }
  std::shared_ptr<RolloutSubscription> Watch(const std::string& id) {
    absl::StatusOr<std::shared_ptr<RolloutSubscription>> sub =
        rollouts_.Watch(id, nullptr);
    EXPECT_TRUE(sub.ok()) << sub.status();
    return sub.ok() ? *sub : nullptr;
  }
  // The next event within 10 s.
  RolloutEvent Next(RolloutSubscription& sub) {
    RolloutEvent e;
    EXPECT_TRUE(sub.Next(&e, absl::Seconds(10))) << "no event within 10 s";
    return e;
  }

  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
  EtcdJournal leader_journal_{&etcd_, "/hoist/"};
  EtcdJournal follower_journal_{&etcd_, "/hoist/"};
  LeaderRollouts leader_;
  bool leading_ = false;
  FollowingRollouts rollouts_{&leader_, &follower_journal_,
                              [this] { return leading_; }};
};

TEST_F(RolloutFollowTest, AFollowerWatchesTheLeadersProgressToTheEnd) {
  Rollout r = Pending("r-1");
  std::shared_ptr<RolloutSubscription> sub = Watch("r-1");
  ASSERT_NE(sub, nullptr);
  RolloutEvent e = Next(*sub);
  EXPECT_EQ(e.message(), "current state");
  EXPECT_EQ(e.rollout().state(), hoist::v1::ROLLOUT_STATE_PENDING);

  SetPhase("r-1", 0, hoist::v1::DEPLOY_PHASE_PULLING);
  e = Next(*sub);
  EXPECT_EQ(e.host().agent(), "web-1");
  EXPECT_EQ(e.host().phase(), hoist::v1::DEPLOY_PHASE_PULLING);
  EXPECT_EQ(e.rollout().hosts(0).phase(), hoist::v1::DEPLOY_PHASE_PULLING);

  r.set_state(hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  r.mutable_hosts(0)->set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  r.mutable_hosts(1)->set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_TRUE(leader_journal_.SaveRollout(r).ok());
  std::vector<RolloutEvent> rest;
  bool ended = false;
  ASSERT_TRUE(Eventually(
      [&] {
        RolloutEvent next;
        while (sub->Pop(&next, &ended)) rest.push_back(next);
        return ended;
      },
      absl::Seconds(10)));
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back().message(), "rollout ROLLOUT_STATE_SUCCEEDED");
  EXPECT_EQ(rest.back().rollout().state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(Eventually([&] { return rollouts_.following() == 0; },
                         absl::Seconds(10)));
  EXPECT_TRUE(leader_.watched.empty());
}

TEST_F(RolloutFollowTest, AFinishedOrUnknownRolloutAnswersAtOnce) {
  Rollout r = Pending("r-1");
  r.set_state(hoist::v1::ROLLOUT_STATE_FAILED);
  ASSERT_TRUE(leader_journal_.SaveRollout(r).ok());
  std::shared_ptr<RolloutSubscription> sub = Watch("r-1");
  ASSERT_NE(sub, nullptr);
  RolloutEvent e;
  bool ended = false;
  ASSERT_TRUE(sub->Pop(&e, &ended));
  EXPECT_EQ(e.rollout().state(), hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_TRUE(ended);
  EXPECT_EQ(rollouts_.following(), 0);
  EXPECT_EQ(rollouts_.Watch("r-nope", nullptr).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RolloutFollowTest, ACancelledWatcherEndsItsFollow) {
  Pending("r-1");
  std::shared_ptr<RolloutSubscription> sub = Watch("r-1");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(rollouts_.following(), 1);
  sub->Cancel();
  EXPECT_TRUE(
      Eventually([&] { return rollouts_.following() == 0; }, absl::Seconds(5)));
}

TEST_F(RolloutFollowTest, EtcdGoneEndsTheStreamWithTheLastStateRead) {
  Pending("r-1");
  std::shared_ptr<RolloutSubscription> sub = Watch("r-1");
  ASSERT_NE(sub, nullptr);
  Next(*sub);
  etcd_.SetUnavailable(true);
  RolloutEvent e = Next(*sub);
  EXPECT_EQ(e.rollout().state(), hoist::v1::ROLLOUT_STATE_PENDING);
  EXPECT_NE(e.message().find("following ended"), std::string::npos)
      << e.message();
  bool ended = false;
  EXPECT_FALSE(sub->Pop(&e, &ended));
  EXPECT_TRUE(ended);
}

TEST_F(RolloutFollowTest, TheLeaderWatchesItsOwnRollouts) {
  Pending("r-1");
  leading_ = true;
  EXPECT_EQ(rollouts_.Watch("r-1", nullptr).status().message(),
            "the leader's own");
  EXPECT_EQ(leader_.watched, std::vector<std::string>{"r-1"});
}

}  // namespace
}  // namespace hoist::receiver
