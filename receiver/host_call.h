// HostCall: one host's agent call (a Deploy or a Rollback) within one run of
// a rollout's hosts, from its first attempt to the host's result.
//
//   idle --BeginAttempt()--> in flight --OnStreamEnd()--> done
//                              ^                |
//                              |                | UNAVAILABLE within the
//                              |                v retry window (RetryPolicy)
//                              +--BeginAttempt()-- awaiting retry (retry_at)
//
// It decides what each agent event means for the host (journal it, publish
// it, or fold it as pull progress) and what the end of a stream means (the
// host's final phase and error, or a retry after a backoff), but does none of
// it: the rollout manager's executor updates the rollout, the journal and
// watchers. Events and stream ends of an earlier attempt, or after the call
// is done, are stale; Accepts() says so and the caller drops them.
//
// The result of a host comes from the last final phase (SUCCEEDED,
// ROLLED_BACK, FAILED) the agent reported, and is taken when the stream ends:
// a stream that ends without one failed, whatever its status.
//
// Not thread-safe: owned and used by one executor thread. The agent's
// callbacks never touch a HostCall; they report into a CallInbox.
#ifndef HOIST_RECEIVER_HOST_CALL_H_
#define HOIST_RECEIVER_HOST_CALL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "hoist/v1/agent.pb.h"
#include "hoist/v1/control.pb.h"
#include "receiver/retry_policy.h"

namespace hoist::receiver {

enum class HostOp { kDeploy, kRollback };

// SUCCEEDED, ROLLED_BACK and FAILED: the agent is done with the deploy.
bool IsFinalPhase(hoist::v1::DeployPhase phase);

// A host whose agent stayed unreachable for agent_call.retry_seconds: FAILED
// with RetryPolicy::GiveUpMessage's "unreachable for Ns: …" (the journaled
// marker). Such a host does not trigger on_failure; convergence catches it
// up when it returns (docs/design.md, "Rollouts").
bool IsUnreachableResult(const hoist::v1::HostResult& host);

class HostCall {
 public:
  // Host `host` (its index in Rollout.hosts) on agent `agent`; the retry
  // window counts from `first_attempt`.
  HostCall(int host, std::string agent, HostOp op, absl::Time first_attempt,
           const RetryPolicy& retry);

  int host() const { return host_; }
  const std::string& agent() const { return agent_; }
  // Attempts begun so far (0 before the first).
  int attempt() const { return attempt_; }
  bool in_flight() const { return in_flight_; }
  bool done() const { return done_; }
  // Neither in flight nor done after an attempt: waits for retry_at().
  bool awaiting_retry() const { return attempt_ > 0 && !in_flight_ && !done_; }
  // When the awaited retry is due; InfiniteFuture when none is awaited.
  absl::Time retry_at() const { return retry_at_; }

  // Begins the next attempt (idle or awaiting retry -> in flight) and returns
  // its number, which the attempt's inbox items carry.
  int BeginAttempt();
  // Whether an inbox item of attempt `attempt` is still news: it belongs to
  // the current attempt and the call is not done.
  bool Accepts(int attempt) const { return attempt == attempt_ && !done_; }

  // What one agent event of the current attempt means.
  struct EventEffect {
    // Append it to the host's event history: its phase differs from the
    // last one appended, it is final, or it carries an error.
    bool journal_event = false;
    // Only pull progress (same phase, not final, no error, carries pull):
    // fold it into the pass's latest progress for the host.
    bool progress_only = false;
    // HostResult.phase takes the event's phase (specified and not final:
    // final phases are recorded when the stream ends).
    bool set_phase = false;
    // Write the host's result with the pass (its phase changed, not final).
    bool journal_host = false;
    // Publish the event's pull progress (RolloutEvent.pull is a PULLING
    // host's layer progress only).
    bool publish_pull = false;
  };
  EventEffect OnEvent(const hoist::v1::DeployEvent& event);

  // What the end of the current attempt's stream means.
  struct Outcome {
    // Try again at retry_at(); the call awaits that retry.
    bool retry = false;
    // Otherwise the call is done and the host ends in `phase`, with `error`
    // (empty when the host SUCCEEDED).
    hoist::v1::DeployPhase phase = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
    std::string error;
  };
  // The current attempt's stream ended with `status` at `now`. A Rollback's
  // success leaves the host ROLLED_BACK with "rolled back: <rollback_reason>".
  Outcome OnStreamEnd(const absl::Status& status, absl::Time now,
                      const RetryPolicy& retry,
                      const std::string& rollback_reason);
  // Gives up an awaited retry (its rollout was cancelled): the call is done
  // and the host FAILED with `error`.
  Outcome Abandon(std::string error) {
    return Done(hoist::v1::DEPLOY_PHASE_FAILED, std::move(error));
  }

 private:
  Outcome Done(hoist::v1::DeployPhase phase, std::string error);
  Outcome DeployResult();
  Outcome RollbackResult(const std::string& rollback_reason);
  Outcome Failure(const absl::Status& status, const RetryPolicy& retry);

  int host_;
  std::string agent_;
  HostOp op_;
  absl::Time first_attempt_;
  absl::Duration backoff_;  // the wait before the next retry
  absl::Time retry_at_ = absl::InfiniteFuture();
  int attempt_ = 0;
  bool in_flight_ = false;
  bool done_ = false;
  // The last final phase the agent reported, and its error.
  bool saw_final_ = false;
  hoist::v1::DeployPhase final_phase_ = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
  std::string final_error_;
  // Phase of the last event appended to the host's history.
  hoist::v1::DeployPhase last_journaled_ = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_HOST_CALL_H_
