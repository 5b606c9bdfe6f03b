// HealthWaiter: the HEALTH_CHECKING step of a deploy, waiting for a started
// container to become healthy (docs/design.md, "Deploy on a host", step 4).
//
// Healthy means the container is running (or restarting) and, in one
// attempt, every configured check passes: http_get, then tcp, then Docker's
// own HEALTHCHECK. With no check configured, it must still be running
// `settle` after the wait began. Attempts are paced by HealthProbePause
// (health_check.h); the wait gives up after timeout_seconds (default 30) of
// the clock's time.
//
// Wait() returns OK when healthy; otherwise, and without waiting longer:
// - ABORTED "new container exited with code N[: error]";
// - FAILED_PRECONDITION when health.docker is set and the image defines no
//   HEALTHCHECK, UNAVAILABLE "Docker reports unhealthy";
// - the inspection's error when Docker could not be asked;
// - DEADLINE_EXCEEDED "not healthy within T: <the last probe's problem>".
//
// One object per wait; not thread-safe. Docker, prober and clock are not
// owned and must outlive it.
#ifndef HOIST_NODEAGENT_HEALTH_WAITER_H_
#define HOIST_NODEAGENT_HEALTH_WAITER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/health_check.h"

namespace hoist::nodeagent {

class HealthWaiter {
 public:
  struct Target {
    std::string container_id;
    hoist::v1::HealthCheck check;
    // How long a container without a configured check must keep running.
    absl::Duration settle = absl::Seconds(1);
    // Added to the "new container healthy" log line (deploy_id, container).
    LogFields log_fields;
  };

  HealthWaiter(DockerClient* docker, HealthProber* prober, Clock* clock,
               Target target);

  HealthWaiter(const HealthWaiter&) = delete;
  HealthWaiter& operator=(const HealthWaiter&) = delete;

  // Blocks until the container is healthy or cannot be any more (see the
  // file comment). Call once.
  absl::Status Wait();

  // Attempts made so far (each looks at the container once).
  int attempts() const { return attempts_; }

 private:
  // The outcome of one attempt.
  struct Step {
    enum class Kind { kHealthy, kNotYet, kFailed };
    Kind kind;
    // kNotYet: the probe's problem (OK while a container without checks
    // settles); kFailed: what Wait() returns.
    absl::Status status;
  };

  // Looks at the container once and runs the configured checks.
  Step Attempt();
  Step ProbeChecks(const ContainerInfo& info);
  static Step DockerHealth(const ContainerInfo& info);
  // DEADLINE_EXCEEDED once the deadline passed; otherwise sleeps until the
  // next attempt (never past the deadline) and returns OK.
  absl::Status PauseBeforeNextAttempt();

  DockerClient* const docker_;
  HealthProber* const prober_;
  Clock* const clock_;
  const Target target_;
  const absl::Duration interval_;
  const absl::Duration timeout_;
  const bool has_check_;

  absl::Time start_;
  absl::Time deadline_;
  std::string last_problem_ = "no probe ran";
  int attempts_ = 0;
  int late_attempts_ = 0;  // attempts after the first second
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_HEALTH_WAITER_H_
