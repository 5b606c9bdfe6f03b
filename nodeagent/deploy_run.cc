#include "nodeagent/deploy_run.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "nodeagent/health_waiter.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployEvent;
using hoist::v1::DeployPhase;
using hoist::v1::DeployRequest;

constexpr int kLogTailLines = 20;

std::string Reference(const DeployRequest& request) {
  return request.digest().empty()
             ? absl::StrCat(request.image(), ":", request.tag())
             : absl::StrCat(request.image(), "@", request.digest());
}

// "docker.io/library/x" and "x" name the same repository.
std::string NormalizeRepo(absl::string_view repo) {
  absl::string_view r = repo;
  absl::ConsumePrefix(&r, "docker.io/");
  absl::ConsumePrefix(&r, "library/");
  return std::string(r);
}

// The digest of `image`'s repository among RepoDigests ("" when none).
std::string RepoDigestFor(const ImageInfo& info, const std::string& image) {
  for (const std::string& entry : info.repo_digests) {
    const size_t at = entry.rfind('@');
    if (at == std::string::npos) continue;
    if (NormalizeRepo(entry.substr(0, at)) == NormalizeRepo(image))
      return entry.substr(at + 1);
  }
  return "";
}

// KEY=VALUE lines; blank lines and "#" comments skipped.
absl::StatusOr<std::vector<std::string>> ReadEnvFile(const std::string& path) {
  HOIST_ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  std::vector<std::string> out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    const size_t eq = trimmed.find('=');
    if (eq == 0 || eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "env file ", path, ":", line_number, ": want KEY=VALUE"));
    }
    absl::string_view value = line.substr(line.find('=') + 1);
    absl::ConsumeSuffix(&value, "\r");
    out.push_back(absl::StrCat(
        absl::StripAsciiWhitespace(trimmed.substr(0, eq)), "=", value));
  }
  return out;
}

}  // namespace

std::string TempName(const std::string& name, const std::string& deploy_id) {
  return absl::StrCat(name, kTempInfix, Sha256Hex(deploy_id).substr(0, 12));
}

std::string ShortId(const std::string& id) {
  return id.substr(0, std::min<size_t>(12, id.size()));
}

DeployRun::DeployRun(Context context, const DeployRequest& request,
                     DeployLog* log,
                     std::function<void(const DeployEvent&)> release)
    : context_(std::move(context)),
      request_(request),
      log_(log),
      release_(std::move(release)),
      name_(request.container().name()),
      temp_name_(TempName(name_, request.deploy_id())) {}

DeployPhase DeployRun::Run(const std::string& registry_auth) {
  // Nothing is created or replaced on this path, so it needs no journal.
  if (request_.start_existing()) {
    if (std::optional<ContainerInfo> stopped = StoppedOfThisDigest())
      return StartExisting(*stopped);
  }
  // Journal from the start, so that an agent killed mid-pull still finds a
  // record on restart and reports this deploy as interrupted.
  Journal(JournalPhase::kPulling);
  // Until the old container is stopped, a failure leaves all as it was.
  if (absl::Status s = PullAndVerify(registry_auth); !s.ok())
    return Fail(s.message());
  if (absl::Status s = FindOld(); !s.ok()) return Fail(s.message());
  if (absl::Status s = CreateNew(); !s.ok()) return Fail(s.message());
  // Journal before touching the old container (crash recovery).
  Journal(JournalPhase::kStoppingOld);
  if (absl::Status s = StopOld(); !s.ok()) return Restore(s.message());
  if (absl::Status s = StartNewAndWaitHealthy(); !s.ok())
    return Restore(s.message());
  return Swap();
}

// ---------------------------------------------------------------------------
// The steps

// Pulls the image (skipped when the digest is present) and checks that what
// is present is the digest asked for.
absl::Status DeployRun::PullAndVerify(const std::string& registry_auth) {
  const std::string reference = Reference(request_);
  Emit(hoist::v1::DEPLOY_PHASE_PULLING, "pulling " + reference);
  auto present = context_.docker->InspectImage(reference);
  // A tag is always pulled (it may have moved); a digest only when absent.
  const bool have =
      present.ok() && !request_.digest().empty() &&
      RepoDigestFor(*present, request_.image()) == request_.digest();
  if (!have) HOIST_RETURN_IF_ERROR(Pull(reference, registry_auth));
  // Present with the digest asked for: what was inspected is what runs.
  auto image = have ? present : context_.docker->InspectImage(reference);
  if (!image.ok())
    return Annotate(image.status(), "image not present after pull");
  HOIST_RETURN_IF_ERROR(ResolveDigest(*image));
  EmitPulled(/*pulled=*/!have);
  return absl::OkStatus();
}

// The container the new one replaces, if any.
absl::Status DeployRun::FindOld() {
  auto old = context_.docker->InspectContainer(name_);
  if (!old.ok()) {
    return old.status().code() == absl::StatusCode::kNotFound ? absl::OkStatus()
                                                              : old.status();
  }
  if (old->labels.count(kLabelService) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a container named ", name_,
        " exists without the hoist.service label; not touching it"));
  }
  old_id_ = old->id;
  old_was_running_ = old->running || old->restarting;
  return absl::OkStatus();
}

// Creates the new container under its temporary name with restart policy
// "no": it must not come back by itself before it proved healthy.
absl::Status DeployRun::CreateNew() {
  HOIST_ASSIGN_OR_RETURN(
      ContainerConfig config,
      BuildConfig(absl::StrCat(request_.image(), "@", resolved_digest_)));
  if (auto stale = context_.docker->InspectContainer(temp_name_); stale.ok()) {
    // Left over from an earlier attempt of this very deploy id.
    context_.docker->RemoveContainer(stale->id, /*force=*/true).IgnoreError();
  }
  auto created = context_.docker->CreateContainer(temp_name_, config);
  if (!created.ok()) return created.status();
  new_id_ = *created;
  Emit(hoist::v1::DEPLOY_PHASE_CREATING,
       absl::StrCat("created ", temp_name_, " ", ShortId(new_id_)));
  return absl::OkStatus();
}

// Stops the old container, and keeps it: it is the rollback. One that was
// already stopped stays as it is.
absl::Status DeployRun::StopOld() {
  if (old_id_.empty()) return absl::OkStatus();
  const int stop_seconds = StopSeconds();
  Emit(hoist::v1::DEPLOY_PHASE_STOPPING_OLD,
       absl::StrCat("stopping ", name_, " ", ShortId(old_id_), " (",
                    stop_seconds, "s)"));
  if (!old_was_running_) return absl::OkStatus();
  return Annotate(
      context_.docker->StopContainer(old_id_, absl::Seconds(stop_seconds)),
      "could not stop the old container");
}

absl::Status DeployRun::StartNewAndWaitHealthy() {
  Journal(JournalPhase::kStarting);
  Emit(hoist::v1::DEPLOY_PHASE_STARTING, absl::StrCat("starting ", temp_name_));
  HOIST_RETURN_IF_ERROR(
      Annotate(context_.docker->StartContainer(new_id_), "start failed"));
  Journal(JournalPhase::kHealthChecking);
  Emit(hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
       "waiting for the new container to be healthy");
  return WaitHealthy();
}

absl::Status DeployRun::WaitHealthy() {
  HealthWaiter waiter(
      context_.docker, context_.prober, context_.clock,
      {new_id_,
       request_.health(),
       context_.settle,
       {{"deploy_id", request_.deploy_id()}, {"container", name_}}});
  return Annotate(waiter.Wait(), "unhealthy");
}

int DeployRun::StopSeconds() const {
  return request_.container().stop_timeout_seconds() > 0
             ? request_.container().stop_timeout_seconds()
             : 10;
}

// ---------------------------------------------------------------------------
// start_existing (docs/design.md, "gRPC API")

// The container holding the name when Hoist created it with the requested
// digest and it is not running (created, exited, dead); absent otherwise,
// and then the deploy runs as usual.
std::optional<ContainerInfo> DeployRun::StoppedOfThisDigest() {
  if (request_.digest().empty()) return std::nullopt;
  auto info = context_.docker->InspectContainer(name_);
  if (!info.ok() || info->name != name_) return std::nullopt;
  auto digest = info->labels.find(kLabelDigest);
  if (info->labels.count(kLabelService) == 0 || digest == info->labels.end() ||
      digest->second != request_.digest()) {
    return std::nullopt;
  }
  if (info->running || info->restarting || info->status == "paused")
    return std::nullopt;
  return *std::move(info);
}

// Starts `stopped` (the same container, its id kept) and health-checks it:
// SUCCEEDED, or FAILED with it stopped again.
DeployPhase DeployRun::StartExisting(const ContainerInfo& stopped) {
  resolved_digest_ = request_.digest();  // the container's own label
  new_id_ = stopped.id;
  Emit(hoist::v1::DEPLOY_PHASE_STARTING,
       absl::StrCat("starting the stopped ", name_, " ", ShortId(new_id_),
                    " again"));
  absl::Status healthy =
      Annotate(context_.docker->StartContainer(new_id_), "start failed");
  if (healthy.ok()) {
    Emit(hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
         "waiting for the container to be healthy");
    healthy = WaitHealthy();
  }
  if (healthy.ok()) return Succeed();
  return LeaveStopped(healthy.message());
}

DeployPhase DeployRun::LeaveStopped(absl::string_view error) {
  std::string full_error(error);
  absl::Status stopped =
      context_.docker->StopContainer(new_id_, absl::Seconds(StopSeconds()));
  if (!stopped.ok()) {
    absl::StrAppend(&full_error,
                    "; could not stop it again: ", stopped.message());
  }
  const Evidence evidence = EvidenceOf(new_id_);
  DeployEvent event = Event(hoist::v1::DEPLOY_PHASE_FAILED,
                            absl::StrCat("deploy failed: ", full_error));
  event.set_error(full_error);
  event.set_exit_code(evidence.exit_code);
  event.set_log_tail(evidence.log_tail);
  Record(hoist::v1::DEPLOY_PHASE_FAILED, full_error);
  Emit(std::move(event));
  return hoist::v1::DEPLOY_PHASE_FAILED;
}

// The new container is healthy: remove the old one, give the new one the
// name and its restart policy, promote the digest.
DeployPhase DeployRun::Swap() {
  Journal(JournalPhase::kSwapping);
  if (absl::Status removed = RemoveOld(); !removed.ok())
    return Restore(removed.message());
  absl::Status renamed = context_.docker->RenameContainer(new_id_, name_);
  if (!renamed.ok()) {
    // The new container serves (healthy) but keeps its temporary name; the
    // journal stays so that Recover() finishes the swap on the next start.
    keep_journal_ = true;
    return Fail(absl::StrCat("healthy, but renaming to ", name_,
                             " failed: ", renamed.message()));
  }
  ApplyRestartPolicy();
  return Succeed();
}

// ---------------------------------------------------------------------------
// Parts of the steps

// Pull events are throttled per deploy, not per layer: at most one per
// progress_interval, whichever layer it is about and whether it is a byte
// count or a layer's completion ("Pull complete", "Already exists", with the
// layer's download size when Docker gave one). Each event is a message the
// receiver takes, and on a fleet every host sends them: an image of ten
// layers would otherwise cost ten completion messages per host. The PULLED
// event that follows carries the totals (see EmitPulled).
absl::Status DeployRun::Pull(const std::string& reference,
                             const std::string& registry_auth) {
  absl::Time last_progress = absl::InfinitePast();
  std::map<std::string, int64_t> download_bytes;  // by layer
  auto progress = [&](const PullUpdate& update) {
    if (update.layer.empty()) return;
    const bool done =
        update.status == "Pull complete" || update.status == "Already exists";
    if (update.status == "Downloading" && update.total > 0) {
      download_bytes[update.layer] = update.total;
    }
    int64_t current = update.current;
    int64_t total = update.total;
    if (done) {
      if (auto it = download_bytes.find(update.layer);
          it != download_bytes.end()) {
        current = total = it->second;
      }
    } else if (total <= 0 && current <= 0) {
      return;  // no byte count
    }
    const absl::Time now = context_.clock->Now();
    if (now - last_progress < context_.progress_interval) return;
    last_progress = now;
    DeployEvent event = Event(hoist::v1::DEPLOY_PHASE_PULLING,
                              absl::StrCat(update.layer, ": ", update.status));
    event.mutable_pull()->set_layer(update.layer);
    event.mutable_pull()->set_current_bytes(current);
    event.mutable_pull()->set_total_bytes(total);
    log_->Append(std::move(event));
  };
  absl::Status pulled =
      context_.docker->PullImage(reference, registry_auth, progress);
  for (const auto& [layer, bytes] : download_bytes) pulled_bytes_ += bytes;
  return pulled;
}

// Sets resolved_digest_: the digest that will run. A digest deploy must get
// exactly that digest; a tag deploy records what the tag resolved to.
// Set only once verified: every event from PULLED on carries it.
absl::Status DeployRun::ResolveDigest(const ImageInfo& image) {
  const std::string found = RepoDigestFor(image, request_.image());
  if (!request_.digest().empty() && found != request_.digest()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "digest mismatch: requested ", request_.digest(), ", image ", image.id,
        " has ", found.empty() ? "no repo digest" : found));
  }
  resolved_digest_ = found.empty() ? request_.digest() : found;
  return absl::OkStatus();
}

void DeployRun::EmitPulled(bool pulled) {
  DeployEvent event = Event(
      hoist::v1::DEPLOY_PHASE_PULLED,
      absl::StrCat(pulled ? "pulled: " : "image present: ", request_.image(),
                   "@", resolved_digest_));
  if (pulled) {
    // The pull's totals: the layer events before were throttled.
    event.mutable_pull()->set_current_bytes(pulled_bytes_);
    event.mutable_pull()->set_total_bytes(pulled_bytes_);
  }
  Emit(std::move(event));
}

absl::StatusOr<ContainerConfig> DeployRun::BuildConfig(
    const std::string& reference) {
  const auto& spec = request_.container();
  ContainerConfig config;
  config.image = reference;
  config.env.assign(spec.env().begin(), spec.env().end());
  for (const std::string& file : spec.env_files()) {
    HOIST_ASSIGN_OR_RETURN(std::vector<std::string> lines, ReadEnvFile(file));
    config.env.insert(config.env.end(), lines.begin(), lines.end());
  }
  config.ports.assign(spec.ports().begin(), spec.ports().end());
  config.binds.assign(spec.volumes().begin(), spec.volumes().end());
  config.labels.insert(spec.labels().begin(), spec.labels().end());
  config.labels[kLabelService] = request_.service();
  config.labels[kLabelDigest] = resolved_digest_;
  config.labels[kLabelDeployId] = request_.deploy_id();
  config.labels[kLabelImage] = request_.image();
  config.restart_policy = "no";  // set to the spec's once healthy
  config.user = spec.user();
  config.entrypoint.assign(spec.entrypoint().begin(), spec.entrypoint().end());
  config.cmd.assign(spec.command().begin(), spec.command().end());
  config.memory_bytes = spec.memory_mb() * 1024 * 1024;
  config.nano_cpus = static_cast<int64_t>(spec.cpus() * 1e9);
  config.log_driver = spec.log_driver();
  config.log_options.insert(spec.log_options().begin(),
                            spec.log_options().end());
  config.network_mode = spec.network();
  config.stop_timeout_seconds =
      spec.stop_timeout_seconds() > 0 ? spec.stop_timeout_seconds() : -1;
  return config;
}

absl::Status DeployRun::RemoveOld() {
  if (old_id_.empty()) return absl::OkStatus();
  absl::Status removed =
      context_.docker->RemoveContainer(old_id_, /*force=*/true);
  if (!removed.ok() && removed.code() != absl::StatusCode::kNotFound)
    return Annotate(removed, "could not remove the old container");
  old_id_.clear();  // gone: nothing to restore any more
  return absl::OkStatus();
}

// A failure here is logged, not fatal: the new container already serves.
void DeployRun::ApplyRestartPolicy() {
  const std::string restart = request_.container().restart().empty()
                                  ? "no"
                                  : request_.container().restart();
  // Created with "no": only another policy needs a call.
  if (restart == "no") return;
  absl::Status updated = context_.docker->UpdateRestartPolicy(new_id_, restart);
  if (!updated.ok()) {
    LogWarning("could not set the restart policy",
               {{"deploy_id", request_.deploy_id()},
                {"error", std::string(updated.message())}});
  }
}

// ---------------------------------------------------------------------------
// Terminal outcomes

DeployPhase DeployRun::Succeed() {
  Record(hoist::v1::DEPLOY_PHASE_SUCCEEDED, "");
  Prune();
  Emit(hoist::v1::DEPLOY_PHASE_SUCCEEDED,
       absl::StrCat(name_, " runs ", request_.image(), "@", resolved_digest_));
  return hoist::v1::DEPLOY_PHASE_SUCCEEDED;
}

DeployPhase DeployRun::Fail(absl::string_view error) {
  DeployEvent event = Event(hoist::v1::DEPLOY_PHASE_FAILED,
                            absl::StrCat("deploy failed: ", error));
  event.set_error(std::string(error));
  Record(hoist::v1::DEPLOY_PHASE_FAILED, std::string(error));
  Emit(std::move(event));
  return hoist::v1::DEPLOY_PHASE_FAILED;
}

DeployPhase DeployRun::Restore(absl::string_view error) {
  // The exit code stays the new container's (see DeployEvent.exit_code).
  Evidence fresh;
  if (!new_id_.empty()) fresh = EvidenceOf(new_id_);
  std::string log_tail = std::move(fresh.log_tail);
  DeployEvent rolling = Event(
      hoist::v1::DEPLOY_PHASE_ROLLING_BACK,
      old_id_.empty() ? "removing the new container"
                      : "removing the new container, restoring the old one");
  rolling.set_error(std::string(error));
  rolling.set_exit_code(fresh.exit_code);
  rolling.set_log_tail(log_tail);
  Emit(std::move(rolling));

  std::string restore_error = RemoveNew();
  if (std::string restart_error = RestartOld(&log_tail);
      !restart_error.empty()) {
    restore_error = absl::StrCat(
        restore_error.empty() ? "" : restore_error + "; ", restart_error);
  }
  const bool rolled_back = !old_id_.empty() && restore_error.empty();
  const DeployPhase phase = rolled_back ? hoist::v1::DEPLOY_PHASE_ROLLED_BACK
                                        : hoist::v1::DEPLOY_PHASE_FAILED;
  std::string full_error(error);
  if (!restore_error.empty()) absl::StrAppend(&full_error, "; ", restore_error);
  DeployEvent done = Event(
      phase, rolled_back ? absl::StrCat("rolled back to ", ShortId(old_id_))
                         : "deploy failed: " + full_error);
  done.set_error(full_error);
  done.set_exit_code(fresh.exit_code);
  done.set_log_tail(log_tail);
  Record(phase, full_error);
  Emit(std::move(done));
  return phase;
}

std::string DeployRun::RemoveNew() {
  if (new_id_.empty()) return "";
  absl::Status removed =
      context_.docker->RemoveContainer(new_id_, /*force=*/true);
  if (removed.ok() || removed.code() == absl::StatusCode::kNotFound) return "";
  return absl::StrCat("could not remove the new container: ",
                      removed.message());
}

std::string DeployRun::RestartOld(std::string* log_tail) {
  // The old container ends as it was: started again only if it was running.
  if (old_id_.empty() || !old_was_running_) return "";
  absl::Status started = context_.docker->StartContainer(old_id_);
  if (started.ok()) return "";
  // Now neither container runs: the operator needs the evidence of both.
  const Evidence old = EvidenceOf(old_id_);
  auto labeled = [](absl::string_view label, absl::string_view tail) {
    const bool terminated = tail.empty() || absl::EndsWith(tail, "\n");
    return absl::StrCat(label, "\n", tail, terminated ? "" : "\n");
  };
  *log_tail = absl::StrCat(labeled("new container:", *log_tail),
                           labeled("old container:", old.log_tail));
  return absl::StrCat(
      "could not start the old container again: ", started.message(),
      " (old container exit code ", old.exit_code, ")");
}

DeployRun::Evidence DeployRun::EvidenceOf(const std::string& id) {
  Evidence out;
  if (auto info = context_.docker->InspectContainer(id); info.ok())
    out.exit_code = info->exit_code;
  if (auto logs = context_.docker->ContainerLogs(id, kLogTailLines); logs.ok())
    out.log_tail = *std::move(logs);
  return out;
}

// ---------------------------------------------------------------------------
// Events, state and journal

DeployEvent DeployRun::Event(DeployPhase phase,
                             const std::string& message) const {
  DeployEvent event;
  event.set_host(context_.host);
  *event.mutable_time() = ToProto(context_.clock->Now());
  event.set_phase(phase);
  event.set_message(message);
  if (!new_id_.empty()) event.set_container_id(new_id_);
  if (!resolved_digest_.empty()) event.set_digest(resolved_digest_);
  return event;
}

void DeployRun::Emit(DeployEvent event) {
  LogFields fields = {{"deploy_id", request_.deploy_id()},
                      {"container", name_},
                      {"phase", hoist::v1::DeployPhase_Name(event.phase())}};
  if (!event.error().empty()) fields.push_back({"error", event.error()});
  Log(event.phase() == hoist::v1::DEPLOY_PHASE_FAILED ||
              event.phase() == hoist::v1::DEPLOY_PHASE_ROLLING_BACK
          ? LogLevel::kWarning
          : LogLevel::kInfo,
      event.message(), fields);
  if (IsTerminalPhase(event.phase()) && release_) release_(event);
  log_->Append(std::move(event));
}

void DeployRun::Emit(DeployPhase phase, const std::string& message) {
  Emit(Event(phase, message));
}

void DeployRun::Record(DeployPhase phase, const std::string& error) {
  absl::Status status =
      context_.store->Update(name_, [&](ContainerState* state) {
        state->last_deploy_id = request_.deploy_id();
        state->last_phase = phase;
        state->last_error = error;
        if (!keep_journal_) state->journal.reset();
        if (phase != hoist::v1::DEPLOY_PHASE_SUCCEEDED) return;
        pruned_ = state->Promote(resolved_digest_, context_.keep_images);
        DeployRequest remembered = request_;
        remembered.set_digest(resolved_digest_);
        remembered.clear_start_existing();  // Rollback reuses it
        state->last_request = std::move(remembered);
      });
  if (!status.ok()) {
    LogError("cannot write agent state",
             {{"deploy_id", request_.deploy_id()},
              {"error", std::string(status.message())}});
  }
}

void DeployRun::Journal(JournalPhase phase) {
  DeployJournal journal{request_.deploy_id(),
                        old_id_,
                        old_was_running_,
                        temp_name_,
                        new_id_,
                        phase,
                        request_.container().restart(),
                        resolved_digest_};
  absl::Status status = context_.store->Update(
      name_, [&](ContainerState* state) { state->journal = journal; });
  if (!status.ok()) {
    LogError("cannot write deploy journal",
             {{"deploy_id", request_.deploy_id()},
              {"error", std::string(status.message())}});
  }
}

void DeployRun::Prune() {
  for (const std::string& digest : pruned_) {
    const std::string reference = absl::StrCat(request_.image(), "@", digest);
    absl::Status removed =
        context_.docker->RemoveImage(reference, /*force=*/false);
    LogInfo(removed.ok() ? "pruned image" : "could not prune image",
            {{"deploy_id", request_.deploy_id()},
             {"image", reference},
             {"result",
              removed.ok() ? "removed" : std::string(removed.message())}});
  }
}

}  // namespace hoist::nodeagent
