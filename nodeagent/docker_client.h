// DockerClient: the narrow slice of the Docker Engine API the node agent uses.
//
// The real implementation (docker_client_curl.h) speaks HTTP over the
// engine's unix socket with libcurl; tests of the deploy state machine use
// FakeDockerClient (fake_docker_client.h).
//
// Errors: every call returns the engine's own "message" in the status, mapped
// to a code: 404 NOT_FOUND, 409 FAILED_PRECONDITION (ALREADY_EXISTS for a
// name conflict on create/rename), 400 INVALID_ARGUMENT, 500 INTERNAL,
// 503/connection refused/missing socket UNAVAILABLE, timeouts
// DEADLINE_EXCEEDED.
//
// Thread-safety: implementations are safe to call from many threads at once.
#ifndef HOIST_NODEAGENT_DOCKER_CLIENT_H_
#define HOIST_NODEAGENT_DOCKER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hoist::nodeagent {

// Labels the agent puts on every container it manages.
inline constexpr char kLabelService[] = "hoist.service";
inline constexpr char kLabelDigest[] = "hoist.digest";
inline constexpr char kLabelDeployId[] = "hoist.deploy_id";
inline constexpr char kLabelImage[] = "hoist.image";

struct DockerVersion {
  std::string version;      // server version, e.g. "20.10.24"
  std::string api_version;  // server's API version, e.g. "1.41"
};

// One progress line of a pull, parsed from the engine's JSON-lines stream.
struct PullUpdate {
  std::string layer;    // "id" of the line (a layer id, or a tag/digest for
                        // summary lines)
  std::string status;   // "Downloading", "Pull complete", "Already exists", …
  int64_t current = 0;  // progressDetail.current
  int64_t total = 0;    // progressDetail.total (0 when unknown)
};
using PullCallback = std::function<void(const PullUpdate&)>;

// Credentials for one pull; the password is only ever placed in the
// X-Registry-Auth header and never logged.
struct RegistryCredentials {
  std::string server;  // "host:port" or "registry.example.com"
  std::string username;
  std::string password;
};

// The X-Registry-Auth header value: base64url of
// {"username","password","serveraddress"}.
std::string EncodeRegistryAuth(const RegistryCredentials& credentials);

struct ImageInfo {
  std::string id;                         // "sha256:…" (config digest)
  std::vector<std::string> repo_tags;     // "repo:tag"
  std::vector<std::string> repo_digests;  // "repo@sha256:…"
  absl::Time created = absl::InfinitePast();
};

struct ContainerSummary {
  std::string id;
  std::string name;   // without the leading "/"
  std::string image;  // as created (reference)
  std::string image_id;
  std::string state;  // "running", "exited", "created", …
  std::map<std::string, std::string> labels;
};

struct ContainerInfo {
  std::string id;
  std::string name;      // without the leading "/"
  std::string image;     // Config.Image (the reference it was created from)
  std::string image_id;  // Image ("sha256:…")
  std::string status;    // State.Status: "created", "running", "exited", …
  bool running = false;
  bool restarting = false;
  int exit_code = 0;
  std::string health;  // State.Health.Status ("starting", "healthy",
                       // "unhealthy"), empty when none
  std::string error;   // State.Error
  absl::Time started_at = absl::InfinitePast();
  std::string restart_policy;
  std::map<std::string, std::string> labels;
};

// What CreateContainer needs. Ports use Docker's "-p" syntax
// "[ip:]hostPort:containerPort[/proto]" or "containerPort[/proto]"; binds use
// "src:dst[:opts]".
struct ContainerConfig {
  std::string image;
  std::vector<std::string> env;  // "KEY=value"
  std::vector<std::string> ports;
  std::vector<std::string> binds;
  std::map<std::string, std::string> labels;
  std::string
      restart_policy;  // "", "no", "always", "unless-stopped", "on-failure[:N]"
  std::string user;
  std::vector<std::string> entrypoint;  // empty: image default
  std::vector<std::string> cmd;         // empty: image default
  int64_t memory_bytes = 0;             // 0: no limit
  int64_t nano_cpus = 0;                // 0: no limit
  std::string log_driver;
  std::map<std::string, std::string> log_options;
  std::string network_mode;       // "" default bridge
  int stop_timeout_seconds = -1;  // -1: engine default
};

// A parsed port mapping.
struct PortMapping {
  std::string host_ip;    // "" = all interfaces
  std::string host_port;  // "" = not published
  std::string container_port;
  std::string protocol;  // "tcp" | "udp" | "sctp"
};
// Parses "[ip:]hostPort:containerPort[/proto]" or "containerPort[/proto]".
absl::StatusOr<PortMapping> ParsePortSpec(absl::string_view spec);

// Parses "no", "always", "unless-stopped", "on-failure[:N]" ("" = "no").
absl::Status ValidateRestartPolicy(absl::string_view policy);

// One message of the engine's GET /events stream.
struct DockerEvent {
  std::string type;    // "container", "image", …
  std::string action;  // "start", "die", "exec_start: sh -c …",
                       // "health_status: healthy", …
  std::string id;      // Actor.ID
  // Actor.Attributes: for containers "name", "image", the container's labels,
  // "exitCode" (die), "oldName" (rename, with its leading "/").
  std::map<std::string, std::string> attributes;
  absl::Time time = absl::InfinitePast();  // timeNano (or time)
};

// The engine's event filters, e.g. {{"type", {"container"}},
// {"event", {"start", "die"}}}.
using EventFilters = std::map<std::string, std::vector<std::string>>;

struct EventHandlers {
  // Called once the engine accepted the subscription, before any event:
  // whatever happens from then on is delivered. A non-OK status ends the
  // stream, and FollowEvents returns it. May be empty.
  std::function<absl::Status()> on_subscribed;
  // Called for each event, in order. May be empty.
  std::function<void(const DockerEvent&)> on_event;
};

// Ends FollowEvents calls from another thread. Thread-safe; once cancelled
// it stays cancelled, and a FollowEvents call given it returns CANCELLED at
// once (or promptly, when it is already following).
class EventStreamCancel {
 public:
  void Cancel();
  bool cancelled() const;

  // For DockerClient implementations: `wake` is called by Cancel() (with an
  // internal lock held, so it must not block or call back into this object)
  // while it is set, to wake a stream that waits for data. Set it to empty
  // before what it refers to goes away; after that SetWaker returns, the old
  // `wake` is not running and will not be called again.
  void SetWaker(std::function<void()> wake);

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> wake_ ABSL_GUARDED_BY(mu_);
};

class DockerClient {
 public:
  virtual ~DockerClient() = default;

  // GET /_ping.
  virtual absl::Status Ping() = 0;
  virtual absl::StatusOr<DockerVersion> Version() = 0;

  // Pulls `reference` ("repo@sha256:…" or "repo:tag"). `registry_auth` is the
  // X-Registry-Auth value or empty. `progress` (may be empty) is called for
  // each line of the stream, in order, on the calling thread. An error line
  // in the stream fails the pull with Docker's message.
  virtual absl::Status PullImage(const std::string& reference,
                                 const std::string& registry_auth,
                                 const PullCallback& progress) = 0;
  // NOT_FOUND when the image is not present.
  virtual absl::StatusOr<ImageInfo> InspectImage(
      const std::string& reference) = 0;
  virtual absl::StatusOr<std::vector<ImageInfo>> ListImages() = 0;
  // DELETE /images/{ref}; FAILED_PRECONDITION when a container uses it.
  virtual absl::Status RemoveImage(const std::string& reference,
                                   bool force) = 0;

  // All containers (running or not) carrying `label` (key or key=value);
  // every container when `label` is empty.
  virtual absl::StatusOr<std::vector<ContainerSummary>> ListContainers(
      const std::string& label) = 0;
  virtual absl::StatusOr<ContainerInfo> InspectContainer(
      const std::string& id_or_name) = 0;
  // Returns the new container's id. ALREADY_EXISTS when the name is taken.
  virtual absl::StatusOr<std::string> CreateContainer(
      const std::string& name, const ContainerConfig& config) = 0;
  // Starting a running container is OK.
  virtual absl::Status StartContainer(const std::string& id) = 0;
  // SIGTERM, then SIGKILL after `timeout`. Stopping a stopped container is OK.
  virtual absl::Status StopContainer(const std::string& id,
                                     absl::Duration timeout) = 0;
  virtual absl::Status RemoveContainer(const std::string& id, bool force) = 0;
  virtual absl::Status RenameContainer(const std::string& id,
                                       const std::string& new_name) = 0;
  // The last `tail` lines of stdout and stderr, demultiplexed.
  virtual absl::StatusOr<std::string> ContainerLogs(const std::string& id,
                                                    int tail) = 0;
  // POST /containers/{id}/update with RestartPolicy.
  virtual absl::Status UpdateRestartPolicy(const std::string& id,
                                           const std::string& policy) = 0;

  // Follows GET /events with `filters` on the calling thread, calling
  // `handlers` there, until the stream ends. No total timeout: an idle
  // stream is normal. Returns CANCELLED after `cancel` (not owned) was
  // cancelled; otherwise the stream's end is an error: UNAVAILABLE when the
  // engine cannot be reached or closed the stream (dockerd stopped), the
  // engine's error for a refused request, or what on_subscribed returned.
  virtual absl::Status FollowEvents(const EventFilters& filters,
                                    const EventHandlers& handlers,
                                    EventStreamCancel* cancel) = 0;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_DOCKER_CLIENT_H_
