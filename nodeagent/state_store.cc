#include "nodeagent/state_store.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace hoist::nodeagent {
namespace {

using nlohmann::json;

// The on-disk names, in enum order after kUnknown.
constexpr std::pair<JournalPhase, const char*> kJournalPhaseNames[] = {
    {JournalPhase::kPulling, "pulling"},
    {JournalPhase::kStoppingOld, "stopping_old"},
    {JournalPhase::kStarting, "starting"},
    {JournalPhase::kHealthChecking, "health_checking"},
    {JournalPhase::kSwapping, "swapping"},
};

json JournalToJson(const DeployJournal& journal) {
  return {{"deploy_id", journal.deploy_id},
          {"old_id", journal.old_id},
          {"old_was_running", journal.old_was_running},
          {"new_name", journal.new_name},
          {"new_id", journal.new_id},
          {"phase", JournalPhaseName(journal.phase)},
          {"restart_policy", journal.restart_policy},
          {"digest", journal.digest}};
}

DeployJournal JournalFromJson(const json& j) {
  DeployJournal journal;
  journal.deploy_id = j.value("deploy_id", "");
  journal.old_id = j.value("old_id", "");
  journal.old_was_running = j.value("old_was_running", false);
  journal.new_name = j.value("new_name", "");
  journal.new_id = j.value("new_id", "");
  journal.phase = ParseJournalPhase(j.value("phase", ""));
  journal.restart_policy = j.value("restart_policy", "");
  journal.digest = j.value("digest", "");
  return journal;
}

}  // namespace

const char* JournalPhaseName(JournalPhase phase) {
  for (const auto& [value, name] : kJournalPhaseNames) {
    if (value == phase) return name;
  }
  return "";
}

JournalPhase ParseJournalPhase(const std::string& name) {
  for (const auto& [value, stored] : kJournalPhaseNames) {
    if (name == stored) return value;
  }
  return JournalPhase::kUnknown;
}

std::vector<std::string> ContainerState::Promote(const std::string& digest,
                                                 int keep_images) {
  if (!current_digest.empty() && current_digest != digest)
    previous_digests.insert(previous_digests.begin(), current_digest);
  current_digest = digest;
  // Newest first: keep each digest's first occurrence, never the current.
  std::vector<std::string> unique;
  for (const std::string& d : previous_digests) {
    if (d != digest &&
        std::find(unique.begin(), unique.end(), d) == unique.end())
      unique.push_back(d);
  }
  previous_digests = std::move(unique);
  // The current digest is one of the kept images.
  const std::ptrdiff_t keep_previous = std::max(keep_images, 1) - 1;
  if (static_cast<std::ptrdiff_t>(previous_digests.size()) <= keep_previous)
    return {};
  std::vector<std::string> dropped(previous_digests.begin() + keep_previous,
                                   previous_digests.end());
  previous_digests.erase(previous_digests.begin() + keep_previous,
                         previous_digests.end());
  return dropped;
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(
    const std::string& path) {
  std::map<std::string, ContainerState> states;
  auto contents = ReadFile(path);
  if (contents.ok()) {
    auto parsed = FromJson(*contents);
    if (!parsed.ok()) {
      return absl::Status(parsed.status().code(),
                          absl::StrCat(path, ": ", parsed.status().message()));
    }
    states = std::move(*parsed);
  } else if (contents.status().code() != absl::StatusCode::kNotFound) {
    return contents.status();
  }
  return std::unique_ptr<StateStore>(new StateStore(path, std::move(states)));
}

ContainerState StateStore::Get(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = states_.find(name);
  return it == states_.end() ? ContainerState() : it->second;
}

std::map<std::string, ContainerState> StateStore::All() const {
  absl::MutexLock lock(&mu_);
  return states_;
}

absl::Status StateStore::Update(
    const std::string& name,
    const std::function<void(ContainerState*)>& mutate) {
  absl::MutexLock lock(&mu_);
  mutate(&states_[name]);
  return WriteLocked();
}

// WriteFileAtomically creates the file 0600: remembered requests carry env
// values.
absl::Status StateStore::WriteLocked() {
  return WriteFileAtomically(path_, ToJson(states_));
}

std::string StateStore::ToJson(
    const std::map<std::string, ContainerState>& states) {
  json root = {{"version", 1}, {"containers", json::object()}};
  for (const auto& [name, state] : states) {
    json entry = {{"current_digest", state.current_digest},
                  {"previous_digests", state.previous_digests},
                  {"last_deploy_id", state.last_deploy_id},
                  {"last_phase", hoist::v1::DeployPhase_Name(state.last_phase)},
                  {"last_error", state.last_error}};
    if (state.last_request.has_value()) {
      std::string request_json;
      google::protobuf::util::JsonPrintOptions options;
      options.preserve_proto_field_names = true;
      if (google::protobuf::util::MessageToJsonString(*state.last_request,
                                                      &request_json, options)
              .ok()) {
        entry["last_request"] = json::parse(request_json, nullptr, false);
      }
    }
    if (state.journal.has_value())
      entry["journal"] = JournalToJson(*state.journal);
    root["containers"][name] = std::move(entry);
  }
  return root.dump(2) + "\n";
}

absl::StatusOr<std::map<std::string, ContainerState>> StateStore::FromJson(
    const std::string& text) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object() || !root.contains("containers") ||
      !root["containers"].is_object()) {
    return absl::InvalidArgumentError(
        "state file is not a JSON object with \"containers\"");
  }
  std::map<std::string, ContainerState> states;
  try {
    for (auto it = root["containers"].begin(); it != root["containers"].end();
         ++it) {
      const json& entry = it.value();
      ContainerState state;
      state.current_digest = entry.value("current_digest", "");
      if (entry.contains("previous_digests")) {
        state.previous_digests =
            entry["previous_digests"].get<std::vector<std::string>>();
      }
      state.last_deploy_id = entry.value("last_deploy_id", "");
      hoist::v1::DeployPhase phase = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
      if (hoist::v1::DeployPhase_Parse(entry.value("last_phase", ""), &phase)) {
        state.last_phase = phase;
      }
      state.last_error = entry.value("last_error", "");
      if (entry.contains("last_request") && entry["last_request"].is_object()) {
        hoist::v1::DeployRequest request;
        if (google::protobuf::util::JsonStringToMessage(
                entry["last_request"].dump(), &request)
                .ok()) {
          state.last_request = std::move(request);
        }
      }
      if (entry.contains("journal") && entry["journal"].is_object()) {
        state.journal = JournalFromJson(entry["journal"]);
      }
      states[it.key()] = std::move(state);
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("state file: ", e.what()));
  }
  return states;
}

}  // namespace hoist::nodeagent
