#include "nodeagent/deploy_recovery.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "nodeagent/deploy_run.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployPhase;

// The container `id_or_name` names: absent when there is none (NOT_FOUND).
absl::StatusOr<std::optional<ContainerInfo>> Lookup(
    DockerClient* docker, const std::string& id_or_name) {
  auto info = docker->InspectContainer(id_or_name);
  if (info.ok()) return std::optional<ContainerInfo>(*std::move(info));
  if (info.status().code() == absl::StatusCode::kNotFound)
    return std::optional<ContainerInfo>();
  return info.status();
}

}  // namespace

DeployRecovery::DeployRecovery(DockerClient* docker, StateStore* store,
                               int keep_images)
    : docker_(docker), store_(store), keep_images_(keep_images) {}

void DeployRecovery::Note(const absl::Status& status) {
  if (!status.ok() && first_error_.ok()) first_error_ = status;
}

void DeployRecovery::RecoverJournaled() {
  for (const auto& [name, state] : store_->All()) {
    if (!state.journal.has_value()) continue;
    journaled_.insert(state.journal->new_name);
    RecoverOne(name, *state.journal);
  }
}

void DeployRecovery::RecoverOne(const std::string& name,
                                const DeployJournal& journal) {
  absl::StatusOr<Pair> pair = FindPair(journal);
  if (!pair.ok()) {
    Note(pair.status());
    return;  // Docker unreachable: keep the journal for the next start
  }
  // The new one had passed its health check and the old one is already
  // gone: finishing the swap is the only way back to a serving container.
  const Outcome outcome = journal.phase == JournalPhase::kSwapping &&
                                  !pair->old_container.has_value() &&
                                  pair->new_container.has_value()
                              ? FinishSwap(name, journal, *pair->new_container)
                              : RestorePair(journal, *pair);
  const std::string error = absl::StrCat("agent restarted mid-deploy ",
                                         journal.deploy_id, ": ", outcome.what);
  Note(store_->Update(name, [&](ContainerState* s) {
    s->journal.reset();
    s->last_deploy_id = journal.deploy_id;
    s->last_phase = outcome.phase;
    s->last_error = error;
  }));
  LogWarning("recovered a half-finished deploy",
             {{"deploy_id", journal.deploy_id},
              {"container", name},
              {"result", outcome.what}});
}

absl::StatusOr<DeployRecovery::Pair> DeployRecovery::FindPair(
    const DeployJournal& journal) {
  Pair pair;
  if (!journal.old_id.empty()) {
    auto old = Lookup(docker_, journal.old_id);
    if (!old.ok()) return old.status();
    pair.old_container = *std::move(old);
  }
  // Killed before the create returned: only the name is known.
  auto fresh = Lookup(
      docker_, journal.new_id.empty() ? journal.new_name : journal.new_id);
  if (!fresh.ok()) return fresh.status();
  pair.new_container = *std::move(fresh);
  return pair;
}

DeployRecovery::Outcome DeployRecovery::FinishSwap(const std::string& name,
                                                   const DeployJournal& journal,
                                                   const ContainerInfo& fresh) {
  absl::Status s = docker_->RenameContainer(fresh.id, name);
  if (s.ok() && !fresh.running) s = docker_->StartContainer(fresh.id);
  if (s.ok() && !journal.restart_policy.empty()) {
    // Best effort, as after a normal swap: the container already serves.
    docker_->UpdateRestartPolicy(fresh.id, journal.restart_policy)
        .IgnoreError();
  }
  if (s.ok() && !journal.digest.empty()) PromoteDigest(name, journal, fresh);
  Note(s);
  if (!s.ok())
    return {hoist::v1::DEPLOY_PHASE_FAILED,
            absl::StrCat("could not finish the swap: ", s.message())};
  return {hoist::v1::DEPLOY_PHASE_SUCCEEDED,
          absl::StrCat("finished the swap to ", ShortId(fresh.id))};
}

// As a successful deploy does (DeployRun::Record and Prune): the digest
// becomes current, and images beyond keep_images are removed. The image's
// repository comes from the candidate's hoist.image label.
void DeployRecovery::PromoteDigest(const std::string& name,
                                   const DeployJournal& journal,
                                   const ContainerInfo& fresh) {
  std::vector<std::string> dropped;
  Note(store_->Update(name, [&](ContainerState* state) {
    dropped = state->Promote(journal.digest, keep_images_);
  }));
  auto image = fresh.labels.find(kLabelImage);
  if (image == fresh.labels.end()) return;
  for (const std::string& digest : dropped) {
    const std::string reference = absl::StrCat(image->second, "@", digest);
    absl::Status removed = docker_->RemoveImage(reference, /*force=*/false);
    LogInfo(removed.ok() ? "pruned image" : "could not prune image",
            {{"deploy_id", journal.deploy_id},
             {"image", reference},
             {"result",
              removed.ok() ? "removed" : std::string(removed.message())}});
  }
}

DeployRecovery::Outcome DeployRecovery::RestorePair(
    const DeployJournal& journal, const Pair& pair) {
  Outcome outcome;  // FAILED unless an old container is there to go back to
  std::vector<std::string> done;
  if (pair.new_container.has_value())
    done.push_back(RemoveCandidate(*pair.new_container));
  if (pair.old_container.has_value())
    done.push_back(RestoreOld(journal, *pair.old_container, &outcome.phase));
  if (done.empty() && journal.phase == JournalPhase::kPulling) {
    outcome.what = "interrupted while pulling; nothing running was touched";
  } else {
    outcome.what = absl::StrCat(
        "restored (",
        done.empty() ? "nothing to do" : absl::StrJoin(done, ", "), ")");
  }
  return outcome;
}

std::string DeployRecovery::RemoveCandidate(const ContainerInfo& fresh) {
  absl::Status s = docker_->RemoveContainer(fresh.id, /*force=*/true);
  Note(s);
  return s.ok() ? absl::StrCat("removed new ", ShortId(fresh.id))
                : absl::StrCat("could not remove new ", ShortId(fresh.id), ": ",
                               s.message());
}

// The old container ends as it was before the deploy: started again only if
// it was running then.
std::string DeployRecovery::RestoreOld(const DeployJournal& journal,
                                       const ContainerInfo& old,
                                       DeployPhase* phase) {
  if (!journal.old_was_running || old.running) {
    *phase = hoist::v1::DEPLOY_PHASE_ROLLED_BACK;
    return absl::StrCat("old ", ShortId(old.id), " left ",
                        old.running ? "running" : "stopped");
  }
  absl::Status s = docker_->StartContainer(old.id);
  Note(s);
  *phase = s.ok() ? hoist::v1::DEPLOY_PHASE_ROLLED_BACK
                  : hoist::v1::DEPLOY_PHASE_FAILED;
  return s.ok() ? absl::StrCat("started old ", ShortId(old.id))
                : absl::StrCat("could not start old ", ShortId(old.id), ": ",
                               s.message());
}

void DeployRecovery::RemoveOrphans(const std::set<std::string>& busy) {
  auto containers = docker_->ListContainers(kLabelService);
  if (!containers.ok()) {
    Note(containers.status());
    return;
  }
  for (const ContainerSummary& c : *containers) {
    const size_t infix = c.name.find(kTempInfix);
    if (infix == std::string::npos || journaled_.count(c.name) > 0) continue;
    if (busy.count(c.name.substr(0, infix)) > 0) continue;
    absl::Status s = docker_->RemoveContainer(c.id, /*force=*/true);
    Note(s);
    auto deploy_id = c.labels.find(kLabelDeployId);
    LogWarning(
        "removed an orphaned deploy candidate",
        {{"container", c.name},
         {"deploy_id", deploy_id == c.labels.end() ? "" : deploy_id->second},
         {"result", s.ok() ? "removed" : std::string(s.message())}});
  }
}

}  // namespace hoist::nodeagent
