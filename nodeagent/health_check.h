// Health probes the deploy state machine runs against a new container
// (docs/design.md, "Deploy on a host", step 4). Each probe is one attempt
// bounded by `timeout`; thread-safe.
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

// The probes behind a seam, so that the health wait (HealthWaiter) is tested
// with a fake instead of real sockets. Implementations are thread-safe: deploys
// of different containers probe concurrently.
class HealthProber {
 public:
  virtual ~HealthProber() = default;
  // As ProbeHttp below.
  virtual absl::Status ProbeHttp(const std::string& url,
                                 absl::Duration timeout) = 0;
  // As ProbeTcp below.
  virtual absl::Status ProbeTcp(const std::string& host_port,
                                absl::Duration timeout) = 0;
};

// The real probes (the functions above). Lives forever; never null.
HealthProber* RealHealthProber();

// The pause before the next attempt of a configured health check, given how
// long ago the new container was started and how many attempts were made
// after the first second. Every 5 ms for the first second (a new container
// usually answers within tens of ms, and every ms of waiting is downtime:
// the old container is already stopped), then 10 ms doubling per attempt up
// to `interval`. Never more than `interval`.
absl::Duration HealthProbePause(absl::Duration since_start, int late_attempts,
                                absl::Duration interval);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_HEALTH_CHECK_H_
