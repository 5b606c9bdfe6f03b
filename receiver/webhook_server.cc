#include "receiver/webhook_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "receiver/buffered_http_server.h"
#include "receiver/elastic_task_queue.h"
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

// Steps 4 and 5 of the contract (auth, content type). Returns the answer
// when the request fails them.
std::optional<WebhookResponse> CheckAuthAndType(const WebhookConfig& webhook,
                                                const WebhookRequest& request) {
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
    const ReceiverConfig& config, const std::string& body) {
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
      LogError("webhook event could not be recorded",
               {{"service", intent.service},
                {"error", std::string(result.status().message())}});
      return Error(
          503, absl::StrCat("cannot record the event for service ",
                            intent.service, ": ", result.status().message()));
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

}  // namespace

WebhookResponse HandleWebhook(const ReceiverConfig& config,
                              RolloutSubmitter& submitter,
                              const WebhookRequest& request) {
  if (std::optional<WebhookResponse> refused =
          CheckAuthAndType(config.webhook, request)) {
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
  if (std::optional<WebhookResponse> refused =
          CheckAuthAndType(config->webhook, request)) {
    return *std::move(refused);
  }
  const std::string digest = Sha256Hex(request.body);
  if (std::shared_ptr<const std::vector<DeployIntent>> known =
          cache.Find(config, digest)) {
    return SubmitIntents(submitter, *known);
  }
  auto decided = Decide(*config, request.body);
  if (auto* answer = std::get_if<WebhookResponse>(&decided)) {
    return std::move(*answer);
  }
  auto& intents = std::get<std::vector<DeployIntent>>(decided);
  WebhookResponse answer = SubmitIntents(submitter, intents);
  cache.Insert(config, digest, std::move(intents));
  return answer;
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

void WebhookDecisionCache::Insert(
    const std::shared_ptr<const ReceiverConfig>& config,
    const std::string& body_sha256, std::vector<DeployIntent> intents) {
  auto value =
      std::make_shared<const std::vector<DeployIntent>>(std::move(intents));
  absl::MutexLock lock(&mu_);
  if (config_ != config || entries_.size() >= max_entries_) {
    entries_.clear();
    config_ = config;
  }
  entries_[body_sha256] = std::move(value);
}

size_t WebhookDecisionCache::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return entries_.size();
}

int64_t WebhookDecisionCache::hits() const {
  return hits_.load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------

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
  if (http_ != nullptr) http_->stop();
  // Closes idle keep-alive connections (they would otherwise hold the join
  // below for up to keep_alive_timeout_seconds) and waits for the handlers
  // running on the event threads, which call the submitter.
  if (buffered_ != nullptr) buffered_->Shutdown();
  if (thread_.joinable()) thread_.join();
}

namespace {

void SetJson(httplib::Response& res, const WebhookResponse& answer) {
  res.status = answer.status;
  res.set_content(answer.body, "application/json");
}

// The checks of the contract that need only the request line and headers
// (405, 404, 413, plus /healthz and /metrics). Returns true when `res` is
// the answer; false when the request is a POST to the webhook path whose
// body may be read.
bool AnswerFromHeaders(const ReceiverConfig& config, MetricsRegistry& metrics,
                       const httplib::Request& req, httplib::Response& res) {
  if (req.path == config.webhook.path) {
    if (req.method != "POST") {
      res.set_header("Allow", "POST");
      SetJson(res, Error(405, absl::StrCat("method ", req.method,
                                           " not allowed; use POST")));
      return true;
    }
    if (req.has_header("Content-Length")) {
      uint64_t length = 0;
      if (!absl::SimpleAtoi(req.get_header_value("Content-Length"), &length)) {
        res.set_header("Connection", "close");
        SetJson(res, Error(400, "bad Content-Length"));
        return true;
      }
      if (length > static_cast<uint64_t>(config.webhook.max_body_bytes)) {
        res.set_header("Connection", "close");
        SetJson(res, Error(413, absl::StrCat("body of ", length,
                                             " bytes is over the limit of ",
                                             config.webhook.max_body_bytes)));
        return true;
      }
    }
    return false;
  }
  if (req.path == "/healthz" || req.path == "/metrics") {
    if (req.method != "GET" && req.method != "HEAD") {
      res.set_header("Allow", "GET");
      SetJson(res, Error(405, absl::StrCat("method ", req.method,
                                           " not allowed; use GET")));
      return true;
    }
    res.status = 200;
    if (req.path == "/healthz") {
      res.set_content("ok\n", "text/plain");
    } else {
      res.set_content(metrics.Render(), "text/plain; version=0.0.4");
    }
    return true;
  }
  SetJson(res, Error(404, "not found"));
  return true;
}

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

// hoist_webhook_requests_total{code}. Each code's counter is looked up in the
// registry (under its lock) once, then kept here. Thread-safe.
class StatusCounter {
 public:
  explicit StatusCounter(MetricsRegistry* metrics) : metrics_(metrics) {}

  void Count(const httplib::Response& res) {
    const size_t code = static_cast<size_t>(res.status);
    Counter* counter =
        code < counters_.size() ? counters_[code].load() : nullptr;
    if (counter == nullptr) {
      counter = metrics_->GetCounter(
          "hoist_webhook_requests_total",
          "Requests to the webhook path, by HTTP status code.",
          {{"code", absl::StrCat(res.status)}});
      if (code < counters_.size()) counters_[code].store(counter);
    }
    counter->Increment();
  }

 private:
  MetricsRegistry* const metrics_;
  std::array<std::atomic<Counter*>, 600> counters_{};
};

// Reads the body of a POST into `body`, at most `max` bytes. The answer when
// it cannot be read whole (step 3 of docs/design.md, "Webhook HTTP
// answers": 413 once it grows past the limit, reading no further; 400 when
// unreadable); nullopt when `body` holds it.
std::optional<WebhookResponse> ReadBody(
    const httplib::ContentReader& content_reader, size_t max,
    std::string* body) {
  bool too_big = false;
  const bool read = content_reader([&](const char* data, size_t length) {
    if (body->size() + length > max) {
      too_big = true;
      return false;  // read no further
    }
    body->append(data, length);
    return true;
  });
  if (too_big) {
    return Error(413,
                 absl::StrCat("body is over the limit of ", max, " bytes"));
  }
  if (!read) return Error(400, "could not read the body");
  return std::nullopt;
}

// Answers a POST to the webhook path whose headers passed: reads the body,
// then HandleWebhook() (steps 4..10).
void AnswerWebhookPost(const std::shared_ptr<const ReceiverConfig>& config,
                       RolloutSubmitter& submitter, WebhookDecisionCache& cache,
                       const httplib::Request& req, httplib::Response& res,
                       const httplib::ContentReader& content_reader) {
  WebhookRequest request;
  if (std::optional<WebhookResponse> unread = ReadBody(
          content_reader, static_cast<size_t>(config->webhook.max_body_bytes),
          &request.body)) {
    // The rest of the body is unread: the connection cannot carry another
    // request.
    res.set_header("Connection", "close");
    SetJson(res, *unread);
    return;
  }
  request.has_auth_header = req.has_header(kWebhookAuthHeader);
  request.auth_header = req.get_header_value(kWebhookAuthHeader);
  request.content_type = req.get_header_value("Content-Type");
  SetJson(res, HandleWebhook(config, submitter, request, cache));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WebhookServer>> WebhookServer::Start(
    Options options) {
  if (options.config == nullptr || options.submitter == nullptr) {
    return absl::InvalidArgumentError(
        "WebhookServer needs a config and a submitter");
  }
  std::string host;
  int port = 0;
  if (!ParseListen(options.config->webhook.listen, &host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("webhook.listen \"", options.config->webhook.listen,
                     "\" must be host:port"));
  }
  std::unique_ptr<WebhookServer> server(new WebhookServer(std::move(options)));
  HOIST_RETURN_IF_ERROR(server->CreateHttpServer());
  std::shared_ptr<const std::atomic<int>> listen_fd =
      server->ConfigureConnections();
  server->InstallHandlers();
  HOIST_RETURN_IF_ERROR(server->BindAndServe(host, port, *listen_fd));
  const WebhookConfig& webhook = server->options_.config->webhook;
  LogInfo("webhook server listening",
          {{"listen", webhook.listen},
           {"port", absl::StrCat(server->port_)},
           {"tls", webhook.tls_cert.empty() ? "off" : "on"}});
  return server;
}

absl::Status WebhookServer::CreateHttpServer() {
  const WebhookConfig& webhook = options_.config->webhook;
  const int threads = std::max(options_.threads, 1);
  if (webhook.tls_cert.empty()) {
    BufferedHttpServer::Options buffered;
    buffered.event_threads = options_.event_threads;
    buffered.max_connections = options_.max_connections;
    buffered.blocking_threads = threads;
    auto plain = std::make_unique<BufferedHttpServer>(buffered);
    buffered_ = plain.get();
    http_ = std::move(plain);
    return absl::OkStatus();
  }
  auto ssl = std::make_unique<httplib::SSLServer>(webhook.tls_cert.c_str(),
                                                  webhook.tls_key.c_str());
  if (!ssl->is_valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load webhook TLS certificate ", webhook.tls_cert,
                     " and key ", webhook.tls_key));
  }
  // httplib's own TLS loop: a thread per open connection, on demand.
  ssl->new_task_queue = [threads] {
    return new ElasticTaskQueue(std::min(threads, 8), threads,
                                absl::Seconds(30));
  };
  http_ = std::move(ssl);
  return absl::OkStatus();
}

std::shared_ptr<const std::atomic<int>> WebhookServer::ConfigureConnections() {
  // httplib (0.11.4, compiled) listens with a backlog of 5: a burst of
  // connections overflows it and the kernel drops SYNs (a 1 s client
  // retransmit). Keep the listening socket to listen() again with a deep
  // backlog after binding.
  auto listen_fd = std::make_shared<std::atomic<int>>(-1);
  http_->set_socket_options([listen_fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd->store(sock);
  });
  http_->set_tcp_nodelay(true);
  http_->set_read_timeout(options_.read_timeout_seconds, 0);
  http_->set_write_timeout(options_.write_timeout_seconds, 0);
  http_->set_keep_alive_max_count(
      static_cast<size_t>(std::max(options_.keep_alive_max_count, 1)));
  http_->set_keep_alive_timeout(options_.keep_alive_timeout_seconds);
  return listen_fd;
}

void WebhookServer::InstallHandlers() {
  // Answers are counted before they are written, so that a client holding
  // its answer already sees it in /metrics.
  auto counter = std::make_shared<StatusCounter>(metrics_);
  Histogram* latency =
      metrics_->GetHistogram("hoist_webhook_request_duration_seconds",
                             "Time to answer an authenticated-or-not POST to "
                             "the webhook path, body read included.",
                             MetricsRegistry::DurationBuckets());
  // Answers before the body is read (and before "100 Continue" is sent).
  http_->set_expect_100_continue_handler(
      [this, counter](const httplib::Request& req, httplib::Response& res) {
        std::shared_ptr<const ReceiverConfig> config = this->config();
        if (!AnswerFromHeaders(*config, *metrics_, req, res)) return 100;
        // httplib writes this answer without adding a Content-Length; without
        // one the client would wait for the connection to close.
        res.set_header("Content-Length", absl::StrCat(res.body.size()));
        if (req.path == config->webhook.path) counter->Count(res);
        return res.status;
      });
  http_->set_pre_routing_handler(
      [this, counter](const httplib::Request& req, httplib::Response& res) {
        std::shared_ptr<const ReceiverConfig> config = this->config();
        if (!AnswerFromHeaders(*config, *metrics_, req, res)) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        if (req.path == config->webhook.path) counter->Count(res);
        return httplib::Server::HandlerResponse::Handled;
      });
  // Only a POST to the webhook path gets here (the pre-routing handler
  // answered everything else), so the pattern may match any path: the
  // path can change on UpdateConfig().
  http_->Post(".*", [this, counter, latency](
                        const httplib::Request& req, httplib::Response& res,
                        const httplib::ContentReader& content_reader) {
    const auto start = std::chrono::steady_clock::now();
    AnswerWebhookPost(config(), *options_.submitter, decisions_, req, res,
                      content_reader);
    counter->Count(res);
    latency->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  });
}

absl::Status WebhookServer::BindAndServe(const std::string& host, int port,
                                         const std::atomic<int>& listen_fd) {
  if (port == 0) {
    port = http_->bind_to_any_port(host);
    if (port < 0) port = -1;
  } else if (!http_->bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.config->webhook.listen));
  }
  if (const int fd = listen_fd.load(); fd >= 0) ::listen(fd, options_.backlog);
  port_ = port;
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return absl::OkStatus();
}

}  // namespace hoist::receiver
