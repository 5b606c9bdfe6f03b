// FakeEtcd: an in-memory EtcdClient for unit tests, with etcd's semantics:
// one revision counter (starting at 1, +1 per Put, per Delete or Txn that
// changed something, per expired or revoked lease that had keys),
// create/mod revisions and versions, Txn compares (a missing key has
// revisions, version and lease 0 and fails every value compare), leases that
// expire on the injected Clock (a FakeClock: Advance() past the TTL, and the
// next call, or ExpireLeases(), deletes the lease's keys), watches with
// history (from a past revision) and compaction.
//
// Watch callbacks run on one delivery thread of the fake, in revision
// order, never two at once (as gRPC's threads for EtcdClientGrpc);
// WaitForDeliveries() blocks until everything queued so far was delivered.
// SetUnavailable(true) makes every call fail UNAVAILABLE and ends every open
// watch with UNAVAILABLE (the real client's watch does so after
// request_timeout without a member).
//
// Thread-safe. Destroy watches (or let them end) before the fake.
#ifndef HOIST_TESTS_RECEIVER_FAKE_ETCD_H_
#define HOIST_TESTS_RECEIVER_FAKE_ETCD_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "receiver/etcd_client.h"

namespace hoist::receiver {

class FakeEtcd : public EtcdClient {
 public:
  explicit FakeEtcd(Clock* clock) : clock_(clock) {
    delivery_thread_ = std::thread([this] { DeliveryLoop(); });
  }
  ~FakeEtcd() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    delivery_thread_.join();
  }

  // Every call fails UNAVAILABLE while set; open watches end UNAVAILABLE.
  void SetUnavailable(bool unavailable) {
    absl::MutexLock lock(&mu_);
    unavailable_ = unavailable;
    if (!unavailable) return;
    for (const std::shared_ptr<Watcher>& w : watchers_) {
      QueueLocked(w, {}, 0, absl::UnavailableError("fake etcd: unavailable"));
    }
    watchers_.clear();
  }
  // Forgets history before `revision`: watches from older revisions end
  // OUT_OF_RANGE.
  void Compact(int64_t revision) {
    absl::MutexLock lock(&mu_);
    compacted_ = revision;
    while (!history_.empty() && history_.front().kv.mod_revision < revision) {
      history_.pop_front();
    }
  }
  int64_t revision() {
    absl::MutexLock lock(&mu_);
    return revision_;
  }
  // Deletes the keys of leases whose TTL passed on the clock (every call
  // does this first).
  void ExpireLeases() {
    absl::MutexLock lock(&mu_);
    ExpireLocked();
  }
  // Blocks until every watch callback queued so far has returned.
  void WaitForDeliveries() {
    absl::MutexLock lock(&mu_);
    const uint64_t target = queued_;
    auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return delivered_ >= target;
    };
    mu_.Await(absl::Condition(&done));
  }

  absl::StatusOr<std::vector<EtcdKeyValue>> Get(
      const std::string& key, const std::string& range_end = "",
      int64_t limit = 0) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Enter(key); !s.ok()) return s;
    std::vector<EtcdKeyValue> out = RangeLocked(key, range_end);
    if (limit > 0 && static_cast<int64_t>(out.size()) > limit) {
      out.resize(limit);
    }
    return out;
  }

  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease = 0) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Enter(key); !s.ok()) return s;
    if (absl::Status s = CheckLease(lease); !s.ok()) return s;
    std::vector<EtcdWatchEvent> events;
    PutLocked(key, value, lease, revision_ + 1, &events);
    Commit(std::move(events));
    return revision_;
  }

  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 const std::string& range_end = "") override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Enter(key); !s.ok()) return s;
    std::vector<EtcdWatchEvent> events;
    DeleteLocked(key, range_end, revision_ + 1, &events);
    const int64_t deleted = static_cast<int64_t>(events.size());
    Commit(std::move(events));
    return deleted;
  }

  absl::StatusOr<EtcdTxnResult> Txn(
      const std::vector<EtcdCompare>& compares,
      const std::vector<EtcdOp>& success,
      const std::vector<EtcdOp>& failure) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Enter("txn"); !s.ok()) return s;
    for (const std::vector<EtcdOp>* ops : {&success, &failure}) {
      for (const EtcdOp& op : *ops) {
        if (op.key.empty()) {
          return absl::InvalidArgumentError("etcdserver: key is not provided");
        }
        if (op.kind == EtcdOp::Kind::kPut) {
          if (absl::Status s = CheckLease(op.lease); !s.ok()) return s;
        }
      }
    }
    EtcdTxnResult result;
    result.succeeded = true;
    for (const EtcdCompare& c : compares) {
      result.succeeded = result.succeeded && Holds(c);
    }
    std::vector<EtcdWatchEvent> events;
    for (const EtcdOp& op : result.succeeded ? success : failure) {
      if (op.kind == EtcdOp::Kind::kGet) {
        result.gets.push_back(RangeLocked(op.key, op.range_end));
      } else if (op.kind == EtcdOp::Kind::kPut) {
        PutLocked(op.key, op.value, op.lease, revision_ + 1, &events);
      } else {
        DeleteLocked(op.key, op.range_end, revision_ + 1, &events);
      }
    }
    Commit(std::move(events));
    result.revision = revision_;
    return result;
  }

  absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Enter("lease"); !s.ok()) return s;
    if (ttl_seconds < 1) {
      return absl::InvalidArgumentError("etcd: lease ttl must be >= 1 s");
    }
    const int64_t id = next_lease_++;
    leases_[id] =
        Lease{ttl_seconds, clock_->Now() + absl::Seconds(ttl_seconds), {}};
    return id;
  }

  absl::StatusOr<int64_t> KeepAliveOnce(int64_t lease) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Enter("lease"); !s.ok()) return s;
    auto it = leases_.find(lease);
    if (it == leases_.end()) {
      return absl::NotFoundError(
          absl::StrCat("fake etcd: lease ", lease, " not found"));
    }
    it->second.expiry = clock_->Now() + absl::Seconds(it->second.ttl);
    return it->second.ttl;
  }

  absl::Status RevokeLease(int64_t lease) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Enter("lease"); !s.ok()) return s;
    if (leases_.count(lease) == 0) {
      return absl::NotFoundError("etcdserver: requested lease not found");
    }
    EndLeaseLocked(lease);
    return absl::OkStatus();
  }

  std::unique_ptr<EtcdWatch> Watch(const std::string& key,
                                   const std::string& range_end,
                                   int64_t start_revision,
                                   EtcdEventsCallback on_events,
                                   EtcdDoneCallback on_done) override {
    auto w = std::make_shared<Watcher>();
    w->key = key;
    w->range_end = range_end;
    w->on_events = std::move(on_events);
    w->on_done = std::move(on_done);
    absl::MutexLock lock(&mu_);
    absl::Status s = Enter(key);
    if (s.ok() && start_revision > 0 && start_revision < compacted_) {
      s = absl::OutOfRangeError("mvcc: required revision has been compacted");
    }
    if (!s.ok()) {
      QueueLocked(w, {}, 0, s);
      return std::make_unique<Handle>(w);
    }
    std::vector<EtcdWatchEvent> past;
    for (const EtcdWatchEvent& e : history_) {
      if (start_revision > 0 && e.kv.mod_revision >= start_revision &&
          w->Matches(e.kv.key)) {
        past.push_back(e);
      }
    }
    if (!past.empty()) QueueLocked(w, std::move(past), revision_, {});
    watchers_.push_back(w);
    return std::make_unique<Handle>(w);
  }

 private:
  struct Lease {
    int64_t ttl = 0;
    absl::Time expiry;
    std::set<std::string> keys;
  };

  // One watch's callbacks and the Cancel contract (etcd_client.h).
  struct Watcher {
    std::string key, range_end;
    EtcdEventsCallback on_events;
    EtcdDoneCallback on_done;
    absl::Mutex mu;
    bool ended ABSL_GUARDED_BY(mu) = false;
    std::thread::id delivering ABSL_GUARDED_BY(mu);

    bool Matches(const std::string& k) const {
      if (range_end.empty()) return k == key;
      return k >= key && (range_end == std::string(1, '\0') || k < range_end);
    }
    // Runs `call` unless the watch ended; `last` ends it.
    void Run(const std::function<void()>& call, bool last) {
      {
        absl::MutexLock lock(&mu);
        if (ended) return;
        ended = last;
        delivering = std::this_thread::get_id();
      }
      call();
      absl::MutexLock lock(&mu);
      delivering = std::thread::id();
    }
    void Cancel() {
      bool deliver_done = false;
      {
        absl::MutexLock lock(&mu);
        deliver_done = !ended;
        ended = true;
        const std::thread::id me = std::this_thread::get_id();
        auto idle = [this, me]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
          return delivering == std::thread::id() || delivering == me;
        };
        mu.Await(absl::Condition(&idle));
      }
      if (deliver_done && on_done) on_done(absl::CancelledError("cancelled"));
    }
  };

  class Handle : public EtcdWatch {
   public:
    explicit Handle(std::shared_ptr<Watcher> w) : w_(std::move(w)) {}
    ~Handle() override { w_->Cancel(); }
    void Cancel() override { w_->Cancel(); }

   private:
    std::shared_ptr<Watcher> w_;
  };

  struct Delivery {
    std::shared_ptr<Watcher> watcher;
    std::vector<EtcdWatchEvent> events;
    int64_t revision = 0;
    absl::Status done;  // not OK: ends the watch
  };

  absl::Status Enter(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (unavailable_) return absl::UnavailableError("fake etcd: unavailable");
    if (key.empty()) return absl::InvalidArgumentError("etcd: empty key");
    ExpireLocked();
    return absl::OkStatus();
  }

  absl::Status CheckLease(int64_t lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (lease != 0 && leases_.count(lease) == 0) {
      return absl::NotFoundError("etcdserver: requested lease not found");
    }
    return absl::OkStatus();
  }

  template <typename T>
  static bool CompareWith(const T& a, const T& b, EtcdCompare::Result r) {
    switch (r) {
      case EtcdCompare::Result::kEqual:
        return a == b;
      case EtcdCompare::Result::kNotEqual:
        return a != b;
      case EtcdCompare::Result::kGreater:
        return a > b;
      case EtcdCompare::Result::kLess:
        return a < b;
    }
    return false;
  }

  // A missing key has revisions, version and lease 0 and fails every value
  // compare (etcd's applyCompare).
  bool Holds(const EtcdCompare& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = kvs_.find(c.key);
    const EtcdKeyValue none;
    const EtcdKeyValue& kv = it == kvs_.end() ? none : it->second;
    switch (c.target) {
      case EtcdCompare::Target::kValue:
        return it != kvs_.end() && CompareWith(kv.value, c.value, c.result);
      case EtcdCompare::Target::kCreateRevision:
        return CompareWith(kv.create_revision, c.number, c.result);
      case EtcdCompare::Target::kModRevision:
        return CompareWith(kv.mod_revision, c.number, c.result);
      case EtcdCompare::Target::kVersion:
        return CompareWith(kv.version, c.number, c.result);
      case EtcdCompare::Target::kLease:
        return CompareWith(kv.lease, c.number, c.result);
    }
    return false;
  }

  bool InRange(const std::string& k, const std::string& key,
               const std::string& range_end) const {
    if (range_end.empty()) return k == key;
    return k >= key && (range_end == std::string(1, '\0') || k < range_end);
  }

  std::vector<EtcdKeyValue> RangeLocked(const std::string& key,
                                        const std::string& range_end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<EtcdKeyValue> out;
    for (auto it = kvs_.lower_bound(key); it != kvs_.end(); ++it) {
      if (!InRange(it->first, key, range_end)) break;
      out.push_back(it->second);
    }
    return out;
  }

  void PutLocked(const std::string& key, const std::string& value,
                 int64_t lease, int64_t rev,
                 std::vector<EtcdWatchEvent>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EtcdKeyValue& kv = kvs_[key];
    if (kv.version == 0) {
      kv.key = key;
      kv.create_revision = rev;
    }
    if (kv.lease != 0 && leases_.count(kv.lease)) {
      leases_[kv.lease].keys.erase(key);
    }
    kv.value = value;
    kv.mod_revision = rev;
    ++kv.version;
    kv.lease = lease;
    if (lease != 0) leases_[lease].keys.insert(key);
    events->push_back({EtcdWatchEvent::Type::kPut, kv});
  }

  void DeleteLocked(const std::string& key, const std::string& range_end,
                    int64_t rev, std::vector<EtcdWatchEvent>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const EtcdKeyValue& kv : RangeLocked(key, range_end)) {
      if (kv.lease != 0 && leases_.count(kv.lease)) {
        leases_[kv.lease].keys.erase(kv.key);
      }
      kvs_.erase(kv.key);
      EtcdWatchEvent e;
      e.type = EtcdWatchEvent::Type::kDelete;
      e.kv.key = kv.key;
      e.kv.mod_revision = rev;
      events->push_back(std::move(e));
    }
  }

  // Takes the next revision if `events` changed anything; records and
  // queues them for the watches.
  void Commit(std::vector<EtcdWatchEvent> events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (events.empty()) return;
    ++revision_;
    for (const EtcdWatchEvent& e : events) history_.push_back(e);
    for (const std::shared_ptr<Watcher>& w : watchers_) {
      std::vector<EtcdWatchEvent> mine;
      for (const EtcdWatchEvent& e : events) {
        if (w->Matches(e.kv.key)) mine.push_back(e);
      }
      if (!mine.empty()) QueueLocked(w, std::move(mine), revision_, {});
    }
  }

  void EndLeaseLocked(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::set<std::string> keys = std::move(leases_[id].keys);
    leases_.erase(id);
    std::vector<EtcdWatchEvent> events;
    for (const std::string& k : keys)
      DeleteLocked(k, "", revision_ + 1, &events);
    Commit(std::move(events));
  }

  void ExpireLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time now = clock_->Now();
    std::vector<int64_t> expired;
    for (const auto& [id, lease] : leases_) {
      if (lease.expiry <= now) expired.push_back(id);
    }
    for (int64_t id : expired) EndLeaseLocked(id);
  }

  void QueueLocked(std::shared_ptr<Watcher> w,
                   std::vector<EtcdWatchEvent> events, int64_t revision,
                   absl::Status done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.push_back(
        {std::move(w), std::move(events), revision, std::move(done)});
    ++queued_;
  }

  void DeliveryLoop() {
    for (;;) {
      Delivery d;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || stopping_;
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;
        d = std::move(queue_.front());
        queue_.pop_front();
      }
      Watcher* w = d.watcher.get();
      if (!d.done.ok()) {
        w->Run(
            [&] {
              if (w->on_done) w->on_done(d.done);
            },
            /*last=*/true);
      } else {
        w->Run([&] { w->on_events(d.events, d.revision); }, /*last=*/false);
      }
      d = Delivery();
      absl::MutexLock lock(&mu_);
      ++delivered_;
    }
  }

  Clock* const clock_;
  absl::Mutex mu_;
  std::map<std::string, EtcdKeyValue> kvs_ ABSL_GUARDED_BY(mu_);
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t compacted_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<EtcdWatchEvent> history_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  int64_t next_lease_ ABSL_GUARDED_BY(mu_) = 0x6b6f6c0000001;
  std::vector<std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  std::deque<Delivery> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread delivery_thread_;
};

}  // namespace hoist::receiver

#endif  // HOIST_TESTS_RECEIVER_FAKE_ETCD_H_
