// EtcdClient's contract (receiver/etcd_client.h) against a real 3-member
// etcd cluster (EtcdClientGrpc) and against FakeEtcd: the typed tests run
// the same cases on both, so the fake provably behaves like etcd. The
// EtcdClientGrpcFailover tests kill, restart and lose members.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/etcd_client_grpc.h"
#include "tests/harness/etcd_cluster.h"
#include "tests/harness/harness.h"
#include "tests/receiver/fake_etcd.h"

namespace hoist::receiver {
namespace {

using ::hoist::testing::EtcdCluster;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records a watch's events and end, and lets the test wait for them.
class WatchRecorder {
 public:
  EtcdEventsCallback OnEvents() {
    return [this](const std::vector<EtcdWatchEvent>& events, int64_t) {
      absl::MutexLock lock(&mu_);
      for (const EtcdWatchEvent& e : events) events_.push_back(e);
    };
  }
  EtcdDoneCallback OnDone() {
    return [this](absl::Status s) {
      absl::MutexLock lock(&mu_);
      ++done_calls_;
      done_ = s;
    };
  }
  // Waits until `n` events arrived; returns them all.
  std::vector<EtcdWatchEvent> AwaitEvents(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return events_.size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return events_;
  }
  absl::Status AwaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done_calls_ > 0;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ended), timeout)) {
      return absl::DeadlineExceededError("watch did not end");
    }
    return done_;
  }
  int done_calls() {
    absl::MutexLock lock(&mu_);
    return done_calls_;
  }

 private:
  absl::Mutex mu_;
  std::vector<EtcdWatchEvent> events_ ABSL_GUARDED_BY(mu_);
  int done_calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status done_ ABSL_GUARDED_BY(mu_);
};

std::string UniquePrefix() {
  static std::atomic<int> n{0};
  return absl::StrCat("/t", getpid(), "-", absl::ToUnixMicros(absl::Now()), "-",
                      n++, "/");
}

// The real client, through the interface (whose default arguments apply).
std::unique_ptr<EtcdClient> Connect(const EtcdCluster& cluster,
                                    absl::Duration timeout) {
  EtcdClientOptions options;
  options.endpoints = cluster.client_endpoints();
  options.request_timeout = timeout;
  absl::StatusOr<std::unique_ptr<EtcdClientGrpc>> client =
      EtcdClientGrpc::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

// The real client with member `first`'s endpoint first: the member it
// talks to until that one fails.
std::unique_ptr<EtcdClient> ConnectFirst(const EtcdCluster& cluster, int first,
                                         absl::Duration timeout) {
  EtcdClientOptions options;
  options.endpoints = cluster.client_endpoints();
  std::rotate(options.endpoints.begin(), options.endpoints.begin() + first,
              options.endpoints.end());
  options.request_timeout = timeout;
  absl::StatusOr<std::unique_ptr<EtcdClientGrpc>> client =
      EtcdClientGrpc::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

// A member that is not the leader: killing it starts no election, so no
// call may fail (a write during an election can fail UNAVAILABLE).
int Follower(const EtcdCluster& cluster) {
  return cluster.Leader() == 0 ? 1 : 0;
}

// ---- The same cases on both ----

// FakeEtcd on a FakeClock: time passes when told.
class FakeBackend {
 public:
  EtcdClient* client() { return &etcd_; }
  // Lets `ttl` and a little more pass, then checks `gone` once.
  bool AwaitLeaseExpiry(const std::function<bool()>& gone, int64_t ttl) {
    clock_.Advance(absl::Seconds(ttl + 1));
    return gone();
  }
  // Lets `span` pass while `keep_alive` runs (it returns whether the key is
  // still there); false as soon as it is not.
  bool KeepAliveFor(const std::function<bool()>& keep_alive, int64_t span) {
    for (int i = 0; i < 4 * span; ++i) {
      clock_.Advance(absl::Milliseconds(250));
      if (!keep_alive()) return false;
    }
    return true;
  }

 private:
  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
};

// EtcdClientGrpc on one cluster shared by the typed tests.
class RealBackend {
 public:
  RealBackend() {
    if (Cluster() != nullptr) client_ = Connect(*Cluster(), absl::Seconds(3));
  }
  // Started on first use; destroyed at exit, which stops its members and
  // removes their data.
  static EtcdCluster* Cluster() {
    static const std::unique_ptr<EtcdCluster> cluster = [] {
      absl::StatusOr<std::unique_ptr<EtcdCluster>> c = EtcdCluster::Start();
      EXPECT_TRUE(c.ok()) << c.status();
      return c.ok() ? *std::move(c) : nullptr;
    }();
    return cluster.get();
  }
  EtcdClient* client() { return client_.get(); }
  bool AwaitLeaseExpiry(const std::function<bool()>& gone, int64_t ttl) {
    return hoist::testing::WaitFor(gone, absl::Seconds(ttl + 10));
  }
  bool KeepAliveFor(const std::function<bool()>& keep_alive, int64_t span) {
    const absl::Time end = absl::Now() + absl::Seconds(span);
    while (absl::Now() < end) {  // each turn is two round trips to etcd
      if (!keep_alive()) return false;
    }
    return true;
  }

 private:
  std::unique_ptr<EtcdClient> client_;
};

template <typename Backend>
class EtcdContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(backend_.client(), nullptr) << "no etcd (see the first failure)";
  }
  EtcdClient& etcd() { return *backend_.client(); }
  Backend backend_;
  const std::string p_ = UniquePrefix();
};

using Backends = ::testing::Types<FakeBackend, RealBackend>;
TYPED_TEST_SUITE(EtcdContractTest, Backends);

TYPED_TEST(EtcdContractTest, PutGetAndPrefixGetSortedByKey) {
  EtcdClient& etcd = this->etcd();
  const std::string& p = this->p_;
  ASSERT_TRUE(etcd.Put(p + "b", "2").ok());
  ASSERT_TRUE(etcd.Put(p + "c", "3").ok());
  absl::StatusOr<int64_t> rev = etcd.Put(p + "a", "1");
  ASSERT_TRUE(rev.ok()) << rev.status();
  absl::StatusOr<std::vector<EtcdKeyValue>> one = etcd.Get(p + "a");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].value, "1");
  EXPECT_EQ((*one)[0].create_revision, *rev);
  EXPECT_EQ((*one)[0].mod_revision, *rev);
  EXPECT_EQ((*one)[0].version, 1);
  absl::StatusOr<std::vector<EtcdKeyValue>> all = etcd.Get(p, EtcdPrefixEnd(p));
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::string> keys;
  for (const EtcdKeyValue& kv : *all) keys.push_back(kv.key);
  EXPECT_THAT(keys, ElementsAre(p + "a", p + "b", p + "c"));
  absl::StatusOr<std::vector<EtcdKeyValue>> limited =
      etcd.Get(p, EtcdPrefixEnd(p), 2);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 2u);
  // A second write keeps create_revision and counts the version.
  absl::StatusOr<int64_t> rev2 = etcd.Put(p + "a", "1b");
  ASSERT_TRUE(rev2.ok());
  EXPECT_GT(*rev2, *rev);
  absl::StatusOr<std::vector<EtcdKeyValue>> again = etcd.Get(p + "a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].create_revision, *rev);
  EXPECT_EQ((*again)[0].mod_revision, *rev2);
  EXPECT_EQ((*again)[0].version, 2);
  EXPECT_EQ(etcd.Get("").status().code(), absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(EtcdContractTest, DeleteCountsKeys) {
  EtcdClient& etcd = this->etcd();
  const std::string& p = this->p_;
  for (const char* k : {"x", "y", "z"}) ASSERT_TRUE(etcd.Put(p + k, k).ok());
  absl::StatusOr<int64_t> one = etcd.Delete(p + "x");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, 1);
  EXPECT_EQ(*etcd.Delete(p + "x"), 0);
  EXPECT_EQ(*etcd.Delete(p, EtcdPrefixEnd(p)), 2);
  EXPECT_THAT(*etcd.Get(p, EtcdPrefixEnd(p)), IsEmpty());
}

TYPED_TEST(EtcdContractTest, TxnCreateIfAbsentSucceedsOnce) {
  EtcdClient& etcd = this->etcd();
  const std::string key = this->p_ + "dedupe";
  const std::vector<EtcdCompare> absent = {
      {key, EtcdCompare::Target::kCreateRevision, EtcdCompare::Result::kEqual,
       0, ""}};
  absl::StatusOr<EtcdTxnResult> first =
      etcd.Txn(absent, {EtcdOp::Put(key, "first")}, {EtcdOp::Get(key)});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded);
  EXPECT_THAT(first->gets, IsEmpty());
  absl::StatusOr<EtcdTxnResult> second =
      etcd.Txn(absent, {EtcdOp::Put(key, "second")}, {EtcdOp::Get(key)});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->gets.size(), 1u);
  ASSERT_EQ(second->gets[0].size(), 1u);
  EXPECT_EQ(second->gets[0][0].value, "first");
  EXPECT_EQ(second->gets[0][0].create_revision, first->revision);
  EXPECT_EQ(second->revision, first->revision);  // nothing written
}

TYPED_TEST(EtcdContractTest, TxnComparesModRevision) {
  EtcdClient& etcd = this->etcd();
  const std::string key = this->p_ + "fenced";
  absl::StatusOr<int64_t> rev = etcd.Put(key, "v1");
  ASSERT_TRUE(rev.ok());
  const std::vector<EtcdCompare> unchanged = {
      {key, EtcdCompare::Target::kModRevision, EtcdCompare::Result::kEqual,
       *rev, ""}};
  absl::StatusOr<EtcdTxnResult> ok =
      etcd.Txn(unchanged, {EtcdOp::Put(key, "v2")}, {});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->succeeded);
  absl::StatusOr<EtcdTxnResult> stale =
      etcd.Txn(unchanged, {EtcdOp::Put(key, "v3")}, {});
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ((*etcd.Get(key))[0].value, "v2");
  const std::vector<EtcdCompare> value_is_v2 = {
      {key, EtcdCompare::Target::kValue, EtcdCompare::Result::kEqual, 0, "v2"}};
  EXPECT_TRUE(etcd.Txn(value_is_v2, {}, {})->succeeded);
}

TYPED_TEST(EtcdContractTest, LeaseKeyGoesAfterTtlUnlessKeptAlive) {
  EtcdClient& etcd = this->etcd();
  const std::string kept = this->p_ + "kept";
  const std::string dropped = this->p_ + "dropped";
  constexpr int64_t kTtl = 2;
  absl::StatusOr<int64_t> lease_kept = etcd.GrantLease(kTtl);
  absl::StatusOr<int64_t> lease_dropped = etcd.GrantLease(kTtl);
  ASSERT_TRUE(lease_kept.ok()) << lease_kept.status();
  ASSERT_TRUE(lease_dropped.ok());
  ASSERT_TRUE(etcd.Put(kept, "k", *lease_kept).ok());
  ASSERT_TRUE(etcd.Put(dropped, "d", *lease_dropped).ok());
  EXPECT_EQ((*etcd.Get(kept))[0].lease, *lease_kept);
  // Kept alive for twice its TTL, the key stays ...
  EXPECT_TRUE(this->backend_.KeepAliveFor(
      [&] {
        absl::StatusOr<int64_t> ttl = etcd.KeepAliveOnce(*lease_kept);
        return ttl.ok() && *ttl == kTtl && etcd.Get(kept)->size() == 1;
      },
      2 * kTtl));
  // ... while the other one went.
  EXPECT_TRUE(this->backend_.AwaitLeaseExpiry(
      [&] { return etcd.Get(dropped)->empty(); }, kTtl));
  EXPECT_EQ(etcd.KeepAliveOnce(*lease_dropped).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(etcd.Put(dropped, "x", *lease_dropped).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<int64_t> revoked = etcd.GrantLease(kTtl);
  ASSERT_TRUE(revoked.ok());
  ASSERT_TRUE(etcd.Put(kept, "r", *revoked).ok());
  ASSERT_TRUE(etcd.RevokeLease(*revoked).ok());
  EXPECT_THAT(*etcd.Get(kept), IsEmpty());
  EXPECT_EQ(etcd.GrantLease(0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(EtcdContractTest, WatchFromPastRevisionSeesEverythingInOrder) {
  EtcdClient& etcd = this->etcd();
  const std::string& p = this->p_;
  absl::StatusOr<int64_t> r1 = etcd.Put(p + "a", "1");
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(etcd.Put(p + "b", "2").ok());
  ASSERT_TRUE(etcd.Put("/elsewhere" + p, "x").ok());  // outside the range
  WatchRecorder rec;
  std::unique_ptr<EtcdWatch> watch =
      etcd.Watch(p, EtcdPrefixEnd(p), *r1, rec.OnEvents(), rec.OnDone());
  ASSERT_TRUE(etcd.Put(p + "a", "3").ok());
  absl::StatusOr<int64_t> last = etcd.Delete(p + "b");
  ASSERT_TRUE(last.ok());
  std::vector<EtcdWatchEvent> events = rec.AwaitEvents(4, absl::Seconds(10));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].kv.key, p + "a");
  EXPECT_EQ(events[0].kv.mod_revision, *r1);
  EXPECT_EQ(events[1].kv.key, p + "b");
  EXPECT_EQ(events[2].kv.value, "3");
  EXPECT_EQ(events[2].kv.version, 2);
  EXPECT_EQ(events[3].type, EtcdWatchEvent::Type::kDelete);
  EXPECT_EQ(events[3].kv.key, p + "b");
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GT(events[i].kv.mod_revision, events[i - 1].kv.mod_revision);
  }
  watch->Cancel();
  EXPECT_EQ(rec.AwaitDone(absl::ZeroDuration()).code(),
            absl::StatusCode::kCancelled);
  watch->Cancel();
  EXPECT_EQ(rec.done_calls(), 1);
}

TYPED_TEST(EtcdContractTest, WatchFromNowSeesOnlyLaterChanges) {
  EtcdClient& etcd = this->etcd();
  const std::string key = this->p_ + "k";
  ASSERT_TRUE(etcd.Put(key, "before").ok());
  WatchRecorder rec;
  std::unique_ptr<EtcdWatch> watch =
      etcd.Watch(key, "", 0, rec.OnEvents(), rec.OnDone());
  // A watch from now is in place once a write after it is seen; write until
  // then (the real one is created asynchronously).
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return etcd.Put(key, "after").ok() &&
               !rec.AwaitEvents(1, absl::Milliseconds(200)).empty();
      },
      absl::Seconds(10)));
  for (const EtcdWatchEvent& e : rec.AwaitEvents(1, absl::ZeroDuration())) {
    EXPECT_EQ(e.kv.value, "after");
  }
  watch.reset();  // cancels
  EXPECT_EQ(rec.done_calls(), 1);
}

// ---- Only the real cluster: members lost and back ----

class EtcdClientGrpcFailover : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> c = EtcdCluster::Start();
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
  }
  std::unique_ptr<EtcdCluster> cluster_;
  const std::string p_ = UniquePrefix();
};

TEST_F(EtcdClientGrpcFailover, OneMemberKilledEveryCallStillWorks) {
  const int victim = Follower(*cluster_);
  std::unique_ptr<EtcdClient> etcd =
      ConnectFirst(*cluster_, victim, absl::Seconds(3));
  ASSERT_TRUE(etcd->Put(p_ + "k", "v").ok());  // connected to the victim
  cluster_->Kill(victim);
  const absl::Time start = absl::Now();
  absl::StatusOr<int64_t> put = etcd->Put(p_ + "k", "v2");
  const absl::Duration first_call = absl::Now() - start;
  ASSERT_TRUE(put.ok()) << put.status();
  std::cerr << "first call after killing the member it used: "
            << absl::FormatDuration(first_call) << "\n";
  EXPECT_LT(first_call, absl::Seconds(3));
  EXPECT_EQ((*etcd->Get(p_ + "k"))[0].value, "v2");
  EXPECT_EQ(*etcd->Delete(p_ + "k"), 1);
  EXPECT_TRUE(etcd->Txn({}, {EtcdOp::Put(p_ + "t", "1")}, {})->succeeded);
  absl::StatusOr<int64_t> lease = etcd->GrantLease(5);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_TRUE(etcd->KeepAliveOnce(*lease).ok());
  EXPECT_TRUE(etcd->RevokeLease(*lease).ok());
}

// Killing the leader starts an election: writes may fail UNAVAILABLE for
// its length (etcd_client.h), then every call works again.
TEST_F(EtcdClientGrpcFailover, LeaderKilledCallsWorkAgainAfterTheElection) {
  const int leader = cluster_->Leader();
  ASSERT_GE(leader, 0);
  std::unique_ptr<EtcdClient> etcd =
      ConnectFirst(*cluster_, leader, absl::Seconds(3));
  ASSERT_TRUE(etcd->Put(p_ + "k", "v").ok());
  cluster_->Kill(leader);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] { return etcd->Put(p_ + "k", "v2").ok(); }, absl::Seconds(15)));
  std::cerr << "writes again " << absl::FormatDuration(absl::Now() - start)
            << " after the leader was killed\n";
  EXPECT_EQ((*etcd->Get(p_ + "k"))[0].value, "v2");
  EXPECT_TRUE(etcd->Txn({}, {EtcdOp::Put(p_ + "t", "1")}, {})->succeeded);
  absl::StatusOr<int64_t> lease = etcd->GrantLease(5);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_TRUE(etcd->KeepAliveOnce(*lease).ok());
}

TEST_F(EtcdClientGrpcFailover, NoQuorumFailsUnavailableInTimeAndRecovers) {
  constexpr absl::Duration kTimeout = absl::Seconds(1);
  std::unique_ptr<EtcdClient> etcd = Connect(*cluster_, kTimeout);
  ASSERT_TRUE(etcd->Put(p_ + "k", "v").ok());
  cluster_->Kill(0);
  cluster_->Kill(1);
  for (int call = 0; call < 3; ++call) {
    const absl::Time start = absl::Now();
    absl::Status s = call == 0   ? etcd->Put(p_ + "k", "v2").status()
                     : call == 1 ? etcd->Get(p_ + "k").status()
                                 : etcd->GrantLease(5).status();
    const absl::Duration took = absl::Now() - start;
    std::cerr << "call " << call << " without quorum: " << s << " after "
              << absl::FormatDuration(took) << "\n";
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_LT(took, 3 * kTimeout);  // a contract, not a benchmark
  }
  ASSERT_TRUE(cluster_->Restart(0).ok());
  ASSERT_TRUE(cluster_->Restart(1).ok());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(hoist::testing::WaitFor(
      [&] { return etcd->Put(p_ + "k", "v3").ok(); }, absl::Seconds(20)));
  std::cerr << "client usable again "
            << absl::FormatDuration(absl::Now() - start)
            << " after the members were back\n";
  EXPECT_EQ((*etcd->Get(p_ + "k"))[0].value, "v3");
}

TEST_F(EtcdClientGrpcFailover, WatchResumesOnAnotherMember) {
  const int victim = Follower(*cluster_);
  std::unique_ptr<EtcdClient> etcd =
      ConnectFirst(*cluster_, victim, absl::Seconds(3));
  WatchRecorder rec;
  std::unique_ptr<EtcdWatch> watch =
      etcd->Watch(p_, EtcdPrefixEnd(p_), 0, rec.OnEvents(), rec.OnDone());
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return etcd->Put(p_ + "before", "1").ok() &&
               !rec.AwaitEvents(1, absl::Milliseconds(200)).empty();
      },
      absl::Seconds(10)));
  const size_t seen = rec.AwaitEvents(1, absl::ZeroDuration()).size();
  cluster_->Kill(victim);  // the member the watch reads from
  const absl::Time start = absl::Now();
  // No election (a follower died): each write applies exactly once.
  absl::StatusOr<int64_t> put = etcd->Put(p_ + "after", "2");
  ASSERT_TRUE(put.ok()) << put.status();
  absl::StatusOr<int64_t> deleted = etcd->Delete(p_ + "before");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  std::vector<EtcdWatchEvent> events =
      rec.AwaitEvents(seen + 2, absl::Seconds(10));
  std::cerr << "watch resumed after "
            << absl::FormatDuration(absl::Now() - start) << "\n";
  ASSERT_EQ(events.size(), seen + 2);
  EXPECT_EQ(events[seen].kv.key, p_ + "after");
  EXPECT_EQ(events[seen + 1].type, EtcdWatchEvent::Type::kDelete);
  EXPECT_EQ(rec.done_calls(), 0);
}

TEST_F(EtcdClientGrpcFailover, WatchEndsUnavailableWithoutQuorum) {
  constexpr absl::Duration kTimeout = absl::Seconds(1);
  std::unique_ptr<EtcdClient> etcd = Connect(*cluster_, kTimeout);
  WatchRecorder rec;
  std::unique_ptr<EtcdWatch> watch =
      etcd->Watch(p_, EtcdPrefixEnd(p_), 0, rec.OnEvents(), rec.OnDone());
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return etcd->Put(p_ + "x", "1").ok() &&
               !rec.AwaitEvents(1, absl::Milliseconds(200)).empty();
      },
      absl::Seconds(10)));
  cluster_->Kill(1);
  cluster_->Kill(2);
  const absl::Time start = absl::Now();
  absl::Status done = rec.AwaitDone(absl::Seconds(30));
  std::cerr << "watch ended " << done << " after "
            << absl::FormatDuration(absl::Now() - start) << "\n";
  EXPECT_EQ(done.code(), absl::StatusCode::kUnavailable) << done;
}

}  // namespace
}  // namespace hoist::receiver
