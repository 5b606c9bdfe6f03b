#include "receiver/journal_sqlite.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace hoist::receiver {
namespace {

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status status() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
  }
  void BindText(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()),
                      SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const std::string& s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()),
                      SQLITE_TRANSIENT);
  }
  void BindInt(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // Makes the statement ready to run again (bindings are then replaced).
  void Reset() { sqlite3_reset(stmt_); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  absl::Status StepDone() {
    int rc = Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    return Error(rc);
  }
  absl::Status Error(int rc) const {
    std::string msg = absl::StrCat("sqlite: ", sqlite3_errmsg(db_));
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_FULL ||
        rc == SQLITE_IOERR) {
      return absl::UnavailableError(msg);
    }
    return absl::InternalError(msg);
  }
  std::string Text(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(
                   reinterpret_cast<const char*>(p),
                   static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  std::string Blob(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p ? std::string(
                   static_cast<const char*>(p),
                   static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status ExecOn(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string msg = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_FULL ||
      rc == SQLITE_IOERR) {
    return absl::UnavailableError(absl::StrCat("sqlite: ", msg));
  }
  return absl::InternalError(absl::StrCat("sqlite: ", msg));
}

// A read transaction on the read connection: every statement in its scope
// sees one snapshot. Declare it before the statements it covers (they must
// be finalized before it ends).
class ReadTransaction {
 public:
  explicit ReadTransaction(sqlite3* db) : db_(db) {
    status_ = ExecOn(db_, "BEGIN");
  }
  ~ReadTransaction() {
    if (status_.ok()) ExecOn(db_, "COMMIT").IgnoreError();
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  sqlite3* db_;
  absl::Status status_;
};

// How often duplicate counts get a commit of their own when no other write
// carries them.
constexpr absl::Duration kDuplicateFlushInterval = absl::Seconds(1);

int64_t TimestampMicros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000 + ts.nanos() / 1000;
}

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS deliveries (
  dedupe_key TEXT PRIMARY KEY,
  rollout_id TEXT NOT NULL,
  service TEXT NOT NULL,
  accepted INTEGER NOT NULL,
  summary TEXT NOT NULL,
  duplicates INTEGER NOT NULL DEFAULT 0,
  last_duplicate INTEGER
);
CREATE TABLE IF NOT EXISTS rollouts (
  id TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  state INTEGER NOT NULL,
  created INTEGER NOT NULL,
  blob BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rollouts_service_created ON rollouts(service, created);
CREATE INDEX IF NOT EXISTS rollouts_created ON rollouts(created);
CREATE TABLE IF NOT EXISTS host_events (
  rollout_id TEXT NOT NULL,
  agent TEXT NOT NULL,
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  blob BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS host_events_rollout ON host_events(rollout_id, agent, seq);
CREATE TABLE IF NOT EXISTS host_results (
  rollout_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  blob BLOB NOT NULL,
  PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE IF NOT EXISTS desired (
  service TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  tag TEXT NOT NULL,
  rollout_id TEXT NOT NULL,
  since INTEGER NOT NULL,
  on_hold INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS previous_desired (
  rollout_id TEXT PRIMARY KEY,
  present INTEGER NOT NULL,
  service TEXT NOT NULL,
  digest TEXT NOT NULL,
  tag TEXT NOT NULL,
  set_by TEXT NOT NULL,
  since INTEGER NOT NULL,
  on_hold INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS converge_attempts (
  service TEXT NOT NULL,
  agent TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_attempt INTEGER NOT NULL,
  gave_up INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  PRIMARY KEY (service, agent)
);
CREATE TABLE IF NOT EXISTS notifications (
  id TEXT PRIMARY KEY,
  sink TEXT NOT NULL,
  event TEXT NOT NULL,
  service TEXT NOT NULL,
  created INTEGER NOT NULL,
  agent TEXT NOT NULL,
  detail TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_attempt INTEGER NOT NULL,
  rollout BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_next ON notifications(next_attempt);
)sql";

// Binds `d` to parameters first..first+5 as (service, digest, tag,
// rollout_id, since, on_hold): the column order of `desired` and, after
// `present`, of `previous_desired`.
void BindDesired(Stmt& stmt, int first, const DesiredState& d) {
  stmt.BindText(first, d.service);
  stmt.BindText(first + 1, d.digest);
  stmt.BindText(first + 2, d.tag);
  stmt.BindText(first + 3, d.rollout_id);
  stmt.BindInt(first + 4, TimeToJournalMicros(d.since));
  stmt.BindInt(first + 5, d.on_hold ? 1 : 0);
}

// The DesiredState in columns first..first+5, in BindDesired's order.
DesiredState DesiredFromRow(Stmt& stmt, int first) {
  DesiredState d;
  d.service = stmt.Text(first);
  d.digest = stmt.Text(first + 1);
  d.tag = stmt.Text(first + 2);
  d.rollout_id = stmt.Text(first + 3);
  d.since = TimeFromJournalMicros(stmt.Int(first + 4));
  d.on_hold = stmt.Int(first + 5) != 0;
  return d;
}

// Takes the exclusive flock(2) on "<path>.lock" that makes the journal
// single-writer (docs/design.md, "Durability"). Returns the locked file
// descriptor; the lock lasts until it is closed.
absl::StatusOr<int> LockJournalFile(const std::string& path) {
  const std::string lock_path = path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("journal lock ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
  const int err = errno;
  ::close(fd);
  if (err == EWOULDBLOCK) {
    return absl::FailedPreconditionError(absl::StrCat(
        "journal ", path, " is in use by another hoist-receiver (lock ",
        lock_path, " is held); run one receiver per journal"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("journal lock ", lock_path, ": ", std::strerror(err)));
}

// Opens one connection to the journal file. `purpose` completes the error
// message ("" for the write connection, " for reading" for the other).
absl::StatusOr<sqlite3*> OpenConnection(const std::string& path, int flags,
                                        const char* purpose) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 flags | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc == SQLITE_OK) return db;
  std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  sqlite3_close(db);
  return absl::UnavailableError(
      absl::StrCat("open journal ", path, purpose, ": ", msg));
}

// The version in `schema_version`; 0 for a new journal (no row yet).
absl::StatusOr<int64_t> ReadSchemaVersion(sqlite3* db) {
  Stmt q(db, "SELECT version FROM schema_version LIMIT 1");
  HOIST_RETURN_IF_ERROR(q.status());
  const int rc = q.Step();
  if (rc == SQLITE_ROW) return q.Int(0);
  if (rc != SQLITE_DONE) return q.Error(rc);
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteJournal>> SqliteJournal::Open(
    const std::string& path) {
  return Open(path, Options());
}

absl::StatusOr<std::unique_ptr<SqliteJournal>> SqliteJournal::Open(
    const std::string& path, Options options) {
  HOIST_ASSIGN_OR_RETURN(const int lock_fd, LockJournalFile(path));
  absl::StatusOr<sqlite3*> db =
      OpenConnection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "");
  if (!db.ok()) {
    ::close(lock_fd);
    return db.status();
  }
  // From here on the journal owns the connection and the lock: an early
  // return closes both.
  std::unique_ptr<SqliteJournal> journal(
      new SqliteJournal(*db, lock_fd, std::move(options)));
  HOIST_RETURN_IF_ERROR(journal->ConfigureWriter(path));
  HOIST_RETURN_IF_ERROR(journal->CreateOrMigrateSchema(path));
  // The read connection is opened once the schema exists.
  HOIST_RETURN_IF_ERROR(journal->OpenReader(path));
  return journal;
}

absl::Status SqliteJournal::ConfigureWriter(const std::string& path) {
  absl::MutexLock lock(&mu_);
  sqlite3_busy_timeout(db_, 5000);
  if (options_.fail_commit_for_testing) {
    sqlite3_commit_hook(db_, &SqliteJournal::CommitHookForTesting, this);
  }
  // WAL and synchronous=FULL: a write that returned OK survives a crash of
  // the process or the machine (the Journal contract).
  HOIST_RETURN_IF_ERROR(Annotate(Exec("PRAGMA journal_mode=WAL"), path));
  HOIST_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));
  HOIST_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON"));
  // The working set is the latest rollouts; a 512 KiB page cache (SQLite's
  // default is 2 MB) holds it and keeps a long-running receiver's RSS flat.
  return Exec("PRAGMA cache_size=-512");
}

absl::Status SqliteJournal::CreateOrMigrateSchema(const std::string& path) {
  absl::MutexLock lock(&mu_);
  // The version first: a newer journal is refused before anything in it is
  // touched.
  HOIST_RETURN_IF_ERROR(Annotate(
      Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT "
           "NULL)"),
      path));
  HOIST_ASSIGN_OR_RETURN(const int64_t version, ReadSchemaVersion(db_));
  if (version < 0 || version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "journal ", path, " has schema version ", version,
        "; this hoist-receiver understands versions 1 to ", kSchemaVersion,
        " (a newer hoist-receiver wrote it: run that one, or start from a "
        "fresh state: file)"));
  }
  // Creates what is missing: everything for a new journal, the tables added
  // since for an older one (each version only added tables: host_results in
  // 2, the desired-state tables in 3, the notification outbox in 4). Rows
  // already there stay as they are.
  return InTransaction([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    HOIST_RETURN_IF_ERROR(Exec(kSchema));
    if (version == kSchemaVersion) return absl::OkStatus();
    Stmt w(db_, version == 0 ? "INSERT INTO schema_version(version) VALUES (?)"
                             : "UPDATE schema_version SET version = ?");
    HOIST_RETURN_IF_ERROR(w.status());
    w.BindInt(1, kSchemaVersion);
    return w.StepDone();
  });
}

absl::Status SqliteJournal::OpenReader(const std::string& path) {
  // query_only: it can never write, so the write connection stays the only
  // writer.
  HOIST_ASSIGN_OR_RETURN(
      sqlite3 * reader,
      OpenConnection(path, SQLITE_OPEN_READWRITE, " for reading"));
  absl::MutexLock lock(&read_mu_);
  reader_ = reader;
  sqlite3_busy_timeout(reader_, 5000);
  HOIST_RETURN_IF_ERROR(Annotate(ExecOn(reader_, "PRAGMA query_only=1"), path));
  return ExecOn(reader_, "PRAGMA cache_size=-512");
}

int SqliteJournal::CommitHookForTesting(void* journal) {
  return static_cast<SqliteJournal*>(journal)
                 ->options_.fail_commit_for_testing()
             ? 1
             : 0;
}

SqliteJournal::SqliteJournal(sqlite3* db, int lock_fd, Options options)
    : options_(std::move(options)),
      db_(db),
      duplicates_flushed_(absl::Now()),
      lock_fd_(lock_fd) {}

SqliteJournal::~SqliteJournal() {
  bool counts_pending = false;
  {
    absl::MutexLock lock(&queue_mu_);
    counts_pending = !duplicates_.empty();
  }
  // Duplicate counts held in memory get a last commit of their own.
  if (counts_pending) Write(nullptr).IgnoreError();
  {
    absl::MutexLock lock(&queue_mu_);
    if (!duplicates_.empty()) {
      LogWarning("journal closed with duplicate counts it could not write",
                 {{"deliveries", absl::StrCat(duplicates_.size())}});
    }
  }
  {
    absl::MutexLock lock(&read_mu_);
    sqlite3_close(reader_);
    reader_ = nullptr;
  }
  {
    absl::MutexLock lock(&mu_);
    sqlite3_close(db_);
    db_ = nullptr;
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

absl::Status SqliteJournal::Exec(const char* sql) { return ExecOn(db_, sql); }

absl::Status SqliteJournal::Write(std::function<absl::Status()> body) {
  PendingWrite write;
  write.body = std::move(body);
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(&write);
  while (!write.done) {
    if (committing_) {
      // Another thread is committing (maybe this write with it): wait for it.
      queue_cv_.Wait(&queue_mu_);
      continue;
    }
    // Not done and nobody committing: `write` is still queued. Commit every
    // queued write, this one included.
    CommitQueuedLocked();
  }
  return write.status;
}

void SqliteJournal::CommitQueuedLocked() {
  committing_ = true;
  std::vector<PendingWrite*> batch;
  batch.swap(queue_);
  std::map<std::string, DuplicateTally> duplicates;
  duplicates.swap(duplicates_);
  duplicates_flushed_ = absl::Now();
  // Writers queue behind this commit meanwhile, to share the next one.
  queue_mu_.Unlock();
  const BatchOutcome outcome = CommitBatch(batch, duplicates);
  queue_mu_.Lock();
  if (outcome.committed) ++commits_;
  if (!duplicates.empty() && !outcome.duplicates_status.ok()) {
    KeepDuplicatesLocked(duplicates, outcome.duplicates_status);
  }
  for (PendingWrite* w : batch) w->done = true;
  committing_ = false;
  queue_cv_.SignalAll();
}

void SqliteJournal::KeepDuplicatesLocked(
    const std::map<std::string, DuplicateTally>& duplicates,
    const absl::Status& why) {
  // Counts that arrived during the failed commit are already in duplicates_:
  // add to them.
  for (const auto& [key, tally] : duplicates) {
    DuplicateTally& kept = duplicates_[key];
    kept.count += tally.count;
    kept.last = std::max(kept.last, tally.last);
  }
  LogWarning(
      "journal could not write duplicate counts; kept for the next "
      "commit",
      {{"deliveries", absl::StrCat(duplicates.size())},
       {"error", why.ToString()}});
}

void SqliteJournal::FailAll(const std::vector<PendingWrite*>& batch,
                            const absl::Status& status) {
  for (PendingWrite* w : batch) {
    if (w->status.ok()) w->status = status;
  }
}

SqliteJournal::BatchOutcome SqliteJournal::CommitBatch(
    const std::vector<PendingWrite*>& batch,
    const std::map<std::string, DuplicateTally>& duplicates) {
  absl::MutexLock lock(&mu_);
  BatchOutcome outcome;
  if (absl::Status begin = Exec("BEGIN IMMEDIATE"); !begin.ok()) {
    FailAll(batch, begin);
    outcome.duplicates_status = begin;
    return outcome;
  }
  if (absl::Status rolled_back = RunWritesLocked(batch); !rolled_back.ok()) {
    outcome.duplicates_status = rolled_back;
    return outcome;
  }
  outcome.duplicates_status = WriteDuplicateCountsLocked(duplicates);
  if (options_.before_commit_for_testing) {
    options_.before_commit_for_testing(static_cast<int>(batch.size()));
  }
  if (absl::Status commit = Exec("COMMIT"); !commit.ok()) {
    if (!sqlite3_get_autocommit(db_)) Exec("ROLLBACK").IgnoreError();
    FailAll(batch, commit);
    outcome.duplicates_status = commit;
    return outcome;
  }
  outcome.committed = true;
  return outcome;
}

absl::Status SqliteJournal::RunWritesLocked(
    const std::vector<PendingWrite*>& batch) {
  for (PendingWrite* w : batch) {
    if (!w->body) continue;
    // Each write in a SAVEPOINT of its own, so that a failing write is
    // rolled back alone and reports its own error.
    w->status = Exec("SAVEPOINT w");
    if (!w->status.ok()) continue;
    w->status = w->body();
    if (sqlite3_get_autocommit(db_)) {
      // SQLite rolled the whole transaction back (an I/O or disk-full error):
      // nothing of the batch is written.
      absl::Status rolled_back =
          w->status.ok() ? absl::UnavailableError(
                               "sqlite: the transaction was rolled back")
                         : w->status;
      FailAll(batch, rolled_back);
      return rolled_back;
    }
    if (!w->status.ok()) Exec("ROLLBACK TO w").IgnoreError();
    Exec("RELEASE w").IgnoreError();
  }
  return absl::OkStatus();
}

absl::Status SqliteJournal::WriteDuplicateCountsLocked(
    const std::map<std::string, DuplicateTally>& duplicates) {
  if (duplicates.empty()) return absl::OkStatus();
  // In a SAVEPOINT of its own: a failure drops the counts from this
  // transaction (the caller keeps them for the next one), never the batch's
  // writes.
  HOIST_RETURN_IF_ERROR(Exec("SAVEPOINT d"));
  Stmt up(db_,
          "UPDATE deliveries SET duplicates = duplicates + ?, "
          "last_duplicate = MAX(COALESCE(last_duplicate, 0), ?) "
          "WHERE dedupe_key = ?");
  absl::Status counted = up.status();
  for (const auto& [key, tally] : duplicates) {
    if (!counted.ok()) break;
    up.Reset();
    up.BindInt(1, tally.count);
    up.BindInt(2, TimeToJournalMicros(tally.last));
    up.BindText(3, key);
    counted = up.StepDone();
  }
  if (!counted.ok()) Exec("ROLLBACK TO d").IgnoreError();
  Exec("RELEASE d").IgnoreError();
  return counted;
}

int64_t SqliteJournal::commits() const {
  absl::MutexLock lock(&queue_mu_);
  return commits_;
}

int SqliteJournal::queued_writes() const {
  absl::MutexLock lock(&queue_mu_);
  return static_cast<int>(queue_.size());
}

absl::StatusOr<std::optional<DeliveryRecord>> SqliteJournal::FindDelivery(
    const std::string& dedupe_key) {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_,
         "SELECT rollout_id, service, accepted, summary FROM deliveries WHERE "
         "dedupe_key = ?");
  HOIST_RETURN_IF_ERROR(q.status());
  q.BindText(1, dedupe_key);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<DeliveryRecord>();
  if (rc != SQLITE_ROW) return q.Error(rc);
  DeliveryRecord r;
  r.dedupe_key = dedupe_key;
  r.rollout_id = q.Text(0);
  r.service = q.Text(1);
  r.accepted = TimeFromJournalMicros(q.Int(2));
  r.summary = q.Text(3);
  return std::optional<DeliveryRecord>(std::move(r));
}

absl::Status SqliteJournal::AcceptDelivery(const DeliveryRecord& delivery,
                                           const hoist::v1::Rollout& rollout) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    if (!delivery.dedupe_key.empty()) {
      Stmt ins(db_,
               "INSERT INTO deliveries(dedupe_key, rollout_id, service, "
               "accepted, summary) "
               "VALUES (?, ?, ?, ?, ?)");
      HOIST_RETURN_IF_ERROR(ins.status());
      ins.BindText(1, delivery.dedupe_key);
      ins.BindText(2, delivery.rollout_id);
      ins.BindText(3, delivery.service);
      ins.BindInt(4, TimeToJournalMicros(delivery.accepted));
      ins.BindText(5, delivery.summary);
      HOIST_RETURN_IF_ERROR(ins.StepDone());
    }
    return SaveRolloutLocked(rollout);
  });
}

absl::Status SqliteJournal::CountDuplicate(const std::string& dedupe_key,
                                           absl::Time at) {
  bool flush = false;
  {
    absl::MutexLock lock(&queue_mu_);
    DuplicateTally& tally = duplicates_[dedupe_key];
    ++tally.count;
    tally.last = std::max(tally.last, at);
    flush = !committing_ &&
            absl::Now() - duplicates_flushed_ >= kDuplicateFlushInterval;
  }
  // Without other writes, the counts get a commit of their own at most once
  // per kDuplicateFlushInterval.
  if (flush) return Write(nullptr);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqliteJournal::DuplicateCount(
    const std::string& dedupe_key) {
  bool counts_pending = false;
  {
    absl::MutexLock lock(&queue_mu_);
    counts_pending = !duplicates_.empty();
  }
  if (counts_pending) HOIST_RETURN_IF_ERROR(Write(nullptr));
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_, "SELECT duplicates FROM deliveries WHERE dedupe_key = ?");
  HOIST_RETURN_IF_ERROR(q.status());
  q.BindText(1, dedupe_key);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return 0;
  if (rc != SQLITE_ROW) return q.Error(rc);
  return q.Int(0);
}

absl::Status SqliteJournal::SaveRolloutLocked(
    const hoist::v1::Rollout& rollout) {
  Stmt up(db_,
          "INSERT INTO rollouts(id, service, state, created, blob) VALUES (?, "
          "?, ?, ?, ?) "
          "ON CONFLICT(id) DO UPDATE SET service = excluded.service, state = "
          "excluded.state, "
          "created = excluded.created, blob = excluded.blob");
  HOIST_RETURN_IF_ERROR(up.status());
  std::string blob;
  if (!rollout.SerializeToString(&blob))
    return absl::InternalError("serialize rollout");
  up.BindText(1, rollout.id());
  up.BindText(2, rollout.service());
  up.BindInt(3, rollout.state());
  up.BindInt(4, TimestampMicros(rollout.created()));
  up.BindBlob(5, blob);
  HOIST_RETURN_IF_ERROR(up.StepDone());
  // The blob holds every host now: per-host rows are superseded.
  Stmt del(db_, "DELETE FROM host_results WHERE rollout_id = ?");
  HOIST_RETURN_IF_ERROR(del.status());
  del.BindText(1, rollout.id());
  return del.StepDone();
}

absl::Status SqliteJournal::InTransaction(
    const std::function<absl::Status()>& body) {
  HOIST_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Status status = body();
  if (!status.ok()) {
    Exec("ROLLBACK").IgnoreError();
    return status;
  }
  return Exec("COMMIT");
}

absl::Status SqliteJournal::SaveRollout(const hoist::v1::Rollout& rollout) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return SaveRolloutLocked(rollout);
  });
}

absl::Status SqliteJournal::SaveHostProgress(
    const std::string& rollout_id, const std::vector<HostUpdate>& hosts,
    const std::vector<HostEventRecord>& events) {
  if (hosts.empty() && events.empty()) return absl::OkStatus();
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    HOIST_RETURN_IF_ERROR(UpsertHostResultsLocked(rollout_id, hosts));
    for (const HostEventRecord& e : events) {
      HOIST_RETURN_IF_ERROR(
          AppendHostEventLocked(rollout_id, e.agent, e.event));
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteJournal::UpsertHostResultsLocked(
    const std::string& rollout_id, const std::vector<HostUpdate>& hosts) {
  if (hosts.empty()) return absl::OkStatus();
  Stmt up(db_,
          "INSERT INTO host_results(rollout_id, idx, blob) VALUES (?, ?, "
          "?) ON CONFLICT(rollout_id, idx) DO UPDATE SET blob = "
          "excluded.blob");
  HOIST_RETURN_IF_ERROR(up.status());
  std::string blob;
  for (const HostUpdate& h : hosts) {
    blob.clear();
    if (!h.result.SerializeToString(&blob))
      return absl::InternalError("serialize host result");
    up.Reset();
    up.BindText(1, rollout_id);
    up.BindInt(2, h.index);
    up.BindBlob(3, blob);
    HOIST_RETURN_IF_ERROR(up.StepDone());
  }
  return absl::OkStatus();
}

absl::Status SqliteJournal::AppendHostEvent(
    const std::string& rollout_id, const std::string& agent,
    const hoist::v1::DeployEvent& event) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return AppendHostEventLocked(rollout_id, agent, event);
  });
}

absl::Status SqliteJournal::AppendHostEventLocked(
    const std::string& rollout_id, const std::string& agent,
    const hoist::v1::DeployEvent& event) {
  Stmt ins(db_,
           "INSERT INTO host_events(rollout_id, agent, blob) VALUES (?, ?, ?)");
  HOIST_RETURN_IF_ERROR(ins.status());
  std::string blob;
  if (!event.SerializeToString(&blob))
    return absl::InternalError("serialize event");
  ins.BindText(1, rollout_id);
  ins.BindText(2, agent);
  ins.BindBlob(3, blob);
  return ins.StepDone();
}

absl::StatusOr<std::vector<hoist::v1::Rollout>> SqliteJournal::QueryRollouts(
    const std::string& sql, const std::vector<std::string>& text_args,
    int limit) {
  ReadTransaction snapshot(reader_);
  HOIST_RETURN_IF_ERROR(snapshot.status());
  Stmt q(reader_, sql.c_str());
  HOIST_RETURN_IF_ERROR(q.status());
  int i = 1;
  for (const std::string& a : text_args) q.BindText(i++, a);
  if (limit >= 0) q.BindInt(i++, limit);
  std::vector<hoist::v1::Rollout> out;
  while (true) {
    const int rc = q.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return q.Error(rc);
    hoist::v1::Rollout r;
    if (!r.ParseFromString(q.Blob(0))) {
      return absl::DataLossError("journal holds a rollout that does not parse");
    }
    out.push_back(std::move(r));
  }
  for (hoist::v1::Rollout& r : out) {
    HOIST_RETURN_IF_ERROR(ApplyHostResultsLocked(&r));
  }
  return out;
}

absl::Status SqliteJournal::ApplyHostResultsLocked(
    hoist::v1::Rollout* rollout) {
  Stmt h(reader_, "SELECT idx, blob FROM host_results WHERE rollout_id = ?");
  HOIST_RETURN_IF_ERROR(h.status());
  h.BindText(1, rollout->id());
  while (true) {
    const int rc = h.Step();
    if (rc == SQLITE_DONE) return absl::OkStatus();
    if (rc != SQLITE_ROW) return h.Error(rc);
    const int64_t idx = h.Int(0);
    if (idx < 0 || idx >= rollout->hosts_size() ||
        !rollout->mutable_hosts(static_cast<int>(idx))
             ->ParseFromString(h.Blob(1))) {
      return absl::DataLossError(
          absl::StrCat("journal holds a host result of ", rollout->id(),
                       " that does not parse or fit (index ", idx, ")"));
    }
  }
}

absl::StatusOr<hoist::v1::Rollout> SqliteJournal::GetRollout(
    const std::string& id) {
  absl::MutexLock lock(&read_mu_);
  HOIST_ASSIGN_OR_RETURN(
      auto rows,
      QueryRollouts("SELECT blob FROM rollouts WHERE id = ?", {id}, -1));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("no rollout ", id));
  return std::move(rows.front());
}

absl::StatusOr<std::vector<hoist::v1::Rollout>> SqliteJournal::ListRollouts(
    const std::string& service, int limit) {
  absl::MutexLock lock(&read_mu_);
  if (limit <= 0) limit = 50;
  if (service.empty()) {
    return QueryRollouts(
        "SELECT blob FROM rollouts ORDER BY created DESC, rowid DESC LIMIT ?",
        {}, limit);
  }
  return QueryRollouts(
      "SELECT blob FROM rollouts WHERE service = ? ORDER BY created DESC, "
      "rowid DESC LIMIT ?",
      {service}, limit);
}

absl::StatusOr<std::vector<hoist::v1::Rollout>>
SqliteJournal::ListUnfinished() {
  absl::MutexLock lock(&read_mu_);
  return QueryRollouts(
      absl::StrCat("SELECT blob FROM rollouts WHERE state IN (",
                   hoist::v1::ROLLOUT_STATE_PENDING, ", ",
                   hoist::v1::ROLLOUT_STATE_RUNNING, ", ",
                   hoist::v1::ROLLOUT_STATE_PAUSED,
                   ") ORDER BY created ASC, rowid ASC"),
      {}, -1);
}

absl::StatusOr<std::vector<hoist::v1::DeployEvent>> SqliteJournal::HostEvents(
    const std::string& rollout_id, const std::string& agent) {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_,
         "SELECT blob FROM host_events WHERE rollout_id = ? AND agent = ? "
         "ORDER BY seq");
  HOIST_RETURN_IF_ERROR(q.status());
  q.BindText(1, rollout_id);
  q.BindText(2, agent);
  std::vector<hoist::v1::DeployEvent> out;
  while (true) {
    int rc = q.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return q.Error(rc);
    hoist::v1::DeployEvent e;
    if (!e.ParseFromString(q.Blob(0))) {
      return absl::DataLossError(
          "journal holds a host event that does not parse");
    }
    out.push_back(std::move(e));
  }
  return out;
}

absl::Status SqliteJournal::SaveDesiredLocked(const DesiredState& desired) {
  if (desired.service.empty()) {
    return absl::InvalidArgumentError("desired state without a service");
  }
  Stmt up(db_,
          "INSERT OR REPLACE INTO desired(service, digest, tag, rollout_id, "
          "since, on_hold) VALUES (?, ?, ?, ?, ?, ?)");
  HOIST_RETURN_IF_ERROR(up.status());
  BindDesired(up, 1, desired);
  return up.StepDone();
}

absl::Status SqliteJournal::SaveDesired(const DesiredState& desired) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return SaveDesiredLocked(desired);
  });
}

absl::Status SqliteJournal::SaveRolloutAndDesired(
    const hoist::v1::Rollout& rollout, const DesiredState& desired) {
  if (desired.service != rollout.service()) {
    return absl::InvalidArgumentError(
        absl::StrCat("desired state of service \"", desired.service,
                     "\" saved with rollout ", rollout.id(), " of service \"",
                     rollout.service(), "\""));
  }
  // One write body: both run in the same savepoint of the same transaction,
  // so a failure of either rolls back both.
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    HOIST_RETURN_IF_ERROR(SaveRolloutLocked(rollout));
    return SaveDesiredLocked(desired);
  });
}

absl::Status SqliteJournal::DeleteDesired(const std::string& service) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    for (const char* sql :
         {"DELETE FROM desired WHERE service = ?",
          "DELETE FROM converge_attempts WHERE service = ?"}) {
      Stmt del(db_, sql);
      HOIST_RETURN_IF_ERROR(del.status());
      del.BindText(1, service);
      HOIST_RETURN_IF_ERROR(del.StepDone());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<DesiredState>> SqliteJournal::ListDesired() {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_,
         "SELECT service, digest, tag, rollout_id, since, on_hold FROM desired "
         "ORDER BY service");
  HOIST_RETURN_IF_ERROR(q.status());
  std::vector<DesiredState> out;
  while (true) {
    const int rc = q.Step();
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) return q.Error(rc);
    out.push_back(DesiredFromRow(q, 0));
  }
}

absl::Status SqliteJournal::SavePreviousDesired(
    const std::string& rollout_id,
    const std::optional<DesiredState>& previous) {
  if (rollout_id.empty()) {
    return absl::InvalidArgumentError("previous desired state without rollout");
  }
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    // DO NOTHING on conflict: the first record stays (recorded once).
    Stmt ins(db_,
             "INSERT INTO previous_desired(rollout_id, present, service, "
             "digest, tag, set_by, since, on_hold) VALUES (?, ?, ?, ?, ?, ?, "
             "?, ?) ON CONFLICT(rollout_id) DO NOTHING");
    HOIST_RETURN_IF_ERROR(ins.status());
    ins.BindText(1, rollout_id);
    ins.BindInt(2, previous.has_value() ? 1 : 0);
    BindDesired(ins, 3, previous.value_or(DesiredState()));
    HOIST_RETURN_IF_ERROR(ins.StepDone());
    if (sqlite3_changes(db_) == 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("previous desired state of rollout ", rollout_id,
                       " is already recorded"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<DesiredState>> SqliteJournal::GetPreviousDesired(
    const std::string& rollout_id) {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_,
         "SELECT present, service, digest, tag, set_by, since, on_hold FROM "
         "previous_desired WHERE rollout_id = ?");
  HOIST_RETURN_IF_ERROR(q.status());
  q.BindText(1, rollout_id);
  const int rc = q.Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat(
        "no previous desired state recorded for rollout ", rollout_id));
  }
  if (rc != SQLITE_ROW) return q.Error(rc);
  if (q.Int(0) == 0) return std::optional<DesiredState>();
  return std::optional<DesiredState>(DesiredFromRow(q, 1));
}

absl::Status SqliteJournal::SaveAttempts(const ConvergeAttempts& attempts) {
  if (attempts.service.empty() || attempts.agent.empty()) {
    return absl::InvalidArgumentError(
        "converge attempts need a service and an agent");
  }
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    Stmt up(db_,
            "INSERT OR REPLACE INTO converge_attempts(service, agent, "
            "attempts, next_attempt, gave_up, last_error) VALUES (?, ?, ?, ?, "
            "?, ?)");
    HOIST_RETURN_IF_ERROR(up.status());
    up.BindText(1, attempts.service);
    up.BindText(2, attempts.agent);
    up.BindInt(3, attempts.attempts);
    up.BindInt(4, TimeToJournalMicros(attempts.next_attempt));
    up.BindInt(5, attempts.gave_up ? 1 : 0);
    up.BindText(6, attempts.last_error);
    return up.StepDone();
  });
}

absl::StatusOr<std::vector<ConvergeAttempts>> SqliteJournal::ListAttempts() {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_,
         "SELECT service, agent, attempts, next_attempt, gave_up, last_error "
         "FROM converge_attempts ORDER BY service, agent");
  HOIST_RETURN_IF_ERROR(q.status());
  std::vector<ConvergeAttempts> out;
  while (true) {
    const int rc = q.Step();
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) return q.Error(rc);
    ConvergeAttempts a;
    a.service = q.Text(0);
    a.agent = q.Text(1);
    a.attempts = static_cast<int>(q.Int(2));
    a.next_attempt = TimeFromJournalMicros(q.Int(3));
    a.gave_up = q.Int(4) != 0;
    a.last_error = q.Text(5);
    out.push_back(std::move(a));
  }
}

absl::Status SqliteJournal::InsertNotificationsLocked(
    const std::vector<OutboxRow>& rows) {
  for (const OutboxRow& row : rows) {
    Stmt ins(db_,
             "INSERT INTO notifications(id, sink, event, service, created, "
             "agent, detail, attempts, next_attempt, rollout) VALUES (?, ?, ?, "
             "?, ?, ?, ?, ?, ?, ?)");
    HOIST_RETURN_IF_ERROR(ins.status());
    std::string blob;
    if (!row.rollout.SerializeToString(&blob)) {
      return absl::InternalError("serialize rollout");
    }
    ins.BindText(1, row.id);
    ins.BindText(2, row.sink);
    ins.BindText(3, row.event);
    ins.BindText(4, row.service);
    ins.BindInt(5, TimeToJournalMicros(row.created));
    ins.BindText(6, row.agent);
    ins.BindText(7, row.detail);
    ins.BindInt(8, row.attempts);
    ins.BindInt(9, TimeToJournalMicros(row.next_attempt));
    ins.BindBlob(10, blob);
    const absl::Status s = ins.StepDone();
    if (!s.ok() &&
        sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return absl::AlreadyExistsError(
          absl::StrCat("notification ", row.id, " is already journaled"));
    }
    HOIST_RETURN_IF_ERROR(s);
  }
  return absl::OkStatus();
}

absl::Status SqliteJournal::SaveRolloutWithOutbox(
    const hoist::v1::Rollout& rollout, const std::vector<OutboxRow>& rows) {
  // One write body: the rollout and its rows commit together or not at all.
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    HOIST_RETURN_IF_ERROR(SaveRolloutLocked(rollout));
    return InsertNotificationsLocked(rows);
  });
}

absl::Status SqliteJournal::EnqueueNotifications(
    const std::vector<OutboxRow>& rows) {
  if (rows.empty()) return absl::OkStatus();
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return InsertNotificationsLocked(rows);
  });
}

absl::StatusOr<std::vector<OutboxRow>> SqliteJournal::ListNotifications(
    int limit) {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_,
         "SELECT id, sink, event, service, created, agent, detail, attempts, "
         "next_attempt, rollout FROM notifications ORDER BY next_attempt, "
         "created LIMIT ?");
  HOIST_RETURN_IF_ERROR(q.status());
  q.BindInt(1, limit);
  std::vector<OutboxRow> out;
  while (true) {
    const int rc = q.Step();
    if (rc == SQLITE_DONE) return out;
    if (rc != SQLITE_ROW) return q.Error(rc);
    OutboxRow row;
    row.id = q.Text(0);
    row.sink = q.Text(1);
    row.event = q.Text(2);
    row.service = q.Text(3);
    row.created = TimeFromJournalMicros(q.Int(4));
    row.agent = q.Text(5);
    row.detail = q.Text(6);
    row.attempts = static_cast<int>(q.Int(7));
    row.next_attempt = TimeFromJournalMicros(q.Int(8));
    if (!row.rollout.ParseFromString(q.Blob(9))) {
      return absl::DataLossError(
          absl::StrCat("notification ", row.id, ": unreadable rollout"));
    }
    out.push_back(std::move(row));
  }
}

absl::Status SqliteJournal::RescheduleNotification(const std::string& id,
                                                   int attempts,
                                                   absl::Time next_attempt) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    Stmt up(db_,
            "UPDATE notifications SET attempts = ?, next_attempt = ? WHERE id "
            "= ?");
    HOIST_RETURN_IF_ERROR(up.status());
    up.BindInt(1, attempts);
    up.BindInt(2, TimeToJournalMicros(next_attempt));
    up.BindText(3, id);
    return up.StepDone();
  });
}

absl::Status SqliteJournal::DeleteNotification(const std::string& id) {
  return Write([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS -> absl::Status {
    Stmt del(db_, "DELETE FROM notifications WHERE id = ?");
    HOIST_RETURN_IF_ERROR(del.status());
    del.BindText(1, id);
    return del.StepDone();
  });
}

absl::StatusOr<int64_t> SqliteJournal::CountNotifications() {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_, "SELECT COUNT(*) FROM notifications");
  HOIST_RETURN_IF_ERROR(q.status());
  const int rc = q.Step();
  if (rc != SQLITE_ROW) return q.Error(rc);
  return q.Int(0);
}

absl::StatusOr<std::string> SqliteJournal::IntegrityCheck() {
  absl::MutexLock lock(&read_mu_);
  Stmt q(reader_, "PRAGMA integrity_check");
  HOIST_RETURN_IF_ERROR(q.status());
  std::string out;
  while (true) {
    int rc = q.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return q.Error(rc);
    if (!out.empty()) out += "\n";
    out += q.Text(0);
  }
  return out;
}

absl::StatusOr<std::string> SqliteJournal::WriterPragma(
    const std::string& name) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || c == '_';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a pragma name: \"", name, "\""));
  }
  absl::MutexLock lock(&mu_);
  Stmt q(db_, absl::StrCat("PRAGMA ", name).c_str());
  HOIST_RETURN_IF_ERROR(q.status());
  const int rc = q.Step();
  if (rc != SQLITE_ROW) return q.Error(rc);
  return q.Text(0);
}

}  // namespace hoist::receiver
