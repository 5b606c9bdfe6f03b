#include "nodeagent/deploy_history.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/log.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace hoist::nodeagent {
namespace {

using nlohmann::json;

constexpr char kSuffix[] = ".json";

// The sequence number a file name carries; false for other files.
bool SequenceOf(const std::filesystem::path& path, uint64_t* sequence) {
  const std::string name = path.filename().string();
  if (name.size() <= sizeof(kSuffix) - 1 ||
      name.compare(name.size() - (sizeof(kSuffix) - 1), std::string::npos,
                   kSuffix) != 0) {
    return false;
  }
  return absl::SimpleAtoi(name.substr(0, name.size() - (sizeof(kSuffix) - 1)),
                          sequence);
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeployHistory>> DeployHistory::Open(
    const std::string& dir, size_t capacity) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  std::vector<uint64_t> found;
  if (!error) {
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      uint64_t sequence = 0;
      if (SequenceOf(entry.path(), &sequence)) found.push_back(sequence);
    }
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("deploy history ", dir, ": ", error.message()));
  }
  std::sort(found.begin(), found.end());
  std::unique_ptr<DeployHistory> history(
      new DeployHistory(dir, std::max<size_t>(capacity, 1)));
  absl::MutexLock lock(&history->mu_);
  for (uint64_t sequence : found) {
    history->next_ = sequence + 1;
    auto contents = ReadFile(history->PathOf(sequence));
    auto record = contents.ok() ? FromJson(*contents)
                                : absl::StatusOr<Record>(contents.status());
    if (!record.ok()) {
      LogWarning("skipping an unreadable deploy record",
                 {{"file", history->PathOf(sequence)},
                  {"error", std::string(record.status().message())}});
      continue;
    }
    history->files_.push_back(sequence);
    history->loaded_.push_back(*std::move(record));
  }
  // Keep the newest `capacity`.
  while (history->files_.size() > history->capacity_) {
    std::filesystem::remove(history->PathOf(history->files_.front()), error);
    history->files_.pop_front();
    history->loaded_.erase(history->loaded_.begin());
  }
  return history;
}

std::vector<DeployHistory::Record> DeployHistory::TakeLoaded() {
  absl::MutexLock lock(&mu_);
  return std::exchange(loaded_, {});
}

absl::Status DeployHistory::Add(const Record& record) {
  absl::MutexLock lock(&mu_);
  const uint64_t sequence = next_++;
  if (absl::Status written =
          WriteFileAtomically(PathOf(sequence), ToJson(record));
      !written.ok()) {
    return written;
  }
  files_.push_back(sequence);
  while (files_.size() > capacity_) {
    std::error_code error;
    std::filesystem::remove(PathOf(files_.front()), error);
    files_.pop_front();
  }
  return absl::OkStatus();
}

std::string DeployHistory::PathOf(uint64_t sequence) const {
  return absl::StrFormat("%s/%020d%s", dir_, sequence, kSuffix);
}

std::string DeployHistory::ToJson(const Record& record) {
  json events = json::array();
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  for (const hoist::v1::DeployEvent& event : record.events) {
    std::string text;
    if (google::protobuf::util::MessageToJsonString(event, &text, options)
            .ok()) {
      events.push_back(json::parse(text, nullptr, /*allow_exceptions=*/false));
    }
  }
  json root = {{"version", 1},
               {"deploy_id", record.deploy_id},
               {"container", record.container_name},
               {"events", std::move(events)}};
  return root.dump() + "\n";
}

absl::StatusOr<DeployHistory::Record> DeployHistory::FromJson(
    const std::string& text) {
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object() || !root.contains("deploy_id") ||
      !root["deploy_id"].is_string() || !root.contains("events") ||
      !root["events"].is_array()) {
    return absl::InvalidArgumentError(
        "not a deploy record (want deploy_id and events)");
  }
  Record record;
  record.deploy_id = root["deploy_id"].get<std::string>();
  if (root.contains("container") && root["container"].is_string())
    record.container_name = root["container"].get<std::string>();
  for (const json& item : root["events"]) {
    hoist::v1::DeployEvent event;
    const auto parsed =
        google::protobuf::util::JsonStringToMessage(item.dump(), &event);
    if (!parsed.ok())
      return absl::InvalidArgumentError("event: " + parsed.ToString());
    record.events.push_back(std::move(event));
  }
  if (record.deploy_id.empty() || record.events.empty()) {
    return absl::InvalidArgumentError("deploy record without id or events");
  }
  return record;
}

}  // namespace hoist::nodeagent
