#include "receiver/control_commands.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "receiver/etcd_json.h"

namespace hoist::receiver {
namespace {

using hoist::v1::Rollout;
using Json = nlohmann::json;

constexpr char kCommands[] = "commands";
constexpr char kResults[] = "command_results";
constexpr char kClaimed[] = "claimed";
constexpr char kDone[] = "done";

// Pause before a relay's result watch is opened again after etcd ended it.
constexpr absl::Duration kRewatchPause = absl::Milliseconds(200);

std::optional<CommandKind> KindNamed(const std::string& name) {
  for (CommandKind k : {CommandKind::kCancel, CommandKind::kResume,
                        CommandKind::kRollback, CommandKind::kConverge}) {
    if (name == CommandKindName(k)) return k;
  }
  return std::nullopt;
}

std::string DoneValue(const absl::StatusOr<Rollout>& answer) {
  Json j = {{"state", kDone},
            {"code", static_cast<int>(answer.status().code())},
            {"message", std::string(answer.status().message())}};
  if (answer.ok()) j["rollout"] = Base64Of(*answer);
  return j.dump();
}

// A stored result: nullopt while only claimed (or unreadable), else the
// leader's answer.
struct StoredResult {
  bool claimed = false;
  std::optional<absl::StatusOr<Rollout>> answer;
};

// `key`'s value: unclaimed when it does not parse; a done result whose
// other fields do not parse is the leader's INTERNAL answer.
StoredResult ParseResult(const std::string& key, const std::string& value) {
  StoredResult out;
  JsonFields f(key, value);
  const std::string state = f.Str("state");
  if (!f.status().ok()) return out;
  out.claimed = true;
  if (state != kDone) return out;
  const int64_t code = f.Int("code");
  const std::string message = f.Str("message");
  Rollout rollout;
  if (f.status().ok() && code == 0) f.Proto("rollout", &rollout);
  if (!f.status().ok()) {
    out.answer = absl::InternalError(absl::StrCat(
        "the leader's answer does not parse: ", f.status().message()));
  } else if (code != 0) {
    out.answer = absl::Status(static_cast<absl::StatusCode>(code), message);
  } else {
    out.answer = std::move(rollout);
  }
  return out;
}

std::string Describe(CommandKind kind, const std::string& target) {
  return absl::StrCat(CommandKindName(kind), " ", target);
}

}  // namespace

const char* CommandKindName(CommandKind kind) {
  switch (kind) {
    case CommandKind::kCancel:
      return "cancel";
    case CommandKind::kResume:
      return "resume";
    case CommandKind::kRollback:
      return "rollback";
    case CommandKind::kConverge:
      return "converge";
  }
  return "unknown";
}

// ------------------------------------------------------------------ relay

// One Relay call's view of its result key, shared with the watch callbacks
// (guarded by the relay's mu_).
struct CommandRelay::Waiter {
  StoredResult result;
  bool ended = false;  // etcd ended the watch
  int64_t seen = 0;    // the revision the watch has seen up to
};

CommandRelay::CommandRelay(CommandRelayOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock()) {}

CommandRelay::~CommandRelay() { Stop(); }

void CommandRelay::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

absl::StatusOr<Rollout> CommandRelay::Relay(CommandKind kind,
                                            const std::string& target) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::UnavailableError(
          "this receiver is stopping; the command was not recorded");
    }
  }
  std::optional<std::string> leader = options_.leader_name();
  if (!leader.has_value() || leader->empty()) {
    return absl::UnavailableError(absl::StrCat(
        "no leader is known to this receiver now, so nobody could carry out ",
        Describe(kind, target),
        "; nothing was recorded (docs/operator-guide.md, High availability)"));
  }
  HOIST_ASSIGN_OR_RETURN(const Recorded r, Record(kind, target));
  std::optional<absl::StatusOr<Rollout>> answer = Await(r);
  if (answer.has_value()) return *std::move(answer);
  return GiveUp(r, kind, target, *leader);
}

absl::StatusOr<CommandRelay::Recorded> CommandRelay::Record(
    CommandKind kind, const std::string& target) {
  Recorded r;
  r.id = options_.journal->UniqueId();
  r.key = options_.journal->Key(kCommands, {r.id});
  r.result_key = options_.journal->Key(kResults, {r.id});
  const int64_t ttl = std::max<int64_t>(1, absl::ToInt64Seconds(options_.wait));
  absl::StatusOr<int64_t> lease = options_.client->GrantLease(ttl);
  if (!lease.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot record ", Describe(kind, target), " for the leader in etcd (",
        lease.status().message(), "); nothing was recorded"));
  }
  r.lease = *lease;
  const Json value = {{"id", r.id},
                      {"kind", CommandKindName(kind)},
                      {"target", target},
                      {"from", options_.name},
                      {"created", absl::ToUnixMicros(clock_->Now())}};
  EtcdCompare absent;
  absent.key = r.key;
  absent.target = EtcdCompare::Target::kCreateRevision;
  absent.number = 0;
  absl::StatusOr<EtcdTxnResult> put = options_.client->Txn(
      {absent}, {EtcdOp::Put(r.key, value.dump(), r.lease)}, {});
  if (put.ok() && put->succeeded) {
    r.revision = put->revision;
    return r;
  }
  // Revoking the lease deletes the key if the put applied after all.
  const absl::Status revoked = options_.client->RevokeLease(r.lease);
  const std::string why = put.ok() ? "a command with its id exists"
                                   : std::string(put.status().message());
  return absl::UnavailableError(absl::StrCat(
      "cannot record ", Describe(kind, target), " for the leader in etcd (",
      why, "); ",
      revoked.ok() || absl::IsNotFound(revoked)
          ? "nothing was recorded"
          : "if it was recorded after all, the leader may carry it out "
            "until it expires"));
}

std::unique_ptr<EtcdWatch> CommandRelay::WatchResult(
    const Recorded& r, const std::shared_ptr<Waiter>& waiter) {
  int64_t from = 0;
  {
    absl::MutexLock lock(&mu_);
    from = waiter->seen + 1;
  }
  return options_.client->Watch(
      r.result_key, "", from,
      [this, waiter](const std::vector<EtcdWatchEvent>& events,
                     int64_t revision) {
        absl::MutexLock lock(&mu_);
        waiter->seen = std::max(waiter->seen, revision);
        for (const EtcdWatchEvent& e : events) {
          if (e.type != EtcdWatchEvent::Type::kPut) continue;
          StoredResult result = ParseResult(e.kv.key, e.kv.value);
          if (result.claimed) waiter->result = std::move(result);
        }
      },
      [this, waiter](const absl::Status& status) {
        if (absl::IsCancelled(status)) return;
        absl::MutexLock lock(&mu_);
        waiter->ended = true;
      });
}

std::optional<absl::StatusOr<Rollout>> CommandRelay::Await(const Recorded& r) {
  const absl::Time deadline = clock_->Now() + options_.wait;
  auto waiter = std::make_shared<Waiter>();
  waiter->seen = r.revision;
  std::unique_ptr<EtcdWatch> watch = WatchResult(r, waiter);
  for (;;) {
    bool reopen = false;
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this, &waiter]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return waiter->result.answer.has_value() || waiter->ended || stopping_;
      };
      const absl::Duration left = deadline - clock_->Now();
      if (left > absl::ZeroDuration()) {
        clock_->AwaitWithTimeout(&mu_, absl::Condition(&woken), left);
      }
      if (waiter->result.answer.has_value()) break;
      if (stopping_ || clock_->Now() >= deadline) break;
      reopen = std::exchange(waiter->ended, false);
    }
    if (reopen) {
      // etcd ended the watch (no member for a while): watch again from the
      // last revision seen, after a pause so that a down etcd is not spun on.
      watch->Cancel();
      {
        absl::MutexLock lock(&mu_);
        auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_;
        };
        clock_->AwaitWithTimeout(&mu_, absl::Condition(&stop), kRewatchPause);
      }
      watch = WatchResult(r, waiter);
    }
  }
  watch->Cancel();  // no callback runs after this
  absl::MutexLock lock(&mu_);
  return waiter->result.answer;
}

absl::StatusOr<Rollout> CommandRelay::GiveUp(const Recorded& r,
                                             CommandKind kind,
                                             const std::string& target,
                                             const std::string& leader) {
  const std::string what = Describe(kind, target);
  const std::string waited = absl::FormatDuration(options_.wait);
  EtcdCompare unclaimed;
  unclaimed.key = r.key;
  unclaimed.target = EtcdCompare::Target::kCreateRevision;
  unclaimed.number = r.revision;
  absl::StatusOr<EtcdTxnResult> withdrawn = options_.client->Txn(
      {unclaimed}, {EtcdOp::Delete(r.key)}, {EtcdOp::Get(r.result_key)});
  if (!withdrawn.ok()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the leader (", leader, ") did not answer ", what, " within ", waited,
        " and the command could not be withdrawn (",
        withdrawn.status().message(),
        "): it may have been carried out, or may still be until it expires; "
        "check with hoistctl before retrying"));
  }
  if (withdrawn->succeeded) {
    options_.client->RevokeLease(r.lease).IgnoreError();  // its key is gone
    return absl::UnavailableError(absl::StrCat(
        "the leader (", leader, ") did not take up ", what, " within ", waited,
        "; the command was withdrawn and was not carried out"));
  }
  StoredResult result;
  if (!withdrawn->gets.empty() && !withdrawn->gets.front().empty()) {
    const EtcdKeyValue& kv = withdrawn->gets.front().front();
    result = ParseResult(kv.key, kv.value);
  }
  if (result.answer.has_value()) return *std::move(result.answer);
  if (!result.claimed) {
    return absl::UnavailableError(absl::StrCat(
        "the leader (", leader, ") did not take up ", what, " within ", waited,
        "; the command expired and was not carried out"));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the leader (", leader, ") took up ", what,
                   " but did not answer within ", waited,
                   ": it may have been carried out; check with hoistctl before "
                   "retrying"));
}

// --------------------------------------------------------------- executor

CommandExecutor::CommandExecutor(CommandExecutorOptions options)
    : options_(options),
      clock_(options_.clock != nullptr ? options_.clock : RealClock()) {}

CommandExecutor::~CommandExecutor() { Stop(); }

void CommandExecutor::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void CommandExecutor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (watch_) watch_->Cancel();
  watch_.reset();
}

void CommandExecutor::Loop() {
  bool resync = true;
  for (;;) {
    if (resync) {
      absl::Status s = Resync();
      resync = !s.ok();
      if (resync) {
        LogWarning("control commands of followers not watched yet; retrying",
                   {{"error", s.ToString()}});
        absl::MutexLock lock(&mu_);
        auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_;
        };
        clock_->AwaitWithTimeout(&mu_, absl::Condition(&stop),
                                 absl::Seconds(1));
        if (stopping_) return;
        continue;
      }
    }
    std::deque<std::string> ids;
    if (!WaitForWork(&ids, &resync)) return;
    for (const std::string& id : ids) {
      absl::StatusOr<bool> done = Execute(id);
      if (!done.ok()) {
        LogWarning("control command of a follower not carried out",
                   {{"command_id", id}, {"error", done.status().ToString()}});
      }
    }
  }
}

bool CommandExecutor::WaitForWork(std::deque<std::string>* ids, bool* resync) {
  absl::MutexLock lock(&mu_);
  auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty() || watch_ended_;
  };
  mu_.Await(absl::Condition(&work));
  if (stopping_) return false;
  ids->swap(queue_);
  *resync = std::exchange(watch_ended_, false);
  return true;
}

absl::Status CommandExecutor::Resync() {
  const std::string base = options_.journal->Key(kCommands, {}) + "/";
  // A Txn's Get gives the revision of the listing: the watch starts right
  // after it, so nothing falls between the two.
  HOIST_ASSIGN_OR_RETURN(
      EtcdTxnResult listed,
      options_.client->Txn({}, {EtcdOp::Get(base, EtcdPrefixEnd(base))}, {}));
  if (watch_) watch_->Cancel();
  auto id_of = [base](const EtcdKeyValue& kv) {
    const Json j = Json::parse(kv.value, nullptr, false);
    if (j.is_object() && j.contains("id") && j["id"].is_string()) {
      return j["id"].get<std::string>();
    }
    return kv.key.substr(base.size());
  };
  watch_ = options_.client->Watch(
      base, EtcdPrefixEnd(base), listed.revision + 1,
      [this, id_of](const std::vector<EtcdWatchEvent>& events, int64_t) {
        absl::MutexLock lock(&mu_);
        for (const EtcdWatchEvent& e : events) {
          if (e.type == EtcdWatchEvent::Type::kPut) {
            queue_.push_back(id_of(e.kv));
          }
        }
      },
      [this](const absl::Status& status) {
        if (absl::IsCancelled(status)) return;
        LogWarning("watch of followers' control commands ended; listing again",
                   {{"error", status.ToString()}});
        absl::MutexLock lock(&mu_);
        watch_ended_ = true;
      });
  absl::MutexLock lock(&mu_);
  if (!listed.gets.empty()) {
    for (const EtcdKeyValue& kv : listed.gets.front()) {
      queue_.push_back(id_of(kv));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> CommandExecutor::Execute(const std::string& id) {
  std::optional<EtcdCompare> fence = options_.journal->Fence();
  if (!fence.has_value()) {
    return absl::FailedPreconditionError(
        "not the leader: the journal has no fence; nothing was claimed");
  }
  const std::string key = options_.journal->Key(kCommands, {id});
  const std::string result_key = options_.journal->Key(kResults, {id});
  HOIST_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> stored,
                         options_.client->Get(key));
  if (stored.empty()) return false;  // carried out, withdrawn or expired
  const EtcdKeyValue command_kv = stored.front();
  const Json j = Json::parse(command_kv.value, nullptr, false);
  Command command;
  command.id = id;
  if (j.is_object()) {
    command.kind = j.value("kind", std::string());
    command.target = j.value("target", std::string());
    command.from = j.value("from", std::string());
  }
  HOIST_ASSIGN_OR_RETURN(const int64_t lease,
                         options_.client->GrantLease(std::max<int64_t>(
                             1, absl::ToInt64Seconds(options_.result_ttl))));
  EtcdCompare unchanged;
  unchanged.key = key;
  unchanged.target = EtcdCompare::Target::kModRevision;
  unchanged.number = command_kv.mod_revision;
  const std::string claimed = Json{{"state", kClaimed}}.dump();
  absl::StatusOr<EtcdTxnResult> claim = options_.client->Txn(
      {*fence, unchanged},
      {EtcdOp::Delete(key), EtcdOp::Put(result_key, claimed, lease)},
      {EtcdOp::Get(key)});
  if (!claim.ok() || !claim->succeeded) {
    options_.client->RevokeLease(lease).IgnoreError();  // holds no key
    if (!claim.ok()) return claim.status();
    const bool command_held =
        !claim->gets.empty() && !claim->gets.front().empty() &&
        claim->gets.front().front().mod_revision == command_kv.mod_revision;
    if (!command_held) return false;  // claimed by another, or gone
    return absl::FailedPreconditionError(
        absl::StrCat("not the leader: the journal's fence on ", fence->key,
                     " no longer holds; command ", id, " was not claimed"));
  }
  const absl::StatusOr<Rollout> answer = Apply(command);
  LogInfo("control command carried out",
          {{"command_id", id},
           {"kind", command.kind},
           {"target", command.target},
           {"from", command.from},
           {"result", answer.status().ToString()}});
  absl::StatusOr<int64_t> written =
      options_.client->Put(result_key, DoneValue(answer), lease);
  if (!written.ok()) {
    LogWarning("answer to a follower's control command not written",
               {{"command_id", id}, {"error", written.status().ToString()}});
  }
  return true;
}

absl::StatusOr<Rollout> CommandExecutor::Apply(const Command& command) {
  const std::optional<CommandKind> kind = KindNamed(command.kind);
  if (!kind.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the leader does not know the control command \"", command.kind, "\""));
  }
  switch (*kind) {
    case CommandKind::kCancel:
      return options_.rollouts->Cancel(command.target);
    case CommandKind::kResume:
      return options_.rollouts->Resume(command.target);
    case CommandKind::kRollback:
      return options_.rollouts->RollbackService(command.target);
    case CommandKind::kConverge:
      return options_.services->Converge(command.target);
  }
  return absl::InternalError("unreachable");
}

}  // namespace hoist::receiver
