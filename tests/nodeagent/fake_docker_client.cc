#include "tests/nodeagent/fake_docker_client.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hoist::nodeagent {

void FakeDockerClient::AddRemoteImage(const std::string& repo,
                                      const std::string& digest,
                                      Behavior behavior,
                                      std::vector<std::string> repo_digests) {
  absl::MutexLock lock(&mu_);
  Image image;
  image.id = absl::StrCat("sha256:img", digest.substr(7, 12));
  image.repo = repo;
  image.repo_digests = repo_digests.empty()
                           ? std::vector<std::string>{repo + "@" + digest}
                           : std::move(repo_digests);
  image.behavior = std::move(behavior);
  remote_[repo + "@" + digest] = std::move(image);
}

void FakeDockerClient::AddLocalImage(const std::string& repo,
                                     const std::string& digest) {
  absl::MutexLock lock(&mu_);
  auto it = remote_.find(repo + "@" + digest);
  Image image;
  if (it != remote_.end()) {
    image = it->second;
  } else {
    image.id = absl::StrCat("sha256:img", digest.substr(7, 12));
    image.repo = repo;
    image.repo_digests = {repo + "@" + digest};
  }
  local_.push_back(std::move(image));
}

std::string FakeDockerClient::AddContainer(
    const std::string& name, const std::string& image,
    std::map<std::string, std::string> labels, bool running) {
  absl::MutexLock lock(&mu_);
  Container c;
  c.info.id = absl::StrFormat("c%063d", next_id_++);
  c.info.name = name;
  c.info.image = image;
  c.info.running = running;
  c.info.status = running ? "running" : "exited";
  c.info.labels = std::move(labels);
  EmitLocked("create", c);
  if (running) EmitLocked("start", c);
  const std::string id = c.info.id;
  containers_[id] = std::move(c);
  return id;
}

void FakeDockerClient::FailNext(const std::string& method, absl::Status status,
                                const std::string& match) {
  absl::MutexLock lock(&mu_);
  failures_.push_back({method, std::move(status), match});
}

void FakeDockerClient::BlockPulls() {
  absl::MutexLock lock(&mu_);
  block_pulls_ = true;
}

void FakeDockerClient::Release() {
  absl::MutexLock lock(&mu_);
  block_pulls_ = false;
}

bool FakeDockerClient::PullBlocked() {
  absl::MutexLock lock(&mu_);
  return blocked_ > 0;
}

std::vector<std::string> FakeDockerClient::calls() {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int FakeDockerClient::CountCalls(const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(std::count_if(
      calls_.begin(), calls_.end(),
      [&](const std::string& c) { return absl::StartsWith(c, prefix); }));
}

absl::StatusOr<ContainerInfo> FakeDockerClient::Find(const std::string& name) {
  absl::MutexLock lock(&mu_);
  Container* c = FindLocked(name);
  if (c == nullptr) return absl::NotFoundError("no such container: " + name);
  return c->info;
}

std::vector<std::string> FakeDockerClient::ContainerNames() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [id, c] : containers_) names.push_back(c.info.name);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> FakeDockerClient::LocalImages() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const Image& image : local_) {
    for (const std::string& d : image.repo_digests) out.push_back(d);
  }
  return out;
}

ContainerConfig FakeDockerClient::LastConfig(const std::string& name) {
  absl::MutexLock lock(&mu_);
  return configs_[name];
}

std::string FakeDockerClient::last_registry_auth() {
  absl::MutexLock lock(&mu_);
  return last_auth_;
}

absl::Status FakeDockerClient::Injected(const std::string& method,
                                        const std::string& arg) {
  if (unreachable_) {
    return absl::UnavailableError(
        "docker at /fake/docker.sock: Couldn't connect to server");
  }
  for (auto it = failures_.begin(); it != failures_.end(); ++it) {
    if (it->method == method && absl::StrContains(arg, it->match)) {
      absl::Status status = it->status;
      failures_.erase(it);
      return status;
    }
  }
  return absl::OkStatus();
}

FakeDockerClient::Container* FakeDockerClient::FindLocked(
    const std::string& id_or_name) {
  for (auto& [id, c] : containers_) {
    if (id == id_or_name || c.info.name == id_or_name) return &c;
  }
  return nullptr;
}

const FakeDockerClient::Image* FakeDockerClient::LocalImageLocked(
    const std::string& reference) {
  for (const Image& image : local_) {
    if (image.id == reference) return &image;
    if (std::find(image.aliases.begin(), image.aliases.end(), reference) !=
        image.aliases.end()) {
      return &image;
    }
    if (std::find(image.repo_digests.begin(), image.repo_digests.end(),
                  reference) != image.repo_digests.end()) {
      return &image;
    }
  }
  return nullptr;
}

absl::Status FakeDockerClient::Ping() {
  absl::MutexLock lock(&mu_);
  return Injected("Ping", "");
}

absl::StatusOr<DockerVersion> FakeDockerClient::Version() {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Injected("Version", ""); !s.ok()) return s;
  return DockerVersion{"20.10.24-fake", "1.41"};
}

absl::Status FakeDockerClient::PullImage(const std::string& reference,
                                         const std::string& registry_auth,
                                         const PullCallback& progress) {
  Image image;
  {
    absl::MutexLock lock(&mu_);
    calls_.push_back("Pull " + reference);
    last_auth_ = registry_auth;
    ++blocked_;
    mu_.Await(absl::Condition(
        +[](bool* block) { return !*block; }, &block_pulls_));
    --blocked_;
    if (absl::Status s = Injected("PullImage", reference); !s.ok()) return s;
    auto it = remote_.find(reference);
    if (it == remote_.end()) {
      return absl::NotFoundError(
          absl::StrCat("pull ", reference, ": manifest unknown"));
    }
    image = it->second;
    image.aliases.push_back(reference);
  }
  if (progress) {
    progress({"layer1", "Downloading", 50, 100});
    progress({"layer1", "Downloading", 100, 100});
    progress({"layer1", "Pull complete", 0, 0});
    progress({"layer2", "Downloading", 10, 40});
    progress({"layer2", "Downloading", 40, 40});
    progress({"layer2", "Pull complete", 0, 0});
  }
  absl::MutexLock lock(&mu_);
  local_.push_back(std::move(image));
  return absl::OkStatus();
}

absl::StatusOr<ImageInfo> FakeDockerClient::InspectImage(
    const std::string& reference) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Injected("InspectImage", reference); !s.ok()) return s;
  const Image* image = LocalImageLocked(reference);
  if (image == nullptr)
    return absl::NotFoundError("no such image: " + reference);
  ImageInfo info;
  info.id = image->id;
  info.repo_digests = image->repo_digests;
  return info;
}

absl::StatusOr<std::vector<ImageInfo>> FakeDockerClient::ListImages() {
  absl::MutexLock lock(&mu_);
  std::vector<ImageInfo> out;
  for (const Image& image : local_) {
    ImageInfo info;
    info.id = image.id;
    info.repo_digests = image.repo_digests;
    out.push_back(std::move(info));
  }
  return out;
}

absl::Status FakeDockerClient::RemoveImage(const std::string& reference,
                                           bool force) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("RemoveImage " + reference);
  if (absl::Status s = Injected("RemoveImage", reference); !s.ok()) return s;
  for (auto it = local_.begin(); it != local_.end(); ++it) {
    if (std::find(it->repo_digests.begin(), it->repo_digests.end(),
                  reference) == it->repo_digests.end()) {
      continue;
    }
    for (const auto& [id, c] : containers_) {
      if (c.info.image == reference && !force) {
        return absl::FailedPreconditionError(
            "image is being used by container " + id);
      }
    }
    local_.erase(it);
    return absl::OkStatus();
  }
  return absl::NotFoundError("no such image: " + reference);
}

absl::StatusOr<std::vector<ContainerSummary>> FakeDockerClient::ListContainers(
    const std::string& label) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Injected("ListContainers", label); !s.ok()) return s;
  std::vector<ContainerSummary> out;
  for (const auto& [id, c] : containers_) {
    if (!label.empty() && c.info.labels.count(label) == 0) continue;
    ContainerSummary summary;
    summary.id = id;
    summary.name = c.info.name;
    summary.image = c.info.image;
    summary.state = c.info.status;
    summary.labels = c.info.labels;
    out.push_back(std::move(summary));
  }
  return out;
}

absl::StatusOr<ContainerInfo> FakeDockerClient::InspectContainer(
    const std::string& id_or_name) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = Injected("InspectContainer", id_or_name); !s.ok())
    return s;
  Container* c = FindLocked(id_or_name);
  if (c == nullptr)
    return absl::NotFoundError("No such container: " + id_or_name);
  if (c->info.running && c->behavior.healthy_after_inspects > 0) {
    c->info.health =
        c->behavior.healthy_after_inspects-- > 1 ? "starting" : "healthy";
  }
  const ContainerInfo seen = c->info;
  if (c->info.running && c->behavior.exits_after_inspects > 0 &&
      --c->behavior.exits_after_inspects == 0) {
    c->info.running = false;
    c->info.status = "exited";
    c->info.exit_code = c->behavior.exit_code;
  }
  return seen;
}

absl::StatusOr<std::string> FakeDockerClient::CreateContainer(
    const std::string& name, const ContainerConfig& config) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("Create " + name);
  if (absl::Status s = Injected("CreateContainer", name); !s.ok()) return s;
  if (FindLocked(name) != nullptr) {
    return absl::AlreadyExistsError("Conflict. The container name \"/" + name +
                                    "\" is already in use");
  }
  const Image* image = LocalImageLocked(config.image);
  if (image == nullptr)
    return absl::NotFoundError("No such image: " + config.image);
  Container c;
  c.info.id = absl::StrFormat("c%063d", next_id_++);
  c.info.name = name;
  c.info.image = config.image;
  c.info.image_id = image->id;
  c.info.status = "created";
  c.info.labels = config.labels;
  c.info.restart_policy = config.restart_policy;
  c.behavior = image->behavior;
  configs_[name] = config;
  EmitLocked("create", c);
  const std::string id = c.info.id;
  containers_[id] = std::move(c);
  return id;
}

absl::Status FakeDockerClient::StartContainer(const std::string& id) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("Start " + id);
  if (absl::Status s = Injected("StartContainer", id); !s.ok()) return s;
  Container* c = FindLocked(id);
  if (c == nullptr) return absl::NotFoundError("No such container: " + id);
  if (c->behavior.exits) {
    c->info.running = false;
    c->info.status = "exited";
    c->info.exit_code = c->behavior.exit_code;
    EmitLocked("start", *c);
    EmitLocked("die", *c);
  } else {
    const bool was_running = c->info.running;
    c->info.running = true;
    c->info.status = "running";
    c->info.health = c->behavior.health;
    c->info.started_at = next_event_time_;
    if (!was_running) EmitLocked("start", *c);
  }
  return absl::OkStatus();
}

absl::Status FakeDockerClient::StopContainer(const std::string& id,
                                             absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("Stop " + id);
  if (absl::Status s = Injected("StopContainer", id); !s.ok()) return s;
  Container* c = FindLocked(id);
  if (c == nullptr) return absl::NotFoundError("No such container: " + id);
  const bool was_running = c->info.running;
  c->info.running = false;
  c->info.status = "exited";
  c->info.exit_code = c->behavior.exit_code;
  if (was_running) {
    EmitLocked("kill", *c);
    EmitLocked("die", *c);
    EmitLocked("stop", *c);
  }
  return absl::OkStatus();
}

absl::Status FakeDockerClient::RemoveContainer(const std::string& id,
                                               bool force) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("Remove " + id);
  if (absl::Status s = Injected("RemoveContainer", id); !s.ok()) return s;
  Container* c = FindLocked(id);
  if (c == nullptr) return absl::NotFoundError("No such container: " + id);
  if (c->info.running && !force) {
    return absl::FailedPreconditionError(
        "You cannot remove a running container");
  }
  if (c->info.running) {
    EmitLocked("kill", *c);
    EmitLocked("die", *c);
  }
  EmitLocked("destroy", *c);
  containers_.erase(c->info.id);
  return absl::OkStatus();
}

absl::Status FakeDockerClient::RenameContainer(const std::string& id,
                                               const std::string& new_name) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("Rename " + id + " " + new_name);
  if (absl::Status s = Injected("RenameContainer", id); !s.ok()) return s;
  if (FindLocked(new_name) != nullptr) {
    return absl::AlreadyExistsError("name " + new_name + " is already in use");
  }
  Container* c = FindLocked(id);
  if (c == nullptr) return absl::NotFoundError("No such container: " + id);
  const std::string old_name = c->info.name;
  c->info.name = new_name;
  EmitLocked("rename", *c, {{"oldName", "/" + old_name}});
  return absl::OkStatus();
}

absl::StatusOr<std::string> FakeDockerClient::ContainerLogs(
    const std::string& id, int tail) {
  absl::MutexLock lock(&mu_);
  Container* c = FindLocked(id);
  if (c == nullptr) return absl::NotFoundError("No such container: " + id);
  return c->behavior.logs;
}

absl::Status FakeDockerClient::UpdateRestartPolicy(const std::string& id,
                                                   const std::string& policy) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("Update " + id + " " + policy);
  if (absl::Status s = Injected("UpdateRestartPolicy", id); !s.ok()) return s;
  Container* c = FindLocked(id);
  if (c == nullptr) return absl::NotFoundError("No such container: " + id);
  c->info.restart_policy = policy;
  return absl::OkStatus();
}

void FakeDockerClient::EmitEvent(DockerEvent event) {
  absl::MutexLock lock(&mu_);
  EmitLocked(std::move(event));
}

void FakeDockerClient::SetUnreachable(bool unreachable) {
  absl::MutexLock lock(&mu_);
  unreachable_ = unreachable;
  if (!unreachable) return;
  for (auto& [id, stream] : streams_) stream.ended = true;
}

int FakeDockerClient::OpenEventStreams() {
  absl::MutexLock lock(&mu_);
  int open = 0;
  for (const auto& [id, stream] : streams_) open += stream.ended ? 0 : 1;
  return open;
}

void FakeDockerClient::SetContainerState(const std::string& name,
                                         const std::string& action) {
  absl::MutexLock lock(&mu_);
  Container* c = FindLocked(name);
  if (c == nullptr) return;
  if (action == "pause") {
    c->info.status = "paused";
  } else if (action == "unpause") {
    c->info.status = "running";
  } else if (action == "die") {
    c->info.running = false;
    c->info.status = "exited";
    c->info.exit_code = c->behavior.exit_code;
  }
  EmitLocked(action, *c);
}

void FakeDockerClient::EmitLocked(const std::string& action, const Container& c,
                                  std::map<std::string, std::string> extra) {
  DockerEvent event;
  event.type = "container";
  event.action = action;
  event.id = c.info.id;
  event.attributes = c.info.labels;
  event.attributes["name"] = c.info.name;
  event.attributes["image"] = c.info.image;
  for (auto& [key, value] : extra) event.attributes[key] = std::move(value);
  EmitLocked(std::move(event));
}

void FakeDockerClient::EmitLocked(DockerEvent event) {
  if (event.time == absl::InfinitePast()) {
    next_event_time_ += absl::Milliseconds(1);
    event.time = next_event_time_;
  }
  for (auto& [id, stream] : streams_) {
    if (!stream.ended) stream.queued.push_back(event);
  }
}

// Like the real engine: subscribed first (on_subscribed), then events in
// order until the stream is cancelled or "dockerd" goes away.
absl::Status FakeDockerClient::FollowEvents(const EventFilters& /*filters*/,
                                            const EventHandlers& handlers,
                                            EventStreamCancel* cancel) {
  int id = 0;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Injected("FollowEvents", ""); !s.ok()) return s;
    id = next_stream_++;
    streams_[id];
  }
  cancel->SetWaker([this, id] {
    absl::MutexLock lock(&mu_);
    streams_[id].cancelled = true;
  });
  if (cancel->cancelled()) cancel->Cancel();  // cancelled before the waker
  absl::Status status =
      handlers.on_subscribed ? handlers.on_subscribed() : absl::OkStatus();
  while (status.ok()) {
    std::deque<DockerEvent> events;
    {
      absl::MutexLock lock(&mu_);
      EventStream* stream = &streams_[id];
      mu_.Await(absl::Condition(
          +[](EventStream* s) {
            return !s->queued.empty() || s->ended || s->cancelled;
          },
          stream));
      if (stream->cancelled) {
        status = absl::CancelledError("events: cancelled");
      } else if (stream->ended) {
        status = absl::UnavailableError(
            "docker at /fake/docker.sock: the event stream ended");
      }
      events.swap(stream->queued);
    }
    if (!status.ok()) break;
    for (const DockerEvent& event : events) {
      if (handlers.on_event) handlers.on_event(event);
    }
  }
  cancel->SetWaker(nullptr);
  absl::MutexLock lock(&mu_);
  streams_.erase(id);
  return status;
}

}  // namespace hoist::nodeagent
