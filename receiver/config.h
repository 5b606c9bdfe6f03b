// The receiver's YAML config (docs/design.md, "Receiver config").
#ifndef HOIST_RECEIVER_CONFIG_H_
#define HOIST_RECEIVER_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tls.h"
#include "hoist/v1/types.pb.h"
#include "receiver/notify_config.h"

namespace hoist::receiver {

enum class WebhookAuth { kToken, kHmacSha256 };
enum class OnFailure { kRollback, kPause, kContinue };
// What convergence does with a service's drifted hosts (docs/design.md,
// "Receiver config"): kAuto fixes them with converge rollouts, kReport
// computes their states and notifies `drift`, kOff computes states only.
enum class ConvergeMode { kAuto, kReport, kOff };
// The mode as `converge:` spells it ("auto", "report", "off"), and back
// (nullopt for another word).
const char* ConvergeModeName(ConvergeMode mode);
std::optional<ConvergeMode> ParseConvergeMode(absl::string_view name);

struct WebhookConfig {
  std::string listen = "0.0.0.0:7979";
  std::string path = "/webhooks/artifactory";
  std::string tls_cert;  // optional HTTPS (resolved paths)
  std::string tls_key;
  std::vector<std::string> secret_files;  // resolved paths; one or more
  std::vector<std::string>
      secrets;  // their contents (trailing newline stripped)
  WebhookAuth auth = WebhookAuth::kToken;
  int64_t max_body_bytes = 1048576;
  int64_t dedupe_window_seconds = 600;
  // Limits of the public port (docs/design.md, "Receiver config" and
  // "Webhook connections"). A request must arrive whole within
  // request_timeout_seconds of its first byte (of the TLS handshake, for a
  // connection's first request over HTTPS); a connection sending nothing for
  // idle_timeout_seconds (before a request, between keep-alive requests) is
  // closed.
  int64_t request_timeout_seconds = 10;
  int64_t idle_timeout_seconds = 30;
  // Open connections at most, in all and per TCP peer address (0: no
  // per-address cap); a connection over either is closed at once.
  int64_t max_connections = 10000;
  int64_t max_connections_per_ip = 256;
  // Request body bytes held, over all connections, before the handler ran;
  // a request that would push the total over it is answered 503.
  int64_t max_unauthenticated_bytes = int64_t{64} << 20;
};

struct AgentCallConfig {
  int64_t deadline_seconds = 300;
  int64_t connect_timeout_seconds = 10;
  int64_t retry_seconds = 60;
};

struct AgentEntry {
  std::string name;
  std::string address;   // host:port
  std::string tls_name;  // name the agent's certificate must carry; default:
                         // host part of address
  std::map<std::string, std::string> labels;
};

struct TriggerConfig {
  std::string domain = "docker";
  std::vector<std::string> event_types = {"promoted"};
  std::string repo_key;           // empty: any
  std::string image;              // full image path inside the repo
  std::vector<std::string> tags;  // globs with *; empty: any
};

struct TargetsConfig {
  std::map<std::string, std::string> labels;  // every label must match
  std::vector<std::string> names;  // or explicit agent names (not both)
};

struct RolloutPolicy {
  int64_t canary = 0;         // hosts deployed first, alone
  std::string batch = "1";    // "N" or "P%"
  int64_t pause_seconds = 0;  // between batches
  OnFailure on_failure = OnFailure::kRollback;
};

struct ServiceConfig {
  std::string name;
  TriggerConfig trigger;
  std::string image;  // repository, deployed as image@digest
  TargetsConfig targets;
  hoist::v1::ContainerSpec container;
  hoist::v1::HealthCheck health;
  RolloutPolicy rollout;
  ConvergeMode converge = ConvergeMode::kAuto;  // `converge:`
};

// `converge_policy:`, for every service (docs/design.md, "Receiver config").
// A drift must last delay_seconds before a converge rollout starts; a host's
// failed attempts back off from retry_initial_seconds, doubling up to
// retry_max_seconds; after max_attempts the host is GAVE_UP. The loader
// guarantees every value non-negative, retry_initial_seconds <=
// retry_max_seconds and max_attempts >= 1.
struct ConvergePolicy {
  int64_t delay_seconds = 5;
  int64_t retry_initial_seconds = 30;
  int64_t retry_max_seconds = 3600;
  int64_t max_attempts = 5;
};

// `etcd:` (docs/design.md, "High availability on etcd"): several receivers
// share an etcd v3 cluster as journal and coordinator. Absent: the SQLite
// journal at `state:`; the two keys are exclusive. The loader guarantees the
// endpoints are all http:// or all https:// host:port URLs, that https://
// comes with all three TLS files (readable) and http:// with none, that
// prefix starts and ends with '/', and the bounds below.
struct EtcdConfig {
  std::vector<std::string> endpoints;  // empty: no etcd
  std::string tls_ca;                  // resolved paths
  std::string tls_cert;
  std::string tls_key;
  std::string prefix = "/hoist/";
  int64_t lease_seconds = 5;            // 2-60 (DESIGN decision 14)
  int64_t request_timeout_seconds = 3;  // every etcd call's deadline, 1-60

  bool enabled() const { return !endpoints.empty(); }
};

// `dashboard:` (docs/design.md, "Dashboard"); absent: no dashboard.
struct DashboardConfig {
  std::string listen;    // empty: no dashboard
  std::string tls_cert;  // optional HTTPS (resolved paths)
  std::string tls_key;
  std::string tokens_file;  // resolved; lines "NAME ROLE SHA256-HEX"
};

struct ReceiverConfig {
  WebhookConfig webhook;
  std::string control_listen = "0.0.0.0:7980";
  std::string metrics_listen;  // optional
  TlsFiles tls;  // Control server cert and client cert toward agents
  std::vector<std::string> operators;                // authz.operators
  std::vector<std::string> viewers;                  // authz.viewers
  std::string state = "/var/lib/hoist/receiver.db";  // unused with etcd
  EtcdConfig etcd;
  AgentCallConfig agent_call;
  ConvergePolicy converge_policy;
  std::vector<AgentEntry> agents;
  std::vector<ServiceConfig> services;
  std::vector<NotifySink> notify;  // `notify:` (notify_config.h)
  DashboardConfig dashboard;
  std::string config_file;

  const ServiceConfig* FindService(const std::string& name) const;
  const AgentEntry* FindAgent(const std::string& name) const;
};

// Loads and validates `path`, including cross-checks (unknown agents in
// targets, services with no targets, duplicate names, bad port or volume
// specs, unreadable secret files). Every problem is reported as
// "FILE:LINE: problem" in one INVALID_ARGUMENT.
absl::StatusOr<ReceiverConfig> LoadReceiverConfig(const std::string& path);

// The agents a service targets, in config order.
std::vector<const AgentEntry*> ResolveTargets(const ReceiverConfig& config,
                                              const ServiceConfig& service);

// Number of hosts per batch for `batch` ("N" or "P%") over `targets` hosts;
// at least 1. INVALID_ARGUMENT for a malformed spec.
absl::StatusOr<int> BatchSize(const std::string& batch, int targets);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_CONFIG_H_
