#include "nodeagent/health_waiter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hoist::nodeagent {
namespace {

absl::Duration SecondsOr(int seconds, int fallback) {
  return absl::Seconds(seconds > 0 ? seconds : fallback);
}

}  // namespace

HealthWaiter::HealthWaiter(DockerClient* docker, HealthProber* prober,
                           Clock* clock, Target target)
    : docker_(docker),
      prober_(prober),
      clock_(clock),
      target_(std::move(target)),
      interval_(SecondsOr(target_.check.interval_seconds(), 1)),
      timeout_(SecondsOr(target_.check.timeout_seconds(), 30)),
      has_check_(!target_.check.http_get().empty() ||
                 !target_.check.tcp().empty() || target_.check.docker()) {}

absl::Status HealthWaiter::Wait() {
  start_ = clock_->Now();
  deadline_ = start_ + timeout_;
  // Bounded: each pass sleeps at least min(5 ms, interval, settle) of clock
  // time until the deadline.
  while (true) {
    ++attempts_;
    const Step step = Attempt();
    if (step.kind == Step::Kind::kHealthy) return absl::OkStatus();
    if (step.kind == Step::Kind::kFailed) return step.status;
    if (!step.status.ok()) last_problem_ = std::string(step.status.message());
    HOIST_RETURN_IF_ERROR(PauseBeforeNextAttempt());
  }
}

HealthWaiter::Step HealthWaiter::Attempt() {
  auto info = docker_->InspectContainer(target_.container_id);
  if (!info.ok()) return {Step::Kind::kFailed, info.status()};
  if (!info->running && !info->restarting) {
    return {Step::Kind::kFailed,
            absl::AbortedError(
                absl::StrCat("new container exited with code ", info->exit_code,
                             info->error.empty() ? "" : ": " + info->error))};
  }
  if (has_check_) return ProbeChecks(*info);
  // No check: only an early crash can show, so it must survive the settle.
  if (clock_->Now() - start_ >= target_.settle)
    return {Step::Kind::kHealthy, absl::OkStatus()};
  return {Step::Kind::kNotYet, absl::OkStatus()};
}

HealthWaiter::Step HealthWaiter::ProbeChecks(const ContainerInfo& info) {
  // One probe may take up to an interval, but never less than a second (a
  // cold start answers slowly) nor more than ten.
  const absl::Duration probe_timeout =
      std::clamp(interval_, absl::Seconds(1), absl::Seconds(10));
  if (!target_.check.http_get().empty()) {
    absl::Status probe =
        prober_->ProbeHttp(target_.check.http_get(), probe_timeout);
    if (!probe.ok()) return {Step::Kind::kNotYet, std::move(probe)};
  }
  if (!target_.check.tcp().empty()) {
    absl::Status probe = prober_->ProbeTcp(target_.check.tcp(), probe_timeout);
    if (!probe.ok()) return {Step::Kind::kNotYet, std::move(probe)};
  }
  if (target_.check.docker()) {
    Step docker = DockerHealth(info);
    if (docker.kind != Step::Kind::kHealthy) return docker;
  }
  LogFields fields = target_.log_fields;
  fields.push_back({"attempts", std::to_string(attempts_)});
  fields.push_back({"after", absl::FormatDuration(clock_->Now() - start_)});
  LogInfo("new container healthy", fields);
  return {Step::Kind::kHealthy, absl::OkStatus()};
}

// Docker's verdict is final once given: "unhealthy" needs no more waiting,
// and an image without a HEALTHCHECK never gets one.
HealthWaiter::Step HealthWaiter::DockerHealth(const ContainerInfo& info) {
  if (info.health.empty()) {
    return {Step::Kind::kFailed,
            absl::FailedPreconditionError(
                "health.docker is set but the image defines no HEALTHCHECK")};
  }
  if (info.health == "unhealthy") {
    return {Step::Kind::kFailed,
            absl::UnavailableError("Docker reports unhealthy")};
  }
  if (info.health != "healthy") {
    return {Step::Kind::kNotYet,
            absl::UnavailableError("Docker health: " + info.health)};
  }
  return {Step::Kind::kHealthy, absl::OkStatus()};
}

absl::Status HealthWaiter::PauseBeforeNextAttempt() {
  const absl::Time now = clock_->Now();
  if (now >= deadline_) {
    return absl::DeadlineExceededError(
        absl::StrCat("not healthy within ", absl::FormatDuration(timeout_),
                     ": ", last_problem_));
  }
  // A configured check follows HealthProbePause (every 5 ms for the first
  // second, then backing off to `interval`): the old container is stopped,
  // so every ms of waiting is downtime.
  const absl::Duration since_start = now - start_;
  const absl::Duration wait =
      has_check_ ? HealthProbePause(since_start, late_attempts_, interval_)
                 : std::min(interval_, target_.settle);
  if (since_start >= absl::Seconds(1)) ++late_attempts_;
  clock_->SleepFor(std::min(wait, deadline_ - now));
  return absl::OkStatus();
}

}  // namespace hoist::nodeagent
