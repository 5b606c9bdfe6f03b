#include "receiver/rollout_manager.h"

#include <malloc.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
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

bool IsFinalPhase(DeployPhase p) {
  return p == hoist::v1::DEPLOY_PHASE_SUCCEEDED ||
         p == hoist::v1::DEPLOY_PHASE_ROLLED_BACK ||
         p == hoist::v1::DEPLOY_PHASE_FAILED;
}

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
         s == hoist::v1::ROLLOUT_STATE_SUPERSEDED;
}

// ---------------------------------------------------------------------------
// RolloutSubscription

RolloutSubscription::RolloutSubscription(std::function<void()> notify,
                                         size_t capacity)
    : notify_(std::move(notify)), capacity_(std::max<size_t>(capacity, 2)) {}

void RolloutSubscription::Push(const RolloutEvent& event, bool final_event,
                               const Rollout* current) {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || ended_) return;
    if (queue_.size() >= capacity_) {
      if (current != nullptr) {
        // Replace the backlog by the whole current state.
        dropped_ += static_cast<int64_t>(queue_.size());
        queue_.clear();
        RolloutEvent resync = event;
        if (!resync.has_rollout()) *resync.mutable_rollout() = *current;
        queue_.push_back(std::move(resync));
      } else {
        queue_.pop_front();
        ++dropped_;
        queue_.push_back(event);
      }
    } else {
      queue_.push_back(event);
    }
    if (final_event) ended_ = true;
  }
  // Outside mu_: notify may read the subscription (WatchReactor pops).
  if (notify_) notify_();
}

bool RolloutSubscription::Pop(RolloutEvent* event, bool* ended) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) {
    if (ended) *ended = ended_ || cancelled_;
    return false;
  }
  *event = std::move(queue_.front());
  queue_.pop_front();
  if (ended) *ended = ended_ && queue_.empty();
  return true;
}

bool RolloutSubscription::Next(RolloutEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || ended_ || cancelled_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (queue_.empty()) return false;
  *event = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

void RolloutSubscription::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  queue_.clear();
}

bool RolloutSubscription::cancelled() {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

int64_t RolloutSubscription::dropped() {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

// ---------------------------------------------------------------------------
// Inbox: where asynchronous agent callbacks report to the executor.

struct RolloutManager::Inbox {
  struct Item {
    int host = -1;
    int attempt = 0;
    bool done = false;
    DeployEvent event;
    absl::Status status;
  };
  absl::Mutex mu;
  std::deque<Item> items ABSL_GUARDED_BY(mu);
  // Items in `items` that end a call (done set).
  int done_items ABSL_GUARDED_BY(mu) = 0;
  bool stop ABSL_GUARDED_BY(mu) = false;

  void Add(Item item) {
    absl::MutexLock lock(&mu);
    if (item.done) ++done_items;
    items.push_back(std::move(item));
  }
};

// ---------------------------------------------------------------------------
// RolloutManager

RolloutManager::RolloutManager(RolloutManagerOptions options,
                               std::shared_ptr<const ReceiverConfig> config)
    : options_(options),
      journal_(options.journal),
      pool_(options.pool),
      clock_(options.clock ? options.clock : RealClock()),
      config_(std::move(config)) {
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
  std::set<std::shared_ptr<Inbox>> inboxes;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    inboxes = inboxes_;
  }
  for (const auto& inbox : inboxes) {
    absl::MutexLock lock(&inbox->mu);
    inbox->stop = true;
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

absl::Status RolloutManager::Recover() {
  HOIST_ASSIGN_OR_RETURN(std::vector<Rollout> unfinished,
                         journal_->ListUnfinished());
  absl::MutexLock lock(&mu_);
  // Rollouts already holding their service (RUNNING, PAUSED) first, so that
  // PENDING ones queue behind them.
  for (int pass = 0; pass < 2; ++pass) {
    for (Rollout& r : unfinished) {
      const bool pending = r.state() == hoist::v1::ROLLOUT_STATE_PENDING;
      if ((pass == 0) == pending) continue;
      const std::string id = r.id();
      const std::string service = r.service();
      const RolloutState state = r.state();
      active_[id] = std::move(r);
      if (state == hoist::v1::ROLLOUT_STATE_PAUSED) {
        slots_[service].current = id;
        LogInfo("recovered paused rollout",
                {{"rollout_id", id}, {"service", service}});
      } else {
        EnqueueLocked(id, service);
        LogInfo("recovered rollout",
                {{"rollout_id", id},
                 {"service", service},
                 {"state", hoist::v1::RolloutState_Name(state)}});
      }
    }
  }
  return absl::OkStatus();
}

void RolloutManager::EnqueueLocked(const std::string& id,
                                   const std::string& service) {
  ServiceSlot& slot = slots_[service];
  if (slot.current.empty()) {
    slot.current = id;
    ready_.push_back(id);
  } else {
    slot.waiting.push_back(id);
  }
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
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("journal: ", s.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    active_[r.id()] = r;
    if (delivery != nullptr) {
      dedupe_[record.dedupe_key] = DedupeEntry{r.id(), r.service(), now};
    }
    EnqueueLocked(r.id(), r.service());
  }
  LogInfo("rollout accepted", {{"rollout_id", r.id()},
                               {"service", r.service()},
                               {"digest", r.digest()},
                               {"trigger", r.trigger()}});
  return r;
}

absl::StatusOr<SubmitResult> RolloutManager::Submit(
    const DeployIntent& intent) {
  auto classify = [&](const DedupeEntry& e, absl::Duration window,
                      absl::Time now) -> SubmitResult {
    SubmitResult result;
    result.rollout_id = e.rollout_id;
    result.service = e.service;
    result.first_accepted = e.accepted;
    result.kind = now - e.accepted <= window ? SubmitResult::Kind::kDuplicate
                                             : SubmitResult::Kind::kReplay;
    return result;
  };
  if (!intent.dedupe_key.empty()) {
    // Fast path: answered from memory.
    absl::MutexLock lock(&mu_);
    auto it = dedupe_.find(intent.dedupe_key);
    if (it != dedupe_.end()) {
      const absl::Time now = clock_->Now();
      SubmitResult r =
          classify(it->second,
                   absl::Seconds(config_->webhook.dedupe_window_seconds), now);
      if (r.kind == SubmitResult::Kind::kDuplicate) {
        duplicate_counts_.emplace_back(intent.dedupe_key, now);
        duplicates_total_->Increment();
      }
      return r;
    }
  }
  absl::MutexLock submit_lock(&submit_mu_);
  if (!intent.dedupe_key.empty()) {
    std::optional<DedupeEntry> known;
    {
      absl::MutexLock lock(&mu_);
      auto it = dedupe_.find(intent.dedupe_key);
      if (it != dedupe_.end()) known = it->second;
    }
    if (!known) {
      absl::StatusOr<std::optional<DeliveryRecord>> found =
          journal_->FindDelivery(intent.dedupe_key);
      if (!found.ok()) {
        return absl::UnavailableError(
            absl::StrCat("journal: ", found.status().message()));
      }
      if (found->has_value()) {
        const DeliveryRecord& d = **found;
        known = DedupeEntry{d.rollout_id, d.service, d.accepted};
        absl::MutexLock lock(&mu_);
        dedupe_[intent.dedupe_key] = *known;
      }
    }
    if (known) {
      absl::MutexLock lock(&mu_);
      const absl::Time now = clock_->Now();
      SubmitResult r = classify(
          *known, absl::Seconds(config_->webhook.dedupe_window_seconds), now);
      if (r.kind == SubmitResult::Kind::kDuplicate) {
        duplicate_counts_.emplace_back(intent.dedupe_key, now);
      }
      return r;
    }
  }
  DeliveryRecord delivery;
  delivery.dedupe_key = intent.dedupe_key;
  delivery.service = intent.service;
  delivery.summary = intent.summary;
  HOIST_ASSIGN_OR_RETURN(
      Rollout r,
      CreateRollout(intent, intent.dedupe_key.empty() ? nullptr : &delivery));
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

absl::StatusOr<Rollout> RolloutManager::RollbackService(
    const std::string& service) {
  if (config()->FindService(service) == nullptr) {
    return absl::NotFoundError(absl::StrCat("no service named ", service));
  }
  HOIST_ASSIGN_OR_RETURN(std::vector<Rollout> history,
                         journal_->ListRollouts(service, 1000));
  // Newest first: the latest SUCCEEDED rollout, then the first earlier
  // SUCCEEDED one with another digest.
  const Rollout* latest = nullptr;
  const Rollout* previous = nullptr;
  for (const Rollout& r : history) {
    if (r.state() != hoist::v1::ROLLOUT_STATE_SUCCEEDED || r.digest().empty())
      continue;
    if (latest == nullptr) {
      latest = &r;
    } else if (r.digest() != latest->digest()) {
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
  intent.trigger = "rollback";
  intent.summary =
      absl::StrCat("rollback from ", latest->id(), " to ", previous->id());
  return CreateRollout(intent, nullptr);
}

absl::StatusOr<Rollout> RolloutManager::Resume(const std::string& id) {
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
  Save(copy);
  {
    absl::MutexLock lock(&mu_);
    PublishLocked(copy, -1, "resumed", nullptr, true);
  }
  LogInfo("rollout resumed", {{"rollout_id", id}});
  return copy;
}

absl::StatusOr<Rollout> RolloutManager::GetRollout(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return it->second;
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

void RolloutManager::Save(const Rollout& rollout) {
  absl::Status s = journal_->SaveRollout(rollout);
  if (!s.ok()) {
    LogError("journal write failed",
             {{"rollout_id", rollout.id()}, {"error", s.ToString()}});
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
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return;
    fn(&it->second);
    copy = it->second;
  }
  Save(copy);
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
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return;
    it->second.set_state(state);
    it->second.set_error(error);
    *it->second.mutable_finished() = ToProto(now);
    copy = it->second;
  }
  Save(copy);
  CountRollout(copy);
  std::vector<Rollout> superseded;
  {
    absl::MutexLock lock(&mu_);
    PublishLocked(copy, -1,
                  absl::StrCat("rollout ", hoist::v1::RolloutState_Name(state)),
                  nullptr, true);
    active_.erase(id);
    ServiceSlot& slot = slots_[copy.service()];
    if (slot.current == id) slot.current.clear();
    if (slot.current.empty() && !slot.waiting.empty()) {
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
    }
  }
  for (const Rollout& r : superseded) {
    Save(r);
    CountRollout(r);
    absl::MutexLock lock(&mu_);
    PublishLocked(r, -1, absl::StrCat("superseded by ", r.superseded_by()),
                  nullptr, true);
    active_.erase(r.id());
  }
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

void RolloutManager::HousekeepingLoop() {
  while (true) {
    std::deque<std::pair<std::string, absl::Time>> batch;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !duplicate_counts_.empty();
      };
      // Real time: pruning is housekeeping, not behaviour tests drive.
      mu_.AwaitWithTimeout(absl::Condition(&has_work), absl::Seconds(60));
      // The first duplicate after a quiet spell woke us; let the ones after
      // it gather (their Submit evaluates this condition on unlock and wakes
      // nobody), so a retry storm costs a wake-up per interval, not one per
      // delivery.
      auto full_or_stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || duplicate_counts_.size() >= kDuplicateCountBatch;
      };
      if (!duplicate_counts_.empty()) {
        mu_.AwaitWithTimeout(absl::Condition(&full_or_stopping),
                             options_.duplicate_count_interval);
      }
      batch.swap(duplicate_counts_);
      if (batch.empty() && stopping_) return;
    }
    if (!batch.empty()) duplicate_batches_total_->Increment();
    for (const auto& [key, at] : batch) {
      absl::Status s = journal_->CountDuplicate(key, at);
      if (!s.ok()) {
        LogWarning("could not count duplicate delivery",
                   {{"error", s.ToString()}});
      }
    }
    if (Stopping()) return;
    PruneDedupe();
  }
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
  const RolloutPolicy policy = service->rollout;
  const bool resumed = r.state() != hoist::v1::ROLLOUT_STATE_PENDING;
  Update(
      id, [](Rollout* x) { x->set_state(hoist::v1::ROLLOUT_STATE_RUNNING); },
      -1, resumed ? "rollout running (resumed)" : "rollout running");
  LogInfo("rollout running", {{"rollout_id", id}, {"service", r.service()}});

  const int n = r.hosts_size();
  absl::StatusOr<int> batch = BatchSize(policy.batch, n);
  const std::vector<std::vector<int>> waves =
      PlanWaves(n, policy.canary, batch.ok() ? *batch : 1);

  auto snapshot = [&]() {
    absl::MutexLock lock(&mu_);
    return active_.at(id);
  };
  auto failed_in = [](const Rollout& x, const std::vector<int>& idx) {
    std::vector<int> out;
    for (int i : idx) {
      DeployPhase p = x.hosts(i).phase();
      if (IsFinalPhase(p) && p != hoist::v1::DEPLOY_PHASE_SUCCEEDED)
        out.push_back(i);
    }
    return out;
  };
  auto do_rollback = [&](const std::string& reason) {
    Rollout now = snapshot();
    std::vector<int> upgraded;
    for (int i = 0; i < now.hosts_size(); ++i) {
      if (now.hosts(i).phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED)
        upgraded.push_back(i);
    }
    if (!upgraded.empty() && !RunHosts(id, upgraded, HostOp::kRollback, reason))
      return;
    Finish(id, hoist::v1::ROLLOUT_STATE_ROLLED_BACK,
           absl::StrCat(reason, "; hosts: ", FailedHostsSummary(snapshot())));
  };

  // A recovered rollout may already have failed hosts (crash mid-rollback).
  {
    Rollout now = snapshot();
    std::vector<int> all(n);
    for (int i = 0; i < n; ++i) all[i] = i;
    std::vector<int> failed = failed_in(now, all);
    if (resumed && !failed.empty() &&
        policy.on_failure == OnFailure::kRollback) {
      do_rollback(absl::StrCat(now.hosts(failed.front()).agent(), " failed"));
      return;
    }
  }

  bool first_wave = true;
  for (const std::vector<int>& wave : waves) {
    Rollout now = snapshot();
    std::vector<int> todo;
    for (int i : wave) {
      if (!IsFinalPhase(now.hosts(i).phase())) todo.push_back(i);
    }
    if (todo.empty()) continue;
    if (!first_wave && policy.pause_seconds > 0) {
      Update(
          id, [](Rollout*) {}, -1,
          absl::StrCat("pausing ", policy.pause_seconds,
                       "s before the next batch"),
          false);
      auto inbox = std::make_shared<Inbox>();
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        inboxes_.insert(inbox);
      }
      {
        absl::MutexLock lock(&inbox->mu);
        auto stop = [&inbox]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(inbox->mu) {
          return inbox->stop;
        };
        clock_->AwaitWithTimeout(&inbox->mu, absl::Condition(&stop),
                                 absl::Seconds(policy.pause_seconds));
      }
      absl::MutexLock lock(&mu_);
      inboxes_.erase(inbox);
      if (stopping_) return;
    }
    first_wave = false;
    if (!RunHosts(id, todo, HostOp::kDeploy, "")) return;  // stopping
    std::vector<int> failed = failed_in(snapshot(), todo);
    if (failed.empty()) continue;
    Rollout after = snapshot();
    std::vector<std::string> names;
    for (int i : failed) names.push_back(after.hosts(i).agent());
    const std::string reason =
        absl::StrCat(absl::StrJoin(names, ", "), " failed");
    switch (policy.on_failure) {
      case OnFailure::kRollback:
        do_rollback(reason);
        return;
      case OnFailure::kPause:
        Update(
            id,
            [&](Rollout* x) {
              x->set_state(hoist::v1::ROLLOUT_STATE_PAUSED);
              x->set_error(absl::StrCat(reason, ": ", FailedHostsSummary(*x),
                                        "; paused until resumed"));
            },
            -1, "rollout paused");
        LogWarning("rollout paused", {{"rollout_id", id}, {"reason", reason}});
        return;
      case OnFailure::kContinue:
        break;
    }
  }
  Rollout end = snapshot();
  std::string failed = FailedHostsSummary(end);
  if (failed.empty()) {
    Finish(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED, "");
  } else {
    Finish(id, hoist::v1::ROLLOUT_STATE_FAILED,
           absl::StrCat("hosts that did not get ",
                        end.digest().empty() ? end.tag() : end.digest(), ": ",
                        failed));
  }
}

bool RolloutManager::RunHosts(const std::string& id,
                              const std::vector<int>& indices, HostOp op,
                              const std::string& rollback_reason) {
  struct Call {
    int host;
    std::string agent;
    int attempt = 0;
    bool in_flight = false;
    bool done = false;
    bool saw_final = false;
    DeployPhase final_phase = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
    std::string final_error;
    DeployPhase last_journaled = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
    absl::Time first;
    absl::Time retry_at = absl::InfiniteFuture();
    absl::Duration backoff;
  };
  std::shared_ptr<const ReceiverConfig> config = this->config();
  const AgentCallConfig call_config = config->agent_call;
  const absl::Duration deadline = absl::Seconds(call_config.deadline_seconds);
  const absl::Duration retry_for = absl::Seconds(call_config.retry_seconds);
  Rollout r;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return true;
    r = it->second;
  }
  const ServiceConfig* service = config->FindService(r.service());
  auto inbox = std::make_shared<Inbox>();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    inboxes_.insert(inbox);
  }
  std::map<int, Call> calls;
  const absl::Time start = clock_->Now();
  for (int i : indices) {
    Call c;
    c.host = i;
    c.agent = r.hosts(i).agent();
    c.first = start;
    c.backoff = options_.retry_initial_backoff;
    calls[i] = c;
  }

  // Journal writes of the current inbox pass: one transaction per pass.
  std::vector<Journal::HostUpdate> pending_hosts;
  std::vector<Journal::HostEventRecord> pending_events;
  auto flush_journal = [&]() {
    if (pending_hosts.empty() && pending_events.empty()) return;
    absl::Status s =
        journal_->SaveHostProgress(id, pending_hosts, pending_events);
    if (!s.ok()) {
      LogError("journal write failed",
               {{"rollout_id", id}, {"error", s.ToString()}});
    }
    pending_hosts.clear();
    pending_events.clear();
  };

  // Calls not done yet, and calls waiting for a retry (neither in flight nor
  // done): a pass only scans the calls when some wait for a retry, so a pass
  // costs O(its events), not O(hosts).
  int remaining = static_cast<int>(calls.size());
  int awaiting_retry = 0;

  auto host_done = [&](Call& c, DeployPhase phase, const std::string& error) {
    c.done = true;
    --remaining;
    CountHost(c.agent, phase);
    const absl::Time now = clock_->Now();
    UpdateHost(
        id, c.host,
        [&](HostResult* h) {
          h->set_phase(phase);
          if (!error.empty()) h->set_error(error);
          *h->mutable_finished() = ToProto(now);
        },
        absl::StrCat(c.agent, ": ", PhaseName(phase), error.empty() ? "" : ": ",
                     error),
        nullptr, &pending_hosts);
  };

  auto start_call = [&](Call& c) {
    if (c.attempt > 0) --awaiting_retry;  // only retries start again
    ++c.attempt;
    c.in_flight = true;
    c.retry_at = absl::InfiniteFuture();
    absl::StatusOr<std::shared_ptr<AgentClient>> client = pool_->Get(c.agent);
    const int host = c.host;
    const int attempt = c.attempt;
    if (!client.ok()) {
      inbox->Add(Inbox::Item{host, attempt, true, {}, client.status()});
      return;
    }
    std::shared_ptr<Inbox> box = inbox;
    auto on_event = [box, host, attempt](const DeployEvent& e) {
      box->Add(Inbox::Item{host, attempt, false, e, absl::OkStatus()});
    };
    auto on_done = [box, host, attempt](absl::Status s) {
      box->Add(Inbox::Item{host, attempt, true, {}, std::move(s)});
    };
    if (op == HostOp::kDeploy) {
      if (c.attempt == 1) {
        UpdateHost(
            id, host,
            [&](HostResult* h) {
              if (!h->has_started())
                *h->mutable_started() = ToProto(clock_->Now());
              h->clear_error();
            },
            absl::StrCat(c.agent, ": deploying"), nullptr, nullptr);
      }
      hoist::v1::DeployRequest req;
      req.set_deploy_id(r.hosts(host).deploy_id());
      req.set_service(r.service());
      req.set_image(r.image());
      req.set_digest(r.digest());
      req.set_tag(r.tag());
      if (service != nullptr) {
        *req.mutable_container() = service->container;
        *req.mutable_health() = service->health;
      }
      (*client)->Deploy(req, deadline, on_event, on_done);
    } else {
      hoist::v1::RollbackRequest req;
      req.set_deploy_id(absl::StrCat(r.hosts(host).deploy_id(), "-rollback"));
      req.set_container_name(service != nullptr ? service->container.name()
                                                : r.service());
      (*client)->Rollback(req, deadline, on_event, on_done);
    }
  };

  for (auto& [i, c] : calls) start_call(c);

  bool stopped = false;
  // Real time of the latest pass over the inbox (see min_pass_interval).
  absl::Time last_pass = absl::InfinitePast();
  while (true) {
    if (remaining == 0) break;
    absl::Time next_retry = absl::InfiniteFuture();
    if (awaiting_retry > 0) {
      for (auto& [i, c] : calls) {
        if (!c.done && !c.in_flight)
          next_retry = std::min(next_retry, c.retry_at);
      }
    }
    // Calls whose end is still to come (the others are done or wait for a
    // retry).
    const int in_flight = remaining - awaiting_retry;
    std::deque<Inbox::Item> items;
    {
      absl::MutexLock lock(&inbox->mu);
      // Right after a pass, events are gathered until min_pass_interval has
      // passed since it (producers do not wake us meanwhile), in one timed
      // wait; after a quiet interval the next event is taken at once. The
      // wait also ends as soon as every call in flight has ended, so the end
      // of a wave (and the start of the next) never waits for the interval.
      const absl::Duration gather =
          last_pass + options_.min_pass_interval - absl::Now();
      if (gather > absl::ZeroDuration()) {
        auto stop_or_all_ended =
            [&inbox, in_flight]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(inbox->mu) {
              return inbox->stop ||
                     (in_flight > 0 && inbox->done_items >= in_flight);
            };
        inbox->mu.AwaitWithTimeout(absl::Condition(&stop_or_all_ended), gather);
      }
      auto ready = [&inbox]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(inbox->mu) {
        return inbox->stop || !inbox->items.empty();
      };
      if (next_retry == absl::InfiniteFuture()) {
        inbox->mu.Await(absl::Condition(&ready));
      } else {
        const absl::Duration wait = next_retry - clock_->Now();
        if (wait > absl::ZeroDuration()) {
          clock_->AwaitWithTimeout(&inbox->mu, absl::Condition(&ready), wait);
        }
      }
      if (inbox->stop) {
        stopped = true;
        break;
      }
      if (!inbox->items.empty()) last_pass = absl::Now();
      items.swap(inbox->items);
      inbox->done_items = 0;
    }
    // Pull progress of this pass, folded: only the latest per host is
    // published, after the pass.
    std::map<int, const DeployEvent*> latest_pull;
    for (Inbox::Item& item : items) {
      Call& c = calls.at(item.host);
      if (item.attempt != c.attempt || c.done) continue;
      if (!item.done) {
        const DeployEvent& e = item.event;
        const DeployPhase phase = e.phase();
        const bool final_phase = IsFinalPhase(phase);
        if (final_phase) {
          c.saw_final = true;
          c.final_phase = phase;
          c.final_error = e.error();
        }
        const bool changed = phase != c.last_journaled;
        if (changed || final_phase || !e.error().empty()) {
          c.last_journaled = phase;
          pending_events.push_back(Journal::HostEventRecord{c.agent, e});
        }
        if (op == HostOp::kDeploy) {
          if (!changed && !final_phase && e.error().empty() && e.has_pull()) {
            latest_pull[c.host] = &e;
            continue;
          }
          latest_pull.erase(c.host);
          UpdateHost(
              id, c.host,
              [&](HostResult* h) {
                // Terminal phases are recorded when the stream ends.
                if (phase != hoist::v1::DEPLOY_PHASE_UNSPECIFIED &&
                    !final_phase) {
                  h->set_phase(phase);
                }
              },
              absl::StrCat(c.agent, ": ", e.message()),
              // RolloutEvent.pull is a PULLING host's layer progress.
              e.has_pull() && phase == hoist::v1::DEPLOY_PHASE_PULLING
                  ? &e.pull()
                  : nullptr,
              changed && !final_phase ? &pending_hosts : nullptr);
        }
        continue;
      }
      c.in_flight = false;
      latest_pull.erase(item.host);
      const absl::Status& s = item.status;
      const absl::Time now = clock_->Now();
      if (c.saw_final) {
        if (op == HostOp::kDeploy) {
          std::string err = c.final_error;
          if (err.empty() &&
              c.final_phase != hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
            err = absl::StrCat("deploy ended ", PhaseName(c.final_phase));
          }
          host_done(c, c.final_phase, err);
        } else if (c.final_phase == hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
          host_done(c, hoist::v1::DEPLOY_PHASE_ROLLED_BACK,
                    absl::StrCat("rolled back: ", rollback_reason));
        } else {
          host_done(
              c, hoist::v1::DEPLOY_PHASE_FAILED,
              absl::StrCat("rollback failed: ", c.final_error.empty()
                                                    ? PhaseName(c.final_phase)
                                                    : c.final_error));
        }
      } else if (s.code() == absl::StatusCode::kUnavailable &&
                 now - c.first < retry_for) {
        c.retry_at = now + c.backoff;
        c.backoff = std::min(c.backoff * 2, options_.retry_max_backoff);
        ++awaiting_retry;
        UpdateHost(
            id, c.host, [](HostResult*) {},
            absl::StrCat(c.agent, ": unreachable, retrying: ", s.message()),
            nullptr, nullptr);
        LogWarning(
            "agent unreachable, retrying",
            {{"rollout_id", id}, {"agent", c.agent}, {"error", s.ToString()}});
      } else {
        std::string err;
        if (s.code() == absl::StatusCode::kUnavailable) {
          err = absl::StrCat("unreachable for ", call_config.retry_seconds,
                             "s: ", s.message());
        } else if (s.ok()) {
          err = "the agent ended the stream without a result";
        } else {
          err = absl::StrCat(absl::StatusCodeToString(s.code()), ": ",
                             s.message());
        }
        if (op == HostOp::kRollback)
          err = absl::StrCat("rollback failed: ", err);
        host_done(c, hoist::v1::DEPLOY_PHASE_FAILED, err);
      }
    }
    for (const auto& [host, e] : latest_pull) {
      const Call& c = calls.at(host);
      UpdateHost(
          id, host, [](HostResult*) {},
          absl::StrCat(c.agent, ": ", e->message()), &e->pull(), nullptr);
    }
    // One durable transaction for the pass's host changes and events.
    flush_journal();
    // Start retries that are due.
    if (awaiting_retry > 0) {
      const absl::Time now = clock_->Now();
      for (auto& [i, c] : calls) {
        if (!c.done && !c.in_flight && c.retry_at <= now) start_call(c);
      }
    }
  }
  absl::MutexLock lock(&mu_);
  inboxes_.erase(inbox);
  return !stopped;
}

}  // namespace hoist::receiver
