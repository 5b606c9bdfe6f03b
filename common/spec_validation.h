// The one set of rules for what a deploy may ask of a host: names, deploy
// ids, image references, container specs and health checks (format), and the
// agent's policy (what a deployer may reach on the host). The receiver's
// config loader and the agent's request validation both call these, so a
// config `hoist-receiver --check-config` accepts is one every agent with the
// default policy accepts (docs/design.md, "Receiver config" and "Agent
// policy").
//
// Messages name the field and, where it is no secret, the value; they are
// the agent's words (tests/nodeagent/deploy_manager_test.cc holds them), and
// the receiver prefixes the service.
//
// Pure functions except that the policy, when it follows symlinks, reads the
// host's filesystem (lstat, realpath). Thread-safe.
#ifndef HOIST_COMMON_SPEC_VALIDATION_H_
#define HOIST_COMMON_SPEC_VALIDATION_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hoist/v1/types.pb.h"

namespace hoist::spec {

// Service, network and volume names, and deploy ids.
inline constexpr size_t kMaxNameLength = 128;
// A deploy creates NAME + kTempContainerInfix + 12 hex digits first; 100
// leaves room for that within Docker's and Hoist's limits.
inline constexpr size_t kMaxContainerNameLength = 100;
// Deploy ids are "<rollout id>-<agent>" and a host's rollback
// "<deploy id>-rollback"; rollout ids are 26 characters, so 63 keeps both
// within kMaxDeployIdLength.
inline constexpr size_t kMaxAgentNameLength = 63;
inline constexpr size_t kMaxDeployIdLength = 128;
inline constexpr size_t kMaxLogDriverLength = 64;
inline constexpr size_t kMaxImageLength = 255;
inline constexpr int64_t kMaxMemoryMb = int64_t{1} << 30;
inline constexpr double kMaxCpus = 1024;
inline constexpr int kMaxStopTimeoutSeconds = 3600;
inline constexpr int kMaxHealthIntervalSeconds = 3600;
inline constexpr int kMaxHealthTimeoutSeconds = 86400;
// The infix of a deploy's temporary container name; a container name holding
// it would be taken for a candidate and removed by the agent's recovery.
inline constexpr char kTempContainerInfix[] = ".hoist-new-";

// ---------------------------------------------------------------------------
// Names and references. Each returns OK or INVALID_ARGUMENT naming `field`.

// 1..max_len characters of [a-zA-Z0-9][a-zA-Z0-9_.-]* without "..": no
// shell characters, slashes, whitespace or path escapes.
absl::Status CheckName(absl::string_view field, absl::string_view value,
                       size_t max_len);

// CheckName, at most kMaxAgentNameLength.
absl::Status ValidateAgentName(absl::string_view name);

// CheckName, at most kMaxContainerNameLength, without kTempContainerInfix.
absl::Status ValidateContainerName(absl::string_view field,
                                   absl::string_view name);

// CheckName, at most kMaxDeployIdLength.
absl::Status ValidateDeployId(absl::string_view field, absl::string_view id);

// A repository without tag or digest ("registry:5000/team/app"): letters,
// digits, . _ - / :, at most kMaxImageLength, no "..", "//", leading "/" or
// "-", trailing "/", and no ":" in the last path component.
absl::Status ValidateImageRepository(absl::string_view image);

// "sha256:" and 64 lowercase hex digits.
absl::Status ValidateDigest(absl::string_view digest);

// 1..128 characters of [a-zA-Z0-9][a-zA-Z0-9_.-]*.
absl::Status ValidateTag(absl::string_view tag);

// A path on the agent's host: absolute, no ".." component, no control
// character and none of $`;|&<>*?"'\ .
absl::Status CheckHostPath(absl::string_view field, absl::string_view path);

// ---------------------------------------------------------------------------
// Container spec parts.

struct PortMapping {
  std::string host_ip;    // "" = all interfaces
  std::string host_port;  // "" = not published
  std::string container_port;
  std::string protocol;  // "tcp" | "udp" | "sctp"
};
// "[ip:]hostPort:containerPort[/proto]" or "containerPort[/proto]"; ip an
// IPv4 address or a bracketed IPv6 one; ports 1-65535.
absl::StatusOr<PortMapping> ParsePortSpec(absl::string_view spec);

struct VolumeSpec {
  std::string source;  // an absolute host path (a bind) or a volume name
  std::string target;  // absolute path in the container
  std::string mode;    // "", "ro" or "rw"
  bool is_bind() const { return !source.empty() && source[0] == '/'; }
};
// "src:dst[:ro|rw]".
absl::StatusOr<VolumeSpec> ParseVolumeSpec(absl::string_view spec);

// "" (= no), no, always, unless-stopped, on-failure or on-failure:N.
absl::Status ValidateRestartPolicy(absl::string_view policy);

// One problem with a container spec or health check. `field` is the config
// key it belongs to ("container.ports", "health.tcp"); `index` the list
// item for list fields (-1 otherwise); `status` INVALID_ARGUMENT (format) or
// FAILED_PRECONDITION (policy) with the message.
struct SpecProblem {
  std::string field;
  int index = -1;
  absl::Status status;
};

// Every format problem of `container` and `health`, in field order: name,
// ports, env, env_files, volumes, labels, network, user, memory_mb, cpus,
// stop_timeout_seconds, log driver, restart, then health.
std::vector<SpecProblem> ContainerSpecProblems(
    const hoist::v1::ContainerSpec& container,
    const hoist::v1::HealthCheck& health);

// The first of ContainerSpecProblems, or OK.
absl::Status ValidateContainerSpec(const hoist::v1::ContainerSpec& container,
                                   const hoist::v1::HealthCheck& health);

// ---------------------------------------------------------------------------
// Agent policy (docs/design.md, "Agent policy"): what a deployer may reach on
// the host, so that a stolen deployer key is not root on every host.

struct Policy {
  // Bind sources must lie under one of these; empty: anywhere. Either way a
  // refused path is refused.
  std::vector<std::string> volume_roots;
  // The same for env_files.
  std::vector<std::string> env_file_roots;
  bool allow_host_network = false;
  // fnmatch(3) globs over the request's image (the repository, without tag
  // or digest; "*" also matches "/"); empty: any image.
  std::vector<std::string> images;
  // A bind source that is one of these, lies below one, or contains one is
  // refused ("/" refuses only itself: everything lies below it).
  std::vector<std::string> refused_bind_paths;
  // An env file that is one of these or lies below one is refused.
  std::vector<std::string> refused_env_file_paths;
  // Paths are compared after lexical normalization and, when true, after
  // resolving symlinks on this host (the agent). The receiver compares
  // lexically: it cannot see the agents' filesystems.
  bool follow_symlinks = true;
};

// The policy of an agent without `policy:`, with the default state_dir and
// Docker socket: binds of /, /etc, /proc, /sys, /root, the Docker socket
// (/var/run/docker.sock, /run/docker.sock) and /var/lib/hoist-agent are
// refused; env files under /proc, /sys, /root, the socket and the state dir
// are refused; host networking is refused; any image. An agent adds its own
// state_dir, socket and files (nodeagent/config.cc).
Policy DefaultPolicy();

// Every policy problem of a deploy of `image` with `container`
// (FAILED_PRECONDITION, messages starting "policy: " and naming the rule).
// Volumes and env files that break the format rules are skipped (they are
// ContainerSpecProblems).
std::vector<SpecProblem> PolicyProblems(
    const Policy& policy, absl::string_view image,
    const hoist::v1::ContainerSpec& container);

// The first of PolicyProblems, or OK.
absl::Status CheckPolicy(const Policy& policy, absl::string_view image,
                         const hoist::v1::ContainerSpec& container);

// `path` with "//" and "." removed and ".." applied, never above "/".
// `path` must be absolute.
std::string NormalizePath(absl::string_view path);

// NormalizePath, then the longest prefix that exists on this host resolved
// through realpath(3), the rest appended. FAILED_PRECONDITION when an
// existing prefix cannot be resolved (a dangling or looping symlink).
absl::StatusOr<std::string> ResolveHostPath(absl::string_view path);

}  // namespace hoist::spec

#endif  // HOIST_COMMON_SPEC_VALIDATION_H_
