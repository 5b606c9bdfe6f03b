// SqliteJournal: the production Journal on one SQLite file.
//
// The database runs in WAL mode with synchronous=FULL, so a write that
// returned OK survives a crash of the process or the machine. One connection,
// guarded by a mutex: every method is thread-safe and calls are serialized.
//
// Exclusive ownership: Open() takes an exclusive flock(2) on "<path>.lock"
// and holds it while the journal lives, so a second receiver pointed at the
// same file refuses to start (FAILED_PRECONDITION naming the lock file)
// instead of interleaving rollouts with the first one.
#ifndef HOIST_RECEIVER_JOURNAL_SQLITE_H_
#define HOIST_RECEIVER_JOURNAL_SQLITE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "receiver/journal.h"

struct sqlite3;

namespace hoist::receiver {

class SqliteJournal : public Journal {
 public:
  // Opens (creating if needed) the journal at `path`, creates or checks the
  // schema. FAILED_PRECONDITION when another process holds the journal.
  static absl::StatusOr<std::unique_ptr<SqliteJournal>> Open(
      const std::string& path);
  ~SqliteJournal() override;

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

  // Number of duplicate deliveries counted for `dedupe_key` (0 when unknown).
  absl::StatusOr<int64_t> DuplicateCount(const std::string& dedupe_key);

  // Result of PRAGMA integrity_check: "ok" for a sound database.
  absl::StatusOr<std::string> IntegrityCheck();

  // Current schema version (see the `schema_version` table). Version 2 added
  // the `host_results` table (per-host rows written by SaveHostProgress); a
  // version 1 journal is migrated on Open, a newer one is refused.
  static constexpr int kSchemaVersion = 2;

 private:
  SqliteJournal(sqlite3* db, int lock_fd);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveRolloutLocked(const hoist::v1::Rollout& rollout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AppendHostEventLocked(const std::string& rollout_id,
                                     const std::string& agent,
                                     const hoist::v1::DeployEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` in BEGIN IMMEDIATE … COMMIT (ROLLBACK when it fails).
  absl::Status InTransaction(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<hoist::v1::Rollout>> QueryRollouts(
      const std::string& sql, const std::vector<std::string>& text_args,
      int limit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  int lock_fd_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_JOURNAL_SQLITE_H_
