#include "receiver/webhook_auth.h"

#include "absl/strings/ascii.h"
#include "common/crypto.h"

namespace hoist::receiver {

std::string ExpectedWebhookAuth(WebhookAuth mode, absl::string_view secret,
                                absl::string_view raw_body) {
  if (mode == WebhookAuth::kToken) return std::string(secret);
  return HmacSha256Hex(secret, raw_body);
}

absl::Status VerifyWebhookAuth(WebhookAuth mode,
                               const std::vector<std::string>& secrets,
                               bool has_header, absl::string_view header_value,
                               absl::string_view raw_body) {
  if (!has_header || header_value.empty()) {
    return absl::UnauthenticatedError("missing X-JFrog-Event-Auth");
  }
  // Hex digests compare case-insensitively; lowering depends only on length.
  const std::string presented = mode == WebhookAuth::kHmacSha256
                                    ? absl::AsciiStrToLower(header_value)
                                    : std::string(header_value);
  bool match = false;
  for (const std::string& secret : secrets) {
    if (secret.empty())
      continue;  // config loading refuses these; never accept ""
    // No early exit: every secret costs the same whichever one matches.
    match |= ConstantTimeEquals(presented,
                                ExpectedWebhookAuth(mode, secret, raw_body));
  }
  if (!match) {
    return absl::UnauthenticatedError(
        mode == WebhookAuth::kToken ? "wrong X-JFrog-Event-Auth token"
                                    : "wrong X-JFrog-Event-Auth signature");
  }
  return absl::OkStatus();
}

}  // namespace hoist::receiver
