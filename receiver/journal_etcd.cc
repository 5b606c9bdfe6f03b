#include "receiver/journal_etcd.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "receiver/etcd_json.h"

namespace hoist::receiver {
namespace {

using Json = nlohmann::json;
using KeyValues = std::vector<EtcdKeyValue>;

// Conflicting writers retry a rebuilt write this often before ABORTED.
constexpr int kMaxWriteAttempts = 8;
// Rollouts read per Txn (two gets each, below etcd's 128 ops).
constexpr size_t kRolloutsPerRead = 50;
// How often CountDuplicate writes the counts held in memory.
constexpr absl::Duration kDuplicateFlushInterval = absl::Seconds(1);

// Key parts: bytes outside [A-Za-z0-9._:@-] become %XX (no '/' survives).
// Escape's inverse; "%" not followed by two hex digits is kept as it is.
std::string Unescape(const std::string& part) {
  std::string out;
  out.reserve(part.size());
  for (size_t i = 0; i < part.size(); ++i) {
    int value = 0;
    if (part[i] == '%' && i + 2 < part.size() &&
        absl::SimpleHexAtoi(part.substr(i + 1, 2), &value)) {
      out.push_back(static_cast<char>(value));
      i += 2;
    } else {
      out.push_back(part[i]);
    }
  }
  return out;
}

std::string Escape(const std::string& part) {
  std::string out;
  out.reserve(part.size());
  for (const char c : part) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                       c == ':' || c == '@' || c == '-';
    if (plain) {
      out.push_back(c);
    } else {
      absl::StrAppend(
          &out, absl::StrFormat("%%%02X", static_cast<unsigned>(
                                              static_cast<unsigned char>(c))));
    }
  }
  return out;
}

// The rollout index's time component: created microseconds + 2^63 as 20
// digits, so that the keys sort by time.
std::string IndexTime(const hoist::v1::Rollout& rollout) {
  const int64_t micros =
      rollout.created().seconds() * 1000000 + rollout.created().nanos() / 1000;
  const uint64_t shifted =
      static_cast<uint64_t>(micros) + (uint64_t{1} << 63);  // wraps as wanted
  return absl::StrFormat("%020u", shifted);
}

Json DesiredJson(const DesiredState& d) {
  return {{"service", d.service},
          {"digest", d.digest},
          {"tag", d.tag},
          {"rollout_id", d.rollout_id},
          {"since", TimeToJournalMicros(d.since)},
          {"on_hold", d.on_hold}};
}
DesiredState DesiredFrom(JsonFields& f) {
  DesiredState d;
  d.service = f.Str("service");
  d.digest = f.Str("digest");
  d.tag = f.Str("tag");
  d.rollout_id = f.Str("rollout_id");
  d.since = f.Time("since");
  d.on_hold = f.Bool("on_hold");
  return d;
}

Json OutboxJson(const OutboxRow& row) {
  return {{"id", row.id},
          {"sink", row.sink},
          {"event", row.event},
          {"service", row.service},
          {"created", TimeToJournalMicros(row.created)},
          {"agent", row.agent},
          {"detail", row.detail},
          {"attempts", row.attempts},
          {"next_attempt", TimeToJournalMicros(row.next_attempt)},
          {"rollout", Base64Of(row.rollout)}};
}
absl::StatusOr<OutboxRow> OutboxFrom(const EtcdKeyValue& kv) {
  JsonFields f(kv.key, kv.value);
  OutboxRow row;
  row.id = f.Str("id");
  row.sink = f.Str("sink");
  row.event = f.Str("event");
  row.service = f.Str("service");
  row.created = f.Time("created");
  row.agent = f.Str("agent");
  row.detail = f.Str("detail");
  row.attempts = static_cast<int>(f.Int("attempts"));
  row.next_attempt = f.Time("next_attempt");
  f.Proto("rollout", &row.rollout);
  HOIST_RETURN_IF_ERROR(f.status());
  return row;
}

// Whether `compare` holds for the key as read (`kvs` empty: missing), with
// etcd's rules for a missing key.
bool Holds(const EtcdCompare& compare, const KeyValues& kvs) {
  const EtcdKeyValue* kv = kvs.empty() ? nullptr : &kvs.front();
  if (compare.target == EtcdCompare::Target::kValue && kv == nullptr) {
    return false;
  }
  int cmp = 0;
  if (compare.target == EtcdCompare::Target::kValue) {
    cmp = kv->value.compare(compare.value);
  } else {
    int64_t n = 0;
    if (kv != nullptr) {
      switch (compare.target) {
        case EtcdCompare::Target::kCreateRevision:
          n = kv->create_revision;
          break;
        case EtcdCompare::Target::kModRevision:
          n = kv->mod_revision;
          break;
        case EtcdCompare::Target::kVersion:
          n = kv->version;
          break;
        case EtcdCompare::Target::kLease:
          n = kv->lease;
          break;
        case EtcdCompare::Target::kValue:
          break;
      }
    }
    cmp = n < compare.number ? -1 : (n > compare.number ? 1 : 0);
  }
  switch (compare.result) {
    case EtcdCompare::Result::kEqual:
      return cmp == 0;
    case EtcdCompare::Result::kNotEqual:
      return cmp != 0;
    case EtcdCompare::Result::kGreater:
      return cmp > 0;
    case EtcdCompare::Result::kLess:
      return cmp < 0;
  }
  return false;
}

EtcdCompare KeyAbsent(const std::string& key) {
  EtcdCompare c;
  c.key = key;
  c.target = EtcdCompare::Target::kCreateRevision;
  c.result = EtcdCompare::Result::kEqual;
  c.number = 0;
  return c;
}

EtcdCompare ModRevisionIs(const std::string& key, int64_t revision) {
  EtcdCompare c = KeyAbsent(key);
  c.target = EtcdCompare::Target::kModRevision;
  c.number = revision;
  return c;
}

// Sorts keys by when they were created (ties: by key).
void SortByCreation(KeyValues* kvs) {
  std::stable_sort(kvs->begin(), kvs->end(),
                   [](const EtcdKeyValue& a, const EtcdKeyValue& b) {
                     return a.create_revision < b.create_revision;
                   });
}

bool Unfinished(int state) {
  return state == hoist::v1::ROLLOUT_STATE_PENDING ||
         state == hoist::v1::ROLLOUT_STATE_RUNNING ||
         state == hoist::v1::ROLLOUT_STATE_PAUSED;
}

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

EtcdJournal::EtcdJournal(EtcdClient* client, std::string prefix)
    : client_(client),
      prefix_(std::move(prefix)),
      unique_seed_(RandomSeed()),
      duplicates_flushed_(absl::Now()) {}

EtcdJournal::~EtcdJournal() {
  absl::Status flushed = FlushDuplicates();
  if (!flushed.ok()) {
    LogWarning("etcd journal closed with duplicate counts it could not write",
               {{"error", flushed.ToString()}});
  }
}

void EtcdJournal::SetFence(std::optional<EtcdCompare> fence) {
  absl::MutexLock lock(&fence_mu_);
  fence_ = std::move(fence);
}

std::optional<EtcdCompare> EtcdJournal::Fence() {
  absl::MutexLock lock(&fence_mu_);
  return fence_;
}

std::string EtcdJournal::Key(const std::string& what,
                             const std::vector<std::string>& parts) const {
  std::string key = prefix_ + what;
  for (const std::string& p : parts) absl::StrAppend(&key, "/", Escape(p));
  return key;
}

std::unique_ptr<EtcdWatch> EtcdJournal::WatchNewRollouts(
    std::function<void(const std::string& id)> on_new,
    EtcdDoneCallback on_done) {
  const std::string base = prefix_ + "rollouts/";
  return client_->Watch(
      base, EtcdPrefixEnd(base), 0,
      [base, on_new = std::move(on_new)](
          const std::vector<EtcdWatchEvent>& events, int64_t /*revision*/) {
        for (const EtcdWatchEvent& e : events) {
          if (e.type != EtcdWatchEvent::Type::kPut || e.kv.version != 1) {
            continue;
          }
          on_new(Unescape(e.kv.key.substr(base.size())));
        }
      },
      std::move(on_done));
}

namespace {

// Two watches as one: Cancel ends both.
class WatchPair : public EtcdWatch {
 public:
  WatchPair(std::unique_ptr<EtcdWatch> a, std::unique_ptr<EtcdWatch> b)
      : a_(std::move(a)), b_(std::move(b)) {}
  ~WatchPair() override { Cancel(); }
  void Cancel() override {
    a_->Cancel();
    b_->Cancel();
  }

 private:
  std::unique_ptr<EtcdWatch> a_;
  std::unique_ptr<EtcdWatch> b_;
};

}  // namespace

std::unique_ptr<EtcdWatch> EtcdJournal::WatchRollout(
    const std::string& id, std::function<void()> on_change,
    EtcdDoneCallback on_done) {
  auto events = [on_change = std::move(on_change)](
                    const std::vector<EtcdWatchEvent>& /*events*/,
                    int64_t /*revision*/) { on_change(); };
  auto done_once = std::make_shared<std::once_flag>();
  auto done = [done_once, on_done = std::move(on_done)](absl::Status s) {
    std::call_once(*done_once, [&] { on_done(std::move(s)); });
  };
  const std::string results = Key("host_results", {id}) + "/";
  std::unique_ptr<EtcdWatch> record =
      client_->Watch(Key("rollouts", {id}), "", 0, events, done);
  std::unique_ptr<EtcdWatch> hosts =
      client_->Watch(results, EtcdPrefixEnd(results), 0, events, done);
  return std::make_unique<WatchPair>(std::move(record), std::move(hosts));
}

std::string EtcdJournal::UniqueId() {
  return absl::StrFormat("%016x-%d", unique_seed_, unique_counter_++);
}

// ------------------------------------------------------------------ writes

absl::StatusOr<bool> EtcdJournal::Commit(const Write& write,
                                         int64_t* revision) {
  std::optional<EtcdCompare> fence;
  {
    absl::MutexLock lock(&fence_mu_);
    fence = fence_;
  }
  std::vector<EtcdCompare> compares = write.compares;
  std::vector<EtcdOp> failure;
  if (fence.has_value()) {
    compares.push_back(*fence);
    failure.push_back(EtcdOp::Get(fence->key));
  }
  failure.insert(failure.end(), write.failure_gets.begin(),
                 write.failure_gets.end());
  HOIST_ASSIGN_OR_RETURN(EtcdTxnResult result,
                         client_->Txn(compares, write.ops, failure));
  *revision = result.revision;
  if (result.succeeded) return true;
  std::vector<KeyValues> gets = std::move(result.gets);
  if (fence.has_value()) {
    // The failure branch read the fence key in the same Txn: if the fence
    // does not hold on it, the fence is what failed.
    if (gets.empty() || !Holds(*fence, gets.front())) {
      return absl::FailedPreconditionError(
          absl::StrCat("not the leader: the journal's fence on ", fence->key,
                       " no longer holds; nothing was written"));
    }
    gets.erase(gets.begin());
  }
  if (write.on_conflict) HOIST_RETURN_IF_ERROR(write.on_conflict(gets));
  return false;
}

absl::Status EtcdJournal::RunWrite(const WriteBuilder& build) {
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    HOIST_ASSIGN_OR_RETURN(Write write, build());
    if (write.ops.empty()) return absl::OkStatus();  // nothing to write
    int64_t revision = 0;
    HOIST_ASSIGN_OR_RETURN(const bool applied, Commit(write, &revision));
    if (!applied) continue;
    if (!write.created_rollout.empty()) {
      RememberCreation(write.created_rollout, revision);
    }
    return absl::OkStatus();
  }
  return absl::AbortedError(
      absl::StrCat("journal write conflicted with other writers ",
                   kMaxWriteAttempts, " times; nothing was written"));
}

absl::Status EtcdJournal::AddRolloutSave(const hoist::v1::Rollout& rollout,
                                         Write* write, bool assume_new) {
  const std::string key = Key("rollouts", {rollout.id()});
  KeyValues stored;
  if (!assume_new) {
    HOIST_ASSIGN_OR_RETURN(stored, client_->Get(key));
  }
  int64_t mod_revision = 0;  // absent
  std::string old_index;
  if (!stored.empty()) {
    hoist::v1::Rollout old;
    if (!old.ParseFromString(stored.front().value)) {
      return Unparsable(key, "hoist.v1.Rollout");
    }
    mod_revision = stored.front().mod_revision;
    old_index = Key("rollout_index", {IndexTime(old), old.id()});
  }
  std::string blob;
  if (!rollout.SerializeToString(&blob)) {
    return absl::InternalError("serialize rollout");
  }
  const std::string index =
      Key("rollout_index", {IndexTime(rollout), rollout.id()});
  write->compares.push_back(ModRevisionIs(key, mod_revision));
  write->ops.push_back(EtcdOp::Put(key, std::move(blob)));
  if (mod_revision == 0 && Unfinished(rollout.state())) {
    write->created_rollout = rollout.id();
  }
  if (!old_index.empty() && old_index != index) {
    write->ops.push_back(EtcdOp::Delete(old_index));
  }
  const Json entry = {{"id", rollout.id()},
                      {"service", rollout.service()},
                      {"state", static_cast<int>(rollout.state())}};
  write->ops.push_back(EtcdOp::Put(index, entry.dump()));
  // The blob holds every host now: host results saved since are superseded.
  const std::string results = Key("host_results", {rollout.id()}) + "/";
  write->ops.push_back(EtcdOp::Delete(results, EtcdPrefixEnd(results)));
  return absl::OkStatus();
}

absl::Status EtcdJournal::AcceptDelivery(const DeliveryRecord& delivery,
                                         const hoist::v1::Rollout& rollout) {
  // The webhook's 202 waits for this write: its first attempt saves a read
  // by taking the rollout as new (it has a fresh id).
  bool first = true;
  return RunWrite([&]() -> absl::StatusOr<Write> {
    const bool assume_new = std::exchange(first, false);
    Write write;
    if (!delivery.dedupe_key.empty()) {
      const std::string key = Key("deliveries", {delivery.dedupe_key});
      const Json value = {{"rollout_id", delivery.rollout_id},
                          {"service", delivery.service},
                          {"accepted", TimeToJournalMicros(delivery.accepted)},
                          {"summary", delivery.summary}};
      write.compares.push_back(KeyAbsent(key));
      write.ops.push_back(EtcdOp::Put(key, value.dump()));
      write.failure_gets.push_back(EtcdOp::Get(key));
      write.on_conflict = [key](const std::vector<KeyValues>& gets) {
        if (!gets.empty() && !gets.front().empty()) {
          return absl::AlreadyExistsError(
              absl::StrCat("delivery ", key, " is already accepted"));
        }
        return absl::OkStatus();  // the rollout changed: try again
      };
    }
    HOIST_RETURN_IF_ERROR(AddRolloutSave(rollout, &write, assume_new));
    return write;
  });
}

absl::Status EtcdJournal::SaveRollout(const hoist::v1::Rollout& rollout) {
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    HOIST_RETURN_IF_ERROR(AddRolloutSave(rollout, &write));
    return write;
  });
}

absl::Status EtcdJournal::SaveHostProgress(
    const std::string& rollout_id, const std::vector<HostUpdate>& hosts,
    const std::vector<HostEventRecord>& events) {
  if (hosts.empty() && events.empty()) return absl::OkStatus();
  Json host_list = Json::array();
  for (const HostUpdate& h : hosts) {
    host_list.push_back({{"index", h.index}, {"result", Base64Of(h.result)}});
  }
  Json event_list = Json::array();
  for (const HostEventRecord& e : events) {
    event_list.push_back({{"agent", e.agent}, {"event", Base64Of(e.event)}});
  }
  const std::string hosts_value = Json{{"hosts", host_list}}.dump();
  const std::string events_value = Json{{"events", event_list}}.dump();
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    if (!hosts.empty()) {
      const std::string key = Key("host_results", {rollout_id, UniqueId()});
      write.compares.push_back(KeyAbsent(key));
      write.ops.push_back(EtcdOp::Put(key, hosts_value));
    }
    if (!events.empty()) {
      const std::string key = Key("events", {rollout_id, UniqueId()});
      write.compares.push_back(KeyAbsent(key));
      write.ops.push_back(EtcdOp::Put(key, events_value));
    }
    return write;
  });
}

absl::Status EtcdJournal::AppendHostEvent(const std::string& rollout_id,
                                          const std::string& agent,
                                          const hoist::v1::DeployEvent& event) {
  return SaveHostProgress(rollout_id, {}, {HostEventRecord{agent, event}});
}

// ---------------------------------------------------------- deliveries

absl::StatusOr<std::optional<DeliveryRecord>> EtcdJournal::FindDelivery(
    const std::string& dedupe_key) {
  const std::string key = Key("deliveries", {dedupe_key});
  HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, client_->Get(key));
  if (kvs.empty()) return std::optional<DeliveryRecord>();
  JsonFields f(key, kvs.front().value);
  DeliveryRecord r;
  r.dedupe_key = dedupe_key;
  r.rollout_id = f.Str("rollout_id");
  r.service = f.Str("service");
  r.accepted = f.Time("accepted");
  r.summary = f.Str("summary");
  HOIST_RETURN_IF_ERROR(f.status());
  return std::optional<DeliveryRecord>(std::move(r));
}

absl::Status EtcdJournal::CountDuplicate(const std::string& dedupe_key,
                                         absl::Time at) {
  bool flush = false;
  {
    absl::MutexLock lock(&duplicates_mu_);
    DuplicateTally& tally = duplicates_[dedupe_key];
    ++tally.count;
    tally.last = std::max(tally.last, at);
    flush = absl::Now() - duplicates_flushed_ >= kDuplicateFlushInterval;
  }
  if (flush) return FlushDuplicates();
  return absl::OkStatus();
}

absl::Status EtcdJournal::FlushDuplicates() {
  std::map<std::string, DuplicateTally> pending;
  {
    absl::MutexLock lock(&duplicates_mu_);
    pending.swap(duplicates_);
    duplicates_flushed_ = absl::Now();
  }
  absl::Status first_error;
  for (const auto& entry : pending) {
    const absl::Status s = AddDuplicates(entry.first, entry.second);
    if (s.ok()) continue;
    if (first_error.ok()) first_error = s;
    absl::MutexLock lock(&duplicates_mu_);
    DuplicateTally& kept = duplicates_[entry.first];
    kept.count += entry.second.count;
    kept.last = std::max(kept.last, entry.second.last);
  }
  return first_error;
}

absl::Status EtcdJournal::AddDuplicates(const std::string& dedupe_key,
                                        const DuplicateTally& tally) {
  const std::string key = Key("duplicates", {dedupe_key});
  const std::string delivery = Key("deliveries", {dedupe_key});
  const absl::Status s = RunWrite([&]() -> absl::StatusOr<Write> {
    HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, client_->Get(key));
    int64_t count = 0;
    absl::Time last = tally.last;
    if (!kvs.empty()) {
      JsonFields f(key, kvs.front().value);
      count = f.Int("count");
      last = std::max(last, f.Time("last"));
      HOIST_RETURN_IF_ERROR(f.status());
    }
    Write write;
    write.compares = {
        ModRevisionIs(key, kvs.empty() ? 0 : kvs.front().mod_revision)};
    // Counts of an unknown delivery are dropped, as SQLite's UPDATE does.
    EtcdCompare known = KeyAbsent(delivery);
    known.result = EtcdCompare::Result::kGreater;
    write.compares.push_back(known);
    const Json value = {{"count", count + tally.count},
                        {"last", TimeToJournalMicros(last)}};
    write.ops = {EtcdOp::Put(key, value.dump())};
    write.failure_gets = {EtcdOp::Get(delivery)};
    write.on_conflict = [](const std::vector<KeyValues>& gets) {
      if (gets.empty() || gets.front().empty()) {
        return absl::NotFoundError("no such delivery");
      }
      return absl::OkStatus();
    };
    return write;
  });
  return absl::IsNotFound(s) ? absl::OkStatus() : s;
}

absl::StatusOr<int64_t> EtcdJournal::DuplicateCount(
    const std::string& dedupe_key) {
  HOIST_RETURN_IF_ERROR(FlushDuplicates());
  const std::string key = Key("duplicates", {dedupe_key});
  HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, client_->Get(key));
  if (kvs.empty()) return 0;
  JsonFields f(key, kvs.front().value);
  const int64_t count = f.Int("count");
  HOIST_RETURN_IF_ERROR(f.status());
  return count;
}

// ---------------------------------------------------------------- fleet

absl::Status EtcdJournal::WriteFleet(const std::vector<FleetEntry>& entries) {
  constexpr size_t kOpsPerTxn = 100;  // under etcd's --max-txn-ops (128)
  for (size_t first = 0; first < entries.size(); first += kOpsPerTxn) {
    const size_t last = std::min(entries.size(), first + kOpsPerTxn);
    HOIST_RETURN_IF_ERROR(RunWrite([&]() -> absl::StatusOr<Write> {
      Write write;
      for (size_t i = first; i < last; ++i) {
        const FleetEntry& e = entries[i];
        const std::string key = Key("fleet", {e.kind, e.name});
        write.ops.push_back(e.remove ? EtcdOp::Delete(key)
                                     : EtcdOp::Put(key, e.value));
      }
      return write;
    }));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<EtcdJournal::FleetEntry>> EtcdJournal::ReadFleet(
    const std::string& kind) {
  const std::string base = Key("fleet", {kind}) + "/";
  HOIST_ASSIGN_OR_RETURN(KeyValues kvs, GetUnder(base));
  std::vector<FleetEntry> out;
  out.reserve(kvs.size());
  for (EtcdKeyValue& kv : kvs) {
    out.push_back(FleetEntry{kind, Unescape(kv.key.substr(base.size())),
                             std::move(kv.value)});
  }
  return out;
}

absl::StatusOr<std::string> EtcdJournal::ReadFleetEntry(
    const std::string& kind, const std::string& name) {
  HOIST_ASSIGN_OR_RETURN(KeyValues kvs,
                         client_->Get(Key("fleet", {kind, name})));
  if (kvs.empty()) {
    return absl::NotFoundError(absl::StrCat("no published ", kind, " ", name));
  }
  return std::move(kvs.front().value);
}

// ------------------------------------------------------------- rollouts

absl::StatusOr<KeyValues> EtcdJournal::GetUnder(const std::string& base) {
  return client_->Get(base, EtcdPrefixEnd(base));
}

absl::StatusOr<std::vector<EtcdJournal::IndexEntry>> EtcdJournal::ReadIndex() {
  const std::string base = prefix_ + "rollout_index/";
  HOIST_ASSIGN_OR_RETURN(KeyValues kvs, GetUnder(base));
  // Keys sort by created time, then by id; SQLite breaks ties of created by
  // insertion order: so do we, by the index key's create revision.
  std::stable_sort(kvs.begin(), kvs.end(),
                   [&base](const EtcdKeyValue& a, const EtcdKeyValue& b) {
                     const int c =
                         a.key.compare(base.size(), 20, b.key, base.size(), 20);
                     if (c != 0) return c < 0;
                     return a.create_revision < b.create_revision;
                   });
  std::vector<IndexEntry> out;
  out.reserve(kvs.size());
  for (const EtcdKeyValue& kv : kvs) {
    JsonFields f(kv.key, kv.value);
    IndexEntry e;
    e.id = f.Str("id");
    e.service = f.Str("service");
    e.state = static_cast<int>(f.Int("state"));
    HOIST_RETURN_IF_ERROR(f.status());
    out.push_back(std::move(e));
  }
  return out;
}

namespace {

// Applies the host results stored under `kvs` (one SaveHostProgress each)
// to `rollout`, oldest first.
absl::Status ApplyHostResults(KeyValues kvs, hoist::v1::Rollout* rollout) {
  SortByCreation(&kvs);
  for (const EtcdKeyValue& kv : kvs) {
    JsonFields f(kv.key, kv.value);
    absl::Status fits;
    f.Array("hosts", [&](JsonFields& host) {
      const int64_t index = host.Int("index");
      hoist::v1::HostResult result;
      host.Proto("result", &result);
      if (!host.status().ok()) return;
      if (index < 0 || index >= rollout->hosts_size()) {
        fits = absl::DataLossError(absl::StrCat(
            "journal holds a host result of ", rollout->id(),
            " that does not fit (index ", index, ", key ", kv.key, ")"));
        return;
      }
      *rollout->mutable_hosts(static_cast<int>(index)) = std::move(result);
    });
    HOIST_RETURN_IF_ERROR(f.status());
    HOIST_RETURN_IF_ERROR(fits);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<hoist::v1::Rollout>> EtcdJournal::ReadRollouts(
    const std::vector<std::string>& ids) {
  std::vector<hoist::v1::Rollout> out;
  for (size_t first = 0; first < ids.size(); first += kRolloutsPerRead) {
    const size_t end = std::min(ids.size(), first + kRolloutsPerRead);
    std::vector<EtcdOp> gets;
    for (size_t i = first; i < end; ++i) {
      const std::string results = Key("host_results", {ids[i]}) + "/";
      gets.push_back(EtcdOp::Get(Key("rollouts", {ids[i]})));
      gets.push_back(EtcdOp::Get(results, EtcdPrefixEnd(results)));
    }
    // One Txn: each rollout and its host results at one revision.
    HOIST_ASSIGN_OR_RETURN(EtcdTxnResult read, client_->Txn({}, gets, {}));
    if (read.gets.size() != gets.size()) {
      return absl::InternalError("etcd answered a read with missing ranges");
    }
    for (size_t g = 0; g < read.gets.size(); g += 2) {
      if (read.gets[g].empty()) continue;  // no such rollout
      const EtcdKeyValue& kv = read.gets[g].front();
      hoist::v1::Rollout rollout;
      if (!rollout.ParseFromString(kv.value)) {
        return Unparsable(kv.key, "hoist.v1.Rollout");
      }
      HOIST_RETURN_IF_ERROR(
          ApplyHostResults(std::move(read.gets[g + 1]), &rollout));
      if (Unfinished(rollout.state())) {
        RememberCreation(rollout.id(), kv.create_revision);
      }
      out.push_back(std::move(rollout));
    }
  }
  return out;
}

void EtcdJournal::RememberCreation(const std::string& id, int64_t revision) {
  // Enough for every rollout a leader takes up between two reads of it; an
  // id evicted falls back to creation times (RolloutManager).
  constexpr size_t kMaxCreationOrders = 4096;
  absl::MutexLock lock(&creation_mu_);
  if (!creation_orders_.emplace(id, revision).second) return;
  creation_fifo_.push_back(id);
  if (creation_fifo_.size() > kMaxCreationOrders) {
    creation_orders_.erase(creation_fifo_.front());
    creation_fifo_.pop_front();
  }
}

std::optional<int64_t> EtcdJournal::CreationOrder(const std::string& id) {
  absl::MutexLock lock(&creation_mu_);
  auto it = creation_orders_.find(id);
  if (it == creation_orders_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<hoist::v1::Rollout> EtcdJournal::GetRollout(
    const std::string& id) {
  HOIST_ASSIGN_OR_RETURN(std::vector<hoist::v1::Rollout> rollouts,
                         ReadRollouts({id}));
  if (rollouts.empty()) {
    return absl::NotFoundError(absl::StrCat("no rollout ", id));
  }
  return std::move(rollouts.front());
}

absl::StatusOr<std::vector<hoist::v1::Rollout>> EtcdJournal::ListRollouts(
    const std::string& service, int limit) {
  if (limit <= 0) limit = 50;
  HOIST_ASSIGN_OR_RETURN(const std::vector<IndexEntry> index, ReadIndex());
  std::vector<std::string> ids;
  for (auto it = index.rbegin();
       it != index.rend() && static_cast<int>(ids.size()) < limit; ++it) {
    if (service.empty() || it->service == service) ids.push_back(it->id);
  }
  HOIST_ASSIGN_OR_RETURN(std::vector<hoist::v1::Rollout> rollouts,
                         ReadRollouts(ids));
  if (!service.empty()) {
    rollouts.erase(std::remove_if(rollouts.begin(), rollouts.end(),
                                  [&](const hoist::v1::Rollout& r) {
                                    return r.service() != service;
                                  }),
                   rollouts.end());
  }
  return rollouts;
}

absl::StatusOr<std::vector<hoist::v1::Rollout>> EtcdJournal::ListUnfinished() {
  HOIST_ASSIGN_OR_RETURN(const std::vector<IndexEntry> index, ReadIndex());
  std::vector<std::string> ids;
  for (const IndexEntry& e : index) {
    if (Unfinished(e.state)) ids.push_back(e.id);
  }
  HOIST_ASSIGN_OR_RETURN(std::vector<hoist::v1::Rollout> rollouts,
                         ReadRollouts(ids));
  // A rollout that finished between the index read and this one is dropped.
  rollouts.erase(std::remove_if(rollouts.begin(), rollouts.end(),
                                [](const hoist::v1::Rollout& r) {
                                  return !Unfinished(r.state());
                                }),
                 rollouts.end());
  return rollouts;
}

absl::StatusOr<std::vector<hoist::v1::DeployEvent>> EtcdJournal::HostEvents(
    const std::string& rollout_id, const std::string& agent) {
  const std::string base = Key("events", {rollout_id}) + "/";
  HOIST_ASSIGN_OR_RETURN(KeyValues kvs, GetUnder(base));
  SortByCreation(&kvs);
  std::vector<hoist::v1::DeployEvent> out;
  for (const EtcdKeyValue& kv : kvs) {
    JsonFields f(kv.key, kv.value);
    f.Array("events", [&](JsonFields& e) {
      if (e.Str("agent") != agent) return;
      hoist::v1::DeployEvent event;
      e.Proto("event", &event);
      out.push_back(std::move(event));
    });
    HOIST_RETURN_IF_ERROR(f.status());
  }
  return out;
}

// -------------------------------------------------------- desired state

absl::Status EtcdJournal::SaveDesired(const DesiredState& desired) {
  if (desired.service.empty()) {
    return absl::InvalidArgumentError("desired state without a service");
  }
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    write.ops.push_back(EtcdOp::Put(Key("desired", {desired.service}),
                                    DesiredJson(desired).dump()));
    return write;
  });
}

absl::Status EtcdJournal::SaveRolloutAndDesired(
    const hoist::v1::Rollout& rollout, const DesiredState& desired) {
  if (desired.service != rollout.service()) {
    return absl::InvalidArgumentError(
        absl::StrCat("desired state of service \"", desired.service,
                     "\" saved with rollout ", rollout.id(), " of service \"",
                     rollout.service(), "\""));
  }
  if (desired.service.empty()) {
    return absl::InvalidArgumentError("desired state without a service");
  }
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    HOIST_RETURN_IF_ERROR(AddRolloutSave(rollout, &write));
    write.ops.push_back(EtcdOp::Put(Key("desired", {desired.service}),
                                    DesiredJson(desired).dump()));
    return write;
  });
}

absl::Status EtcdJournal::DeleteDesired(const std::string& service) {
  const std::string attempts = Key("attempts", {service}) + "/";
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    write.ops.push_back(EtcdOp::Delete(Key("desired", {service})));
    write.ops.push_back(EtcdOp::Delete(attempts, EtcdPrefixEnd(attempts)));
    return write;
  });
}

absl::StatusOr<std::vector<DesiredState>> EtcdJournal::ListDesired() {
  const std::string base = prefix_ + "desired/";
  HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, GetUnder(base));
  std::vector<DesiredState> out;
  for (const EtcdKeyValue& kv : kvs) {
    JsonFields f(kv.key, kv.value);
    out.push_back(DesiredFrom(f));
    HOIST_RETURN_IF_ERROR(f.status());
  }
  // By service name as stored (escaping may reorder keys).
  std::sort(out.begin(), out.end(),
            [](const DesiredState& a, const DesiredState& b) {
              return a.service < b.service;
            });
  return out;
}

absl::Status EtcdJournal::SavePreviousDesired(
    const std::string& rollout_id,
    const std::optional<DesiredState>& previous) {
  if (rollout_id.empty()) {
    return absl::InvalidArgumentError("previous desired state without rollout");
  }
  const std::string key = Key("previous_desired", {rollout_id});
  Json value = DesiredJson(previous.value_or(DesiredState()));
  value["present"] = previous.has_value();
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    // Recorded once: the first record stays.
    write.compares.push_back(KeyAbsent(key));
    write.ops.push_back(EtcdOp::Put(key, value.dump()));
    write.on_conflict = [&rollout_id](const std::vector<KeyValues>&) {
      return absl::AlreadyExistsError(
          absl::StrCat("previous desired state of rollout ", rollout_id,
                       " is already recorded"));
    };
    return write;
  });
}

absl::StatusOr<std::optional<DesiredState>> EtcdJournal::GetPreviousDesired(
    const std::string& rollout_id) {
  const std::string key = Key("previous_desired", {rollout_id});
  HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, client_->Get(key));
  if (kvs.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no previous desired state recorded for rollout ", rollout_id));
  }
  JsonFields f(key, kvs.front().value);
  const bool present = f.Bool("present");
  DesiredState d = DesiredFrom(f);
  HOIST_RETURN_IF_ERROR(f.status());
  if (!present) return std::optional<DesiredState>();
  return std::optional<DesiredState>(std::move(d));
}

absl::Status EtcdJournal::SaveAttempts(const ConvergeAttempts& attempts) {
  if (attempts.service.empty() || attempts.agent.empty()) {
    return absl::InvalidArgumentError(
        "converge attempts need a service and an agent");
  }
  const Json value = {
      {"service", attempts.service},
      {"agent", attempts.agent},
      {"attempts", attempts.attempts},
      {"next_attempt", TimeToJournalMicros(attempts.next_attempt)},
      {"gave_up", attempts.gave_up},
      {"last_error", attempts.last_error}};
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    write.ops.push_back(EtcdOp::Put(
        Key("attempts", {attempts.service, attempts.agent}), value.dump()));
    return write;
  });
}

absl::StatusOr<std::vector<ConvergeAttempts>> EtcdJournal::ListAttempts() {
  const std::string base = prefix_ + "attempts/";
  HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, GetUnder(base));
  std::vector<ConvergeAttempts> out;
  for (const EtcdKeyValue& kv : kvs) {
    JsonFields f(kv.key, kv.value);
    ConvergeAttempts a;
    a.service = f.Str("service");
    a.agent = f.Str("agent");
    a.attempts = static_cast<int>(f.Int("attempts"));
    a.next_attempt = f.Time("next_attempt");
    a.gave_up = f.Bool("gave_up");
    a.last_error = f.Str("last_error");
    HOIST_RETURN_IF_ERROR(f.status());
    out.push_back(std::move(a));
  }
  std::sort(out.begin(), out.end(),
            [](const ConvergeAttempts& a, const ConvergeAttempts& b) {
              return std::tie(a.service, a.agent) <
                     std::tie(b.service, b.agent);
            });
  return out;
}

// --------------------------------------------------------------- outbox

absl::Status EtcdJournal::AddOutboxRows(const std::vector<OutboxRow>& rows,
                                        Write* write) {
  std::set<std::string> ids;
  for (const OutboxRow& row : rows) {
    if (!ids.insert(row.id).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("notification ", row.id, " is already journaled"));
    }
    const std::string key = Key("outbox", {row.id});
    write->compares.push_back(KeyAbsent(key));
    write->ops.push_back(EtcdOp::Put(key, OutboxJson(row).dump()));
    write->failure_gets.push_back(EtcdOp::Get(key));
  }
  std::vector<std::string> in_order;
  in_order.reserve(rows.size());
  for (const OutboxRow& row : rows) in_order.push_back(row.id);
  write->on_conflict = [in_order](const std::vector<KeyValues>& gets) {
    for (size_t i = 0; i < gets.size() && i < in_order.size(); ++i) {
      if (!gets[i].empty()) {
        return absl::AlreadyExistsError(absl::StrCat(
            "notification ", in_order[i], " is already journaled"));
      }
    }
    return absl::OkStatus();  // the rollout changed: try again
  };
  return absl::OkStatus();
}

absl::Status EtcdJournal::SaveRolloutWithOutbox(
    const hoist::v1::Rollout& rollout, const std::vector<OutboxRow>& rows) {
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    HOIST_RETURN_IF_ERROR(AddOutboxRows(rows, &write));
    HOIST_RETURN_IF_ERROR(AddRolloutSave(rollout, &write));
    return write;
  });
}

absl::Status EtcdJournal::EnqueueNotifications(
    const std::vector<OutboxRow>& rows) {
  if (rows.empty()) return absl::OkStatus();
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    HOIST_RETURN_IF_ERROR(AddOutboxRows(rows, &write));
    return write;
  });
}

absl::StatusOr<std::vector<OutboxRow>> EtcdJournal::ListNotifications(
    int limit) {
  const std::string base = prefix_ + "outbox/";
  HOIST_ASSIGN_OR_RETURN(KeyValues kvs, GetUnder(base));
  SortByCreation(&kvs);  // ties of the order below: first journaled first
  std::vector<OutboxRow> out;
  for (const EtcdKeyValue& kv : kvs) {
    HOIST_ASSIGN_OR_RETURN(OutboxRow row, OutboxFrom(kv));
    out.push_back(std::move(row));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const OutboxRow& a, const OutboxRow& b) {
                     return std::tie(a.next_attempt, a.created) <
                            std::tie(b.next_attempt, b.created);
                   });
  if (limit >= 0 && out.size() > static_cast<size_t>(limit)) out.resize(limit);
  return out;
}

absl::Status EtcdJournal::RescheduleNotification(const std::string& id,
                                                 int attempts,
                                                 absl::Time next_attempt) {
  const std::string key = Key("outbox", {id});
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, client_->Get(key));
    if (kvs.empty()) return write;  // no such row: nothing to write
    HOIST_ASSIGN_OR_RETURN(OutboxRow row, OutboxFrom(kvs.front()));
    row.attempts = attempts;
    row.next_attempt = next_attempt;
    write.compares.push_back(ModRevisionIs(key, kvs.front().mod_revision));
    write.ops.push_back(EtcdOp::Put(key, OutboxJson(row).dump()));
    return write;
  });
}

absl::Status EtcdJournal::DeleteNotification(const std::string& id) {
  return RunWrite([&]() -> absl::StatusOr<Write> {
    Write write;
    write.ops.push_back(EtcdOp::Delete(Key("outbox", {id})));
    return write;
  });
}

absl::StatusOr<int64_t> EtcdJournal::CountNotifications() {
  const std::string base = prefix_ + "outbox/";
  HOIST_ASSIGN_OR_RETURN(const KeyValues kvs, GetUnder(base));
  return static_cast<int64_t>(kvs.size());
}

}  // namespace hoist::receiver
