// The public webhook front end: takes JFrog Artifactory webhooks over HTTP(S)
// and answers exactly per docs/design.md, "Webhook HTTP answers" (the step
// numbers below are that table's). It only authenticates, parses, matches
// rules and calls RolloutSubmitter::Submit; it never deploys inside a
// request.
//
// The decision logic is HandleWebhook(), a plain function over a
// WebhookRequest, so it is testable and fuzzable without sockets. The
// WebhookServer class is a thin adapter from EventHttpServer
// (receiver/event_http_server.h) to it.
#ifndef HOIST_RECEIVER_WEBHOOK_SERVER_H_
#define HOIST_RECEIVER_WEBHOOK_SERVER_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "receiver/config.h"
#include "receiver/deploy_intent.h"
#include "receiver/event_http_server.h"

namespace hoist::receiver {

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
  // Stores `intents` for the body and returns them as stored.
  std::shared_ptr<const std::vector<DeployIntent>> Insert(
      const std::shared_ptr<const ReceiverConfig>& config,
      const std::string& body_sha256, std::vector<DeployIntent> intents);
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

// Serves the webhook path (POST) and GET /healthz (200 "ok") on
// webhook.listen, over HTTPS when webhook.tls is set; every other path is
// 404 (/metrics is served on metrics_listen only). Connections, framing,
// limits and deadlines are EventHttpServer's, configured from the webhook
// section (docs/design.md, "Webhook connections").
//
// The contract's checks that need only the head (405, 404, 413, and 401 in
// token mode) answer before any body byte is read. Auth, parsing and rules
// run on the event threads; RolloutSubmitter::Submit, which may wait for a
// journal commit, runs on `submit_threads` workers, and the answer is sent
// when it returns: the event loops never wait for the journal.
//
// Thread-safety: UpdateConfig(), config(), port() and Stop() may be called
// from any thread while requests are served.
class WebhookServer {
 public:
  struct Options {
    // Required. webhook.listen (host:port; port 0 picks a free port),
    // webhook.tls_cert/tls_key (HTTPS when both are set) and the connection
    // limits and timeouts are read from it at Start(); secrets, auth,
    // max_body_bytes, path and services for each request.
    std::shared_ptr<const ReceiverConfig> config;
    // Required, not owned; must outlive the server.
    RolloutSubmitter* submitter = nullptr;
    // Optional, not owned. Series: hoist_webhook_requests_total{code},
    // hoist_webhook_request_duration_seconds, and EventHttpServer's
    // connection series. When null the server keeps a registry of its own.
    MetricsRegistry* metrics = nullptr;
    // Event loops (EventHttpServer::Options::event_threads). More loops than
    // cores: a loop whose thread is descheduled stalls only its share of the
    // connections. With wrk -t2 -c32 forged requests on 2 busy cores (load
    // average 8-11), 4 loops answered 85k/s (p99 9-13 ms), 2 loops 46k/s
    // (p99 77-145 ms); on a quieter machine both did 100-115k/s.
    int event_threads = 4;
    // Threads running RolloutSubmitter::Submit: how many journal commits
    // may wait at once before further authentic deliveries queue.
    int submit_threads = 4;
    // listen() backlog for bursts of new connections.
    int backlog = 1024;
  };

  // Binds, then serves on background threads. Returns once the socket
  // listens. INVALID_ARGUMENT for a bad listen address or TLS files,
  // UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<WebhookServer>> Start(Options options);

  ~WebhookServer();  // Stop()s.
  WebhookServer(const WebhookServer&) = delete;
  WebhookServer& operator=(const WebhookServer&) = delete;

  // Stops accepting connections and requests, waits for the Submit calls
  // in progress or queued (their answers are sent as far as the sockets
  // take them), then closes every connection. Once it returns the submitter
  // is not called again. Idempotent.
  void Stop();

  // The bound port (useful after listening on port 0).
  int port() const { return port_; }

  // Swaps the config used for later requests (SIGHUP: secrets, auth mode,
  // path, max_body_bytes, services). listen, TLS files and the connection
  // limits are read only at Start(); changing them needs a restart.
  // `config` must not be null.
  void UpdateConfig(std::shared_ptr<const ReceiverConfig> config);

  std::shared_ptr<const ReceiverConfig> config() const;

 private:
  class Handler;
  class SubmitPool;

  explicit WebhookServer(Options options);

  Options options_;
  std::unique_ptr<MetricsRegistry> own_metrics_;
  MetricsRegistry* metrics_ = nullptr;
  WebhookDecisionCache decisions_;
  int port_ = 0;
  mutable absl::Mutex mu_;
  std::shared_ptr<const ReceiverConfig> config_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Declared so that http_ (which calls handler_, which uses pool_) goes
  // first.
  std::unique_ptr<SubmitPool> pool_;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<EventHttpServer> http_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_WEBHOOK_SERVER_H_
