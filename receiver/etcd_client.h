// EtcdClient: the boundary to an etcd v3 cluster, the journal and coordinator
// of receivers in high availability (docs/design.md, "High availability on
// etcd"). The production implementation is EtcdClientGrpc
// (receiver/etcd_client_grpc.h); tests use FakeEtcd
// (tests/receiver/fake_etcd.h), which behaves the same for every contract
// stated here (tests/receiver/etcd_client_test.cc runs the same cases against
// both).
//
// Keys and values are bytes (std::string). A range [key, range_end) follows
// etcd: range_end "" means the one key `key`; EtcdPrefixEnd(prefix) gives
// every key starting with `prefix`.
//
// Errors, for every call:
//   - Unavailable: no quorum, every endpoint down, or the call's deadline
//     (request_timeout) passed; the message says which. A write that failed
//     Unavailable may or may not have been applied (as with any RPC): make
//     writes conditional (Txn compares) when a retry must not apply twice.
//   - InvalidArgument: bad input (empty key, ttl <= 0, ...), or etcd refused
//     the request as malformed (its own InvalidArgument, e.g. a Txn that
//     writes one key twice).
//   - NotFound: KeepAliveOnce / RevokeLease of a lease that expired or never
//     existed; Put with such a lease.
//   - OutOfRange: Get or Watch at a revision that was compacted.
//
// Thread-safety: every method may be called from any thread at the same time.
#ifndef HOIST_RECEIVER_ETCD_CLIENT_H_
#define HOIST_RECEIVER_ETCD_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hoist::receiver {

// One key as etcd stores it. Revisions are the cluster's revision counter:
// create_revision when the key was created (since its last delete),
// mod_revision when it was last written; version counts writes since
// creation (1 after the create); lease 0 = none.
struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;

  bool operator==(const EtcdKeyValue& o) const {
    return key == o.key && value == o.value &&
           create_revision == o.create_revision &&
           mod_revision == o.mod_revision && version == o.version &&
           lease == o.lease;
  }
};

// One condition of a Txn: `target` of `key` compared with `number` (for the
// revision, version and lease targets) or `value` (kValue). A missing key
// has create_revision, mod_revision, version and lease 0, and fails every
// kValue compare (as in etcd).
struct EtcdCompare {
  enum class Target { kValue, kCreateRevision, kModRevision, kVersion, kLease };
  enum class Result { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kValue;
  Result result = Result::kEqual;
  int64_t number = 0;
  std::string value;
};

// One operation of a Txn branch. kPut writes `value` (with `lease`, 0 =
// none) to `key`; kDelete and kGet act on [key, range_end).
struct EtcdOp {
  enum class Kind { kPut, kDelete, kGet };
  Kind kind = Kind::kGet;
  std::string key;
  std::string range_end;  // "" = the one key; EtcdPrefixEnd(p) = prefix p
  std::string value;
  int64_t lease = 0;

  static EtcdOp Put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::kPut, std::move(key), "", std::move(value), lease};
  }
  static EtcdOp Delete(std::string key, std::string range_end = "") {
    return {Kind::kDelete, std::move(key), std::move(range_end), "", 0};
  }
  static EtcdOp Get(std::string key, std::string range_end = "") {
    return {Kind::kGet, std::move(key), std::move(range_end), "", 0};
  }
};

struct EtcdTxnResult {
  bool succeeded = false;  // every compare held: the success branch ran
  int64_t revision = 0;    // the cluster's revision after the txn
  // The keys each kGet of the branch that ran returned (sorted by key), one
  // entry per kGet, in the order of the branch.
  std::vector<std::vector<EtcdKeyValue>> gets;
};

struct EtcdWatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  // For kPut the key as written; for kDelete the key with mod_revision =
  // the delete's revision and everything else but `key` empty or 0.
  EtcdKeyValue kv;
};

// The end of the range of every key that starts with `prefix`: `prefix` with
// its last byte below 0xff incremented and what follows dropped; "\0" (every
// key) when there is none.
inline std::string EtcdPrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

// A running watch. Destroying it cancels it (Cancel()).
class EtcdWatch {
 public:
  virtual ~EtcdWatch() = default;
  // Ends the watch. Safe to call any time, more than once, from any thread,
  // also from inside the watch's own callbacks. When the watch had not ended
  // yet, on_done(Cancelled) runs on the calling thread before Cancel returns;
  // once Cancel returned no callback of this watch runs or is running
  // (unless Cancel was called from inside one, which then finishes).
  virtual void Cancel() = 0;
};

using EtcdEventsCallback = std::function<void(
    const std::vector<EtcdWatchEvent>& events, int64_t revision)>;
using EtcdDoneCallback = std::function<void(absl::Status status)>;

class EtcdClient {
 public:
  virtual ~EtcdClient() = default;

  // The keys in [key, range_end), sorted by key, at most `limit` (0 = all).
  // Linearizable (reads the cluster's latest state through its leader).
  virtual absl::StatusOr<std::vector<EtcdKeyValue>> Get(
      const std::string& key, const std::string& range_end = "",
      int64_t limit = 0) = 0;
  // Writes `key`; returns the cluster's revision after the write.
  virtual absl::StatusOr<int64_t> Put(const std::string& key,
                                      const std::string& value,
                                      int64_t lease = 0) = 0;
  // Deletes [key, range_end); returns the number of keys deleted.
  virtual absl::StatusOr<int64_t> Delete(const std::string& key,
                                         const std::string& range_end = "") = 0;
  // Atomically: if every compare holds, runs `success`, else `failure`.
  virtual absl::StatusOr<EtcdTxnResult> Txn(
      const std::vector<EtcdCompare>& compares,
      const std::vector<EtcdOp>& success,
      const std::vector<EtcdOp>& failure) = 0;

  // A new lease that expires `ttl_seconds` (>= 1) after its last keep-alive
  // unless kept alive; keys put with it are deleted when it expires.
  virtual absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds) = 0;
  // Renews `lease` to its full TTL; returns that TTL in seconds.
  virtual absl::StatusOr<int64_t> KeepAliveOnce(int64_t lease) = 0;
  // Ends `lease` now, deleting its keys.
  virtual absl::Status RevokeLease(int64_t lease) = 0;

  // Reports every change of a key in [key, range_end) at or after revision
  // `start_revision`, or from now on when start_revision is 0: a
  // start revision in the past replays the history since then (OutOfRange
  // if it was compacted). `on_events` gets the events of one or more
  // revisions, in revision order, never twice, never with a gap, together
  // with the revision the watch has seen up to; calls never overlap and
  // come from a thread of the client (gRPC's, for EtcdClientGrpc), so they
  // must not block for long.
  // The watch outlives the loss of the member it reads from: it resumes on
  // another member after the last revision it delivered. `on_done` runs
  // exactly once, when the watch ends: Cancelled from Cancel(); OutOfRange
  // when the revision it needs was compacted; Unavailable when no member
  // could serve it for longer than the client's request timeout (the caller
  // re-reads and watches again); InvalidArgument for an empty key. Both
  // callbacks must stay valid until on_done ran. Batches of events are not
  // part of the contract (one call may carry several revisions).
  virtual std::unique_ptr<EtcdWatch> Watch(const std::string& key,
                                           const std::string& range_end,
                                           int64_t start_revision,
                                           EtcdEventsCallback on_events,
                                           EtcdDoneCallback on_done) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ETCD_CLIENT_H_
