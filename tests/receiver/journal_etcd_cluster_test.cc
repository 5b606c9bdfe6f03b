// EtcdJournal over the real client (EtcdClientGrpc) and a real 3-member
// etcd cluster (tests/harness/etcd_cluster.h): what FakeEtcd cannot prove,
// that the Txns the journal builds are ones etcd accepts and evaluates as
// the journal expects. Every test uses a prefix of its own on one cluster.
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/etcd_client_grpc.h"
#include "receiver/journal_etcd.h"
#include "tests/harness/etcd_cluster.h"

namespace hoist::receiver {
namespace {

using ::hoist::testing::EtcdCluster;
using ::testing::HasSubstr;

hoist::v1::Rollout MakeRollout(const std::string& id,
                               hoist::v1::RolloutState state, int64_t created) {
  hoist::v1::Rollout r;
  r.set_id(id);
  r.set_service("app");
  r.set_digest("sha256:" + std::string(64, 'a'));
  r.set_state(state);
  r.mutable_created()->set_seconds(created);
  for (const char* agent : {"web-1", "web-2"}) {
    hoist::v1::HostResult* h = r.add_hosts();
    h->set_agent(agent);
    h->set_deploy_id(absl::StrCat(id, "-", agent));
  }
  return r;
}

class JournalEtcdClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> c = EtcdCluster::Start(3);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    static std::atomic<int> n{0};
    prefix_ = absl::StrCat("/t", getpid(), "-", n++, "/hoist/");
    first_ = Connect();
    second_ = Connect();
    ASSERT_NE(first_, nullptr);
    ASSERT_NE(second_, nullptr);
  }
  std::unique_ptr<EtcdClient> Connect() {
    EtcdClientOptions options;
    options.endpoints = cluster_->client_endpoints();
    options.request_timeout = absl::Seconds(3);
    auto client = EtcdClientGrpc::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }
  std::vector<EtcdKeyValue> Everything() {
    auto all = first_->Get(prefix_, EtcdPrefixEnd(prefix_));
    EXPECT_TRUE(all.ok()) << all.status();
    return all.ok() ? *all : std::vector<EtcdKeyValue>();
  }

  static EtcdCluster* cluster_;
  std::string prefix_;
  std::unique_ptr<EtcdClient> first_;   // one receiver's client
  std::unique_ptr<EtcdClient> second_;  // another receiver's
};

EtcdCluster* JournalEtcdClusterTest::cluster_ = nullptr;

TEST_F(JournalEtcdClusterTest,
       DeliveryRolloutAndEventsRoundTripToAnotherReceiver) {
  EtcdJournal leader(first_.get(), prefix_);
  EtcdJournal other(second_.get(), prefix_);
  const DeliveryRecord d{"docker|promoted|app/1", "r-1", "app",
                         absl::FromUnixSeconds(1700000000), "promoted app:1"};
  hoist::v1::Rollout r =
      MakeRollout("r-1", hoist::v1::ROLLOUT_STATE_PENDING, 100);
  ASSERT_TRUE(leader.AcceptDelivery(d, r).ok());
  // The other receiver sees the delivery and may not accept it again.
  auto found = other.FindDelivery(d.dedupe_key);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->summary, "promoted app:1");
  EXPECT_EQ(
      other
          .AcceptDelivery(
              d, MakeRollout("r-2", hoist::v1::ROLLOUT_STATE_PENDING, 101))
          .code(),
      absl::StatusCode::kAlreadyExists);

  r.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
  ASSERT_TRUE(leader.SaveRollout(r).ok());
  Journal::HostUpdate u;
  u.index = 1;
  u.result = r.hosts(1);
  u.result.set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  hoist::v1::DeployEvent e;
  e.set_deploy_id("r-1-web-2");
  for (auto phase :
       {hoist::v1::DEPLOY_PHASE_PULLING, hoist::v1::DEPLOY_PHASE_SUCCEEDED}) {
    e.set_phase(phase);
    ASSERT_TRUE(leader.SaveHostProgress("r-1", {u}, {{"web-2", e}}).ok());
  }

  auto got = other.GetRollout("r-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(got->hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto unfinished = other.ListUnfinished();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  ASSERT_EQ(unfinished->size(), 1u);
  auto listed = other.ListRollouts("app", 10);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(other.GetRollout("r-2").status().code(),
            absl::StatusCode::kNotFound);
  auto events = other.HostEvents("r-1", "web-2");
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].phase(), hoist::v1::DEPLOY_PHASE_PULLING);
  EXPECT_EQ((*events)[1].phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
}

TEST_F(JournalEtcdClusterTest, LeaderFenceOnALeaseKeyStopsADeposedLeader) {
  EtcdJournal leader(first_.get(), prefix_);
  // The election (DESIGN decision 14): a key under the leader's lease, and
  // every journal write requires its create revision.
  auto lease = first_->GrantLease(5);
  ASSERT_TRUE(lease.ok()) << lease.status();
  const std::string key = absl::StrCat(prefix_, "leader/", *lease);
  auto created = first_->Put(key, "receiver-1", *lease);
  ASSERT_TRUE(created.ok()) << created.status();
  EtcdCompare fence;
  fence.key = key;
  fence.target = EtcdCompare::Target::kCreateRevision;
  fence.result = EtcdCompare::Result::kEqual;
  fence.number = *created;
  leader.SetFence(fence);

  ASSERT_TRUE(leader
                  .AcceptDelivery(
                      {"k", "r-1", "app", absl::FromUnixSeconds(1), ""},
                      MakeRollout("r-1", hoist::v1::ROLLOUT_STATE_PENDING, 1))
                  .ok());
  ASSERT_TRUE(
      leader
          .SaveRollout(MakeRollout("r-1", hoist::v1::ROLLOUT_STATE_RUNNING, 1))
          .ok());

  // The lease ends (a paused leader's would expire): the leader key is gone.
  ASSERT_TRUE(first_->RevokeLease(*lease).ok());
  const std::vector<EtcdKeyValue> before = Everything();
  const absl::Status save = leader.SaveRollout(
      MakeRollout("r-1", hoist::v1::ROLLOUT_STATE_SUCCEEDED, 1));
  EXPECT_EQ(save.code(), absl::StatusCode::kFailedPrecondition) << save;
  EXPECT_THAT(save.message(), HasSubstr("not the leader"));
  const absl::Status accept = leader.AcceptDelivery(
      {"k2", "r-2", "app", absl::FromUnixSeconds(2), ""},
      MakeRollout("r-2", hoist::v1::ROLLOUT_STATE_PENDING, 2));
  EXPECT_EQ(accept.code(), absl::StatusCode::kFailedPrecondition) << accept;
  EXPECT_EQ(leader.AppendHostEvent("r-1", "web-1", {}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Everything(), before);
  auto got = leader.GetRollout("r-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
}

}  // namespace
}  // namespace hoist::receiver
