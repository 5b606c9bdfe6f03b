// libFuzzer target: the webhook decision path on hostile bodies.
//
// The input is the raw body of an (authentic, JSON-typed) delivery, so the
// fuzzer reaches payload parsing, rule matching and the answer building
// behind authentication. It also drives HMAC verification with the input's
// first 64 bytes as the presented signature. Invariants checked: no crash,
// no exception escaping, answers only with contract status codes, and
// every answer body is a JSON object.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/log.h"
#include "nlohmann/json.hpp"
#include "receiver/payload.h"
#include "receiver/rules.h"
#include "receiver/webhook_auth.h"
#include "receiver/webhook_server.h"

namespace {

using hoist::receiver::DeployIntent;
using hoist::receiver::ReceiverConfig;
using hoist::receiver::ServiceConfig;
using hoist::receiver::SubmitResult;

class AcceptingSubmitter : public hoist::receiver::RolloutSubmitter {
 public:
  absl::StatusOr<SubmitResult> Submit(const DeployIntent& intent) override {
    // Every intent reaching the submitter names a valid digest.
    if (intent.digest.size() != 71 || intent.digest.rfind("sha256:", 0) != 0)
      std::abort();
    SubmitResult result;
    result.kind = (++calls_ % 3 == 0) ? SubmitResult::Kind::kReplay
                                      : SubmitResult::Kind::kAccepted;
    result.rollout_id = "r";
    result.service = intent.service;
    return result;
  }

 private:
  int calls_ = 0;
};

const ReceiverConfig& Config() {
  static const ReceiverConfig* config = [] {
    auto* c = new ReceiverConfig;
    c->webhook.secrets = {"fuzz-secret"};
    ServiceConfig exact;
    exact.name = "hello";
    exact.image = "registry.example.com/hello";
    exact.trigger.repo_key = "docker-local";
    exact.trigger.image = "helloworld";
    exact.trigger.tags = {"latest", "v*.*"};
    ServiceConfig any_tag;
    any_tag.name = "any";
    any_tag.image = "registry.example.com/any";
    any_tag.trigger.event_types = {"pushed", "promoted"};
    any_tag.trigger.image = "foo/bar/busybox";
    c->services = {exact, any_tag};
    return c;
  }();
  return *config;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  hoist::SetMinLogLevel(hoist::LogLevel::kError);  // one log line per accepted
                                                   // event is noise here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  AcceptingSubmitter submitter;
  hoist::receiver::WebhookRequest request;
  request.has_auth_header = true;
  request.auth_header = "fuzz-secret";
  request.content_type = "application/json; charset=utf-8";
  request.body = body;
  const hoist::receiver::WebhookResponse response =
      hoist::receiver::HandleWebhook(Config(), submitter, request);
  switch (response.status) {
    case 200:
    case 202:
    case 400:
      break;
    default:
      std::abort();
  }
  const nlohmann::json answer =
      nlohmann::json::parse(response.body, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) std::abort();

  // Forged signatures never authenticate.
  const std::string signature = body.substr(0, 64);
  if (hoist::receiver::VerifyWebhookAuth(
          hoist::receiver::WebhookAuth::kHmacSha256, Config().webhook.secrets,
          true, signature, body)
          .ok()) {
    std::abort();
  }

  // Glob matching with the input as both pattern and text halves.
  const size_t half = body.size() / 2;
  (void)hoist::receiver::GlobMatch(body.substr(0, half), body.substr(half));
  return 0;
}
