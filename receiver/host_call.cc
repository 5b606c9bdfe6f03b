#include "receiver/host_call.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace hoist::receiver {

using hoist::v1::DeployEvent;
using hoist::v1::DeployPhase;

bool IsFinalPhase(DeployPhase phase) {
  return phase == hoist::v1::DEPLOY_PHASE_SUCCEEDED ||
         phase == hoist::v1::DEPLOY_PHASE_ROLLED_BACK ||
         phase == hoist::v1::DEPLOY_PHASE_FAILED;
}

HostCall::HostCall(int host, std::string agent, HostOp op,
                   absl::Time first_attempt, const RetryPolicy& retry)
    : host_(host),
      agent_(std::move(agent)),
      op_(op),
      first_attempt_(first_attempt),
      backoff_(retry.initial_backoff()) {}

int HostCall::BeginAttempt() {
  ++attempt_;
  in_flight_ = true;
  retry_at_ = absl::InfiniteFuture();
  return attempt_;
}

HostCall::EventEffect HostCall::OnEvent(const DeployEvent& event) {
  const DeployPhase phase = event.phase();
  const bool final_phase = IsFinalPhase(phase);
  const bool has_error = !event.error().empty();
  if (final_phase) {
    saw_final_ = true;
    final_phase_ = phase;
    final_error_ = event.error();
  }
  const bool changed = phase != last_journaled_;
  EventEffect effect;
  effect.journal_event = changed || final_phase || has_error;
  if (effect.journal_event) last_journaled_ = phase;
  effect.progress_only =
      !changed && !final_phase && !has_error && event.has_pull();
  effect.set_phase =
      phase != hoist::v1::DEPLOY_PHASE_UNSPECIFIED && !final_phase;
  effect.journal_host = changed && !final_phase;
  effect.publish_pull =
      event.has_pull() && phase == hoist::v1::DEPLOY_PHASE_PULLING;
  return effect;
}

HostCall::Outcome HostCall::OnStreamEnd(const absl::Status& status,
                                        absl::Time now,
                                        const RetryPolicy& retry,
                                        const std::string& rollback_reason) {
  in_flight_ = false;
  if (saw_final_) {
    return op_ == HostOp::kDeploy ? DeployResult()
                                  : RollbackResult(rollback_reason);
  }
  if (retry.ShouldRetry(status, first_attempt_, now)) {
    retry_at_ = now + backoff_;
    backoff_ = retry.NextBackoff(backoff_);
    Outcome outcome;
    outcome.retry = true;
    return outcome;
  }
  return Failure(status, retry);
}

HostCall::Outcome HostCall::Done(DeployPhase phase, std::string error) {
  done_ = true;
  Outcome outcome;
  outcome.phase = phase;
  outcome.error = std::move(error);
  return outcome;
}

HostCall::Outcome HostCall::DeployResult() {
  std::string error = final_error_;
  if (error.empty() && final_phase_ != hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
    error = absl::StrCat("deploy ended ",
                         hoist::v1::DeployPhase_Name(final_phase_));
  }
  return Done(final_phase_, std::move(error));
}

HostCall::Outcome HostCall::RollbackResult(const std::string& rollback_reason) {
  if (final_phase_ == hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
    return Done(hoist::v1::DEPLOY_PHASE_ROLLED_BACK,
                absl::StrCat("rolled back: ", rollback_reason));
  }
  return Done(hoist::v1::DEPLOY_PHASE_FAILED,
              absl::StrCat("rollback failed: ",
                           final_error_.empty()
                               ? hoist::v1::DeployPhase_Name(final_phase_)
                               : final_error_));
}

bool IsUnreachableResult(const hoist::v1::HostResult& host) {
  return host.phase() == hoist::v1::DEPLOY_PHASE_FAILED &&
         absl::StartsWith(host.error(), "unreachable for ");
}

HostCall::Outcome HostCall::Failure(const absl::Status& status,
                                    const RetryPolicy& retry) {
  std::string error;
  if (status.code() == absl::StatusCode::kUnavailable) {
    error = retry.GiveUpMessage(status);
  } else if (status.ok()) {
    error = "the agent ended the stream without a result";
  } else {
    error = absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                         status.message());
  }
  if (op_ == HostOp::kRollback)
    error = absl::StrCat("rollback failed: ", error);
  return Done(hoist::v1::DEPLOY_PHASE_FAILED, std::move(error));
}

}  // namespace hoist::receiver
