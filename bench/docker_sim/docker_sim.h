// DockerSim: a Docker Engine API SIMULATOR for benchmarks. It answers, on
// unix sockets, exactly the endpoints hoist-agent's CurlDockerClient uses
// (nodeagent/docker_client_curl.cc): _ping, version, images/create (a
// JSON-lines pull progress stream: several layers with Downloading and
// Extracting progressDetail, "Digest: sha256:…", "Status: …"),
// images/{name}/json, images/json, DELETE images/{name}, containers/json with
// label filters, containers/create, /start, /stop, /rename, /update, DELETE
// containers/{id or name} (with force=1 on a running container, what `docker
// rm -f` sends: events kill with signal 9, die with exitCode 137, destroy, as
// dockerd 20.10 emits them), containers/{id}/json (State.Running,
// State.Health),
// /logs, and GET /events: a chunked line-delimited JSON stream, held open,
// of the container events (create, start, kill, die, stop, destroy, rename)
// the engine's own changes cause, filtered by the "event" filter. Nothing
// runs: containers are records in memory.
//
// Each socket is an independent engine (one simulated host), so a thousand
// agents in one benchmark each see only their own containers. Every
// operation sleeps its configured latency before answering (outside locks).
//
// It is NOT Docker: correctness of the agent is tested against real dockerd
// (tests/ with the harness); this exists to measure the receiver and agents
// at fleet scale on one machine.
//
// Thread-safety: one accept thread polls every listening socket; each
// connection is served on its own thread (HTTP/1.1 keep-alive, requests with
// Content-Length bodies), an /events stream included, which waits on its
// engine's mutex and wakes every 5 s to notice a peer that left. Engine state
// is guarded by a mutex per engine.
#ifndef HOIST_BENCH_DOCKER_SIM_DOCKER_SIM_H_
#define HOIST_BENCH_DOCKER_SIM_DOCKER_SIM_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hoist::bench {

// Operations with a configurable latency.
inline constexpr const char* kSimOperations[] = {
    "ping",         "version", "pull",   "inspect_image", "list_images",
    "remove_image", "list",    "create", "start",         "stop",
    "remove",       "rename",  "update", "inspect",       "logs"};

struct DockerSimOptions {
  // Sockets are DIR/docker-0000.sock … DIR/docker-(count-1).sock.
  std::string socket_dir;
  int count = 1;
  // Latency per operation name (kSimOperations); "pull" is the whole stream.
  std::map<std::string, absl::Duration> latency = {
      {"ping", absl::Milliseconds(1)},
      {"version", absl::Milliseconds(1)},
      {"pull", absl::Milliseconds(1500)},
      {"inspect_image", absl::Milliseconds(3)},
      {"list_images", absl::Milliseconds(5)},
      {"remove_image", absl::Milliseconds(50)},
      {"list", absl::Milliseconds(5)},
      {"create", absl::Milliseconds(40)},
      {"start", absl::Milliseconds(120)},
      {"stop", absl::Milliseconds(300)},
      {"remove", absl::Milliseconds(40)},
      {"rename", absl::Milliseconds(10)},
      {"update", absl::Milliseconds(10)},
      {"inspect", absl::Milliseconds(3)},
      {"logs", absl::Milliseconds(5)}};
  int layers = 4;                 // layers per pulled image
  int64_t layer_bytes = 8 << 20;  // compressed size of each layer
  int progress_lines =
      6;  // Downloading lines per layer (and as many Extracting)
  // Containers report State.Health "starting" for this long after start,
  // then "healthy". Negative: images have no HEALTHCHECK (no State.Health).
  absl::Duration health_delay = absl::ZeroDuration();
  std::string version = "20.10.24-sim";
  std::string api_version = "1.41";
};

// Parses "op=ms,op=ms" into `options->latency`; INVALID_ARGUMENT names an
// unknown op.
absl::Status ParseLatencies(absl::string_view spec, DockerSimOptions* options);

class DockerSim {
 public:
  // Creates the socket directory, binds every socket and starts serving.
  static absl::StatusOr<std::unique_ptr<DockerSim>> Start(
      DockerSimOptions options);
  ~DockerSim();  // Stop()

  DockerSim(const DockerSim&) = delete;
  DockerSim& operator=(const DockerSim&) = delete;

  // Path of socket `i`.
  std::string SocketPath(int i) const;
  // Stops accepting, removes the sockets, waits for open connections to end.
  void Stop();

  // Requests answered so far (all engines).
  int64_t requests() const { return requests_.load(); }

  class Engine;

 private:
  explicit DockerSim(DockerSimOptions options);
  void AcceptLoop();
  void Serve(int fd, int engine);

  const DockerSimOptions options_;
  std::vector<int> listen_fds_;
  std::vector<std::unique_ptr<Engine>> engines_;
  int wake_pipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int64_t> requests_{0};
};

}  // namespace hoist::bench

#endif  // HOIST_BENCH_DOCKER_SIM_DOCKER_SIM_H_
