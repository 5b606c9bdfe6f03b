// hoist-receiver: takes registry webhooks and rolls deployments out to the
// node agents; serves the Control API. See docs/design.md ("Daemons").

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
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
#include "receiver/control_commands.h"
#include "receiver/control_service.h"
#include "receiver/convergence.h"
#include "receiver/dashboard_auth.h"
#include "receiver/dashboard_server.h"
#include "receiver/desired_state.h"
#include "receiver/etcd_client_grpc.h"
#include "receiver/fleet_publication.h"
#include "receiver/fleet_watcher.h"
#include "receiver/journal_etcd.h"
#include "receiver/journal_sqlite.h"
#include "receiver/leader_role.h"
#include "receiver/metered_journal.h"
#include "receiver/notification_sender.h"
#include "receiver/notifier_curl.h"
#include "receiver/rollout_follow.h"
#include "receiver/rollout_manager.h"
#include "receiver/webhook_server.h"

namespace hoist::receiver {
namespace {

std::vector<std::string> ServiceNames(const ReceiverConfig& config) {
  std::vector<std::string> names;
  for (const ServiceConfig& s : config.services) names.push_back(s.name);
  return names;
}

constexpr char kProgram[] = "hoist-receiver";

// This machine's host name ("localhost" when it has none).
std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return host[0] != '\0' ? host : "localhost";
}

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

// Whether the Control server's certificate, key or CA changed.
bool TlsChanged(const TlsMaterial& a, const TlsMaterial& b) {
  return a.ca_pem != b.ca_pem || a.cert_pem != b.cert_pem ||
         a.key_pem != b.key_pem;
}

// Settings a reload cannot apply (docs/design.md, "Daemons").
bool RestartOnlyChanged(const ReceiverConfig& running,
                        const ReceiverConfig& next) {
  return next.webhook.listen != running.webhook.listen ||
         next.control_listen != running.control_listen ||
         next.state != running.state ||
         next.metrics_listen != running.metrics_listen ||
         next.dashboard.listen != running.dashboard.listen ||
         next.etcd.endpoints != running.etcd.endpoints ||
         next.etcd.prefix != running.etcd.prefix;
}

// A leader that lost its leadership ends the process at once, with
// kDaemonExitLeadershipLost, and its supervisor (systemd's Restart=) starts
// it again as a follower: nothing a leader runs (rollouts, agent streams,
// convergence) is undone half-way, nothing more reaches an agent, and the
// new process holds no state of the leader's. _exit ends every thread at
// once; restarting in place with exec instead raced with threads being
// created and aborted the process now and then.
[[noreturn]] void ExitAsDeposedLeader() {
  LogError(
      "leadership lost: exiting so that the supervisor restarts this "
      "receiver as a follower",
      {{"exit_code", absl::StrCat(kDaemonExitLeadershipLost)}});
  std::cerr << std::flush;
  _exit(kDaemonExitLeadershipLost);
}

// The running receiver: its parts, started in order by Start(), reloaded by
// Reload() on SIGHUP and stopped by Stop(). Members are declared in start
// order, so a receiver that could not start all of them destroys those it
// started in reverse order. Used by one thread (main's).
class Receiver {
 public:
  Receiver(std::string config_path, ReceiverConfig config)
      : config_path_(std::move(config_path)),
        config_(std::make_shared<const ReceiverConfig>(std::move(config))) {}

  // Starts every part; false (the cause logged) when one cannot start.
  bool Start() {
    return LoadTls() && OpenJournal() && StartNotifications() &&
           StartRollouts() && StartFleet() && StartConvergence() &&
           StartFleetPublication() && StartControlServer() &&
           StartWebhookServer() && StartMetricsServer() && StartDashboard() &&
           StartLeaderRole();
  }

  // A receiver that could not start every part: the fleet's and the
  // manager's callbacks into convergence end before it is destroyed.
  ~Receiver() {
    if (leader_) leader_->Stop();
    if (executor_) executor_->Stop();
    if (fleet_) fleet_->Stop();
    if (manager_) manager_->Stop();
    if (notifications_) notifications_->Stop();
  }

  // SIGHUP: applies a valid config file, or logs why it keeps the running one.
  void Reload();

  // SIGTERM/SIGINT: stops taking webhooks and calls, then the rollouts (they
  // stay RUNNING in the journal and resume at the next start).
  void Stop() {
    dashboard_.reset();  // its handlers call the parts below
    webhook_->Stop();
    if (relay_) relay_->Stop();  // Control calls waiting for the leader end
    control_server_->Shutdown();
    if (executor_) executor_->Stop();
    if (publisher_) publisher_->Stop();
    fleet_->Stop();
    convergence_->Stop();
    manager_->Stop();
    notifications_->Stop();
    // Last: a leader revokes its lease only once it calls no agent any more.
    if (leader_) leader_->Stop();
    metrics_server_.reset();
    manager_.reset();
  }

  const ReceiverConfig& config() const { return *config_; }

 private:
  // Several receivers share an etcd cluster (docs/design.md, "High
  // availability on etcd"): the leader-only parts start in StartLeading.
  bool ha() const { return config_->etcd.enabled(); }
  bool LoadTls();
  bool OpenJournal();
  bool OpenEtcdJournal();
  // The notification outbox's sender (docs/design.md, "Notifications"):
  // before the rollouts, which journal rows for it, and started at once so
  // that rows left from before a restart go out.
  bool StartNotifications();
  bool StartRollouts();
  // Opens a WatchContainers stream to every agent (FleetWatcher).
  bool StartFleet();
  // Desired state against the fleet (ConvergenceEngine).
  bool StartConvergence();
  // With etcd: what a follower shows of the fleet and of rollouts (read
  // from etcd), the Control writes it hands to the leader, the leader's
  // publication of its fleet view and its executor of those writes.
  bool StartFleetPublication();
  bool StartControlServer();
  bool StartWebhookServer();
  bool StartMetricsServer();
  // The web dashboard (docs/design.md, "Dashboard"), when configured.
  bool StartDashboard();
  // With etcd: campaigns; StartLeading runs once this receiver leads.
  bool StartLeaderRole();
  absl::Status StartLeading();
  // SIGHUP: new tokens; the dashboard restarts on its port when its
  // certificate or key changed (open pages reconnect their event streams).
  void ReloadDashboard();
  // Serves `next_tls` on the Control server's port; keeps the old
  // certificate if that fails.
  void RestartControlServer(const TlsMaterial& next_tls);

  const std::string config_path_;
  std::shared_ptr<const ReceiverConfig> config_;
  TlsMaterial tls_;                       // what the Control server serves
  std::unique_ptr<EtcdClientGrpc> etcd_;  // with etcd only
  EtcdJournal* etcd_journal_ = nullptr;   // journal_, with etcd
  std::unique_ptr<Journal> journal_;
  MetricsRegistry metrics_;
  // journal_ as the rollout manager writes it: failed writes are counted
  // (hoist_journal_write_failures_total).
  std::unique_ptr<MeteredJournal> metered_journal_;
  std::unique_ptr<CurlNotifier> notifier_;
  std::unique_ptr<NotificationSender> notifications_;
  std::unique_ptr<AgentClientPoolGrpc> pool_;
  // Each service's desired digest, moved by the manager's rollouts.
  std::unique_ptr<DesiredStates> desired_;
  std::unique_ptr<RolloutManager> manager_;
  // The manager's on_state_change target once convergence runs.
  std::atomic<ConvergenceEngine*> convergence_feed_{nullptr};
  // The fleet's and the manager's change feed into the leader's
  // publication, once leading.
  std::atomic<FleetPublisher*> publisher_feed_{nullptr};
  // What each agent runs, from its WatchContainers stream.
  std::unique_ptr<FleetWatcher> fleet_;
  std::unique_ptr<ConvergenceEngine> convergence_;
  // With etcd: what Control and the dashboard show of the fleet (ByRole),
  // and the leader's publication of it for followers. A follower's Control
  // writes go to the leader through relay_; the leader's executor_ carries
  // them out.
  std::unique_ptr<CommandRelay> relay_;
  std::unique_ptr<PublishedFleet> published_fleet_;
  std::unique_ptr<ByRole> by_role_;
  std::unique_ptr<FollowingRollouts> following_rollouts_;
  std::unique_ptr<FleetPublisher> publisher_;
  std::unique_ptr<CommandExecutor> executor_;
  std::atomic<bool> leading_{false};
  // The fleet view that Control and the dashboard show.
  const FleetView* shown_fleet() const {
    return by_role_ ? static_cast<const FleetView*>(by_role_.get())
                    : fleet_.get();
  }
  RolloutController* shown_rollouts() const {
    return following_rollouts_
               ? static_cast<RolloutController*>(following_rollouts_.get())
               : manager_.get();
  }
  ServiceStates* shown_services() const {
    return by_role_ ? static_cast<ServiceStates*>(by_role_.get())
                    : convergence_.get();
  }
  std::unique_ptr<ControlService> control_;
  std::unique_ptr<ControlServer> control_server_;
  std::unique_ptr<WebhookServer> webhook_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<DashboardAuth> dashboard_auth_;
  std::string dashboard_tls_pem_;  // cert + key served now
  std::unique_ptr<DashboardServer> dashboard_;
  std::unique_ptr<LeaderRole> leader_;  // with etcd only
  // leader_ for the relay's Control threads, once it campaigns.
  std::atomic<LeaderRole*> leader_role_{nullptr};
};

bool Receiver::LoadTls() {
  absl::StatusOr<TlsMaterial> tls = LoadTlsMaterial(config_->tls);
  if (!tls.ok()) {
    LogError("cannot read TLS files", {{"error", tls.status().ToString()}});
    return false;
  }
  tls_ = *std::move(tls);
  return true;
}

bool Receiver::OpenJournal() {
  if (ha()) return OpenEtcdJournal();
  {
    std::error_code ec;  // SqliteJournal::Open reports what matters
    std::filesystem::create_directories(DirName(config_->state), ec);
  }
  absl::StatusOr<std::unique_ptr<SqliteJournal>> journal =
      SqliteJournal::Open(config_->state);
  if (!journal.ok()) {
    std::cerr << kProgram << ": " << journal.status().message() << "\n";
    LogError(
        "cannot open the journal",
        {{"state", config_->state}, {"error", journal.status().ToString()}});
    return false;
  }
  journal_ = *std::move(journal);
  metered_journal_ =
      std::make_unique<MeteredJournal>(journal_.get(), &metrics_);
  return true;
}

bool Receiver::OpenEtcdJournal() {
  const EtcdConfig& e = config_->etcd;
  EtcdClientOptions options;
  options.endpoints = e.endpoints;
  options.ca_file = e.tls_ca;
  options.cert_file = e.tls_cert;
  options.key_file = e.tls_key;
  options.request_timeout = absl::Seconds(e.request_timeout_seconds);
  absl::StatusOr<std::unique_ptr<EtcdClientGrpc>> client =
      EtcdClientGrpc::Create(options);
  if (!client.ok()) {
    LogError("cannot use etcd", {{"error", client.status().ToString()}});
    return false;
  }
  etcd_ = *std::move(client);
  auto journal = std::make_unique<EtcdJournal>(etcd_.get(), e.prefix);
  etcd_journal_ = journal.get();
  journal_ = std::move(journal);
  metered_journal_ =
      std::make_unique<MeteredJournal>(journal_.get(), &metrics_);
  return true;
}

bool Receiver::StartNotifications() {
  notifier_ = std::make_unique<CurlNotifier>(absl::Seconds(10));
  NotificationSenderOptions options;
  options.journal = metered_journal_.get();
  options.notifier = notifier_.get();
  options.metrics = &metrics_;
  notifications_ =
      std::make_unique<NotificationSender>(options, config_->notify);
  if (!ha()) notifications_->Start();  // only the leader sends
  return true;
}

bool Receiver::StartRollouts() {
  pool_ = std::make_unique<AgentClientPoolGrpc>(config_->agents, tls_,
                                                config_->agent_call);
  desired_ = std::make_unique<DesiredStates>(metered_journal_.get());
  if (ha()) {
    // Read once leading (StartLeading): a follower starts without etcd.
  } else if (absl::Status s = desired_->Load(ServiceNames(*config_)); !s.ok()) {
    LogError("cannot load desired digests from the journal",
             {{"error", s.ToString()}});
    return false;
  }
  RolloutManagerOptions options;
  options.journal = metered_journal_.get();
  options.pool = pool_.get();
  options.metrics = &metrics_;
  options.desired = desired_.get();
  options.on_state_change = [this](const hoist::v1::Rollout& rollout) {
    if (ConvergenceEngine* c = convergence_feed_.load()) {
      c->RolloutChanged(rollout);
    }
    if (FleetPublisher* p = publisher_feed_.load()) p->Changed();
  };
  NotificationSender* notifications = notifications_.get();
  options.outbox_rows = [notifications](const hoist::v1::Rollout& rollout,
                                        hoist::v1::RolloutState previous) {
    return notifications->RowsForStateChange(rollout, previous);
  };
  options.on_outbox_written = [notifications] { notifications->Wake(); };
  options.follower = ha();
  manager_ = std::make_unique<RolloutManager>(options, config_);
  if (ha()) {
    // RolloutManager::Lead takes the journal's rollouts up once leading.
  } else if (absl::Status s = manager_->Recover(); !s.ok()) {
    LogError("cannot recover rollouts from the journal",
             {{"error", s.ToString()}});
    return false;
  }
  manager_->Start();
  return true;
}

bool Receiver::StartFleet() {
  FleetWatcherOptions options;
  options.pool = pool_.get();
  fleet_ = std::make_unique<FleetWatcher>(options);
  // Only the leader opens the agents' streams (StartLeading).
  if (!ha()) fleet_->Update(config_->agents, ContainerNamesByAgent(*config_));
  return true;
}

bool Receiver::StartConvergence() {
  ConvergenceOptions options;
  options.fleet = fleet_.get();
  options.desired = desired_.get();
  options.journal = metered_journal_.get();
  options.metrics = &metrics_;
  options.active_rollout_of = [this](const std::string& service) {
    return manager_->ActiveRolloutOf(service);
  };
  options.start_rollout = [this](const DeployIntent& intent) {
    return manager_->StartRollout(intent);
  };
  NotificationSender* notifications = notifications_.get();
  options.notify = [notifications](
                       const std::string& event, const std::string& service,
                       const std::string& agent, const std::string& detail) {
    absl::Status s = notifications->Enqueue(notifications->RowsFor(
        event, service, hoist::v1::Rollout(), agent, detail));
    if (!s.ok()) {
      LogError(
          "notification not journaled",
          {{"event", event}, {"service", service}, {"error", s.ToString()}});
    }
  };
  // A follower's view of the hosts must not wait for the publisher's
  // periodic look when only the engine's verdict changed.
  options.shown_changed = [this] {
    if (FleetPublisher* p = publisher_feed_.load()) p->Changed();
  };
  convergence_ = std::make_unique<ConvergenceEngine>(options, config_);
  ConvergenceEngine* engine = convergence_.get();
  fleet_->SetAgentChangedCallback([this, engine](const std::string& agent) {
    engine->AgentChanged(agent);
    if (FleetPublisher* p = publisher_feed_.load()) p->Changed();
  });
  convergence_feed_.store(engine);
  if (ha()) return true;  // loaded and started once leading
  if (absl::Status s = convergence_->Load(); !s.ok()) {
    LogError("cannot load converge attempts from the journal",
             {{"error", s.ToString()}});
    return false;
  }
  convergence_->Start();
  return true;
}

bool Receiver::StartFleetPublication() {
  if (!ha()) return true;
  CommandRelayOptions relay;
  relay.client = etcd_.get();
  relay.journal = etcd_journal_;
  relay.leader_name = [this]() -> std::optional<std::string> {
    LeaderRole* role = leader_role_.load();
    if (role == nullptr) return std::nullopt;
    return role->LeaderName();
  };
  relay.name = HostName();
  relay_ = std::make_unique<CommandRelay>(relay);
  published_fleet_ = std::make_unique<PublishedFleet>(
      etcd_journal_, [this] { return std::atomic_load(&config_); });
  by_role_ = std::make_unique<ByRole>([this] { return leading_.load(); },
                                      fleet_.get(), convergence_.get(),
                                      published_fleet_.get(), relay_.get());
  following_rollouts_ = std::make_unique<FollowingRollouts>(
      manager_.get(), etcd_journal_, [this] { return leading_.load(); },
      relay_.get());
  FleetPublisherOptions options;
  options.journal = etcd_journal_;
  options.fleet = fleet_.get();
  options.services = convergence_.get();
  publisher_ = std::make_unique<FleetPublisher>(options);
  CommandExecutorOptions executor;
  executor.client = etcd_.get();
  executor.journal = etcd_journal_;
  executor.rollouts = manager_.get();  // the leader's own paths
  executor.services = convergence_.get();
  executor_ = std::make_unique<CommandExecutor>(executor);
  return true;
}

bool Receiver::StartControlServer() {
  control_ = std::make_unique<ControlService>(shown_rollouts(), shown_fleet(),
                                              config_);
  control_->SetServiceStates(shown_services());
  control_->SetNotificationTester(notifications_.get());
  absl::StatusOr<std::unique_ptr<ControlServer>> server =
      ControlServer::Start(config_->control_listen, tls_, control_.get());
  if (!server.ok()) {
    LogError("cannot start the Control server",
             {{"error", server.status().ToString()}});
    return false;
  }
  control_server_ = *std::move(server);
  std::cerr << "control listening on " << HostPart(config_->control_listen)
            << ":" << control_server_->port() << std::endl;
  return true;
}

bool Receiver::StartWebhookServer() {
  WebhookServer::Options options;
  options.config = config_;
  options.submitter = manager_.get();
  options.metrics = &metrics_;
  absl::StatusOr<std::unique_ptr<WebhookServer>> webhook =
      WebhookServer::Start(std::move(options));
  if (!webhook.ok()) {
    LogError("cannot start the webhook server",
             {{"error", webhook.status().ToString()}});
    return false;
  }
  webhook_ = *std::move(webhook);
  std::cerr << "webhook listening on " << HostPart(config_->webhook.listen)
            << ":" << webhook_->port() << std::endl;
  return true;
}

bool Receiver::StartMetricsServer() {
  if (config_->metrics_listen.empty()) return true;  // optional
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start(config_->metrics_listen, &metrics_);
  if (!server.ok()) {
    LogError("cannot start the metrics server",
             {{"error", server.status().ToString()}});
    return false;
  }
  metrics_server_ = *std::move(server);
  std::cerr << "metrics listening on " << HostPart(config_->metrics_listen)
            << ":" << metrics_server_->port() << std::endl;
  return true;
}

// The dashboard's certificate and key as they are on disk ("" without TLS).
std::string DashboardTlsPem(const DashboardConfig& config) {
  if (config.tls_cert.empty()) return "";
  return absl::StrCat(ReadFile(config.tls_cert).value_or(""), "\n",
                      ReadFile(config.tls_key).value_or(""));
}

bool Receiver::StartDashboard() {
  const DashboardConfig& config = config_->dashboard;
  if (config.listen.empty()) return true;  // optional
  if (!dashboard_auth_) {
    dashboard_auth_ = std::make_unique<DashboardAuth>();
    absl::StatusOr<std::vector<DashboardToken>> tokens =
        LoadDashboardTokens(config.tokens_file);
    if (!tokens.ok()) {
      LogError("cannot read the dashboard tokens",
               {{"error", tokens.status().ToString()}});
      return false;
    }
    dashboard_auth_->SetTokens(*std::move(tokens));
  }
  DashboardServerOptions options;
  options.listen = config.listen;
  if (dashboard_) {  // a restart keeps the port it got
    options.listen =
        absl::StrCat(HostPart(config.listen), ":", dashboard_->port());
    dashboard_.reset();
  }
  options.tls_cert = config.tls_cert;
  options.tls_key = config.tls_key;
  options.auth = dashboard_auth_.get();
  options.rollouts = shown_rollouts();
  options.services = shown_services();
  options.fleet = shown_fleet();
  dashboard_tls_pem_ = DashboardTlsPem(config);
  absl::StatusOr<std::unique_ptr<DashboardServer>> server =
      DashboardServer::Start(std::move(options));
  if (!server.ok()) {
    LogError("cannot start the dashboard",
             {{"error", server.status().ToString()}});
    return false;
  }
  dashboard_ = *std::move(server);
  std::cerr << "dashboard listening on " << HostPart(config.listen) << ":"
            << dashboard_->port() << std::endl;
  return true;
}

// What followers report as the leader: this host and its Control port.
std::string ElectionName(int control_port) {
  return absl::StrCat(HostName(), ":", control_port);
}

bool Receiver::StartLeaderRole() {
  if (!ha()) return true;
  LeaderRoleOptions options;
  options.client = etcd_.get();
  options.journal = etcd_journal_;
  options.manager = manager_.get();
  options.metrics = &metrics_;
  options.prefix = config_->etcd.prefix;
  options.name = ElectionName(control_server_->port());
  options.lease_seconds = config_->etcd.lease_seconds;
  options.start_leading = [this] { return StartLeading(); };
  options.on_lost = [] { ExitAsDeposedLeader(); };
  absl::StatusOr<std::unique_ptr<LeaderRole>> role =
      LeaderRole::Start(std::move(options));
  if (!role.ok()) {
    LogError("cannot campaign for leadership",
             {{"error", role.status().ToString()}});
    return false;
  }
  leader_ = *std::move(role);
  leader_role_.store(leader_.get());
  return true;
}

absl::Status Receiver::StartLeading() {
  const std::shared_ptr<const ReceiverConfig> config =
      std::atomic_load(&config_);
  if (absl::Status s = desired_->Load(ServiceNames(*config)); !s.ok()) {
    return s;
  }
  if (absl::Status s = convergence_->Load(); !s.ok()) return s;
  convergence_->Start();
  fleet_->Update(config->agents, ContainerNamesByAgent(*config));
  notifications_->Start();
  leading_ = true;
  publisher_feed_.store(publisher_.get());
  publisher_->Start();
  executor_->Start();  // after leading_: its calls are the leader's own
  LogInfo(
      "leading: agent streams, convergence, notifications, the fleet "
      "view's publication and followers' control commands started");
  return absl::OkStatus();
}

void Receiver::ReloadDashboard() {
  if (!dashboard_) return;  // listen changes wait for a restart
  absl::StatusOr<std::vector<DashboardToken>> tokens =
      LoadDashboardTokens(config_->dashboard.tokens_file);
  if (tokens.ok()) {
    dashboard_auth_->SetTokens(*std::move(tokens));
  } else {
    LogError("dashboard tokens not reloaded; keeping the running ones",
             {{"error", tokens.status().ToString()}});
  }
  if (DashboardTlsPem(config_->dashboard) != dashboard_tls_pem_ &&
      !StartDashboard()) {
    LogError("the dashboard is down until the next reload");
  }
}

void Receiver::Reload() {
  absl::StatusOr<ReceiverConfig> next = LoadReceiverConfig(config_path_);
  if (!next.ok()) {
    LogError("reload refused: the config is invalid; keeping the running one",
             {{"error", std::string(next.status().message())}});
    return;
  }
  absl::StatusOr<TlsMaterial> next_tls = LoadTlsMaterial(next->tls);
  if (!next_tls.ok()) {
    LogError(
        "reload refused: cannot read TLS files; keeping the running config",
        {{"error", next_tls.status().ToString()}});
    return;
  }
  if (RestartOnlyChanged(*config_, *next)) {
    LogWarning("listen addresses and state take effect only after a restart");
  }
  std::atomic_store(&config_,
                    std::make_shared<const ReceiverConfig>(*std::move(next)));
  pool_->Update(config_->agents, *next_tls, config_->agent_call);
  // After the pool: agents whose client it replaced get a new stream (a
  // follower opens none).
  if (!ha() || (leader_ && leader_->IsLeader())) {
    fleet_->Update(config_->agents, ContainerNamesByAgent(*config_));
  }
  if (TlsChanged(*next_tls, tls_)) RestartControlServer(*next_tls);
  manager_->UpdateConfig(config_);
  if (absl::Status s = desired_->Retain(ServiceNames(*config_)); !s.ok()) {
    LogError("desired digests of removed services not forgotten",
             {{"error", s.ToString()}});
  }
  convergence_->UpdateConfig(config_);
  notifications_->UpdateSinks(config_->notify);
  control_->UpdateConfig(config_);
  webhook_->UpdateConfig(config_);
  ReloadDashboard();
  LogInfo("config reloaded",
          {{"config", config_path_},
           {"services", absl::StrCat(config_->services.size())},
           {"agents", absl::StrCat(config_->agents.size())},
           {"notify", absl::StrCat(config_->notify.size())}});
}

void Receiver::RestartControlServer(const TlsMaterial& next_tls) {
  // gRPC servers cannot swap their certificate: serve the new one on the
  // same port. Open watches are cut (clients re-watch); rollouts are not.
  const std::string listen = absl::StrCat(HostPart(config_->control_listen),
                                          ":", control_server_->port());
  control_server_->Shutdown();
  absl::StatusOr<std::unique_ptr<ControlServer>> restarted =
      ControlServer::Start(listen, next_tls, control_.get());
  if (restarted.ok()) {
    control_server_ = *std::move(restarted);
    tls_ = next_tls;
    LogInfo("control server certificate reloaded", {{"listen", listen}});
    return;
  }
  LogError(
      "control server restart with the new certificate failed; "
      "serving the old one",
      {{"error", restarted.status().ToString()}});
  restarted = ControlServer::Start(listen, tls_, control_.get());
  if (restarted.ok()) {
    control_server_ = *std::move(restarted);
  } else {
    LogError("control server is down until the next reload",
             {{"error", restarted.status().ToString()}});
  }
}

// DaemonSpec::serve: runs the receiver until SIGTERM or SIGINT.
int Serve(const DaemonFlags& flags, ReceiverConfig config) {
  Receiver receiver(flags.config, std::move(config));
  if (!receiver.Start()) return kDaemonExitCannotStart;
  LogInfo(
      "hoist-receiver started",
      {{"version", HoistVersion()},
       {"config", flags.config},
       {"journal", receiver.config().etcd.enabled()
                       ? absl::StrCat("etcd ", receiver.config().etcd.prefix)
                       : receiver.config().state}});
  const int sig = WaitForStopSignal([&receiver] { receiver.Reload(); });
  LogInfo("stopping", {{"signal", absl::StrCat(sig)}});
  receiver.Stop();
  LogInfo("hoist-receiver stopped");
  return kDaemonExitOk;
}

DaemonSpec<ReceiverConfig> ReceiverDaemon() {
  DaemonSpec<ReceiverConfig> spec;
  spec.program = kProgram;
  spec.summary =
      "Takes JFrog Artifactory webhooks and rolls the promoted images out to "
      "the node agents over mTLS gRPC; serves the Control API.";
  spec.load_config = LoadReceiverConfig;
  spec.serve = Serve;
  return spec;
}

}  // namespace
}  // namespace hoist::receiver

int main(int argc, char** argv) {
  return hoist::DaemonMain(hoist::receiver::ReceiverDaemon(), argc, argv);
}
