// hoist-agent: the node agent daemon. One per host; serves NodeAgent over
// mTLS gRPC and drives the local Docker Engine (docs/design.md, "Daemons").
//
// Signals: SIGTERM/SIGINT stop gracefully (calls in progress get a few
// seconds, running deploys finish); SIGHUP re-reads the config and applies
// the authz roles and registry credentials, or keeps the old config and logs
// the problems when the new one is invalid. The TLS files named in the config
// are watched and re-read by gRPC every 10 s (renewed certificates and a
// rotated CA apply without a restart); changing the tls paths themselves, or
// listen, docker, state_dir, keep_images, host or metrics_listen, takes
// effect at the next start.
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "nodeagent/agent_server.h"
#include "nodeagent/agent_service.h"
#include "nodeagent/config.h"
#include "nodeagent/deploy_manager.h"
#include "nodeagent/docker_client_curl.h"

namespace hoist::nodeagent {
namespace {

constexpr char kProgram[] = "hoist-agent";
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);

void PrintProblems(const absl::Status& status) {
  for (absl::string_view line : absl::StrSplit(status.message(), '\n')) {
    std::cerr << line << "\n";
  }
}

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

int Run(int argc, char** argv) {
  TuneDaemonProcess();   // before any thread starts
  BlockDaemonSignals();  // before any thread starts
  auto flags = ParseDaemonFlags(argc, argv);
  const std::string usage = DaemonUsage(
      kProgram,
      "The Hoist node agent: deploys containers on this host over mTLS gRPC.");
  if (!flags.ok()) {
    std::cerr << kProgram << ": " << flags.status().message() << "\n\n"
              << usage;
    return 2;
  }
  if (flags->help) {
    std::cout << usage;
    return 0;
  }
  if (flags->version) {
    std::cout << kProgram << " " << HoistVersion() << "\n";
    return 0;
  }
  SetLogFormat(flags->log_format);

  auto config = LoadAgentConfig(flags->config);
  if (flags->check_config) {
    if (!config.ok()) {
      PrintProblems(config.status());
      return 2;
    }
    std::cout << "config OK\n";
    return 0;
  }
  if (!config.ok()) {
    PrintProblems(config.status());
    LogError("invalid config; not starting", {{"config", flags->config}});
    return 2;
  }

  auto tls = LoadTlsMaterial(config->tls);
  if (!tls.ok()) {
    LogError("cannot load TLS files",
             {{"error", std::string(tls.status().message())}});
    return 1;
  }

  CurlDockerClientOptions docker_options;
  docker_options.endpoint = config->docker_endpoint;
  auto docker = NewCurlDockerClient(docker_options);
  if (!docker.ok()) {
    LogError("bad docker endpoint",
             {{"error", std::string(docker.status().message())}});
    return 1;
  }
  DeployManager::Options manager_options;
  manager_options.docker = std::shared_ptr<DockerClient>(std::move(*docker));
  manager_options.host = config->host;
  manager_options.state_dir = config->state_dir;
  manager_options.keep_images = config->keep_images;
  manager_options.registries = config->registries;
  auto manager = DeployManager::Create(std::move(manager_options));
  if (!manager.ok()) {
    LogError("cannot start the deploy manager",
             {{"error", std::string(manager.status().message())}});
    return 1;
  }
  if (absl::Status s = (*manager)->Recover(); !s.ok()) {
    // Recovery tries every entry; what it could not restore is logged and
    // recorded, and the agent serves anyway so an operator can act.
    LogError("crash recovery incomplete",
             {{"error", std::string(s.message())}});
  }

  MetricsRegistry metrics;
  DeployManager* handler = manager->get();
  AgentServer::Options server_options;
  server_options.listen = config->listen;
  server_options.tls = *std::move(tls);
  server_options.tls_files = config->tls;
  server_options.handler = handler;
  server_options.authorizer =
      MakeAgentAuthorizer(config->deployers, config->viewers);
  server_options.docker_reachable = [handler] {
    return handler->DockerReachable();
  };
  server_options.metrics = &metrics;
  auto server = AgentServer::Start(std::move(server_options));
  if (!server.ok()) {
    LogError("cannot start the gRPC server",
             {{"error", std::string(server.status().message())}});
    return 1;
  }
  LogInfo(absl::StrCat("listening on ", (*server)->address()),
          {{"host", config->host}, {"version", HoistVersion()}});

  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (!config->metrics_listen.empty()) {
    auto http = MetricsHttpServer::Start(
        config->metrics_listen, &metrics,
        [handler] { return handler->DockerReachable(); });
    if (!http.ok()) {
      LogError("cannot start the metrics server",
               {{"error", std::string(http.status().message())}});
      (*server)->Shutdown(kShutdownGrace);
      return 1;
    }
    metrics_http = *std::move(http);
    LogInfo(absl::StrCat(
        "metrics on ",
        config->metrics_listen.substr(0, config->metrics_listen.rfind(':')),
        ":", metrics_http->port()));
  }

  // Start-up (config, TLS material, Docker version negotiation, recovery)
  // leaves freed heap behind; give it back before idling.
  malloc_trim(0);

  AgentConfig current = *std::move(config);
  for (;;) {
    const int sig = WaitForDaemonSignal();
    if (sig != SIGHUP) {
      LogInfo("shutting down", {{"signal", strsignal(sig)}});
      break;
    }
    auto reloaded = LoadAgentConfig(flags->config);
    if (!reloaded.ok()) {
      LogError("config reload refused; keeping the running config",
               {{"problems", std::string(reloaded.status().message())}});
      continue;
    }
    (*server)->SetAuthorizer(
        MakeAgentAuthorizer(reloaded->deployers, reloaded->viewers));
    handler->SetRegistries(reloaded->registries);
    const std::string restart_only = RestartOnlyChanges(current, *reloaded);
    LogInfo("config reloaded: authz roles and registry credentials applied",
            {{"deployers", std::to_string(reloaded->deployers.size())},
             {"viewers", std::to_string(reloaded->viewers.size())}});
    if (!restart_only.empty()) {
      LogWarning("changed settings take effect after a restart",
                 {{"settings", restart_only}});
    }
    current = *std::move(reloaded);
  }

  (*server)->Shutdown(kShutdownGrace);
  metrics_http.reset();
  server->reset();
  LogInfo("waiting for running deploys to finish");
  manager->reset();
  LogInfo("stopped");
  return 0;
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
  return hoist::nodeagent::Run(argc, argv);
}
