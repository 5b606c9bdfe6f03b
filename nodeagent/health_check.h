// Health probes the deploy state machine runs against a new container.
// Each probe is one attempt bounded by `timeout`; thread-safe.
#ifndef HOIST_NODEAGENT_HEALTH_CHECK_H_
#define HOIST_NODEAGENT_HEALTH_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hoist::nodeagent {

// GET `url` (http:// or https://, no redirects followed, no proxy). OK on a
// 2xx or 3xx answer; UNAVAILABLE naming the status code or connection error.
absl::Status ProbeHttp(const std::string& url, absl::Duration timeout);

// Connects to "host:port" ("[v6]:port" too). OK when the connection is
// accepted.
absl::Status ProbeTcp(const std::string& host_port, absl::Duration timeout);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_HEALTH_CHECK_H_
