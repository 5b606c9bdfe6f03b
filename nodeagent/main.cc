// hoist-agent: the node agent daemon. One per host; serves NodeAgent over
// mTLS gRPC and drives the local Docker Engine (docs/design.md, "Daemons").
//
// Signals: SIGTERM/SIGINT stop gracefully (calls in progress get a few
// seconds, running deploys finish); SIGHUP re-reads the config and applies
// the authz roles, registry credentials and policy, or keeps the old config
// and logs the problems when the new one is invalid. The TLS files named in
// the config are watched and re-read by gRPC every 10 s (renewed
// certificates and a rotated CA apply without a restart); changing the tls
// paths themselves, or listen, docker, state_dir, keep_images, host or
// metrics_listen, takes effect at the next start.
#include <limits.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "nodeagent/agent_server.h"
#include "nodeagent/agent_service.h"
#include "nodeagent/config.h"
#include "nodeagent/container_watcher.h"
#include "nodeagent/deploy_manager.h"
#include "nodeagent/docker_client_curl.h"

namespace hoist::nodeagent {
namespace {

constexpr char kProgram[] = "hoist-agent";
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);

// Names of settings that differ and need a restart to take effect.
std::string RestartOnlyChanges(const AgentConfig& old_config,
                               const AgentConfig& new_config) {
  std::string changed;
  auto note = [&changed](bool differs, const char* name) {
    if (differs) absl::StrAppend(&changed, changed.empty() ? "" : ", ", name);
  };
  note(old_config.listen != new_config.listen, "listen");
  note(old_config.tls.ca != new_config.tls.ca ||
           old_config.tls.cert != new_config.tls.cert ||
           old_config.tls.key != new_config.tls.key,
       "tls");
  note(old_config.docker_endpoint != new_config.docker_endpoint, "docker");
  note(old_config.state_dir != new_config.state_dir, "state_dir");
  note(old_config.keep_images != new_config.keep_images, "keep_images");
  note(old_config.metrics_listen != new_config.metrics_listen,
       "metrics_listen");
  note(old_config.host != new_config.host, "host");
  return changed;
}

// The running agent: its parts, started in order by Start(), reloaded by
// Reload() on SIGHUP and stopped by Stop(). Members are declared in start
// order, so an agent that could not start all of them destroys those it
// started in reverse order. Used by one thread (main's).
class Agent {
 public:
  Agent(std::string config_path, AgentConfig config)
      : config_path_(std::move(config_path)), config_(std::move(config)) {}
  // The watcher's thread reads the manager's records: it ends first.
  ~Agent() {
    if (watcher_ != nullptr) watcher_->Stop();
  }

  // Starts every part; false (the cause logged) when one cannot start.
  bool Start() {
    return LoadTls() && StartDeployManager() && StartWatcher() &&
           StartServer() && StartMetricsServer();
  }

  // SIGHUP: applies the authz roles, registry credentials and policy of a
  // valid config file, or logs why it keeps the running config.
  void Reload();

  // SIGTERM/SIGINT: WatchContainers streams end at once, other calls in
  // progress get kShutdownGrace, then running deploys finish. The watcher
  // goes last: deploys still report their end to it (it ignores them).
  void Stop() {
    watcher_->Stop();
    server_->Shutdown(kShutdownGrace);
    metrics_http_.reset();
    server_.reset();
    LogInfo("waiting for running deploys to finish");
    manager_.reset();
    watcher_.reset();
  }

 private:
  bool LoadTls();
  bool StartDeployManager();
  bool StartWatcher();
  bool StartServer();
  bool StartMetricsServer();

  const std::string config_path_;
  AgentConfig config_;  // the running config
  TlsMaterial tls_;     // read at start, then handed to the server
  std::shared_ptr<DockerClient> docker_;
  // Declared before manager_ so that it outlives the manager's deploys
  // (they call it), and set before the server lets deploys start.
  std::unique_ptr<ContainerWatcher> watcher_;
  std::unique_ptr<DeployManager> manager_;
  MetricsRegistry metrics_;
  std::unique_ptr<AgentServer> server_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
};

bool Agent::LoadTls() {
  absl::StatusOr<TlsMaterial> tls = LoadTlsMaterial(config_.tls);
  if (!tls.ok()) {
    LogError("cannot load TLS files",
             {{"error", std::string(tls.status().message())}});
    return false;
  }
  tls_ = *std::move(tls);
  return true;
}

bool Agent::StartDeployManager() {
  CurlDockerClientOptions docker_options;
  docker_options.endpoint = config_.docker_endpoint;
  auto docker = NewCurlDockerClient(docker_options);
  if (!docker.ok()) {
    LogError("bad docker endpoint",
             {{"error", std::string(docker.status().message())}});
    return false;
  }
  docker_ = std::shared_ptr<DockerClient>(*std::move(docker));
  DeployManager::Options options;
  options.docker = docker_;
  options.host = config_.host;
  options.state_dir = config_.state_dir;
  options.keep_images = config_.keep_images;
  options.registries = config_.registries;
  options.policy = config_.policy;
  // Read on deploy threads, which the server starts after StartWatcher().
  options.deploy_ended = [this](const std::string& name) {
    if (watcher_ != nullptr) watcher_->DeployEnded(name);
  };
  auto manager = DeployManager::Create(std::move(options));
  if (!manager.ok()) {
    LogError("cannot start the deploy manager",
             {{"error", std::string(manager.status().message())}});
    return false;
  }
  manager_ = *std::move(manager);
  if (absl::Status s = manager_->Recover(); !s.ok()) {
    // Recovery tries every entry; what it could not restore is logged and
    // recorded, and the agent serves anyway so an operator can act.
    LogError("crash recovery incomplete",
             {{"error", std::string(s.message())}});
  }
  return true;
}

// Follows Docker's events for WatchContainers (docs/design.md, "Desired
// state and convergence").
bool Agent::StartWatcher() {
  ContainerWatcher::Options options;
  options.docker = docker_.get();
  DeployManager* manager = manager_.get();
  options.records = [manager](const std::string& name) {
    return manager->StoredState(name);
  };
  auto watcher = ContainerWatcher::Create(std::move(options));
  if (!watcher.ok()) {
    LogError("cannot start the container watcher",
             {{"error", std::string(watcher.status().message())}});
    return false;
  }
  watcher_ = *std::move(watcher);
  watcher_->Start();
  return true;
}

bool Agent::StartServer() {
  DeployManager* handler = manager_.get();
  AgentServer::Options options;
  options.listen = config_.listen;
  options.tls = std::move(tls_);  // the server keeps it
  options.tls_files = config_.tls;
  options.handler = handler;
  options.authorizer = MakeAgentAuthorizer(config_.deployers, config_.viewers);
  options.docker_reachable = [handler] { return handler->DockerReachable(); };
  options.metrics = &metrics_;
  options.containers = watcher_.get();
  auto server = AgentServer::Start(std::move(options));
  if (!server.ok()) {
    LogError("cannot start the gRPC server",
             {{"error", std::string(server.status().message())}});
    return false;
  }
  server_ = *std::move(server);
  LogInfo(absl::StrCat("listening on ", server_->address()),
          {{"host", config_.host}, {"version", HoistVersion()}});
  return true;
}

bool Agent::StartMetricsServer() {
  if (config_.metrics_listen.empty()) return true;  // optional
  DeployManager* handler = manager_.get();
  auto http = MetricsHttpServer::Start(
      config_.metrics_listen, &metrics_,
      [handler] { return handler->DockerReachable(); });
  if (!http.ok()) {
    LogError("cannot start the metrics server",
             {{"error", std::string(http.status().message())}});
    server_->Shutdown(kShutdownGrace);
    return false;
  }
  metrics_http_ = *std::move(http);
  LogInfo(absl::StrCat(
      "metrics on ",
      config_.metrics_listen.substr(0, config_.metrics_listen.rfind(':')), ":",
      metrics_http_->port()));
  return true;
}

void Agent::Reload() {
  auto reloaded = LoadAgentConfig(config_path_);
  if (!reloaded.ok()) {
    LogError("config reload refused; keeping the running config",
             {{"problems", std::string(reloaded.status().message())}});
    return;
  }
  server_->SetAuthorizer(
      MakeAgentAuthorizer(reloaded->deployers, reloaded->viewers));
  manager_->SetRegistries(reloaded->registries);
  manager_->SetPolicy(reloaded->policy);
  const std::string restart_only = RestartOnlyChanges(config_, *reloaded);
  LogInfo(
      "config reloaded: authz roles, registry credentials and policy applied",
      {{"deployers", std::to_string(reloaded->deployers.size())},
       {"viewers", std::to_string(reloaded->viewers.size())}});
  if (!restart_only.empty()) {
    LogWarning("changed settings take effect after a restart",
               {{"settings", restart_only}});
  }
  config_ = *std::move(reloaded);
}

// DaemonSpec::serve: runs the agent until SIGTERM or SIGINT.
int Serve(const DaemonFlags& flags, AgentConfig config) {
  Agent agent(flags.config, std::move(config));
  if (!agent.Start()) return kDaemonExitCannotStart;
  // Start-up (config, TLS material, Docker version negotiation, recovery)
  // leaves freed heap behind; give it back before idling.
  malloc_trim(0);
  const int sig = WaitForStopSignal([&agent] { agent.Reload(); });
  LogInfo("shutting down", {{"signal", strsignal(sig)}});
  agent.Stop();
  LogInfo("stopped");
  return kDaemonExitOk;
}

DaemonSpec<AgentConfig> AgentDaemon() {
  DaemonSpec<AgentConfig> spec;
  spec.program = kProgram;
  spec.summary =
      "The Hoist node agent: deploys containers on this host over mTLS gRPC.";
  spec.load_config = LoadAgentConfig;
  spec.serve = Serve;
  spec.log_invalid_config = true;
  return spec;
}

// Debian's libcurl links librtmp, which links GnuTLS; GnuTLS initializes
// itself from a library constructor (~0.8 MB of RSS) although the agent
// never uses it (libcurl here speaks TLS with OpenSSL, and only to
// registries). GnuTLS skips that when GNUTLS_NO_IMPLICIT_INIT is set, which
// must happen before the process starts: so the agent sets it once and
// re-executes itself (same pid, same arguments). If the exec fails, it runs
// as it is. It executes its binary by path, not as /proc/self/exe: the
// process name (ps, top, pgrep, systemd's status) comes from that path
// and would read "exe"; /proc/self/exe is the fallback when the binary was
// replaced on disk since the start.
void SkipGnutlsImplicitInit(char** argv) {
  if (std::getenv("GNUTLS_NO_IMPLICIT_INIT") != nullptr) return;
  if (setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 1) != 0) return;
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    if (!absl::EndsWith(self, " (deleted)")) execv(self, argv);
  }
  execv("/proc/self/exe", argv);
}

}  // namespace
}  // namespace hoist::nodeagent

int main(int argc, char** argv) {
  hoist::nodeagent::SkipGnutlsImplicitInit(argv);
  return hoist::DaemonMain(hoist::nodeagent::AgentDaemon(), argc, argv);
}
