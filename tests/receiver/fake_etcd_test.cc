// FakeEtcd's own behaviour beyond the contract cases it shares with real
// etcd (tests/receiver/etcd_client_test.cc): unavailable mode, lease expiry
// on a FakeClock to the second, compaction, the watch's Cancel contract.
#include "tests/receiver/fake_etcd.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

using ::testing::IsEmpty;

TEST(FakeEtcdTest, UnavailableFailsEveryCallAndEndsWatches) {
  FakeClock clock;
  FakeEtcd etcd(&clock);
  absl::Status done;
  std::unique_ptr<EtcdWatch> watch = etcd.Watch(
      "/k", "", 0, [](const std::vector<EtcdWatchEvent>&, int64_t) {},
      [&](absl::Status s) { done = s; });
  etcd.SetUnavailable(true);
  etcd.WaitForDeliveries();
  EXPECT_EQ(done.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(etcd.Put("/k", "v").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(etcd.Get("/k").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(etcd.Txn({}, {}, {}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(etcd.GrantLease(5).status().code(), absl::StatusCode::kUnavailable);
  etcd.SetUnavailable(false);
  EXPECT_TRUE(etcd.Put("/k", "v").ok());
}

TEST(FakeEtcdTest, LeaseExpiresExactlyAfterTtlOnTheClock) {
  FakeClock clock;
  FakeEtcd etcd(&clock);
  absl::StatusOr<int64_t> lease = etcd.GrantLease(5);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(etcd.Put("/l", "v", *lease).ok());
  const int64_t before = etcd.revision();
  clock.Advance(absl::Seconds(4));
  ASSERT_EQ(*etcd.KeepAliveOnce(*lease), 5);  // renewed to 5 s from now
  clock.Advance(absl::Seconds(4));
  EXPECT_EQ(etcd.Get("/l")->size(), 1u);
  clock.Advance(absl::Seconds(1));
  EXPECT_THAT(*etcd.Get("/l"), IsEmpty());
  EXPECT_EQ(etcd.revision(), before + 1);  // one revision for the expiry
  EXPECT_EQ(etcd.RevokeLease(*lease).code(), absl::StatusCode::kNotFound);
}

TEST(FakeEtcdTest, WatchSeesLeaseExpiryAsDelete) {
  FakeClock clock;
  FakeEtcd etcd(&clock);
  std::vector<EtcdWatchEvent> seen;
  std::unique_ptr<EtcdWatch> watch = etcd.Watch(
      "/l", "", 0,
      [&](const std::vector<EtcdWatchEvent>& events, int64_t) {
        seen.insert(seen.end(), events.begin(), events.end());
      },
      nullptr);
  absl::StatusOr<int64_t> lease = etcd.GrantLease(1);
  ASSERT_TRUE(etcd.Put("/l", "v", *lease).ok());
  clock.Advance(absl::Seconds(2));
  etcd.ExpireLeases();
  etcd.WaitForDeliveries();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].type, EtcdWatchEvent::Type::kDelete);
}

TEST(FakeEtcdTest, WatchFromCompactedRevisionEndsOutOfRange) {
  FakeClock clock;
  FakeEtcd etcd(&clock);
  absl::StatusOr<int64_t> first = etcd.Put("/c", "1");
  ASSERT_TRUE(etcd.Put("/c", "2").ok());
  etcd.Compact(*first + 1);
  absl::Status done;
  std::unique_ptr<EtcdWatch> watch = etcd.Watch(
      "/c", "", *first, [](const std::vector<EtcdWatchEvent>&, int64_t) {},
      [&](absl::Status s) { done = s; });
  etcd.WaitForDeliveries();
  EXPECT_EQ(done.code(), absl::StatusCode::kOutOfRange);
}

TEST(FakeEtcdTest, CancelFromInsideCallbackEndsAtOnce) {
  FakeClock clock;
  FakeEtcd etcd(&clock);
  int events = 0;
  int dones = 0;
  std::unique_ptr<EtcdWatch> watch;
  watch = etcd.Watch(
      "/w", "", 0,
      [&](const std::vector<EtcdWatchEvent>&, int64_t) {
        ++events;
        watch->Cancel();
      },
      [&](absl::Status s) {
        EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
        ++dones;
      });
  ASSERT_TRUE(etcd.Put("/w", "1").ok());
  ASSERT_TRUE(etcd.Put("/w", "2").ok());
  etcd.WaitForDeliveries();
  EXPECT_EQ(events, 1);
  EXPECT_EQ(dones, 1);
}

TEST(FakeEtcdTest, TxnSeesItsOwnEarlierWrites) {
  FakeClock clock;
  FakeEtcd etcd(&clock);
  absl::StatusOr<EtcdTxnResult> r =
      etcd.Txn({}, {EtcdOp::Put("/a", "1"), EtcdOp::Get("/a")}, {});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->gets.size(), 1u);
  ASSERT_EQ(r->gets[0].size(), 1u);
  EXPECT_EQ(r->gets[0][0].version, 1);
  EXPECT_EQ(etcd.Txn({}, {EtcdOp::Put("", "x")}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hoist::receiver
