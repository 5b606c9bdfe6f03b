#include "receiver/host_call.h"

#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

using hoist::v1::DeployEvent;
using hoist::v1::DeployPhase;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

// Backoff 1 s doubling to at most 4 s; gives up after 60 s.
RetryPolicy Retry() {
  return RetryPolicy(absl::Seconds(1), absl::Seconds(4), 60);
}

DeployEvent Event(DeployPhase phase, const std::string& error = "",
                  bool pull = false) {
  DeployEvent e;
  e.set_phase(phase);
  e.set_message(hoist::v1::DeployPhase_Name(phase));
  e.set_error(error);
  if (pull) {
    e.mutable_pull()->set_current_bytes(10);
    e.mutable_pull()->set_total_bytes(100);
  }
  return e;
}

HostCall Deploy() {
  return HostCall(2, "web-3", HostOp::kDeploy, kStart, Retry());
}

TEST(HostCallTest, AttemptsGoInFlightThenAwaitARetryThenGoInFlightAgain) {
  HostCall call = Deploy();
  EXPECT_EQ(call.host(), 2);
  EXPECT_EQ(call.agent(), "web-3");
  EXPECT_EQ(call.attempt(), 0);
  EXPECT_FALSE(call.in_flight() || call.done() || call.awaiting_retry());

  EXPECT_EQ(call.BeginAttempt(), 1);
  EXPECT_TRUE(call.in_flight());
  EXPECT_FALSE(call.awaiting_retry());
  EXPECT_EQ(call.retry_at(), absl::InfiniteFuture());

  const HostCall::Outcome o = call.OnStreamEnd(
      absl::UnavailableError("connection refused"), kStart, Retry(), "");
  EXPECT_TRUE(o.retry);
  EXPECT_FALSE(call.in_flight() || call.done());
  EXPECT_TRUE(call.awaiting_retry());
  EXPECT_EQ(call.retry_at(), kStart + absl::Seconds(1));

  EXPECT_EQ(call.BeginAttempt(), 2);
  EXPECT_TRUE(call.in_flight());
  EXPECT_FALSE(call.awaiting_retry());
  EXPECT_EQ(call.retry_at(), absl::InfiniteFuture());
  // Items of the first attempt are stale now.
  EXPECT_FALSE(call.Accepts(1));
  EXPECT_TRUE(call.Accepts(2));
}

TEST(HostCallTest, BackoffDoublesBetweenRetriesUpToTheMaximum) {
  HostCall call = Deploy();
  absl::Time now = kStart;
  std::vector<absl::Duration> waits;
  for (int i = 0; i < 5; ++i) {
    call.BeginAttempt();
    ASSERT_TRUE(
        call.OnStreamEnd(absl::UnavailableError("down"), now, Retry(), "")
            .retry);
    waits.push_back(call.retry_at() - now);
    now = call.retry_at();
  }
  EXPECT_EQ(waits, (std::vector<absl::Duration>{
                       absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                       absl::Seconds(4), absl::Seconds(4)}));
}

TEST(HostCallTest, AnAgentUnreachableForTheWholeWindowFails) {
  HostCall call = Deploy();
  call.BeginAttempt();
  const HostCall::Outcome o =
      call.OnStreamEnd(absl::UnavailableError("connection refused"),
                       kStart + absl::Seconds(60), Retry(), "");
  EXPECT_FALSE(o.retry);
  EXPECT_TRUE(call.done());
  EXPECT_FALSE(call.awaiting_retry());
  EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(o.error, "unreachable for 60s: connection refused");
  // Nothing more is news once the call is done.
  EXPECT_FALSE(call.Accepts(1));
}

TEST(HostCallTest, TheDeployResultIsTheLastFinalPhaseReported) {
  {
    HostCall call = Deploy();
    call.BeginAttempt();
    call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_PULLING));
    call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_SUCCEEDED));
    // A final phase wins over the stream's status: the agent finished.
    const HostCall::Outcome o = call.OnStreamEnd(
        absl::UnavailableError("stream reset"), kStart, Retry(), "");
    EXPECT_FALSE(o.retry);
    EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    EXPECT_EQ(o.error, "");
    EXPECT_TRUE(call.done());
  }
  {
    HostCall call = Deploy();
    call.BeginAttempt();
    call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_ROLLED_BACK, "exit code 1"));
    const HostCall::Outcome o =
        call.OnStreamEnd(absl::OkStatus(), kStart, Retry(), "");
    EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
    EXPECT_EQ(o.error, "exit code 1");
  }
  {
    HostCall call = Deploy();
    call.BeginAttempt();
    call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_FAILED));
    const HostCall::Outcome o =
        call.OnStreamEnd(absl::OkStatus(), kStart, Retry(), "");
    EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_FAILED);
    EXPECT_EQ(o.error, "deploy ended DEPLOY_PHASE_FAILED");
  }
}

TEST(HostCallTest, AStreamThatEndsWithoutAResultFails) {
  HostCall ok = Deploy();
  ok.BeginAttempt();
  ok.OnEvent(Event(hoist::v1::DEPLOY_PHASE_PULLING));
  HostCall::Outcome o = ok.OnStreamEnd(absl::OkStatus(), kStart, Retry(), "");
  EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(o.error, "the agent ended the stream without a result");

  HostCall busy = Deploy();
  busy.BeginAttempt();
  o = busy.OnStreamEnd(absl::AbortedError("busy with deploy other-1"), kStart,
                       Retry(), "");
  EXPECT_FALSE(o.retry);
  EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(o.error, "ABORTED: busy with deploy other-1");
}

TEST(HostCallTest, ARollbackEndsRolledBackOrFailed) {
  HostCall back(0, "web-1", HostOp::kRollback, kStart, Retry());
  back.BeginAttempt();
  back.OnEvent(Event(hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  HostCall::Outcome o =
      back.OnStreamEnd(absl::OkStatus(), kStart, Retry(), "web-2 failed");
  EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_EQ(o.error, "rolled back: web-2 failed");

  HostCall failed(0, "web-1", HostOp::kRollback, kStart, Retry());
  failed.BeginAttempt();
  failed.OnEvent(Event(hoist::v1::DEPLOY_PHASE_FAILED, "no old image"));
  o = failed.OnStreamEnd(absl::OkStatus(), kStart, Retry(), "web-2 failed");
  EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(o.error, "rollback failed: no old image");

  HostCall silent(0, "web-1", HostOp::kRollback, kStart, Retry());
  silent.BeginAttempt();
  silent.OnEvent(Event(hoist::v1::DEPLOY_PHASE_FAILED));
  o = silent.OnStreamEnd(absl::OkStatus(), kStart, Retry(), "web-2 failed");
  EXPECT_EQ(o.error, "rollback failed: DEPLOY_PHASE_FAILED");

  HostCall refused(0, "web-1", HostOp::kRollback, kStart, Retry());
  refused.BeginAttempt();
  o = refused.OnStreamEnd(absl::InternalError("boom"), kStart, Retry(), "");
  EXPECT_EQ(o.phase, hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(o.error, "rollback failed: INTERNAL: boom");
}

TEST(HostCallTest, EventsAreJournaledOnAPhaseChangeAFinalPhaseOrAnError) {
  HostCall call = Deploy();
  call.BeginAttempt();
  HostCall::EventEffect e =
      call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_PULLING));
  EXPECT_TRUE(e.journal_event);
  EXPECT_TRUE(e.set_phase);
  EXPECT_TRUE(e.journal_host);
  EXPECT_FALSE(e.progress_only);

  // Same phase, pull progress only: folded, neither journaled nor the host
  // written.
  e = call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_PULLING, "", /*pull=*/true));
  EXPECT_FALSE(e.journal_event);
  EXPECT_TRUE(e.progress_only);
  EXPECT_TRUE(e.publish_pull);
  EXPECT_FALSE(e.journal_host);

  // Same phase with an error: journaled, published, but the host's phase did
  // not change.
  e = call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_PULLING, "retrying layer",
                         /*pull=*/true));
  EXPECT_TRUE(e.journal_event);
  EXPECT_FALSE(e.progress_only);
  EXPECT_FALSE(e.journal_host);

  // PULLED carries the pull's totals but is a phase change, not progress.
  e = call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_PULLED, "", /*pull=*/true));
  EXPECT_TRUE(e.journal_event);
  EXPECT_FALSE(e.progress_only);
  EXPECT_FALSE(e.publish_pull);
  EXPECT_TRUE(e.journal_host);

  // A message without a phase is a change of phase for the history only.
  e = call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_UNSPECIFIED));
  EXPECT_TRUE(e.journal_event);
  EXPECT_FALSE(e.set_phase);

  // Final phases are journaled as events; the host's result is written when
  // the stream ends.
  e = call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  EXPECT_TRUE(e.journal_event);
  EXPECT_FALSE(e.set_phase);
  EXPECT_FALSE(e.journal_host);
  // Repeated, it is still journaled (final).
  e = call.OnEvent(Event(hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  EXPECT_TRUE(e.journal_event);
}

TEST(HostCallTest, FinalPhasesAreSucceededRolledBackAndFailed) {
  EXPECT_TRUE(IsFinalPhase(hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  EXPECT_TRUE(IsFinalPhase(hoist::v1::DEPLOY_PHASE_ROLLED_BACK));
  EXPECT_TRUE(IsFinalPhase(hoist::v1::DEPLOY_PHASE_FAILED));
  EXPECT_FALSE(IsFinalPhase(hoist::v1::DEPLOY_PHASE_ROLLING_BACK));
  EXPECT_FALSE(IsFinalPhase(hoist::v1::DEPLOY_PHASE_UNSPECIFIED));
}

}  // namespace
}  // namespace hoist::receiver
