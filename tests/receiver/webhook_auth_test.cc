// VerifyWebhookAuth: token and HMAC modes, rotation, missing/wrong values.
#include "receiver/webhook_auth.h"

#include "common/crypto.h"
#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

const std::string kBody = R"({"domain":"docker"})";

TEST(WebhookAuthTest, Token) {
  const std::vector<std::string> secrets = {"s3cret"};
  EXPECT_TRUE(
      VerifyWebhookAuth(WebhookAuth::kToken, secrets, true, "s3cret", kBody)
          .ok());
  EXPECT_EQ(
      VerifyWebhookAuth(WebhookAuth::kToken, secrets, true, "s3cre", kBody)
          .code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(
      VerifyWebhookAuth(WebhookAuth::kToken, secrets, true, "S3CRET", kBody)
          .code(),
      absl::StatusCode::kUnauthenticated);
  absl::Status missing =
      VerifyWebhookAuth(WebhookAuth::kToken, secrets, false, "", kBody);
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(missing.message(), "missing X-JFrog-Event-Auth");
  EXPECT_FALSE(
      VerifyWebhookAuth(WebhookAuth::kToken, secrets, true, "", kBody).ok());
}

TEST(WebhookAuthTest, HmacOverTheRawBody) {
  const std::vector<std::string> secrets = {"k"};
  const std::string signature = HmacSha256Hex("k", kBody);
  EXPECT_EQ(ExpectedWebhookAuth(WebhookAuth::kHmacSha256, "k", kBody),
            signature);
  EXPECT_TRUE(VerifyWebhookAuth(WebhookAuth::kHmacSha256, secrets, true,
                                signature, kBody)
                  .ok());
  // The token itself is not accepted in HMAC mode.
  EXPECT_FALSE(
      VerifyWebhookAuth(WebhookAuth::kHmacSha256, secrets, true, "k", kBody)
          .ok());
  // A signature of another body (even one byte of whitespace) fails.
  EXPECT_FALSE(VerifyWebhookAuth(WebhookAuth::kHmacSha256, secrets, true,
                                 signature, kBody + " ")
                   .ok());
  std::string flipped = signature;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  EXPECT_FALSE(
      VerifyWebhookAuth(WebhookAuth::kHmacSha256, secrets, true, flipped, kBody)
          .ok());
  // Uppercase hex of the right digest is accepted.
  std::string upper = signature;
  for (char& c : upper) c = static_cast<char>(toupper(c));
  EXPECT_TRUE(
      VerifyWebhookAuth(WebhookAuth::kHmacSha256, secrets, true, upper, kBody)
          .ok());
}

TEST(WebhookAuthTest, AnyOfSeveralSecretsWhileRotating) {
  const std::vector<std::string> secrets = {"old", "new"};
  for (const char* secret : {"old", "new"}) {
    EXPECT_TRUE(
        VerifyWebhookAuth(WebhookAuth::kToken, secrets, true, secret, kBody)
            .ok());
    EXPECT_TRUE(VerifyWebhookAuth(WebhookAuth::kHmacSha256, secrets, true,
                                  HmacSha256Hex(secret, kBody), kBody)
                    .ok());
  }
  EXPECT_FALSE(
      VerifyWebhookAuth(WebhookAuth::kToken, secrets, true, "older", kBody)
          .ok());
}

TEST(WebhookAuthTest, NoSecretsOrEmptySecretNeverAuthenticate) {
  EXPECT_FALSE(
      VerifyWebhookAuth(WebhookAuth::kToken, {}, true, "x", kBody).ok());
  EXPECT_FALSE(
      VerifyWebhookAuth(WebhookAuth::kToken, {""}, true, "", kBody).ok());
  EXPECT_FALSE(VerifyWebhookAuth(WebhookAuth::kHmacSha256, {""}, true,
                                 HmacSha256Hex("", kBody), kBody)
                   .ok());
}

}  // namespace
}  // namespace hoist::receiver
