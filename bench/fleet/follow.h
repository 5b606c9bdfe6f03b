// One rollout from the outside: the signed webhook that starts it, the
// Control API follower that waits for its final state (WatchRollout, or
// GetRollout polling), and its timing: the receiver's view (HostResult
// started/finished) and the agents' (HostTiming), relative to the POST.
#ifndef HOIST_BENCH_FLEET_FOLLOW_H_
#define HOIST_BENCH_FLEET_FOLLOW_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/fleet/agent_hosts.h"
#include "bench/fleet/report.h"
#include "hoist/v1/control.grpc.pb.h"

namespace hoist::bench::fleet {

// SUCCEEDED, FAILED, ROLLED_BACK, PAUSED or SUPERSEDED.
bool Final(hoist::v1::RolloutState s);

// An Artifactory "promoted" webhook for image `service`, tag `tag`, with its
// HMAC-SHA256 signature by kSecret.
struct Webhook {
  std::string service;
  std::string body;
  std::string signature;
};
Webhook MakeWebhook(const std::string& service, const std::string& tag);

// POSTs `webhook` to the receiver's webhook port on 127.0.0.1 (once more if
// there is no HTTP answer at all) and returns the rollout id of its 202
// answer; nullopt after printing why. *posted is set just before the POST.
std::optional<std::string> PostWebhook(int port, const Webhook& webhook,
                                       absl::Time* posted);

// Follows rollout `id` until it is final, for at most `timeout`: with
// WatchRollout when `watch` (polling if the stream ends early), else
// GetRollout every 100 ms. Adds the events (or polls) to *events.
std::optional<hoist::v1::Rollout> FollowRollout(
    hoist::v1::Control::Stub* control, const std::string& id, bool watch,
    absl::Duration timeout, int64_t* events);

// The deploy ids of a rollout's hosts.
std::vector<std::string> DeployIds(const hoist::v1::Rollout& rollout);

// Fills row's hosts, state, failed_hosts, wall_s (posted -> seen),
// last_host_s and slowest / median host from the final rollout; prints one
// failed host's error if any.
void FillReceiverTimes(const hoist::v1::Rollout& rollout, absl::Time posted,
                       absl::Time seen, Row* row);

// Fills row's agent-side figures (first/last start and request, slowest /
// median deploy on the agent, tail) from `timings` (by deploy id); says on
// stderr when some hosts have none.
void FillAgentTimes(const hoist::v1::Rollout& rollout,
                    const std::map<std::string, HostTiming>& timings,
                    absl::Time posted, Row* row);

}  // namespace hoist::bench::fleet

#endif  // HOIST_BENCH_FLEET_FOLLOW_H_
