#include "receiver/rollout_manager.h"

#include <malloc.h>

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "receiver/progress_batch.h"
#include "receiver/retry_policy.h"
#include "receiver/rollout_plan.h"

namespace hoist::receiver {

using hoist::v1::DeployEvent;
using hoist::v1::DeployPhase;
using hoist::v1::HostResult;
using hoist::v1::Rollout;
using hoist::v1::RolloutEvent;
using hoist::v1::RolloutState;
using hoist::v1::RolloutState_Name;

namespace {

// Rollouts at least this large return free heap pages when they end.
constexpr int kTrimAfterHosts = 100;

std::string PhaseName(DeployPhase p) { return hoist::v1::DeployPhase_Name(p); }

// "agent: reason" for every host that did not end SUCCEEDED.
std::string FailedHostsSummary(const Rollout& r) {
  std::vector<std::string> parts;
  for (const HostResult& h : r.hosts()) {
    if (h.phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED) continue;
    std::string why = h.error();
    if (why.empty()) {
      why = h.phase() == hoist::v1::DEPLOY_PHASE_UNSPECIFIED
                ? "not reached"
                : PhaseName(h.phase());
    }
    parts.push_back(absl::StrCat(h.agent(), ": ", why));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace

bool IsFinalRolloutState(RolloutState s) {
  return s == hoist::v1::ROLLOUT_STATE_SUCCEEDED ||
         s == hoist::v1::ROLLOUT_STATE_FAILED ||
         s == hoist::v1::ROLLOUT_STATE_ROLLED_BACK ||
         s == hoist::v1::ROLLOUT_STATE_SUPERSEDED ||
         s == hoist::v1::ROLLOUT_STATE_CANCELLED;
}

// ---------------------------------------------------------------------------
// RolloutManager

RolloutManager::RolloutManager(RolloutManagerOptions options,
                               std::shared_ptr<const ReceiverConfig> config)
    : options_(std::move(options)),
      journal_(options_.journal),
      pool_(options_.pool),
      clock_(options_.clock ? options_.clock : RealClock()),
      config_(std::move(config)),
      following_(options_.follower) {
  if (options_.executor_threads < 1) options_.executor_threads = 1;
  if (options_.metrics == nullptr)
    own_metrics_ = std::make_unique<MetricsRegistry>();
  metrics_ = options_.metrics ? options_.metrics : own_metrics_.get();
  duplicates_total_ = metrics_->GetCounter(
      "hoist_webhook_duplicates_total",
      "Deliveries answered as duplicates of an earlier one.");
  duplicate_batches_total_ = metrics_->GetCounter(
      "hoist_webhook_duplicate_batches_total",
      "Batches in which duplicate deliveries were counted in the journal.");
}

void RolloutManager::CountRollout(const Rollout& r) {
  metrics_
      ->GetCounter(
          "hoist_rollouts_total",
          "Rollouts that ended, by service and final state.",
          {{"service", r.service()}, {"state", RolloutState_Name(r.state())}})
      ->Increment();
}

void RolloutManager::CountHost(const std::string& agent, DeployPhase phase) {
  metrics_
      ->GetCounter("hoist_host_deploys_total",
                   "Host deploys that ended, by agent and phase.",
                   {{"agent", agent}, {"phase", PhaseName(phase)}})
      ->Increment();
}

void RolloutManager::PruneDedupe() {
  absl::MutexLock lock(&mu_);
  const absl::Time cutoff =
      clock_->Now() - absl::Seconds(config_->webhook.dedupe_window_seconds);
  for (auto it = dedupe_.begin(); it != dedupe_.end();) {
    if (it->second.accepted < cutoff) {
      it = dedupe_.erase(it);
    } else {
      ++it;
    }
  }
  metrics_
      ->GetGauge("hoist_rollouts_active",
                 "Rollouts pending, running or paused.")
      ->Set(static_cast<double>(active_.size()));
}

RolloutManager::~RolloutManager() { Stop(); }

void RolloutManager::UpdateConfig(
    std::shared_ptr<const ReceiverConfig> config) {
  absl::MutexLock lock(&mu_);
  config_ = std::move(config);
}

std::shared_ptr<const ReceiverConfig> RolloutManager::config() {
  absl::MutexLock lock(&mu_);
  return config_;
}

bool RolloutManager::Stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void RolloutManager::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  for (int i = 0; i < options_.executor_threads; ++i) {
    threads_.emplace_back([this] { ExecutorLoop(); });
  }
  threads_.emplace_back([this] { HousekeepingLoop(); });
}

void RolloutManager::Stop() {
  std::set<std::shared_ptr<CallInbox>> inboxes;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    inboxes = inboxes_;
  }
  for (const auto& inbox : inboxes) inbox->Stop();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  RetryUnsaved();  // a last chance; the journal's RUNNING resumes otherwise
}

absl::Status RolloutManager::Recover() {
  HOIST_ASSIGN_OR_RETURN(std::vector<Rollout> unfinished,
                         journal_->ListUnfinished());
  std::vector<Rollout> superseded;
  {
    absl::MutexLock lock(&mu_);
    std::set<std::string> services;
    // Rollouts already holding their service (RUNNING, PAUSED) first, so
    // that PENDING ones queue behind them.
    for (int pass = 0; pass < 2; ++pass) {
      for (Rollout& r : unfinished) {
        const bool pending = r.state() == hoist::v1::ROLLOUT_STATE_PENDING;
        if ((pass == 0) == pending) continue;
        const std::string id = r.id();
        const std::string service = r.service();
        const RolloutState state = r.state();
        if (!TakeUpLocked(std::move(r), /*wait=*/pending)) continue;
        services.insert(service);
        LogInfo(state == hoist::v1::ROLLOUT_STATE_PAUSED
                    ? "recovered paused rollout"
                    : "recovered rollout",
                {{"rollout_id", id},
                 {"service", service},
                 {"state", hoist::v1::RolloutState_Name(state)}});
      }
    }
    // A free service runs its newest PENDING rollout alone, as at the end of
    // a rollout (Finish): a leader that failed over in a burst of
    // promotions must not run the oldest, then the newest.
    const absl::Time now = clock_->Now();
    for (const std::string& service : services) {
      for (Rollout& r : PromoteNewestLocked(slots_[service], now)) {
        superseded.push_back(std::move(r));
      }
    }
  }
  EndSuperseded(superseded);
  return absl::OkStatus();
}

bool RolloutManager::TakeUpLocked(Rollout r, bool wait) {
  if (following_ || active_.count(r.id()) > 0) return false;
  const std::string id = r.id();
  const std::string service = r.service();
  const bool paused = r.state() == hoist::v1::ROLLOUT_STATE_PAUSED;
  active_[id] = std::move(r);
  if (std::optional<int64_t> order = journal_->CreationOrder(id)) {
    creation_orders_[id] = *order;
  }
  if (paused) {
    slots_[service].current = id;
  } else if (wait) {
    InsertWaitingLocked(slots_[service], id);
  } else {
    EnqueueLocked(id, service);
  }
  return true;
}

absl::Status RolloutManager::Lead() {
  {
    absl::MutexLock lock(&mu_);
    following_ = false;
  }
  // Rollouts journaled before the line above were kept by no one here:
  // Recover() reads them all. A Submit journaling at the same time takes its
  // own up (TakeUpLocked skips what Recover() took).
  absl::Status s = Recover();
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    following_ = true;
  }
  return s;
}

absl::Status RolloutManager::Adopt(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    if (following_ || active_.count(id) > 0) return absl::OkStatus();
  }
  HOIST_ASSIGN_OR_RETURN(Rollout r, journal_->GetRollout(id));
  if (r.state() != hoist::v1::ROLLOUT_STATE_PENDING) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  if (TakeUpLocked(std::move(r), /*wait=*/false)) {
    LogInfo("rollout adopted", {{"rollout_id", id}});
  }
  return absl::OkStatus();
}

absl::Status RolloutManager::LeaderOnly(absl::string_view what) {
  absl::MutexLock lock(&mu_);
  if (!following_) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "this receiver is not the leader; ", what,
      " is carried out by the leader only (docs/operator-guide.md, "
      "High availability)"));
}

void RolloutManager::EnqueueLocked(const std::string& id,
                                   const std::string& service) {
  ServiceSlot& slot = slots_[service];
  if (slot.current.empty()) {
    slot.current = id;
    ready_.push_back(id);
    return;
  }
  InsertWaitingLocked(slot, id);
}

void RolloutManager::InsertWaitingLocked(ServiceSlot& slot,
                                         const std::string& id) {
  // Waiting rollouts stay oldest first by creation (as ListUnfinished gives
  // them to Recover), not by when they were taken up: a leader takes its own
  // rollouts up at once but another receiver's only when etcd's watch
  // reports them (Adopt), which may be after a newer one of its own.
  // PromoteNewestLocked runs the newest, waiting.back(), and supersedes the
  // rest.
  auto last_not_newer =
      std::find_if(slot.waiting.rbegin(), slot.waiting.rend(),
                   [&](const std::string& other) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                       mu_) { return !CreatedAfterLocked(other, id); });
  slot.waiting.insert(last_not_newer.base(), id);
}

std::vector<Rollout> RolloutManager::PromoteNewestLocked(ServiceSlot& slot,
                                                         absl::Time now) {
  std::vector<Rollout> superseded;
  if (!slot.current.empty() || slot.waiting.empty()) return superseded;
  const std::string newest = slot.waiting.back();
  slot.waiting.pop_back();
  for (const std::string& old : slot.waiting) {
    auto o = active_.find(old);
    if (o == active_.end()) continue;
    o->second.set_state(hoist::v1::ROLLOUT_STATE_SUPERSEDED);
    o->second.set_superseded_by(newest);
    *o->second.mutable_finished() = ToProto(now);
    superseded.push_back(o->second);
  }
  slot.waiting.clear();
  slot.current = newest;
  ready_.push_back(newest);
  return superseded;
}

bool RolloutManager::CreatedAfterLocked(const std::string& a,
                                        const std::string& b) {
  // The journal's order where it has one for both (etcd: revisions, which
  // several receivers' clocks cannot disorder; docs/design.md "newest
  // waiting event = highest etcd revision"), else creation times (one
  // receiver's clock).
  auto order_a = creation_orders_.find(a);
  auto order_b = creation_orders_.find(b);
  if (order_a != creation_orders_.end() && order_b != creation_orders_.end()) {
    return order_a->second > order_b->second;
  }
  auto created = [this](const std::string& r)
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                       auto it = active_.find(r);
                       return it == active_.end()
                                  ? absl::InfinitePast()
                                  : FromProto(it->second.created());
                     };
  return created(a) > created(b);
}

absl::StatusOr<Rollout> RolloutManager::CreateRollout(
    const DeployIntent& intent, const DeliveryRecord* delivery) {
  std::shared_ptr<const ReceiverConfig> config = this->config();
  const ServiceConfig* service = config->FindService(intent.service);
  if (service == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no service named ", intent.service));
  }
  std::vector<const AgentEntry*> targets = ResolveTargets(*config, *service);
  if (!intent.agents.empty()) {
    const std::set<std::string> only(intent.agents.begin(),
                                     intent.agents.end());
    targets.erase(std::remove_if(targets.begin(), targets.end(),
                                 [&](const AgentEntry* a) {
                                   return only.count(a->name) == 0;
                                 }),
                  targets.end());
  }
  if (targets.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("service ", intent.service, " targets no agent"));
  }
  const absl::Time now = clock_->Now();
  Rollout r;
  r.set_id(absl::StrCat(
      "r-", absl::FormatTime("%Y%m%dT%H%M%S", now, absl::UTCTimeZone()), "-",
      RandomHex(4)));
  r.set_service(intent.service);
  r.set_image(intent.image.empty() ? service->image : intent.image);
  r.set_digest(intent.digest);
  r.set_tag(intent.tag);
  r.set_state(hoist::v1::ROLLOUT_STATE_PENDING);
  r.set_trigger(intent.trigger.empty() ? "webhook" : intent.trigger);
  *r.mutable_created() = ToProto(now);
  for (const AgentEntry* agent : targets) {
    HostResult* h = r.add_hosts();
    h->set_agent(agent->name);
    h->set_deploy_id(absl::StrCat(r.id(), "-", agent->name));
  }
  DeliveryRecord record;
  if (delivery != nullptr) {
    record = *delivery;
    record.rollout_id = r.id();
    record.accepted = now;
  }
  absl::Status s = journal_->AcceptDelivery(record, r);
  if (absl::IsAlreadyExists(s) && delivery != nullptr) {
    return s;  // another receiver accepted the same key (Submit answers)
  }
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("journal: ", s.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (delivery != nullptr) {
      dedupe_[record.dedupe_key] = DedupeEntry{r.id(), r.service(), now};
    }
    TakeUpLocked(r, /*wait=*/false);  // a follower leaves it to the leader
  }
  LogInfo("rollout accepted", {{"rollout_id", r.id()},
                               {"service", r.service()},
                               {"digest", r.digest()},
                               {"trigger", r.trigger()}});
  return r;
}

namespace {

// The answer to a delivery whose dedupe key was first accepted at `accepted`
// for `rollout_id`: a duplicate within the dedupe window, a replay after it.
SubmitResult KnownDelivery(const std::string& rollout_id,
                           const std::string& service, absl::Time accepted,
                           absl::Duration window, absl::Time now) {
  SubmitResult result;
  result.rollout_id = rollout_id;
  result.service = service;
  result.first_accepted = accepted;
  result.kind = now - accepted <= window ? SubmitResult::Kind::kDuplicate
                                         : SubmitResult::Kind::kReplay;
  return result;
}

}  // namespace

std::optional<SubmitResult> RolloutManager::AnswerFromMemory(
    const std::string& dedupe_key) {
  absl::MutexLock lock(&mu_);
  auto it = dedupe_.find(dedupe_key);
  if (it == dedupe_.end()) return std::nullopt;
  const absl::Time now = clock_->Now();
  const DedupeEntry& e = it->second;
  SubmitResult r =
      KnownDelivery(e.rollout_id, e.service, e.accepted,
                    absl::Seconds(config_->webhook.dedupe_window_seconds), now);
  if (r.kind == SubmitResult::Kind::kDuplicate) {
    duplicate_counts_.emplace_back(dedupe_key, now);
    duplicates_total_->Increment();
  }
  return r;
}

absl::StatusOr<std::optional<SubmitResult>> RolloutManager::AnswerFromJournal(
    const std::string& dedupe_key) {
  std::optional<DedupeEntry> known;
  {
    absl::MutexLock lock(&mu_);
    auto it = dedupe_.find(dedupe_key);
    if (it != dedupe_.end()) known = it->second;
  }
  if (!known) {
    absl::StatusOr<std::optional<DeliveryRecord>> found =
        journal_->FindDelivery(dedupe_key);
    if (!found.ok()) {
      return absl::UnavailableError(
          absl::StrCat("journal: ", found.status().message()));
    }
    if (!found->has_value()) return std::optional<SubmitResult>();
    const DeliveryRecord& d = **found;
    known = DedupeEntry{d.rollout_id, d.service, d.accepted};
    absl::MutexLock lock(&mu_);
    dedupe_[dedupe_key] = *known;
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  SubmitResult r =
      KnownDelivery(known->rollout_id, known->service, known->accepted,
                    absl::Seconds(config_->webhook.dedupe_window_seconds), now);
  if (r.kind == SubmitResult::Kind::kDuplicate) {
    duplicate_counts_.emplace_back(dedupe_key, now);
  }
  return std::optional<SubmitResult>(std::move(r));
}

absl::StatusOr<SubmitResult> RolloutManager::Submit(
    const DeployIntent& intent) {
  if (!intent.dedupe_key.empty()) {
    // Fast path: answered from memory, without submit_mu_.
    std::optional<SubmitResult> known = AnswerFromMemory(intent.dedupe_key);
    if (known) return *std::move(known);
  }
  absl::MutexLock submit_lock(&submit_mu_);
  if (!intent.dedupe_key.empty()) {
    // Under submit_mu_: memory again (the same key may just have been
    // accepted by another Submit), then the journal (a key accepted before a
    // restart, or pruned from memory).
    HOIST_ASSIGN_OR_RETURN(std::optional<SubmitResult> known,
                           AnswerFromJournal(intent.dedupe_key));
    if (known) return *std::move(known);
  }
  DeliveryRecord delivery;
  delivery.dedupe_key = intent.dedupe_key;
  delivery.service = intent.service;
  delivery.summary = intent.summary;
  absl::StatusOr<Rollout> created =
      CreateRollout(intent, intent.dedupe_key.empty() ? nullptr : &delivery);
  if (absl::IsAlreadyExists(created.status())) {
    // Another receiver sharing the journal (etcd) accepted this key between
    // our lookup and our write: answer as for any known delivery.
    HOIST_ASSIGN_OR_RETURN(std::optional<SubmitResult> known,
                           AnswerFromJournal(intent.dedupe_key));
    if (known) return *std::move(known);
    return absl::UnavailableError(
        "journal: the delivery was accepted elsewhere but cannot be read");
  }
  HOIST_ASSIGN_OR_RETURN(Rollout r, std::move(created));
  SubmitResult result;
  result.kind = SubmitResult::Kind::kAccepted;
  result.rollout_id = r.id();
  result.service = r.service();
  result.first_accepted = clock_->Now();
  return result;
}

absl::StatusOr<Rollout> RolloutManager::ManualDeploy(const std::string& service,
                                                     const std::string& digest,
                                                     const std::string& tag) {
  if (digest.empty() && tag.empty()) {
    return absl::InvalidArgumentError(
        "a manual deploy needs a digest or a tag");
  }
  if (!digest.empty() && digest.rfind("sha256:", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "digest must look like sha256:<hex>, got \"", digest, "\""));
  }
  DeployIntent intent;
  intent.service = service;
  intent.digest = digest;
  intent.tag = tag;
  intent.trigger = "manual";
  intent.summary =
      absl::StrCat("manual deploy of ", digest.empty() ? tag : digest);
  return CreateRollout(intent, nullptr);
}

namespace {

// Rollouts whose digest became and stayed the desired one.
bool KeptItsDigest(const Rollout& r) {
  return !IsConvergeRollout(r) && !r.digest().empty() &&
         (r.state() == hoist::v1::ROLLOUT_STATE_SUCCEEDED ||
          r.state() == hoist::v1::ROLLOUT_STATE_FAILED);
}

}  // namespace

absl::StatusOr<Rollout> RolloutManager::RollbackService(
    const std::string& service) {
  HOIST_RETURN_IF_ERROR(LeaderOnly("a rollback"));
  if (config()->FindService(service) == nullptr) {
    return absl::NotFoundError(absl::StrCat("no service named ", service));
  }
  HOIST_ASSIGN_OR_RETURN(std::vector<Rollout> history,
                         journal_->ListRollouts(service, 1000));
  // Newest first. The current digest is the desired one (when tracked: the
  // rollout that set it), else the latest SUCCEEDED rollout's; the target is
  // the first earlier rollout that kept another digest.
  std::optional<DesiredState> desired;
  if (options_.desired != nullptr) desired = options_.desired->Get(service);
  const bool tracked = desired && !desired->digest.empty();
  const Rollout* latest = nullptr;
  const Rollout* previous = nullptr;
  for (const Rollout& r : history) {
    if (latest == nullptr) {
      const bool current =
          tracked ? r.id() == desired->rollout_id
                  : r.state() == hoist::v1::ROLLOUT_STATE_SUCCEEDED &&
                        !r.digest().empty();
      if (current) latest = &r;
      continue;
    }
    const bool eligible = tracked
                              ? KeptItsDigest(r)
                              : r.state() == hoist::v1::ROLLOUT_STATE_SUCCEEDED;
    if (eligible && !r.digest().empty() && r.digest() != latest->digest()) {
      previous = &r;
      break;
    }
  }
  if (latest == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "service ", service, " has no successful rollout to go back from"));
  }
  if (previous == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("service ", service, " has no successful rollout before ",
                     latest->id(), " with another digest to go back to"));
  }
  DeployIntent intent;
  intent.service = service;
  intent.image = previous->image();
  intent.digest = previous->digest();
  intent.tag = previous->tag();
  intent.trigger = "rollback";
  intent.summary =
      absl::StrCat("rollback from ", latest->id(), " to ", previous->id());
  return CreateRollout(intent, nullptr);
}

absl::StatusOr<Rollout> RolloutManager::Resume(const std::string& id) {
  HOIST_RETURN_IF_ERROR(LeaderOnly("resuming a rollout"));
  Rollout copy;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end() ||
        it->second.state() != hoist::v1::ROLLOUT_STATE_PAUSED) {
      RolloutState state = it == active_.end()
                               ? hoist::v1::ROLLOUT_STATE_UNSPECIFIED
                               : it->second.state();
      if (it == active_.end()) {
        absl::StatusOr<Rollout> stored = journal_->GetRollout(id);
        if (!stored.ok()) return stored.status();
        state = stored->state();
      }
      return absl::FailedPreconditionError(
          absl::StrCat("rollout ", id, " is ",
                       hoist::v1::RolloutState_Name(state), ", not PAUSED"));
    }
    it->second.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
    it->second.clear_error();
    copy = it->second;
    ready_.push_back(id);  // still holds its service slot
  }
  Save(copy, hoist::v1::ROLLOUT_STATE_PAUSED);
  {
    absl::MutexLock lock(&mu_);
    PublishLocked(copy, -1, "resumed", nullptr, true);
  }
  LogInfo("rollout resumed", {{"rollout_id", id}});
  return copy;
}

absl::StatusOr<Rollout> RolloutManager::Cancel(const std::string& id) {
  HOIST_RETURN_IF_ERROR(LeaderOnly("cancelling a rollout"));
  bool finish_now = false;
  Rollout copy;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) {
      auto u = unsaved_.find(id);
      absl::StatusOr<Rollout> stored =
          u != unsaved_.end() ? u->second : journal_->GetRollout(id);
      if (!stored.ok()) return stored.status();
      return absl::FailedPreconditionError(absl::StrCat(
          "rollout ", id, " is ", hoist::v1::RolloutState_Name(stored->state()),
          "; only PENDING, RUNNING or PAUSED rollouts can be cancelled"));
    }
    if (rolling_back_.count(id) > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("rollout ", id,
                       " is rolling back its hosts (on_failure: rollback) "
                       "and cannot be cancelled now"));
    }
    ServiceSlot& slot = slots_[it->second.service()];
    auto waiting = std::find(slot.waiting.begin(), slot.waiting.end(), id);
    if (waiting != slot.waiting.end()) {
      slot.waiting.erase(waiting);  // queued behind another: never ran
      finish_now = true;
    } else if (it->second.state() == hoist::v1::ROLLOUT_STATE_PAUSED &&
               std::find(ready_.begin(), ready_.end(), id) == ready_.end()) {
      finish_now = true;  // no executor holds it
    } else {
      cancel_requested_.insert(id);  // its executor ends it
      PublishLocked(it->second, -1, "cancel requested", nullptr, true);
    }
    copy = it->second;
  }
  LogInfo("rollout cancel requested", {{"rollout_id", id}});
  if (!finish_now) return copy;
  Finish(id, hoist::v1::ROLLOUT_STATE_CANCELLED, "cancelled by an operator");
  return GetRollout(id);
}

std::optional<std::string> RolloutManager::ActiveRolloutOf(
    const std::string& service) {
  absl::MutexLock lock(&mu_);
  auto it = slots_.find(service);
  if (it == slots_.end()) return std::nullopt;
  if (!it->second.current.empty()) return it->second.current;
  if (!it->second.waiting.empty()) return it->second.waiting.back();
  return std::nullopt;
}

bool RolloutManager::CancelRequested(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return cancel_requested_.count(id) > 0;
}

bool RolloutManager::FinishIfCancelled(const std::string& id) {
  if (!CancelRequested(id)) return false;
  Finish(id, hoist::v1::ROLLOUT_STATE_CANCELLED, "cancelled by an operator");
  return true;
}

void RolloutManager::LearnDigest(const std::string& id,
                                 const std::string& digest) {
  bool learned = false;
  Update(
      id,
      [&](Rollout* r) {
        if (!r->digest().empty()) return;
        r->set_digest(digest);
        learned = true;
      },
      -1, absl::StrCat("tag ", "resolved to ", digest));
  if (!learned || options_.desired == nullptr) return;
  absl::Status s = options_.desired->DigestLearned(Snapshot(id));
  if (!s.ok()) {
    LogError("desired digest not updated",
             {{"rollout_id", id}, {"error", s.ToString()}});
  }
}

void RolloutManager::NotifyState(const Rollout& rollout) {
  if (options_.on_state_change) options_.on_state_change(rollout);
}

absl::StatusOr<Rollout> RolloutManager::GetRollout(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return it->second;
    it = unsaved_.find(id);
    if (it != unsaved_.end()) return it->second;
  }
  return journal_->GetRollout(id);
}

absl::StatusOr<std::vector<Rollout>> RolloutManager::ListRollouts(
    const std::string& service, int limit) {
  HOIST_ASSIGN_OR_RETURN(std::vector<Rollout> rows,
                         journal_->ListRollouts(service, limit));
  // The in-memory copy of an active rollout is the freshest.
  absl::MutexLock lock(&mu_);
  for (Rollout& r : rows) {
    auto it = active_.find(r.id());
    if (it != active_.end()) r = it->second;
    it = unsaved_.find(r.id());
    if (it != unsaved_.end()) r = it->second;
  }
  return rows;
}

absl::StatusOr<std::shared_ptr<RolloutSubscription>> RolloutManager::Watch(
    const std::string& id, std::function<void()> notify) {
  auto sub = std::make_shared<RolloutSubscription>(
      std::move(notify), options_.watch_queue_capacity);
  Rollout snapshot;
  bool final_state = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) {
      snapshot = it->second;
      final_state = IsFinalRolloutState(snapshot.state());
      if (!final_state) watchers_[id].push_back(sub);
      RolloutEvent e;
      *e.mutable_rollout() = snapshot;
      e.set_message("current state");
      sub->Push(e, final_state);
      return sub;
    }
  }
  HOIST_ASSIGN_OR_RETURN(snapshot, journal_->GetRollout(id));
  RolloutEvent e;
  *e.mutable_rollout() = snapshot;
  e.set_message("current state");
  sub->Push(e, true);
  return sub;
}

bool RolloutManager::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ready_.empty() && busy_ == 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

void RolloutManager::PublishLocked(const Rollout& rollout, int host_index,
                                   const std::string& message,
                                   const hoist::v1::PullProgress* pull,
                                   bool full) {
  auto it = watchers_.find(rollout.id());
  if (it == watchers_.end()) return;
  RolloutEvent e;
  if (full) *e.mutable_rollout() = rollout;
  if (host_index >= 0 && host_index < rollout.hosts_size()) {
    *e.mutable_host() = rollout.hosts(host_index);
  }
  e.set_message(message);
  if (pull != nullptr) *e.mutable_pull() = *pull;
  const bool final_event = IsFinalRolloutState(rollout.state());
  auto& subs = it->second;
  subs.erase(std::remove_if(subs.begin(), subs.end(),
                            [](const std::shared_ptr<RolloutSubscription>& s) {
                              return s->cancelled();
                            }),
             subs.end());
  // Push() calls the subscriber's notify, which by contract does not block
  // nor call into the manager.
  for (const auto& s : subs) s->Push(e, final_event, &rollout);
  if (final_event || subs.empty()) watchers_.erase(it);
}

bool RolloutManager::Save(const Rollout& rollout, RolloutState previous) {
  std::vector<OutboxRow> rows;
  if (options_.outbox_rows && previous != rollout.state()) {
    rows = options_.outbox_rows(rollout, previous);
  }
  absl::Status s = rows.empty()
                       ? journal_->SaveRollout(rollout)
                       : journal_->SaveRolloutWithOutbox(rollout, rows);
  if (!s.ok()) {
    LogError("journal write failed",
             {{"rollout_id", rollout.id()}, {"error", s.ToString()}});
  } else if (!rows.empty() && options_.on_outbox_written) {
    options_.on_outbox_written();
  }
  return s.ok();
}

void RolloutManager::RetryUnsaved() {
  std::map<std::string, Rollout> unsaved;
  {
    absl::MutexLock lock(&mu_);
    unsaved = unsaved_;
  }
  for (const auto& [id, rollout] : unsaved) {
    RolloutState previous = rollout.state();
    {
      absl::MutexLock lock(&mu_);
      auto p = unsaved_previous_.find(id);
      if (p != unsaved_previous_.end()) previous = p->second;
    }
    if (!Save(rollout, previous)) continue;
    LogInfo("journal write retried",
            {{"rollout_id", id},
             {"state", hoist::v1::RolloutState_Name(rollout.state())}});
    absl::MutexLock lock(&mu_);
    unsaved_.erase(id);
    unsaved_previous_.erase(id);
  }
}

void RolloutManager::Update(const std::string& id,
                            const std::function<void(Rollout*)>& fn,
                            int host_index, const std::string& message,
                            bool save) {
  if (!save) {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return;
    fn(&it->second);
    PublishLocked(it->second, host_index, message, nullptr, true);
    return;
  }
  Rollout copy;
  RolloutState previous;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return;
    previous = it->second.state();
    fn(&it->second);
    copy = it->second;
  }
  Save(copy, previous);
  absl::MutexLock lock(&mu_);
  // The executor is the only writer of an executing rollout, so `copy` is
  // still its current state.
  PublishLocked(copy, host_index, message, nullptr, true);
}

void RolloutManager::UpdateHost(const std::string& id, int host_index,
                                const std::function<void(HostResult*)>& fn,
                                const std::string& message,
                                const hoist::v1::PullProgress* pull,
                                std::vector<Journal::HostUpdate>* journal) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(id);
  if (it == active_.end()) return;
  Rollout& r = it->second;
  if (host_index < 0 || host_index >= r.hosts_size()) return;
  HostResult* h = r.mutable_hosts(host_index);
  fn(h);
  if (journal != nullptr) {
    Journal::HostUpdate u;
    u.index = host_index;
    u.result = *h;
    journal->push_back(std::move(u));
  }
  PublishLocked(r, host_index, message, pull, false);
}

void RolloutManager::Finish(const std::string& id, RolloutState state,
                            const std::string& error) {
  const absl::Time now = clock_->Now();
  Rollout copy;
  RolloutState previous;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return;
    previous = it->second.state();
    it->second.set_state(state);
    it->second.set_error(error);
    *it->second.mutable_finished() = ToProto(now);
    copy = it->second;
    cancel_requested_.erase(id);
    rolling_back_.erase(id);
  }
  const bool saved = Save(copy, previous);
  CountRollout(copy);
  if (options_.desired != nullptr) {
    absl::Status s = options_.desired->RolloutEnded(copy);
    if (!s.ok()) {
      LogError("desired digest not restored",
               {{"rollout_id", id}, {"error", s.ToString()}});
    }
  }
  std::vector<Rollout> superseded;
  {
    absl::MutexLock lock(&mu_);
    PublishLocked(copy, -1,
                  absl::StrCat("rollout ", hoist::v1::RolloutState_Name(state)),
                  nullptr, true);
    if (!saved) {
      unsaved_[id] = copy;
      unsaved_previous_[id] = previous;
      unsaved_added_ = true;  // wakes the housekeeping thread
    }
    active_.erase(id);
    creation_orders_.erase(id);
    ServiceSlot& slot = slots_[copy.service()];
    if (slot.current == id) slot.current.clear();
    superseded = PromoteNewestLocked(slot, now);
  }
  NotifyState(copy);
  EndSuperseded(superseded);
  // A large rollout leaves freed memory (its streams, events and copies)
  // scattered through the heap; give whole free pages back to the system.
  if (copy.hosts_size() >= kTrimAfterHosts) malloc_trim(0);
  LogInfo("rollout finished",
          {{"rollout_id", id},
           {"service", copy.service()},
           {"state", hoist::v1::RolloutState_Name(state)},
           {"error", error},
           {"superseded", absl::StrCat(superseded.size())}});
}

void RolloutManager::EndSuperseded(const std::vector<Rollout>& superseded) {
  for (const Rollout& r : superseded) {
    const bool superseded_saved = Save(r);
    CountRollout(r);
    NotifyState(r);
    absl::MutexLock lock(&mu_);
    PublishLocked(r, -1, absl::StrCat("superseded by ", r.superseded_by()),
                  nullptr, true);
    if (!superseded_saved) {
      unsaved_[r.id()] = r;
      unsaved_added_ = true;
    }
    active_.erase(r.id());
    creation_orders_.erase(r.id());
  }
}

void RolloutManager::ExecutorLoop() {
  while (true) {
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !ready_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (stopping_) return;
      id = ready_.front();
      ready_.pop_front();
      ++busy_;
    }
    RunRollout(id);
    absl::MutexLock lock(&mu_);
    --busy_;
  }
}

// Duplicates pending before the housekeeping thread takes them without
// waiting out duplicate_count_interval (bounds the memory a storm holds).
constexpr size_t kDuplicateCountBatch = 4096;

std::optional<std::deque<std::pair<std::string, absl::Time>>>
RolloutManager::TakeDuplicateBatch() {
  std::deque<std::pair<std::string, absl::Time>> batch;
  absl::MutexLock lock(&mu_);
  auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !duplicate_counts_.empty() || unsaved_added_;
  };
  // Real time: pruning and retrying failed final saves are housekeeping,
  // not behaviour tests drive. A failed final save is retried every second.
  mu_.AwaitWithTimeout(absl::Condition(&has_work),
                       unsaved_.empty() ? absl::Seconds(60) : absl::Seconds(1));
  unsaved_added_ = false;
  // The first duplicate after a quiet spell woke us; let the ones after it
  // gather (their Submit evaluates this condition on unlock and wakes
  // nobody), so a retry storm costs a wake-up per interval, not one per
  // delivery. On the Clock, so that tests can drive the interval.
  auto full_or_stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || duplicate_counts_.size() >= kDuplicateCountBatch;
  };
  if (!duplicate_counts_.empty()) {
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&full_or_stopping),
                             options_.duplicate_count_interval);
  }
  batch.swap(duplicate_counts_);
  if (batch.empty() && stopping_) return std::nullopt;
  return batch;
}

void RolloutManager::HousekeepingLoop() {
  while (true) {
    std::optional<std::deque<std::pair<std::string, absl::Time>>> batch =
        TakeDuplicateBatch();
    if (!batch) return;  // stopping, nothing left to count
    if (!batch->empty()) duplicate_batches_total_->Increment();
    for (const auto& [key, at] : *batch) {
      absl::Status s = journal_->CountDuplicate(key, at);
      if (!s.ok()) {
        LogWarning("could not count duplicate delivery",
                   {{"error", s.ToString()}});
      }
    }
    RetryUnsaved();
    if (Stopping()) return;
    PruneDedupe();
  }
}

// ---------------------------------------------------------------------------
// Executor: one rollout, wave by wave.

namespace {

// Hosts at `indices` whose deploy ended other than SUCCEEDED.
std::vector<int> FailedIn(const Rollout& r, const std::vector<int>& indices) {
  std::vector<int> out;
  for (int i : indices) {
    const DeployPhase p = r.hosts(i).phase();
    // An unreachable host is left to convergence (docs/design.md,
    // "Rollouts").
    if (IsUnreachableResult(r.hosts(i))) continue;
    if (IsFinalPhase(p) && p != hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
      out.push_back(i);
    }
  }
  return out;
}

// Hosts at `indices` whose deploy has not ended (a recovered rollout skips
// the others).
std::vector<int> NotDoneIn(const Rollout& r, const std::vector<int>& indices) {
  std::vector<int> out;
  for (int i : indices) {
    if (!IsFinalPhase(r.hosts(i).phase())) out.push_back(i);
  }
  return out;
}

std::vector<int> AllHosts(const Rollout& r) {
  std::vector<int> all(r.hosts_size());
  for (int i = 0; i < r.hosts_size(); ++i) all[i] = i;
  return all;
}

}  // namespace

Rollout RolloutManager::Snapshot(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return active_.at(id);
}

std::shared_ptr<CallInbox> RolloutManager::OpenInbox() {
  auto inbox = std::make_shared<CallInbox>(clock_, options_.min_pass_interval);
  absl::MutexLock lock(&mu_);
  if (stopping_) return nullptr;
  inboxes_.insert(inbox);
  return inbox;
}

bool RolloutManager::CloseInbox(const std::shared_ptr<CallInbox>& inbox) {
  absl::MutexLock lock(&mu_);
  inboxes_.erase(inbox);
  return !stopping_;
}

void RolloutManager::RunRollout(const std::string& id) {
  std::shared_ptr<const ReceiverConfig> config = this->config();
  Rollout r;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return;
    r = it->second;
  }
  const ServiceConfig* service = config->FindService(r.service());
  if (service == nullptr) {
    Finish(id, hoist::v1::ROLLOUT_STATE_FAILED,
           absl::StrCat("service ", r.service(), " is no longer configured"));
    return;
  }
  if (FinishIfCancelled(id)) return;
  RolloutPolicy policy = service->rollout;
  if (IsConvergeRollout(r)) {
    // Converge rollouts: the service's batches and health rules, but never
    // a canary, a pause or a rollback (docs/design.md, "Desired state and
    // convergence").
    policy.canary = 0;
    policy.on_failure = OnFailure::kContinue;
  }
  const bool resumed = r.state() != hoist::v1::ROLLOUT_STATE_PENDING;
  if (options_.desired != nullptr) {
    absl::Status s = options_.desired->RolloutRunning(r, clock_->Now());
    if (!s.ok()) {
      LogError("desired digest not recorded",
               {{"rollout_id", id}, {"error", s.ToString()}});
    }
  }
  Update(
      id, [](Rollout* x) { x->set_state(hoist::v1::ROLLOUT_STATE_RUNNING); },
      -1, resumed ? "rollout running (resumed)" : "rollout running");
  NotifyState(Snapshot(id));
  LogInfo("rollout running", {{"rollout_id", id}, {"service", r.service()}});

  // A recovered rollout may already have failed hosts (crash mid-rollback):
  // finish rolling back before anything else is deployed.
  if (resumed && policy.on_failure == OnFailure::kRollback) {
    const Rollout now = Snapshot(id);
    const std::vector<int> failed = FailedIn(now, AllHosts(now));
    if (!failed.empty()) {
      RollBack(id, absl::StrCat(now.hosts(failed.front()).agent(), " failed"));
      return;
    }
  }
  if (RunWaves(id, policy, r.hosts_size())) FinishWaves(id);
}

bool RolloutManager::RunWaves(const std::string& id,
                              const RolloutPolicy& policy, int hosts) {
  const absl::StatusOr<int> batch = BatchSize(policy.batch, hosts);
  const std::vector<std::vector<int>> waves =
      PlanWaves(hosts, policy.canary, batch.ok() ? *batch : 1);
  bool first_wave = true;
  for (const std::vector<int>& wave : waves) {
    const std::vector<int> todo = NotDoneIn(Snapshot(id), wave);
    if (todo.empty()) continue;
    if (FinishIfCancelled(id)) return false;
    if (!first_wave && policy.pause_seconds > 0 &&
        !PauseBetweenWaves(id, policy.pause_seconds)) {
      return false;  // stopping
    }
    first_wave = false;
    if (!RunHosts(id, todo, HostOp::kDeploy, "")) return false;  // stopping
    if (FinishIfCancelled(id)) return false;
    const std::vector<int> failed = FailedIn(Snapshot(id), todo);
    if (!failed.empty() && !HandleWaveFailure(id, policy, failed)) {
      return false;
    }
  }
  return true;
}

bool RolloutManager::PauseBetweenWaves(const std::string& id,
                                       int64_t pause_seconds) {
  Update(
      id, [](Rollout*) {}, -1,
      absl::StrCat("pausing ", pause_seconds, "s before the next batch"),
      false);
  // An inbox only so that Stop() can end the pause early.
  std::shared_ptr<CallInbox> inbox = OpenInbox();
  if (inbox == nullptr) return false;
  inbox->SleepUnlessStopped(absl::Seconds(pause_seconds));
  return CloseInbox(inbox);
}

bool RolloutManager::HandleWaveFailure(const std::string& id,
                                       const RolloutPolicy& policy,
                                       const std::vector<int>& failed) {
  const Rollout after = Snapshot(id);
  std::vector<std::string> names;
  names.reserve(failed.size());
  for (int i : failed) names.push_back(after.hosts(i).agent());
  const std::string reason =
      absl::StrCat(absl::StrJoin(names, ", "), " failed");
  switch (policy.on_failure) {
    case OnFailure::kRollback:
      RollBack(id, reason);
      return false;
    case OnFailure::kPause:
      Update(
          id,
          [&](Rollout* x) {
            x->set_state(hoist::v1::ROLLOUT_STATE_PAUSED);
            x->set_error(absl::StrCat(reason, ": ", FailedHostsSummary(*x),
                                      "; paused until resumed"));
          },
          -1, "rollout paused");
      NotifyState(Snapshot(id));
      LogWarning("rollout paused", {{"rollout_id", id}, {"reason", reason}});
      return false;
    case OnFailure::kContinue:
      break;
  }
  return true;
}

void RolloutManager::RollBack(const std::string& id,
                              const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    rolling_back_.insert(id);
  }
  const Rollout now = Snapshot(id);
  std::vector<int> upgraded;
  for (int i = 0; i < now.hosts_size(); ++i) {
    if (now.hosts(i).phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
      upgraded.push_back(i);
    }
  }
  if (!upgraded.empty() && !RunHosts(id, upgraded, HostOp::kRollback, reason)) {
    return;  // stopping: resumes on the next Recover()
  }
  Finish(id, hoist::v1::ROLLOUT_STATE_ROLLED_BACK,
         absl::StrCat(reason, "; hosts: ", FailedHostsSummary(Snapshot(id))));
}

void RolloutManager::FinishWaves(const std::string& id) {
  if (FinishIfCancelled(id)) return;
  const Rollout end = Snapshot(id);
  const std::string failed = FailedHostsSummary(end);
  if (failed.empty()) {
    Finish(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED, "");
    return;
  }
  Finish(id, hoist::v1::ROLLOUT_STATE_FAILED,
         absl::StrCat("hosts that did not get ",
                      end.digest().empty() ? end.tag() : end.digest(), ": ",
                      failed));
}

// ---------------------------------------------------------------------------
// HostRun: one RunHosts.
//
// Starts one HostCall per host, then runs passes over their CallInbox until
// every call is done. A pass applies its items in order (agent events, ends
// of streams), publishes the pass's folded pull progress, writes the pass's
// journal transaction (ProgressBatch) and starts the retries that fell due.
// Only retries need a look at every call, and only while some await one, so
// a pass costs O(its items), not O(hosts).
//
// Runs on the executor thread; the agents' callbacks touch only the inbox.
// The manager, and the config `service_` points into, outlive it.
class RolloutManager::HostRun {
 public:
  HostRun(RolloutManager* manager, const ReceiverConfig& config, std::string id,
          Rollout rollout, HostOp op, std::string rollback_reason,
          std::shared_ptr<CallInbox> inbox);

  // Runs the calls of hosts `indices` until every one is done (true) or the
  // inbox was stopped (false).
  bool Run(const std::vector<int>& indices);

 private:
  void StartCall(HostCall& call);
  void MarkDeploying(const HostCall& call);
  hoist::v1::DeployRequest DeployRequestFor(int host) const;
  hoist::v1::RollbackRequest RollbackRequestFor(int host) const;
  void ApplyPass(const std::deque<CallInbox::Item>& items);
  void OnEvent(HostCall& call, const DeployEvent& event);
  void OnStreamEnd(HostCall& call, const absl::Status& status);
  void HostDone(const HostCall& call, DeployPhase phase,
                const std::string& error);
  void PublishPulls();
  void FlushJournal();
  // When the earliest awaited retry is due; InfiniteFuture when none is.
  absl::Time NextRetry() const;
  void StartDueRetries();

  RolloutManager* const m_;
  const std::string id_;
  // The rollout as the run began: agents, deploy ids, image.
  const Rollout rollout_;
  const ServiceConfig* const service_;  // nullptr when no longer configured
  const HostOp op_;
  const std::string rollback_reason_;
  const absl::Duration deadline_;
  const RetryPolicy retry_;
  const std::shared_ptr<CallInbox> inbox_;
  std::map<int, HostCall> calls_;  // by host index
  ProgressBatch batch_;            // the current pass's writes
  int remaining_ = 0;              // calls not done
  int awaiting_retry_ = 0;         // calls neither done nor in flight
};

RolloutManager::HostRun::HostRun(RolloutManager* manager,
                                 const ReceiverConfig& config, std::string id,
                                 Rollout rollout, HostOp op,
                                 std::string rollback_reason,
                                 std::shared_ptr<CallInbox> inbox)
    : m_(manager),
      id_(std::move(id)),
      rollout_(std::move(rollout)),
      service_(config.FindService(rollout_.service())),
      op_(op),
      rollback_reason_(std::move(rollback_reason)),
      deadline_(absl::Seconds(config.agent_call.deadline_seconds)),
      retry_(manager->options_.retry_initial_backoff,
             manager->options_.retry_max_backoff,
             config.agent_call.retry_seconds),
      inbox_(std::move(inbox)) {}

bool RolloutManager::HostRun::Run(const std::vector<int>& indices) {
  const absl::Time start = m_->clock_->Now();
  for (int i : indices) {
    calls_.emplace(i,
                   HostCall(i, rollout_.hosts(i).agent(), op_, start, retry_));
  }
  remaining_ = static_cast<int>(calls_.size());
  for (auto& [i, call] : calls_) StartCall(call);
  // Reused from pass to pass; a pass's items live until the pass is flushed
  // (batch_ folds pull progress by pointer into them).
  std::deque<CallInbox::Item> items;
  while (remaining_ > 0) {
    // Calls whose end is still to come: the others are done or await a
    // retry.
    const int in_flight = remaining_ - awaiting_retry_;
    if (!inbox_->NextPass(in_flight, NextRetry(), &items)) return false;
    ApplyPass(items);
  }
  return true;
}

void RolloutManager::HostRun::StartCall(HostCall& call) {
  if (call.awaiting_retry()) --awaiting_retry_;  // only retries start again
  const int attempt = call.BeginAttempt();
  const int host = call.host();
  absl::StatusOr<std::shared_ptr<AgentClient>> client =
      m_->pool_->Get(call.agent());
  if (!client.ok()) {
    // Handled like any end of a stream, in the next pass.
    inbox_->Add(CallInbox::Item{host, attempt, true, {}, client.status()});
    return;
  }
  DeployEventCallback on_event =
      CallInbox::MakeEventCallback(inbox_, host, attempt);
  DoneCallback on_done = CallInbox::MakeDoneCallback(inbox_, host, attempt);
  if (op_ == HostOp::kRollback) {
    (*client)->Rollback(RollbackRequestFor(host), deadline_,
                        std::move(on_event), std::move(on_done));
    return;
  }
  if (attempt == 1) MarkDeploying(call);
  (*client)->Deploy(DeployRequestFor(host), deadline_, std::move(on_event),
                    std::move(on_done));
}

void RolloutManager::HostRun::MarkDeploying(const HostCall& call) {
  m_->UpdateHost(
      id_, call.host(),
      [this](HostResult* h) {
        if (!h->has_started())
          *h->mutable_started() = ToProto(m_->clock_->Now());
        h->clear_error();
      },
      absl::StrCat(call.agent(), ": deploying"), nullptr, nullptr);
}

hoist::v1::DeployRequest RolloutManager::HostRun::DeployRequestFor(
    int host) const {
  hoist::v1::DeployRequest req;
  req.set_deploy_id(rollout_.hosts(host).deploy_id());
  req.set_service(rollout_.service());
  req.set_image(rollout_.image());
  req.set_digest(rollout_.digest());
  req.set_tag(rollout_.tag());
  // A STOPPED container of the desired digest is started, not recreated.
  req.set_start_existing(IsConvergeRollout(rollout_));
  if (service_ != nullptr) {
    *req.mutable_container() = service_->container;
    *req.mutable_health() = service_->health;
  }
  return req;
}

hoist::v1::RollbackRequest RolloutManager::HostRun::RollbackRequestFor(
    int host) const {
  hoist::v1::RollbackRequest req;
  req.set_deploy_id(
      absl::StrCat(rollout_.hosts(host).deploy_id(), "-rollback"));
  req.set_container_name(service_ != nullptr ? service_->container.name()
                                             : rollout_.service());
  return req;
}

void RolloutManager::HostRun::ApplyPass(
    const std::deque<CallInbox::Item>& items) {
  for (const CallInbox::Item& item : items) {
    HostCall& call = calls_.at(item.host);
    if (!call.Accepts(item.attempt)) continue;  // an earlier attempt's
    if (item.done) {
      OnStreamEnd(call, item.status);
    } else {
      OnEvent(call, item.event);
    }
  }
  PublishPulls();
  FlushJournal();
  if (awaiting_retry_ > 0) StartDueRetries();
}

void RolloutManager::HostRun::OnEvent(HostCall& call,
                                      const DeployEvent& event) {
  const HostCall::EventEffect effect = call.OnEvent(event);
  if (effect.journal_event) batch_.AddEvent(call.agent(), event);
  if (op_ != HostOp::kDeploy) return;  // a rollback's steps are history only
  if (effect.progress_only) {
    batch_.FoldPull(call.host(), &event);
    return;
  }
  batch_.DropPull(call.host());
  if (!event.digest().empty() && rollout_.digest().empty()) {
    m_->LearnDigest(id_, event.digest());
  }
  const DeployPhase phase = event.phase();
  m_->UpdateHost(
      id_, call.host(),
      [&](HostResult* h) {
        if (effect.set_phase) h->set_phase(phase);
        if (event.exit_code() != 0) h->set_exit_code(event.exit_code());
        if (!event.log_tail().empty()) h->set_log_tail(event.log_tail());
      },
      absl::StrCat(call.agent(), ": ", event.message()),
      effect.publish_pull ? &event.pull() : nullptr,
      effect.journal_host ? batch_.host_updates() : nullptr);
}

void RolloutManager::HostRun::OnStreamEnd(HostCall& call,
                                          const absl::Status& status) {
  batch_.DropPull(call.host());
  const HostCall::Outcome outcome =
      call.OnStreamEnd(status, m_->clock_->Now(), retry_, rollback_reason_);
  if (!outcome.retry) {
    HostDone(call, outcome.phase, outcome.error);
    return;
  }
  ++awaiting_retry_;
  m_->UpdateHost(
      id_, call.host(), [](HostResult*) {},
      absl::StrCat(call.agent(), ": unreachable, retrying: ", status.message()),
      nullptr, nullptr);
  LogWarning("agent unreachable, retrying", {{"rollout_id", id_},
                                             {"agent", call.agent()},
                                             {"error", status.ToString()}});
}

void RolloutManager::HostRun::HostDone(const HostCall& call, DeployPhase phase,
                                       const std::string& error) {
  --remaining_;
  m_->CountHost(call.agent(), phase);
  const absl::Time now = m_->clock_->Now();
  m_->UpdateHost(
      id_, call.host(),
      [&](HostResult* h) {
        h->set_phase(phase);
        if (!error.empty()) h->set_error(error);
        *h->mutable_finished() = ToProto(now);
      },
      absl::StrCat(call.agent(), ": ", PhaseName(phase),
                   error.empty() ? "" : ": ", error),
      nullptr, batch_.host_updates());
}

void RolloutManager::HostRun::PublishPulls() {
  for (const auto& [host, event] : batch_.pulls()) {
    m_->UpdateHost(
        id_, host, [](HostResult*) {},
        absl::StrCat(calls_.at(host).agent(), ": ", event->message()),
        &event->pull(), nullptr);
  }
}

void RolloutManager::HostRun::FlushJournal() {
  // One durable transaction for the pass's host changes and events.
  absl::Status s = batch_.Flush(m_->journal_, id_);
  if (!s.ok()) {
    LogError("journal write failed",
             {{"rollout_id", id_}, {"error", s.ToString()}});
  }
}

absl::Time RolloutManager::HostRun::NextRetry() const {
  absl::Time next = absl::InfiniteFuture();
  if (awaiting_retry_ == 0) return next;
  for (const auto& [i, call] : calls_) {
    if (call.awaiting_retry()) next = std::min(next, call.retry_at());
  }
  return next;
}

void RolloutManager::HostRun::StartDueRetries() {
  const absl::Time now = m_->clock_->Now();
  // A cancelled rollout starts no host again (docs/design.md, Cancel).
  const bool cancelled = m_->CancelRequested(id_);
  for (auto& [i, call] : calls_) {
    if (!call.awaiting_retry()) continue;
    if (cancelled) {
      --awaiting_retry_;
      const HostCall::Outcome gave_up =
          call.Abandon("rollout cancelled while this host was unreachable");
      HostDone(call, gave_up.phase, gave_up.error);
      continue;
    }
    if (call.retry_at() <= now) StartCall(call);
  }
}

bool RolloutManager::RunHosts(const std::string& id,
                              const std::vector<int>& indices, HostOp op,
                              const std::string& rollback_reason) {
  std::shared_ptr<const ReceiverConfig> config = this->config();
  Rollout r;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return true;
    r = it->second;
  }
  std::shared_ptr<CallInbox> inbox = OpenInbox();
  if (inbox == nullptr) return false;  // stopping
  HostRun run(this, *config, id, std::move(r), op, rollback_reason, inbox);
  const bool finished = run.Run(indices);
  CloseInbox(inbox);
  return finished;
}

}  // namespace hoist::receiver
