// The agent's YAML config (docs/design.md, "Agent config").
#ifndef HOIST_NODEAGENT_CONFIG_H_
#define HOIST_NODEAGENT_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/spec_validation.h"
#include "common/tls.h"

namespace hoist::nodeagent {

// Pull credentials for one registry; the password stays in its file on the
// host.
struct RegistryAuth {
  std::string server;  // "registry.example.com" or "host:port"
  std::string username;
  std::string password_file;  // resolved path
};

struct AgentConfig {
  std::string listen = "0.0.0.0:7981";
  TlsFiles tls;                        // resolved paths
  std::vector<std::string> deployers;  // identities that may call everything
  std::vector<std::string> viewers;    // GetStatus, ListContainers, WatchDeploy
  std::string docker_endpoint = "unix:///var/run/docker.sock";
  std::vector<RegistryAuth> registries;
  std::string state_dir = "/var/lib/hoist-agent";
  int keep_images = 3;
  std::string metrics_listen;  // empty: no metrics server
  std::string host;  // extension: name reported in events; default hostname
  std::string config_file;  // where it was loaded from
  // `policy:` (docs/design.md, "Agent policy"): the roots, host networking
  // and image globs as configured; the refused paths are the default ones
  // plus this agent's own: the Docker socket, state_dir, the tls files, the
  // registries' password files and this config file (absolute paths).
  spec::Policy policy = spec::DefaultPolicy();
};

// Loads and validates `path`. Relative paths resolve against its folder.
// Every problem is reported as "FILE:LINE: problem" in one INVALID_ARGUMENT.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_CONFIG_H_
