// DashboardServer over real HTTP on loopback, with fakes behind it: access
// (sessions, roles, CSRF, confirmation), JSON twins, error statuses, the
// fleet event stream and HTTPS cookies. The browser test
// (tests/e2e/dashboard_browser_test.cc) covers the pages against a real
// receiver and agents.
#include "receiver/dashboard_server.h"

#include <stdlib.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/harness/harness.h"

namespace hoist::receiver {
namespace {

constexpr char kViewerToken[] = "viewer-secret-token";
constexpr char kOperatorToken[] = "operator-secret-token";
constexpr char kDigestV1[] =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
constexpr char kDigestV2[] =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";

class FakeServices : public ServiceStates {
 public:
  FakeServices() { SetRunning(kDigestV1); }
  void SetRunning(const std::string& digest) {
    absl::MutexLock lock(&mu_);
    service_.Clear();
    service_.set_name("web");
    service_.set_desired_digest(digest);
    hoist::v1::ServiceHost* h = service_.add_hosts();
    h->set_agent("h1");
    h->set_convergence(hoist::v1::CONVERGENCE_IN_SYNC);
    h->set_running_digest(digest);
  }
  std::vector<hoist::v1::Service> ListServices() override {
    absl::MutexLock lock(&mu_);
    return {service_};
  }
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (name != service_.name()) return absl::NotFoundError("no such service");
    return service_;
  }
  absl::StatusOr<hoist::v1::Rollout> Converge(const std::string&) override {
    return absl::FailedPreconditionError("nothing drifted");
  }

 private:
  absl::Mutex mu_;
  hoist::v1::Service service_ ABSL_GUARDED_BY(mu_);
};

class FakeRollouts : public RolloutController {
 public:
  std::atomic<int> rollbacks{0};
  absl::StatusOr<hoist::v1::Rollout> ManualDeploy(const std::string&,
                                                  const std::string&,
                                                  const std::string&) override {
    return absl::UnimplementedError("not in this test");
  }
  absl::StatusOr<hoist::v1::Rollout> RollbackService(
      const std::string& service) override {
    ++rollbacks;
    hoist::v1::Rollout r;
    r.set_id("r-rollback-1");
    r.set_service(service);
    return r;
  }
  absl::StatusOr<hoist::v1::Rollout> Resume(const std::string&) override {
    return absl::FailedPreconditionError("not paused");
  }
  absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) override {
    return absl::NotFoundError(absl::StrCat("no rollout ", id));
  }
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string&, int) override {
    return std::vector<hoist::v1::Rollout>{};
  }
  absl::StatusOr<std::shared_ptr<RolloutSubscription>> Watch(
      const std::string& id, std::function<void()>) override {
    return absl::NotFoundError(absl::StrCat("no rollout ", id));
  }
  absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string&) override {
    return absl::FailedPreconditionError("finished");
  }
};

class FakeFleet : public FleetView {
 public:
  std::vector<AgentState> Agents() const override {
    AgentState a;
    a.name = "h1";
    a.address = "10.0.0.1:7979";
    return {a};
  }
  std::optional<AgentState> Agent(const std::string&) const override {
    return std::nullopt;
  }
};

DashboardToken Token(const std::string& name, DashboardRole role,
                     const std::string& secret) {
  DashboardToken t;
  t.name = name;
  t.role = role;
  t.sha256_hex = Sha256Hex(secret);
  return t;
}

class DashboardServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auth_.SetTokens({Token("viewer-1", DashboardRole::kViewer, kViewerToken),
                     Token("ops-1", DashboardRole::kOperator, kOperatorToken)});
  }

  void Start(int max_streams = 4, const std::string& cert = "",
             const std::string& key = "") {
    DashboardServerOptions options;
    options.listen = "127.0.0.1:0";
    options.tls_cert = cert;
    options.tls_key = key;
    options.auth = &auth_;
    options.rollouts = &rollouts_;
    options.services = &services_;
    options.fleet = &fleet_;
    options.fleet_poll = absl::Milliseconds(20);
    options.max_streams = max_streams;
    auto server = DashboardServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  httplib::Client Client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(10);
    return c;
  }

  // Logs in; returns the session cookie ("hoist_session=...").
  std::string LogIn(const std::string& token) {
    auto res = Client().Post("/login", httplib::Params{{"token", token}});
    EXPECT_TRUE(res);
    if (!res) return "";
    EXPECT_EQ(res->status, 303);
    const std::string set = res->get_header_value("Set-Cookie");
    return set.substr(0, set.find(';'));
  }

  // The CSRF token a page's forms carry.
  std::string Csrf(const std::string& cookie) {
    auto res = Client().Get("/", {{"Cookie", cookie}});
    EXPECT_TRUE(res);
    if (!res) return "";
    const std::string key = "name=\"csrf\" value=\"";
    size_t at = res->body.find(key);
    if (at == std::string::npos) return "";
    at += key.size();
    return res->body.substr(at, res->body.find('"', at) - at);
  }

  DashboardAuth auth_;
  FakeServices services_;
  FakeRollouts rollouts_;
  FakeFleet fleet_;
  std::unique_ptr<DashboardServer> server_;
};

TEST_F(DashboardServerTest, WithoutSessionPagesRedirectAndJsonIs401) {
  Start();
  for (const char* path : {"/", "/services/web", "/rollouts", "/agents",
                           "/rollouts/r-1", "/events"}) {
    auto page = Client().Get(path);
    ASSERT_TRUE(page) << path;
    EXPECT_EQ(page->status, 303) << path;
    EXPECT_EQ(page->get_header_value("Location"), "/login") << path;
    auto json = Client().Get(absl::StrCat(path, "?format=json"));
    ASSERT_TRUE(json) << path;
    EXPECT_EQ(json->status, 401) << path;
    EXPECT_FALSE(absl::StrContains(json->body, "h1")) << json->body;
    EXPECT_FALSE(absl::StrContains(json->body, "1111")) << json->body;
  }
  auto login = Client().Get("/login");
  ASSERT_TRUE(login);
  EXPECT_EQ(login->status, 200);
  EXPECT_TRUE(absl::StrContains(login->body, "name=\"token\""));
  EXPECT_FALSE(absl::StrContains(login->body, "1111111111"));
}

TEST_F(DashboardServerTest, LoginSetsAStrictHttpOnlyCookie) {
  Start();
  auto bad = Client().Post("/login", httplib::Params{{"token", "wrong"}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
  EXPECT_TRUE(bad->get_header_value("Set-Cookie").empty());
  auto ok = Client().Post("/login", httplib::Params{{"token", kViewerToken}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 303);
  EXPECT_EQ(ok->get_header_value("Location"), "/");
  const std::string cookie = ok->get_header_value("Set-Cookie");
  EXPECT_TRUE(absl::StartsWith(cookie, "hoist_session=")) << cookie;
  EXPECT_TRUE(absl::StrContains(cookie, "HttpOnly")) << cookie;
  EXPECT_TRUE(absl::StrContains(cookie, "SameSite=Strict")) << cookie;
  EXPECT_FALSE(absl::StrContains(cookie, "Secure")) << cookie;  // plain HTTP
}

TEST_F(DashboardServerTest, RepeatedBadLoginsAreRateLimited) {
  Start();
  int last = 0;
  for (int i = 0; i < 10 && last != 429; ++i) {
    auto res = Client().Post("/login", httplib::Params{{"token", "nope"}});
    ASSERT_TRUE(res);
    last = res->status;
  }
  EXPECT_EQ(last, 429);
  // Limited even with the right token: a limited client cannot probe.
  auto res = Client().Post("/login", httplib::Params{{"token", kViewerToken}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429);
}

TEST_F(DashboardServerTest, PagesAndJsonTwins) {
  Start();
  const std::string cookie = LogIn(kViewerToken);
  auto page = Client().Get("/", {{"Cookie", cookie}});
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_TRUE(absl::StrContains(page->body, "cell-web--h1")) << page->body;
  EXPECT_EQ(page->get_header_value("Cache-Control"), "no-store");
  EXPECT_TRUE(absl::StrContains(
      page->get_header_value("Content-Security-Policy"), "script-src 'self'"));
  auto json = Client().Get("/?format=json", {{"Cookie", cookie}});
  ASSERT_TRUE(json);
  EXPECT_EQ(json->get_header_value("Content-Type"), "application/json");
  EXPECT_TRUE(absl::StrContains(json->body, "\"desired_digest\":\"sha256:1111"))
      << json->body;
  auto agents = Client().Get("/agents?format=json", {{"Cookie", cookie}});
  ASSERT_TRUE(agents);
  EXPECT_TRUE(absl::StrContains(agents->body, "\"address\":\"10.0.0.1:7979\""))
      << agents->body;
  auto missing = Client().Get("/services/nope", {{"Cookie", cookie}});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto bad_state =
      Client().Get("/rollouts?state=BOGUS&format=json", {{"Cookie", cookie}});
  ASSERT_TRUE(bad_state);
  EXPECT_EQ(bad_state->status, 400);
  EXPECT_TRUE(absl::StrContains(bad_state->body, "unknown state"));
  for (const char* asset : {"/assets/dashboard.css", "/assets/dashboard.js"}) {
    auto res = Client().Get(asset);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << asset;
    EXPECT_FALSE(res->body.empty()) << asset;
  }
}

// Pages go out gzip-compressed or plain, never brotli (cpp-httplib's
// brotli at its slowest quality took 0.5 s for a 1000-host fleet page).
TEST_F(DashboardServerTest, PagesAreGzippedNeverBrotli) {
  Start();
  const std::string cookie = LogIn(kViewerToken);
  auto both = Client().Get(
      "/", {{"Cookie", cookie}, {"Accept-Encoding", "gzip, deflate, br"}});
  ASSERT_TRUE(both);
  EXPECT_EQ(both->get_header_value("Content-Encoding"), "gzip");
  EXPECT_TRUE(absl::StrContains(both->body, "cell-web--h1"));  // decompressed
  auto br = Client().Get("/assets/dashboard.js", {{"Accept-Encoding", "br"}});
  ASSERT_TRUE(br);
  EXPECT_EQ(br->get_header_value("Content-Encoding"), "");
  EXPECT_TRUE(absl::StrContains(br->body, "EventSource"));
}

TEST_F(DashboardServerTest, ViewerCannotAct) {
  Start();
  const std::string cookie = LogIn(kViewerToken);
  const std::string csrf = Csrf(cookie);
  ASSERT_FALSE(csrf.empty());
  auto res = Client().Post("/services/web/rollback", {{"Cookie", cookie}},
                           httplib::Params{{"csrf", csrf}, {"confirm", "yes"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  EXPECT_EQ(rollouts_.rollbacks.load(), 0);
}

TEST_F(DashboardServerTest, OperatorActsWithCsrfAfterConfirming) {
  Start();
  const std::string cookie = LogIn(kOperatorToken);
  const std::string csrf = Csrf(cookie);
  ASSERT_FALSE(csrf.empty());
  // No CSRF token, or another one: refused.
  for (const std::string& forged : {std::string(), std::string(64, 'a')}) {
    auto res =
        Client().Post("/services/web/rollback", {{"Cookie", cookie}},
                      httplib::Params{{"csrf", forged}, {"confirm", "yes"}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 403);
  }
  // Without confirm=yes: a confirmation page, nothing done.
  auto ask = Client().Post("/services/web/rollback", {{"Cookie", cookie}},
                           httplib::Params{{"csrf", csrf}});
  ASSERT_TRUE(ask);
  EXPECT_EQ(ask->status, 200);
  EXPECT_TRUE(absl::StrContains(ask->body, "confirm")) << ask->body;
  EXPECT_TRUE(absl::StrContains(ask->body, "Roll back")) << ask->body;
  EXPECT_EQ(rollouts_.rollbacks.load(), 0);
  auto done =
      Client().Post("/services/web/rollback", {{"Cookie", cookie}},
                    httplib::Params{{"csrf", csrf}, {"confirm", "yes"}});
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 303);
  EXPECT_EQ(done->get_header_value("Location"), "/rollouts/r-rollback-1");
  EXPECT_EQ(rollouts_.rollbacks.load(), 1);
  // A failing action answers its status with the reason.
  auto converge =
      Client().Post("/services/web/converge", {{"Cookie", cookie}},
                    httplib::Params{{"csrf", csrf}, {"confirm", "yes"}});
  ASSERT_TRUE(converge);
  EXPECT_EQ(converge->status, 409);
  EXPECT_TRUE(absl::StrContains(converge->body, "nothing drifted"));
}

TEST_F(DashboardServerTest, LogoutEndsTheSession) {
  Start();
  const std::string cookie = LogIn(kViewerToken);
  const std::string csrf = Csrf(cookie);
  auto out = Client().Post("/logout", {{"Cookie", cookie}},
                           httplib::Params{{"csrf", csrf}});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->status, 303);
  auto after = Client().Get("/?format=json", {{"Cookie", cookie}});
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 401);
}

// Reads the fleet stream until `done` says stop (bounded by the read
// timeout); returns what arrived.
std::string ReadStream(int port, const std::string& cookie,
                       const std::function<bool(const std::string&)>& done) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(20);
  std::string got;
  c.Get("/events", {{"Cookie", cookie}}, [&](const char* data, size_t len) {
    got.append(data, len);
    return !done(got);
  });
  return got;
}

TEST_F(DashboardServerTest, FleetStreamSendsEveryChange) {
  Start();
  const std::string cookie = LogIn(kViewerToken);
  std::atomic<bool> first{false};
  std::string got;
  std::thread reader([&] {
    got = ReadStream(server_->port(), cookie, [&](const std::string& s) {
      if (absl::StrContains(s, "1111111111")) first = true;
      return absl::StrContains(s, "2222222222");
    });
  });
  ASSERT_TRUE(
      hoist::testing::WaitFor([&] { return first.load(); }, absl::Seconds(20)));
  services_.SetRunning(kDigestV2);
  reader.join();
  EXPECT_TRUE(absl::StrContains(got, "event: services\n")) << got;
  EXPECT_TRUE(absl::StrContains(got, "id: ")) << got;
  EXPECT_TRUE(absl::StrContains(got, "\"running_digest\":\"sha256:2222"))
      << got;
}

// Every message carries the whole fleet: a client that reconnects (sending
// Last-Event-ID, as EventSource does) gets the fleet as it is now (at most
// one poll later), with ids after the one it saw, so no change is lost.
TEST_F(DashboardServerTest, FleetStreamReconnectGetsTheCurrentFleet) {
  Start();
  const std::string cookie = LogIn(kViewerToken);
  const std::string first = ReadStream(
      server_->port(), cookie,
      [](const std::string& s) { return absl::StrContains(s, "\n\n"); });
  ASSERT_TRUE(absl::StrContains(first, "1111111111")) << first;
  const size_t at = first.find("id: ");
  ASSERT_NE(at, std::string::npos) << first;
  const int64_t seen = std::stoll(first.substr(at + 4));
  services_.SetRunning(kDigestV2);  // while disconnected
  httplib::Client c("127.0.0.1", server_->port());
  c.set_read_timeout(20);
  std::string again;
  c.Get("/events",
        {{"Cookie", cookie}, {"Last-Event-ID", std::to_string(seen)}},
        [&](const char* data, size_t len) {
          again.append(data, len);
          return !absl::StrContains(again, "2222222222");
        });
  EXPECT_TRUE(absl::StrContains(again, "2222222222")) << again;
  const size_t id_at = again.find("id: ");
  ASSERT_NE(id_at, std::string::npos) << again;
  EXPECT_GT(std::stoll(again.substr(id_at + 4)), seen) << again;
}

TEST_F(DashboardServerTest, StreamsBeyondTheCapGet503) {
  Start(/*max_streams=*/1);
  const std::string cookie = LogIn(kViewerToken);
  std::atomic<bool> open{false};
  std::atomic<bool> release{false};
  std::thread holder([&] {
    ReadStream(server_->port(), cookie, [&](const std::string& s) {
      if (absl::StrContains(s, "event: services")) open = true;
      return release.load();
    });
  });
  ASSERT_TRUE(
      hoist::testing::WaitFor([&] { return open.load(); }, absl::Seconds(20)));
  auto second = Client().Get("/events", {{"Cookie", cookie}});
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 503);
  release = true;
  services_.SetRunning(kDigestV2);  // a message, so the holder sees release
  holder.join();
}

TEST_F(DashboardServerTest, HttpsCookieIsSecure) {
  // Not the harness's MakeTempDir: this test needs no harness (and runs as
  // an unprivileged user in CI).
  std::string dir = absl::StrCat(::testing::TempDir(), "dashboard-tls.XXXXXX");
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const auto made = hoist::testing::RunCommand(absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-keyout ",
      dir, "/key.pem -out ", dir, "/cert.pem 2>&1"));
  ASSERT_EQ(made.exit_code, 0) << made.output;
  Start(4, dir + "/cert.pem", dir + "/key.pem");
  httplib::SSLClient c("127.0.0.1", server_->port());
  c.enable_server_certificate_verification(false);
  auto res = c.Post("/login", httplib::Params{{"token", kOperatorToken}});
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 303);
  EXPECT_TRUE(absl::StrContains(res->get_header_value("Set-Cookie"), "Secure"))
      << res->get_header_value("Set-Cookie");
  hoist::testing::RunCommand(absl::StrCat("rm -rf '", dir, "'"));
}

TEST(DashboardServerStartTest, BadListenOrTlsFilesAreRefused) {
  DashboardAuth auth;
  FakeServices services;
  FakeRollouts rollouts;
  FakeFleet fleet;
  DashboardServerOptions options;
  options.auth = &auth;
  options.rollouts = &rollouts;
  options.services = &services;
  options.fleet = &fleet;
  options.listen = "127.0.0.1";
  EXPECT_EQ(DashboardServer::Start(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.listen = "127.0.0.1:0";
  options.tls_cert = "/nonexistent/cert.pem";
  options.tls_key = "/nonexistent/key.pem";
  EXPECT_EQ(DashboardServer::Start(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hoist::receiver
