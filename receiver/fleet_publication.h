// Fleet publication: the leader's view of the fleet, readable on every
// receiver in high availability (docs/design.md, "High availability on
// etcd").
//
// Only the leader opens the agents' streams and runs convergence, so only it
// knows which agents answer and what each service's hosts run. It publishes
// that view in etcd (FleetPublisher); followers answer ListAgents,
// ListServices and GetService, and draw the dashboard, from there
// (PublishedFleet); ByRole asks the one that knows.
//
//  - FleetPublisher writes, at most once per `interval` after a change, each
//    agent's AgentInfo and each service's Service that differ from what it
//    last wrote, and deletes the entries of agents and services no longer
//    configured (on its first publication also those an earlier leader
//    left). It looks again every `refresh` even with no change reported, so
//    that a state computed after the last report is published too.
//  - AgentInfo.last_seen is not published: it moves with every stream
//    message and would have every agent written each time.
//  - A follower's answers lag the leader's by up to `interval` plus etcd's
//    commit; an agent or service not published yet is shown as such.
//  - Writes go through the leader's fenced journal: a deposed leader
//    publishes nothing.
#ifndef HOIST_RECEIVER_FLEET_PUBLICATION_H_
#define HOIST_RECEIVER_FLEET_PUBLICATION_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "receiver/config.h"
#include "receiver/control_commands.h"
#include "receiver/fleet_view.h"
#include "receiver/journal_etcd.h"
#include "receiver/service_states.h"

namespace hoist::receiver {

struct FleetPublisherOptions {
  EtcdJournal* journal = nullptr;     // required, not owned; fenced
  const FleetView* fleet = nullptr;   // required, not owned
  ServiceStates* services = nullptr;  // required, not owned
  Clock* clock = nullptr;             // default RealClock()
  absl::Duration interval = absl::Seconds(1);
  absl::Duration refresh = absl::Seconds(10);
};

class FleetPublisher {
 public:
  explicit FleetPublisher(FleetPublisherOptions options);
  ~FleetPublisher();  // Stop()s

  FleetPublisher(const FleetPublisher&) = delete;
  FleetPublisher& operator=(const FleetPublisher&) = delete;

  // Publishes at once, then after changes and every `refresh`.
  void Start();
  void Stop();  // idempotent
  // Something may have changed (an agent, a rollout). Never blocks.
  void Changed();
  // One publication on the caller's thread (the thread's work; for tests).
  absl::Status PublishNow();

 private:
  using Key = std::pair<std::string, std::string>;  // (kind, name)
  std::map<Key, std::string> Current() const;
  void Loop();

  FleetPublisherOptions options_;
  Clock* const clock_;
  absl::Mutex publish_mu_;  // one publication at a time
  // What is in etcd as far as this publisher knows.
  std::map<Key, std::string> published_ ABSL_GUARDED_BY(publish_mu_);
  bool swept_ ABSL_GUARDED_BY(publish_mu_) = false;  // earlier leader's keys
  absl::Mutex mu_;
  bool changed_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// A follower's fleet view, read from what the leader published, for the
// agents and services of `config()` in config order.
class PublishedFleet : public FleetView, public ServiceStates {
 public:
  PublishedFleet(EtcdJournal* journal,
                 std::function<std::shared_ptr<const ReceiverConfig>()> config);

  // Agents the leader has not published (or etcd unreachable): as
  // configured, not reachable, with last_error saying why.
  std::vector<AgentState> Agents() const override;
  std::optional<AgentState> Agent(const std::string& name) const override;
  // Services not published yet have their name, image and mode only.
  std::vector<hoist::v1::Service> ListServices() override;
  // NOT_FOUND for a service not configured; UNAVAILABLE when etcd is.
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override;
  // UNAVAILABLE: only the leader converges (ByRole hands Converge to the
  // leader through its relay instead).
  absl::StatusOr<hoist::v1::Rollout> Converge(
      const std::string& service) override;

 private:
  EtcdJournal* const journal_;
  const std::function<std::shared_ptr<const ReceiverConfig>()> config_;
};

// The leader's own view while `leading()`, else the published one. Writes
// (Converge) likewise: the leader's own while leading, else handed to the
// leader through `relay` (receiver/control_commands.h) when there is one,
// else refused (PublishedFleet::Converge).
class ByRole : public FleetView, public ServiceStates {
 public:
  // Not owned; `relay` is optional.
  ByRole(std::function<bool()> leading, const FleetView* leader_fleet,
         ServiceStates* leader_services, PublishedFleet* published,
         CommandRelay* relay = nullptr)
      : leading_(std::move(leading)),
        leader_fleet_(leader_fleet),
        leader_services_(leader_services),
        published_(published),
        relay_(relay) {}

  std::vector<AgentState> Agents() const override {
    return leading_() ? leader_fleet_->Agents() : published_->Agents();
  }
  std::optional<AgentState> Agent(const std::string& name) const override {
    return leading_() ? leader_fleet_->Agent(name) : published_->Agent(name);
  }
  std::shared_ptr<const AgentState> AgentSnapshot(
      const std::string& name) const override {
    return leading_() ? leader_fleet_->AgentSnapshot(name)
                      : published_->AgentSnapshot(name);
  }
  std::vector<hoist::v1::Service> ListServices() override {
    return States()->ListServices();
  }
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override {
    return States()->GetService(name);
  }
  absl::StatusOr<hoist::v1::Rollout> Converge(
      const std::string& service) override {
    if (relay_ != nullptr && !leading_()) return relay_->Converge(service);
    return States()->Converge(service);
  }

 private:
  ServiceStates* States() { return leading_() ? leader_services_ : published_; }

  const std::function<bool()> leading_;
  const FleetView* const leader_fleet_;
  ServiceStates* const leader_services_;
  PublishedFleet* const published_;
  CommandRelay* const relay_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_FLEET_PUBLICATION_H_
