#include "nodeagent/container_watcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/spec_validation.h"
#include "common/status_macros.h"
#include "google/protobuf/util/message_differencer.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::ContainersEvent;
using hoist::v1::ManagedContainer;

// The actions that can change what is reported (docs/design.md, "gRPC
// API", WatchContainers). Anything else (exec_*, health_status, attach,
// kill, resize, update, …) is ignored.
const std::vector<std::string>& TrackedActions() {
  static const auto* actions =
      new std::vector<std::string>{"create",  "start",  "die",   "stop",
                                   "destroy", "rename", "pause", "unpause"};
  return *actions;
}

bool Tracked(absl::string_view action) {
  // "health_status: healthy", "exec_start: sh -c …": the verb is before ':'.
  const absl::string_view verb = action.substr(0, action.find(':'));
  const auto& tracked = TrackedActions();
  return std::find(tracked.begin(), tracked.end(), verb) != tracked.end();
}

bool Temporary(absl::string_view name) {
  return absl::StrContains(name, spec::kTempContainerInfix);
}

std::string Attribute(const DockerEvent& event, const char* key) {
  auto it = event.attributes.find(key);
  return it == event.attributes.end() ? std::string() : it->second;
}

}  // namespace

// ---------------------------------------------------------------------------
// Subscription

ContainerWatcher::Subscription::~Subscription() { watcher_->Unsubscribe(id_); }

ContainerWatcher::Next ContainerWatcher::Subscription::Take(
    ContainersEvent* out) {
  return watcher_->Take(id_, out);
}

// ---------------------------------------------------------------------------
// Life cycle

absl::StatusOr<std::unique_ptr<ContainerWatcher>> ContainerWatcher::Create(
    Options options) {
  if (options.docker == nullptr)
    return absl::InvalidArgumentError("ContainerWatcher: docker is required");
  if (options.clock == nullptr)
    return absl::InvalidArgumentError("ContainerWatcher: clock is required");
  options.max_queued = std::max<size_t>(options.max_queued, 1);
  options.initial_backoff =
      std::max(options.initial_backoff, absl::Milliseconds(1));
  options.max_backoff = std::max(options.max_backoff, options.initial_backoff);
  return std::unique_ptr<ContainerWatcher>(
      new ContainerWatcher(std::move(options)));
}

ContainerWatcher::ContainerWatcher(Options options)
    : options_(std::move(options)) {}

ContainerWatcher::~ContainerWatcher() { Stop(); }

void ContainerWatcher::Start() {
  absl::MutexLock stop_lock(&stop_mu_);
  if (thread_.joinable() || cancel_.cancelled()) return;
  thread_ = std::thread([this] { Run(); });
}

void ContainerWatcher::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);  // a second caller waits for the first
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopping_ = true;
  }
  cancel_.Cancel();
  if (thread_.joinable()) thread_.join();
  std::vector<int> ids;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    for (const auto& [id, subscriber] : subscribers_) ids.push_back(id);
  }
  Wake(ids);
}

bool ContainerWatcher::docker_reachable() {
  absl::MutexLock lock(&mu_);
  return reachable_;
}

// ---------------------------------------------------------------------------
// The thread

void ContainerWatcher::Run() {
  const EventFilters filters = {{"type", {"container"}},
                                {"event", TrackedActions()}};
  absl::Duration backoff = options_.initial_backoff;
  for (;;) {
    bool subscribed = false;
    EventHandlers handlers;
    // The snapshot is taken once Docker accepted the subscription: events
    // from then on queue in the stream, so none is lost in between.
    handlers.on_subscribed = [this, &subscribed] {
      HOIST_RETURN_IF_ERROR(TakeSnapshot());
      subscribed = true;
      return absl::OkStatus();
    };
    handlers.on_event = [this](const DockerEvent& event) {
      HandleEvent(event);
    };
    const absl::Status ended =
        options_.docker->FollowEvents(filters, handlers, &cancel_);
    if (cancel_.cancelled()) return;
    if (subscribed) backoff = options_.initial_backoff;
    MarkUnreachable(ended);
    if (!Backoff(backoff)) return;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

bool ContainerWatcher::Backoff(absl::Duration backoff) {
  absl::MutexLock lock(&mu_);
  options_.clock->AwaitWithTimeout(&mu_, absl::Condition(&stopping_), backoff);
  return !stopping_;
}

absl::Status ContainerWatcher::TakeSnapshot() {
  absl::MutexLock refresh(&refresh_mu_);
  HOIST_ASSIGN_OR_RETURN(std::vector<ContainerSummary> summaries,
                         options_.docker->ListContainers(""));
  std::map<std::string, Entry> fresh;
  for (const ContainerSummary& summary : summaries) {
    if (Temporary(summary.name)) continue;
    auto info = options_.docker->InspectContainer(summary.id);
    if (info.status().code() == absl::StatusCode::kNotFound) continue;  // gone
    if (!info.ok()) return info.status();
    if (Temporary(info->name)) continue;
    fresh[info->name] = Entry{Describe(*info), info->id};
  }
  std::vector<int> ids;
  {
    absl::MutexLock lock(&mu_);
    if (known_ && !reachable_) {
      LogInfo("docker reachable again: following its events",
              {{"containers", std::to_string(fresh.size())}});
    }
    containers_ = std::move(fresh);
    known_ = true;
    reachable_ = true;
    const absl::Time now = options_.clock->Now();
    for (auto& [id, subscriber] : subscribers_) {
      QueueSnapshot(&subscriber, now);  // replaces whatever was queued
      ids.push_back(id);
    }
  }
  Wake(ids);
  return absl::OkStatus();
}

void ContainerWatcher::MarkUnreachable(const absl::Status& why) {
  std::vector<int> ids;
  {
    absl::MutexLock lock(&mu_);
    if (known_ && !reachable_) return;  // this outage was reported
    LogWarning("docker unreachable: cannot follow its events; retrying",
               {{"error", std::string(why.message())}});
    known_ = true;
    reachable_ = false;
    const absl::Time now = options_.clock->Now();
    for (auto& [id, subscriber] : subscribers_) {
      if (!subscriber.started) {
        QueueSnapshot(&subscriber, now);
      } else {
        Push(&subscriber, ContainersEvent(), now);
      }
      ids.push_back(id);
    }
  }
  Wake(ids);
}

void ContainerWatcher::HandleEvent(const DockerEvent& event) {
  if (event.type != "container" || !Tracked(event.action)) return;
  std::vector<std::string> names;
  std::string name = Attribute(event, "name");
  if (name.empty()) {  // not seen from Docker; find it by its id
    absl::MutexLock lock(&mu_);
    for (const auto& [known, entry] : containers_) {
      if (entry.id == event.id) name = known;
    }
  }
  names.push_back(name);
  if (absl::StartsWith(event.action, "rename")) {
    names.push_back(
        std::string(absl::StripPrefix(Attribute(event, "oldName"), "/")));
  }
  const absl::Time time =
      event.time == absl::InfinitePast() ? options_.clock->Now() : event.time;
  absl::MutexLock refresh(&refresh_mu_);
  for (const std::string& each : names) {
    if (!each.empty() && !Temporary(each)) Refresh(each, false, time);
  }
}

// ---------------------------------------------------------------------------
// Refresh and fan-out

void ContainerWatcher::DeployEnded(const std::string& name) {
  if (Temporary(name)) return;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;  // nobody to tell
  }
  absl::MutexLock refresh(&refresh_mu_);
  Refresh(name, /*forced=*/true, options_.clock->Now());
}

void ContainerWatcher::Refresh(const std::string& name, bool forced,
                               absl::Time time) {
  auto info = options_.docker->InspectContainer(name);
  std::unique_ptr<Entry> after;
  if (info.ok() && info->name == name) {
    after = std::make_unique<Entry>(Entry{Describe(*info), info->id});
  } else if (!info.ok() &&
             info.status().code() != absl::StatusCode::kNotFound) {
    // Docker in trouble: the stream fails too, and a snapshot follows. A
    // deploy's end still reports its record, on what was known.
    if (!forced) return;
    {
      absl::MutexLock lock(&mu_);
      auto it = containers_.find(name);
      if (it != containers_.end()) after = std::make_unique<Entry>(it->second);
    }
    if (after != nullptr) AddRecords(&after->container);  // the record now
  }
  // (info.ok() with another name: Docker matched `name` as an id prefix.)
  Apply(name, std::move(after), forced, time);
}

ManagedContainer ContainerWatcher::Describe(const ContainerInfo& info) const {
  auto label = [&info](const char* key) {
    auto it = info.labels.find(key);
    return it == info.labels.end() ? std::string() : it->second;
  };
  ManagedContainer container;
  container.set_name(info.name);
  const bool managed = info.labels.count(kLabelService) > 0;
  container.set_foreign(!managed);
  if (managed) {
    container.set_service(label(kLabelService));
    container.set_digest(label(kLabelDigest));
  }
  const std::string image = managed ? label(kLabelImage) : "";
  container.set_image(image.empty() ? info.image : image);
  container.set_state(info.status);
  if (info.started_at != absl::InfinitePast())
    *container.mutable_started() = ToProto(info.started_at);
  AddRecords(&container);
  return container;
}

// The deploy record of the name; previous digests only for Hoist's own.
void ContainerWatcher::AddRecords(ManagedContainer* container) const {
  if (!options_.records) return;
  const ContainerState state = options_.records(container->name());
  container->set_last_deploy_id(state.last_deploy_id);
  container->set_last_phase(state.last_phase);
  container->set_last_error(state.last_error);
  container->clear_previous_digests();
  if (container->foreign()) return;
  for (const std::string& digest : state.previous_digests)
    container->add_previous_digests(digest);
}

void ContainerWatcher::Apply(const std::string& name,
                             std::unique_ptr<Entry> after, bool forced,
                             absl::Time time) {
  // A deploy's end with no container under the name: its record alone.
  std::unique_ptr<Entry> record_only;
  if (after == nullptr && forced) {
    record_only = std::make_unique<Entry>();
    record_only->container.set_name(name);
    AddRecords(&record_only->container);
    const ContainerState state =
        options_.records ? options_.records(name) : ContainerState();
    if (state.last_request.has_value())
      record_only->container.set_service(state.last_request->service());
  }
  std::vector<int> ids;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    std::unique_ptr<Entry> before;
    if (auto it = containers_.find(name); it != containers_.end())
      before = std::make_unique<Entry>(it->second);
    if (after != nullptr) {
      containers_[name] = *after;
    } else {
      containers_.erase(name);
    }
    const Entry* shown = after != nullptr ? after.get() : record_only.get();
    const bool same = before != nullptr && shown != nullptr &&
                      google::protobuf::util::MessageDifferencer::Equals(
                          before->container, shown->container);
    const Change change{before.get(), shown, forced, same, time};
    for (auto& [id, subscriber] : subscribers_) {
      if (QueueChange(&subscriber, name, change)) ids.push_back(id);
    }
  }
  Wake(ids);
}

bool ContainerWatcher::Visible(const Entry& entry,
                               const Subscriber& subscriber) {
  return !entry.container.foreign() ||
         subscriber.names.count(entry.container.name()) > 0;
}

bool ContainerWatcher::QueueChange(Subscriber* subscriber,
                                   const std::string& name,
                                   const Change& change) {
  if (!subscriber->started) return false;  // its snapshot will have it
  const bool was =
      change.before != nullptr && Visible(*change.before, *subscriber);
  const bool now =
      change.after != nullptr && Visible(*change.after, *subscriber);
  ContainersEvent event;
  if (now) {
    if (was && change.same && !change.forced) return false;  // no noise
    *event.mutable_changed() = change.after->container;
  } else if (was) {
    event.set_removed(name);
  } else {
    return false;
  }
  Push(subscriber, std::move(event), change.time);
  return true;
}

void ContainerWatcher::QueueSnapshot(Subscriber* subscriber, absl::Time time) {
  ContainersEvent event;
  event.set_snapshot(true);
  for (const auto& [name, entry] : containers_) {
    if (Visible(entry, *subscriber)) *event.add_containers() = entry.container;
  }
  subscriber->started = true;
  subscriber->queue.clear();
  Push(subscriber, std::move(event), time);
}

void ContainerWatcher::Push(Subscriber* subscriber, ContainersEvent event,
                            absl::Time time) {
  if (subscriber->queue.size() >= options_.max_queued) {
    // Too far behind: one snapshot says everything the queue did.
    QueueSnapshot(subscriber, time);
    return;
  }
  event.set_docker_reachable(reachable_);
  *event.mutable_time() = ToProto(time);
  subscriber->queue.push_back(std::move(event));
}

void ContainerWatcher::Wake(const std::vector<int>& ids) {
  if (ids.empty()) return;
  absl::MutexLock notify(&notify_mu_);
  std::vector<std::function<void()>> wakes;
  {
    absl::MutexLock lock(&mu_);
    for (int id : ids) {
      auto it = subscribers_.find(id);
      if (it != subscribers_.end() && it->second.wake)
        wakes.push_back(it->second.wake);
    }
  }
  for (const auto& wake : wakes) wake();
}

// ---------------------------------------------------------------------------
// Subscribers

std::unique_ptr<ContainerWatcher::Subscription> ContainerWatcher::Subscribe(
    const std::vector<std::string>& names, std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  const int id = next_id_++;
  Subscriber& subscriber = subscribers_[id];
  subscriber.names.insert(names.begin(), names.end());
  subscriber.wake = std::move(wake);
  if (known_ && !stopped_) QueueSnapshot(&subscriber, options_.clock->Now());
  return std::unique_ptr<Subscription>(new Subscription(this, id));
}

void ContainerWatcher::Unsubscribe(int id) {
  absl::MutexLock notify(&notify_mu_);  // waits out a running wake
  absl::MutexLock lock(&mu_);
  subscribers_.erase(id);
}

ContainerWatcher::Next ContainerWatcher::Take(int id, ContainersEvent* out) {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return Next::kEnded;
  if (!it->second.queue.empty()) {
    *out = std::move(it->second.queue.front());
    it->second.queue.pop_front();
    return Next::kEvent;
  }
  return stopped_ ? Next::kEnded : Next::kEmpty;
}

}  // namespace hoist::nodeagent
