#include "receiver/leader_election.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"

namespace hoist::receiver {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);
// Leadership lapses this long before the lease could expire in etcd
// (DESIGN decision 14): room for clock-rate differences and for an agent
// call started just before the deadline.
constexpr absl::Duration kLapseMargin = absl::Seconds(1);

// The default clock: CLOCK_MONOTONIC, so that a wall-clock step cannot
// extend leadership. absl::Mutex timeouts run on the wall clock, so waits go
// in slices of at most 100 ms and re-check the monotonic time: a wall-clock
// step delays a wake-up by no more than one slice.
class MonotonicClock : public Clock {
 public:
  absl::Time Now() override {
    return absl::UnixEpoch() +
           absl::FromChrono(
               std::chrono::steady_clock::now().time_since_epoch());
  }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration d) override {
    const absl::Time deadline = Now() + d;
    for (;;) {
      const absl::Duration left = deadline - Now();
      if (left <= absl::ZeroDuration()) return cond.Eval();
      if (mu->AwaitWithTimeout(cond, std::min(left, absl::Milliseconds(100)))) {
        return true;
      }
    }
  }
};

Clock* DefaultClock() {
  static Clock* clock = new MonotonicClock();
  return clock;
}

// Waits after failed etcd calls: 100 ms doubling up to 2 s.
class Backoff {
 public:
  // Whether no failure was counted since the last Reset(): callers log the
  // first failure of a streak only, not one line per retry.
  bool first() const { return next_ == kFirstBackoff; }
  absl::Duration Next() {
    const absl::Duration d = next_;
    next_ = std::min(next_ * 2, kMaxBackoff);
    return d;
  }
  void Reset() { next_ = kFirstBackoff; }

 private:
  absl::Duration next_ = kFirstBackoff;
};

std::string LeaseHex(int64_t lease) {
  return absl::StrFormat("%016x", static_cast<uint64_t>(lease));
}

const EtcdKeyValue* FindKey(const std::vector<EtcdKeyValue>& keys,
                            const std::string& key) {
  for (const EtcdKeyValue& kv : keys) {
    if (kv.key == key) return &kv;
  }
  return nullptr;
}

const EtcdKeyValue* Lowest(const std::vector<EtcdKeyValue>& keys) {
  const EtcdKeyValue* lowest = nullptr;
  for (const EtcdKeyValue& kv : keys) {
    if (lowest == nullptr || kv.create_revision < lowest->create_revision) {
      lowest = &kv;
    }
  }
  return lowest;
}

}  // namespace

struct LeaderElection::Candidacy {
  int64_t lease = 0;
  std::string key;
  int64_t create_revision = 0;
  int64_t revision = 0;            // of the last read
  std::vector<EtcdKeyValue> keys;  // the last read of <prefix>leader/
};

absl::StatusOr<std::unique_ptr<LeaderElection>> LeaderElection::Create(
    LeaderElectionOptions options) {
  if (options.client == nullptr) {
    return absl::InvalidArgumentError("leader election: no etcd client");
  }
  if (options.name.empty()) {
    return absl::InvalidArgumentError("leader election: empty name");
  }
  if (options.lease_seconds < 2 || options.lease_seconds > 60) {
    return absl::InvalidArgumentError(
        absl::StrCat("leader election: lease_seconds must be 2..60, not ",
                     options.lease_seconds));
  }
  Clock* clock = options.clock != nullptr ? options.clock : DefaultClock();
  return std::unique_ptr<LeaderElection>(
      new LeaderElection(std::move(options), clock));
}

LeaderElection::LeaderElection(LeaderElectionOptions options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      range_start_(options_.prefix + "leader/"),
      range_end_(EtcdPrefixEnd(range_start_)) {}

LeaderElection::~LeaderElection() { Stop(); }

absl::Status LeaderElection::Start() {
  absl::MutexLock lock(&stop_mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError(
        "leader election: Start() after Start() or Stop()");
  }
  started_ = true;
  keepalive_thread_ = std::thread([this] { KeepAliveLoop(); });
  lapse_thread_ = std::thread([this] { LapseLoop(); });
  campaign_thread_ = std::thread([this] { CampaignLoop(); });
  return absl::OkStatus();
}

void LeaderElection::Stop() {
  absl::MutexLock lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (!started_) return;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  campaign_thread_.join();
  keepalive_thread_.join();
  lapse_thread_.join();
}

bool LeaderElection::IsLeader() {
  absl::Time deadline;
  {
    absl::MutexLock lock(&mu_);
    if (!elected_) return false;
    deadline = deadline_;
  }
  return clock_->Now() < deadline;
}

std::optional<EtcdCompare> LeaderElection::Fence() {
  absl::MutexLock lock(&mu_);
  if (!elected_ || LapsedLocked(clock_->Now())) return std::nullopt;
  return fence_;
}

std::optional<absl::Time> LeaderElection::LeadershipDeadline() {
  absl::MutexLock lock(&mu_);
  if (!elected_ || LapsedLocked(clock_->Now())) return std::nullopt;
  return deadline_;
}

bool LeaderElection::AwaitLeadership(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return elected_ || stopping_;
    };
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&done), timeout);
  }
  return IsLeader();
}

std::optional<std::string> LeaderElection::LeaderName() {
  absl::MutexLock lock(&mu_);
  return leader_name_;
}

int64_t LeaderElection::LeaderChanges() {
  absl::MutexLock lock(&mu_);
  return leader_changes_;
}

bool LeaderElection::LapsedLocked(absl::Time now) { return now >= deadline_; }

bool LeaderElection::StoppingNow() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool LeaderElection::Watching() {
  absl::MutexLock lock(&mu_);
  return watch_ != nullptr;
}

bool LeaderElection::SleepUnlessStopping(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  clock_->AwaitWithTimeout(&mu_, absl::Condition(&stopping_), d);
  return !stopping_;
}

// ---- The campaign thread ----

void LeaderElection::CampaignLoop() {
  Backoff backoff;
  while (!StoppingNow()) {
    absl::StatusOr<Candidacy> c = Campaign();
    if (!c.ok()) {
      if (backoff.first()) {
        LogWarning("leader election: campaign failed (retrying)",
                   {{"name", options_.name}, {"error", c.status().ToString()}});
      }
      SleepUnlessStopping(backoff.Next());
      continue;
    }
    backoff.Reset();
    Hold(&*c);
    EndCandidacy(*c);
  }
}

// Grants a lease and creates the key; the keep-alive thread keeps the lease
// alive from the grant on. On failure the lease is released again.
absl::StatusOr<LeaderElection::Candidacy> LeaderElection::Campaign() {
  const absl::Time sent = clock_->Now();
  absl::StatusOr<int64_t> lease =
      options_.client->GrantLease(options_.lease_seconds);
  if (!lease.ok()) return lease.status();
  Candidacy c;
  c.lease = *lease;
  c.key = range_start_ + LeaseHex(*lease);
  {
    absl::MutexLock lock(&mu_);
    lease_ = c.lease;
    lease_lost_ = false;
    deadline_ = sent + absl::Seconds(options_.lease_seconds) - kLapseMargin;
    next_keepalive_ = sent + absl::Seconds(options_.lease_seconds) / 3;
  }
  if (absl::Status s = CreateKey(&c); !s.ok()) {
    EndCandidacy(c);
    return s;
  }
  return c;
}

// The create-if-absent Txn, retried while the lease may still be alive. A
// retry after an ambiguous failure finds the key already there (the compare
// fails) and reads it back: the lease id is ours alone, so the key is ours.
absl::Status LeaderElection::CreateKey(Candidacy* c) {
  const EtcdCompare absent{c->key, EtcdCompare::Target::kCreateRevision,
                           EtcdCompare::Result::kEqual, 0, ""};
  const EtcdOp read = EtcdOp::Get(range_start_, range_end_);
  Backoff backoff;
  for (;;) {
    absl::StatusOr<EtcdTxnResult> r = options_.client->Txn(
        {absent}, {EtcdOp::Put(c->key, options_.name, c->lease), read}, {read});
    if (r.ok() && r->gets.size() != 1) {
      return absl::InternalError("leader election: odd Txn result");
    }
    if (r.ok()) {
      const std::vector<EtcdKeyValue>& keys = r->gets[0];
      const EtcdKeyValue* own = FindKey(keys, c->key);
      if (own == nullptr) {
        return absl::InternalError(absl::StrCat("leader election: ", c->key,
                                                " missing after its create"));
      }
      c->create_revision = own->create_revision;
      c->revision = r->revision;
      c->keys = keys;
      return absl::OkStatus();
    }
    if (r.status().code() != absl::StatusCode::kUnavailable) return r.status();
    if (backoff.first()) {
      LogWarning("leader election: creating the key failed (retrying)",
                 {{"key", c->key}, {"error", r.status().ToString()}});
    }
    {
      absl::MutexLock lock(&mu_);
      if (lease_lost_ || LapsedLocked(clock_->Now())) return r.status();
    }
    if (!SleepUnlessStopping(backoff.Next())) {
      return absl::CancelledError("leader election stopped");
    }
  }
}

// Follows the keys under <prefix>leader/ until the candidacy ends: leads
// while the own key is the oldest, else waits for it to become so.
void LeaderElection::Hold(Candidacy* c) {
  const absl::Duration recheck = absl::Seconds(options_.lease_seconds);
  Backoff backoff;
  bool fresh = true;  // c.keys was just read
  absl::Time next_read = clock_->Now() + recheck;
  for (;;) {
    if (fresh) {
      if (!Observe(*c)) break;  // the own key is gone
      if (!Watching()) StartWatch(*c);
      fresh = false;
    }
    const Wake wake = WaitForChange(next_read);
    if (wake != Wake::kRead) break;
    if (absl::Status s = Read(c); s.ok()) {
      fresh = true;
      backoff.Reset();
      next_read = clock_->Now() + recheck;
    } else {
      if (backoff.first()) {
        LogWarning("leader election: reading the candidates failed (retrying)",
                   {{"name", options_.name}, {"error", s.ToString()}});
      }
      next_read = clock_->Now() + backoff.Next();
    }
  }
  EndWatch();
}

// Applies the last read: who leads, and whether this candidate now does.
// False when the own key is no longer there.
bool LeaderElection::Observe(const Candidacy& c) {
  const EtcdKeyValue* lowest = Lowest(c.keys);
  int64_t term = 0;  // a term begun by this read
  EtcdCompare fence;
  {
    absl::MutexLock lock(&mu_);
    if (lowest != nullptr && lowest->key != leader_key_) ++leader_changes_;
    leader_key_ = lowest != nullptr ? lowest->key : "";
    leader_name_.reset();
    if (lowest != nullptr) leader_name_ = lowest->value;
    if (FindKey(c.keys, c.key) == nullptr) return false;
    if (lowest->key == c.key && !elected_ && !LapsedLocked(clock_->Now())) {
      elected_ = true;
      term = ++term_;
      fence_ = EtcdCompare{c.key, EtcdCompare::Target::kCreateRevision,
                           EtcdCompare::Result::kEqual, c.create_revision, ""};
      fence = fence_;
    }
  }
  if (term != 0) DeliverElected(term, fence);
  return true;
}

// on_elected for `term`, unless the term already ended (then neither
// callback runs for it).
void LeaderElection::DeliverElected(int64_t term, const EtcdCompare& fence) {
  absl::MutexLock callbacks(&callback_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (!elected_ || term_ != term) return;
  }
  elected_delivered_ = term;
  LogInfo("leader election: elected",
          {{"name", options_.name},
           {"key", fence.key},
           {"create_revision", absl::StrCat(fence.number)}});
  if (options_.on_elected) options_.on_elected(fence);
}

// on_lost for `term` (already ended: elected_ false), once, if on_elected
// ran for it. Called by the lapse thread and by the campaign thread, which
// thereby waits until on_lost has returned.
void LeaderElection::DeliverLost(int64_t term) {
  absl::MutexLock callbacks(&callback_mu_);
  if (elected_delivered_ != term || lost_delivered_ == term) return;
  lost_delivered_ = term;
  if (StoppingNow()) {
    LogInfo("leader election: resigned", {{"name", options_.name}});
  } else {
    LogWarning("leader election: leadership lost", {{"name", options_.name}});
  }
  if (options_.on_lost) options_.on_lost();
}

// Waits until something needs doing: kStop, kLost (lease lost, own key
// deleted, or the lease deadline passed: lapse ends a candidacy whether
// or not it leads), kRead (the watch saw a change or ended, or next_read
// came).
LeaderElection::Wake LeaderElection::WaitForChange(absl::Time next_read) {
  absl::MutexLock lock(&mu_);
  auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || lease_lost_ || key_deleted_ || changed_ ||
           (watch_ended_ && watch_ != nullptr);
  };
  for (;;) {
    if (stopping_) return Wake::kStop;
    const absl::Time now = clock_->Now();
    if (lease_lost_ || key_deleted_ || LapsedLocked(now)) return Wake::kLost;
    if (changed_ || now >= next_read) return Wake::kRead;
    if (watch_ended_ && watch_ != nullptr) return Wake::kRead;
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&woken),
                             std::min(deadline_, next_read) - now);
  }
}

// Re-reads <prefix>leader/ (after a watch event, or as a periodic check).
// A watch that ended is dropped first and started again from this read.
absl::Status LeaderElection::Read(Candidacy* c) {
  bool ended;
  {
    absl::MutexLock lock(&mu_);
    changed_ = false;
    ended = watch_ended_;
  }
  if (ended) EndWatch();
  absl::StatusOr<EtcdTxnResult> r =
      options_.client->Txn({}, {EtcdOp::Get(range_start_, range_end_)}, {});
  if (!r.ok() || r->gets.size() != 1) {
    absl::MutexLock lock(&mu_);
    leader_name_.reset();
    return r.ok() ? absl::InternalError("leader election: odd Txn result")
                  : r.status();
  }
  c->keys = std::move(r->gets[0]);
  c->revision = r->revision;
  return absl::OkStatus();
}

void LeaderElection::StartWatch(const Candidacy& c) {
  int64_t gen;
  {
    absl::MutexLock lock(&mu_);
    gen = ++watch_gen_;
    watch_ended_ = false;
  }
  const std::string own = c.key;
  auto on_events = [this, gen, own](const std::vector<EtcdWatchEvent>& events,
                                    int64_t /*revision*/) {
    absl::MutexLock lock(&mu_);
    if (gen != watch_gen_) return;
    changed_ = true;
    for (const EtcdWatchEvent& e : events) {
      if (e.type == EtcdWatchEvent::Type::kDelete && e.kv.key == own) {
        key_deleted_ = true;
      }
    }
  };
  auto on_done = [this, gen](const absl::Status& /*status*/) {
    absl::MutexLock lock(&mu_);
    if (gen == watch_gen_) watch_ended_ = true;
  };
  std::unique_ptr<EtcdWatch> watch = options_.client->Watch(
      range_start_, range_end_, c.revision + 1, on_events, on_done);
  absl::MutexLock lock(&mu_);
  watch_ = std::move(watch);
}

// Cancels the watch (its callbacks take mu_, so not under mu_).
void LeaderElection::EndWatch() {
  std::unique_ptr<EtcdWatch> watch;
  {
    absl::MutexLock lock(&mu_);
    ++watch_gen_;
    watch = std::move(watch_);
    watch_ended_ = false;
  }
  watch.reset();
}

// Ends leadership (on_lost) before the lease goes, then releases the lease.
void LeaderElection::EndCandidacy(const Candidacy& c) {
  int64_t term;
  {
    absl::MutexLock lock(&mu_);
    term = term_;
    elected_ = false;
    lease_ = 0;
    lease_lost_ = false;
    key_deleted_ = false;
    changed_ = false;
    deadline_ = absl::InfinitePast();
    next_keepalive_ = absl::InfiniteFuture();
    if (leader_key_ == c.key) leader_name_.reset();
  }
  DeliverLost(term);
  ReleaseLease(c.lease);
}

// Revokes `lease` so that its key goes now rather than at expiry: a later
// campaign of this receiver would otherwise wait behind its own old key.
// Retried until etcd answers, except when stopping (one attempt).
void LeaderElection::ReleaseLease(int64_t lease) {
  Backoff backoff;
  for (;;) {
    const absl::Status s = options_.client->RevokeLease(lease);
    if (s.ok() || s.code() == absl::StatusCode::kNotFound) return;
    if (backoff.first() || s.code() != absl::StatusCode::kUnavailable) {
      LogWarning("leader election: revoking the lease failed",
                 {{"lease", LeaseHex(lease)}, {"error", s.ToString()}});
    }
    if (s.code() != absl::StatusCode::kUnavailable) return;
    if (!SleepUnlessStopping(backoff.Next())) return;
  }
}

// ---- The lapse thread ----

// Ends the term when its deadline passes, at that moment: the campaign and
// keep-alive threads may then be inside an etcd call for up to the client's
// request timeout, so neither can be relied on to notice in time.
void LeaderElection::LapseLoop() {
  const absl::Duration idle = absl::Seconds(options_.lease_seconds);
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const int64_t term = elected_ ? term_ : 0;
    const absl::Time now = clock_->Now();
    if (term != 0 && LapsedLocked(now)) {
      elected_ = false;
      mu_.Unlock();
      DeliverLost(term);
      mu_.Lock();
      continue;
    }
    auto changed = [this, term]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || (elected_ ? term_ : 0) != term;
    };
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&changed),
                             term != 0 ? deadline_ - now : idle);
  }
}

// ---- The keep-alive thread ----

// Renews the current lease every lease_seconds / 3, extending the lapse
// deadline from each success's send time unless leadership already lapsed.
void LeaderElection::KeepAliveLoop() {
  const absl::Duration period = absl::Seconds(options_.lease_seconds) / 3;
  Backoff backoff;
  mu_.Lock();
  while (!stopping_) {
    const int64_t lease = lease_;
    const absl::Time sent = clock_->Now();
    if (lease == 0 || lease_lost_ || sent < next_keepalive_) {
      auto woken = [this, lease]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || lease_ != lease;
      };
      const absl::Duration wait =
          lease == 0 || lease_lost_ ? period : next_keepalive_ - sent;
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&woken), wait);
      continue;
    }
    mu_.Unlock();
    const absl::StatusOr<int64_t> ttl = options_.client->KeepAliveOnce(lease);
    mu_.Lock();
    if (lease_ != lease) continue;  // that candidacy ended meanwhile
    if (ttl.ok()) {
      backoff.Reset();
      const int64_t seconds = std::min(*ttl, options_.lease_seconds);
      if (!LapsedLocked(clock_->Now())) {
        deadline_ =
            std::max(deadline_, sent + absl::Seconds(seconds) - kLapseMargin);
      }
      next_keepalive_ = sent + period;
    } else if (ttl.status().code() == absl::StatusCode::kNotFound) {
      lease_lost_ = true;
    } else {
      if (backoff.first()) {
        LogWarning(
            "leader election: keep-alive failed (retrying)",
            {{"lease", LeaseHex(lease)}, {"error", ttl.status().ToString()}});
      }
      next_keepalive_ = clock_->Now() + std::min(backoff.Next(), period);
    }
  }
  mu_.Unlock();
}

}  // namespace hoist::receiver
