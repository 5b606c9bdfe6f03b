#include "receiver/fleet_publication.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "hoist/v1/control.pb.h"
#include "receiver/control_service.h"

namespace hoist::receiver {

namespace {

constexpr char kAgents[] = "agents";
constexpr char kServices[] = "services";

// Equal messages give equal bytes (map fields sorted), so that an unchanged
// entry is never written again.
std::string Deterministic(const google::protobuf::MessageLite& message) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

AgentState FromAgentInfo(const hoist::v1::AgentInfo& info) {
  AgentState s;
  s.name = info.name();
  s.address = info.address();
  s.labels = {info.labels().begin(), info.labels().end()};
  s.connected = info.reachable();
  s.docker_reachable = info.reachable();
  s.version = info.version();
  s.docker_version = info.docker_version();
  s.last_error = info.last_error();
  return s;
}

// An agent as configured, with why nothing more is known of it.
AgentState Unknown(const AgentEntry& agent, const std::string& why) {
  AgentState s;
  s.name = agent.name;
  s.address = agent.address;
  s.labels = agent.labels;
  s.last_error = why;
  return s;
}

hoist::v1::Service Unpublished(const ServiceConfig& service) {
  hoist::v1::Service s;
  s.set_name(service.name);
  s.set_image(service.image);
  s.set_converge_mode(ConvergeModeName(service.converge));
  return s;
}

}  // namespace

// ---------------------------------------------------------------- publisher

FleetPublisher::FleetPublisher(FleetPublisherOptions options)
    : options_(options),
      clock_(options_.clock != nullptr ? options_.clock : RealClock()) {}

FleetPublisher::~FleetPublisher() { Stop(); }

void FleetPublisher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void FleetPublisher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void FleetPublisher::Changed() {
  absl::MutexLock lock(&mu_);
  changed_ = true;
}

std::map<FleetPublisher::Key, std::string> FleetPublisher::Current() const {
  std::map<Key, std::string> now;
  for (const AgentState& agent : options_.fleet->Agents()) {
    hoist::v1::AgentInfo info = ToAgentInfo(agent);
    info.clear_last_seen();
    now[{kAgents, agent.name}] = Deterministic(info);
  }
  for (const hoist::v1::Service& service : options_.services->ListServices()) {
    now[{kServices, service.name()}] = Deterministic(service);
  }
  return now;
}

absl::Status FleetPublisher::PublishNow() {
  absl::MutexLock lock(&publish_mu_);
  if (!swept_) {
    // What an earlier leader published, for agents and services since
    // removed, goes too.
    for (const char* kind : {kAgents, kServices}) {
      absl::StatusOr<std::vector<EtcdJournal::FleetEntry>> stored =
          options_.journal->ReadFleet(kind);
      if (!stored.ok()) return stored.status();
      for (EtcdJournal::FleetEntry& e : *stored) {
        published_[{kind, e.name}] = std::move(e.value);
      }
    }
  }
  const std::map<Key, std::string> now = Current();
  std::vector<EtcdJournal::FleetEntry> writes;
  for (const auto& [key, value] : now) {
    auto it = published_.find(key);
    if (it == published_.end() || it->second != value) {
      writes.push_back({key.first, key.second, value, false});
    }
  }
  for (const auto& [key, value] : published_) {
    if (now.count(key) == 0)
      writes.push_back({key.first, key.second, "", true});
  }
  if (!writes.empty()) {
    if (absl::Status s = options_.journal->WriteFleet(writes); !s.ok()) {
      published_.clear();  // unknown what applied: read it again next time
      swept_ = false;
      return s;
    }
  }
  published_ = now;
  swept_ = true;
  return absl::OkStatus();
}

void FleetPublisher::Loop() {
  absl::Time last_error_logged = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || changed_;
      };
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&woken), options_.refresh);
      if (stopping_) return;
      changed_ = false;
    }
    if (absl::Status s = PublishNow(); !s.ok()) {
      Changed();  // try again after the interval
      if (clock_->Now() - last_error_logged >= absl::Minutes(1)) {
        last_error_logged = clock_->Now();
        LogWarning("fleet view not published for followers",
                   {{"error", s.ToString()}});
      }
    }
    // At most one publication per interval while changes keep coming.
    absl::MutexLock lock(&mu_);
    auto stop = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&stop), options_.interval);
  }
}

// ---------------------------------------------------------------- follower

PublishedFleet::PublishedFleet(
    EtcdJournal* journal,
    std::function<std::shared_ptr<const ReceiverConfig>()> config)
    : journal_(journal), config_(std::move(config)) {}

std::vector<AgentState> PublishedFleet::Agents() const {
  const std::shared_ptr<const ReceiverConfig> config = config_();
  absl::StatusOr<std::vector<EtcdJournal::FleetEntry>> stored =
      journal_->ReadFleet(kAgents);
  std::map<std::string, hoist::v1::AgentInfo> published;
  if (stored.ok()) {
    for (const EtcdJournal::FleetEntry& e : *stored) {
      hoist::v1::AgentInfo info;
      if (info.ParseFromString(e.value)) published[e.name] = std::move(info);
    }
  }
  std::vector<AgentState> out;
  out.reserve(config->agents.size());
  for (const AgentEntry& agent : config->agents) {
    auto it = published.find(agent.name);
    if (it != published.end()) {
      out.push_back(FromAgentInfo(it->second));
    } else if (!stored.ok()) {
      out.push_back(Unknown(agent, absl::StrCat("fleet view unavailable: ",
                                                stored.status().message())));
    } else {
      out.push_back(Unknown(agent, "not published by the leader yet"));
    }
  }
  return out;
}

std::optional<AgentState> PublishedFleet::Agent(const std::string& name) const {
  const std::shared_ptr<const ReceiverConfig> config = config_();
  const AgentEntry* agent = config->FindAgent(name);
  if (agent == nullptr) return std::nullopt;
  absl::StatusOr<std::string> value = journal_->ReadFleetEntry(kAgents, name);
  hoist::v1::AgentInfo info;
  if (value.ok() && info.ParseFromString(*value)) return FromAgentInfo(info);
  if (value.ok() || absl::IsNotFound(value.status())) {
    return Unknown(*agent, "not published by the leader yet");
  }
  return Unknown(*agent, absl::StrCat("fleet view unavailable: ",
                                      value.status().message()));
}

std::vector<hoist::v1::Service> PublishedFleet::ListServices() {
  const std::shared_ptr<const ReceiverConfig> config = config_();
  absl::StatusOr<std::vector<EtcdJournal::FleetEntry>> stored =
      journal_->ReadFleet(kServices);
  std::map<std::string, const EtcdJournal::FleetEntry*> published;
  if (stored.ok()) {
    for (const EtcdJournal::FleetEntry& e : *stored) published[e.name] = &e;
  }
  std::vector<hoist::v1::Service> out;
  for (const ServiceConfig& service : config->services) {
    hoist::v1::Service s;
    auto it = published.find(service.name);
    if (it == published.end() || !s.ParseFromString(it->second->value)) {
      s = Unpublished(service);
    }
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<hoist::v1::Service> PublishedFleet::GetService(
    const std::string& name) {
  const std::shared_ptr<const ReceiverConfig> config = config_();
  const ServiceConfig* service = config->FindService(name);
  if (service == nullptr) {
    return absl::NotFoundError(absl::StrCat("no service named ", name));
  }
  absl::StatusOr<std::string> value = journal_->ReadFleetEntry(kServices, name);
  if (absl::IsNotFound(value.status())) return Unpublished(*service);
  if (!value.ok()) return value.status();
  hoist::v1::Service s;
  if (!s.ParseFromString(*value)) {
    return absl::InternalError(absl::StrCat("the published state of service ",
                                            name, " does not parse"));
  }
  return s;
}

absl::StatusOr<hoist::v1::Rollout> PublishedFleet::Converge(
    const std::string& service) {
  return absl::UnavailableError(absl::StrCat(
      "this receiver is not the leader; converging ", service,
      " is carried out by the leader only (docs/operator-guide.md, "
      "High availability)"));
}

}  // namespace hoist::receiver
