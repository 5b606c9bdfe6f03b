// hoist-receiver: takes registry webhooks and rolls deployments out to the
// node agents; serves the Control API. See docs/design.md ("Daemons").
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/daemon.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "httplib.h"
#include "receiver/agent_client_grpc.h"
#include "receiver/config.h"
#include "receiver/control_service.h"
#include "receiver/journal_sqlite.h"
#include "receiver/rollout_manager.h"
#include "receiver/webhook_server.h"

namespace hoist::receiver {
namespace {

constexpr char kProgram[] = "hoist-receiver";

// "host" of "host:port" (brackets of an IPv6 literal kept).
std::string HostPart(const std::string& listen) {
  size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

// Optional /metrics and /healthz on metrics_listen.
class MetricsServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, MetricsRegistry* metrics) {
    std::unique_ptr<MetricsServer> s(new MetricsServer());
    s->http_.new_task_queue = [] { return new httplib::ThreadPool(2); };
    s->http_.Get(
        "/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
          res.set_content(metrics->Render(), "text/plain; version=0.0.4");
        });
    s->http_.Get("/healthz",
                 [](const httplib::Request&, httplib::Response& res) {
                   res.set_content("ok\n", "text/plain");
                 });
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics_listen \"", listen, "\": no port"));
    }
    const std::string host = listen.substr(0, colon);
    const int port = std::atoi(listen.c_str() + colon + 1);
    s->port_ = port == 0
                   ? s->http_.bind_to_any_port(host.c_str())
                   : (s->http_.bind_to_port(host.c_str(), port) ? port : -1);
    if (s->port_ <= 0) {
      return absl::UnavailableError(
          absl::StrCat("metrics: cannot listen on ", listen));
    }
    s->thread_ =
        std::thread([srv = s.get()] { srv->http_.listen_after_bind(); });
    return s;
  }
  ~MetricsServer() {
    http_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  httplib::Server http_;
  std::thread thread_;
  int port_ = 0;
};

int Run(int argc, char** argv) {
  TuneDaemonProcess();  // before any thread starts
  BlockDaemonSignals();
  absl::StatusOr<DaemonFlags> flags = ParseDaemonFlags(argc, argv);
  const std::string usage =
      DaemonUsage(kProgram,
                  "Takes JFrog Artifactory webhooks and rolls the promoted "
                  "images out to the "
                  "node agents over mTLS gRPC; serves the Control API.");
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

  absl::StatusOr<ReceiverConfig> loaded = LoadReceiverConfig(flags->config);
  if (!loaded.ok()) {
    std::cerr << loaded.status().message() << "\n";
    return 2;
  }
  if (flags->check_config) {
    std::cout << "config OK\n";
    return 0;
  }
  auto config = std::make_shared<const ReceiverConfig>(std::move(*loaded));

  absl::StatusOr<TlsMaterial> tls = LoadTlsMaterial(config->tls);
  if (!tls.ok()) {
    LogError("cannot read TLS files", {{"error", tls.status().ToString()}});
    return 1;
  }
  {
    std::error_code ec;
    std::filesystem::create_directories(DirName(config->state), ec);
  }
  absl::StatusOr<std::unique_ptr<SqliteJournal>> journal =
      SqliteJournal::Open(config->state);
  if (!journal.ok()) {
    std::cerr << kProgram << ": " << journal.status().message() << "\n";
    LogError(
        "cannot open the journal",
        {{"state", config->state}, {"error", journal.status().ToString()}});
    return 1;
  }

  MetricsRegistry metrics;
  AgentClientPoolGrpc pool(config->agents, *tls, config->agent_call);
  RolloutManagerOptions options;
  options.journal = journal->get();
  options.pool = &pool;
  options.metrics = &metrics;
  auto manager = std::make_unique<RolloutManager>(options, config);
  if (absl::Status s = manager->Recover(); !s.ok()) {
    LogError("cannot recover rollouts from the journal",
             {{"error", s.ToString()}});
    return 1;
  }
  manager->Start();

  ControlService control(manager.get(), &pool, config);
  absl::StatusOr<std::unique_ptr<ControlServer>> control_server =
      ControlServer::Start(config->control_listen, *tls, &control);
  if (!control_server.ok()) {
    LogError("cannot start the Control server",
             {{"error", control_server.status().ToString()}});
    return 1;
  }
  std::cerr << "control listening on " << HostPart(config->control_listen)
            << ":" << (*control_server)->port() << std::endl;

  WebhookServer::Options webhook_options;
  webhook_options.config = config;
  webhook_options.submitter = manager.get();
  webhook_options.metrics = &metrics;
  absl::StatusOr<std::unique_ptr<WebhookServer>> webhook =
      WebhookServer::Start(std::move(webhook_options));
  if (!webhook.ok()) {
    LogError("cannot start the webhook server",
             {{"error", webhook.status().ToString()}});
    return 1;
  }
  std::cerr << "webhook listening on " << HostPart(config->webhook.listen)
            << ":" << (*webhook)->port() << std::endl;

  std::unique_ptr<MetricsServer> metrics_server;
  if (!config->metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> m =
        MetricsServer::Start(config->metrics_listen, &metrics);
    if (!m.ok()) {
      LogError("cannot start the metrics server",
               {{"error", m.status().ToString()}});
      return 1;
    }
    metrics_server = std::move(*m);
    std::cerr << "metrics listening on " << HostPart(config->metrics_listen)
              << ":" << metrics_server->port() << std::endl;
  }
  LogInfo("hoist-receiver started", {{"version", HoistVersion()},
                                     {"config", flags->config},
                                     {"state", config->state}});

  while (true) {
    const int sig = WaitForDaemonSignal();
    if (sig != SIGHUP) {
      LogInfo("stopping", {{"signal", absl::StrCat(sig)}});
      break;
    }
    absl::StatusOr<ReceiverConfig> next = LoadReceiverConfig(flags->config);
    if (!next.ok()) {
      LogError("reload refused: the config is invalid; keeping the running one",
               {{"error", std::string(next.status().message())}});
      continue;
    }
    absl::StatusOr<TlsMaterial> next_tls = LoadTlsMaterial(next->tls);
    if (!next_tls.ok()) {
      LogError(
          "reload refused: cannot read TLS files; keeping the running config",
          {{"error", next_tls.status().ToString()}});
      continue;
    }
    if (next->webhook.listen != config->webhook.listen ||
        next->control_listen != config->control_listen ||
        next->state != config->state ||
        next->metrics_listen != config->metrics_listen) {
      LogWarning("listen addresses and state take effect only after a restart");
    }
    config = std::make_shared<const ReceiverConfig>(std::move(*next));
    pool.Update(config->agents, *next_tls, config->agent_call);
    if (next_tls->ca_pem != tls->ca_pem ||
        next_tls->cert_pem != tls->cert_pem ||
        next_tls->key_pem != tls->key_pem) {
      // New Control server certificate: serve it on the same port. Open
      // watches are cut (clients re-watch); rollouts are not affected.
      const std::string listen = absl::StrCat(HostPart(config->control_listen),
                                              ":", (*control_server)->port());
      (*control_server)->Shutdown();
      absl::StatusOr<std::unique_ptr<ControlServer>> restarted =
          ControlServer::Start(listen, *next_tls, &control);
      if (restarted.ok()) {
        *control_server = std::move(*restarted);
        tls = *next_tls;
        LogInfo("control server certificate reloaded", {{"listen", listen}});
      } else {
        LogError(
            "control server restart with the new certificate failed; "
            "serving the old one",
            {{"error", restarted.status().ToString()}});
        restarted = ControlServer::Start(listen, *tls, &control);
        if (restarted.ok()) {
          *control_server = std::move(*restarted);
        } else {
          LogError("control server is down until the next reload",
                   {{"error", restarted.status().ToString()}});
        }
      }
    }
    manager->UpdateConfig(config);
    control.UpdateConfig(config);
    (*webhook)->UpdateConfig(config);
    LogInfo("config reloaded",
            {{"config", flags->config},
             {"services", absl::StrCat(config->services.size())},
             {"agents", absl::StrCat(config->agents.size())}});
  }

  (*webhook)->Stop();
  (*control_server)->Shutdown();
  manager->Stop();
  metrics_server.reset();
  manager.reset();
  LogInfo("hoist-receiver stopped");
  return 0;
}

}  // namespace
}  // namespace hoist::receiver

int main(int argc, char** argv) { return hoist::receiver::Run(argc, argv); }
