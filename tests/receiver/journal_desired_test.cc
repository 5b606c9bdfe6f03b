// SqliteJournal's desired state (docs/design.md, "Desired state and
// convergence"): desired digests, previous desired states, converge attempts,
// the one-transaction SaveRolloutAndDesired, the migration of journals made
// before these tables existed, and CANCELLED as a final state.
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/journal_sqlite.h"

namespace hoist::receiver {
namespace {

using ::testing::ElementsAre;
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

// Runs `sql` on the journal file through a connection of its own.
void ExecOnFile(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

int SchemaVersionOf(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &q,
                               nullptr),
            SQLITE_OK);
  int version = -1;
  if (sqlite3_step(q) == SQLITE_ROW) version = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return version;
}

class JournalDesiredTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/hoist-journal-desired-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/receiver.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<SqliteJournal> Open() {
    auto j = SqliteJournal::Open(path_);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *std::move(j) : nullptr;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(JournalDesiredTest, RolloutAndDesiredAreOneDurableCommit) {
  const hoist::v1::Rollout running =
      MakeRollout("r-1", "web", hoist::v1::ROLLOUT_STATE_RUNNING, 10);
  const DesiredState desired = Desired("web", 'b', "r-1");
  {
    auto j = Open();
    ASSERT_NE(j, nullptr);
    const int64_t before = j->commits();
    ASSERT_TRUE(j->SaveRolloutAndDesired(running, desired).ok());
    EXPECT_EQ(j->commits() - before, 1);
  }
  auto j = Open();
  ASSERT_NE(j, nullptr);
  auto rollout = j->GetRollout("r-1");
  ASSERT_TRUE(rollout.ok()) << rollout.status();
  EXPECT_EQ(rollout->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  auto listed = j->ListDesired();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  ExpectSameDesired(listed->front(), desired);
}

// A failure of either half writes neither: a trigger on the journal file
// makes the desired state's (then the rollout's) insert fail.
TEST_F(JournalDesiredTest, RolloutAndDesiredAreWrittenTogetherOrNotAtAll) {
  Open().reset();  // creates the schema
  ExecOnFile(path_,
             "CREATE TRIGGER refuse_desired BEFORE INSERT ON desired BEGIN "
             "SELECT RAISE(ABORT, 'injected'); END;");
  {
    auto j = Open();
    ASSERT_NE(j, nullptr);
    EXPECT_FALSE(
        j->SaveRolloutAndDesired(
             MakeRollout("r-1", "web", hoist::v1::ROLLOUT_STATE_RUNNING, 10),
             Desired("web", 'b', "r-1"))
            .ok());
    EXPECT_EQ(j->GetRollout("r-1").status().code(),
              absl::StatusCode::kNotFound);
  }
  ExecOnFile(path_,
             "DROP TRIGGER refuse_desired;"
             "CREATE TRIGGER refuse_rollout BEFORE INSERT ON rollouts BEGIN "
             "SELECT RAISE(ABORT, 'injected'); END;");
  auto j = Open();
  ASSERT_NE(j, nullptr);
  EXPECT_FALSE(
      j->SaveRolloutAndDesired(
           MakeRollout("r-2", "web", hoist::v1::ROLLOUT_STATE_RUNNING, 20),
           Desired("web", 'c', "r-2"))
          .ok());
  auto listed = j->ListDesired();
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed, IsEmpty());
}

// The tables of a version 2 journal, as its CREATE statements made them.
constexpr char kVersionTwoSchema[] = R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version(version) VALUES (2);
CREATE TABLE deliveries (
  dedupe_key TEXT PRIMARY KEY,
  rollout_id TEXT NOT NULL,
  service TEXT NOT NULL,
  accepted INTEGER NOT NULL,
  summary TEXT NOT NULL,
  duplicates INTEGER NOT NULL DEFAULT 0,
  last_duplicate INTEGER
);
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  state INTEGER NOT NULL,
  created INTEGER NOT NULL,
  blob BLOB NOT NULL
);
CREATE INDEX rollouts_service_created ON rollouts(service, created);
CREATE INDEX rollouts_created ON rollouts(created);
CREATE TABLE host_events (
  rollout_id TEXT NOT NULL,
  agent TEXT NOT NULL,
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  blob BLOB NOT NULL
);
CREATE INDEX host_events_rollout ON host_events(rollout_id, agent, seq);
CREATE TABLE host_results (
  rollout_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  blob BLOB NOT NULL,
  PRIMARY KEY (rollout_id, idx)
);
INSERT INTO deliveries(dedupe_key, rollout_id, service, accepted, summary)
  VALUES ('k-1', 'r-old', 'web', 1700000000000000, 'promoted web:1');
)sql";

// A rollout as a version 2 journal stored it (a blob and its columns).
void InsertOldRollout(const std::string& path, const hoist::v1::Rollout& r) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* ins = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "INSERT INTO rollouts(id, service, state, "
                               "created, blob) VALUES (?, ?, ?, ?, ?)",
                               -1, &ins, nullptr),
            SQLITE_OK);
  const std::string blob = r.SerializeAsString();
  sqlite3_bind_text(ins, 1, r.id().c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(ins, 2, r.service().c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(ins, 3, r.state());
  sqlite3_bind_int64(ins, 4, r.created().seconds() * 1000000);
  sqlite3_bind_blob(ins, 5, blob.data(), static_cast<int>(blob.size()),
                    SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(ins), SQLITE_DONE);
  sqlite3_finalize(ins);
  sqlite3_close(db);
}

TEST_F(JournalDesiredTest, VersionTwoJournalIsMigratedAndKeepsItsRollouts) {
  ExecOnFile(path_, kVersionTwoSchema);
  InsertOldRollout(path_, MakeRollout("r-old", "web",
                                      hoist::v1::ROLLOUT_STATE_SUCCEEDED, 5));
  {
    auto j = Open();
    ASSERT_NE(j, nullptr);
    EXPECT_EQ(SchemaVersionOf(path_), SqliteJournal::kSchemaVersion);
    ASSERT_TRUE(
        j->SaveRolloutAndDesired(
             MakeRollout("r-new", "web", hoist::v1::ROLLOUT_STATE_RUNNING, 10),
             Desired("web", 'b', "r-new"))
            .ok());
    ASSERT_TRUE(j->SavePreviousDesired("r-new", std::nullopt).ok());
    ConvergeAttempts a;
    a.service = "web";
    a.agent = "web-1";
    ASSERT_TRUE(j->SaveAttempts(a).ok());
  }
  auto j = Open();
  ASSERT_NE(j, nullptr);
  auto old = j->GetRollout("r-old");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  auto delivery = j->FindDelivery("k-1");
  ASSERT_TRUE(delivery.ok() && delivery->has_value());
  EXPECT_EQ((*delivery)->rollout_id, "r-old");
  auto history = j->ListRollouts("web", 10);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ(history->front().id(), "r-new");
  auto desired = j->ListDesired();
  ASSERT_TRUE(desired.ok());
  EXPECT_THAT(Services(*desired), ElementsAre("web"));
  auto previous = j->GetPreviousDesired("r-new");
  ASSERT_TRUE(previous.ok()) << previous.status();
  EXPECT_FALSE(previous->has_value());
  auto attempts = j->ListAttempts();
  ASSERT_TRUE(attempts.ok());
  EXPECT_THAT(Keys(*attempts), ElementsAre("web/web-1"));
  auto check = j->IntegrityCheck();
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(*check, "ok");
}

}  // namespace
}  // namespace hoist::receiver
