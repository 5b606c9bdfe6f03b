// hoistctl's output: text tables, rollout details, the live `watch` view,
// JSON (proto field names, like grpcurl), and exit codes. Pure functions over
// protos, no I/O, so they are table-tested.
#ifndef HOIST_CLI_FORMAT_H_
#define HOIST_CLI_FORMAT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "hoist/v1/control.pb.h"

namespace hoist::cli {

// "ROLLOUT_STATE_SUCCEEDED" -> "SUCCEEDED"; unknown numbers as "STATE_<n>".
std::string StateName(hoist::v1::RolloutState state);
// "DEPLOY_PHASE_PULLING" -> "PULLING".
std::string PhaseName(hoist::v1::DeployPhase phase);
// "CONVERGENCE_OTHER_DIGEST" -> "OTHER_DIGEST"; the zero value (not known
// yet) as "UNKNOWN", unknown numbers as "CONVERGENCE_<n>".
std::string ConvergenceName(hoist::v1::Convergence convergence);
// How many of the service's hosts are in each Convergence, in the enum's
// order, zero counts left out: "2 in sync, 1 missing"; "no hosts" for none.
std::string ConvergenceSummary(const hoist::v1::Service& service);
// RFC 3339 in UTC to the second ("2026-11-28T11:00:05Z"); "-" when unset.
std::string FormatTime(const google::protobuf::Timestamp& time);
// "sha256:" and the first 12 hex digits; other strings unchanged.
std::string ShortDigest(const std::string& digest);
// A text bar of `width` cells, e.g. "[#####-----]"; all "-" when total <= 0.
std::string ProgressBar(int64_t current, int64_t total, int width);
// 1536 -> "1.5 KB", in powers of 1024 up to GB.
std::string HumanBytes(int64_t bytes);

// Tables and details for the text output.
std::string FormatAgents(const hoist::v1::ListAgentsResponse& response);
std::string FormatRollouts(const hoist::v1::ListRolloutsResponse& response);
std::string FormatRollout(const hoist::v1::Rollout& rollout);
std::string FormatServices(const hoist::v1::ListServicesResponse& response);
std::string FormatService(const hoist::v1::Service& service);
// "sent a test message through SINK (KIND), delivery id ID".
std::string FormatTestNotification(
    const hoist::v1::TestNotificationResponse& response);

// Protobuf JSON with proto field names (snake_case) and default values
// printed; `pretty` adds line breaks, otherwise one line.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message,
                                   bool pretty);

// Whether `watch` stops at this state: SUCCEEDED, FAILED, ROLLED_BACK,
// SUPERSEDED, CANCELLED and PAUSED (which waits for an operator's `resume`).
bool WatchStopsAt(hoist::v1::RolloutState state);
// Exit code for a rollout that ended in `state`: 0 for SUCCEEDED, else 1.
int ExitCodeForRolloutState(hoist::v1::RolloutState state);
// Exit code for a failed call: 3 for UNAVAILABLE, UNAUTHENTICATED,
// PERMISSION_DENIED and DEADLINE_EXCEEDED (cannot reach or authenticate),
// 0 for OK, 1 otherwise.
int ExitCodeForStatus(const absl::Status& status);

// State of a `watch`, fed with each RolloutEvent in order.
class WatchView {
 public:
  // Applies one event; returns the plain-text lines it adds to the log
  // (state changes, host phase changes, messages, errors). Progress-only
  // updates add no line.
  std::vector<std::string> Apply(const hoist::v1::RolloutEvent& event);

  // The live screen for a terminal: a header, one line per host (phase,
  // then a pull progress bar while PULLING, else its error or latest
  // message) and the latest message about the rollout as a whole.
  std::vector<std::string> Render(int bar_width) const;

  const hoist::v1::Rollout& rollout() const { return rollout_; }
  bool seen_any() const { return seen_any_; }

 private:
  // Apply()'s steps. The first event's rollout adds the header line, a
  // later one a line when the state changed.
  void ApplyRollout(const hoist::v1::Rollout& next,
                    std::vector<std::string>* lines);
  // Merges the event's host into rollout_ and adds its line when its phase
  // changed (`phase_changed`, against the rollout before the event) or it
  // brings a new message.
  void ApplyHost(const hoist::v1::RolloutEvent& event, bool phase_changed,
                 std::vector<std::string>* lines);

  bool seen_any_ = false;
  hoist::v1::Rollout rollout_;
  std::map<std::string, hoist::v1::PullProgress> pulls_;  // by agent
  std::map<std::string, std::string> host_messages_;      // by agent
  std::string last_message_;  // latest message about the rollout as a whole
};

}  // namespace hoist::cli

#endif  // HOIST_CLI_FORMAT_H_
