// HandleWebhook() on authentic (HMAC-signed) docker events whose tag,
// repo_key or image path breaks its grammar: 400 with a JSON error, and
// nothing submitted (docs/design.md, "Webhook HTTP answers"). Driven without
// a network, through the plain function the HTTP server adapts.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/crypto.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "receiver/webhook_server.h"

namespace hoist::receiver {
namespace {

using Json = nlohmann::json;

constexpr char kSha[] =
    "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";
constexpr char kSecret[] = "hmac-key";

// Records what reached it; accepts everything.
class RecordingSubmitter : public RolloutSubmitter {
 public:
  absl::StatusOr<SubmitResult> Submit(const DeployIntent& intent) override {
    absl::MutexLock lock(&mu_);
    intents_.push_back(intent);
    SubmitResult result;
    result.rollout_id = "r-1";
    result.service = intent.service;
    return result;
  }
  size_t submitted() const {
    absl::MutexLock lock(&mu_);
    return intents_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<DeployIntent> intents_ ABSL_GUARDED_BY(mu_);
};

// One service deploying every tag of staging/helloworld.
ReceiverConfig Config() {
  ReceiverConfig config;
  config.webhook.path = "/webhooks/artifactory";
  config.webhook.secrets = {kSecret};
  config.webhook.auth = WebhookAuth::kHmacSha256;
  ServiceConfig service;
  service.name = "hello";
  service.image = "registry.example.com/prod/helloworld";
  service.trigger.repo_key = "staging";
  service.trigger.image = "helloworld";
  config.services = {service};
  return config;
}

std::string Event(const std::string& repo_key, const std::string& image,
                  const std::string& tag) {
  return Json{{"domain", "docker"},
              {"event_type", "promoted"},
              {"data",
               {{"image_name", image},
                {"path", image + "/" + tag + "/manifest.json"},
                {"repo_key", repo_key},
                {"sha256", kSha},
                {"tag", tag}}}}
      .dump();
}

WebhookResponse PostSigned(const ReceiverConfig& config,
                           RolloutSubmitter& submitter,
                           const std::string& body) {
  WebhookRequest request;
  request.has_auth_header = true;
  request.auth_header = HmacSha256Hex(kSecret, body);
  request.content_type = "application/json";
  request.body = body;
  return HandleWebhook(config, submitter, request);
}

// The reason of a 400, which must be a JSON object {"error": ...}.
std::string ErrorOf(const WebhookResponse& response) {
  const Json body = Json::parse(response.body, nullptr, false);
  if (!body.is_object() || !body.contains("error")) return "<no error>";
  return body["error"].get<std::string>();
}

TEST(WebhookPayloadGrammarTest, ValidEventIsAccepted) {
  RecordingSubmitter submitter;
  const WebhookResponse response =
      PostSigned(Config(), submitter, Event("staging", "helloworld", "v1.2"));
  EXPECT_EQ(response.status, 202) << response.body;
  EXPECT_EQ(submitter.submitted(), 1u);
}

// The reproduction: a signed event whose tag carries a newline and a fake
// log line.
TEST(WebhookPayloadGrammarTest, TagWithNewlineAndForgedLogLineIs400) {
  RecordingSubmitter submitter;
  const std::string tag =
      "x\n2026-01-01T00:00:00.000Z info webhook event submitted "
      "service=admin rollout_id=r-forged";
  const WebhookResponse response =
      PostSigned(Config(), submitter, Event("staging", "helloworld", tag));
  EXPECT_EQ(response.status, 400) << response.body;
  EXPECT_NE(ErrorOf(response).find("data.tag"), std::string::npos)
      << response.body;
  EXPECT_EQ(submitter.submitted(), 0u);
}

TEST(WebhookPayloadGrammarTest, TagWithNulIs400) {
  RecordingSubmitter submitter;
  const WebhookResponse response =
      PostSigned(Config(), submitter,
                 Event("staging", "helloworld", std::string("v1\0x", 4)));
  EXPECT_EQ(response.status, 400) << response.body;
  // The JSON body escapes it: \u0000 arrives as \\x00 in the reason.
  EXPECT_NE(ErrorOf(response).find("data.tag \"v1\\x00x\""), std::string::npos)
      << response.body;
  EXPECT_EQ(submitter.submitted(), 0u);
}

TEST(WebhookPayloadGrammarTest, RepoKeyAndImagePathOutsideTheirGrammarAre400) {
  struct Case {
    const char* repo_key;
    const char* image;
    const char* field;
  };
  for (const Case& c : {Case{"stag ing", "helloworld", "data.repo_key"},
                        Case{"staging\r", "helloworld", "data.repo_key"},
                        Case{"staging", "Helloworld", "data.path"},
                        Case{"staging", "hello\tworld", "data.path"}}) {
    RecordingSubmitter submitter;
    const WebhookResponse response =
        PostSigned(Config(), submitter, Event(c.repo_key, c.image, "v1"));
    EXPECT_EQ(response.status, 400) << response.body;
    EXPECT_NE(ErrorOf(response).find(c.field), std::string::npos)
        << response.body;
    EXPECT_EQ(submitter.submitted(), 0u) << c.repo_key << " " << c.image;
  }
}

}  // namespace
}  // namespace hoist::receiver
