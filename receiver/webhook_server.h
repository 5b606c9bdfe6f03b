// The public webhook front end: an HTTP(S) server (cpp-httplib) that takes
// JFrog Artifactory webhooks and answers exactly per docs/design.md,
// "Webhook HTTP answers" (the step numbers below are that table's). It only
// authenticates, parses, matches rules and calls RolloutSubmitter::Submit;
// it never deploys inside a request.
//
// The decision logic is HandleWebhook(), a plain function over a
// WebhookRequest, so it is testable and fuzzable without sockets. The
// WebhookServer class is a thin adapter from httplib to it.
#ifndef HOIST_RECEIVER_WEBHOOK_SERVER_H_
#define HOIST_RECEIVER_WEBHOOK_SERVER_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "receiver/config.h"
#include "receiver/deploy_intent.h"

namespace httplib {
class Server;
}

namespace hoist::receiver {

class BufferedHttpServer;

// The parts of an HTTP request to the webhook path that the contract
// looks at. `auth_header` and `content_type` are empty when absent.
struct WebhookRequest {
  bool has_auth_header = false;
  std::string auth_header;   // X-JFrog-Event-Auth (any case of the name)
  std::string content_type;  // Content-Type, with any parameters
  std::string body;          // raw bytes as received (already size-limited)
};

struct WebhookResponse {
  int status = 500;
  std::string body;  // JSON object
};

// Steps 4..10 of the contract (auth, content type, parse, rules, submit) for
// a POST to the webhook path whose body fits max_body_bytes. Thread-safe as
// long as `submitter` is. `submitter` is called only for authentic events
// that match a service, once per matching service.
//
// When one event matches several services, one intent per service is
// submitted; the answer is 202 when at least one was accepted or joined
// (duplicate) and carries the first such service's "rollout_id", "service"
// and "duplicate", plus "rollouts": [{rollout_id, service, duplicate}, ...]
// for all of them (replayed ones appear as {service, ignored}). 503 when any
// Submit fails (a retry is safe: the ones that succeeded become duplicates).
WebhookResponse HandleWebhook(const ReceiverConfig& config,
                              RolloutSubmitter& submitter,
                              const WebhookRequest& request);

// What authentic, well-formed webhook bodies resolved to under one config:
// the DeployIntents of the services they match, keyed by the SHA-256 of the
// raw body. A repeated delivery (JFrog retries, duplicates) then skips JSON
// parsing and rule matching; it is still authenticated first and still
// submitted (so it is deduplicated, counted and joins its rollout exactly as
// before). Only requests that passed auth reach the cache, so a forger cannot
// fill it. Entries belong to one config (held here, so its address cannot be
// reused): a lookup or insert under another config empties the cache. At most
// `max_entries` bodies; emptied when full. Thread-safe.
class WebhookDecisionCache {
 public:
  // 256 bodies (well under 1 MB): retries and duplicates repeat recent
  // deliveries, and a long-running receiver's RSS stays flat.
  explicit WebhookDecisionCache(size_t max_entries = 256)
      : max_entries_(max_entries) {}

  // The intents for a body with this digest under `config`, or null.
  std::shared_ptr<const std::vector<DeployIntent>> Find(
      const std::shared_ptr<const ReceiverConfig>& config,
      const std::string& body_sha256) const;
  void Insert(const std::shared_ptr<const ReceiverConfig>& config,
              const std::string& body_sha256,
              std::vector<DeployIntent> intents);
  size_t size() const;
  // Lookups answered from the cache since construction.
  int64_t hits() const;

 private:
  const size_t max_entries_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const ReceiverConfig> config_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const std::vector<DeployIntent>>>
      entries_ ABSL_GUARDED_BY(mu_);
  mutable std::atomic<int64_t> hits_{0};
};

// HandleWebhook with a decision cache: the same answers, but a body whose
// digest is in `cache` under `config` is not parsed again, and a body that
// parsed and matched at least one service is added to it.
WebhookResponse HandleWebhook(
    const std::shared_ptr<const ReceiverConfig>& config,
    RolloutSubmitter& submitter, const WebhookRequest& request,
    WebhookDecisionCache& cache);

// Serves the webhook path, GET /healthz and GET /metrics.
//
// Thread-safety: UpdateConfig(), port() and Stop() may be called from any
// thread while requests are served.
class WebhookServer {
 public:
  struct Options {
    // Required. webhook.listen (host:port; port 0 picks a free port),
    // webhook.tls_cert/tls_key (HTTPS when both are set), secrets, auth,
    // max_body_bytes, path and services are read from it.
    std::shared_ptr<const ReceiverConfig> config;
    // Required, not owned; must outlive the server.
    RolloutSubmitter* submitter = nullptr;
    // Optional, not owned. Series: hoist_webhook_requests_total{code},
    // hoist_webhook_request_duration_seconds. When null the server keeps
    // a registry of its own (still served on /metrics).
    MetricsRegistry* metrics = nullptr;
    // Plain HTTP (BufferedHttpServer): threads answering requests framed
    // in their connection's buffer; idle connections hold none. Handlers
    // run on them, so this is also how many slow answers (journal commits)
    // may run before other ready requests wait.
    int event_threads = 4;
    // Plain HTTP: open connections at most; ones beyond are closed at once.
    // Needs as many file descriptors (the packaged unit allows 65536).
    int max_connections = 10000;
    // Most threads for connections served with blocking reads, a thread
    // each while its request is read and answered: every HTTPS connection
    // (httplib's TLS loop holds its thread until the connection closes) and
    // plain-HTTP requests that cannot be framed up front ("Expect:
    // 100-continue", chunked or large bodies). Started on demand, they exit
    // after 30 s idle.
    int threads = 2048;
    // listen() backlog for bursts of new connections.
    int backlog = 1024;
    int read_timeout_seconds = 5;
    int write_timeout_seconds = 5;
    // Requests per connection before the server closes it. 10000 was tried
    // and measured worse under a loaded machine (forged-flood p99 median
    // 36 ms vs 7.7 ms over 9 runs of bench/webhook_bench.sh), so it stays 100.
    int keep_alive_max_count = 100;
    int keep_alive_timeout_seconds = 5;
  };

  // Binds, then serves on a background thread. Returns once the socket
  // listens (connections are queued by the kernel even before the accept
  // loop runs). INVALID_ARGUMENT for a bad listen address or TLS files,
  // UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<WebhookServer>> Start(Options options);

  ~WebhookServer();  // Stop()s.
  WebhookServer(const WebhookServer&) = delete;
  WebhookServer& operator=(const WebhookServer&) = delete;

  // Stops accepting, finishes in-flight requests, joins. Idempotent. An
  // open idle connection can hold this up to keep_alive_timeout_seconds.
  void Stop();

  // The bound port (useful after listening on port 0).
  int port() const { return port_; }

  // Swaps the config used for later requests (SIGHUP: secrets, auth mode,
  // path, max_body_bytes, services). listen and TLS files are read only at
  // Start(); changing them needs a restart. `config` must not be null.
  void UpdateConfig(std::shared_ptr<const ReceiverConfig> config);

  std::shared_ptr<const ReceiverConfig> config() const;

 private:
  explicit WebhookServer(Options options);

  // The steps of Start(), in order. Each error is Start()'s.
  // http_: httplib's TLS server when webhook.tls is set (INVALID_ARGUMENT
  // when its files do not load), else a BufferedHttpServer.
  absl::Status CreateHttpServer();
  // Socket options, timeouts and keep-alive limits of http_. Returns where
  // the listening socket's descriptor is stored once bound (-1 before).
  std::shared_ptr<const std::atomic<int>> ConfigureConnections();
  // /healthz, /metrics and the webhook path (docs/design.md, "Webhook HTTP
  // answers"), with hoist_webhook_requests_total{code} and
  // hoist_webhook_request_duration_seconds.
  void InstallHandlers();
  // Binds host:port (port 0: any free one; UNAVAILABLE when it cannot),
  // re-listens with options_.backlog and starts thread_.
  absl::Status BindAndServe(const std::string& host, int port,
                            const std::atomic<int>& listen_fd);

  Options options_;
  std::unique_ptr<MetricsRegistry> own_metrics_;
  MetricsRegistry* metrics_ = nullptr;
  WebhookDecisionCache decisions_;
  std::unique_ptr<httplib::Server> http_;
  // http_ when it serves plain HTTP (the HTTPS server is httplib's own).
  BufferedHttpServer* buffered_ = nullptr;
  std::thread thread_;
  int port_ = 0;
  mutable absl::Mutex mu_;
  std::shared_ptr<const ReceiverConfig> config_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_WEBHOOK_SERVER_H_
