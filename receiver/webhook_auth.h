// Authentication of JFrog webhook deliveries (docs/design.md, "Webhook
// payload and authentication"): the X-JFrog-Event-Auth header carries either
// the shared secret itself ("token") or the hex HMAC-SHA256 of the raw body
// keyed with it ("hmac-sha256"; compared case-insensitively). Several
// secrets may be valid at once (two while rotating). Comparisons are constant
// time (common/crypto.h), and every secret is tried, so timing does not
// reveal which one matched.
//
// Pure functions; thread-safe.
#ifndef HOIST_RECEIVER_WEBHOOK_AUTH_H_
#define HOIST_RECEIVER_WEBHOOK_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "receiver/config.h"

namespace hoist::receiver {

// The header name as JFrog documents it; match it case-insensitively.
inline constexpr char kWebhookAuthHeader[] = "X-JFrog-Event-Auth";

// OK when `header_value` authenticates `raw_body` under `mode` with one of
// `secrets`. UNAUTHENTICATED otherwise, saying whether the header was
// missing (`has_header` false or empty value) or wrong; the message never
// contains a secret. With no secrets at all nothing authenticates.
absl::Status VerifyWebhookAuth(WebhookAuth mode,
                               const std::vector<std::string>& secrets,
                               bool has_header, absl::string_view header_value,
                               absl::string_view raw_body);

// The header value JFrog would send for `raw_body` (for tests and tools).
std::string ExpectedWebhookAuth(WebhookAuth mode, absl::string_view secret,
                                absl::string_view raw_body);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_WEBHOOK_AUTH_H_
