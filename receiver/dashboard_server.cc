#include "receiver/dashboard_server.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/log.h"
#include "httplib.h"
#include "receiver/control_service.h"
#include "receiver/dashboard_assets.h"
#include "receiver/dashboard_render.h"
#include "receiver/rollout_subscription.h"
#include "zlib.h"

namespace hoist::receiver {
namespace {

constexpr char kSessionCookie[] = "hoist_session";
constexpr char kHtml[] = "text/html; charset=utf-8";
constexpr char kJson[] = "application/json";
// How long an idle event stream waits before it writes a comment line: the
// only way to notice a client that went away.
constexpr absl::Duration kStreamKeepalive = absl::Seconds(15);
// Rows of a service page's history and of the rollouts page.
constexpr int kHistoryRows = 20;
constexpr int kRolloutRows = 200;

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

bool WantsJson(const httplib::Request& req) {
  return req.get_param_value("format") == "json";
}

// The value of cookie `name` in the request, or "".
std::string CookieValue(const httplib::Request& req, absl::string_view name) {
  const std::string header = req.get_header_value("Cookie");
  absl::string_view rest = header;
  while (!rest.empty()) {
    size_t end = rest.find(';');
    absl::string_view pair = rest.substr(0, end);
    rest = end == absl::string_view::npos ? "" : rest.substr(end + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    size_t eq = pair.find('=');
    if (eq != absl::string_view::npos && pair.substr(0, eq) == name) {
      return std::string(pair.substr(eq + 1));
    }
  }
  return "";
}

// `text` as a JSON string (control characters dropped).
std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) >= 0x20) {
      out.push_back(c);
    }
  }
  return out + "\"";
}

std::string JsonError(absl::string_view message) {
  return absl::StrCat("{\"error\":", JsonQuote(message), "}");
}

// One SSE message. `data` must be one line (compact JSON is).
std::string SseMessage(absl::string_view event, int64_t id,
                       absl::string_view data) {
  return absl::StrCat("id: ", id, "\nevent: ", event, "\ndata: ", data, "\n\n");
}

// The id after a client's Last-Event-ID (0 without one), so that ids stay
// increasing across reconnects.
int64_t FirstEventId(const httplib::Request& req) {
  int64_t last = 0;
  if (!absl::SimpleAtoi(req.get_header_value("Last-Event-ID"), &last) ||
      last < 0) {
    last = 0;
  }
  return last + 1;
}

// `data` gzip-compressed (zlib level 6), or nullopt when zlib fails.
std::optional<std::string> Gzip(absl::string_view data) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return std::nullopt;
  }
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const size_t size = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return std::nullopt;
  out.resize(size);
  return out;
}

// Sends `body`, gzip-compressed when the client takes gzip, never brotli:
// cpp-httplib compresses a set_content() body with brotli at its slowest
// quality whenever the client accepts br (0.5 s for a 1000-host fleet page,
// on a server thread), but sends a content provider's body of known length
// untouched.
void SendBody(const httplib::Request& req, httplib::Response& res,
              std::string body, const char* content_type) {
  res.set_header("Vary", "Accept-Encoding");
  if (body.size() >= 1024 &&
      absl::StrContains(req.get_header_value("Accept-Encoding"), "gzip")) {
    if (std::optional<std::string> gz = Gzip(body)) {
      body = *std::move(gz);
      res.set_header("Content-Encoding", "gzip");
    }
  }
  if (body.empty()) {
    res.set_content("", content_type);
    return;
  }
  auto shared = std::make_shared<const std::string>(std::move(body));
  res.set_content_provider(
      shared->size(), content_type,
      [shared](size_t offset, size_t length, httplib::DataSink& sink) {
        return sink.write(shared->data() + offset, length);
      });
}

// Applies one watch event to the whole rollout `current`.
void ApplyEvent(const hoist::v1::RolloutEvent& event,
                hoist::v1::Rollout* current) {
  if (event.has_rollout()) *current = event.rollout();
  if (!event.has_host()) return;
  for (hoist::v1::HostResult& host : *current->mutable_hosts()) {
    if (host.agent() == event.host().agent()) {
      host = event.host();
      return;
    }
  }
  *current->add_hosts() = event.host();
}

}  // namespace

// The fleet as the event streams send it: one poller compares the fleet's
// JSON with what it last saw, while any stream is open, and bumps `version`
// when it changed. While no stream is open the JSON is stale: a stream
// opened then waits for a fresh poll.
class FleetFeed {
 public:
  FleetFeed(ServiceStates* services, absl::Duration poll)
      : services_(services), poll_(poll), thread_([this] { Run(); }) {}
  ~FleetFeed() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  void Subscribe() {
    absl::MutexLock lock(&mu_);
    ++subscribers_;
  }
  void Unsubscribe() {
    absl::MutexLock lock(&mu_);
    if (--subscribers_ == 0) stale_ = true;
  }
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }

  // Waits up to `timeout` for a version newer than `seen`. Returns false when
  // the feed stops; otherwise fills `*version` and `*json` (unchanged on a
  // timeout).
  bool Next(int64_t seen, absl::Duration timeout, int64_t* version,
            std::string* json) {
    absl::MutexLock lock(&mu_);
    auto ready = [this, seen] {
      mu_.AssertHeld();
      return stopping_ || (!stale_ && version_ > seen);
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (stopping_) return false;
    *version = version_;
    if (!stale_ && version_ > seen) *json = json_;
    return true;
  }

 private:
  void Run() {
    absl::MutexLock lock(&mu_);
    for (;;) {
      auto wake = [this] {
        mu_.AssertHeld();
        return stopping_ || subscribers_ > 0;
      };
      mu_.Await(absl::Condition(&wake));
      if (stopping_) return;
      mu_.Unlock();
      hoist::v1::ListServicesResponse fleet;
      for (hoist::v1::Service& s : services_->ListServices()) {
        *fleet.add_services() = std::move(s);
      }
      std::string json = ToDashboardJson(fleet);
      mu_.Lock();
      if (json != json_ || version_ == 0) {
        json_ = std::move(json);
        ++version_;
      }
      stale_ = false;
      auto stop = [this] {
        mu_.AssertHeld();
        return stopping_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&stop), poll_);
    }
  }

  ServiceStates* const services_;
  const absl::Duration poll_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int subscribers_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;  // 0: never polled
  bool stale_ ABSL_GUARDED_BY(mu_) = true;
  std::string json_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the members above exist
};

// Wakes a rollout stream. Shared with the subscription's notify callback,
// which may run while the stream is being destroyed.
struct StreamSignal {
  absl::Mutex mu;
  int64_t wakeups ABSL_GUARDED_BY(mu) = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;  // the server stops
};

// One rollout's event stream: the watch's events applied to the whole
// rollout, sent as `rollout` messages (and `pull` for layer progress), then
// `end` once the rollout is final. A reconnect starts with the whole rollout
// as it is then (the watch queues it first), so nothing is lost.
class RolloutStream {
 public:
  explicit RolloutStream(int64_t first_id)
      : signal_(std::make_shared<StreamSignal>()), next_id_(first_id) {}
  std::shared_ptr<StreamSignal> signal() const { return signal_; }
  ~RolloutStream() {
    if (sub_) sub_->Cancel();
  }

  // Subscribes; NotFound for an unknown rollout.
  absl::Status Open(RolloutController* rollouts, const std::string& id) {
    std::shared_ptr<StreamSignal> signal = signal_;
    auto sub = rollouts->Watch(id, [signal] {
      absl::MutexLock lock(&signal->mu);
      ++signal->wakeups;
    });
    if (!sub.ok()) return sub.status();
    sub_ = *std::move(sub);
    return absl::OkStatus();
  }

  // Waits for events (up to kStreamKeepalive) and returns the messages to
  // write: "" on a quiet tick. Sets `*ended` with the last message.
  std::string NextChunk(bool* ended) {
    WaitForWakeup();
    std::string out;
    hoist::v1::RolloutEvent event;
    bool changed = false;
    bool done = false;
    while (sub_->Pop(&event, &done)) {
      ApplyEvent(event, &current_);
      changed = true;
      if (event.has_pull() && event.has_host()) {
        absl::StrAppend(
            &out,
            SseMessage("pull", next_id_++,
                       absl::StrCat(
                           "{\"agent\":", JsonQuote(event.host().agent()),
                           ",\"pull\":", ToDashboardJson(event.pull()), "}")));
      }
    }
    if (changed) {
      absl::StrAppend(
          &out, SseMessage("rollout", next_id_++, ToDashboardJson(current_)));
    }
    if (done) {
      absl::StrAppend(&out, SseMessage("end", next_id_++, "{}"));
      *ended = true;
    }
    return out;
  }

 private:
  void WaitForWakeup() {
    absl::MutexLock lock(&signal_->mu);
    auto ready = [this] {
      signal_->mu.AssertHeld();
      return signal_->wakeups != seen_wakeups_ || signal_->stopping;
    };
    signal_->mu.AwaitWithTimeout(absl::Condition(&ready), kStreamKeepalive);
    seen_wakeups_ = signal_->wakeups;
  }

  std::shared_ptr<StreamSignal> signal_;
  std::shared_ptr<RolloutSubscription> sub_;
  hoist::v1::Rollout current_;
  int64_t next_id_;
  int64_t seen_wakeups_ = 0;
};

class DashboardServer::Impl {
 public:
  explicit Impl(DashboardServerOptions options)
      : options_(std::move(options)),
        feed_(options_.services, options_.fleet_poll) {}

  absl::Status Listen();
  void Stop();
  int port() const { return port_; }

 private:
  // A request's session, or an answer sent: 303 to /login for a page, 401
  // for JSON.
  std::optional<DashboardSession> RequireSession(const httplib::Request& req,
                                                 httplib::Response& res);
  PageContext Context(const DashboardSession& session) const;
  void SendPage(const httplib::Request& req, httplib::Response& res,
                const DashboardSession& session,
                const google::protobuf::Message& message,
                const std::function<std::string(const PageContext&)>& render);
  void SendError(const httplib::Request& req, httplib::Response& res,
                 const DashboardSession* session, const absl::Status& status);

  void Routes();
  void PageRoutes();
  void LoginRoutes();
  void ActionRoutes();
  void StreamRoutes();
  void FleetPage(const httplib::Request& req, httplib::Response& res);
  void ServicePage(const httplib::Request& req, httplib::Response& res);
  void RolloutsPage(const httplib::Request& req, httplib::Response& res);
  void RolloutPage(const httplib::Request& req, httplib::Response& res);
  void AgentsPage(const httplib::Request& req, httplib::Response& res);
  void Login(const httplib::Request& req, httplib::Response& res);
  // Checks role and CSRF, asks for confirmation, then runs `action`.
  void Action(const httplib::Request& req, httplib::Response& res,
              absl::string_view label, const std::string& what,
              const std::vector<std::string>& fields,
              const std::function<absl::StatusOr<hoist::v1::Rollout>()>& run);
  void FleetEvents(const httplib::Request& req, httplib::Response& res);
  void RolloutEvents(const httplib::Request& req, httplib::Response& res);
  bool TakeStreamSlot();

  DashboardServerOptions options_;
  FleetFeed feed_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> streams_{0};
  // Open rollout streams, woken by Stop().
  absl::Mutex signals_mu_;
  std::vector<std::weak_ptr<StreamSignal>> signals_
      ABSL_GUARDED_BY(signals_mu_);
};

absl::Status DashboardServer::Impl::Listen() {
  if (!options_.tls_cert.empty()) {
    if (!ReadFile(options_.tls_cert).ok() || !ReadFile(options_.tls_key).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dashboard: cannot read TLS files ", options_.tls_cert,
                       " and ", options_.tls_key));
    }
    http_ = std::make_unique<httplib::SSLServer>(options_.tls_cert.c_str(),
                                                 options_.tls_key.c_str());
  } else {
    http_ = std::make_unique<httplib::Server>();
  }
  if (!http_->is_valid()) {
    return absl::InvalidArgumentError("dashboard: invalid TLS certificate/key");
  }
  const int threads = options_.max_streams + 8;
  http_->new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  http_->set_payload_max_length(size_t{64} * 1024);
  Routes();
  const size_t colon = options_.listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("dashboard.listen \"", options_.listen, "\": no port"));
  }
  const std::string host = options_.listen.substr(0, colon);
  const int port = std::atoi(options_.listen.c_str() + colon + 1);
  port_ = port == 0 ? http_->bind_to_any_port(host.c_str())
                    : (http_->bind_to_port(host.c_str(), port) ? port : -1);
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("dashboard: cannot listen on ", options_.listen));
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return absl::OkStatus();
}

void DashboardServer::Impl::Stop() {
  if (stopping_.exchange(true)) return;
  feed_.Stop();
  {
    absl::MutexLock lock(&signals_mu_);
    for (const std::weak_ptr<StreamSignal>& weak : signals_) {
      if (std::shared_ptr<StreamSignal> signal = weak.lock()) {
        absl::MutexLock signal_lock(&signal->mu);
        signal->stopping = true;
      }
    }
  }
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

std::optional<DashboardSession> DashboardServer::Impl::RequireSession(
    const httplib::Request& req, httplib::Response& res) {
  absl::StatusOr<DashboardSession> session =
      options_.auth->Lookup(CookieValue(req, kSessionCookie));
  if (session.ok()) return *std::move(session);
  if (WantsJson(req)) {
    res.status = 401;
    SendBody(req, res, JsonError("login required"), kJson);
  } else {
    res.status = 303;
    res.set_header("Location", "/login");
  }
  return std::nullopt;
}

PageContext DashboardServer::Impl::Context(
    const DashboardSession& session) const {
  PageContext ctx;
  ctx.user = session.name;
  ctx.can_act = session.role == DashboardRole::kOperator;
  ctx.csrf = session.csrf;
  return ctx;
}

void DashboardServer::Impl::SendPage(
    const httplib::Request& req, httplib::Response& res,
    const DashboardSession& session, const google::protobuf::Message& message,
    const std::function<std::string(const PageContext&)>& render) {
  if (WantsJson(req)) {
    SendBody(req, res, ToDashboardJson(message), kJson);
  } else {
    SendBody(req, res, render(Context(session)), kHtml);
  }
}

void DashboardServer::Impl::SendError(const httplib::Request& req,
                                      httplib::Response& res,
                                      const DashboardSession* session,
                                      const absl::Status& status) {
  res.status = HttpStatusOf(status);
  if (WantsJson(req)) {
    SendBody(req, res, JsonError(status.message()), kJson);
    return;
  }
  PageContext ctx = session ? Context(*session) : PageContext();
  SendBody(req, res, RenderError(ctx, res.status, status.message()), kHtml);
}

void DashboardServer::Impl::Routes() {
  // Pages are private and change: never cached. Nothing but our own assets
  // runs in them, and no other site may frame them.
  http_->set_default_headers(
      {{"Cache-Control", "no-store"},
       {"X-Content-Type-Options", "nosniff"},
       {"Referrer-Policy", "no-referrer"},
       {"X-Frame-Options", "DENY"},
       {"Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"}});
  http_->Get("/assets/dashboard.css",
             [](const httplib::Request& req, httplib::Response& res) {
               SendBody(req, res, kDashboardCss, "text/css; charset=utf-8");
             });
  http_->Get("/assets/dashboard.js", [](const httplib::Request& req,
                                        httplib::Response& res) {
    SendBody(req, res, kDashboardJs, "text/javascript; charset=utf-8");
  });
  LoginRoutes();
  PageRoutes();
  ActionRoutes();
  StreamRoutes();
}

void DashboardServer::Impl::PageRoutes() {
  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  http_->Get("/", [this](Req q, Res s) { FleetPage(q, s); });
  http_->Get(R"(/services/([A-Za-z0-9._-]+))",
             [this](Req q, Res s) { ServicePage(q, s); });
  http_->Get("/rollouts", [this](Req q, Res s) { RolloutsPage(q, s); });
  http_->Get(R"(/rollouts/([A-Za-z0-9._-]+))",
             [this](Req q, Res s) { RolloutPage(q, s); });
  http_->Get("/agents", [this](Req q, Res s) { AgentsPage(q, s); });
}

void DashboardServer::Impl::FleetPage(const httplib::Request& req,
                                      httplib::Response& res) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  hoist::v1::ListServicesResponse fleet;
  for (hoist::v1::Service& s : options_.services->ListServices()) {
    *fleet.add_services() = std::move(s);
  }
  SendPage(req, res, *session, fleet,
           [&](const PageContext& ctx) { return RenderFleet(ctx, fleet); });
}

void DashboardServer::Impl::ServicePage(const httplib::Request& req,
                                        httplib::Response& res) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  const std::string name = req.matches[1];
  absl::StatusOr<hoist::v1::Service> service =
      options_.services->GetService(name);
  if (!service.ok()) return SendError(req, res, &*session, service.status());
  std::vector<hoist::v1::Rollout> history;
  if (!WantsJson(req)) {
    auto rows = options_.rollouts->ListRollouts(name, kHistoryRows);
    if (!rows.ok()) return SendError(req, res, &*session, rows.status());
    history = *std::move(rows);
  }
  SendPage(req, res, *session, *service, [&](const PageContext& ctx) {
    return RenderService(ctx, *service, history);
  });
}

void DashboardServer::Impl::RolloutsPage(const httplib::Request& req,
                                         httplib::Response& res) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  const std::string service = req.get_param_value("service");
  const std::string state = req.get_param_value("state");
  hoist::v1::RolloutState wanted = hoist::v1::ROLLOUT_STATE_UNSPECIFIED;
  if (!state.empty() && !hoist::v1::RolloutState_Parse(state, &wanted)) {
    return SendError(req, res, &*session,
                     absl::InvalidArgumentError(absl::StrCat(
                         "unknown state \"", state,
                         "\"; use a name such as ROLLOUT_STATE_FAILED")));
  }
  auto rows = options_.rollouts->ListRollouts(service, kRolloutRows);
  if (!rows.ok()) return SendError(req, res, &*session, rows.status());
  hoist::v1::ListRolloutsResponse list;
  for (hoist::v1::Rollout& r : *rows) {
    if (state.empty() || r.state() == wanted) *list.add_rollouts() = r;
  }
  std::vector<hoist::v1::Rollout> shown(list.rollouts().begin(),
                                        list.rollouts().end());
  SendPage(req, res, *session, list, [&](const PageContext& ctx) {
    return RenderRollouts(ctx, shown, service, state);
  });
}

void DashboardServer::Impl::RolloutPage(const httplib::Request& req,
                                        httplib::Response& res) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  absl::StatusOr<hoist::v1::Rollout> rollout =
      options_.rollouts->GetRollout(req.matches[1]);
  if (!rollout.ok()) return SendError(req, res, &*session, rollout.status());
  SendPage(req, res, *session, *rollout, [&](const PageContext& ctx) {
    return RenderRollout(ctx, *rollout);
  });
}

void DashboardServer::Impl::AgentsPage(const httplib::Request& req,
                                       httplib::Response& res) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  const hoist::v1::ListAgentsResponse agents = ListAgentsFrom(*options_.fleet);
  SendPage(req, res, *session, agents,
           [&](const PageContext& ctx) { return RenderAgents(ctx, agents); });
}

void DashboardServer::Impl::LoginRoutes() {
  http_->Get("/login", [](const httplib::Request& req, httplib::Response& res) {
    SendBody(req, res, RenderLogin(""), kHtml);
  });
  http_->Post("/login", [this](const httplib::Request& req,
                               httplib::Response& res) { Login(req, res); });
  http_->Post("/logout", [this](const httplib::Request& req,
                                httplib::Response& res) {
    const std::string id = CookieValue(req, kSessionCookie);
    absl::StatusOr<DashboardSession> session = options_.auth->Lookup(id);
    if (session.ok() &&
        DashboardAuth::CsrfMatches(*session, req.get_param_value("csrf"))) {
      options_.auth->Logout(id);
    }
    res.status = 303;
    res.set_header("Set-Cookie", absl::StrCat(kSessionCookie,
                                              "=; Path=/; Max-Age=0; HttpOnly; "
                                              "SameSite=Strict"));
    res.set_header("Location", "/login");
  });
}

void DashboardServer::Impl::Login(const httplib::Request& req,
                                  httplib::Response& res) {
  absl::StatusOr<DashboardSession> session =
      options_.auth->Login(req.get_param_value("token"), req.remote_addr);
  if (!session.ok()) {
    res.status = HttpStatusOf(session.status());
    LogWarning("dashboard login refused",
               {{"peer", req.remote_addr},
                {"error", std::string(session.status().message())}});
    SendBody(req, res, RenderLogin(session.status().message()), kHtml);
    return;
  }
  const bool secure = !options_.tls_cert.empty();
  const int64_t max_age = absl::ToInt64Seconds(session->expires - absl::Now());
  res.status = 303;
  res.set_header(
      "Set-Cookie",
      absl::StrCat(kSessionCookie, "=", session->id,
                   "; Path=/; Max-Age=", std::max<int64_t>(max_age, 1),
                   "; HttpOnly; SameSite=Strict", secure ? "; Secure" : ""));
  res.set_header("Location", "/");
  LogInfo("dashboard login",
          {{"user", session->name},
           {"role", std::string(DashboardRoleName(session->role))}});
}

void DashboardServer::Impl::ActionRoutes() {
  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  RolloutController* rollouts = options_.rollouts;
  ServiceStates* services = options_.services;
  http_->Post(R"(/services/([A-Za-z0-9._-]+)/deploy)", [this, rollouts](Req q,
                                                                        Res s) {
    const std::string name = q.matches[1];
    const std::string tag = q.get_param_value("tag");
    const std::string digest = q.get_param_value("digest");
    Action(q, s, "Deploy",
           absl::StrCat("deploy ", digest.empty() ? tag : digest, " to ", name),
           {"tag", "digest"}, [=]() -> absl::StatusOr<hoist::v1::Rollout> {
             if (tag.empty() == digest.empty()) {
               return absl::InvalidArgumentError("give a tag or a digest");
             }
             return rollouts->ManualDeploy(name, digest, tag);
           });
  });
  http_->Post(R"(/services/([A-Za-z0-9._-]+)/rollback)",
              [this, rollouts](Req q, Res s) {
                const std::string name = q.matches[1];
                Action(q, s, "Roll back", absl::StrCat("roll back ", name), {},
                       [=] { return rollouts->RollbackService(name); });
              });
  http_->Post(R"(/services/([A-Za-z0-9._-]+)/converge)",
              [this, services](Req q, Res s) {
                const std::string name = q.matches[1];
                Action(q, s, "Converge", absl::StrCat("converge ", name), {},
                       [=] { return services->Converge(name); });
              });
  http_->Post(R"(/rollouts/([A-Za-z0-9._-]+)/resume)",
              [this, rollouts](Req q, Res s) {
                const std::string id = q.matches[1];
                Action(q, s, "Resume", absl::StrCat("resume rollout ", id), {},
                       [=] { return rollouts->Resume(id); });
              });
  http_->Post(R"(/rollouts/([A-Za-z0-9._-]+)/cancel)",
              [this, rollouts](Req q, Res s) {
                const std::string id = q.matches[1];
                Action(q, s, "Cancel", absl::StrCat("cancel rollout ", id), {},
                       [=] { return rollouts->Cancel(id); });
              });
}

void DashboardServer::Impl::Action(
    const httplib::Request& req, httplib::Response& res,
    absl::string_view label, const std::string& what,
    const std::vector<std::string>& fields,
    const std::function<absl::StatusOr<hoist::v1::Rollout>()>& run) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  if (session->role != DashboardRole::kOperator) {
    return SendError(
        req, res, &*session,
        absl::PermissionDeniedError("this action needs the operator role"));
  }
  if (!DashboardAuth::CsrfMatches(*session, req.get_param_value("csrf"))) {
    return SendError(req, res, &*session,
                     absl::PermissionDeniedError(
                         "missing or wrong CSRF token; reload the page"));
  }
  if (req.get_param_value("confirm") != "yes") {
    std::vector<std::pair<std::string, std::string>> values;
    values.reserve(fields.size());
    for (const std::string& f : fields) {
      values.emplace_back(f, req.get_param_value(f.c_str()));
    }
    SendBody(req, res,
             RenderConfirm(Context(*session), label, req.path, values, what),
             kHtml);
    return;
  }
  absl::StatusOr<hoist::v1::Rollout> rollout = run();
  if (!rollout.ok()) return SendError(req, res, &*session, rollout.status());
  LogInfo(
      "dashboard action",
      {{"user", session->name}, {"action", what}, {"rollout", rollout->id()}});
  if (WantsJson(req)) {
    SendBody(req, res, ToDashboardJson(*rollout), kJson);
    return;
  }
  res.status = 303;
  res.set_header("Location", absl::StrCat("/rollouts/", rollout->id()));
}

bool DashboardServer::Impl::TakeStreamSlot() {
  if (streams_.fetch_add(1) < options_.max_streams) return true;
  streams_.fetch_sub(1);
  return false;
}

void DashboardServer::Impl::StreamRoutes() {
  http_->Get("/events",
             [this](const httplib::Request& req, httplib::Response& res) {
               FleetEvents(req, res);
             });
  http_->Get(R"(/rollouts/([A-Za-z0-9._-]+)/events)",
             [this](const httplib::Request& req, httplib::Response& res) {
               RolloutEvents(req, res);
             });
}

void DashboardServer::Impl::FleetEvents(const httplib::Request& req,
                                        httplib::Response& res) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  if (!TakeStreamSlot()) {
    return SendError(req, res, &*session,
                     absl::UnavailableError("too many open event streams"));
  }
  feed_.Subscribe();
  // Every message carries the whole fleet, so a reconnect loses nothing: the
  // first message after it is the fleet as it is now.
  struct StreamState {
    int64_t seen_version = 0;
    int64_t next_id;
  };
  auto state = std::make_shared<StreamState>();
  state->next_id = FirstEventId(req);
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, state](size_t, httplib::DataSink& sink) {
        int64_t version = 0;
        std::string json;
        if (stopping_.load() ||
            !feed_.Next(state->seen_version, kStreamKeepalive, &version,
                        &json)) {
          return false;
        }
        std::string chunk = ": keepalive\n\n";
        if (!json.empty()) {
          chunk = SseMessage("services", state->next_id++, json);
          state->seen_version = version;
        }
        return sink.write(chunk.data(), chunk.size());
      },
      [this](bool) {
        feed_.Unsubscribe();
        streams_.fetch_sub(1);
      });
}

void DashboardServer::Impl::RolloutEvents(const httplib::Request& req,
                                          httplib::Response& res) {
  std::optional<DashboardSession> session = RequireSession(req, res);
  if (!session) return;
  auto stream = std::make_shared<RolloutStream>(FirstEventId(req));
  if (absl::Status s = stream->Open(options_.rollouts, req.matches[1]);
      !s.ok()) {
    return SendError(req, res, &*session, s);
  }
  if (!TakeStreamSlot()) {
    return SendError(req, res, &*session,
                     absl::UnavailableError("too many open event streams"));
  }
  {
    absl::MutexLock lock(&signals_mu_);
    signals_.erase(std::remove_if(signals_.begin(), signals_.end(),
                                  [](const std::weak_ptr<StreamSignal>& w) {
                                    return w.expired();
                                  }),
                   signals_.end());
    signals_.push_back(stream->signal());
  }
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, stream](size_t, httplib::DataSink& sink) {
        if (stopping_.load()) return false;
        bool ended = false;
        std::string chunk = stream->NextChunk(&ended);
        if (chunk.empty()) chunk = ": keepalive\n\n";
        if (!sink.write(chunk.data(), chunk.size())) return false;
        if (ended) sink.done();
        return true;
      },
      [this](bool) { streams_.fetch_sub(1); });
}

DashboardServer::DashboardServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<DashboardServer>> DashboardServer::Start(
    DashboardServerOptions options) {
  if (options.auth == nullptr || options.rollouts == nullptr ||
      options.services == nullptr || options.fleet == nullptr) {
    return absl::InvalidArgumentError("dashboard: missing a part");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status s = impl->Listen(); !s.ok()) return s;
  return std::unique_ptr<DashboardServer>(new DashboardServer(std::move(impl)));
}

DashboardServer::~DashboardServer() { Stop(); }

void DashboardServer::Stop() { impl_->Stop(); }

int DashboardServer::port() const { return impl_->port(); }

}  // namespace hoist::receiver
