// FakeDockerClient: an in-memory Docker Engine for unit tests of the deploy
// state machine. It keeps images and containers, records every mutating call
// ("Pull repo@sha256:…", "Create name", "Stop id", …), and fails calls on
// demand. Its event streams (FollowEvents) carry the container events a real
// engine sends for what its methods do (create, start, die, stop, destroy,
// rename), plus any a test emits itself; event filters are ignored.
// Thread-safe.
#ifndef HOIST_TESTS_NODEAGENT_FAKE_DOCKER_CLIENT_H_
#define HOIST_TESTS_NODEAGENT_FAKE_DOCKER_CLIENT_H_

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "nodeagent/docker_client.h"

namespace hoist::nodeagent {

// How a container of a fake image behaves once started.
struct FakeBehavior {
  bool exits = false;  // exits at once with exit_code
  int exit_code = 0;   // also the exit code once stopped
  // When > 0: running for this many inspections after start, then exited
  // with exit_code (a container that dies a moment after it started).
  int exits_after_inspects = 0;
  std::string logs;  // what ContainerLogs returns
  std::string
      health;  // Docker health status reported while running ("" = none)
  // When > 0: "starting" for this many inspections after start, then "healthy".
  int healthy_after_inspects = 0;
};

class FakeDockerClient : public DockerClient {
 public:
  using Behavior = FakeBehavior;

  // The registry: `repo@digest` can be pulled and then has image id `id`.
  // `repo_digests` overrides what the pulled image reports (for mismatch
  // tests).
  void AddRemoteImage(const std::string& repo, const std::string& digest,
                      Behavior behavior = Behavior(),
                      std::vector<std::string> repo_digests = {});
  // An image already present locally.
  void AddLocalImage(const std::string& repo, const std::string& digest);
  // A running container created outside the agent (labels as given).
  std::string AddContainer(const std::string& name, const std::string& image,
                           std::map<std::string, std::string> labels,
                           bool running);

  // The next call of `method` ("PullImage", "CreateContainer",
  // "StartContainer", "StopContainer", "RemoveContainer", "RenameContainer",
  // "InspectImage", …) whose first argument contains `match` fails with
  // `status`. Once.
  void FailNext(const std::string& method, absl::Status status,
                const std::string& match = "");
  // Blocks PullImage until Release() (to hold a deploy in flight).
  void BlockPulls();
  void Release();
  // Whether a PullImage is currently blocked.
  bool PullBlocked();

  std::vector<std::string> calls();
  int CountCalls(const std::string& prefix);
  // Delivers `event` to every open event stream (for events the fake's
  // methods do not make, e.g. "exec_start: …" of a health check).
  void EmitEvent(DockerEvent event);
  // While unreachable, every call fails UNAVAILABLE and open event streams
  // end UNAVAILABLE, as when dockerd is stopped.
  void SetUnreachable(bool unreachable);
  // Event streams open now (subscribed and not ended).
  int OpenEventStreams();
  // Changes a container's state behind the agent's back (as `docker pause`
  // or a crash would), with the event Docker sends for it: "pause",
  // "unpause" or "die".
  void SetContainerState(const std::string& name, const std::string& action);

  // Snapshot of a container by name; NOT_FOUND when absent.
  absl::StatusOr<ContainerInfo> Find(const std::string& name);
  std::vector<std::string> ContainerNames();
  std::vector<std::string> LocalImages();

  // DockerClient.
  absl::Status Ping() override;
  absl::StatusOr<DockerVersion> Version() override;
  absl::Status PullImage(const std::string& reference,
                         const std::string& registry_auth,
                         const PullCallback& progress) override;
  absl::StatusOr<ImageInfo> InspectImage(const std::string& reference) override;
  absl::StatusOr<std::vector<ImageInfo>> ListImages() override;
  absl::Status RemoveImage(const std::string& reference, bool force) override;
  absl::StatusOr<std::vector<ContainerSummary>> ListContainers(
      const std::string& label) override;
  absl::StatusOr<ContainerInfo> InspectContainer(
      const std::string& id_or_name) override;
  absl::StatusOr<std::string> CreateContainer(
      const std::string& name, const ContainerConfig& config) override;
  absl::Status StartContainer(const std::string& id) override;
  absl::Status StopContainer(const std::string& id,
                             absl::Duration timeout) override;
  absl::Status RemoveContainer(const std::string& id, bool force) override;
  absl::Status RenameContainer(const std::string& id,
                               const std::string& new_name) override;
  absl::StatusOr<std::string> ContainerLogs(const std::string& id,
                                            int tail) override;
  absl::Status UpdateRestartPolicy(const std::string& id,
                                   const std::string& policy) override;
  absl::Status FollowEvents(const EventFilters& filters,
                            const EventHandlers& handlers,
                            EventStreamCancel* cancel) override;

  // The last config CreateContainer was given for `name` (by creation name).
  ContainerConfig LastConfig(const std::string& name);
  std::string last_registry_auth();

 private:
  struct Image {
    std::string id;
    std::string repo;
    std::vector<std::string> repo_digests;
    std::vector<std::string> aliases;  // references it was pulled as
    Behavior behavior;
  };
  struct Container {
    ContainerInfo info;
    Behavior behavior;
  };
  struct Failure {
    std::string method;
    absl::Status status;
    std::string match;
  };

  struct EventStream {
    std::deque<DockerEvent> queued;
    bool ended = false;  // dockerd went away
    bool cancelled = false;
  };

  absl::Status Injected(const std::string& method, const std::string& arg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a container event about `c` on every open stream.
  void EmitLocked(const std::string& action, const Container& c,
                  std::map<std::string, std::string> extra = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitLocked(DockerEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Container* FindLocked(const std::string& id_or_name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Image* LocalImageLocked(const std::string& reference)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<std::string, Image> remote_
      ABSL_GUARDED_BY(mu_);  // by "repo@digest"
  std::vector<Image> local_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Container> containers_ ABSL_GUARDED_BY(mu_);  // by id
  std::map<std::string, ContainerConfig> configs_ ABSL_GUARDED_BY(mu_);
  std::vector<Failure> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  bool block_pulls_ ABSL_GUARDED_BY(mu_) = false;
  int blocked_ ABSL_GUARDED_BY(mu_) = 0;
  int next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::string last_auth_ ABSL_GUARDED_BY(mu_);
  bool unreachable_ ABSL_GUARDED_BY(mu_) = false;
  int next_stream_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, EventStream> streams_ ABSL_GUARDED_BY(mu_);
  absl::Time next_event_time_ ABSL_GUARDED_BY(mu_) =
      absl::FromUnixSeconds(1700000000);
};

}  // namespace hoist::nodeagent

#endif  // HOIST_TESTS_NODEAGENT_FAKE_DOCKER_CLIENT_H_
