#include "common/spec_validation.h"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace hoist::spec {
namespace {

using hoist::v1::ContainerSpec;
using hoist::v1::HealthCheck;

constexpr char kNamePattern[] = "[a-zA-Z0-9][a-zA-Z0-9_.-]*";

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == '.' || c == '-';
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
           (c >= 'a' && c <= 'f');
  });
}

bool IsDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

// The name grammar alone (no length or ".." rule): tags use it as it is.
absl::Status CheckNameChars(absl::string_view field, absl::string_view value,
                            size_t max_len) {
  if (value.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (value.size() > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is longer than ", max_len));
  }
  if (!absl::ascii_isalnum(static_cast<unsigned char>(value[0])) ||
      !std::all_of(value.begin(), value.end(), IsNameChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", value, "\" must match ", kNamePattern));
  }
  return absl::OkStatus();
}

bool IsImageChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-' || c == '/' || c == ':';
}

// A port number 1-65535, digits only.
bool IsPort(absl::string_view text) {
  int port = 0;
  return text.size() <= 5 && IsDigits(text) && absl::SimpleAtoi(text, &port) &&
         port >= 1 && port <= 65535;
}

bool IsIpv4Chars(absl::string_view ip) {
  return !ip.empty() && std::all_of(ip.begin(), ip.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

// "[v6]:host:container", the brackets already seen at rest[0].
absl::Status ParseBracketedPorts(absl::string_view spec, absl::string_view rest,
                                 PortMapping* mapping) {
  const size_t close = rest.find(']');
  if (close == absl::string_view::npos || close + 1 >= rest.size() ||
      rest[close + 1] != ':') {
    return absl::InvalidArgumentError(
        absl::StrCat("port \"", spec, "\": bad IPv6 address"));
  }
  mapping->host_ip = std::string(rest.substr(1, close - 1));
  std::vector<absl::string_view> parts =
      absl::StrSplit(rest.substr(close + 2), ':');
  if (parts.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("port \"", spec, "\": want [ip]:hostPort:containerPort"));
  }
  mapping->host_port = std::string(parts[0]);
  mapping->container_port = std::string(parts[1]);
  return absl::OkStatus();
}

// "container", "host:container" or "ip:host:container" (IPv4).
absl::Status ParsePlainPorts(absl::string_view spec, absl::string_view rest,
                             PortMapping* mapping) {
  std::vector<absl::string_view> parts = absl::StrSplit(rest, ':');
  if (parts.size() > 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "port \"", spec, "\": want [ip:]hostPort:containerPort[/proto]"));
  }
  mapping->container_port = std::string(parts.back());
  if (parts.size() >= 2)
    mapping->host_port = std::string(parts[parts.size() - 2]);
  if (parts.size() == 3) {
    mapping->host_ip = std::string(parts[0]);
    if (!IsIpv4Chars(mapping->host_ip)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "port \"", spec, "\": host IP must be an IPv4 address or [IPv6]"));
    }
  }
  return absl::OkStatus();
}

// The third part of a volume: "ro" or "rw". Docker's other options (z, Z,
// propagation, nocopy) are not part of the contract; anything but letters,
// digits and commas is "bad options".
absl::Status CheckVolumeMode(absl::string_view spec, absl::string_view mode) {
  if (mode.empty() || !std::all_of(mode.begin(), mode.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == ',';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume \"", spec, "\": bad options"));
  }
  if (mode != "ro" && mode != "rw") {
    return absl::InvalidArgumentError(
        absl::StrCat("volume \"", spec, "\": mode must be ro or rw"));
  }
  return absl::OkStatus();
}

// env entries: KEY=VALUE with a non-empty key. Only the key is echoed:
// values may be secrets.
absl::Status ValidateEnvEntry(const std::string& env) {
  if (env.empty() || env[0] == '=' || env.find('=') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("env entry must be KEY=VALUE (entry ",
                     env.substr(0, env.find('=')), ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateUser(const std::string& user) {
  if (!std::all_of(user.begin(), user.end(),
                   [](char c) { return IsNameChar(c) || c == ':'; })) {
    return absl::InvalidArgumentError(
        absl::StrCat("user \"", user, "\" must be NAME[:GROUP] or UID[:GID]"));
  }
  return absl::OkStatus();
}

// "host:port": a host name, IPv4 or [IPv6] address, and a port 1-65535.
bool IsHostPort(absl::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  const absl::string_view host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
  } else if (!std::all_of(host.begin(), host.end(), IsNameChar)) {
    return false;
  }
  return IsPort(text.substr(colon + 1));
}

// hoist.* labels are how the agent recognises its own containers; a spec
// must not forge them.
void AddLabelProblems(const ContainerSpec& c, std::vector<SpecProblem>* out) {
  for (const auto& [key, value] : c.labels()) {
    if (key.empty()) {
      out->push_back(
          {"container.labels", -1,
           absl::InvalidArgumentError("label keys must not be empty")});
    } else if (absl::StartsWith(key, "hoist.")) {
      out->push_back(
          {"container.labels", -1,
           absl::InvalidArgumentError(absl::StrCat(
               "label \"", key, "\": hoist.* labels are reserved"))});
    }
  }
}

// ports, env, env_files and volumes: one problem per wrong item.
void AddListProblems(const ContainerSpec& c, std::vector<SpecProblem>* out) {
  auto add = [out](const char* field, int index, absl::Status status) {
    if (!status.ok()) out->push_back({field, index, std::move(status)});
  };
  for (int i = 0; i < c.ports_size(); ++i)
    add("container.ports", i, ParsePortSpec(c.ports(i)).status());
  for (int i = 0; i < c.env_size(); ++i)
    add("container.env", i, ValidateEnvEntry(c.env(i)));
  for (int i = 0; i < c.env_files_size(); ++i)
    add("container.env_files", i, CheckHostPath("env_file", c.env_files(i)));
  for (int i = 0; i < c.volumes_size(); ++i)
    add("container.volumes", i, ParseVolumeSpec(c.volumes(i)).status());
}

// Ranges the agent can convert without overflow (memory_mb to bytes, cpus
// to nano-CPUs).
absl::Status ValidateMemory(const ContainerSpec& c) {
  if (c.memory_mb() < 0)
    return absl::InvalidArgumentError("memory_mb must be >= 0");
  if (c.memory_mb() > kMaxMemoryMb) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory_mb must be at most ", kMaxMemoryMb));
  }
  return absl::OkStatus();
}

// NaN fails every comparison: refused as "not a number at most ...".
absl::Status ValidateCpus(const ContainerSpec& c) {
  if (c.cpus() < 0) return absl::InvalidArgumentError("cpus must be >= 0");
  if (!(c.cpus() <= kMaxCpus)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpus must be a number at most ", kMaxCpus));
  }
  return absl::OkStatus();
}

absl::Status ValidateStopTimeout(const ContainerSpec& c) {
  if (c.stop_timeout_seconds() < 0)
    return absl::InvalidArgumentError("stop_timeout_seconds must be >= 0");
  if (c.stop_timeout_seconds() > kMaxStopTimeoutSeconds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stop_timeout_seconds must be at most ", kMaxStopTimeoutSeconds));
  }
  return absl::OkStatus();
}

// network, user, limits, log driver, restart policy.
void AddRuntimeProblems(const ContainerSpec& c, std::vector<SpecProblem>* out) {
  auto add = [out](const char* field, absl::Status status) {
    if (!status.ok()) out->push_back({field, -1, std::move(status)});
  };
  if (!c.network().empty())
    add("container.network", CheckName("network", c.network(), kMaxNameLength));
  if (!c.user().empty()) add("container.user", ValidateUser(c.user()));
  add("container.memory_mb", ValidateMemory(c));
  add("container.cpus", ValidateCpus(c));
  add("container.stop_timeout_seconds", ValidateStopTimeout(c));
  if (!c.log_driver().empty()) {
    add("container.log.driver",
        CheckName("log_driver", c.log_driver(), kMaxLogDriverLength));
  }
  add("container.restart", ValidateRestartPolicy(c.restart()));
}

void AddHealthProblems(const HealthCheck& h, std::vector<SpecProblem>* out) {
  if (h.interval_seconds() < 0 || h.timeout_seconds() < 0) {
    out->push_back(
        {h.interval_seconds() < 0 ? "health.interval_seconds"
                                  : "health.timeout_seconds",
         -1,
         absl::InvalidArgumentError(
             "health interval_seconds and timeout_seconds must be >= 0")});
  }
  if (h.interval_seconds() > kMaxHealthIntervalSeconds ||
      h.timeout_seconds() > kMaxHealthTimeoutSeconds) {
    out->push_back(
        {h.interval_seconds() > kMaxHealthIntervalSeconds
             ? "health.interval_seconds"
             : "health.timeout_seconds",
         -1,
         absl::InvalidArgumentError(absl::StrCat(
             "health interval_seconds must be at most ",
             kMaxHealthIntervalSeconds, " and timeout_seconds at most ",
             kMaxHealthTimeoutSeconds))});
  }
  if (!h.http_get().empty() && !absl::StartsWith(h.http_get(), "http://") &&
      !absl::StartsWith(h.http_get(), "https://")) {
    out->push_back({"health.http_get", -1,
                    absl::InvalidArgumentError(absl::StrCat(
                        "health.http_get \"", h.http_get(),
                        "\" must be an http:// or https:// URL"))});
  }
  if (!h.tcp().empty() && !IsHostPort(h.tcp())) {
    out->push_back({"health.tcp", -1,
                    absl::InvalidArgumentError(absl::StrCat(
                        "health.tcp \"", h.tcp(), "\" must be host:port"))});
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Names and references

absl::Status CheckName(absl::string_view field, absl::string_view value,
                       size_t max_len) {
  HOIST_RETURN_IF_ERROR(CheckNameChars(field, value, max_len));
  if (absl::StrContains(value, "..")) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", value, "\" must not contain \"..\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateAgentName(absl::string_view name) {
  absl::Status status = CheckName("agent name", name, kMaxAgentNameLength);
  if (!status.ok() && name.size() > kMaxAgentNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "agent name \"", name, "\" is longer than ", kMaxAgentNameLength,
        " (deploy ids \"<rollout id>-<agent>-rollback\" must fit ",
        kMaxDeployIdLength, " characters)"));
  }
  return status;
}

absl::Status ValidateContainerName(absl::string_view field,
                                   absl::string_view name) {
  HOIST_RETURN_IF_ERROR(CheckName(field, name, kMaxContainerNameLength));
  if (absl::StrContains(name, kTempContainerInfix)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must not contain \"", kTempContainerInfix, "\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateDeployId(absl::string_view field, absl::string_view id) {
  return CheckName(field, id, kMaxDeployIdLength);
}

absl::Status ValidateImageRepository(absl::string_view image) {
  if (image.empty()) return absl::InvalidArgumentError("image is required");
  const auto bad_char =
      std::find_if_not(image.begin(), image.end(), IsImageChar);
  if (bad_char != image.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image \"", image, "\": character '", std::string(1, *bad_char),
        "' not allowed (letters, digits, . _ - / :)"));
  }
  if (image.size() > kMaxImageLength || absl::StrContains(image, "..") ||
      absl::StrContains(image, "//") || image.front() == '/' ||
      image.front() == '-' || image.back() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("image \"", image,
                     "\" must be a repository name like registry:5000/team/app "
                     "(letters, digits, . _ - / :), without tag or digest"));
  }
  const size_t last_slash = image.rfind('/');
  const absl::string_view last = last_slash == absl::string_view::npos
                                     ? image
                                     : image.substr(last_slash + 1);
  if (absl::StrContains(last, ':')) {
    return absl::InvalidArgumentError(
        absl::StrCat("image \"", image,
                     "\" must not carry a tag (it is deployed as "
                     "image@digest, or the tag is a field of its own)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateDigest(absl::string_view digest) {
  if (digest.size() != 7 + 64 || !absl::StartsWith(digest, "sha256:") ||
      !IsLowerHex(digest.substr(7))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "digest \"", digest, "\" must be sha256:<64 lowercase hex>"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTag(absl::string_view tag) {
  // Docker's tag grammar, [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}: the webhook
  // (receiver/payload.cc) accepts exactly what agents accept.
  if (tag.empty()) return absl::InvalidArgumentError("tag is required");
  if (tag.size() > 128) {
    return absl::InvalidArgumentError("tag is longer than 128");
  }
  if ((!absl::ascii_isalnum(static_cast<unsigned char>(tag[0])) &&
       tag[0] != '_') ||
      !std::all_of(tag.begin(), tag.end(), IsNameChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tag \"", tag, "\" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
  }
  return absl::OkStatus();
}

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
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c)) ||
        absl::StrContains("$`;|&<>*?\"'\\", c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", path, "\" contains a forbidden character"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Container spec parts

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
  if (!rest.empty() && rest[0] == '[') {
    HOIST_RETURN_IF_ERROR(ParseBracketedPorts(spec, rest, &mapping));
  } else {
    HOIST_RETURN_IF_ERROR(ParsePlainPorts(spec, rest, &mapping));
  }
  if (!IsPort(mapping.container_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("port \"", spec, "\": container port must be 1-65535"));
  }
  if (!mapping.host_port.empty() && !IsPort(mapping.host_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("port \"", spec, "\": host port must be 1-65535"));
  }
  return mapping;
}

absl::StatusOr<VolumeSpec> ParseVolumeSpec(absl::string_view spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  if (parts.size() < 2 || parts.size() > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("volume \"", spec, "\" must be src:dst[:opts]"));
  }
  VolumeSpec volume{parts[0], parts[1], parts.size() == 3 ? parts[2] : ""};
  if (volume.is_bind()) {
    HOIST_RETURN_IF_ERROR(CheckHostPath("volume source", volume.source));
  } else {
    HOIST_RETURN_IF_ERROR(
        CheckName("volume name", volume.source, kMaxNameLength));
  }
  HOIST_RETURN_IF_ERROR(CheckHostPath("volume target", volume.target));
  if (parts.size() == 3)
    HOIST_RETURN_IF_ERROR(CheckVolumeMode(spec, volume.mode));
  return volume;
}

absl::Status ValidateRestartPolicy(absl::string_view policy) {
  if (policy.empty() || policy == "no" || policy == "always" ||
      policy == "unless-stopped" || policy == "on-failure") {
    return absl::OkStatus();
  }
  if (absl::StartsWith(policy, "on-failure:")) {
    const absl::string_view retries = policy.substr(11);
    if (IsDigits(retries) && retries.size() <= 9) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("restart policy \"", policy,
                   "\": want no, always, unless-stopped or on-failure[:N]"));
}

std::vector<SpecProblem> ContainerSpecProblems(const ContainerSpec& container,
                                               const HealthCheck& health) {
  std::vector<SpecProblem> out;
  if (absl::Status name =
          ValidateContainerName("container.name", container.name());
      !name.ok()) {
    out.push_back({"container.name", -1, std::move(name)});
  }
  AddListProblems(container, &out);
  AddLabelProblems(container, &out);
  AddRuntimeProblems(container, &out);
  AddHealthProblems(health, &out);
  return out;
}

absl::Status ValidateContainerSpec(const ContainerSpec& container,
                                   const HealthCheck& health) {
  std::vector<SpecProblem> problems = ContainerSpecProblems(container, health);
  if (problems.empty()) return absl::OkStatus();
  return problems.front().status;
}

// ---------------------------------------------------------------------------
// Agent policy

namespace {

// Whether `path` is `root` or lies below it (both normalized).
bool IsWithin(absl::string_view path, absl::string_view root) {
  if (root == "/") return true;
  return absl::StartsWith(path, root) &&
         (path.size() == root.size() || path[root.size()] == '/');
}

// A path as the policy compares it: normalized, and where it leads on this
// host when the policy follows symlinks (else the same). `status` is not OK
// when an existing part could not be resolved.
struct PathForms {
  std::string normalized;
  std::string resolved;
  absl::Status status;
};

PathForms FormsOf(const Policy& policy, absl::string_view path) {
  PathForms forms;
  forms.normalized = NormalizePath(path);
  forms.resolved = forms.normalized;
  if (policy.follow_symlinks) {
    absl::StatusOr<std::string> resolved = ResolveHostPath(path);
    if (resolved.ok()) {
      forms.resolved = *std::move(resolved);
    } else {
      forms.status = resolved.status();
    }
  }
  return forms;
}

// `what "path"`, and where it resolves when that differs.
std::string Shown(absl::string_view what, absl::string_view path,
                  const PathForms& forms) {
  std::string out = absl::StrCat(what, " \"", path, "\"");
  if (forms.resolved != path)
    absl::StrAppend(&out, " (resolves to \"", forms.resolved, "\")");
  return out;
}

// Why `source` hits the refused path `refused` ("" when it does not): it is
// the path or lies below it ("/" only itself), or, with `refuse_ancestors`,
// it contains the path. Both forms of each are compared, so that neither a
// symlink nor its target slips through.
std::string RefusedReason(const Policy& policy, const PathForms& source,
                          const std::string& refused, bool refuse_ancestors) {
  const PathForms target = FormsOf(policy, refused);
  for (const std::string* s : {&source.normalized, &source.resolved}) {
    for (const std::string* r : {&target.normalized, &target.resolved}) {
      if (*r == "/" ? *s == "/" : IsWithin(*s, *r))
        return absl::StrCat("refused path ", refused);
      if (refuse_ancestors && IsWithin(*r, *s))
        return absl::StrCat("it contains refused path ", refused);
    }
  }
  return "";
}

// Whether what `source` leads to lies under one of `roots` (true when there
// are none).
bool UnderSomeRoot(const Policy& policy, const PathForms& source,
                   const std::vector<std::string>& roots) {
  if (roots.empty()) return true;
  return std::any_of(roots.begin(), roots.end(), [&](const std::string& root) {
    const PathForms forms = FormsOf(policy, root);
    return IsWithin(source.resolved, forms.resolved) ||
           IsWithin(source.resolved, forms.normalized);
  });
}

// The rules for one host path (a bind source or an env file).
struct PathRule {
  const char* what;       // "bind source", "env_file"
  const char* roots_key;  // "policy.volume_roots"
  const std::vector<std::string>* roots;
  const std::vector<std::string>* refused;
  bool refuse_ancestors;
};

absl::Status CheckPathRule(const Policy& policy, const PathRule& rule,
                           absl::string_view path) {
  const PathForms forms = FormsOf(policy, path);
  if (!forms.status.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("policy: ", rule.what, " \"", path,
                     "\" cannot be resolved: ", forms.status.message()));
  }
  for (const std::string& refused : *rule.refused) {
    const std::string reason =
        RefusedReason(policy, forms, refused, rule.refuse_ancestors);
    if (!reason.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("policy: ", Shown(rule.what, path, forms),
                       " is refused (", reason, ")"));
    }
  }
  if (!UnderSomeRoot(policy, forms, *rule.roots)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "policy: ", Shown(rule.what, path, forms), " is outside ",
        rule.roots_key, " [", absl::StrJoin(*rule.roots, ", "), "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckImageRule(const Policy& policy, absl::string_view image) {
  if (policy.images.empty()) return absl::OkStatus();
  const std::string name(image);
  for (const std::string& glob : policy.images) {
    if (fnmatch(glob.c_str(), name.c_str(), 0) == 0) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "policy: image \"", image, "\" matches none of policy.images [",
      absl::StrJoin(policy.images, ", "), "]"));
}

}  // namespace

Policy DefaultPolicy() {
  Policy policy;
  policy.refused_bind_paths = {"/",
                               "/etc",
                               "/proc",
                               "/sys",
                               "/root",
                               "/var/run/docker.sock",
                               "/run/docker.sock",
                               "/var/lib/hoist-agent"};
  policy.refused_env_file_paths = {"/proc",
                                   "/sys",
                                   "/root",
                                   "/var/run/docker.sock",
                                   "/run/docker.sock",
                                   "/var/lib/hoist-agent"};
  return policy;
}

std::vector<SpecProblem> PolicyProblems(const Policy& policy,
                                        absl::string_view image,
                                        const ContainerSpec& container) {
  std::vector<SpecProblem> out;
  if (absl::Status s = CheckImageRule(policy, image); !s.ok())
    out.push_back({"image", -1, std::move(s)});
  const PathRule bind{"bind source", "policy.volume_roots",
                      &policy.volume_roots, &policy.refused_bind_paths,
                      /*refuse_ancestors=*/true};
  for (int i = 0; i < container.volumes_size(); ++i) {
    absl::StatusOr<VolumeSpec> volume = ParseVolumeSpec(container.volumes(i));
    if (!volume.ok() || !volume->is_bind()) continue;  // not a host path
    if (absl::Status s = CheckPathRule(policy, bind, volume->source); !s.ok())
      out.push_back({"container.volumes", i, std::move(s)});
  }
  const PathRule env_file{"env_file", "policy.env_file_roots",
                          &policy.env_file_roots,
                          &policy.refused_env_file_paths,
                          /*refuse_ancestors=*/false};
  for (int i = 0; i < container.env_files_size(); ++i) {
    if (!CheckHostPath("env_file", container.env_files(i)).ok()) continue;
    if (absl::Status s =
            CheckPathRule(policy, env_file, container.env_files(i));
        !s.ok())
      out.push_back({"container.env_files", i, std::move(s)});
  }
  if (container.network() == "host" && !policy.allow_host_network) {
    out.push_back({"container.network", -1,
                   absl::FailedPreconditionError(
                       "policy: network \"host\" is refused "
                       "(policy.allow_host_network is false)")});
  }
  return out;
}

absl::Status CheckPolicy(const Policy& policy, absl::string_view image,
                         const ContainerSpec& container) {
  std::vector<SpecProblem> problems = PolicyProblems(policy, image, container);
  if (problems.empty()) return absl::OkStatus();
  return problems.front().status;
}

std::string NormalizePath(absl::string_view path) {
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  return absl::StrCat("/", absl::StrJoin(parts, "/"));
}

absl::StatusOr<std::string> ResolveHostPath(absl::string_view path) {
  const std::string normalized = NormalizePath(path);
  const std::vector<std::string> parts =
      absl::StrSplit(normalized, '/', absl::SkipEmpty());
  // Longest existing prefix first; "/" always exists, so the loop returns.
  for (auto end = parts.end();; --end) {
    const std::string prefix =
        absl::StrCat("/", absl::StrJoin(parts.begin(), end, "/"));
    struct stat st;
    if (lstat(prefix.c_str(), &st) == 0 || end == parts.begin()) {
      char buffer[PATH_MAX];
      if (realpath(prefix.c_str(), buffer) == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat(prefix, ": ", std::strerror(errno)));
      }
      const std::string rest = absl::StrJoin(end, parts.end(), "/");
      return NormalizePath(rest.empty() ? std::string(buffer)
                                        : absl::StrCat(buffer, "/", rest));
    }
  }
}

}  // namespace hoist::spec
