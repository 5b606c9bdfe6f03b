// DeployRecovery: what a restarted agent does about the deploys it was
// killed in the middle of (docs/design.md, "Deploy on a host", the last
// paragraph). DeployManager::Recover runs it once on start, before serving.
//
// For each container name whose state has a journal entry (DeployJournal,
// written by DeployRun), it looks at the pair of containers the entry names:
// - FinishSwap: the new container had passed its health check and the old
//   one is already gone (phase "swapping"): rename the new one to the name,
//   start it if needed, set its restart policy, promote the digest
//   (ContainerState::Promote, pruning the images that drop out).
// - RestorePair: otherwise remove the new container and start the old one
//   again if it was running.
// Either way it records "agent restarted mid-deploy <id>: <what it did>" as
// the name's last_error and drops the journal. An entry whose containers
// Docker cannot tell about now (an error other than NOT_FOUND) is left for
// the next start. RemoveOrphans then removes NAME.hoist-new-* candidates no
// journal accounts for.
//
// Every entry and orphan is tried; status() is the first error met. Not
// thread-safe; docker and store are not owned and outlive it.
#ifndef HOIST_NODEAGENT_DEPLOY_RECOVERY_H_
#define HOIST_NODEAGENT_DEPLOY_RECOVERY_H_

#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/state_store.h"

namespace hoist::nodeagent {

class DeployRecovery {
 public:
  // `keep_images` as DeployManager::Options (for the promoted digest).
  DeployRecovery(DockerClient* docker, StateStore* store, int keep_images);

  DeployRecovery(const DeployRecovery&) = delete;
  DeployRecovery& operator=(const DeployRecovery&) = delete;

  // Finishes or restores every journaled deploy (see the file comment).
  void RecoverJournaled();
  // Removes the temporary containers of deploys that left no journal
  // (killed between create and journal), except those of the container
  // names in `busy`, which deploys running now own. Call after
  // RecoverJournaled: the candidates it handled are not orphans.
  void RemoveOrphans(const std::set<std::string>& busy);

  // The first error met so far; OK when none.
  absl::Status status() const { return first_error_; }

 private:
  // The containers a journal entry names, as Docker has them now; absent
  // when there is none or it is gone.
  struct Pair {
    std::optional<ContainerInfo> old_container;
    std::optional<ContainerInfo> new_container;
  };
  struct Outcome {
    hoist::v1::DeployPhase phase = hoist::v1::DEPLOY_PHASE_FAILED;
    std::string what;  // what was done, for last_error and the log
  };

  void RecoverOne(const std::string& name, const DeployJournal& journal);
  // NOT_FOUND is an answer; any other error means Docker cannot tell now.
  absl::StatusOr<Pair> FindPair(const DeployJournal& journal);
  Outcome FinishSwap(const std::string& name, const DeployJournal& journal,
                     const ContainerInfo& fresh);
  void PromoteDigest(const std::string& name, const DeployJournal& journal,
                     const ContainerInfo& fresh);
  Outcome RestorePair(const DeployJournal& journal, const Pair& pair);
  std::string RemoveCandidate(const ContainerInfo& fresh);
  std::string RestoreOld(const DeployJournal& journal, const ContainerInfo& old,
                         hoist::v1::DeployPhase* phase);
  void Note(const absl::Status& status);

  DockerClient* const docker_;
  StateStore* const store_;
  const int keep_images_;
  // Temporary names journal entries account for (not orphans).
  std::set<std::string> journaled_;
  absl::Status first_error_;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_DEPLOY_RECOVERY_H_
