// Parsing of JFrog Artifactory webhook bodies (docs/design.md, "Webhook
// payload and authentication"): the current shape {"domain", "event_type",
// "data": {...}} and the legacy flat shape (docker fields at the top level,
// no "data" and no "domain").
//
// Pure functions; thread-safe. Parsing never throws: nlohmann-json's
// exceptions are caught here.
#ifndef HOIST_RECEIVER_PAYLOAD_H_
#define HOIST_RECEIVER_PAYLOAD_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hoist::receiver {

// The docker fields of an event. A field that is absent or of the wrong
// type is left empty and its problem recorded in `field_problems`, because
// whether it matters depends on the rule (docs/design.md, "Webhook HTTP
// answers", step 7: 400 for a docker event lacking a field a rule needs).
struct WebhookEvent {
  std::string
      domain;  // "docker", "artifact", ...; "docker" for the legacy shape
  std::string event_type;  // "pushed", "promoted", "deleted", ...
  bool legacy_shape = false;

  std::string repo_key;  // data.repo_key
  std::string
      path;  // data.path as sent, e.g. "foo/bar/busybox/1.2/manifest.json"
  std::string image_name;  // data.image_name: last segment only
  std::string tag;         // data.tag
  std::string sha256;      // data.sha256: 64 lowercase hex once validated
  // Full image path inside the repository: data.path minus
  // "<tag>/manifest.json" or "<tag>/list.manifest.json"; data.image_name
  // when data.path is absent. Empty when neither gives one.
  std::string image;

  // Field name ("event_type", "data.repo_key", "data.sha256", "image", ...)
  // -> why it is unusable. Only for docker events.
  std::map<std::string, std::string> field_problems;

  bool is_docker() const { return domain == "docker"; }
  // The problem with `field`, or empty when it is usable.
  std::string ProblemWith(const std::string& field) const;
};

// Parses `body`. INVALID_ARGUMENT with the reason (HTTP 400) when it is not
// JSON or not a JSON object, or when it is a docker event whose tag,
// repo_key or image path is present but breaks its grammar (IsDockerTag,
// IsRepoKey, IsImagePath): such values reach logs, the journal and agents'
// image references, so they are refused before any rule sees them
// (docs/design.md, "Webhook HTTP answers"). Unknown fields are ignored; a
// non-docker domain parses fine (the caller ignores it).
absl::StatusOr<WebhookEvent> ParseWebhookPayload(absl::string_view body);

// Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool IsDockerTag(absl::string_view tag);

// An Artifactory repository key: one or more of [A-Za-z0-9._-] (Artifactory
// keeps the case of keys).
bool IsRepoKey(absl::string_view repo_key);

// An image path inside a repository: one or more of [a-z0-9._/-].
bool IsImagePath(absl::string_view image);

// The image path for `path` and `tag`: "foo/bar/busybox/1.2/manifest.json"
// with tag "1.2" -> "foo/bar/busybox". INVALID_ARGUMENT when `path` does not
// end in "/<tag>/manifest.json" or "/<tag>/list.manifest.json".
absl::StatusOr<std::string> ImagePathFromManifestPath(absl::string_view path,
                                                      absl::string_view tag);

// True for exactly 64 lowercase hex characters.
bool IsSha256Hex(absl::string_view text);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_PAYLOAD_H_
