// The webhook server over real HTTP on 127.0.0.1:0: every row of the table in
// docs/design.md, "Webhook HTTP answers", auth modes, rotation, body limits,
// and a fake RolloutSubmitter that records what the server submitted.
#include "receiver/webhook_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace hoist::receiver {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

constexpr char kSha[] =
    "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";
constexpr char kPath[] = "/webhooks/artifactory";
constexpr char kSecret[] = "s3cret-token";

std::string Event(const std::string& domain = "docker",
                  const std::string& repo = "staging",
                  const std::string& image = "helloworld",
                  const std::string& sha = kSha) {
  Json body = {{"domain", domain},
               {"event_type", "promoted"},
               {"data",
                {{"image_name", image},
                 {"name", "manifest.json"},
                 {"path", image + "/latest/manifest.json"},
                 {"repo_key", repo},
                 {"sha256", sha},
                 {"size", 949},
                 {"tag", "latest"}}}};
  return body.dump();
}

// Records intents; answers like the rollout manager, with an in-memory
// dedupe map keyed by dedupe_key.
class FakeSubmitter : public RolloutSubmitter {
 public:
  absl::StatusOr<SubmitResult> Submit(const DeployIntent& intent) override {
    absl::MutexLock lock(&mu_);
    intents_.push_back(intent);
    if (fail_) return absl::UnavailableError("journal is down");
    const std::string& key = intent.dedupe_key;
    auto it = seen_.find(key);
    if (it != seen_.end()) {
      SubmitResult result = it->second;
      result.kind = replay_ ? SubmitResult::Kind::kReplay
                            : SubmitResult::Kind::kDuplicate;
      return result;
    }
    SubmitResult result;
    result.kind = SubmitResult::Kind::kAccepted;
    result.rollout_id = absl::StrCat("r", ++next_id_);
    result.service = intent.service;
    result.first_accepted = absl::FromUnixSeconds(1700000000);
    seen_[key] = result;
    return result;
  }
  std::vector<DeployIntent> intents() const {
    absl::MutexLock lock(&mu_);
    return intents_;
  }
  void set_fail(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_ = fail;
  }
  void set_replay(bool replay) {
    absl::MutexLock lock(&mu_);
    replay_ = replay;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<DeployIntent> intents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, SubmitResult> seen_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool fail_ ABSL_GUARDED_BY(mu_) = false;
  bool replay_ ABSL_GUARDED_BY(mu_) = false;
};

ServiceConfig Service(const std::string& name, const std::string& image) {
  ServiceConfig s;
  s.name = name;
  s.image = "registry.example.com/prod/" + image;
  s.trigger.repo_key = "staging";
  s.trigger.image = image;
  s.trigger.tags = {"latest"};
  return s;
}

std::shared_ptr<ReceiverConfig> BaseConfig(
    WebhookAuth auth = WebhookAuth::kToken) {
  auto config = std::make_shared<ReceiverConfig>();
  config->webhook.listen = "127.0.0.1:0";
  config->webhook.path = kPath;
  config->webhook.secrets = {kSecret};
  config->webhook.auth = auth;
  config->webhook.max_body_bytes = 4096;
  config->services = {Service("hello", "helloworld"),
                      Service("other", "otherimage")};
  return config;
}

// ---- raw socket helpers (for limits and connection behaviour) -------------

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) > 0;
}

// Reads until the response's headers and Content-Length body are in, or
// EOF, or 10 s pass.
std::string ReadResponse(int fd) {
  std::string out;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    const size_t header_end = out.find("\r\n\r\n");
    if (header_end != std::string::npos) {
      const size_t cl = out.find("Content-Length: ");
      if (cl != std::string::npos && cl < header_end) {
        const size_t len = std::stoul(out.substr(cl + 16));
        if (out.size() >= header_end + 4 + len) break;
      }
    }
    if (!Readable(fd, 100)) continue;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

int StatusOf(const std::string& response) {
  if (response.size() < 12 || response.compare(0, 5, "HTTP/") != 0) return -1;
  return std::stoi(response.substr(9, 3));
}

// True when the server closes the connection within 10 s (after we stop
// sending).
bool ClosedByServer(int fd) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!Readable(fd, 100)) continue;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return true;
  }
  return false;
}

// ---- fixture ---------------------------------------------------------------

class WebhookServerTest : public ::testing::Test {
 protected:
  void StartServer(std::shared_ptr<ReceiverConfig> config) {
    WebhookServer::Options options;
    options.config = std::move(config);
    options.submitter = &submitter_;
    options.metrics = &metrics_;
    absl::StatusOr<std::unique_ptr<WebhookServer>> server =
        WebhookServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(10, 0);
  }
  void SetUp() override { StartServer(BaseConfig()); }

  httplib::Result Post(const std::string& body,
                       const std::string& auth = kSecret,
                       const std::string& content_type = "application/json",
                       const std::string& header_name = "X-JFrog-Event-Auth",
                       const std::string& path = kPath) {
    httplib::Headers headers;
    if (!auth.empty()) headers.emplace(header_name, auth);
    return client_->Post(path.c_str(), headers, body, content_type.c_str());
  }

  static Json BodyOf(const httplib::Result& result) {
    return Json::parse(result->body, nullptr, false);
  }

  FakeSubmitter submitter_;
  MetricsRegistry metrics_;
  std::unique_ptr<WebhookServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(WebhookServerTest, NewEventIsAcceptedAndSubmittedOnce) {
  auto result = Post(Event());
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 202) << result->body;
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  const Json body = BodyOf(result);
  EXPECT_EQ(body["rollout_id"], "r1");
  EXPECT_EQ(body["service"], "hello");
  EXPECT_EQ(body["duplicate"], false);
  EXPECT_FALSE(body.contains("rollouts"));
  const std::vector<DeployIntent> intents = submitter_.intents();
  ASSERT_EQ(intents.size(), 1u);
  EXPECT_EQ(intents[0].service, "hello");
  EXPECT_EQ(intents[0].image, "registry.example.com/prod/helloworld");
  EXPECT_EQ(intents[0].digest, std::string("sha256:") + kSha);
  EXPECT_EQ(intents[0].tag, "latest");
  EXPECT_EQ(intents[0].trigger, "webhook");
  EXPECT_EQ(
      intents[0].dedupe_key,
      std::string("docker|promoted|staging|helloworld/latest/manifest.json|") +
          kSha + "|hello");
}

TEST_F(WebhookServerTest, DuplicateWithinWindowJoinsTheFirstRollout) {
  ASSERT_EQ(Post(Event())->status, 202);
  auto again = Post(Event());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 202);
  const Json body = BodyOf(again);
  EXPECT_EQ(body["rollout_id"], "r1");
  EXPECT_EQ(body["service"], "hello");
  EXPECT_EQ(body["duplicate"], true);
}

// Stop() returns only once no handler runs: the caller may then destroy
// the submitter (the rollout manager) the handlers call.
TEST(WebhookServerStopTest, StopWaitsForASubmitInProgress) {
  class HeldSubmitter : public RolloutSubmitter {
   public:
    absl::StatusOr<SubmitResult> Submit(const DeployIntent&) override {
      entered.Notify();
      release.WaitForNotificationWithTimeout(absl::Seconds(30));
      finished.store(true);
      SubmitResult result;
      result.kind = SubmitResult::Kind::kAccepted;
      result.rollout_id = "r1";
      return result;
    }
    absl::Notification entered;
    absl::Notification release;
    std::atomic<bool> finished{false};
  } submitter;
  WebhookServer::Options options;
  options.config = BaseConfig();
  options.submitter = &submitter;
  auto server = WebhookServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_read_timeout(30, 0);
  auto post = std::async(std::launch::async, [&] {
    return client.Post(kPath, {{"X-JFrog-Event-Auth", kSecret}}, Event(),
                       "application/json");
  });
  ASSERT_TRUE(
      submitter.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  auto stop = std::async(std::launch::async, [&] {
    (*server)->Stop();
    return submitter.finished.load();
  });
  // Stop must still be waiting while the handler is held.
  EXPECT_EQ(stop.wait_for(std::chrono::milliseconds(500)),
            std::future_status::timeout);
  submitter.release.Notify();
  EXPECT_TRUE(stop.get()) << "Stop() returned while a handler was running";
  post.wait();
}

TEST(WebhookDecisionCacheTest, RepeatedBodySkipsParsingButNotAuthOrSubmit) {
  FakeSubmitter submitter;
  WebhookDecisionCache cache;
  std::shared_ptr<const ReceiverConfig> config = BaseConfig();
  WebhookRequest request;
  request.has_auth_header = true;
  request.auth_header = kSecret;
  request.content_type = "application/json";
  request.body = Event();

  WebhookResponse first = HandleWebhook(config, submitter, request, cache);
  EXPECT_EQ(first.status, 202) << first.body;
  EXPECT_EQ(Json::parse(first.body)["duplicate"], false);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.hits(), 0);

  // The repeat is answered from the cache, still submitted (so it is
  // deduplicated and joins the first rollout) with the same intent.
  WebhookResponse again = HandleWebhook(config, submitter, request, cache);
  EXPECT_EQ(again.status, 202) << again.body;
  const Json body = Json::parse(again.body);
  EXPECT_EQ(body["duplicate"], true);
  EXPECT_EQ(body["rollout_id"], "r1");
  EXPECT_EQ(cache.hits(), 1);
  std::vector<DeployIntent> intents = submitter.intents();
  ASSERT_EQ(intents.size(), 2u);
  EXPECT_EQ(intents[1].dedupe_key, intents[0].dedupe_key);
  EXPECT_EQ(intents[1].digest, std::string("sha256:") + kSha);

  // Auth comes first: the same body with a wrong secret never reaches it.
  WebhookRequest forged = request;
  forged.auth_header = "wrong";
  EXPECT_EQ(HandleWebhook(config, submitter, forged, cache).status, 401);
  EXPECT_EQ(cache.hits(), 1);
  EXPECT_EQ(submitter.intents().size(), 2u);

  // Another config (SIGHUP) decides afresh: here nothing matches any more.
  auto changed = BaseConfig();
  changed->services = {Service("other", "otherimage")};
  std::shared_ptr<const ReceiverConfig> reloaded = changed;
  WebhookResponse ignored = HandleWebhook(reloaded, submitter, request, cache);
  EXPECT_EQ(ignored.status, 200) << ignored.body;
  EXPECT_EQ(cache.hits(), 1);
  EXPECT_EQ(submitter.intents().size(), 2u);
}

TEST(WebhookDecisionCacheTest, IsBoundedAndKeepsOnlyMatchedBodies) {
  FakeSubmitter submitter;
  WebhookDecisionCache cache(/*max_entries=*/2);
  std::shared_ptr<const ReceiverConfig> config = BaseConfig();
  WebhookRequest request;
  request.has_auth_header = true;
  request.auth_header = kSecret;
  request.content_type = "application/json";
  request.body = Event("docker", "staging", "unknownimage");
  EXPECT_EQ(HandleWebhook(config, submitter, request, cache).status, 200);
  EXPECT_EQ(cache.size(), 0u);
  for (int i = 0; i < 5; ++i) {
    request.body = Event("docker", "staging", "helloworld",
                         std::string(63, 'a') + static_cast<char>('0' + i));
    EXPECT_EQ(HandleWebhook(config, submitter, request, cache).status, 202);
    EXPECT_LE(cache.size(), 2u);
  }
}

TEST_F(WebhookServerTest, ReplayAfterWindowIsIgnored) {
  ASSERT_EQ(Post(Event())->status, 202);
  submitter_.set_replay(true);
  auto replay = Post(Event());
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->status, 200);
  EXPECT_EQ(BodyOf(replay)["ignored"],
            "replay of an event accepted at 2023-11-14T22:13:20Z");
}

TEST_F(WebhookServerTest, SubmitFailureIs503) {
  submitter_.set_fail(true);
  auto result = Post(Event());
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 503);
  // docs/design.md's fixed body: the submitter's "journal is down" (in
  // production: etcd endpoints, disk paths) stays in the log.
  EXPECT_EQ(BodyOf(result)["error"], "journal unavailable");
  EXPECT_THAT(result->body, Not(HasSubstr("journal is down")));
}

TEST_F(WebhookServerTest, WrongMethodOnWebhookPathIs405) {
  for (const char* method : {"GET", "PUT", "DELETE", "PATCH"}) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0);
    // Even with a body over the limit: 405 comes first.
    ASSERT_TRUE(SendAll(
        fd, absl::StrCat(method, " ", kPath,
                         " HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n"
                         "X-JFrog-Event-Auth: ",
                         kSecret, "\r\n\r\n")));
    EXPECT_EQ(StatusOf(ReadResponse(fd)), 405) << method;
    close(fd);
  }
  auto get = client_->Get(kPath);
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_TRUE(BodyOf(get).contains("error"));
  EXPECT_TRUE(submitter_.intents().empty());
}

TEST_F(WebhookServerTest, OtherPathsAre404) {
  auto other = Post(Event(), kSecret, "application/json", "X-JFrog-Event-Auth",
                    "/webhooks/other");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  EXPECT_TRUE(BodyOf(other).contains("error"));
  auto root = client_->Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 404);
  EXPECT_TRUE(submitter_.intents().empty());
}

// /metrics is served on metrics_listen only (docs/design.md, "Webhook HTTP
// answers"); the series are in the registry the receiver serves there.
TEST_F(WebhookServerTest, HealthzIsServedAndMetricsAreCountedButNotServed) {
  auto health = client_->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  ASSERT_EQ(Post(Event())->status, 202);
  ASSERT_EQ(Post(Event(), "wrong")->status, 401);
  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 404);
  const std::string series = metrics_.Render();
  EXPECT_THAT(series,
              HasSubstr("hoist_webhook_requests_total{code=\"202\"} 1"));
  EXPECT_THAT(series,
              HasSubstr("hoist_webhook_requests_total{code=\"401\"} 1"));
  EXPECT_THAT(series,
              HasSubstr("hoist_webhook_request_duration_seconds_count 2"));
}

TEST_F(WebhookServerTest, ContentLengthOverLimitIs413WithoutReadingTheBody) {
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  // Headers only: the server must answer without waiting for the 10 MB.
  ASSERT_TRUE(SendAll(
      fd,
      absl::StrCat("POST ", kPath,
                   " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: 10000000\r\nX-JFrog-Event-Auth: ",
                   kSecret, "\r\n\r\n")));
  const std::string response = ReadResponse(fd);
  EXPECT_EQ(StatusOf(response), 413) << response;
  EXPECT_THAT(response, HasSubstr("\"error\""));
  close(fd);

  // Through a client that sends the whole body.
  auto big = Post(std::string(5000, ' ') + Event());
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_TRUE(submitter_.intents().empty());
}

TEST_F(WebhookServerTest, ExpectContinueOverLimitIs413BeforeTheBody) {
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(
      fd,
      absl::StrCat("POST ", kPath,
                   " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Expect: 100-continue\r\nContent-Length: 10000000\r\n"
                   "X-JFrog-Event-Auth: ",
                   kSecret, "\r\n\r\n")));
  const std::string response = ReadResponse(fd);
  EXPECT_EQ(StatusOf(response), 413) << response;
  close(fd);
}

TEST_F(WebhookServerTest, ChunkedBodyGrowingPastLimitIs413AndReadingStops) {
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(
      fd,
      absl::StrCat("POST ", kPath,
                   " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\nX-JFrog-Event-Auth: ",
                   kSecret, "\r\n\r\n")));
  const std::string chunk =
      absl::StrCat("200\r\n", std::string(512, 'a'), "\r\n");
  // Keep sending until the server answers; the limit (4096) is passed
  // after 8 chunks, so 64 chunks is plenty.
  int sent = 0;
  for (; sent < 64; ++sent) {
    if (!SendAll(fd, chunk)) break;
    if (Readable(fd, 200)) break;
  }
  EXPECT_LT(sent, 64) << "the server never answered while the body grew";
  EXPECT_GE(sent, 7) << "answered before the body reached the limit";
  const std::string response = ReadResponse(fd);
  EXPECT_EQ(StatusOf(response), 413) << response;
  // It does not keep reading the rest of the body as a new request.
  EXPECT_TRUE(ClosedByServer(fd));
  close(fd);
  EXPECT_TRUE(submitter_.intents().empty());
}

TEST_F(WebhookServerTest, MissingOrWrongAuthIs401AndNothingIsSubmitted) {
  auto missing = Post(Event(), "");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(BodyOf(missing)["error"], "missing X-JFrog-Event-Auth");
  auto wrong = Post(Event(), "s3cret-tokeN");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  // Another header carrying the secret proves nothing.
  auto custom = Post(Event(), kSecret, "application/json", "X-Custom-Auth");
  ASSERT_TRUE(custom);
  EXPECT_EQ(custom->status, 401);
  // 401 comes before 415 and 400.
  auto forged = Post("not json", "nope", "text/plain");
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 401);
  EXPECT_TRUE(submitter_.intents().empty());
}

TEST_F(WebhookServerTest, HeaderNameMatchesCaseInsensitively) {
  auto go_case =
      Post(Event(), kSecret, "application/json", "X-Jfrog-Event-Auth");
  ASSERT_TRUE(go_case);
  EXPECT_EQ(go_case->status, 202);
  auto lower = Post(Event("docker", "staging", "otherimage"), kSecret,
                    "application/json", "x-jfrog-event-auth");
  ASSERT_TRUE(lower);
  EXPECT_EQ(lower->status, 202);
}

TEST_F(WebhookServerTest, ContentTypeMustBeJson) {
  auto plain = Post(Event(), kSecret, "text/plain");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 415);
  auto form = Post(Event(), kSecret, "application/x-www-form-urlencoded");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 415);
  EXPECT_TRUE(submitter_.intents().empty());
  auto charset = Post(Event(), kSecret, "application/json; charset=utf-8");
  ASSERT_TRUE(charset);
  EXPECT_EQ(charset->status, 202);
  // 415 comes before 400.
  auto both = Post("[", kSecret, "text/plain");
  ASSERT_TRUE(both);
  EXPECT_EQ(both->status, 415);
}

TEST_F(WebhookServerTest, BadBodiesAre400WithTheReason) {
  auto array = Post("[1,2]");
  ASSERT_TRUE(array);
  EXPECT_EQ(array->status, 400);
  EXPECT_EQ(BodyOf(array)["error"], "body is not a JSON object");
  auto broken = Post("{\"domain\":");
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->status, 400);
  // Matches a rule but has no usable sha256.
  auto bad_sha = Post(Event("docker", "staging", "helloworld", "NOTHEX"));
  ASSERT_TRUE(bad_sha);
  EXPECT_EQ(bad_sha->status, 400);
  EXPECT_THAT(BodyOf(bad_sha)["error"].get<std::string>(),
              HasSubstr("data.sha256"));
  // Lacks a field the rule needs.
  auto no_repo = Post(
      R"({"domain":"docker","event_type":"promoted","data":{"tag":"latest"}})");
  ASSERT_TRUE(no_repo);
  EXPECT_EQ(no_repo->status, 400);
  EXPECT_THAT(BodyOf(no_repo)["error"].get<std::string>(),
              HasSubstr("data.repo_key is missing"));
  EXPECT_TRUE(submitter_.intents().empty());
}

TEST_F(WebhookServerTest, NonDockerAndUnmatchedEventsAreIgnored) {
  auto artifact = Post(Event("artifact"));
  ASSERT_TRUE(artifact);
  EXPECT_EQ(artifact->status, 200);
  EXPECT_THAT(BodyOf(artifact)["ignored"].get<std::string>(),
              HasSubstr("not a docker event"));
  auto other_repo = Post(Event("docker", "elsewhere"));
  ASSERT_TRUE(other_repo);
  EXPECT_EQ(other_repo->status, 200);
  EXPECT_TRUE(BodyOf(other_repo).contains("ignored"));
  auto other_image = Post(Event("docker", "staging", "nothing"));
  ASSERT_TRUE(other_image);
  EXPECT_EQ(other_image->status, 200);
  EXPECT_TRUE(BodyOf(other_image).contains("ignored"));
  EXPECT_TRUE(submitter_.intents().empty());
}

TEST_F(WebhookServerTest, LegacyFlatShapeIsAccepted) {
  const std::string body =
      std::string(R"({"event_type":"promoted","image_name":"helloworld",)") +
      R"("tag":"latest","repo_key":"staging","sha256":")" + kSha + R"("})";
  auto result = Post(body);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 202) << result->body;
}

TEST_F(WebhookServerTest, OneEventSeveralServicesSubmitsEach) {
  auto config = BaseConfig();
  config->services.push_back(Service("hello-canary", "helloworld"));
  server_->UpdateConfig(config);
  auto result = Post(Event());
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 202);
  const Json body = BodyOf(result);
  EXPECT_EQ(body["service"], "hello");
  ASSERT_EQ(body["rollouts"].size(), 2u);
  EXPECT_EQ(body["rollouts"][1]["service"], "hello-canary");
  EXPECT_EQ(body["rollouts"][1]["duplicate"], false);
  EXPECT_EQ(submitter_.intents().size(), 2u);
}

TEST_F(WebhookServerTest, UpdateConfigRotatesSecrets) {
  auto config = BaseConfig();
  config->webhook.secrets = {"old", "new"};
  server_->UpdateConfig(config);
  EXPECT_EQ(Post(Event(), kSecret)->status, 401);
  EXPECT_EQ(Post(Event(), "old")->status, 202);
  EXPECT_EQ(Post(Event("docker", "staging", "otherimage"), "new")->status, 202);
}

class WebhookServerHmacTest : public WebhookServerTest {
 protected:
  void SetUp() override {
    auto config = BaseConfig(WebhookAuth::kHmacSha256);
    config->webhook.secrets = {"key-one", "key-two"};
    StartServer(config);
  }
};

TEST_F(WebhookServerHmacTest, SignatureOverTheRawBody) {
  const std::string body = Event();
  EXPECT_EQ(Post(body, HmacSha256Hex("key-one", body))->status, 202);
  // Either secret while rotating (a second delivery joins the first rollout).
  auto second = Post(body, HmacSha256Hex("key-two", body));
  EXPECT_EQ(second->status, 202);
  EXPECT_EQ(BodyOf(second)["duplicate"], true);
  const size_t submitted = submitter_.intents().size();
  // Wrong signature, the secret itself, and a signature of another body.
  EXPECT_EQ(Post(body, HmacSha256Hex("key-three", body))->status, 401);
  EXPECT_EQ(Post(body, "key-one")->status, 401);
  const std::string other = Event("docker", "staging", "otherimage");
  EXPECT_EQ(Post(other, HmacSha256Hex("key-one", body))->status, 401);
  // The same JSON re-serialised with a space is another body.
  EXPECT_EQ(Post(body + " ", HmacSha256Hex("key-one", body))->status, 401);
  EXPECT_EQ(submitter_.intents().size(), submitted);
}

TEST_F(WebhookServerTest, IdleConnectionsDoNotStarveAnAuthenticRequest) {
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  const auto start = std::chrono::steady_clock::now();
  auto result = Post(Event());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 202);
  // Well under the 5 s read timeout that frees an idle connection's thread.
  EXPECT_LT(elapsed, std::chrono::seconds(2));
  for (int fd : idle) close(fd);
}

TEST(WebhookServerTlsTest, ServesHttpsWhenCertAndKeyAreSet) {
  char tmpl[] = "/tmp/hoist-webhook-tls-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string cert = dir + "/cert.pem";
  const std::string key = dir + "/key.pem";
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
      "-nodes -days 1 "
      "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" +
      key + "' -out '" + cert + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  FakeSubmitter submitter;
  auto config = BaseConfig();
  config->webhook.tls_cert = cert;
  config->webhook.tls_key = key;
  WebhookServer::Options options;
  options.config = config;
  options.submitter = &submitter;
  absl::StatusOr<std::unique_ptr<WebhookServer>> server =
      WebhookServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();

  httplib::SSLClient client("127.0.0.1", (*server)->port());
  client.set_ca_cert_path(cert);
  client.enable_server_certificate_verification(true);
  client.set_read_timeout(10, 0);
  httplib::Headers headers = {{"X-JFrog-Event-Auth", kSecret}};
  auto result = client.Post(kPath, headers, Event(), "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 202);
  EXPECT_EQ(submitter.intents().size(), 1u);

  // Plain HTTP to the HTTPS port gets no answer.
  httplib::Client plain("127.0.0.1", (*server)->port());
  plain.set_read_timeout(5, 0);
  auto refused = plain.Post(kPath, headers, Event(), "application/json");
  EXPECT_TRUE(!refused || refused->status != 202);
  (*server)->Stop();
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(WebhookServerStartTest, BadListenAndTlsFilesAreReported) {
  FakeSubmitter submitter;
  WebhookServer::Options options;
  auto config = BaseConfig();
  config->webhook.listen = "nonsense";
  options.config = config;
  options.submitter = &submitter;
  EXPECT_EQ(WebhookServer::Start(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto tls = BaseConfig();
  tls->webhook.tls_cert = "/nonexistent/cert.pem";
  tls->webhook.tls_key = "/nonexistent/key.pem";
  options.config = tls;
  EXPECT_EQ(WebhookServer::Start(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hoist::receiver
