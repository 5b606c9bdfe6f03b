#include "bench/fleet/follow.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/fleet/fleet_config.h"
#include "common/crypto.h"
#include "common/proto_time.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"

namespace hoist::bench::fleet {
namespace {

// The rollout id in a webhook's 202 answer; nullopt if there is none.
std::optional<std::string> RolloutId(const std::string& body) {
  const std::string key = "\"rollout_id\":\"";
  size_t at = body.find(key);
  if (at == std::string::npos) return std::nullopt;
  at += key.size();
  return body.substr(at, body.find('"', at) - at);
}

// WatchRollout until the rollout is final; false if the stream ended first.
bool Watch(hoist::v1::Control::Stub* control, const std::string& id,
           absl::Time deadline, int64_t* events, hoist::v1::Rollout* last) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(deadline));
  hoist::v1::WatchRolloutRequest req;
  req.set_id(id);
  auto reader = control->WatchRollout(&c, req);
  hoist::v1::RolloutEvent event;
  bool done = false;
  while (reader->Read(&event)) {
    ++*events;
    *last = event.rollout();
    if (Final(last->state())) {
      done = true;
      c.TryCancel();
      break;
    }
  }
  reader->Finish().IgnoreError();
  return done;
}

// GetRollout every 100 ms until the rollout is final or `deadline`.
std::optional<hoist::v1::Rollout> Poll(hoist::v1::Control::Stub* control,
                                       const std::string& id,
                                       absl::Time deadline, int64_t* events) {
  hoist::v1::Rollout last;
  while (absl::Now() < deadline) {
    grpc::ClientContext c;
    c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    hoist::v1::GetRolloutRequest req;
    req.set_id(id);
    ++*events;
    if (control->GetRollout(&c, req, &last).ok() && Final(last.state())) {
      return last;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return std::nullopt;
}

// Slowest and median of `durations` (sorted here) into *slowest, *median;
// both left alone when there are none.
void SlowestAndMedian(std::vector<double> durations, double* slowest,
                      double* median) {
  std::sort(durations.begin(), durations.end());
  if (durations.empty()) return;
  *slowest = durations.back();
  *median = durations[durations.size() / 2];
}

void PrintFirstFailure(const hoist::v1::Rollout& rollout) {
  for (const auto& h : rollout.hosts()) {
    if (h.phase() != hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
      std::cerr << "fleet_bench: e.g. " << h.agent() << ": " << h.error()
                << "\n";
      return;
    }
  }
}

// Earliest and latest of a set of times.
struct Span {
  absl::Time first = absl::InfiniteFuture();
  absl::Time last = absl::InfinitePast();
  void Add(absl::Time t) {
    first = std::min(first, t);
    last = std::max(last, t);
  }
};

}  // namespace

bool Final(hoist::v1::RolloutState s) {
  return s == hoist::v1::ROLLOUT_STATE_SUCCEEDED ||
         s == hoist::v1::ROLLOUT_STATE_FAILED ||
         s == hoist::v1::ROLLOUT_STATE_ROLLED_BACK ||
         s == hoist::v1::ROLLOUT_STATE_PAUSED ||
         s == hoist::v1::ROLLOUT_STATE_SUPERSEDED;
}

Webhook MakeWebhook(const std::string& service, const std::string& tag) {
  const std::string digest =
      Sha256Hex(absl::StrCat("fleet-bench ", service, " ", tag));
  Webhook webhook;
  webhook.service = service;
  webhook.body = absl::StrCat(
      R"({"domain":"docker","event_type":"promoted","data":{"image_name":")",
      service, R"(","name":"manifest.json","path":")", service, "/", tag,
      R"(/manifest.json","repo_key":"staging","sha256":")", digest,
      R"(","size":949,"tag":")", tag, R"("}})");
  webhook.signature = HmacSha256Hex(kSecret, webhook.body);
  return webhook;
}

std::optional<std::string> PostWebhook(int port, const Webhook& webhook,
                                       absl::Time* posted) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  const httplib::Headers auth = {{"X-JFrog-Event-Auth", webhook.signature}};
  *posted = absl::Now();
  auto res = client.Post("/webhooks/artifactory", auth, webhook.body,
                         "application/json");
  if (!res) {
    // No HTTP answer at all (seen once in CI, not reproduced): say why, and
    // deliver again as Artifactory would; the receiver dedupes a repeat.
    std::cerr << "fleet_bench: webhook for " << webhook.service
              << " got no answer (httplib error "
              << static_cast<int>(res.error()) << "); retrying once\n";
    res = client.Post("/webhooks/artifactory", auth, webhook.body,
                      "application/json");
  }
  if (!res || res->status != 202) {
    std::cerr << "fleet_bench: webhook for " << webhook.service << " answered "
              << (res ? absl::StrCat(res->status, " ", res->body)
                      : std::string("nothing"))
              << "\n";
    return std::nullopt;
  }
  return RolloutId(res->body);
}

std::optional<hoist::v1::Rollout> FollowRollout(
    hoist::v1::Control::Stub* control, const std::string& id, bool watch,
    absl::Duration timeout, int64_t* events) {
  const absl::Time deadline = absl::Now() + timeout;
  if (watch) {
    hoist::v1::Rollout last;
    if (Watch(control, id, deadline, events, &last)) return last;
    // Fall through to polling if the stream ended early.
  }
  return Poll(control, id, deadline, events);
}

std::vector<std::string> DeployIds(const hoist::v1::Rollout& rollout) {
  std::vector<std::string> ids;
  ids.reserve(rollout.hosts_size());
  for (const auto& h : rollout.hosts()) ids.push_back(h.deploy_id());
  return ids;
}

void FillReceiverTimes(const hoist::v1::Rollout& rollout, absl::Time posted,
                       absl::Time seen, Row* row) {
  row->hosts = rollout.hosts_size();
  row->state = hoist::v1::RolloutState_Name(rollout.state()).substr(14);
  row->wall_s = Seconds(seen - posted);
  std::vector<double> durations;
  absl::Time last = absl::InfinitePast();
  for (const auto& h : rollout.hosts()) {
    if (h.phase() != hoist::v1::DEPLOY_PHASE_SUCCEEDED) ++row->failed_hosts;
    if (h.has_finished()) last = std::max(last, FromProto(h.finished()));
    if (h.has_started() && h.has_finished()) {
      durations.push_back(
          Seconds(FromProto(h.finished()) - FromProto(h.started())));
    }
  }
  if (row->failed_hosts > 0) PrintFirstFailure(rollout);
  SlowestAndMedian(std::move(durations), &row->slowest_host_s,
                   &row->median_host_s);
  row->last_host_s = last == absl::InfinitePast() ? 0 : Seconds(last - posted);
}

void FillAgentTimes(const hoist::v1::Rollout& rollout,
                    const std::map<std::string, HostTiming>& timings,
                    absl::Time posted, Row* row) {
  std::vector<double> agent_durations;
  Span starts;    // the receiver started the host's call (HostResult.started)
  Span requests;  // the Deploy request reached the agent
  absl::Time last_event = absl::InfinitePast();
  for (const auto& h : rollout.hosts()) {
    if (h.has_started()) starts.Add(FromProto(h.started()));
    auto t = timings.find(h.deploy_id());
    if (t == timings.end()) continue;
    requests.Add(t->second.arrived);
    last_event = std::max(last_event, t->second.last_event);
    agent_durations.push_back(
        Seconds(t->second.last_event - t->second.arrived));
  }
  if (static_cast<int>(agent_durations.size()) != rollout.hosts_size()) {
    std::cerr << "fleet_bench: agent-side timing found for "
              << agent_durations.size() << " of " << rollout.hosts_size()
              << " hosts\n";
  }
  if (agent_durations.empty()) return;
  SlowestAndMedian(std::move(agent_durations), &row->agent_slowest_s,
                   &row->agent_median_s);
  row->first_start_s = Seconds(starts.first - posted);
  row->last_start_s = Seconds(starts.last - posted);
  row->first_request_s = Seconds(requests.first - posted);
  row->last_request_s = Seconds(requests.last - posted);
  if (rollout.has_finished()) {
    row->tail_s = Seconds(FromProto(rollout.finished()) - last_event);
  }
}

}  // namespace hoist::bench::fleet
