#include "nodeagent/agent_server.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "httplib.h"

namespace hoist::nodeagent {
namespace {

constexpr char kServiceName[] = "hoist.v1.NodeAgent";

std::chrono::system_clock::time_point FromNow(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

// mTLS credentials re-reading `files` every `refresh`: a client certificate
// is requested, required and verified against the watched CA.
std::shared_ptr<grpc::ServerCredentials> WatchedMutualTlsServerCredentials(
    const TlsFiles& files, absl::Duration refresh) {
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          files.key, files.cert, files.ca,
          static_cast<unsigned int>(
              std::max<int64_t>(1, absl::ToInt64Seconds(refresh))));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

int Milliseconds(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1,
                                              std::numeric_limits<int>::max()));
}

// Keepalive both ways (see AgentServer::Options): accept the receiver's
// pings on quiet streams, and ping it, without a cap on pings sent while no
// data flows.
void SetKeepalive(const AgentServer::Options& o, grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      Milliseconds(o.min_client_ping_interval));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                              Milliseconds(o.keepalive_time));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                              Milliseconds(o.keepalive_timeout));
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
}

}  // namespace

bool SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = address.substr(0, colon);
  if (host->front() == '[') {
    if (host->size() < 3 || host->back() != ']') return false;
    *host = host->substr(1, host->size() - 2);
  }
  return absl::SimpleAtoi(address.substr(colon + 1), port) && *port >= 0 &&
         *port <= 65535;
}

AgentServer::AgentServer(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<AgentServer>> AgentServer::Start(
    Options options) {
  if (options.handler == nullptr || options.authorizer == nullptr) {
    return absl::InvalidArgumentError(
        "AgentServer needs a handler and an authorizer");
  }
  std::string host;
  int requested_port = 0;
  if (!SplitHostPort(options.listen, &host, &requested_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad listen address \"", options.listen, "\""));
  }
  if (!options.docker_reachable) {
    AgentHandler* handler = options.handler;
    options.docker_reachable = [handler] {
      return handler->GetStatus().docker_reachable();
    };
  }
  std::unique_ptr<AgentServer> server(new AgentServer(std::move(options)));
  const Options& o = server->options_;
  server->service_ = std::make_unique<AgentService>(o.handler, o.authorizer,
                                                    o.metrics, o.containers);

  // Both are process-wide switches read by the ServerBuilder.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // Links grpc.health.v1's descriptors in, so that reflection can describe
  // the health service (see proto/CMakeLists.txt).
  grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::ServerBuilder builder;
  // A second agent on the same port must fail, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  SetKeepalive(o, &builder);
  builder.AddListeningPort(
      o.listen,
      o.tls_files.cert.empty()
          ? MutualTlsServerCredentials(o.tls)
          : WatchedMutualTlsServerCredentials(o.tls_files, o.tls_refresh),
      &server->port_);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    if (server->server_ != nullptr)
      server->server_->Shutdown(FromNow(absl::ZeroDuration()));
    return absl::UnavailableError(absl::StrCat("cannot listen on ", o.listen));
  }
  server->address_ =
      absl::StrCat(o.listen.substr(0, o.listen.rfind(':')), ":", server->port_);
  server->RefreshHealth();
  server->poller_ = std::thread([s = server.get()] { s->PollHealth(); });
  return server;
}

AgentServer::~AgentServer() { Shutdown(absl::Seconds(5)); }

void AgentServer::SetAuthorizer(
    std::shared_ptr<const RoleAuthorizer> authorizer) {
  service_->SetAuthorizer(std::move(authorizer));
}

void AgentServer::RefreshHealth() {
  const bool serving = options_.docker_reachable();
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    if (serving != last_serving_) {
      LogInfo(serving ? "docker reachable: serving"
                      : "docker unreachable: not serving");
    }
    last_serving_ = serving;
    grpc::HealthCheckServiceInterface* health =
        server_->GetHealthCheckService();
    if (health != nullptr) {
      health->SetServingStatus("", serving);
      health->SetServingStatus(kServiceName, serving);
    }
  }
  if (options_.metrics != nullptr) {
    options_.metrics
        ->GetGauge("hoist_agent_docker_reachable",
                   "1 when the local Docker Engine answers.")
        ->Set(serving ? 1 : 0);
  }
}

void AgentServer::PollHealth() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      // Wakes at once when Shutdown() sets stopping_.
      mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                           options_.health_poll_interval);
      if (stopping_) return;
    }
    RefreshHealth();
  }
}

void AgentServer::Shutdown(absl::Duration deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (poller_.joinable()) poller_.join();
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
  }
  if (server_ != nullptr) {
    server_->Shutdown(FromNow(deadline));
    server_->Wait();
  }
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, MetricsRegistry* registry,
    const std::function<bool()>& healthy) {
  std::string host;
  int port = 0;
  if (!SplitHostPort(listen, &host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad metrics_listen \"", listen, "\""));
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer());
  server->http_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *server->http_;
  // Scrapers are few and trusted (loopback by default): a small pool, short
  // timeouts, so idle sockets cannot pin threads for long.
  http.new_task_queue = [] { return new httplib::ThreadPool(4); };
  http.set_tcp_nodelay(true);
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  http.set_keep_alive_max_count(100);
  http.set_keep_alive_timeout(5);
  http.Get("/metrics",
           [registry](const httplib::Request&, httplib::Response& res) {
             res.set_content(registry->Render(),
                             "text/plain; version=0.0.4; charset=utf-8");
           });
  http.Get(
      "/healthz", [healthy](const httplib::Request&, httplib::Response& res) {
        const bool ok = !healthy || healthy();
        res.status = ok ? 200 : 503;
        res.set_content(ok ? "ok\n" : "docker unreachable\n", "text/plain");
      });
  if (port == 0) {
    server->port_ = http.bind_to_any_port(host);
  } else {
    server->port_ = http.bind_to_port(host, port) ? port : -1;
  }
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  server->thread_ =
      std::thread([h = server->http_.get()] { h->listen_after_bind(); });
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace hoist::nodeagent
