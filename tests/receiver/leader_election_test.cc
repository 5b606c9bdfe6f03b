// LeaderElection (receiver/leader_election.h): first against FakeEtcd on a
// StepClock, where time moves only when the test says so (lapse at exactly
// lease - 1 s, backoff bounds, Stop's hand-over without any time passing);
// then against a real 3-member etcd cluster (tests/harness/etcd_cluster.h)
// with one EtcdClientGrpc per candidate, as three receivers would have:
// hand-over and fail-over times, a cut-off leader, the etcd leader killed,
// no quorum. A monitor checks through every real-cluster test that no two
// candidates ever lead at once.
#include "receiver/leader_election.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/etcd_client_grpc.h"
#include "receiver/journal_etcd.h"
#include "tests/harness/etcd_cluster.h"
#include "tests/harness/harness.h"
#include "tests/receiver/fake_etcd.h"
#include "tests/receiver/step_clock.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::StepClock;
using ::hoist::testing::EtcdCluster;
using ::hoist::testing::WaitFor;

constexpr int64_t kLease = 5;

std::string UniquePrefix() {
  static std::atomic<int> n{0};
  return absl::StrCat("/le", getpid(), "-", n++, "/hoist/");
}

// One receiver's view of etcd that can be cut off, as a partitioned or
// paused receiver is: while cut, each call waits up to `hang` (real time;
// InfiniteDuration: until the cut ends) for the cut to end and then fails
// UNAVAILABLE without reaching etcd. Calls already under way and watches
// are not affected. Counts calls, and calls waiting now.
class CutOffEtcd : public EtcdClient {
 public:
  CutOffEtcd(EtcdClient* inner, absl::Duration hang)
      : inner_(inner), hang_(hang) {}

  void SetCut(bool cut) {
    absl::MutexLock lock(&mu_);
    cut_ = cut;
  }
  int64_t calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // Returns once `n` calls wait for the cut to end; false after `timeout`.
  bool AwaitBlocked(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return blocked_ == n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  int blocked() {
    absl::MutexLock lock(&mu_);
    return blocked_;
  }

  absl::StatusOr<std::vector<EtcdKeyValue>> Get(const std::string& key,
                                                const std::string& range_end,
                                                int64_t limit) override {
    if (absl::Status s = Enter(); !s.ok()) return s;
    return inner_->Get(key, range_end, limit);
  }
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease) override {
    if (absl::Status s = Enter(); !s.ok()) return s;
    return inner_->Put(key, value, lease);
  }
  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 const std::string& range_end) override {
    if (absl::Status s = Enter(); !s.ok()) return s;
    return inner_->Delete(key, range_end);
  }
  absl::StatusOr<EtcdTxnResult> Txn(
      const std::vector<EtcdCompare>& compares,
      const std::vector<EtcdOp>& success,
      const std::vector<EtcdOp>& failure) override {
    if (absl::Status s = Enter(); !s.ok()) return s;
    return inner_->Txn(compares, success, failure);
  }
  absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds) override {
    if (absl::Status s = Enter(); !s.ok()) return s;
    return inner_->GrantLease(ttl_seconds);
  }
  absl::StatusOr<int64_t> KeepAliveOnce(int64_t lease) override {
    if (absl::Status s = Enter(); !s.ok()) return s;
    return inner_->KeepAliveOnce(lease);
  }
  absl::Status RevokeLease(int64_t lease) override {
    if (absl::Status s = Enter(); !s.ok()) return s;
    return inner_->RevokeLease(lease);
  }
  std::unique_ptr<EtcdWatch> Watch(const std::string& key,
                                   const std::string& range_end,
                                   int64_t start_revision,
                                   EtcdEventsCallback on_events,
                                   EtcdDoneCallback on_done) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
    }
    return inner_->Watch(key, range_end, start_revision, std::move(on_events),
                         std::move(on_done));
  }

 private:
  absl::Status Enter() {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (!cut_) return absl::OkStatus();
    auto uncut = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !cut_; };
    ++blocked_;
    const bool resumed = hang_ > absl::ZeroDuration() &&
                         mu_.AwaitWithTimeout(absl::Condition(&uncut), hang_);
    --blocked_;
    if (resumed) return absl::OkStatus();
    return absl::UnavailableError("cut off (test)");
  }

  EtcdClient* const inner_;
  const absl::Duration hang_;
  absl::Mutex mu_;
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
  int blocked_ ABSL_GUARDED_BY(mu_) = 0;
};

// What one election's callbacks reported.
class Reports {
 public:
  explicit Reports(Clock* clock) : clock_(clock) {}
  void Elected(const EtcdCompare& fence) {
    absl::MutexLock lock(&mu_);
    ++elected_;
    fence_ = fence;
  }
  void Lost() {
    const absl::Time now = clock_->Now();
    absl::MutexLock lock(&mu_);
    ++lost_;
    lost_at_ = now;
  }
  int elected() {
    absl::MutexLock lock(&mu_);
    return elected_;
  }
  int lost() {
    absl::MutexLock lock(&mu_);
    return lost_;
  }
  std::optional<EtcdCompare> fence() {
    absl::MutexLock lock(&mu_);
    return fence_;
  }
  absl::Time lost_at() {
    absl::MutexLock lock(&mu_);
    return lost_at_;
  }

 private:
  Clock* const clock_;
  absl::Mutex mu_;
  int elected_ ABSL_GUARDED_BY(mu_) = 0;
  int lost_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<EtcdCompare> fence_ ABSL_GUARDED_BY(mu_);
  absl::Time lost_at_ ABSL_GUARDED_BY(mu_);
};

// One receiver: its etcd view, what its callbacks saw, its election
// (declared last: destroyed, so stopped, first).
struct Candidate {
  std::string name;
  std::unique_ptr<EtcdClient> client;  // real-cluster tests only
  std::unique_ptr<CutOffEtcd> view;
  std::unique_ptr<Reports> reports;
  std::unique_ptr<LeaderElection> election;
};

std::unique_ptr<Candidate> MakeCandidate(const std::string& name,
                                         const std::string& prefix,
                                         EtcdClient* etcd, Clock* clock,
                                         absl::Duration hang) {
  auto c = std::make_unique<Candidate>();
  c->name = name;
  c->view = std::make_unique<CutOffEtcd>(etcd, hang);
  c->reports =
      std::make_unique<Reports>(clock != nullptr ? clock : RealClock());
  LeaderElectionOptions options;
  options.client = c->view.get();
  options.prefix = prefix;
  options.name = name;
  options.lease_seconds = kLease;
  options.clock = clock;
  Reports* reports = c->reports.get();
  options.on_elected = [reports](const EtcdCompare& f) { reports->Elected(f); };
  options.on_lost = [reports] { reports->Lost(); };
  absl::StatusOr<std::unique_ptr<LeaderElection>> e =
      LeaderElection::Create(options);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return nullptr;
  c->election = std::move(*e);
  EXPECT_TRUE(c->election->Start().ok());
  return c;
}

hoist::v1::Rollout MakeRollout(const std::string& id) {
  hoist::v1::Rollout r;
  r.set_id(id);
  r.set_service("app");
  r.set_digest("sha256:" + std::string(64, 'a'));
  r.set_state(hoist::v1::ROLLOUT_STATE_PENDING);
  return r;
}

// A journal write under `fence`, as the leader's rollout code would make.
absl::Status FencedWrite(EtcdClient* etcd, const std::string& prefix,
                         const EtcdCompare& fence) {
  static std::atomic<int> n{0};
  const std::string id = absl::StrCat("r-", n++);
  EtcdJournal journal(etcd, prefix);
  journal.SetFence(fence);
  return journal.AcceptDelivery(
      {"dedupe-" + id, id, "app", absl::FromUnixSeconds(1), ""},
      MakeRollout(id));
}

int64_t LeaseOfKey(const std::string& key) {
  return static_cast<int64_t>(
      std::stoull(key.substr(key.rfind('/') + 1), nullptr, 16));
}

// ---- FakeEtcd on a StepClock ----

class LeaderElectionFakeTest : public ::testing::Test {
 protected:
  ~LeaderElectionFakeTest() override {
    for (auto& c : candidates_) {
      c->view->SetCut(false);
      c->election->Stop();
    }
  }

  Candidate& Add(const std::string& name,
                 absl::Duration hang = absl::ZeroDuration()) {
    candidates_.push_back(MakeCandidate(name, prefix_, &etcd_, &clock_, hang));
    running_ += 1;
    return *candidates_.back();
  }
  void StopCandidate(Candidate& c) {
    c.election->Stop();
    running_ -= 1;
  }

  // Returns once every election thread waits on the clock with nothing to
  // do at this time: watch deliveries drained, and twice in a row nothing
  // was written meanwhile.
  void Settle() {
    for (int quiet = 0, rounds = 0; quiet < 2; ++rounds) {
      ASSERT_LT(rounds, 1000) << "elections never settle";
      const int64_t revision = etcd_.revision();
      etcd_.WaitForDeliveries();
      clock_.Advance(absl::ZeroDuration());
      // Three threads per election wait on the clock when idle.
      ASSERT_TRUE(clock_.AwaitSettled(3 * running_));
      quiet = etcd_.revision() == revision ? quiet + 1 : 0;
    }
  }
  // Moves time by `total` in steps, expiring leases and settling after each.
  void AdvanceBy(absl::Duration total,
                 absl::Duration step = absl::Milliseconds(100)) {
    for (absl::Duration done; done < total; done += step) {
      clock_.Advance(std::min(step, total - done));
      etcd_.ExpireLeases();
      Settle();
    }
  }
  // Advances in steps until `pred` holds; the time it took, or nullopt
  // after `limit`.
  std::optional<absl::Duration> AdvanceUntil(const std::function<bool()>& pred,
                                             absl::Duration limit) {
    const absl::Time start = clock_.Now();
    while (!pred()) {
      if (clock_.Now() - start >= limit) return std::nullopt;
      AdvanceBy(absl::Milliseconds(100));
    }
    return clock_.Now() - start;
  }
  std::vector<Candidate*> Leaders() {
    std::vector<Candidate*> out;
    for (auto& c : candidates_) {
      if (c->election->IsLeader()) out.push_back(c.get());
    }
    return out;
  }
  std::vector<EtcdKeyValue> Keys() {
    auto keys =
        etcd_.Get(prefix_ + "leader/", EtcdPrefixEnd(prefix_ + "leader/"));
    EXPECT_TRUE(keys.ok()) << keys.status();
    return keys.ok() ? *keys : std::vector<EtcdKeyValue>();
  }

  StepClock clock_;
  FakeEtcd etcd_{&clock_};
  const std::string prefix_ = "/hoist/";
  int running_ = 0;  // elections started and not stopped
  std::vector<std::unique_ptr<Candidate>> candidates_;
};

TEST_F(LeaderElectionFakeTest, ExactlyOneOfThreeLeadsAndKeepsLeading) {
  for (const char* name : {"receiver-a", "receiver-b", "receiver-c"}) Add(name);
  Settle();
  std::vector<Candidate*> leaders = Leaders();
  ASSERT_EQ(leaders.size(), 1u);
  Candidate* leader = leaders[0];

  // The keys follow DESIGN decision 14, and the leader's is the oldest.
  std::vector<EtcdKeyValue> keys = Keys();
  ASSERT_EQ(keys.size(), 3u);
  const EtcdKeyValue* oldest = &keys[0];
  for (const EtcdKeyValue& kv : keys) {
    EXPECT_THAT(kv.key, ::testing::MatchesRegex("/hoist/leader/[0-9a-f]{16}"));
    EXPECT_EQ(LeaseOfKey(kv.key), kv.lease);
    EXPECT_NE(kv.lease, 0);
    if (kv.create_revision < oldest->create_revision) oldest = &kv;
  }
  EXPECT_EQ(oldest->value, leader->name);
  std::optional<EtcdCompare> fence = leader->election->Fence();
  ASSERT_TRUE(fence.has_value());
  EXPECT_EQ(fence->key, oldest->key);
  EXPECT_EQ(fence->target, EtcdCompare::Target::kCreateRevision);
  EXPECT_EQ(fence->number, oldest->create_revision);
  EXPECT_EQ(leader->reports->fence()->number, fence->number);

  for (auto& c : candidates_) {
    EXPECT_EQ(c->election->LeaderName(), leader->name) << c->name;
    EXPECT_EQ(c->election->LeaderChanges(), 1) << c->name;
    EXPECT_EQ(c->reports->elected(), c.get() == leader ? 1 : 0) << c->name;
    if (c.get() != leader) {
      EXPECT_FALSE(c->election->Fence().has_value());
    }
  }

  // Keep-alives hold every lease: 30 s later nothing changed.
  AdvanceBy(absl::Seconds(30));
  EXPECT_EQ(Leaders(), std::vector<Candidate*>{leader});
  EXPECT_EQ(Keys().size(), 3u);
  for (auto& c : candidates_) EXPECT_EQ(c->reports->lost(), 0) << c->name;
}

TEST_F(LeaderElectionFakeTest, StopRevokesTheLeaseSoTheSuccessorLeadsAtOnce) {
  Candidate& a = Add("receiver-a");
  Settle();
  ASSERT_TRUE(a.election->IsLeader());
  Candidate& b = Add("receiver-b");
  Settle();
  const absl::Time before = clock_.Now();
  StopCandidate(a);
  EXPECT_EQ(a.reports->lost(), 1);  // reported during Stop()
  EXPECT_FALSE(a.election->IsLeader());
  Settle();  // no time passes
  EXPECT_TRUE(b.election->IsLeader());
  EXPECT_EQ(clock_.Now(), before);
  EXPECT_EQ(b.election->LeaderName(), "receiver-b");
  EXPECT_EQ(b.election->LeaderChanges(), 2);  // a, then itself
  EXPECT_EQ(Keys().size(), 1u);
}

// A leader whose keep-alives stop (its process paused, or cut off from
// etcd) is no leader from last keep-alive + lease - 1 s, before etcd can
// expire its lease and elect another; its fence stops its journal writes.
TEST_F(LeaderElectionFakeTest, CutOffLeaderLapsesAtLeaseMinusOneSecond) {
  Candidate& a = Add("receiver-a");
  Settle();
  Candidate& b = Add("receiver-b");
  Settle();
  ASSERT_TRUE(a.election->IsLeader());
  const EtcdCompare fence = *a.election->Fence();
  ASSERT_TRUE(FencedWrite(&etcd_, prefix_, fence).ok());

  const absl::Time cut = clock_.Now();
  a.view->SetCut(true);
  const absl::Time deadline = *a.election->LeadershipDeadline();
  // The last keep-alive was sent at most lease/3 before the cut.
  EXPECT_LE(deadline, cut + absl::Seconds(kLease - 1));
  EXPECT_GT(deadline, cut + absl::Seconds(kLease - 1) - absl::Seconds(2));
  AdvanceBy(deadline - absl::Milliseconds(1) - clock_.Now());
  EXPECT_TRUE(a.election->IsLeader());
  EXPECT_EQ(a.reports->lost(), 0);
  // False the moment the deadline comes, before its threads ran.
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_FALSE(a.election->IsLeader());
  EXPECT_FALSE(a.election->Fence().has_value());
  Settle();
  EXPECT_EQ(a.reports->lost(), 1);
  EXPECT_EQ(a.reports->lost_at(), deadline);
  EXPECT_FALSE(b.election->IsLeader());  // a's lease lives 1 s more

  std::optional<absl::Duration> failover =
      AdvanceUntil([&] { return b.election->IsLeader(); }, absl::Seconds(10));
  ASSERT_TRUE(failover.has_value());
  const absl::Duration since_cut = clock_.Now() - cut;
  std::cerr << "fake: b leads " << absl::FormatDuration(since_cut)
            << " after a was cut off\n";
  EXPECT_LE(since_cut, absl::Seconds(kLease + 2));
  EXPECT_FALSE(a.election->IsLeader());

  // a's writes reaching etcd now (a resumed) fail; b's go through.
  const absl::Status deposed = FencedWrite(&etcd_, prefix_, fence);
  EXPECT_EQ(deposed.code(), absl::StatusCode::kFailedPrecondition) << deposed;
  EXPECT_TRUE(FencedWrite(&etcd_, prefix_, *b.election->Fence()).ok());

  // Back in touch, a campaigns again and follows b.
  a.view->SetCut(false);
  ASSERT_TRUE(
      AdvanceUntil([&] { return a.election->LeaderName() == "receiver-b"; },
                   absl::Seconds(5)));
  EXPECT_EQ(Keys().size(), 2u);
  EXPECT_TRUE(b.election->IsLeader());
  EXPECT_FALSE(a.election->IsLeader());
}

// The campaign and keep-alive threads can each be inside an etcd call that
// takes the client's whole request timeout; leadership still ends, and
// on_lost runs, at the deadline.
TEST_F(LeaderElectionFakeTest, OnLostRunsAtTheDeadlineWhileEtcdCallsHang) {
  Candidate& a = Add("receiver-a", absl::InfiniteDuration());
  Settle();
  ASSERT_TRUE(a.election->IsLeader());
  const absl::Time deadline = *a.election->LeadershipDeadline();
  a.view->SetCut(true);  // every call of a now hangs until the cut ends
  // A change under leader/ makes a's campaign thread read (and hang).
  ASSERT_TRUE(etcd_.Put(prefix_ + "leader/zz", "intruder").ok());
  etcd_.WaitForDeliveries();
  ASSERT_TRUE(a.view->AwaitBlocked(1, absl::Seconds(10)));
  // Past the next keep-alive (lease / 3) and on to the deadline: the
  // keep-alive thread hangs too; only the lapse thread waits on the clock.
  clock_.Advance(deadline - clock_.Now());
  ASSERT_TRUE(a.view->AwaitBlocked(2, absl::Seconds(10)));
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(a.election->IsLeader());
  EXPECT_EQ(a.reports->lost(), 1);
  EXPECT_EQ(a.reports->lost_at(), deadline);
  EXPECT_EQ(a.view->blocked(), 2);

  // Once etcd answers again, a campaigns anew and leads again.
  ASSERT_EQ(*etcd_.Delete(prefix_ + "leader/zz"), 1);
  a.view->SetCut(false);
  ASSERT_TRUE(
      AdvanceUntil([&] { return a.election->IsLeader(); }, absl::Seconds(5)));
  EXPECT_EQ(a.reports->elected(), 2);
  EXPECT_EQ(a.reports->lost(), 1);
}

TEST_F(LeaderElectionFakeTest,
       LeaseOrKeyGoneEndsLeadershipAndItCampaignsAgain) {
  Candidate& a = Add("receiver-a");
  Settle();
  ASSERT_TRUE(a.election->IsLeader());
  const EtcdCompare first = *a.election->Fence();

  // Lease revoked behind its back: keep-alive NotFound, key deleted.
  ASSERT_TRUE(etcd_.RevokeLease(LeaseOfKey(first.key)).ok());
  Settle();
  EXPECT_EQ(a.reports->lost(), 1);
  EXPECT_EQ(a.reports->elected(), 2);
  ASSERT_TRUE(a.election->IsLeader());
  const EtcdCompare second = *a.election->Fence();
  EXPECT_NE(second.key, first.key);
  EXPECT_GT(second.number, first.number);
  // The old fence no longer holds.
  auto txn = etcd_.Txn({first}, {EtcdOp::Put(prefix_ + "x", "1")}, {});
  ASSERT_TRUE(txn.ok());
  EXPECT_FALSE(txn->succeeded);

  // Only the key deleted (the lease lives on): seen through the watch.
  ASSERT_EQ(*etcd_.Delete(second.key), 1);
  Settle();
  EXPECT_EQ(a.reports->lost(), 2);
  EXPECT_EQ(a.reports->elected(), 3);
  ASSERT_TRUE(a.election->IsLeader());
  EXPECT_NE(a.election->Fence()->key, second.key);
  EXPECT_EQ(a.election->LeaderChanges(), 3);
  // The old lease was revoked, not left to expire.
  EXPECT_EQ(etcd_.KeepAliveOnce(LeaseOfKey(second.key)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LeaderElectionFakeTest,
       UnavailableEtcdIsRetriedWithBackoffUpToTwoSeconds) {
  Candidate& a = Add("receiver-a");
  Settle();
  ASSERT_TRUE(a.election->IsLeader());
  const absl::Time deadline = *a.election->LeadershipDeadline();
  etcd_.SetUnavailable(true);
  const int64_t calls_before = a.view->calls();
  AdvanceBy(absl::Seconds(30));
  EXPECT_FALSE(a.election->IsLeader());
  EXPECT_EQ(a.reports->lost(), 1);
  EXPECT_GE(a.reports->lost_at(), deadline);  // time moves in 100 ms steps
  EXPECT_LT(a.reports->lost_at(), deadline + absl::Milliseconds(100));
  // Retried, but no more than backoff allows: with 100 ms doubling to 2 s,
  // about 30 calls in 30 s for both threads together.
  const int64_t calls = a.view->calls() - calls_before;
  std::cerr << "fake: " << calls << " etcd calls in 30 s without etcd\n";
  EXPECT_GE(calls, 10);
  EXPECT_LE(calls, 60);

  etcd_.SetUnavailable(false);
  std::optional<absl::Duration> back =
      AdvanceUntil([&] { return a.election->IsLeader(); }, absl::Seconds(5));
  ASSERT_TRUE(back.has_value());
  std::cerr << "fake: leads again " << absl::FormatDuration(*back)
            << " after etcd is back\n";
  EXPECT_LE(*back, absl::Seconds(2) + absl::Milliseconds(100));
  EXPECT_EQ(a.reports->elected(), 2);
}

TEST(LeaderElectionOptionsTest, RejectsBadOptionsAndASecondStart) {
  FakeClock clock;
  FakeEtcd etcd(&clock);
  LeaderElectionOptions options;
  options.client = &etcd;
  options.name = "r";
  options.clock = &clock;
  for (int64_t seconds : {1, 61}) {
    options.lease_seconds = seconds;
    EXPECT_EQ(LeaderElection::Create(options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  options.lease_seconds = 2;
  LeaderElectionOptions no_name = options;
  no_name.name = "";
  EXPECT_EQ(LeaderElection::Create(no_name).status().code(),
            absl::StatusCode::kInvalidArgument);
  LeaderElectionOptions no_client = options;
  no_client.client = nullptr;
  EXPECT_EQ(LeaderElection::Create(no_client).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto e = LeaderElection::Create(options);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE((*e)->Start().ok());
  EXPECT_EQ((*e)->Start().code(), absl::StatusCode::kFailedPrecondition);
  (*e)->Stop();
  (*e)->Stop();
  EXPECT_FALSE((*e)->IsLeader());
  EXPECT_FALSE((*e)->AwaitLeadership(absl::Seconds(1)));
}

// ---- A real 3-member etcd cluster ----

class LeaderElectionClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> c = EtcdCluster::Start(3);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    for (int i = 0; i < 3; ++i) {
      auto client = Connect();
      ASSERT_NE(client, nullptr);
      std::unique_ptr<Candidate> cand =
          MakeCandidate(absl::StrCat("receiver-", i, ":8443"), prefix_,
                        client.get(), nullptr, absl::Seconds(1));
      ASSERT_NE(cand, nullptr);
      cand->client = std::move(client);
      candidates_.push_back(std::move(cand));
    }
    monitor_ = std::thread([this] { Monitor(); });
  }
  void TearDown() override {
    {
      absl::MutexLock lock(&mu_);
      stop_monitor_ = true;
    }
    if (monitor_.joinable()) monitor_.join();
    EXPECT_LE(max_leaders_, 1) << "two candidates led at once";
    for (auto& c : candidates_) c->view->SetCut(false);
    candidates_.clear();  // stops them while etcd still runs
  }

  std::unique_ptr<EtcdClient> Connect() {
    EtcdClientOptions options;
    options.endpoints = cluster_->client_endpoints();
    options.request_timeout = absl::Seconds(3);
    auto client = EtcdClientGrpc::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // Samples every candidate's IsLeader() every 5 ms.
  void Monitor() {
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stop_monitor_),
                                 absl::Milliseconds(5))) {
      int leaders = 0;
      for (auto& c : candidates_) leaders += c->election->IsLeader() ? 1 : 0;
      max_leaders_ = std::max(max_leaders_, leaders);
    }
  }

  // The one candidate that leads, or nullptr (none, or several).
  Candidate* Leader() {
    Candidate* leader = nullptr;
    for (auto& c : candidates_) {
      if (!c->election->IsLeader()) continue;
      if (leader != nullptr) return nullptr;
      leader = c.get();
    }
    return leader;
  }
  // Waits up to `timeout` for a leader other than `not_this`.
  Candidate* AwaitLeader(absl::Duration timeout,
                         const Candidate* not_this = nullptr) {
    Candidate* leader = nullptr;
    WaitFor(
        [&] {
          leader = Leader();
          return leader != nullptr && leader != not_this;
        },
        timeout);
    return leader != not_this ? leader : nullptr;
  }

  std::unique_ptr<EtcdCluster> cluster_;
  const std::string prefix_ = UniquePrefix();
  std::vector<std::unique_ptr<Candidate>> candidates_;
  std::thread monitor_;
  absl::Mutex mu_;
  bool stop_monitor_ ABSL_GUARDED_BY(mu_) = false;
  int max_leaders_ = 0;  // monitor thread, then TearDown after the join
};

TEST_F(LeaderElectionClusterTest, ExactlyOneOfThreeLeadsAndTheOthersNameIt) {
  Candidate* leader = AwaitLeader(absl::Seconds(10));
  ASSERT_NE(leader, nullptr);
  for (auto& c : candidates_) {
    ASSERT_TRUE(
        WaitFor([&] { return c->election->LeaderName() == leader->name; },
                absl::Seconds(5)))
        << c->name << " names " << c->election->LeaderName().value_or("none");
  }
  auto keys = candidates_[0]->client->Get(prefix_ + "leader/",
                                          EtcdPrefixEnd(prefix_ + "leader/"));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 3u);
  for (const EtcdKeyValue& kv : *keys) {
    EXPECT_EQ(LeaseOfKey(kv.key), kv.lease) << kv.key;
  }
  EXPECT_EQ(leader->reports->elected(), 1);
  // Its fence is one etcd accepts and holds.
  EXPECT_TRUE(
      FencedWrite(leader->client.get(), prefix_, *leader->election->Fence())
          .ok());
  // AwaitLeadership answers for the leader and times out for the others.
  EXPECT_TRUE(leader->election->AwaitLeadership(absl::Seconds(1)));
  for (auto& c : candidates_) {
    if (c.get() != leader) {
      EXPECT_FALSE(c->election->AwaitLeadership(absl::Milliseconds(100)));
    }
  }
}

TEST_F(LeaderElectionClusterTest, StopOfTheLeaderHandsOverAtOnce) {
  Candidate* leader = AwaitLeader(absl::Seconds(10));
  ASSERT_NE(leader, nullptr);
  // Every candidate has its key in place before the leader goes.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& c : candidates_) {
          if (c->election->LeaderName() != leader->name) return false;
        }
        return true;
      },
      absl::Seconds(5)));
  const absl::Time start = absl::Now();
  leader->election->Stop();
  const absl::Duration stop_took = absl::Now() - start;
  EXPECT_EQ(leader->reports->lost(), 1);
  Candidate* next = AwaitLeader(absl::Seconds(kLease + 2), leader);
  const absl::Duration handover = absl::Now() - start;
  ASSERT_NE(next, nullptr);
  std::cerr << "real: Stop() took " << absl::FormatDuration(stop_took)
            << ", successor leads " << absl::FormatDuration(handover)
            << " after Stop() began\n";
  EXPECT_LT(handover, absl::Seconds(1));  // not the lease TTL
  EXPECT_TRUE(
      FencedWrite(next->client.get(), prefix_, *next->election->Fence()).ok());
}

// A receiver cut off from etcd (a paused process, a partition) stops
// leading by its last keep-alive + lease - 1 s, another leads within
// lease + 2 s, and the cut-off one's journal writes fail on its fence.
TEST_F(LeaderElectionClusterTest, CutOffLeaderStepsDownAndIsReplacedInTime) {
  Candidate* leader = AwaitLeader(absl::Seconds(10));
  ASSERT_NE(leader, nullptr);
  const EtcdCompare fence = *leader->election->Fence();
  const absl::Time cut = absl::Now();
  leader->view->SetCut(true);
  ASSERT_TRUE(WaitFor([&] { return !leader->election->IsLeader(); },
                      absl::Seconds(kLease)));
  const absl::Duration stepped_down = absl::Now() - cut;
  ASSERT_TRUE(WaitFor([&] { return leader->reports->lost() == 1; },
                      absl::Seconds(kLease)));
  const absl::Duration on_lost = leader->reports->lost_at() - cut;
  Candidate* next = AwaitLeader(absl::Seconds(kLease + 3), leader);
  const absl::Duration failover = absl::Now() - cut;
  ASSERT_NE(next, nullptr);
  std::cerr << "real: cut-off leader stepped down after "
            << absl::FormatDuration(stepped_down) << " (on_lost after "
            << absl::FormatDuration(on_lost) << "), another leads after "
            << absl::FormatDuration(failover) << "\n";
  // Its calls hang while cut (a keep-alive or read may be stuck in one), yet
  // it steps down on time; 50 ms for WaitFor's polling and scheduling.
  EXPECT_LE(stepped_down, absl::Seconds(kLease - 1) + absl::Milliseconds(50));
  EXPECT_LE(on_lost, absl::Seconds(kLease - 1) + absl::Milliseconds(50));
  EXPECT_LE(failover, absl::Seconds(kLease + 2));
  EXPECT_EQ(leader->reports->lost(), 1);

  const absl::Status deposed =
      FencedWrite(leader->client.get(), prefix_, fence);
  EXPECT_EQ(deposed.code(), absl::StatusCode::kFailedPrecondition) << deposed;
  EXPECT_TRUE(
      FencedWrite(next->client.get(), prefix_, *next->election->Fence()).ok());

  leader->view->SetCut(false);
  EXPECT_TRUE(
      WaitFor([&] { return leader->election->LeaderName() == next->name; },
              absl::Seconds(10)));
  EXPECT_TRUE(next->election->IsLeader());
}

TEST_F(LeaderElectionClusterTest, EtcdLeaderKilledSomeoneStillLeads) {
  Candidate* leader = AwaitLeader(absl::Seconds(10));
  ASSERT_NE(leader, nullptr);
  const int etcd_leader = cluster_->Leader();
  ASSERT_GE(etcd_leader, 0);
  const absl::Time start = absl::Now();
  cluster_->Kill(etcd_leader);
  // Leadership may or may not survive the etcd election; either way a
  // leader is there again within lease + 2 s and its fence works.
  Candidate* now = nullptr;
  ASSERT_TRUE(WaitFor(
      [&] {
        now = Leader();
        return now != nullptr &&
               FencedWrite(now->client.get(), prefix_, *now->election->Fence())
                   .ok();
      },
      absl::Seconds(kLease + 2)));
  std::cerr << "real: etcd leader killed; " << now->name
            << (now == leader ? " (same)" : " (new)")
            << " leads and writes after "
            << absl::FormatDuration(absl::Now() - start) << "; " << leader->name
            << " lost leadership " << leader->reports->lost() << " times\n";
  // And it holds on for longer than a lease.
  const int lost = now->reports->lost();
  EXPECT_FALSE(WaitFor([&] { return now->reports->lost() != lost; },
                       absl::Seconds(kLease + 1)));
  EXPECT_TRUE(now->election->IsLeader());
}

TEST_F(LeaderElectionClusterTest, NoQuorumLeaderStepsDownThenSomeoneLeads) {
  Candidate* leader = AwaitLeader(absl::Seconds(10));
  ASSERT_NE(leader, nullptr);
  const absl::Time start = absl::Now();
  cluster_->Kill(1);
  cluster_->Kill(2);
  ASSERT_TRUE(WaitFor([&] { return !leader->election->IsLeader(); },
                      absl::Seconds(kLease + 2)));
  const absl::Duration stepped_down = absl::Now() - start;
  ASSERT_TRUE(WaitFor([&] { return leader->reports->lost() == 1; },
                      absl::Seconds(kLease)));
  const absl::Duration on_lost = leader->reports->lost_at() - start;
  std::cerr << "real: no quorum; leader stepped down after "
            << absl::FormatDuration(stepped_down) << " (on_lost after "
            << absl::FormatDuration(on_lost) << ")\n";
  // By lease - 1 s after the last keep-alive; etcd's own leader may renew
  // until it notices the lost quorum (election timeout, 500 ms here). Its
  // reads and keep-alives wait up to 3 s for etcd meanwhile: on_lost must
  // not wait for them.
  EXPECT_LE(stepped_down, absl::Seconds(kLease - 1) + absl::Seconds(1));
  EXPECT_LE(on_lost, absl::Seconds(kLease - 1) + absl::Seconds(1));
  EXPECT_EQ(Leader(), nullptr);

  const absl::Time restart = absl::Now();
  ASSERT_TRUE(cluster_->Restart(1).ok());  // quorum again with member 0
  const absl::Duration restart_took = absl::Now() - restart;
  ASSERT_TRUE(cluster_->Restart(2).ok());
  Candidate* next = AwaitLeader(absl::Seconds(30));
  ASSERT_NE(next, nullptr);
  std::cerr << "real: " << next->name << " leads by "
            << absl::FormatDuration(absl::Now() - restart)
            << " after the first member's restart began (which took "
            << absl::FormatDuration(restart_took) << ")\n";
  EXPECT_TRUE(
      FencedWrite(next->client.get(), prefix_, *next->election->Fence()).ok());
}

}  // namespace
}  // namespace hoist::receiver
