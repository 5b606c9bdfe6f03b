// The real DockerClient: Engine API over the daemon's unix socket (libcurl).
#ifndef HOIST_NODEAGENT_DOCKER_CLIENT_CURL_H_
#define HOIST_NODEAGENT_DOCKER_CLIENT_CURL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nodeagent/docker_client.h"

namespace hoist::nodeagent {

struct CurlDockerClientOptions {
  // "unix:///var/run/docker.sock" (or a bare socket path).
  std::string endpoint = "unix:///var/run/docker.sock";
  // Total timeout of ordinary calls (stop adds its own grace period).
  absl::Duration call_timeout = absl::Seconds(60);
  // Pulls have no total timeout; they fail when slower than 1 byte/s for this
  // long.
  absl::Duration pull_stall_timeout = absl::Seconds(120);
  // The highest Engine API version we speak; lowered to the server's.
  std::string max_api_version = "1.41";
};

// Validates the endpoint (only unix sockets) and returns a client. Does not
// contact the daemon: the API version is negotiated on first use (and again
// after the daemon was unreachable). Thread-safe: one CURL handle per call.
absl::StatusOr<std::unique_ptr<DockerClient>> NewCurlDockerClient(
    const CurlDockerClientOptions& options);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_DOCKER_CLIENT_CURL_H_
