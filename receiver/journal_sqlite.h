// SqliteJournal: the production Journal on one SQLite file.
//
// The database runs in WAL mode with synchronous=FULL, so a write that
// returned OK survives a crash of the process or the machine. Every method is
// thread-safe.
//
// Group commit: writes (AcceptDelivery, SaveRollout, SaveHostProgress,
// AppendHostEvent and the desired-state writes) are queued; one writer thread
// at a time takes every write queued so far and runs them in ONE transaction
// (each in its own SAVEPOINT, so a failing write is rolled back alone and
// reports its own error), then COMMITs once: concurrent writers share one
// fsync. Each write returns only after the COMMIT that contains it is durable;
// when that COMMIT fails every write of the batch reports the error.
//
// Duplicate counts (CountDuplicate) are best effort, as the Journal contract
// allows: they are kept in memory and written with the next commit, or in a
// commit of their own at most once a second, and on destruction. Counts a
// commit could not write are logged and kept in memory for the next commit
// (they are lost only when the journal closes without being able to write
// them, which is logged too).
//
// Reads use a second, query-only connection (WAL readers do not wait for a
// writer): FindDelivery does not queue behind another write's fsync. A read
// sees every write that has returned OK and nothing that is not yet durable.
//
// Exclusive ownership: Open() takes an exclusive flock(2) on "<path>.lock"
// and holds it while the journal lives, so a second receiver pointed at the
// same file refuses to start (FAILED_PRECONDITION naming the lock file)
// instead of interleaving rollouts with the first one.
#ifndef HOIST_RECEIVER_JOURNAL_SQLITE_H_
#define HOIST_RECEIVER_JOURNAL_SQLITE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "receiver/journal.h"

struct sqlite3;

namespace hoist::receiver {

class SqliteJournal : public Journal {
 public:
  // Opens (creating if needed) the journal at `path`, creates or checks the
  // schema. FAILED_PRECONDITION when another process holds the journal.
  static absl::StatusOr<std::unique_ptr<SqliteJournal>> Open(
      const std::string& path);

  struct Options {
    // Test hook, null in production: called by the committing thread with
    // the number of writes in the batch, just before their COMMIT.
    std::function<void(int writes)> before_commit_for_testing;
    // Test hook, null in production: asked at every COMMIT of the write
    // connection (sqlite3_commit_hook); true makes that COMMIT fail and roll
    // back, as a full disk would. Called with the write connection's lock
    // held: it must not call into the journal.
    std::function<bool()> fail_commit_for_testing;
  };
  static absl::StatusOr<std::unique_ptr<SqliteJournal>> Open(
      const std::string& path, Options options);

  ~SqliteJournal() override;  // writes pending duplicate counts, closes.

  SqliteJournal(const SqliteJournal&) = delete;
  SqliteJournal& operator=(const SqliteJournal&) = delete;

  absl::StatusOr<std::optional<DeliveryRecord>> FindDelivery(
      const std::string& dedupe_key) override;
  absl::Status AcceptDelivery(const DeliveryRecord& delivery,
                              const hoist::v1::Rollout& rollout) override;
  absl::Status CountDuplicate(const std::string& dedupe_key,
                              absl::Time at) override;
  absl::Status SaveRollout(const hoist::v1::Rollout& rollout) override;
  absl::Status SaveHostProgress(
      const std::string& rollout_id, const std::vector<HostUpdate>& hosts,
      const std::vector<HostEventRecord>& events) override;
  absl::Status AppendHostEvent(const std::string& rollout_id,
                               const std::string& agent,
                               const hoist::v1::DeployEvent& event) override;
  absl::StatusOr<hoist::v1::Rollout> GetRollout(const std::string& id) override;
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) override;
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListUnfinished() override;
  absl::StatusOr<std::vector<hoist::v1::DeployEvent>> HostEvents(
      const std::string& rollout_id, const std::string& agent) override;
  absl::Status SaveDesired(const DesiredState& desired) override;
  absl::Status SaveRolloutAndDesired(const hoist::v1::Rollout& rollout,
                                     const DesiredState& desired) override;
  absl::Status DeleteDesired(const std::string& service) override;
  absl::StatusOr<std::vector<DesiredState>> ListDesired() override;
  absl::Status SavePreviousDesired(
      const std::string& rollout_id,
      const std::optional<DesiredState>& previous) override;
  absl::StatusOr<std::optional<DesiredState>> GetPreviousDesired(
      const std::string& rollout_id) override;
  absl::Status SaveAttempts(const ConvergeAttempts& attempts) override;
  absl::StatusOr<std::vector<ConvergeAttempts>> ListAttempts() override;
  absl::Status SaveRolloutWithOutbox(
      const hoist::v1::Rollout& rollout,
      const std::vector<OutboxRow>& rows) override;
  absl::Status EnqueueNotifications(
      const std::vector<OutboxRow>& rows) override;
  absl::StatusOr<std::vector<OutboxRow>> ListNotifications(int limit) override;
  absl::Status RescheduleNotification(const std::string& id, int attempts,
                                      absl::Time next_attempt) override;
  absl::Status DeleteNotification(const std::string& id) override;
  absl::StatusOr<int64_t> CountNotifications() override;

  // Number of duplicate deliveries counted for `dedupe_key` (0 when unknown).
  absl::StatusOr<int64_t> DuplicateCount(const std::string& dedupe_key);

  // Durable COMMITs (one fsync each) of writes since Open.
  int64_t commits() const;
  // Writes queued and not yet taken by a committing thread.
  int queued_writes() const;

  // Result of PRAGMA integrity_check: "ok" for a sound database.
  absl::StatusOr<std::string> IntegrityCheck();

  // The value of `PRAGMA <name>` on the write connection, as text ("2" for
  // synchronous=FULL, "wal" for journal_mode). Settings such as synchronous
  // are per connection, so only the write connection shows what guards the
  // writes. `name` must be a bare pragma name ([a-z_]+).
  absl::StatusOr<std::string> WriterPragma(const std::string& name);

  // Current schema version (see the `schema_version` table). Version 2 added
  // the `host_results` table (per-host rows written by SaveHostProgress);
  // version 3 the desired-state tables `desired`, `previous_desired` and
  // `converge_attempts`. An older journal is migrated on Open (the missing
  // tables are created, nothing else changes), a newer one is refused.
  static constexpr int kSchemaVersion = 4;

 private:
  // One queued write: `body` runs inside the batch's transaction.
  struct PendingWrite {
    std::function<absl::Status()> body;
    absl::Status status;
    bool done = false;
  };
  struct DuplicateTally {
    int64_t count = 0;
    absl::Time last;
  };

  // What CommitBatch did.
  struct BatchOutcome {
    bool committed = false;  // the COMMIT succeeded
    // Whether the batch's duplicate counts were written; when not, the
    // caller keeps them for the next commit.
    absl::Status duplicates_status;
  };

  SqliteJournal(sqlite3* db, int lock_fd, Options options);

  // The steps of Open() after the lock is taken and the write connection
  // opened; `path` is for error messages. Each returns the first error.
  // Busy timeout, WAL, synchronous=FULL, cache size (and the test hook).
  absl::Status ConfigureWriter(const std::string& path)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Checks schema_version (FAILED_PRECONDITION for a newer journal), then
  // creates what is missing in one transaction: every table for a new
  // journal, the tables added since for an older one.
  absl::Status CreateOrMigrateSchema(const std::string& path)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The query-only read connection.
  absl::Status OpenReader(const std::string& path)
      ABSL_LOCKS_EXCLUDED(read_mu_);
  // sqlite3_commit_hook callback for Options::fail_commit_for_testing.
  static int CommitHookForTesting(void* journal);

  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `body` for the next group commit and returns its own status once
  // that commit is durable (or failed). `body` runs with mu_ held.
  absl::Status Write(std::function<absl::Status()> body)
      ABSL_LOCKS_EXCLUDED(mu_, queue_mu_);
  // As the committing thread: takes every queued write and the pending
  // duplicate counts, commits them (queue_mu_ is released meanwhile), marks
  // the writes done and wakes their writers.
  void CommitQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Adds counts a commit could not write back to duplicates_ and logs why.
  void KeepDuplicatesLocked(
      const std::map<std::string, DuplicateTally>& duplicates,
      const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Runs `batch` and the duplicate counts in one transaction and commits;
  // sets each write's status.
  BatchOutcome CommitBatch(
      const std::vector<PendingWrite*>& batch,
      const std::map<std::string, DuplicateTally>& duplicates)
      ABSL_LOCKS_EXCLUDED(mu_, queue_mu_);
  // Runs each write of `batch` in a savepoint of its own inside the open
  // transaction. An error only when SQLite rolled the whole transaction back
  // (every write of the batch then has that error).
  absl::Status RunWritesLocked(const std::vector<PendingWrite*>& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `duplicates` to their deliveries inside the open transaction, in a
  // savepoint rolled back on error.
  absl::Status WriteDuplicateCountsLocked(
      const std::map<std::string, DuplicateTally>& duplicates)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets every write of `batch` that has no error yet to `status`.
  static void FailAll(const std::vector<PendingWrite*>& batch,
                      const absl::Status& status);
  absl::Status SaveRolloutLocked(const hoist::v1::Rollout& rollout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertNotificationsLocked(const std::vector<OutboxRow>& rows)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces the rows of `hosts` in host_results.
  absl::Status UpsertHostResultsLocked(const std::string& rollout_id,
                                       const std::vector<HostUpdate>& hosts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts or replaces `desired` (INVALID_ARGUMENT for an empty service).
  absl::Status SaveDesiredLocked(const DesiredState& desired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AppendHostEventLocked(const std::string& rollout_id,
                                     const std::string& agent,
                                     const hoist::v1::DeployEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` in BEGIN IMMEDIATE … COMMIT (ROLLBACK when it fails).
  absl::Status InTransaction(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // On the read connection, in one read transaction (a consistent snapshot
  // of rollouts and their host results).
  absl::StatusOr<std::vector<hoist::v1::Rollout>> QueryRollouts(
      const std::string& sql, const std::vector<std::string>& text_args,
      int limit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // Overlays the host results written since `rollout`'s blob
  // (SaveHostProgress). DATA_LOSS for a row that does not parse or fit.
  absl::Status ApplyHostResultsLocked(hoist::v1::Rollout* rollout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);

  const Options options_;

  // The write connection.
  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);

  // The group-commit queue. Lock order: queue_mu_ is never held while
  // waiting for mu_.
  mutable absl::Mutex queue_mu_;
  absl::CondVar queue_cv_;
  std::vector<PendingWrite*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool committing_ ABSL_GUARDED_BY(queue_mu_) = false;
  int64_t commits_ ABSL_GUARDED_BY(queue_mu_) = 0;
  std::map<std::string, DuplicateTally> duplicates_ ABSL_GUARDED_BY(queue_mu_);
  absl::Time duplicates_flushed_ ABSL_GUARDED_BY(queue_mu_);

  // The read connection (PRAGMA query_only).
  absl::Mutex read_mu_;
  sqlite3* reader_ ABSL_GUARDED_BY(read_mu_) = nullptr;

  int lock_fd_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_JOURNAL_SQLITE_H_
