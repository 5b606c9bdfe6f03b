// The Journal contract (receiver/journal.h) run against both journals:
// SqliteJournal on a temp file and EtcdJournal over FakeEtcd. The typed
// cases are the behaviours of journal_test.cc, journal_desired_test.cc and
// notification_test.cc's outbox cases that do not depend on SQLite itself;
// "reopen" is a new SqliteJournal on the same file, or a new EtcdJournal on
// the same etcd (a restarted or another receiver). The EtcdJournalTest
// cases below are etcd only: fencing, UNAVAILABLE, two receivers on one
// etcd, the key layout.
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/journal_etcd.h"
#include "receiver/journal_sqlite.h"
#include "tests/receiver/fake_etcd.h"

namespace hoist::receiver {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

hoist::v1::Rollout MakeRollout(const std::string& id,
                               const std::string& service,
                               hoist::v1::RolloutState state,
                               int64_t created_seconds) {
  hoist::v1::Rollout r;
  r.set_id(id);
  r.set_service(service);
  r.set_image("registry/app");
  r.set_digest("sha256:" + std::string(64, 'a'));
  r.set_state(state);
  r.set_trigger("webhook");
  r.mutable_created()->set_seconds(created_seconds);
  hoist::v1::HostResult* h = r.add_hosts();
  h->set_agent("web-1");
  h->set_deploy_id(id + "-web-1");
  return r;
}

DesiredState Desired(const std::string& service, char digest_hex,
                     const std::string& rollout_id) {
  DesiredState d;
  d.service = service;
  d.digest = "sha256:" + std::string(64, digest_hex);
  d.tag = "v-" + rollout_id;
  d.rollout_id = rollout_id;
  d.since = absl::FromUnixMicros(1700000000123456);
  return d;
}

void ExpectSameDesired(const DesiredState& got, const DesiredState& want) {
  EXPECT_EQ(got.service, want.service);
  EXPECT_EQ(got.digest, want.digest);
  EXPECT_EQ(got.tag, want.tag);
  EXPECT_EQ(got.rollout_id, want.rollout_id);
  EXPECT_EQ(got.since, want.since);
  EXPECT_EQ(got.on_hold, want.on_hold);
}

OutboxRow Row(const std::string& id) {
  OutboxRow row;
  row.id = id;
  row.sink = "ops";
  row.event = "rollout_rolled_back";
  row.service = "app";
  row.created = absl::FromUnixSeconds(1700000000);
  row.rollout = MakeRollout("r-42", "app", hoist::v1::ROLLOUT_STATE_ROLLED_BACK,
                            1700000000);
  row.rollout.mutable_hosts(0)->set_log_tail("panic: no database\nexiting");
  row.agent = "web-2";
  row.detail = "detail";
  return row;
}

std::string Ids(const absl::StatusOr<std::vector<hoist::v1::Rollout>>& list) {
  if (!list.ok()) return list.status().ToString();
  std::string ids;
  for (const auto& r : *list) ids += r.id();
  return ids;
}

std::vector<std::string> Services(const std::vector<DesiredState>& list) {
  std::vector<std::string> out;
  for (const DesiredState& d : list) out.push_back(d.service);
  return out;
}

std::vector<std::string> Keys(const std::vector<ConvergeAttempts>& list) {
  std::vector<std::string> out;
  for (const ConvergeAttempts& a : list) {
    out.push_back(absl::StrCat(a.service, "/", a.agent));
  }
  return out;
}

// A SqliteJournal on a file of a temp dir of its own.
class SqliteBackend {
 public:
  SqliteBackend() {
    std::string tmpl = "/tmp/hoist-journal-contract-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  ~SqliteBackend() {
    journal_.reset();
    std::filesystem::remove_all(dir_);
  }
  Journal* journal() { return journal_.get(); }
  void Reopen() {
    journal_.reset();
    auto j = SqliteJournal::Open(dir_ + "/receiver.db");
    ASSERT_TRUE(j.ok()) << j.status();
    journal_ = *std::move(j);
  }
  absl::StatusOr<int64_t> DuplicateCount(const std::string& key) {
    return journal_->DuplicateCount(key);
  }

 private:
  std::string dir_;
  std::unique_ptr<SqliteJournal> journal_;
};

// An EtcdJournal over a FakeEtcd; Reopen makes a new journal on the same
// etcd.
class EtcdBackend {
 public:
  EtcdBackend() { Reopen(); }
  Journal* journal() { return journal_.get(); }
  void Reopen() {
    journal_.reset();
    journal_ = std::make_unique<EtcdJournal>(&etcd_, "/hoist/");
  }
  absl::StatusOr<int64_t> DuplicateCount(const std::string& key) {
    return journal_->DuplicateCount(key);
  }

 private:
  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
  std::unique_ptr<EtcdJournal> journal_;
};

template <typename Backend>
class JournalContractTest : public ::testing::Test {
 protected:
  Journal* j() { return backend_.journal(); }
  void Reopen() { backend_.Reopen(); }
  Backend backend_;
};

using Backends = ::testing::Types<SqliteBackend, EtcdBackend>;
TYPED_TEST_SUITE(JournalContractTest, Backends);

TYPED_TEST(JournalContractTest, AcceptedDeliverySurvivesReopen) {
  DeliveryRecord d{"docker|promoted|repo|app/1|abc", "r-1", "app",
                   absl::FromUnixSeconds(1700000000), "promoted app:1"};
  ASSERT_TRUE(this->j()
                  ->AcceptDelivery(
                      d, MakeRollout("r-1", "app",
                                     hoist::v1::ROLLOUT_STATE_PENDING, 100))
                  .ok());
  this->Reopen();
  auto found = this->j()->FindDelivery(d.dedupe_key);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->dedupe_key, d.dedupe_key);
  EXPECT_EQ((*found)->rollout_id, "r-1");
  EXPECT_EQ((*found)->service, "app");
  EXPECT_EQ((*found)->accepted, d.accepted);
  EXPECT_EQ((*found)->summary, "promoted app:1");
  auto r = this->j()->GetRollout("r-1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state(), hoist::v1::ROLLOUT_STATE_PENDING);
  EXPECT_EQ(r->hosts(0).deploy_id(), "r-1-web-1");
  auto missing = this->j()->FindDelivery("other");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TYPED_TEST(JournalContractTest, DeliveryWithoutDedupeKeyStillSavesRollout) {
  DeliveryRecord d{"", "r-1", "app", absl::FromUnixSeconds(1), ""};
  ASSERT_TRUE(
      this->j()
          ->AcceptDelivery(
              d, MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
          .ok());
  EXPECT_TRUE(this->j()->GetRollout("r-1").ok());
}

TYPED_TEST(JournalContractTest, DuplicateKeyIsRejectedAndNothingIsWritten) {
  DeliveryRecord d{"k", "r-1", "app", absl::FromUnixSeconds(1), ""};
  ASSERT_TRUE(
      this->j()
          ->AcceptDelivery(
              d, MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
          .ok());
  DeliveryRecord again{"k", "r-2", "app", absl::FromUnixSeconds(2), ""};
  EXPECT_FALSE(this->j()
                   ->AcceptDelivery(
                       again, MakeRollout("r-2", "app",
                                          hoist::v1::ROLLOUT_STATE_PENDING, 2))
                   .ok());
  EXPECT_EQ(this->j()->GetRollout("r-2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*this->j()->FindDelivery("k"))->rollout_id, "r-1");
  EXPECT_EQ(Ids(this->j()->ListRollouts("", 10)), "r-1");
}

TYPED_TEST(JournalContractTest, CountsDuplicatesOfKnownDeliveries) {
  DeliveryRecord d{"k", "r-1", "app", absl::FromUnixSeconds(1), ""};
  ASSERT_TRUE(
      this->j()
          ->AcceptDelivery(
              d, MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
          .ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        this->j()->CountDuplicate("k", absl::FromUnixSeconds(10 + i)).ok());
  }
  ASSERT_TRUE(
      this->j()->CountDuplicate("unknown", absl::FromUnixSeconds(9)).ok());
  auto n = this->backend_.DuplicateCount("k");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  // Counts held in memory are written when the journal closes.
  ASSERT_TRUE(this->j()->CountDuplicate("k", absl::FromUnixSeconds(20)).ok());
  this->Reopen();
  n = this->backend_.DuplicateCount("k");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 4);
  n = this->backend_.DuplicateCount("unknown");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
}

TYPED_TEST(JournalContractTest,
           ListsNewestFirstFilteredAndUnfinishedOldestFirst) {
  struct RowSpec {
    const char* id;
    const char* service;
    hoist::v1::RolloutState state;
    int64_t created;
  };
  const RowSpec rows[] = {
      {"a", "app", hoist::v1::ROLLOUT_STATE_SUCCEEDED, 10},
      {"b", "db", hoist::v1::ROLLOUT_STATE_RUNNING, 20},
      {"c", "app", hoist::v1::ROLLOUT_STATE_PENDING, 30},
      {"d", "app", hoist::v1::ROLLOUT_STATE_PAUSED, 40},
      {"e", "app", hoist::v1::ROLLOUT_STATE_SUPERSEDED, 50},
  };
  for (const RowSpec& r : rows) {
    ASSERT_TRUE(
        this->j()
            ->SaveRollout(MakeRollout(r.id, r.service, r.state, r.created))
            .ok());
  }
  EXPECT_EQ(Ids(this->j()->ListRollouts("", 10)), "edcba");
  EXPECT_EQ(Ids(this->j()->ListRollouts("app", 2)), "ed");
  EXPECT_EQ(Ids(this->j()->ListRollouts("none", 2)), "");
  EXPECT_EQ(Ids(this->j()->ListUnfinished()), "bcd");

  // SaveRollout replaces: finishing "b" removes it from the unfinished list.
  auto b = MakeRollout("b", "db", hoist::v1::ROLLOUT_STATE_SUCCEEDED, 20);
  b.mutable_hosts(0)->set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_TRUE(this->j()->SaveRollout(b).ok());
  EXPECT_EQ(Ids(this->j()->ListUnfinished()), "cd");
  auto got = this->j()->GetRollout("b");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(Ids(this->j()->ListRollouts("", 10)), "edcba");
}

TYPED_TEST(JournalContractTest, EqualCreatedTimesListInSaveOrder) {
  for (const char* id : {"z", "a", "m"}) {
    ASSERT_TRUE(this->j()
                    ->SaveRollout(MakeRollout(
                        id, "app", hoist::v1::ROLLOUT_STATE_PENDING, 7))
                    .ok());
  }
  // Saving again keeps the first-saved order.
  ASSERT_TRUE(this->j()
                  ->SaveRollout(MakeRollout(
                      "z", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 7))
                  .ok());
  EXPECT_EQ(Ids(this->j()->ListRollouts("", 10)), "maz");
  EXPECT_EQ(Ids(this->j()->ListUnfinished()), "zam");
}

TYPED_TEST(JournalContractTest, ChangedCreatedTimeMovesTheRolloutInTheList) {
  ASSERT_TRUE(this->j()
                  ->SaveRollout(MakeRollout(
                      "a", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
                  .ok());
  ASSERT_TRUE(this->j()
                  ->SaveRollout(MakeRollout(
                      "b", "app", hoist::v1::ROLLOUT_STATE_PENDING, 2))
                  .ok());
  ASSERT_TRUE(this->j()
                  ->SaveRollout(MakeRollout(
                      "a", "app", hoist::v1::ROLLOUT_STATE_PENDING, 3))
                  .ok());
  EXPECT_EQ(Ids(this->j()->ListRollouts("", 10)), "ab");
  EXPECT_EQ(Ids(this->j()->ListUnfinished()), "ba");
}

TYPED_TEST(JournalContractTest, HostEventsInOrderPerAgent) {
  const hoist::v1::DeployPhase phases[] = {hoist::v1::DEPLOY_PHASE_PULLING,
                                           hoist::v1::DEPLOY_PHASE_STARTING,
                                           hoist::v1::DEPLOY_PHASE_SUCCEEDED};
  for (const std::string agent : {"web-1", "web-2"}) {
    for (auto p : phases) {
      hoist::v1::DeployEvent e;
      e.set_deploy_id("r-1-" + agent);
      e.set_phase(p);
      ASSERT_TRUE(this->j()->AppendHostEvent("r-1", agent, e).ok());
    }
  }
  auto events = this->j()->HostEvents("r-1", "web-2");
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*events)[i].phase(), phases[i]);
    EXPECT_EQ((*events)[i].deploy_id(), "r-1-web-2");
  }
  auto none = this->j()->HostEvents("r-2", "web-1");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// Ids that share a beginning, or hold '/', keep their events apart.
TYPED_TEST(JournalContractTest, HostEventsOfSimilarIdsStayApart) {
  hoist::v1::DeployEvent e;
  e.set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  ASSERT_TRUE(this->j()->AppendHostEvent("r", "web-1", e).ok());
  ASSERT_TRUE(this->j()->AppendHostEvent("r/1", "web-1", e).ok());
  ASSERT_TRUE(this->j()->AppendHostEvent("r-1", "web-1", e).ok());
  ASSERT_TRUE(this->j()->AppendHostEvent("r", "web-1/x", e).ok());
  for (const char* id : {"r", "r/1", "r-1"}) {
    auto events = this->j()->HostEvents(id, "web-1");
    ASSERT_TRUE(events.ok());
    EXPECT_EQ(events->size(), 1u) << id;
  }
}

TYPED_TEST(JournalContractTest,
           HostProgressIsAppliedOnReadAndSupersededBySave) {
  hoist::v1::Rollout r =
      MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 10);
  hoist::v1::HostResult* h2 = r.add_hosts();
  h2->set_agent("web-2");
  h2->set_deploy_id("r-1-web-2");
  ASSERT_TRUE(this->j()->SaveRollout(r).ok());
  EXPECT_TRUE(this->j()->SaveHostProgress("r-1", {}, {}).ok());

  Journal::HostUpdate u;
  u.index = 1;
  u.result = r.hosts(1);
  u.result.set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  hoist::v1::DeployEvent e;
  e.set_deploy_id("r-1-web-2");
  e.set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  ASSERT_TRUE(this->j()->SaveHostProgress("r-1", {u}, {{"web-2", e}}).ok());
  u.result.set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  u.result.mutable_finished()->set_seconds(20);
  e.set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_TRUE(this->j()->SaveHostProgress("r-1", {u}, {{"web-2", e}}).ok());

  for (int reopen = 0; reopen < 2; ++reopen) {
    if (reopen == 1) this->Reopen();
    auto got = this->j()->GetRollout("r-1");
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->hosts_size(), 2);
    EXPECT_EQ(got->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_UNSPECIFIED);
    EXPECT_EQ(got->hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    EXPECT_EQ(got->hosts(1).finished().seconds(), 20);
    auto unfinished = this->j()->ListUnfinished();
    ASSERT_TRUE(unfinished.ok());
    ASSERT_EQ(unfinished->size(), 1u);
    EXPECT_EQ((*unfinished)[0].hosts(1).phase(),
              hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    auto listed = this->j()->ListRollouts("app", 10);
    ASSERT_TRUE(listed.ok());
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0].hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    auto events = this->j()->HostEvents("r-1", "web-2");
    ASSERT_TRUE(events.ok());
    ASSERT_EQ(events->size(), 2u);
    EXPECT_EQ((*events)[1].phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  }

  // A whole-rollout save is the truth again: older host rows do not win.
  r.set_state(hoist::v1::ROLLOUT_STATE_FAILED);
  r.mutable_hosts(1)->set_phase(hoist::v1::DEPLOY_PHASE_FAILED);
  ASSERT_TRUE(this->j()->SaveRollout(r).ok());
  auto got = this->j()->GetRollout("r-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state(), hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(got->hosts(1).phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  // The events stay.
  EXPECT_EQ(this->j()->HostEvents("r-1", "web-2")->size(), 2u);
}

TYPED_TEST(JournalContractTest, HostProgressOutsideTheRolloutIsDataLossOnRead) {
  ASSERT_TRUE(this->j()
                  ->SaveRollout(MakeRollout(
                      "r-1", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 10))
                  .ok());
  Journal::HostUpdate bad;
  bad.index = 5;  // the rollout has one host
  bad.result.set_agent("web-6");
  ASSERT_TRUE(this->j()->SaveHostProgress("r-1", {bad}, {}).ok());
  EXPECT_EQ(this->j()->GetRollout("r-1").status().code(),
            absl::StatusCode::kDataLoss);
}

TYPED_TEST(JournalContractTest, MissingRolloutIsNotFound) {
  EXPECT_EQ(this->j()->GetRollout("nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Ids(this->j()->ListRollouts("", 0)), "");
  EXPECT_EQ(Ids(this->j()->ListUnfinished()), "");
}

TYPED_TEST(JournalContractTest,
           DesiredIsReplacedByServiceListedByNameAndReopens) {
  DesiredState web = Desired("web", 'b', "r-2");
  web.on_hold = true;
  const DesiredState api = Desired("api", 'c', "r-3");
  const DesiredState odd = Desired("a/b c", 'd', "r-4");
  ASSERT_TRUE(this->j()->SaveDesired(Desired("web", 'a', "r-1")).ok());
  ASSERT_TRUE(this->j()->SaveDesired(api).ok());
  ASSERT_TRUE(this->j()->SaveDesired(web).ok());  // replaces r-1's
  ASSERT_TRUE(this->j()->SaveDesired(odd).ok());
  this->Reopen();
  auto listed = this->j()->ListDesired();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_THAT(Services(*listed), ElementsAre("a/b c", "api", "web"));
  ExpectSameDesired((*listed)[0], odd);
  ExpectSameDesired((*listed)[1], api);
  ExpectSameDesired((*listed)[2], web);
}

TYPED_TEST(JournalContractTest,
           DesiredWithoutServiceIsRefusedAndNothingWritten) {
  EXPECT_EQ(this->j()->SaveDesired(Desired("", 'a', "r-1")).code(),
            absl::StatusCode::kInvalidArgument);
  auto listed = this->j()->ListDesired();
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed, IsEmpty());
}

TYPED_TEST(JournalContractTest,
           DeleteDesiredForgetsTheServiceAndItsAttemptsOnly) {
  ASSERT_TRUE(this->j()->SaveDesired(Desired("web", 'a', "r-1")).ok());
  ASSERT_TRUE(this->j()->SaveDesired(Desired("api", 'b', "r-2")).ok());
  ASSERT_TRUE(this->j()->SavePreviousDesired("r-1", std::nullopt).ok());
  for (const char* agent : {"web-1", "web-2"}) {
    ConvergeAttempts a;
    a.service = "web";
    a.agent = agent;
    a.attempts = 1;
    ASSERT_TRUE(this->j()->SaveAttempts(a).ok());
  }
  ConvergeAttempts kept;
  kept.service = "api";
  kept.agent = "web-1";
  ASSERT_TRUE(this->j()->SaveAttempts(kept).ok());
  ConvergeAttempts similar;  // a service whose name starts with "web"
  similar.service = "web2";
  similar.agent = "web-1";
  ASSERT_TRUE(this->j()->SaveAttempts(similar).ok());
  ASSERT_TRUE(this->j()->DeleteDesired("web").ok());
  EXPECT_TRUE(this->j()->DeleteDesired("gone").ok());
  this->Reopen();
  auto desired = this->j()->ListDesired();
  ASSERT_TRUE(desired.ok());
  EXPECT_THAT(Services(*desired), ElementsAre("api"));
  auto attempts = this->j()->ListAttempts();
  ASSERT_TRUE(attempts.ok());
  EXPECT_THAT(Keys(*attempts), ElementsAre("api/web-1", "web2/web-1"));
  EXPECT_TRUE(this->j()->GetPreviousDesired("r-1").ok());
}

TYPED_TEST(JournalContractTest, PreviousDesiredIsRecordedOnceNoneIncluded) {
  DesiredState before = Desired("web", 'a', "r-0");
  before.on_hold = true;
  ASSERT_TRUE(this->j()->SavePreviousDesired("r-1", before).ok());
  EXPECT_EQ(
      this->j()->SavePreviousDesired("r-1", Desired("web", 'b', "r-1")).code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->j()->SavePreviousDesired("r-1", std::nullopt).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(this->j()->SavePreviousDesired("r-2", std::nullopt).ok());
  EXPECT_EQ(this->j()->SavePreviousDesired("r-2", before).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->j()->SavePreviousDesired("", before).code(),
            absl::StatusCode::kInvalidArgument);
  this->Reopen();
  auto first = this->j()->GetPreviousDesired("r-1");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_value());
  ExpectSameDesired(**first, before);
  auto none = this->j()->GetPreviousDesired("r-2");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(this->j()->GetPreviousDesired("r-3").status().code(),
            absl::StatusCode::kNotFound);
}

TYPED_TEST(JournalContractTest, AttemptsAreReplacedByServiceAndAgentAndReopen) {
  ConvergeAttempts fresh;  // every default, next_attempt InfinitePast
  fresh.service = "web";
  fresh.agent = "web-2";
  ConvergeAttempts failing;
  failing.service = "web";
  failing.agent = "web-1";
  failing.attempts = 5;
  failing.next_attempt = absl::FromUnixMicros(1700000300654321);
  failing.gave_up = true;
  failing.last_error = "web-1: health check timed out";
  ConvergeAttempts api;
  api.service = "api";
  api.agent = "web-1";
  api.attempts = 2;
  api.next_attempt = absl::InfiniteFuture();
  ConvergeAttempts first = failing;
  first.attempts = 1;
  first.gave_up = false;
  ASSERT_TRUE(this->j()->SaveAttempts(first).ok());
  ASSERT_TRUE(this->j()->SaveAttempts(fresh).ok());
  ASSERT_TRUE(this->j()->SaveAttempts(api).ok());
  ASSERT_TRUE(this->j()->SaveAttempts(failing).ok());  // replaces `first`
  ConvergeAttempts no_agent = api;
  no_agent.agent.clear();
  EXPECT_EQ(this->j()->SaveAttempts(no_agent).code(),
            absl::StatusCode::kInvalidArgument);
  this->Reopen();
  auto listed = this->j()->ListAttempts();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_THAT(Keys(*listed),
              ElementsAre("api/web-1", "web/web-1", "web/web-2"));
  EXPECT_EQ((*listed)[0].attempts, 2);
  EXPECT_EQ((*listed)[0].next_attempt, absl::InfiniteFuture());
  EXPECT_EQ((*listed)[1].attempts, 5);
  EXPECT_EQ((*listed)[1].next_attempt, failing.next_attempt);
  EXPECT_TRUE((*listed)[1].gave_up);
  EXPECT_EQ((*listed)[1].last_error, failing.last_error);
  EXPECT_EQ((*listed)[2].attempts, 0);
  EXPECT_EQ((*listed)[2].next_attempt, absl::InfinitePast());
  EXPECT_FALSE((*listed)[2].gave_up);
  EXPECT_EQ((*listed)[2].last_error, "");
}

TYPED_TEST(JournalContractTest, RolloutAndDesiredAreSavedTogether) {
  const hoist::v1::Rollout running =
      MakeRollout("r-1", "web", hoist::v1::ROLLOUT_STATE_RUNNING, 10);
  const DesiredState desired = Desired("web", 'b', "r-1");
  ASSERT_TRUE(this->j()->SaveRolloutAndDesired(running, desired).ok());
  this->Reopen();
  auto rollout = this->j()->GetRollout("r-1");
  ASSERT_TRUE(rollout.ok()) << rollout.status();
  EXPECT_EQ(rollout->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  auto listed = this->j()->ListDesired();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  ExpectSameDesired(listed->front(), desired);
}

TYPED_TEST(JournalContractTest,
           DesiredOfAnotherServiceThanTheRolloutIsRefused) {
  EXPECT_EQ(
      this->j()
          ->SaveRolloutAndDesired(
              MakeRollout("r-1", "web", hoist::v1::ROLLOUT_STATE_RUNNING, 10),
              Desired("api", 'b', "r-1"))
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->j()->GetRollout("r-1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(*this->j()->ListDesired(), IsEmpty());
}

TYPED_TEST(JournalContractTest, CancelledIsFinalNotUnfinished) {
  int64_t created = 0;
  for (const auto& [id, state] :
       std::vector<std::pair<std::string, hoist::v1::RolloutState>>{
           {"pending", hoist::v1::ROLLOUT_STATE_PENDING},
           {"cancelled", hoist::v1::ROLLOUT_STATE_CANCELLED},
           {"running", hoist::v1::ROLLOUT_STATE_RUNNING},
           {"paused", hoist::v1::ROLLOUT_STATE_PAUSED}}) {
    ASSERT_TRUE(
        this->j()->SaveRollout(MakeRollout(id, "web", state, ++created)).ok());
  }
  EXPECT_EQ(Ids(this->j()->ListUnfinished()), "pendingrunningpaused");
  auto history = this->j()->ListRollouts("web", 10);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 4u);
  EXPECT_EQ((*history)[2].id(), "cancelled");
  EXPECT_EQ((*history)[2].state(), hoist::v1::ROLLOUT_STATE_CANCELLED);
}

TYPED_TEST(JournalContractTest, RolloutAndOutboxRowsCommitTogetherOrNotAtAll) {
  hoist::v1::Rollout r =
      MakeRollout("r-42", "app", hoist::v1::ROLLOUT_STATE_ROLLED_BACK, 5);
  r.set_error("health check failed");
  const OutboxRow row = Row("0123abcd");
  ASSERT_TRUE(this->j()->SaveRolloutWithOutbox(r, {row}).ok());
  auto rows = this->j()->ListNotifications(10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  const OutboxRow& got = (*rows)[0];
  EXPECT_EQ(got.id, "0123abcd");
  EXPECT_EQ(got.sink, "ops");
  EXPECT_EQ(got.event, "rollout_rolled_back");
  EXPECT_EQ(got.service, "app");
  EXPECT_EQ(got.created, row.created);
  EXPECT_EQ(got.agent, "web-2");
  EXPECT_EQ(got.detail, "detail");
  EXPECT_EQ(got.attempts, 0);
  EXPECT_EQ(got.next_attempt, absl::InfinitePast());
  EXPECT_EQ(got.rollout.hosts(0).log_tail(), "panic: no database\nexiting");
  // A second save with a taken id writes nothing, not even the rollout.
  hoist::v1::Rollout changed = r;
  changed.set_error("changed");
  EXPECT_EQ(this->j()->SaveRolloutWithOutbox(changed, {Row("new"), row}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->j()->GetRollout("r-42")->error(), "health check failed");
  EXPECT_EQ(*this->j()->CountNotifications(), 1);
  // Two rows with one id in one call: refused as a whole as well.
  EXPECT_EQ(this->j()->EnqueueNotifications({Row("x"), Row("x")}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*this->j()->CountNotifications(), 1);
  // No rows: the rollout alone.
  ASSERT_TRUE(this->j()->SaveRolloutWithOutbox(changed, {}).ok());
  EXPECT_EQ(this->j()->GetRollout("r-42")->error(), "changed");
}

TYPED_TEST(JournalContractTest, OutboxOrdersReschedulesAndDeletes) {
  OutboxRow a = Row("a"), b = Row("b"), c = Row("c");
  a.next_attempt = a.created;
  b.next_attempt = a.created + absl::Seconds(1);
  c.next_attempt = a.created + absl::Seconds(1);
  c.created = a.created - absl::Seconds(1);  // same next_attempt, older
  ASSERT_TRUE(this->j()->EnqueueNotifications({a, b, c}).ok());
  EXPECT_TRUE(this->j()->EnqueueNotifications({}).ok());
  ASSERT_TRUE(this->j()
                  ->RescheduleNotification("a", 3, a.created + absl::Seconds(9))
                  .ok());
  EXPECT_TRUE(this->j()
                  ->RescheduleNotification("missing", 1, absl::InfiniteFuture())
                  .ok());
  auto rows = this->j()->ListNotifications(10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].id, "c");
  EXPECT_EQ((*rows)[1].id, "b");
  EXPECT_EQ((*rows)[2].id, "a");
  EXPECT_EQ((*rows)[2].attempts, 3);
  EXPECT_EQ((*rows)[2].next_attempt, a.created + absl::Seconds(9));
  auto two = this->j()->ListNotifications(2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->size(), 2u);
  ASSERT_TRUE(this->j()->DeleteNotification("b").ok());
  ASSERT_TRUE(this->j()->DeleteNotification("missing").ok());
  EXPECT_EQ(*this->j()->CountNotifications(), 2);
  this->Reopen();
  EXPECT_EQ(*this->j()->CountNotifications(), 2);
}

// ------------------------------------------------------------ etcd only

class EtcdJournalTest : public ::testing::Test {
 protected:
  // Makes this test the leader: a leader key whose create revision the
  // fence requires (DESIGN decision 14).
  EtcdCompare LeaderFence() {
    auto rev = etcd_.Put("/hoist/leader/1", "me");
    EXPECT_TRUE(rev.ok());
    EtcdCompare fence;
    fence.key = "/hoist/leader/1";
    fence.target = EtcdCompare::Target::kCreateRevision;
    fence.result = EtcdCompare::Result::kEqual;
    fence.number = rev.ok() ? *rev : -1;
    return fence;
  }
  // Every key and value in etcd, to show that a write wrote nothing.
  std::vector<EtcdKeyValue> Everything() {
    auto all = etcd_.Get(std::string(1, '\0'), std::string(1, '\0'));
    EXPECT_TRUE(all.ok()) << all.status();
    return all.ok() ? *all : std::vector<EtcdKeyValue>();
  }
  // Calls every write method once; returns their statuses.
  std::vector<absl::Status> EveryWrite(Journal* j) {
    Journal::HostUpdate u;
    u.index = 0;
    ConvergeAttempts a;
    a.service = "app";
    a.agent = "web-1";
    return {
        j->AcceptDelivery(
            {"k2", "r-2", "app", absl::FromUnixSeconds(2), ""},
            MakeRollout("r-2", "app", hoist::v1::ROLLOUT_STATE_PENDING, 2)),
        j->SaveRollout(
            MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 1)),
        j->SaveHostProgress("r-1", {u}, {{"web-1", {}}}),
        j->AppendHostEvent("r-1", "web-1", {}),
        j->SaveDesired(Desired("app", 'b', "r-1")),
        j->SaveRolloutAndDesired(
            MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 1),
            Desired("app", 'b', "r-1")),
        j->DeleteDesired("app"),
        j->SavePreviousDesired("r-9", std::nullopt),
        j->SaveAttempts(a),
        j->SaveRolloutWithOutbox(
            MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_FAILED, 1),
            {Row("n-2")}),
        j->EnqueueNotifications({Row("n-3")}),
        j->RescheduleNotification("n-1", 2, absl::FromUnixSeconds(5)),
        j->DeleteNotification("n-1"),
    };
  }
  // Some state for the writes above to change.
  void Seed(Journal* j) {
    ASSERT_TRUE(
        j->AcceptDelivery(
             {"k1", "r-1", "app", absl::FromUnixSeconds(1), ""},
             MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
            .ok());
    ASSERT_TRUE(j->SaveDesired(Desired("app", 'a', "r-0")).ok());
    ASSERT_TRUE(j->EnqueueNotifications({Row("n-1")}).ok());
  }

  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
};

TEST_F(EtcdJournalTest, SecondReceiverCannotAcceptTheSameDedupeKey) {
  EtcdJournal first(&etcd_, "/hoist/");
  EtcdJournal second(&etcd_, "/hoist/");
  ASSERT_TRUE(
      first
          .AcceptDelivery(
              {"k", "r-1", "app", absl::FromUnixSeconds(1), "one"},
              MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
          .ok());
  const absl::Status again = second.AcceptDelivery(
      {"k", "r-2", "app", absl::FromUnixSeconds(2), "two"},
      MakeRollout("r-2", "app", hoist::v1::ROLLOUT_STATE_PENDING, 2));
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  EXPECT_EQ(second.GetRollout("r-2").status().code(),
            absl::StatusCode::kNotFound);
  auto found = second.FindDelivery("k");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->summary, "one");
  EXPECT_EQ(Ids(second.ListRollouts("", 10)), "r-1");
}

TEST_F(EtcdJournalTest, FencedWritesApplyWhileTheFenceHolds) {
  EtcdJournal j(&etcd_, "/hoist/");
  j.SetFence(LeaderFence());
  Seed(&j);
  for (const absl::Status& s : EveryWrite(&j)) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(j.GetRollout("r-1")->state(), hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(*j.CountNotifications(), 2);
}

TEST_F(EtcdJournalTest, WritesOfADeposedLeaderFailAndWriteNothing) {
  EtcdJournal j(&etcd_, "/hoist/");
  j.SetFence(LeaderFence());
  Seed(&j);
  ASSERT_TRUE(j.CountDuplicate("k1", absl::FromUnixSeconds(3)).ok());
  // Another receiver won the election since: the key was re-created.
  ASSERT_TRUE(etcd_.Delete("/hoist/leader/1").ok());
  ASSERT_TRUE(etcd_.Put("/hoist/leader/1", "other").ok());
  const std::vector<EtcdKeyValue> before = Everything();
  for (const absl::Status& s : EveryWrite(&j)) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(s.message(), HasSubstr("not the leader"));
  }
  EXPECT_EQ(j.DuplicateCount("k1").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Everything(), before);
  // Reads are not fenced.
  EXPECT_TRUE(j.GetRollout("r-1").ok());
  // Without the fence (e.g. a follower's webhook journal) writes apply.
  j.SetFence(std::nullopt);
  EXPECT_TRUE(j.SaveDesired(Desired("app", 'c', "r-1")).ok());
  EXPECT_EQ(*j.DuplicateCount("k1"), 1);
}

TEST_F(EtcdJournalTest, UnavailableEtcdIsUnavailableAndWritesNothing) {
  EtcdJournal j(&etcd_, "/hoist/");
  Seed(&j);
  const std::vector<EtcdKeyValue> before = Everything();
  etcd_.SetUnavailable(true);
  for (const absl::Status& s : EveryWrite(&j)) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  }
  EXPECT_EQ(j.FindDelivery("k1").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(j.GetRollout("r-1").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(j.ListRollouts("", 5).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(j.ListNotifications(5).status().code(),
            absl::StatusCode::kUnavailable);
  etcd_.SetUnavailable(false);
  EXPECT_EQ(Everything(), before);
}

TEST_F(EtcdJournalTest, ValueThatDoesNotParseIsInternalNamingTheKey) {
  EtcdJournal j(&etcd_, "/hoist/");
  ASSERT_TRUE(etcd_.Put("/hoist/deliveries/k", "{not json").ok());
  ASSERT_TRUE(etcd_.Put("/hoist/rollouts/r-1", "\xff\xff garbage").ok());
  ASSERT_TRUE(etcd_.Put("/hoist/desired/web", "{\"service\": 3}").ok());
  const auto delivery = j.FindDelivery("k");
  EXPECT_EQ(delivery.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(delivery.status().message(), HasSubstr("/hoist/deliveries/k"));
  const auto rollout = j.GetRollout("r-1");
  EXPECT_EQ(rollout.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(rollout.status().message(), HasSubstr("/hoist/rollouts/r-1"));
  const auto desired = j.ListDesired();
  EXPECT_EQ(desired.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(desired.status().message(), HasSubstr("/hoist/desired/web"));
}

TEST_F(EtcdJournalTest, EveryKeyLivesUnderThePrefixAsDocumented) {
  EtcdJournal j(&etcd_, "/hoist/");
  Seed(&j);
  EXPECT_EQ(EveryWrite(&j).size(), 13u);
  ASSERT_TRUE(j.SaveDesired(Desired("app", 'd', "r-1")).ok());
  Journal::HostUpdate u;
  u.index = 0;
  ASSERT_TRUE(j.SaveHostProgress("r-1", {u}, {}).ok());
  ASSERT_TRUE(j.AppendHostEvent("a/b", "web 1", {}).ok());
  ASSERT_TRUE(etcd_.Put("/other", "x").ok());
  std::vector<std::string> kinds;
  for (const EtcdKeyValue& kv : Everything()) {
    if (kv.key == "/other") continue;
    ASSERT_TRUE(absl::StartsWith(kv.key, "/hoist/")) << kv.key;
    kinds.push_back(kv.key.substr(7, kv.key.find('/', 7) - 7));
  }
  EXPECT_THAT(
      kinds, ::testing::IsSupersetOf({"deliveries", "rollouts", "rollout_index",
                                      "events", "desired", "previous_desired",
                                      "attempts", "outbox", "host_results"}));
  EXPECT_TRUE(etcd_.Get(j.Key("rollouts", {"r-1"}))->size() == 1);
  EXPECT_EQ(j.Key("events", {"a/b", "web 1"}), "/hoist/events/a%2Fb/web%201");
  // Another prefix is another journal.
  EtcdJournal other(&etcd_, "/elsewhere/");
  EXPECT_EQ(Ids(other.ListRollouts("", 10)), "");
}

// Forwards to another EtcdClient; `before_txn` runs before each Txn (to
// play another writer between a journal's read and its write).
class RacingEtcd : public EtcdClient {
 public:
  explicit RacingEtcd(EtcdClient* target) : target_(target) {}
  std::function<void()> before_txn;

  absl::StatusOr<std::vector<EtcdKeyValue>> Get(const std::string& key,
                                                const std::string& range_end,
                                                int64_t limit) override {
    return target_->Get(key, range_end, limit);
  }
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease) override {
    return target_->Put(key, value, lease);
  }
  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 const std::string& range_end) override {
    return target_->Delete(key, range_end);
  }
  absl::StatusOr<EtcdTxnResult> Txn(
      const std::vector<EtcdCompare>& compares,
      const std::vector<EtcdOp>& success,
      const std::vector<EtcdOp>& failure) override {
    if (before_txn) before_txn();
    return target_->Txn(compares, success, failure);
  }
  absl::StatusOr<int64_t> GrantLease(int64_t ttl) override {
    return target_->GrantLease(ttl);
  }
  absl::StatusOr<int64_t> KeepAliveOnce(int64_t lease) override {
    return target_->KeepAliveOnce(lease);
  }
  absl::Status RevokeLease(int64_t lease) override {
    return target_->RevokeLease(lease);
  }
  std::unique_ptr<EtcdWatch> Watch(const std::string& key,
                                   const std::string& range_end, int64_t start,
                                   EtcdEventsCallback on_events,
                                   EtcdDoneCallback on_done) override {
    return target_->Watch(key, range_end, start, std::move(on_events),
                          std::move(on_done));
  }

 private:
  EtcdClient* const target_;
};

TEST_F(EtcdJournalTest, ARolloutChangedBetweenReadAndWriteIsWrittenAgain) {
  RacingEtcd racing(&etcd_);
  EtcdJournal j(&racing, "/hoist/");
  EtcdJournal other(&etcd_, "/hoist/");
  ASSERT_TRUE(j.SaveRollout(MakeRollout("r-1", "app",
                                        hoist::v1::ROLLOUT_STATE_PENDING, 1))
                  .ok());
  int races = 0;
  racing.before_txn = [&] {
    // Once: another writer moves the rollout to another created time.
    if (races++ == 0) {
      ASSERT_TRUE(other
                      .SaveRollout(MakeRollout(
                          "r-1", "app", hoist::v1::ROLLOUT_STATE_PAUSED, 5))
                      .ok());
    }
  };
  ASSERT_TRUE(j.SaveRollout(MakeRollout("r-1", "app",
                                        hoist::v1::ROLLOUT_STATE_RUNNING, 9))
                  .ok());
  EXPECT_EQ(races, 2);
  EXPECT_EQ(j.GetRollout("r-1")->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  // One index entry, at the time written last.
  auto index = etcd_.Get("/hoist/rollout_index/",
                         EtcdPrefixEnd("/hoist/rollout_index/"));
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->size(), 1u);
  EXPECT_EQ(Ids(j.ListRollouts("", 10)), "r-1");
  EXPECT_EQ(Ids(j.ListUnfinished()), "r-1");
}

TEST_F(EtcdJournalTest, EndlessConflictsAreAbortedAndWriteNothing) {
  RacingEtcd racing(&etcd_);
  EtcdJournal j(&racing, "/hoist/");
  EtcdJournal other(&etcd_, "/hoist/");
  int64_t created = 0;
  racing.before_txn = [&] {
    ASSERT_TRUE(
        other
            .SaveRollout(MakeRollout(
                "r-1", "app", hoist::v1::ROLLOUT_STATE_PAUSED, ++created))
            .ok());
  };
  const absl::Status s = j.SaveRolloutWithOutbox(
      MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_FAILED, 100),
      {Row("n-1")});
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  racing.before_txn = nullptr;
  EXPECT_EQ(j.GetRollout("r-1")->state(), hoist::v1::ROLLOUT_STATE_PAUSED);
  EXPECT_EQ(*j.CountNotifications(), 0);
}

}  // namespace
}  // namespace hoist::receiver
