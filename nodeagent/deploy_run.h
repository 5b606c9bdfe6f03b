// DeployRun: one deploy of one container name, from the pull to the terminal
// event, in the order of docs/design.md, "Deploy on a host":
//
//   PullAndVerify -> FindOld -> CreateNew -> StopOld -> StartNewAndWaitHealthy
//   -> Swap (remove the old, rename the new, promote the digest)
//
// A failure before StopOld ends FAILED with nothing running touched (Fail);
// from StopOld on, the new container is removed and the old one put back as
// it was (Restore: ROLLED_BACK, or FAILED when there is no old container or
// it cannot start again).
//
// With DeployRequest.start_existing, when the container holding the name is
// one Hoist created with the requested digest and it is stopped, the run is
// instead StartExisting: start that same container and health-check it
// (STARTING, HEALTH_CHECKING, then SUCCEEDED, or FAILED with it stopped
// again); nothing is pulled, created or removed.
//
// Every event from PULLED on carries the verified digest (DeployEvent.digest).
//
// Every step is appended to the deploy's DeployLog and logged. The outcome
// is written to the StateStore, and from the first step to the last a
// journal entry (DeployJournal) is kept there, so that
// DeployManager::Recover can finish or undo the deploy after the agent was
// killed.
//
// Lives on the stack of the worker thread DeployManager starts for the
// deploy; not thread-safe. Everything in Context is borrowed and outlives
// the run.
#ifndef HOIST_NODEAGENT_DEPLOY_RUN_H_
#define HOIST_NODEAGENT_DEPLOY_RUN_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/spec_validation.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/deploy_log.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/health_check.h"
#include "nodeagent/state_store.h"

namespace hoist::nodeagent {

// A new container is created as NAME + kTempInfix + 12 hex digits of the
// deploy id's SHA-256, and renamed to NAME once healthy; Recover and
// ListContainers tell candidates from services by the infix. The shared
// name rules (common/spec_validation.h) refuse it in container names.
inline constexpr const char* kTempInfix = spec::kTempContainerInfix;

// The temporary name of deploy `deploy_id`'s new container `name`.
std::string TempName(const std::string& name, const std::string& deploy_id);

// The first 12 characters of a container id, as `docker ps` shows it.
std::string ShortId(const std::string& id);

class DeployRun {
 public:
  // What the run borrows from DeployManager.
  struct Context {
    DockerClient* docker = nullptr;
    HealthProber* prober = nullptr;
    Clock* clock = nullptr;
    StateStore* store = nullptr;
    std::string host;  // reported in every event
    absl::Duration settle;
    absl::Duration progress_interval;
    int keep_images = 1;
  };

  // `release` is called with the terminal event just before it is appended
  // (after the outcome was recorded in the store): it frees the container
  // name, so that a caller that saw that event may deploy the name again at
  // once.
  DeployRun(Context context, const hoist::v1::DeployRequest& request,
            DeployLog* log,
            std::function<void(const hoist::v1::DeployEvent&)> release);

  DeployRun(const DeployRun&) = delete;
  DeployRun& operator=(const DeployRun&) = delete;

  // Runs the deploy to its end and returns the terminal phase (its event,
  // with the error, is the log's last). `registry_auth` is the pull's
  // X-Registry-Auth value, or "".
  hoist::v1::DeployPhase Run(const std::string& registry_auth);

 private:
  // The steps, in order. Each returns why it failed; Run decides whether
  // that fails the deploy or rolls it back.
  absl::Status PullAndVerify(const std::string& registry_auth);
  absl::Status FindOld();
  absl::Status CreateNew();
  absl::Status StopOld();
  absl::Status StartNewAndWaitHealthy();
  hoist::v1::DeployPhase Swap();

  // start_existing.
  std::optional<ContainerInfo> StoppedOfThisDigest();
  hoist::v1::DeployPhase StartExisting(const ContainerInfo& stopped);
  // The started container failed: stop it again, keep its evidence.
  hoist::v1::DeployPhase LeaveStopped(absl::string_view error);

  // Parts of the steps.
  absl::Status Pull(const std::string& reference,
                    const std::string& registry_auth);
  absl::Status ResolveDigest(const ImageInfo& image);
  void EmitPulled(bool pulled);
  absl::StatusOr<ContainerConfig> BuildConfig(const std::string& reference);
  absl::Status RemoveOld();
  void ApplyRestartPolicy();
  // Waits until new_id_ is healthy (HealthWaiter); why not, otherwise.
  absl::Status WaitHealthy();
  // The request's stop timeout, 10 s when unset.
  int StopSeconds() const;

  // Terminal outcomes.
  hoist::v1::DeployPhase Succeed();
  // FAILED before anything running was touched.
  hoist::v1::DeployPhase Fail(absl::string_view error);
  // The new container failed after creation: keep its evidence, remove it,
  // put the old one back as it was.
  hoist::v1::DeployPhase Restore(absl::string_view error);
  // "" when the new container is gone; otherwise why not.
  std::string RemoveNew();
  // Starts the old container again if it was running before. "" when that
  // worked or was not needed; otherwise why not, with the old container's
  // exit code, and its log tail added to `log_tail` (see Restore).
  std::string RestartOld(std::string* log_tail);
  // A container's exit code and last log lines (what could be read of them).
  struct Evidence {
    int exit_code = 0;
    std::string log_tail;
  };
  Evidence EvidenceOf(const std::string& id);

  // Events, state and journal.
  hoist::v1::DeployEvent Event(hoist::v1::DeployPhase phase,
                               const std::string& message) const;
  void Emit(hoist::v1::DeployEvent event);
  void Emit(hoist::v1::DeployPhase phase, const std::string& message);
  // Writes the outcome; on success promotes the digest (pruned_ gets what
  // drops out) and remembers the request for Rollback.
  void Record(hoist::v1::DeployPhase phase, const std::string& error);
  void Journal(JournalPhase phase);
  // Removes the images of the digests in pruned_ (best effort).
  void Prune();

  const Context context_;
  const hoist::v1::DeployRequest request_;
  DeployLog* const log_;
  const std::function<void(const hoist::v1::DeployEvent&)> release_;
  const std::string name_;
  const std::string temp_name_;

  std::string resolved_digest_;  // set once verified (or start_existing)
  std::string new_id_;
  std::string old_id_;
  bool old_was_running_ = false;
  bool keep_journal_ = false;  // the journal outlives the run (see Swap)
  int64_t pulled_bytes_ = 0;   // download sizes of the layers pulled
  std::vector<std::string> pruned_;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_DEPLOY_RUN_H_
