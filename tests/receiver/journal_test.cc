#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "receiver/journal_sqlite.h"

namespace hoist::receiver {
namespace {

std::string TempDir() {
  std::string tmpl = "/tmp/hoist-journal-test-XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

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

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    path_ = dir_ + "/receiver.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  std::string path_;
};

TEST_F(JournalTest, SecondOpenOfTheSameFileIsRefusedUntilTheFirstCloses) {
  auto first = SqliteJournal::Open(path_);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = SqliteJournal::Open(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("another hoist-receiver"),
            absl::string_view::npos)
      << second.status();
  first->reset();
  auto third = SqliteJournal::Open(path_);
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST_F(JournalTest, SecondProcessIsRefused) {
  auto first = SqliteJournal::Open(path_);
  ASSERT_TRUE(first.ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto second = SqliteJournal::Open(path_);
    _exit(!second.ok() && second.status().code() ==
                              absl::StatusCode::kFailedPrecondition
              ? 0
              : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(JournalTest, UsesWalAndFullSync) {
  {
    auto j = SqliteJournal::Open(path_);
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE(
        (*j)->SaveRollout(
                MakeRollout("a", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
            .ok());
    // WAL mode keeps a -wal file next to the database while open.
    EXPECT_EQ(access((path_ + "-wal").c_str(), F_OK), 0);
    // Both settings belong to the connection that writes, so ask it.
    auto mode = (*j)->WriterPragma("journal_mode");
    ASSERT_TRUE(mode.ok()) << mode.status();
    EXPECT_EQ(*mode, "wal");
    auto sync = (*j)->WriterPragma("synchronous");
    ASSERT_TRUE(sync.ok()) << sync.status();
    EXPECT_EQ(*sync, "2") << "PRAGMA synchronous must be FULL (2)";
  }
}

TEST_F(JournalTest,
       HostProgressIsOneTransactionAppliedOnReadAndSupersededBySave) {
  auto j = SqliteJournal::Open(path_);
  ASSERT_TRUE(j.ok());
  hoist::v1::Rollout r =
      MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 10);
  hoist::v1::HostResult* h2 = r.add_hosts();
  h2->set_agent("web-2");
  h2->set_deploy_id("r-1-web-2");
  ASSERT_TRUE((*j)->SaveRollout(r).ok());

  Journal::HostUpdate u;
  u.index = 1;
  u.result = r.hosts(1);
  u.result.set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  hoist::v1::DeployEvent e;
  e.set_deploy_id("r-1-web-2");
  e.set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  ASSERT_TRUE((*j)->SaveHostProgress("r-1", {u}, {{"web-2", e}}).ok());
  u.result.set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  u.result.mutable_finished()->set_seconds(20);
  e.set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  ASSERT_TRUE((*j)->SaveHostProgress("r-1", {u}, {{"web-2", e}}).ok());

  // Reads (and recovery) see the newest host rows over the rollout's blob.
  for (int reopen = 0; reopen < 2; ++reopen) {
    if (reopen == 1) {
      j->reset();
      j = SqliteJournal::Open(path_);
      ASSERT_TRUE(j.ok());
    }
    auto got = (*j)->GetRollout("r-1");
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->hosts_size(), 2);
    EXPECT_EQ(got->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_UNSPECIFIED);
    EXPECT_EQ(got->hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    EXPECT_EQ(got->hosts(1).finished().seconds(), 20);
    auto unfinished = (*j)->ListUnfinished();
    ASSERT_TRUE(unfinished.ok());
    ASSERT_EQ(unfinished->size(), 1u);
    EXPECT_EQ((*unfinished)[0].hosts(1).phase(),
              hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    auto listed = (*j)->ListRollouts("app", 10);
    ASSERT_TRUE(listed.ok());
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0].hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    auto events = (*j)->HostEvents("r-1", "web-2");
    ASSERT_TRUE(events.ok());
    ASSERT_EQ(events->size(), 2u);
    EXPECT_EQ((*events)[1].phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  }

  // A whole-rollout save is the truth again: older host rows do not win.
  r.set_state(hoist::v1::ROLLOUT_STATE_FAILED);
  r.mutable_hosts(1)->set_phase(hoist::v1::DEPLOY_PHASE_FAILED);
  ASSERT_TRUE((*j)->SaveRollout(r).ok());
  auto got = (*j)->GetRollout("r-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state(), hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(got->hosts(1).phase(), hoist::v1::DEPLOY_PHASE_FAILED);
}

TEST_F(JournalTest, HostProgressOutsideTheRolloutIsRejectedAtomically) {
  auto j = SqliteJournal::Open(path_);
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE(
      (*j)->SaveRollout(
              MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 10))
          .ok());
  Journal::HostUpdate bad;
  bad.index = 5;  // the rollout has one host
  bad.result.set_agent("web-6");
  ASSERT_TRUE((*j)->SaveHostProgress("r-1", {bad}, {}).ok());
  // Reading it back reports the inconsistency instead of guessing.
  auto got = (*j)->GetRollout("r-1");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
}

// Creates a journal file as schema version `version` would have left it:
// the version-1 tables (no host_results) and that version number.
void WriteOldJournal(const std::string& path, int version) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const std::string sql = absl::StrCat(
      "CREATE TABLE schema_version (version INTEGER NOT NULL);"
      "INSERT INTO schema_version(version) VALUES (",
      version,
      ");"
      "CREATE TABLE rollouts (id TEXT PRIMARY KEY, service TEXT NOT NULL, "
      "state INTEGER NOT NULL, created INTEGER NOT NULL, blob BLOB NOT "
      "NULL);");
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST_F(JournalTest, VersionOneJournalIsMigratedOnOpen) {
  WriteOldJournal(path_, 1);
  {
    auto j = SqliteJournal::Open(path_);
    ASSERT_TRUE(j.ok()) << j.status();
    hoist::v1::Rollout r =
        MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 10);
    ASSERT_TRUE((*j)->SaveRollout(r).ok());
    Journal::HostUpdate u;
    u.index = 0;
    u.result = r.hosts(0);
    u.result.set_phase(hoist::v1::DEPLOY_PHASE_STARTING);
    ASSERT_TRUE((*j)->SaveHostProgress("r-1", {u}, {}).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &q,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), SqliteJournal::kSchemaVersion);
  sqlite3_finalize(q);
  sqlite3_close(db);
  auto j = SqliteJournal::Open(path_);
  ASSERT_TRUE(j.ok()) << j.status();
  auto got = (*j)->GetRollout("r-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_STARTING);
}

// Polls `done` every millisecond for at most `timeout`; true once it holds.
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// Holds the first group commit open (in the test hook, just before its
// COMMIT) until `release` says so; records every batch's size.
struct CommitGate {
  std::atomic<bool> in_first_commit{false};
  std::atomic<bool> open{false};
  absl::Mutex mu;
  std::vector<int> batches ABSL_GUARDED_BY(mu);

  SqliteJournal::Options Options() {
    SqliteJournal::Options options;
    options.before_commit_for_testing = [this](int writes) {
      bool first;
      {
        absl::MutexLock lock(&mu);
        first = batches.empty();
        batches.push_back(writes);
      }
      if (!first) return;
      in_first_commit = true;
      // Bounded: a broken group commit must fail the test, not hang it.
      WaitFor([this] { return open.load(); }, absl::Seconds(20));
    };
    return options;
  }
  std::vector<int> Batches() {
    absl::MutexLock lock(&mu);
    return batches;
  }
};

DeliveryRecord Delivery(int i) {
  return DeliveryRecord{absl::StrCat("docker|promoted|repo|app/", i, "|abc"),
                        absl::StrCat("r-", i), "app",
                        absl::FromUnixSeconds(1700000000 + i),
                        absl::StrCat("promoted app:", i)};
}

// Counts xSync calls on WAL files. While it lives it is SQLite's default
// VFS: the previous default, except that each WAL file it opens gets a copy
// of its io methods whose xSync counts before passing on. One at a time.
class SyncCountingVfs {
 public:
  SyncCountingVfs() {
    instance_ = this;
    base_ = sqlite3_vfs_find(nullptr);
    vfs_ = *base_;
    vfs_.zName = "hoist-sync-counting";
    vfs_.xOpen = &Open;
    EXPECT_EQ(sqlite3_vfs_register(&vfs_, /*makeDflt=*/1), SQLITE_OK);
  }
  ~SyncCountingVfs() {
    sqlite3_vfs_unregister(&vfs_);
    instance_ = nullptr;
  }
  SyncCountingVfs(const SyncCountingVfs&) = delete;
  SyncCountingVfs& operator=(const SyncCountingVfs&) = delete;

  int wal_syncs() const { return wal_syncs_.load(); }

 private:
  static int Open(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags,
                  int* out_flags) {
    SyncCountingVfs* self = instance_;
    const int rc =
        self->base_->xOpen(self->base_, name, file, flags, out_flags);
    if (rc != SQLITE_OK || file->pMethods == nullptr ||
        (flags & SQLITE_OPEN_WAL) == 0) {
      return rc;
    }
    // The unix VFS gives every WAL file the same methods.
    absl::MutexLock lock(&self->mu_);
    if (self->real_ == nullptr) {
      self->real_ = file->pMethods;
      self->wal_methods_ = *file->pMethods;
      self->wal_methods_.xSync = &WalSync;
    }
    EXPECT_EQ(file->pMethods, self->real_) << name;
    file->pMethods = &self->wal_methods_;
    return rc;
  }
  static int WalSync(sqlite3_file* file, int flags) {
    ++instance_->wal_syncs_;
    return instance_->real_->xSync(file, flags);
  }

  static inline SyncCountingVfs* instance_ = nullptr;
  sqlite3_vfs* base_;
  sqlite3_vfs vfs_;
  absl::Mutex mu_;
  const sqlite3_io_methods* real_ = nullptr;
  sqlite3_io_methods wal_methods_;
  std::atomic<int> wal_syncs_{0};
};

TEST_F(JournalTest, AcceptedDeliveryIsSyncedToTheWalBeforeItReturns) {
  SyncCountingVfs vfs;  // outlives the journal's connections
  std::atomic<int> syncs_before_commit{-1};
  SqliteJournal::Options options;
  options.before_commit_for_testing = [&](int) {
    syncs_before_commit = vfs.wal_syncs();
  };
  auto j = SqliteJournal::Open(path_, options);
  ASSERT_TRUE(j.ok()) << j.status();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*j)->AcceptDelivery(
                        Delivery(i),
                        MakeRollout(absl::StrCat("r-", i), "app",
                                    hoist::v1::ROLLOUT_STATE_PENDING, 100 + i))
                    .ok());
    // The 202 this write backs promises a durable row: its COMMIT must have
    // synced the WAL before AcceptDelivery returned.
    EXPECT_GE(vfs.wal_syncs() - syncs_before_commit.load(), 1)
        << "accepted delivery " << i << " returned before any WAL sync ("
        << vfs.wal_syncs() << " WAL syncs in all)";
  }
}

TEST_F(JournalTest, ConcurrentAcceptsShareOneCommitAndAllSurviveReopen) {
  constexpr int kWriters = 8;
  CommitGate gate;
  {
    auto j = SqliteJournal::Open(path_, gate.Options());
    ASSERT_TRUE(j.ok()) << j.status();
    SqliteJournal* journal = j->get();
    std::vector<absl::Status> results(kWriters);
    std::vector<std::thread> writers;
    auto accept = [&](int i) {
      results[i] = journal->AcceptDelivery(
          Delivery(i), MakeRollout(absl::StrCat("r-", i), "app",
                                   hoist::v1::ROLLOUT_STATE_PENDING, 100 + i));
    };
    // Writer 0 commits alone and is held just before its COMMIT...
    writers.emplace_back(accept, 0);
    ASSERT_TRUE(WaitFor([&] { return gate.in_first_commit.load(); },
                        absl::Seconds(20)));
    // ...not yet durable, so a read does not see it (and the read does not
    // wait for the writer).
    auto early = journal->FindDelivery(Delivery(0).dedupe_key);
    ASSERT_TRUE(early.ok()) << early.status();
    EXPECT_FALSE(early->has_value());
    // The others arrive meanwhile and queue for the next commit.
    for (int i = 1; i < kWriters; ++i) writers.emplace_back(accept, i);
    EXPECT_TRUE(
        WaitFor([&] { return journal->queued_writes() == kWriters - 1; },
                absl::Seconds(20)))
        << "queued: " << journal->queued_writes();
    gate.open = true;
    for (std::thread& t : writers) t.join();
    for (int i = 0; i < kWriters; ++i)
      EXPECT_TRUE(results[i].ok()) << results[i];
    // Two fsyncs for eight writes: the first alone, then the seven queued.
    EXPECT_EQ(journal->commits(), 2);
    EXPECT_EQ(gate.Batches(), (std::vector<int>{1, kWriters - 1}));
  }
  auto j = SqliteJournal::Open(path_);
  ASSERT_TRUE(j.ok()) << j.status();
  for (int i = 0; i < kWriters; ++i) {
    auto found = (*j)->FindDelivery(Delivery(i).dedupe_key);
    ASSERT_TRUE(found.ok()) << found.status();
    ASSERT_TRUE(found->has_value()) << i;
    EXPECT_EQ((*found)->rollout_id, absl::StrCat("r-", i));
    auto r = (*j)->GetRollout(absl::StrCat("r-", i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->created().seconds(), 100 + i);
  }
  auto check = (*j)->IntegrityCheck();
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(*check, "ok");
}

TEST_F(JournalTest, AFailingWriteInABatchFailsAloneAndTheOthersCommit) {
  CommitGate gate;
  auto j = SqliteJournal::Open(path_, gate.Options());
  ASSERT_TRUE(j.ok()) << j.status();
  SqliteJournal* journal = j->get();
  absl::Status first, good_a, clash, good_b;
  std::thread t0([&] {
    first = journal->AcceptDelivery(
        Delivery(0),
        MakeRollout("r-0", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1));
  });
  ASSERT_TRUE(
      WaitFor([&] { return gate.in_first_commit.load(); }, absl::Seconds(20)));
  std::thread t1([&] {
    good_a = journal->SaveRollout(
        MakeRollout("r-a", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 2));
  });
  ASSERT_TRUE(WaitFor([&] { return journal->queued_writes() == 1; },
                      absl::Seconds(20)));
  // Same dedupe key as writer 0: the primary key refuses it.
  std::thread t2([&] {
    DeliveryRecord again = Delivery(0);
    again.rollout_id = "r-clash";
    clash = journal->AcceptDelivery(
        again,
        MakeRollout("r-clash", "app", hoist::v1::ROLLOUT_STATE_PENDING, 3));
  });
  ASSERT_TRUE(WaitFor([&] { return journal->queued_writes() == 2; },
                      absl::Seconds(20)));
  std::thread t3([&] {
    good_b = journal->AcceptDelivery(
        Delivery(1),
        MakeRollout("r-1", "app", hoist::v1::ROLLOUT_STATE_PENDING, 4));
  });
  ASSERT_TRUE(WaitFor([&] { return journal->queued_writes() == 3; },
                      absl::Seconds(20)));
  gate.open = true;
  t0.join();
  t1.join();
  t2.join();
  t3.join();
  EXPECT_TRUE(first.ok()) << first;
  EXPECT_TRUE(good_a.ok()) << good_a;
  EXPECT_FALSE(clash.ok());
  EXPECT_TRUE(good_b.ok()) << good_b;
  EXPECT_EQ(gate.Batches(), (std::vector<int>{1, 3}));
  EXPECT_EQ(journal->commits(), 2);
  // The clash's rollout was rolled back with its delivery; the rest is there.
  EXPECT_EQ(journal->GetRollout("r-clash").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(journal->GetRollout("r-a").ok());
  EXPECT_TRUE(journal->GetRollout("r-1").ok());
  auto owner = journal->FindDelivery(Delivery(0).dedupe_key);
  ASSERT_TRUE(owner.ok() && owner->has_value());
  EXPECT_EQ((*owner)->rollout_id, "r-0");
}

TEST_F(JournalTest, DuplicateCountsAreBatchedAndSurviveClose) {
  constexpr int kDuplicates = 1000;
  DeliveryRecord d = Delivery(7);
  {
    auto j = SqliteJournal::Open(path_);
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE((*j)->AcceptDelivery(
                        d, MakeRollout("r-7", "app",
                                       hoist::v1::ROLLOUT_STATE_PENDING, 1))
                    .ok());
    const int64_t before = (*j)->commits();
    for (int i = 0; i < kDuplicates; ++i) {
      ASSERT_TRUE(
          (*j)->CountDuplicate(d.dedupe_key, absl::FromUnixSeconds(10 + i))
              .ok());
    }
    // At most one commit per second of counting (the loop takes far less
    // than a second; one flush may fall inside it), never one per count.
    EXPECT_LE((*j)->commits() - before, 2);
  }
  // Closing wrote the counts still held in memory.
  auto j = SqliteJournal::Open(path_);
  ASSERT_TRUE(j.ok());
  auto n = (*j)->DuplicateCount(d.dedupe_key);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, kDuplicates);
}

// A COMMIT that fails (as on a full disk) fails the writes it carried, and
// writes none of them; the duplicate counts it carried are kept in memory
// and written by the next commit, not dropped.
TEST_F(JournalTest, DuplicateCountsOfAFailedCommitAreWrittenByTheNextOne) {
  std::atomic<bool> fail_commits{false};
  SqliteJournal::Options options;
  options.fail_commit_for_testing = [&] { return fail_commits.load(); };
  auto j = SqliteJournal::Open(path_, options);
  ASSERT_TRUE(j.ok()) << j.status();
  const DeliveryRecord d = Delivery(3);
  ASSERT_TRUE(
      (*j)->AcceptDelivery(
              d, MakeRollout("r-3", "app", hoist::v1::ROLLOUT_STATE_PENDING, 1))
          .ok());
  fail_commits = true;
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) {
    // Best effort: an error here only says that its commit failed.
    (*j)->CountDuplicate(d.dedupe_key, absl::FromUnixSeconds(10 + i))
        .IgnoreError();
  }
  const absl::Status failed = (*j)->SaveRollout(
      MakeRollout("r-4", "app", hoist::v1::ROLLOUT_STATE_RUNNING, 2));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ((*j)->GetRollout("r-4").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_NE(log.find("kept for the next commit"), std::string::npos) << log;

  fail_commits = false;
  auto n = (*j)->DuplicateCount(d.dedupe_key);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 5);
}

TEST_F(JournalTest, NewerSchemaIsRefusedWithAClearMessage) {
  WriteOldJournal(path_, SqliteJournal::kSchemaVersion + 1);
  auto j = SqliteJournal::Open(path_);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(j.status().message().find(absl::StrCat(
                "schema version ", SqliteJournal::kSchemaVersion + 1)),
            absl::string_view::npos)
      << j.status();
}

}  // namespace
}  // namespace hoist::receiver
