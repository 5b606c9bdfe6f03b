// Helpers shared by every DockerClient: port specs, restart policies,
// registry auth encoding.
#include "nodeagent/docker_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace hoist::nodeagent {
namespace {

bool ValidPort(absl::string_view text) {
  int port = 0;
  return absl::SimpleAtoi(text, &port) && port >= 1 && port <= 65535 &&
         std::all_of(text.begin(), text.end(),
                     [](char c) { return absl::ascii_isdigit(c); });
}

}  // namespace

std::string EncodeRegistryAuth(const RegistryCredentials& credentials) {
  nlohmann::json auth = {{"username", credentials.username},
                         {"password", credentials.password},
                         {"serveraddress", credentials.server}};
  std::string encoded = absl::Base64Escape(auth.dump());
  // Docker decodes X-Registry-Auth as URL-safe base64.
  std::replace(encoded.begin(), encoded.end(), '+', '-');
  std::replace(encoded.begin(), encoded.end(), '/', '_');
  return encoded;
}

absl::StatusOr<PortMapping> ParsePortSpec(absl::string_view spec) {
  PortMapping mapping;
  absl::string_view rest = spec;
  mapping.protocol = "tcp";
  if (const size_t slash = rest.rfind('/'); slash != absl::string_view::npos) {
    mapping.protocol = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
    if (mapping.protocol != "tcp" && mapping.protocol != "udp" &&
        mapping.protocol != "sctp") {
      return absl::InvalidArgumentError(absl::StrCat(
          "port \"", spec, "\": protocol must be tcp, udp or sctp"));
    }
  }
  if (!rest.empty() && rest[0] == '[') {  // [ipv6]:host:container
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos || close + 1 >= rest.size() ||
        rest[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("port \"", spec, "\": bad IPv6 address"));
    }
    mapping.host_ip = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 2);
    std::vector<absl::string_view> parts = absl::StrSplit(rest, ':');
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "port \"", spec, "\": want [ip]:hostPort:containerPort"));
    }
    mapping.host_port = std::string(parts[0]);
    mapping.container_port = std::string(parts[1]);
  } else {
    std::vector<absl::string_view> parts = absl::StrSplit(rest, ':');
    if (parts.size() == 1) {
      mapping.container_port = std::string(parts[0]);
    } else if (parts.size() == 2) {
      mapping.host_port = std::string(parts[0]);
      mapping.container_port = std::string(parts[1]);
    } else if (parts.size() == 3) {
      mapping.host_ip = std::string(parts[0]);
      mapping.host_port = std::string(parts[1]);
      mapping.container_port = std::string(parts[2]);
      if (mapping.host_ip.empty() ||
          !std::all_of(
              mapping.host_ip.begin(), mapping.host_ip.end(),
              [](char c) { return absl::ascii_isdigit(c) || c == '.'; })) {
        return absl::InvalidArgumentError(absl::StrCat(
            "port \"", spec, "\": host IP must be an IPv4 address or [IPv6]"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "port \"", spec, "\": want [ip:]hostPort:containerPort[/proto]"));
    }
  }
  if (!ValidPort(mapping.container_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("port \"", spec, "\": container port must be 1-65535"));
  }
  if (!mapping.host_port.empty() && !ValidPort(mapping.host_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("port \"", spec, "\": host port must be 1-65535"));
  }
  return mapping;
}

void EventStreamCancel::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (wake_) wake_();
}

bool EventStreamCancel::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

void EventStreamCancel::SetWaker(std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  wake_ = std::move(wake);
}

absl::Status ValidateRestartPolicy(absl::string_view policy) {
  if (policy.empty() || policy == "no" || policy == "always" ||
      policy == "unless-stopped" || policy == "on-failure") {
    return absl::OkStatus();
  }
  if (absl::StartsWith(policy, "on-failure:")) {
    int retries = 0;
    if (absl::SimpleAtoi(policy.substr(11), &retries) && retries >= 0)
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("restart policy \"", policy,
                   "\": want no, always, unless-stopped or on-failure[:N]"));
}

}  // namespace hoist::nodeagent
