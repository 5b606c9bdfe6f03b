#include "nodeagent/request_validation.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "nodeagent/deploy_run.h"
#include "nodeagent/docker_client.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::ContainerSpec;
using hoist::v1::DeployRequest;
using hoist::v1::HealthCheck;

bool IsNameChar(char c) {
  return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  });
}

bool IsDigest(absl::string_view digest) {
  return digest.size() == 7 + 64 && absl::StartsWith(digest, "sha256:") &&
         IsLowerHex(digest.substr(7));
}

// Paths on the host: absolute, no "..", no shell or control characters.
absl::Status CheckHostPath(absl::string_view field, absl::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", path, "\" must be an absolute path"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", path, "\" must not contain \"..\""));
    }
  }
  for (char c : path) {
    if (absl::ascii_iscntrl(c) || absl::StrContains("$`;|&<>*?\"'\\", c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", path, "\" contains a forbidden character"));
    }
  }
  return absl::OkStatus();
}

// The ids and names the request is known by.
absl::Status ValidateNames(const DeployRequest& request) {
  HOIST_RETURN_IF_ERROR(CheckName("deploy_id", request.deploy_id(), 128));
  HOIST_RETURN_IF_ERROR(CheckName("service", request.service(), 128));
  HOIST_RETURN_IF_ERROR(
      CheckName("container.name", request.container().name(), 100));
  // A name with the infix would be taken for some deploy's candidate, and
  // removed as an orphan by Recover.
  if (absl::StrContains(request.container().name(), kTempInfix)) {
    return absl::InvalidArgumentError(
        "container.name must not contain \".hoist-new-\"");
  }
  return absl::OkStatus();
}

bool IsImageChar(char c) {
  return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-' ||
         c == '/' || c == ':';
}

// A repository name only: the tag and digest are fields of their own.
absl::Status ValidateImage(const std::string& image) {
  if (image.empty()) return absl::InvalidArgumentError("image is required");
  if (image.size() > 255 || absl::StrContains(image, "..") ||
      absl::StrContains(image, "//") || image.front() == '/' ||
      image.back() == '/' ||
      !std::all_of(image.begin(), image.end(), IsImageChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image \"", image,
                     "\" must be a repository name like registry:5000/team/app "
                     "(letters, digits, . _ - / :), without tag or digest"));
  }
  return absl::OkStatus();
}

// A digest, a tag, or both (then the digest is what gets deployed).
absl::Status ValidateDigestAndTag(const DeployRequest& request) {
  if (!request.digest().empty()) {
    if (!IsDigest(request.digest())) {
      return absl::InvalidArgumentError(
          absl::StrCat("digest \"", request.digest(),
                       "\" must be sha256:<64 lowercase hex>"));
    }
  } else if (request.tag().empty()) {
    return absl::InvalidArgumentError("digest or tag is required");
  }
  if (!request.tag().empty())
    HOIST_RETURN_IF_ERROR(CheckName("tag", request.tag(), 128));
  return absl::OkStatus();
}

// Environment entries, and env files (read on the host at deploy time).
absl::Status ValidateEnvironment(const ContainerSpec& c) {
  for (const std::string& env : c.env()) {
    if (env.empty() || env[0] == '=' || env.find('=') == std::string::npos) {
      // Only the key is echoed: values may be secrets.
      return absl::InvalidArgumentError(
          absl::StrCat("env entry must be KEY=VALUE (entry ",
                       env.substr(0, env.find('=')), ")"));
    }
  }
  for (const std::string& file : c.env_files())
    HOIST_RETURN_IF_ERROR(CheckHostPath("env_file", file));
  return absl::OkStatus();
}

// "src:dst[:opts]": src a host path or a volume name, dst a path in the
// container.
absl::Status ValidateVolume(const std::string& volume) {
  std::vector<std::string> parts = absl::StrSplit(volume, ':');
  if (parts.size() < 2 || parts.size() > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume \"", volume, "\" must be src:dst[:opts]"));
  }
  if (!parts[0].empty() && parts[0][0] == '/') {
    HOIST_RETURN_IF_ERROR(CheckHostPath("volume source", parts[0]));
  } else {
    HOIST_RETURN_IF_ERROR(CheckName("volume name", parts[0], 128));
  }
  HOIST_RETURN_IF_ERROR(CheckHostPath("volume target", parts[1]));
  if (parts.size() == 3 &&
      !std::all_of(parts[2].begin(), parts[2].end(),
                   [](char c) { return absl::ascii_isalnum(c) || c == ','; })) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume \"", volume, "\": bad options"));
  }
  return absl::OkStatus();
}

// hoist.* labels are how the agent recognises its own containers; a request
// must not forge them.
absl::Status ValidateLabels(const ContainerSpec& c) {
  for (const auto& [key, value] : c.labels()) {
    if (absl::StartsWith(key, "hoist.")) {
      return absl::InvalidArgumentError(
          absl::StrCat("label \"", key, "\": hoist.* labels are reserved"));
    }
    if (key.empty())
      return absl::InvalidArgumentError("label keys must not be empty");
  }
  return absl::OkStatus();
}

// How the container runs: network, user, limits, logging, restart policy.
absl::Status ValidateRuntime(const ContainerSpec& c) {
  if (!c.network().empty())
    HOIST_RETURN_IF_ERROR(CheckName("network", c.network(), 128));
  if (!c.user().empty() &&
      !std::all_of(c.user().begin(), c.user().end(),
                   [](char ch) { return IsNameChar(ch) || ch == ':'; })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "user \"", c.user(), "\" must be NAME[:GROUP] or UID[:GID]"));
  }
  if (c.memory_mb() < 0)
    return absl::InvalidArgumentError("memory_mb must be >= 0");
  if (c.cpus() < 0) return absl::InvalidArgumentError("cpus must be >= 0");
  if (c.stop_timeout_seconds() < 0) {
    return absl::InvalidArgumentError("stop_timeout_seconds must be >= 0");
  }
  if (!c.log_driver().empty())
    HOIST_RETURN_IF_ERROR(CheckName("log_driver", c.log_driver(), 64));
  return ValidateRestartPolicy(c.restart());
}

absl::Status ValidateContainerSpec(const ContainerSpec& c) {
  for (const std::string& port : c.ports())
    HOIST_RETURN_IF_ERROR(ParsePortSpec(port).status());
  HOIST_RETURN_IF_ERROR(ValidateEnvironment(c));
  for (const std::string& volume : c.volumes())
    HOIST_RETURN_IF_ERROR(ValidateVolume(volume));
  HOIST_RETURN_IF_ERROR(ValidateLabels(c));
  return ValidateRuntime(c);
}

absl::Status ValidateHealth(const HealthCheck& h) {
  if (h.interval_seconds() < 0 || h.timeout_seconds() < 0) {
    return absl::InvalidArgumentError(
        "health interval_seconds and timeout_seconds must be >= 0");
  }
  if (!h.http_get().empty() && !absl::StartsWith(h.http_get(), "http://") &&
      !absl::StartsWith(h.http_get(), "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("health.http_get \"", h.http_get(),
                     "\" must be an http:// or https:// URL"));
  }
  if (!h.tcp().empty() && h.tcp().find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("health.tcp \"", h.tcp(), "\" must be host:port"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckName(absl::string_view field, absl::string_view value,
                       size_t max_len) {
  if (value.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (value.size() > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is longer than ", max_len));
  }
  if (!absl::ascii_isalnum(value[0]) ||
      !std::all_of(value.begin(), value.end(), IsNameChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " \"", value, "\" must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"));
  }
  return absl::OkStatus();
}

// In this order, so that the first wrong field is the one reported.
absl::Status ValidateDeployRequest(const DeployRequest& request) {
  HOIST_RETURN_IF_ERROR(ValidateNames(request));
  HOIST_RETURN_IF_ERROR(ValidateImage(request.image()));
  HOIST_RETURN_IF_ERROR(ValidateDigestAndTag(request));
  HOIST_RETURN_IF_ERROR(ValidateContainerSpec(request.container()));
  return ValidateHealth(request.health());
}

}  // namespace hoist::nodeagent
