// AgentServer: the agent's gRPC server (mTLS, NodeAgent service, reflection,
// grpc.health.v1.Health), and MetricsHttpServer: the optional /metrics and
// /healthz endpoint on `metrics_listen`.
//
// Any certificate from the fleet CA may use reflection and health (they are
// separate services, outside NodeAgent's role checks); NodeAgent calls need a
// role (see agent_service.h). The health status of "" and
// "hoist.v1.NodeAgent" follows Docker's reachability, polled on a thread.
//
// TLS: with Options::tls_files set, gRPC's file watcher re-reads the CA,
// certificate and key every `tls_refresh` (a renewed certificate or a rotated
// CA is picked up without a restart or a dropped connection; write the new
// files by rename). Otherwise the PEM data in Options::tls is used as given.
#ifndef HOIST_NODEAGENT_AGENT_SERVER_H_
#define HOIST_NODEAGENT_AGENT_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "nodeagent/agent_handler.h"
#include "nodeagent/agent_service.h"

namespace httplib {
class Server;
}

namespace hoist::nodeagent {

class AgentServer {
 public:
  struct Options {
    std::string listen;  // "HOST:PORT"; port 0 picks a free port
    TlsMaterial tls;     // server certificate, key and the fleet CA
    TlsFiles
        tls_files;  // when set (cert non-empty): watched files instead of `tls`
    absl::Duration tls_refresh = absl::Seconds(10);
    AgentHandler* handler = nullptr;  // not owned; must outlive the server
    std::shared_ptr<const RoleAuthorizer> authorizer;
    // Polled for the health status; defaults to
    // handler->GetStatus().docker_reachable().
    std::function<bool()> docker_reachable;
    absl::Duration health_poll_interval = absl::Seconds(2);
    MetricsRegistry* metrics = nullptr;  // optional; not owned
    // Serves WatchContainers; optional, not owned, outlives the server.
    ContainerWatcher* containers = nullptr;
    // Keepalive. Clients may ping this often, also on a quiet stream (the
    // receiver pings every 10 s on its WatchContainers stream, which is
    // quiet most of the time; gRPC's default closes a connection that pings
    // more often than every 5 min without data).
    absl::Duration min_client_ping_interval = absl::Seconds(5);
    // The server pings each connection this often and drops it when no
    // answer comes within keepalive_timeout, so that a receiver that went
    // away frees its WatchContainers subscription. Slower than the
    // receiver's own 10 s pings, which keep the stream up and find a dead
    // agent: at 1000 agents each ping costs the receiver CPU.
    absl::Duration keepalive_time = absl::Seconds(60);
    absl::Duration keepalive_timeout = absl::Seconds(5);
  };

  // Binds, starts serving and starts the health poller. UNAVAILABLE when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<AgentServer>> Start(Options options);

  // Shutdown(absl::Seconds(5)) unless already shut down.
  ~AgentServer();

  AgentServer(const AgentServer&) = delete;
  AgentServer& operator=(const AgentServer&) = delete;

  // The port actually bound (the chosen one when `listen` asked for 0).
  int port() const { return port_; }
  // `listen` with the bound port, e.g. "127.0.0.1:43121".
  const std::string& address() const { return address_; }

  // Swaps the NodeAgent authorizer (SIGHUP reload). Thread-safe.
  void SetAuthorizer(std::shared_ptr<const RoleAuthorizer> authorizer);

  // Stops the health poller, stops accepting calls, and waits for calls in
  // progress until `deadline` from now, then cancels the rest. Deploys keep
  // running in the handler. Idempotent; thread-safe.
  void Shutdown(absl::Duration deadline);

  // Sets the health status now from docker_reachable (tests; the poller does
  // this periodically).
  void RefreshHealth();

 private:
  explicit AgentServer(Options options);
  void PollHealth();

  Options options_;
  std::unique_ptr<AgentService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool last_serving_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::thread poller_;
};

// Serves GET /metrics (the registry in Prometheus text format) and GET
// /healthz ("ok", or 503 when `healthy` says no) on a small thread pool.
class MetricsHttpServer {
 public:
  // UNAVAILABLE when `listen` cannot be bound. `registry` must outlive the
  // server.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, MetricsRegistry* registry,
      const std::function<bool()>& healthy);
  ~MetricsHttpServer();  // stops and joins

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

// Splits "HOST:PORT" ("[v6]:PORT" too); false when malformed.
bool SplitHostPort(const std::string& address, std::string* host, int* port);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_AGENT_SERVER_H_
