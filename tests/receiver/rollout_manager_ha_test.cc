// RolloutManager as one of several receivers sharing an etcd journal
// (docs/design.md, "High availability on etcd"): two managers, each over its
// own EtcdJournal on one FakeEtcd, as two receivers over one cluster. A
// follower journals and runs nothing; the leader takes up what followers
// journaled (Lead, Adopt) exactly once, and the newest waiting one runs
// however late an older one was adopted; a delivery accepted by one
// receiver is a duplicate at the other, also when it raced past the lookup.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "receiver/journal_etcd.h"
#include "receiver/rollout_manager.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/fake_etcd.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::Behavior;
using ::hoist::receiver::testing::Digest;
using ::hoist::receiver::testing::FakeAgentClientPool;
using ::hoist::receiver::testing::MakeConfig;

DeployIntent Intent(int n) {
  DeployIntent i;
  i.service = "app";
  i.digest = Digest(n);
  i.tag = absl::StrCat("v", n);
  i.trigger = "webhook";
  i.dedupe_key = absl::StrCat("docker|promoted|repo|app/", n);
  i.summary = absl::StrCat("promoted app:v", n);
  return i;
}

// A journal whose first FindDelivery misses: the receiver that raced
// another one past the dedupe lookup.
class FirstLookupMisses : public JournalWrapper {
 public:
  using JournalWrapper::JournalWrapper;
  absl::StatusOr<std::optional<DeliveryRecord>> FindDelivery(
      const std::string& dedupe_key) override {
    if (missed_++ == 0) return std::optional<DeliveryRecord>();
    return JournalWrapper::FindDelivery(dedupe_key);
  }

 private:
  int missed_ = 0;
};

// The real clock, `offset` away: a receiver whose clock is not in step.
class SkewedClock : public Clock {
 public:
  explicit SkewedClock(absl::Duration offset) : offset_(offset) {}
  absl::Time Now() override { return RealClock()->Now() + offset_; }
  void SleepFor(absl::Duration d) override { RealClock()->SleepFor(d); }
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration d) override {
    return RealClock()->AwaitWithTimeout(mu, cond, d);
  }

 private:
  const absl::Duration offset_;
};

class RolloutManagerHaTest : public ::testing::Test {
 protected:
  std::unique_ptr<RolloutManager> Receiver(Journal* journal,
                                           FakeAgentClientPool* pool,
                                           Clock* clock = nullptr) {
    RolloutManagerOptions o;
    o.journal = journal;
    o.pool = pool;
    o.clock = clock;
    o.follower = true;
    o.retry_initial_backoff = absl::Milliseconds(20);
    auto m = std::make_unique<RolloutManager>(o, config_);
    m->Start();
    return m;
  }

  std::string SubmitOk(RolloutManager& m, const DeployIntent& intent) {
    absl::StatusOr<SubmitResult> r = m.Submit(intent);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_EQ(r->kind, SubmitResult::Kind::kAccepted);
    return r->rollout_id;
  }

  // The rollout as the journal has it once it left PENDING/RUNNING (bounded).
  hoist::v1::Rollout AwaitFinal(const std::string& id) {
    const absl::Time end = absl::Now() + absl::Seconds(20);
    absl::StatusOr<hoist::v1::Rollout> r;
    do {
      EXPECT_TRUE(leader_->WaitIdle(absl::Seconds(1)));
      r = journal_b_.GetRollout(id);
      if (r.ok() && IsFinalRolloutState(r->state())) return *r;
    } while (absl::Now() < end);
    ADD_FAILURE() << "rollout " << id << " did not end: "
                  << (r.ok() ? r->DebugString() : r.status().ToString());
    return hoist::v1::Rollout();
  }

  // While a rollout of the leader's holds the service, `elsewhere` (a
  // follower) journals one and then the leader a newer one, adopted after
  // it: the newer runs, the older is superseded by it and never deployed.
  void ExpectOlderFromElsewhereSuperseded(RolloutManager& elsewhere) {
    ASSERT_TRUE(leader_->Lead().ok());
    leader_pool_.SetDefault(Behavior::kBlock);
    const std::string holder = SubmitOk(*leader_, Intent(1));
    ASSERT_TRUE(leader_pool_.WaitBlocked(2));  // holds the service
    const std::string older = SubmitOk(elsewhere, Intent(2));
    const std::string newer = SubmitOk(*leader_, Intent(3));
    ASSERT_TRUE(leader_->Adopt(older).ok());

    leader_pool_.SetDefault(Behavior::kSucceed);
    leader_pool_.Release("", Behavior::kSucceed);
    EXPECT_EQ(AwaitFinal(holder).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
    // The newest waiting one runs, as with one receiver.
    EXPECT_EQ(AwaitFinal(newer).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
    const hoist::v1::Rollout superseded = AwaitFinal(older);
    EXPECT_EQ(superseded.state(), hoist::v1::ROLLOUT_STATE_SUPERSEDED)
        << superseded.DebugString();
    EXPECT_EQ(superseded.superseded_by(), newer);
    for (const auto& c : leader_pool_.calls()) {
      EXPECT_NE(c.digest, Digest(2)) << c.deploy_id;
    }
  }

  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
  EtcdJournal journal_a_{&etcd_, "/hoist/"};  // receiver A: stays a follower
  EtcdJournal journal_b_{&etcd_, "/hoist/"};  // receiver B: leads
  FakeAgentClientPool follower_pool_;
  FakeAgentClientPool leader_pool_;
  std::shared_ptr<ReceiverConfig> config_ = MakeConfig(2, [] {
    RolloutPolicy p;
    p.batch = "100%";
    return p;
  }());
  std::unique_ptr<RolloutManager> follower_ =
      Receiver(&journal_a_, &follower_pool_);
  std::unique_ptr<RolloutManager> leader_ =
      Receiver(&journal_b_, &leader_pool_);
};

TEST_F(RolloutManagerHaTest, AFollowerJournalsPendingAndTheLeaderRunsItOnce) {
  ASSERT_TRUE(leader_->Lead().ok());
  const std::string id = SubmitOk(*follower_, Intent(1));
  ASSERT_TRUE(follower_->WaitIdle(absl::Seconds(5)));
  absl::StatusOr<hoist::v1::Rollout> stored = journal_b_.GetRollout(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_PENDING);
  EXPECT_TRUE(follower_pool_.calls().empty());

  ASSERT_TRUE(leader_->Adopt(id).ok());
  EXPECT_EQ(AwaitFinal(id).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  // Adopting it again (a watch repeats itself) deploys nothing more.
  ASSERT_TRUE(leader_->Adopt(id).ok());
  ASSERT_TRUE(leader_->WaitIdle(absl::Seconds(5)));
  ASSERT_EQ(leader_pool_.calls().size(), 2u);
  for (const auto& c : leader_pool_.calls()) {
    EXPECT_EQ(c.deploy_id, absl::StrCat(id, "-", c.agent));
  }
  EXPECT_TRUE(follower_pool_.calls().empty());
}

TEST_F(RolloutManagerHaTest, LeadTakesUpWhatWasJournaledBeforeIt) {
  const std::string by_follower = SubmitOk(*follower_, Intent(1));
  // B journals one too while it still follows: it must not run it yet.
  const std::string by_b = SubmitOk(*leader_, Intent(2));
  ASSERT_TRUE(leader_->WaitIdle(absl::Seconds(5)));
  EXPECT_TRUE(leader_pool_.calls().empty());
  // Adopt before Lead does nothing.
  ASSERT_TRUE(leader_->Adopt(by_follower).ok());
  EXPECT_TRUE(leader_pool_.calls().empty());

  ASSERT_TRUE(leader_->Lead().ok());
  // One service at a time: the newest waiting one runs and the older one is
  // superseded, as with one receiver: the older one, though taken up first,
  // never runs (a leader failing over in a burst deploys the newest only).
  const hoist::v1::Rollout first = AwaitFinal(by_follower);
  const hoist::v1::Rollout second = AwaitFinal(by_b);
  EXPECT_EQ(second.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(first.state(), hoist::v1::ROLLOUT_STATE_SUPERSEDED)
      << first.DebugString();
  EXPECT_EQ(first.superseded_by(), by_b);
  for (const auto& c : leader_pool_.calls()) {
    EXPECT_EQ(c.digest, Digest(2)) << c.deploy_id;
  }
  // Every host got each rollout at most once.
  std::map<std::string, int> per_deploy_id;
  for (const auto& c : leader_pool_.calls()) ++per_deploy_id[c.deploy_id];
  for (const auto& [deploy_id, n] : per_deploy_id) {
    EXPECT_EQ(n, 1) << deploy_id;
  }
  EXPECT_TRUE(follower_pool_.calls().empty());
}

TEST_F(RolloutManagerHaTest, AnOlderRolloutAdoptedLateIsSupersededByANewer) {
  // The leader takes its own rollouts up at once, and a follower's only
  // when etcd's watch reports it (Adopt): here after a newer one of its own.
  ExpectOlderFromElsewhereSuperseded(*follower_);
}

TEST_F(RolloutManagerHaTest,
       TheNewestWaitingIsTheLastJournaledWhateverTheClocks) {
  // Receiver C's clock runs a minute ahead: the rollout it journals first
  // says it was created after the one the leader journals next. etcd's
  // revisions, not the receivers' clocks, say which is newer.
  SkewedClock ahead(absl::Minutes(1));
  EtcdJournal journal_c{&etcd_, "/hoist/"};
  FakeAgentClientPool pool;
  std::unique_ptr<RolloutManager> skewed = Receiver(&journal_c, &pool, &ahead);
  ExpectOlderFromElsewhereSuperseded(*skewed);
  EXPECT_TRUE(pool.calls().empty());
}

TEST_F(RolloutManagerHaTest, ADeliveryAcceptedElsewhereIsADuplicateHere) {
  ASSERT_TRUE(leader_->Lead().ok());
  const std::string id = SubmitOk(*follower_, Intent(1));
  absl::StatusOr<SubmitResult> again = leader_->Submit(Intent(1));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->kind, SubmitResult::Kind::kDuplicate);
  EXPECT_EQ(again->rollout_id, id);
}

TEST_F(RolloutManagerHaTest, ARaceToAcceptOneDeliveryEndsInOneRollout) {
  // Receiver C looked the key up before A accepted it; its write then fails
  // etcd's dedupe compare, and it answers with A's rollout.
  FirstLookupMisses blind(&journal_b_);
  FakeAgentClientPool pool;
  std::unique_ptr<RolloutManager> c = Receiver(&blind, &pool);
  const std::string id = SubmitOk(*follower_, Intent(1));
  absl::StatusOr<SubmitResult> raced = c->Submit(Intent(1));
  ASSERT_TRUE(raced.ok()) << raced.status();
  EXPECT_EQ(raced->kind, SubmitResult::Kind::kDuplicate);
  EXPECT_EQ(raced->rollout_id, id);
  absl::StatusOr<std::vector<hoist::v1::Rollout>> all =
      journal_b_.ListRollouts("app", 10);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

TEST_F(RolloutManagerHaTest, FollowerRefusesWhatOnlyTheLeaderCanDo) {
  const std::string id = SubmitOk(*follower_, Intent(1));
  for (const absl::Status& s :
       {follower_->Cancel(id).status(), follower_->Resume(id).status(),
        follower_->RollbackService("app").status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(s.message().find("not the leader"), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace hoist::receiver
