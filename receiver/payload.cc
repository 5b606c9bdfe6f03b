#include "receiver/payload.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/spec_validation.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace hoist::receiver {
namespace {

using Json = nlohmann::json;

// Reads the string field `key` of `object` into `out`. Records a problem
// under `field` (named `json_name` in messages) when it is absent or not a
// string.
void ReadString(const Json& object, const char* key, const std::string& field,
                const std::string& json_name, WebhookEvent* event,
                std::string* out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    event->field_problems[field] = absl::StrCat(json_name, " is missing");
    return;
  }
  if (!it->is_string()) {
    event->field_problems[field] = absl::StrCat(json_name, " must be a string");
    return;
  }
  *out = it->get<std::string>();
  if (out->empty())
    event->field_problems[field] = absl::StrCat(json_name, " is empty");
}

// Fills the docker fields from `fields` (the "data" object, or the top level
// for the legacy shape); `prefix` is how messages name that object.
void ReadDockerFields(const Json& fields, const std::string& prefix,
                      WebhookEvent* event) {
  ReadString(fields, "repo_key", "repo_key", prefix + "repo_key", event,
             &event->repo_key);
  ReadString(fields, "tag", "tag", prefix + "tag", event, &event->tag);
  ReadString(fields, "sha256", "sha256", prefix + "sha256", event,
             &event->sha256);
  if (event->field_problems.count("sha256") == 0 &&
      !IsSha256Hex(event->sha256)) {
    event->field_problems["sha256"] =
        absl::StrCat(prefix, "sha256 must be 64 lowercase hex characters");
  }
  // image_name and path only feed `image`; their own problems are kept
  // under their names for diagnostics.
  ReadString(fields, "image_name", "image_name", prefix + "image_name", event,
             &event->image_name);
  ReadString(fields, "path", "path", prefix + "path", event, &event->path);
  if (event->field_problems.count("path") == 0) {
    absl::StatusOr<std::string> image = ImagePathFromManifestPath(
        event->path, event->field_problems.count("tag") == 0 ? event->tag : "");
    if (image.ok()) {
      event->image = *std::move(image);
    } else {
      event->field_problems["image"] =
          absl::StrCat(prefix, "path: ", image.status().message());
    }
  } else if (event->field_problems.count("image_name") == 0) {
    event->image =
        event->image_name;  // no path: only the last segment is known
  } else {
    event->field_problems["image"] =
        absl::StrCat(prefix, "path and ", prefix, "image_name are missing");
  }
}

// True when `text` is non-empty and every character satisfies `allowed`.
template <typename Predicate>
bool AllOf(absl::string_view text, Predicate allowed) {
  return !text.empty() && std::all_of(text.begin(), text.end(), allowed);
}

bool IsLowerAlnum(char c) {
  return absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
         (c >= 'a' && c <= 'z');
}

bool IsAlnum(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c));
}

// INVALID_ARGUMENT naming `field` and its grammar, quoting the start of
// `value` with control characters escaped.
absl::Status GrammarError(const std::string& field, absl::string_view value,
                          absl::string_view grammar) {
  constexpr size_t kQuoted = 64;
  return absl::InvalidArgumentError(absl::StrCat(
      field, " \"", absl::CHexEscape(value.substr(0, kQuoted)),
      value.size() > kQuoted ? "..." : "", "\" does not match ", grammar));
}

// The grammar of the docker fields that are present (absent ones are the
// rules' business, see WebhookEvent::field_problems).
absl::Status CheckDockerGrammar(const WebhookEvent& event,
                                const std::string& prefix) {
  if (!event.tag.empty() && !IsDockerTag(event.tag)) {
    return GrammarError(prefix + "tag", event.tag,
                        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  }
  if (!event.repo_key.empty() && !IsRepoKey(event.repo_key)) {
    return GrammarError(prefix + "repo_key", event.repo_key, "[A-Za-z0-9._-]+");
  }
  if (!event.image.empty() && !IsImagePath(event.image)) {
    const bool from_path = event.field_problems.count("path") == 0;
    return GrammarError(
        from_path ? "image path of " + prefix + "path" : prefix + "image_name",
        event.image, "[a-z0-9._/-]+");
  }
  return absl::OkStatus();
}

}  // namespace

bool IsDockerTag(absl::string_view tag) { return spec::ValidateTag(tag).ok(); }

bool IsRepoKey(absl::string_view repo_key) {
  return AllOf(repo_key, [](char c) {
    return IsAlnum(c) || c == '.' || c == '_' || c == '-';
  });
}

bool IsImagePath(absl::string_view image) {
  return AllOf(image, [](char c) {
    return IsLowerAlnum(c) || c == '.' || c == '_' || c == '/' || c == '-';
  });
}

std::string WebhookEvent::ProblemWith(const std::string& field) const {
  auto it = field_problems.find(field);
  return it == field_problems.end() ? "" : it->second;
}

bool IsSha256Hex(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<std::string> ImagePathFromManifestPath(absl::string_view path,
                                                      absl::string_view tag) {
  absl::string_view rest = path;
  if (!absl::ConsumeSuffix(&rest, "/list.manifest.json") &&
      !absl::ConsumeSuffix(&rest, "/manifest.json")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", path,
        "\" does not end in <tag>/manifest.json or <tag>/list.manifest.json"));
  }
  const size_t slash = rest.rfind('/');
  if (slash == absl::string_view::npos || slash == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", path, "\" has no image path before the tag"));
  }
  const absl::string_view path_tag = rest.substr(slash + 1);
  if (!tag.empty() && path_tag != tag) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", path, "\" does not end in ", tag, "/manifest.json"));
  }
  return std::string(rest.substr(0, slash));
}

namespace {

// True for the legacy flat shape: no "data" and no "domain", the docker
// fields at the top level.
bool IsLegacyShape(const Json& root) {
  return !root.contains("data") && !root.contains("domain") &&
         root.contains("image_name") && root.contains("tag");
}

absl::StatusOr<WebhookEvent> ReadLegacyEvent(const Json& root) {
  WebhookEvent event;
  event.legacy_shape = true;
  event.domain = "docker";
  ReadString(root, "event_type", "event_type", "event_type", &event,
             &event.event_type);
  ReadDockerFields(root, "", &event);
  HOIST_RETURN_IF_ERROR(CheckDockerGrammar(event, ""));
  return event;
}

// The current shape {"domain", "event_type", "data": {...}}.
absl::StatusOr<WebhookEvent> ReadCurrentEvent(const Json& root) {
  WebhookEvent event;
  auto domain = root.find("domain");
  if (domain == root.end() || !domain->is_string()) {
    // Not a docker event we can recognise: the caller ignores it.
    event.domain = domain == root.end() ? "" : "(not a string)";
    return event;
  }
  event.domain = domain->get<std::string>();
  if (!event.is_docker()) {
    auto type = root.find("event_type");
    if (type != root.end() && type->is_string())
      event.event_type = type->get<std::string>();
    return event;
  }
  ReadString(root, "event_type", "event_type", "event_type", &event,
             &event.event_type);
  auto data = root.find("data");
  if (data == root.end() || !data->is_object()) {
    const std::string problem =
        data == root.end() ? "data is missing" : "data must be an object";
    for (const char* field :
         {"repo_key", "tag", "sha256", "image_name", "path", "image"}) {
      event.field_problems[field] = problem;
    }
    return event;
  }
  ReadDockerFields(*data, "data.", &event);
  HOIST_RETURN_IF_ERROR(CheckDockerGrammar(event, "data."));
  return event;
}

}  // namespace

absl::StatusOr<WebhookEvent> ParseWebhookPayload(absl::string_view body) {
  Json root;
  try {
    // allow_exceptions=false makes parse return a discarded value on error;
    // the try also covers anything else the library might throw.
    root = Json::parse(body.begin(), body.end(), nullptr,
                       /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("body is not JSON: ", e.what()));
  }
  if (root.is_discarded())
    return absl::InvalidArgumentError("body is not valid JSON");
  if (!root.is_object())
    return absl::InvalidArgumentError("body is not a JSON object");
  try {
    return IsLegacyShape(root) ? ReadLegacyEvent(root) : ReadCurrentEvent(root);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the event: ", e.what()));
  }
}

}  // namespace hoist::receiver
