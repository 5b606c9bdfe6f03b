#include "receiver/webhook_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "common/log.h"
#include "nlohmann/json.hpp"
#include "receiver/http_framing.h"
#include "receiver/payload.h"
#include "receiver/rules.h"
#include "receiver/webhook_auth.h"

namespace hoist::receiver {
namespace {

using Json = nlohmann::json;

std::string Dump(const Json& json) {
  // Replace invalid UTF-8 (e.g. from a hostile body echoed in a reason)
  // instead of throwing.
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

WebhookResponse JsonAnswer(int status, const char* key,
                           const std::string& text) {
  Json body = Json::object();
  body[key] = text;
  return {status, Dump(body)};
}

WebhookResponse Error(int status, const std::string& reason) {
  return JsonAnswer(status, "error", reason);
}

// "application/json" with optional parameters ("; charset=utf-8").
bool IsJsonContentType(absl::string_view content_type) {
  const absl::string_view media =
      content_type.substr(0, content_type.find(';'));
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(media),
                                "application/json");
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// A WebhookRequest whose parts live elsewhere (in a connection's buffers).
struct RequestView {
  bool has_auth_header = false;
  absl::string_view auth_header;
  absl::string_view content_type;
  absl::string_view body;
};

RequestView ViewOf(const WebhookRequest& request) {
  return {request.has_auth_header, request.auth_header, request.content_type,
          request.body};
}

using Intents = std::shared_ptr<const std::vector<DeployIntent>>;

// Steps 4 and 5 of the contract (auth, content type). Returns the answer
// when the request fails them.
std::optional<WebhookResponse> CheckAuthAndType(const WebhookConfig& webhook,
                                                const RequestView& request) {
  if (absl::Status auth = VerifyWebhookAuth(webhook.auth, webhook.secrets,
                                            request.has_auth_header,
                                            request.auth_header, request.body);
      !auth.ok()) {
    return Error(401, std::string(auth.message()));
  }
  if (!IsJsonContentType(request.content_type)) {
    return Error(415,
                 absl::StrCat("Content-Type must be application/json, got \"",
                              request.content_type, "\""));
  }
  return std::nullopt;
}

// Steps 6..8 (parse, rules): the intents to submit, or the answer (400, or
// 200 ignored) when there are none.
std::variant<WebhookResponse, std::vector<DeployIntent>> Decide(
    const ReceiverConfig& config, absl::string_view body) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(body);
  if (!event.ok()) return Error(400, std::string(event.status().message()));
  const RuleDecision decision = MatchServices(config, *event);
  if (!decision.bad_request.empty()) return Error(400, decision.bad_request);
  if (decision.services.empty())
    return JsonAnswer(200, "ignored", decision.ignored);
  std::vector<DeployIntent> intents;
  intents.reserve(decision.services.size());
  for (const ServiceConfig* service : decision.services) {
    intents.push_back(BuildDeployIntent(*service, *event));
  }
  return intents;
}

// Steps 9 and 10: submits every intent and maps the results to the answer.
WebhookResponse SubmitIntents(RolloutSubmitter& submitter,
                              const std::vector<DeployIntent>& intents) {
  std::vector<SubmitResult> results;
  for (const DeployIntent& intent : intents) {
    absl::StatusOr<SubmitResult> result = submitter.Submit(intent);
    if (!result.ok()) {
      // The body is the contract's fixed text: the cause (a disk error,
      // etcd's endpoints and gRPC status) is for the log, not for whoever
      // reaches the public port.
      LogError("webhook event could not be recorded",
               {{"service", intent.service},
                {"error", std::string(result.status().message())}});
      return Error(503, "journal unavailable");
    }
    if (result->service.empty()) result->service = intent.service;
    // A duplicate repeats an event already logged as accepted; it is counted
    // (hoist_webhook_duplicates_total, the journal's per-delivery count), so
    // its line is debug: a retry storm must not become a log storm.
    Log(result->kind == SubmitResult::Kind::kDuplicate ? LogLevel::kDebug
                                                       : LogLevel::kInfo,
        "webhook event submitted",
        {{"service", result->service},
         {"rollout_id", result->rollout_id},
         {"kind", result->kind == SubmitResult::Kind::kAccepted    ? "accepted"
                  : result->kind == SubmitResult::Kind::kDuplicate ? "duplicate"
                                                                   : "replay"},
         {"event", intent.summary}});
    results.push_back(*std::move(result));
  }

  const SubmitResult* first = nullptr;
  const SubmitResult* first_replay = nullptr;
  Json rollouts = Json::array();
  for (const SubmitResult& result : results) {
    Json entry = Json::object();
    entry["service"] = result.service;
    if (result.kind == SubmitResult::Kind::kReplay) {
      if (first_replay == nullptr) first_replay = &result;
      entry["ignored"] = absl::StrCat("replay of an event accepted at ",
                                      Rfc3339(result.first_accepted));
    } else {
      if (first == nullptr) first = &result;
      entry["rollout_id"] = result.rollout_id;
      entry["duplicate"] = result.kind == SubmitResult::Kind::kDuplicate;
    }
    rollouts.push_back(std::move(entry));
  }
  if (first == nullptr) {
    return JsonAnswer(200, "ignored",
                      absl::StrCat("replay of an event accepted at ",
                                   Rfc3339(first_replay->first_accepted)));
  }
  Json body = Json::object();
  body["rollout_id"] = first->rollout_id;
  body["service"] = first->service;
  body["duplicate"] = first->kind == SubmitResult::Kind::kDuplicate;
  if (results.size() > 1) body["rollouts"] = std::move(rollouts);
  return {202, Dump(body)};
}

// Steps 4..8 through `cache`: the answer, or the intents to submit (steps 9
// and 10). A body that parsed and matched a service is added to the cache.
std::variant<WebhookResponse, Intents> DecideCached(
    const std::shared_ptr<const ReceiverConfig>& config,
    const RequestView& request, WebhookDecisionCache& cache) {
  if (std::optional<WebhookResponse> refused =
          CheckAuthAndType(config->webhook, request)) {
    return *std::move(refused);
  }
  const std::string digest = Sha256Hex(request.body);
  if (Intents known = cache.Find(config, digest)) return known;
  auto decided = Decide(*config, request.body);
  if (auto* answer = std::get_if<WebhookResponse>(&decided)) {
    return std::move(*answer);
  }
  return cache.Insert(config, digest,
                      std::get<std::vector<DeployIntent>>(std::move(decided)));
}

}  // namespace

WebhookResponse HandleWebhook(const ReceiverConfig& config,
                              RolloutSubmitter& submitter,
                              const WebhookRequest& request) {
  if (std::optional<WebhookResponse> refused =
          CheckAuthAndType(config.webhook, ViewOf(request))) {
    return *std::move(refused);
  }
  auto decided = Decide(config, request.body);
  if (auto* answer = std::get_if<WebhookResponse>(&decided)) {
    return std::move(*answer);
  }
  return SubmitIntents(submitter, std::get<std::vector<DeployIntent>>(decided));
}

WebhookResponse HandleWebhook(
    const std::shared_ptr<const ReceiverConfig>& config,
    RolloutSubmitter& submitter, const WebhookRequest& request,
    WebhookDecisionCache& cache) {
  auto decided = DecideCached(config, ViewOf(request), cache);
  if (auto* answer = std::get_if<WebhookResponse>(&decided)) {
    return std::move(*answer);
  }
  return SubmitIntents(submitter, *std::get<Intents>(decided));
}

std::shared_ptr<const std::vector<DeployIntent>> WebhookDecisionCache::Find(
    const std::shared_ptr<const ReceiverConfig>& config,
    const std::string& body_sha256) const {
  absl::ReaderMutexLock lock(&mu_);
  if (config_ != config) return nullptr;
  auto it = entries_.find(body_sha256);
  if (it == entries_.end()) return nullptr;
  hits_.fetch_add(1, std::memory_order_relaxed);
  return it->second;
}

std::shared_ptr<const std::vector<DeployIntent>> WebhookDecisionCache::Insert(
    const std::shared_ptr<const ReceiverConfig>& config,
    const std::string& body_sha256, std::vector<DeployIntent> intents) {
  auto value =
      std::make_shared<const std::vector<DeployIntent>>(std::move(intents));
  absl::MutexLock lock(&mu_);
  if (config_ != config || entries_.size() >= max_entries_) {
    entries_.clear();
    config_ = config;
  }
  entries_[body_sha256] = value;
  return value;
}

size_t WebhookDecisionCache::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return entries_.size();
}

int64_t WebhookDecisionCache::hits() const {
  return hits_.load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------

namespace {

// A peer address may hold 1/kUnauthenticatedShares of
// webhook.max_unauthenticated_bytes.
constexpr int64_t kUnauthenticatedShares = 16;

bool ParseListen(const std::string& listen, std::string* host, int* port) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return !host->empty() && absl::SimpleAtoi(listen.substr(colon + 1), port) &&
         *port >= 0 && *port <= 65535;
}

HttpAnswer ToHttp(const WebhookResponse& response) {
  HttpAnswer answer;
  answer.status = response.status;
  answer.body = response.body;
  return answer;
}

// A 405 naming the method allowed.
HttpAnswer MethodNotAllowed(absl::string_view method, const char* allowed) {
  HttpAnswer answer = ToHttp(Error(
      405, absl::StrCat("method ", method, " not allowed; use ", allowed)));
  answer.extra_headers = absl::StrCat("Allow: ", allowed, "\r\n");
  return answer;
}

// GET /healthz: the process serves (docs/design.md, "Webhook HTTP answers").
HttpAnswer Healthz(absl::string_view method) {
  if (method != "GET" && method != "HEAD") {
    return MethodNotAllowed(method, "GET");
  }
  HttpAnswer answer;
  answer.status = 200;
  answer.content_type = "text/plain";
  answer.body = "ok\n";
  return answer;
}

// hoist_webhook_requests_total{code}. Each code's counter is looked up in the
// registry (under its lock) once, then kept here. Thread-safe.
class StatusCounter {
 public:
  explicit StatusCounter(MetricsRegistry* metrics) : metrics_(metrics) {}

  void Count(int status) {
    const size_t code = static_cast<size_t>(status);
    Counter* counter =
        code < counters_.size() ? counters_[code].load() : nullptr;
    if (counter == nullptr) {
      counter = metrics_->GetCounter(
          "hoist_webhook_requests_total",
          "Requests to the webhook path, by HTTP status code.",
          {{"code", absl::StrCat(status)}});
      if (code < counters_.size()) counters_[code].store(counter);
    }
    counter->Increment();
  }

 private:
  MetricsRegistry* const metrics_;
  std::array<std::atomic<Counter*>, 600> counters_{};
};

}  // namespace

// Runs Submit calls (which may wait for a journal commit) off the event
// loops. Tasks run in the order queued. Thread-safe.
class WebhookServer::SubmitPool {
 public:
  explicit SubmitPool(int threads) {
    for (int i = 0; i < std::max(threads, 1); ++i) {
      threads_.emplace_back([this] { Work(); });
    }
  }
  ~SubmitPool() { Shutdown(); }
  SubmitPool(const SubmitPool&) = delete;
  SubmitPool& operator=(const SubmitPool&) = delete;

  void Enqueue(std::function<void()> task) {
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_) {
        tasks_.push_back(std::move(task));
        return;
      }
    }
    task();  // after Shutdown(): nothing else would run it
  }

  // Runs every task queued, then joins the threads. Idempotent.
  void Shutdown() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  void Work() {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](SubmitPool* pool) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool->mu_) {
              return pool->stopping_ || !pool->tasks_.empty();
            },
            this));
        if (tasks_.empty()) return;  // stopping, and nothing left
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// The adapter from EventHttpServer to the contract: the checks that need
// only the head, then HandleWebhook's steps, with Submit on the pool.
class WebhookServer::Handler : public HttpHandler {
 public:
  Handler(WebhookServer& server, MetricsRegistry* metrics)
      : server_(server),
        counter_(metrics),
        latency_(metrics->GetHistogram(
            "hoist_webhook_request_duration_seconds",
            "Time to answer a POST to the webhook path, from its head to its "
            "answer (body and journal commit included).",
            MetricsRegistry::DurationBuckets())) {}

  HeadVerdict OnHead(const RequestHead& head) override {
    std::shared_ptr<const ReceiverConfig> config = server_.config();
    const bool escaped = head.path.find('%') != absl::string_view::npos;
    const std::string decoded = escaped ? PercentDecodePath(head.path) : "";
    const absl::string_view path = escaped ? decoded : head.path;
    if (path == config->webhook.path) return WebhookHead(*config, head);
    if (path == "/healthz") return {Healthz(head.method)};
    return {ToHttp(Error(404, "not found"))};
  }

  void OnRequest(const RequestHead& head, absl::string_view body,
                 HttpResponder respond) override {
    std::shared_ptr<const ReceiverConfig> config = server_.config();
    const HeaderField* auth = head.Find(kWebhookAuthHeader);
    const HeaderField* type = head.Find("Content-Type");
    RequestView request;
    request.has_auth_header = auth != nullptr;
    request.auth_header = auth != nullptr ? auth->value : "";
    request.content_type = type != nullptr ? type->value : "";
    request.body = body;
    auto decided = DecideCached(config, request, server_.decisions_);
    if (auto* answer = std::get_if<WebhookResponse>(&decided)) {
      Finish(respond, *answer);
      return;
    }
    // Steps 9 and 10 may wait for the journal: off the event loop.
    server_.pool_->Enqueue(
        [this, intents = std::get<Intents>(std::move(decided)), respond] {
          Finish(respond, SubmitIntents(*server_.options_.submitter, *intents));
        });
  }

 private:
  // Steps 1, 3 and (token mode) 4 for the webhook path, from the head.
  HeadVerdict WebhookHead(const ReceiverConfig& config,
                          const RequestHead& head) {
    const auto start = std::chrono::steady_clock::now();
    const WebhookConfig& webhook = config.webhook;
    if (head.method != "POST") {
      counter_.Count(405);
      return {MethodNotAllowed(head.method, "POST")};
    }
    const uint64_t limit = static_cast<uint64_t>(webhook.max_body_bytes);
    std::optional<WebhookResponse> refused;
    if (head.has_content_length && head.content_length > limit) {
      refused = Error(413, absl::StrCat("body of ", head.content_length,
                                        " bytes is over the limit of ",
                                        webhook.max_body_bytes));
    } else if (webhook.auth == WebhookAuth::kToken) {
      // The token does not depend on the body: refuse before reading it.
      const HeaderField* auth = head.Find(kWebhookAuthHeader);
      if (absl::Status status =
              VerifyWebhookAuth(webhook.auth, webhook.secrets, auth != nullptr,
                                auth != nullptr ? auth->value : "", "");
          !status.ok()) {
        refused = Error(401, std::string(status.message()));
      }
    }
    if (!refused.has_value()) return {std::nullopt, limit};
    Count(refused->status, start);
    HttpAnswer answer = ToHttp(*refused);
    answer.close = refused->status == 413;
    return {std::move(answer)};
  }

  void Count(int status, std::chrono::steady_clock::time_point start) {
    // Counted before the answer is written, so that a client holding its
    // answer already sees it in /metrics.
    counter_.Count(status);
    latency_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  }

  void Finish(const HttpResponder& respond, const WebhookResponse& answer) {
    Count(answer.status, respond.head_time());
    respond.Respond(ToHttp(answer));
  }

  WebhookServer& server_;
  StatusCounter counter_;
  Histogram* const latency_;
};

WebhookServer::WebhookServer(Options options) : options_(std::move(options)) {
  config_ = options_.config;
  if (options_.metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
    metrics_ = own_metrics_.get();
  } else {
    metrics_ = options_.metrics;
  }
}

WebhookServer::~WebhookServer() { Stop(); }

std::shared_ptr<const ReceiverConfig> WebhookServer::config() const {
  absl::MutexLock lock(&mu_);
  return config_;
}

void WebhookServer::UpdateConfig(std::shared_ptr<const ReceiverConfig> config) {
  if (config == nullptr) return;
  absl::MutexLock lock(&mu_);
  config_ = std::move(config);
}

void WebhookServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // No request reaches the handler after StopAccepting(); the pool then
  // finishes the Submit calls already handed to it, whose answers the loops
  // send before Stop() closes everything.
  if (http_ != nullptr) http_->StopAccepting();
  if (pool_ != nullptr) pool_->Shutdown();
  if (http_ != nullptr) http_->Stop();
}

absl::StatusOr<std::unique_ptr<WebhookServer>> WebhookServer::Start(
    Options options) {
  if (options.config == nullptr || options.submitter == nullptr) {
    return absl::InvalidArgumentError(
        "WebhookServer needs a config and a submitter");
  }
  const WebhookConfig& webhook = options.config->webhook;
  EventHttpServer::Options http;
  if (!ParseListen(webhook.listen, &http.host, &http.port)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "webhook.listen \"", webhook.listen, "\" must be host:port"));
  }
  std::unique_ptr<WebhookServer> server(new WebhookServer(std::move(options)));
  server->pool_ = std::make_unique<SubmitPool>(server->options_.submit_threads);
  server->handler_ = std::make_unique<Handler>(*server, server->metrics_);
  http.tls_cert = webhook.tls_cert;
  http.tls_key = webhook.tls_key;
  http.handler = server->handler_.get();
  http.metrics = server->metrics_;
  http.event_threads = server->options_.event_threads;
  http.backlog = server->options_.backlog;
  http.request_timeout = absl::Seconds(webhook.request_timeout_seconds);
  http.idle_timeout = absl::Seconds(webhook.idle_timeout_seconds);
  http.max_connections = webhook.max_connections;
  http.max_connections_per_ip = webhook.max_connections_per_ip;
  http.max_unauthenticated_bytes = webhook.max_unauthenticated_bytes;
  // One client (peer address) may hold a sixteenth of it, and always one
  // whole body: a few addresses uploading forged bodies cannot fill it for
  // everyone else (docs/design.md, "Webhook connections"). Off with the
  // per-address connection cap (behind a proxy every client is the proxy).
  if (webhook.max_connections_per_ip > 0) {
    http.max_unauthenticated_bytes_per_ip =
        std::max(webhook.max_body_bytes,
                 webhook.max_unauthenticated_bytes / kUnauthenticatedShares);
  }
  absl::StatusOr<std::unique_ptr<EventHttpServer>> started =
      EventHttpServer::Start(std::move(http));
  if (!started.ok()) return started.status();
  server->http_ = *std::move(started);
  server->port_ = server->http_->port();
  LogInfo("webhook server listening",
          {{"listen", webhook.listen},
           {"port", absl::StrCat(server->port_)},
           {"tls", webhook.tls_cert.empty() ? "off" : "on"}});
  return server;
}

}  // namespace hoist::receiver
