// High availability (docs/design.md, "High availability on etcd"), end to
// end: a real 3-member etcd cluster, two or three real hoist-receivers
// sharing it and two real agents in the harness's network-namespace hosts.
//   - one receiver leads; a webhook sent to the follower is run by the
//     leader, and the same delivery sent to the leader is a duplicate;
//   - the leader is SIGKILLed in the middle of a rollout: the follower leads
//     within lease_seconds + 2 s, resumes the rollout with the same deploy
//     ids, and every host ends on the new image;
//   - the leader is SIGSTOPped past its lease: the other leads; resumed, it
//     exits (3); started again it follows and takes webhooks;
//   - Control Deploy on a follower is run by the leader; Cancel and
//     Converge there are carried out by the leader, whose answer returns;
//   - one etcd member killed changes nothing; two killed: webhooks get 503
//     and nothing is promised; members back: the same delivery is accepted
//     and run;
//   - a burst of 50 promotions spread over 3 receivers coalesces as on one
//     receiver: at most 2 rollouts run, and every host ends on the last;
//   - the leader, inside a network namespace of its own, loses its route to
//     etcd: it stops leading (exits 3), another leads within
//     lease_seconds + 2 s and runs webhooks; started again in the
//     partitioned namespace, it answers webhooks 503 and promises nothing;
//     route back, it takes webhooks again.
// Each case ends with ExpectPromisesKept: every promise (202, Control
// Deploy) is a rollout in etcd that ends, and no host ran a deploy twice.
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstddef>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/daemon.h"
#include "gtest/gtest.h"
#include "nodeagent/deploy_history.h"
#include "receiver/rollout_manager.h"
#include "tests/e2e/e2e_util.h"
#include "tests/harness/etcd_cluster.h"

namespace hoist::e2e {
namespace {

using ::hoist::testing::EtcdCluster;
using ::hoist::testing::ScopedExtraNetns;
using ::hoist::testing::WaitFor;
using ::hoist::v1::Rollout;

constexpr int64_t kLeaseSeconds = 3;

bool Leads(Process* receiver) {
  return receiver != nullptr &&
         absl::StrContains(receiver->Log(), "elected leader");
}

// Whether `receiver` logged a line with both `message` and `rollout_id`.
bool Logged(Process* receiver, const std::string& message,
            const std::string& rollout_id) {
  for (absl::string_view line : absl::StrSplit(receiver->Log(), '\n')) {
    if (absl::StrContains(line, message) &&
        absl::StrContains(line, rollout_id)) {
      return true;
    }
  }
  return false;
}

// The receiver that leads, waiting for one (-1 when none does). A receiver
// that was reaped (Process::Wait) is skipped: its log still says it led.
int AwaitLeader(Fleet& fleet, absl::Duration timeout) {
  int leader = -1;
  WaitFor(
      [&] {
        for (int n = 0; n < fleet.receivers(); ++n) {
          if (fleet.receiver(n)->running() && Leads(fleet.receiver(n))) {
            leader = n;
            return true;
          }
        }
        return false;
      },
      timeout);
  return leader;
}

// Waits until host `agent` of rollout `id` reports a phase (its deploy
// started on the leader).
bool AwaitHostStarted(Fleet& fleet, const std::string& id,
                      const std::string& agent) {
  return WaitFor(
      [&] {
        absl::StatusOr<Rollout> r = fleet.Get(id);
        if (!r.ok()) return false;
        for (const auto& h : r->hosts()) {
          if (h.agent() == agent &&
              h.phase() != hoist::v1::DEPLOY_PHASE_UNSPECIFIED) {
            return true;
          }
        }
        return false;
      },
      absl::Seconds(60));
}

// Every rollout etcd holds, by id, read through the fleet's target
// (ListRollouts reads the journal; the leader shows its fresher copy of
// the ones it runs).
absl::StatusOr<std::map<std::string, Rollout>> RolloutsInEtcd(Fleet& fleet) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  hoist::v1::ListRolloutsRequest request;
  request.set_limit(1000);  // the most ListRollouts answers; tests make fewer
  hoist::v1::ListRolloutsResponse response;
  const grpc::Status s =
      fleet.Control()->ListRollouts(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  std::map<std::string, Rollout> by_id;
  for (const Rollout& r : response.rollouts()) by_id[r.id()] = r;
  return by_id;
}

// Waits until every rollout in `promised` is in etcd in a final state
// (SUPERSEDED is one, PAUSED is not).
bool AwaitPromisesFinal(Fleet& fleet, const std::set<std::string>& promised) {
  return WaitFor(
      [&] {
        absl::StatusOr<std::map<std::string, Rollout>> rollouts =
            RolloutsInEtcd(fleet);
        if (!rollouts.ok()) return false;
        return std::all_of(
            promised.begin(), promised.end(), [&](const std::string& id) {
              auto it = rollouts->find(id);
              return it != rollouts->end() &&
                     receiver::IsFinalRolloutState(it->second.state());
            });
      },
      absl::Seconds(180));
}

// The deploy ids harness host `host`'s agent ran, from its deploy records
// (one per deploy that ended there, refused ones included; a Deploy call
// that attaches to a known deploy id adds none, though the agent logs
// "deploy requested" for it again).
std::vector<std::string> DeployRecords(Fleet& fleet, size_t host) {
  absl::StatusOr<std::unique_ptr<nodeagent::DeployHistory>> history =
      nodeagent::DeployHistory::Open(
          fleet.agent_state_dir(host) + "/deploys",
          /*capacity=*/size_t{1} << 20);  // never prunes the agent's records
  EXPECT_TRUE(history.ok()) << history.status();
  std::vector<std::string> ids;
  if (!history.ok()) return ids;
  for (const auto& record : (*history)->TakeLoaded()) {
    ids.push_back(record.deploy_id);
  }
  return ids;
}

// Host `agent` ran each of `deployed` once, and each is the deploy
// ("<rollout id>-<agent>") or its "-rollback" of a rollout in `rollouts`
// that targets this host and was not SUPERSEDED.
void ExpectEachDeployRanOnce(const std::string& agent,
                             const std::vector<std::string>& deployed,
                             const std::map<std::string, Rollout>& rollouts) {
  std::map<std::string, int> runs;
  for (const std::string& deploy_id : deployed) {
    EXPECT_EQ(++runs[deploy_id], 1)
        << agent << " ran deploy " << deploy_id << " again";
    absl::string_view rollout_id = deploy_id;
    absl::ConsumeSuffix(&rollout_id, "-rollback");
    const std::string own_deploy_id(rollout_id);
    if (!absl::ConsumeSuffix(&rollout_id, absl::StrCat("-", agent))) {
      ADD_FAILURE() << agent << " ran " << deploy_id << ", not one of its own";
      continue;
    }
    auto it = rollouts.find(std::string(rollout_id));
    if (it == rollouts.end()) {
      ADD_FAILURE() << agent << " ran " << deploy_id
                    << " of no rollout in etcd";
      continue;
    }
    EXPECT_NE(it->second.state(), hoist::v1::ROLLOUT_STATE_SUPERSEDED)
        << agent << " ran " << deploy_id << " of a superseded rollout";
    EXPECT_TRUE(std::any_of(
        it->second.hosts().begin(), it->second.hosts().end(),
        [&](const auto& h) { return h.deploy_id() == own_deploy_id; }))
        << it->second.DebugString();
  }
}

// Each of `promised` is a rollout in `rollouts` (etcd's) in a final state,
// and each webhook or manual rollout there is one of `promised`.
void ExpectOneFinalRolloutPerPromise(
    const std::set<std::string>& promised,
    const std::map<std::string, Rollout>& rollouts) {
  for (const std::string& id : promised) {
    auto it = rollouts.find(id);
    if (it == rollouts.end()) {
      ADD_FAILURE() << "promised " << id << ", not in etcd";
      continue;
    }
    EXPECT_TRUE(receiver::IsFinalRolloutState(it->second.state()))
        << it->second.DebugString();
  }
  for (const auto& [id, r] : rollouts) {
    if (r.trigger() == "webhook" || r.trigger() == "manual") {
      EXPECT_EQ(promised.count(id), 1u)
          << "a " << r.trigger()
          << " rollout nobody was promised: " << r.DebugString();
    }
  }
}

// The promises of "High availability on etcd", over everything a test did,
// checked at its end through receiver `ask`, which must be running (it
// becomes the fleet's target). `promised` holds the rollout id of every 202
// and of every Control Deploy answered (a duplicate repeats its first's id).
//   - No promise without etcd: each is a rollout in etcd afterwards, and it
//     ends in a final state (SUPERSEDED is one).
//   - Exactly one rollout per promise: etcd holds no webhook or manual
//     rollout that no answer named (a delivery run twice would leave one).
//   - From the agents' deploy records: no host ran a deploy twice, and each
//     deploy belongs to a rollout in etcd that was not SUPERSEDED
//     (ExpectEachDeployRanOnce).
void ExpectPromisesKept(Fleet& fleet, int ask,
                        const std::vector<std::string>& promised) {
  // Any receiver reads etcd: when `ask` has exited (a leader that lost its
  // lease under load exits 3), another one is asked.
  for (int n = 0; n < fleet.receivers() && !fleet.receiver(ask)->running();
       ++n) {
    if (fleet.receiver(n)->running()) {
      std::cout << "ha: receiver " << ask << " has exited; checking through "
                << n << "\n";
      ask = n;
    }
  }
  fleet.Target(ask);
  const std::set<std::string> ids(promised.begin(), promised.end());
  EXPECT_TRUE(AwaitPromisesFinal(fleet, ids));
  // Records before rollouts: a rollout is in etcd before any of its deploys
  // runs, so each record names one of the rollouts read after it.
  std::vector<std::vector<std::string>> deployed;
  for (size_t h = 0; h < Harness().hosts.size(); ++h) {
    deployed.push_back(DeployRecords(fleet, h));
  }
  absl::StatusOr<std::map<std::string, Rollout>> rollouts =
      RolloutsInEtcd(fleet);
  ASSERT_TRUE(rollouts.ok()) << rollouts.status();
  ExpectOneFinalRolloutPerPromise(ids, *rollouts);
  size_t records = 0;
  for (size_t h = 0; h < deployed.size(); ++h) {
    ExpectEachDeployRanOnce(Harness().hosts[h].name, deployed[h], *rollouts);
    records += deployed[h].size();
  }
  std::cout << "ha: checked " << ids.size() << " promises, " << rollouts->size()
            << " rollouts in etcd, " << records << " deploy records on "
            << deployed.size() << " hosts\n";
}

// WatchRollout of one rollout on one receiver, read on a thread of its own
// until the stream ends (or 120 s).
class RolloutWatch {
 public:
  RolloutWatch(std::unique_ptr<hoist::v1::Control::Stub> stub,
               const std::string& id)
      : stub_(std::move(stub)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    request_.set_id(id);
    thread_ = std::thread([this] {
      auto reader = stub_->WatchRollout(&context_, request_);
      hoist::v1::RolloutEvent e;
      while (reader->Read(&e)) events_.push_back(e);
      status_ = reader->Finish();
    });
  }
  ~RolloutWatch() {
    if (thread_.joinable()) {
      context_.TryCancel();
      thread_.join();
    }
  }
  // Waits for the stream's end; its events.
  const std::vector<hoist::v1::RolloutEvent>& Finish() {
    thread_.join();
    EXPECT_TRUE(status_.ok()) << status_.error_message();
    return events_;
  }

 private:
  std::unique_ptr<hoist::v1::Control::Stub> stub_;
  grpc::ClientContext context_;
  hoist::v1::WatchRolloutRequest request_;
  std::vector<hoist::v1::RolloutEvent> events_;
  grpc::Status status_;
  std::thread thread_;
};

// The hosts of service web that the target receiver's GetService shows
// IN_SYNC.
int HostsInSync(Fleet& fleet) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  hoist::v1::GetServiceRequest req;
  req.set_name("web");
  hoist::v1::Service service;
  if (!fleet.Control()->GetService(&c, req, &service).ok()) return -1;
  return static_cast<int>(std::count_if(
      service.hosts().begin(), service.hosts().end(), [](const auto& h) {
        return h.convergence() == hoist::v1::CONVERGENCE_IN_SYNC;
      }));
}

// Service "web" as the targeted receiver shows it, for failure messages.
std::string ServiceText(Fleet& fleet) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  hoist::v1::GetServiceRequest req;
  req.set_name("web");
  hoist::v1::Service service;
  const grpc::Status s = fleet.Control()->GetService(&c, req, &service);
  return s.ok() ? service.ShortDebugString() : s.error_message();
}

// A 3-member etcd cluster and receivers sharing it, one of which leads.
class HaProcessTest : public ::testing::Test {
 protected:
  // Starts the cluster, then `receivers` receivers on it with `options`
  // (etcd endpoints and lease set here), and waits for one to lead
  // (leader_); the others are followers_.
  //
  // `partitionable`: receiver 0 runs inside a network namespace of its own
  // (netns_, at 10.231.N.20 on the harness bridge, which reaches the
  // agents) and every receiver talks to etcd at the namespace's far address
  // (TestNetns), so that SetFarRoute(netns, false) cuts receiver 0 alone
  // off from etcd; it is started alone and leads before the others start;
  // every receiver serves /metrics.
  ::testing::AssertionResult StartFleet(FleetOptions options, int receivers = 2,
                                        bool partitionable = false) {
    std::string far_address;
    if (partitionable) {
      absl::StatusOr<std::unique_ptr<ScopedExtraNetns>> netns =
          ScopedExtraNetns::Start("ha0", 20);
      if (!netns.ok()) return ::testing::AssertionFailure() << netns.status();
      netns_ = *std::move(netns);
      far_address = netns_->get().far_address;
      options.first_place = {netns_->get().netns, netns_->get().address};
      options.metrics = true;
    }
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster =
        EtcdCluster::Start(3, far_address);
    if (!cluster.ok()) {
      return ::testing::AssertionFailure() << cluster.status();
    }
    cluster_ = *std::move(cluster);
    options.etcd_endpoints = partitionable ? cluster_->extra_client_endpoints()
                                           : cluster_->client_endpoints();
    options.etcd_lease_seconds = kLeaseSeconds;
    fleet_ = std::make_unique<Fleet>(std::move(options));
    if (HasFatalFailure()) {
      return ::testing::AssertionFailure() << "the first receiver is not up";
    }
    if (partitionable && AwaitLeader(*fleet_, absl::Seconds(20)) != 0) {
      return ::testing::AssertionFailure()
             << "receiver 0 does not lead after 20 s";
    }
    for (int n = 1; n < receivers; ++n) {
      if (fleet_->StartReplica() != n || HasFailure()) {
        return ::testing::AssertionFailure() << "receiver " << n << " not up";
      }
    }
    leader_ = AwaitLeader(*fleet_, absl::Seconds(20));
    if (leader_ < 0) {
      return ::testing::AssertionFailure() << "no receiver leads after 20 s";
    }
    for (int n = 0; n < receivers; ++n) {
      if (n == leader_) continue;
      if (Leads(fleet_->receiver(n))) {
        return ::testing::AssertionFailure()
               << "receivers " << leader_ << " and " << n << " both lead";
      }
      followers_.push_back(n);
    }
    return ::testing::AssertionSuccess();
  }

  Fleet& fleet() { return *fleet_; }
  EtcdCluster& cluster() { return *cluster_; }

  // Declared first: outlives cluster_ (bound to its far address) and
  // fleet_ (whose receiver 0 runs inside it).
  std::unique_ptr<ScopedExtraNetns> netns_;
  std::unique_ptr<EtcdCluster> cluster_;  // outlives fleet_
  std::unique_ptr<Fleet> fleet_;
  int leader_ = -1;
  std::vector<int> followers_;
};

TEST_F(HaProcessTest, FollowerTakesWebhooksAndTakesOverFromAKilledLeader) {
  FleetOptions options;
  options.batch = "1";  // one host at a time: the kill lands mid-rollout
  ASSERT_TRUE(StartFleet(options));
  const int leader = leader_;
  const int follower = followers_.front();
  EXPECT_FALSE(Leads(fleet().receiver(follower)));
  fleet().Target(leader);
  ASSERT_TRUE(fleet().AwaitAgents());

  // v1 through the follower's webhook: journaled there, run by the leader.
  fleet().Target(follower);
  const std::string v1 = Fleet::PromotedEvent("v1", "v1");
  auto answer = fleet().Post(v1);
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id1 = Fleet::RolloutId(answer.second);
  EXPECT_EQ(fleet().AwaitFinal(id1).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v1");
  // Accepted by the follower, run by the leader alone.
  EXPECT_TRUE(Logged(fleet().receiver(follower), "rollout accepted", id1));
  EXPECT_TRUE(Logged(fleet().receiver(leader), "rollout running", id1));
  EXPECT_FALSE(Logged(fleet().receiver(follower), "rollout running", id1));
  // The same delivery at the leader: a duplicate of that rollout.
  fleet().Target(leader);
  answer = fleet().Post(v1);
  ASSERT_EQ(answer.first, 202) << answer.second;
  EXPECT_TRUE(absl::StrContains(answer.second, "\"duplicate\":true"))
      << answer.second;
  EXPECT_EQ(Fleet::RolloutId(answer.second), id1);

  // The follower shows the fleet as the leader published it.
  fleet().Target(follower);
  EXPECT_TRUE(fleet().AwaitAgents(absl::Seconds(10)))
      << "the follower does not show both agents reachable";
  // The leader republishes within a second of its engine's verdict
  // (ConvergenceOptions::shown_changed), not at its next 10 s look.
  EXPECT_TRUE(
      WaitFor([&] { return HostsInSync(fleet()) == 2; }, absl::Seconds(10)))
      << "the follower does not show both hosts IN_SYNC: "
      << ServiceText(fleet());

  // v2, watched on the follower, and the leader SIGKILLed once its first
  // host is deploying.
  answer = fleet().Post(Fleet::PromotedEvent("v2", "v2"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id2 = Fleet::RolloutId(answer.second);
  RolloutWatch watch(fleet().ControlOf(follower), id2);
  ASSERT_TRUE(AwaitHostStarted(fleet(), id2, Harness().hosts[0].name));
  const absl::Time killed = absl::Now();
  fleet().receiver(leader)->Signal(SIGKILL);
  ASSERT_TRUE(fleet().receiver(leader)->Wait(absl::Seconds(10)).has_value());
  ASSERT_TRUE(WaitFor([&] { return Leads(fleet().receiver(follower)); },
                      absl::Seconds(kLeaseSeconds + 10)));
  const absl::Duration takeover = absl::Now() - killed;
  std::cout << "ha: leader killed -> follower leads after "
            << absl::FormatDuration(takeover) << " (lease " << kLeaseSeconds
            << " s)\n";
  EXPECT_LE(takeover, absl::Seconds(kLeaseSeconds + 2));

  const Rollout done = fleet().AwaitFinal(id2);
  EXPECT_EQ(done.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED)
      << done.DebugString();
  for (const auto& h : done.hosts()) {
    EXPECT_EQ(h.deploy_id(), absl::StrCat(id2, "-", h.agent()));
  }
  // Started by the killed leader, finished by the new one.
  EXPECT_TRUE(Logged(fleet().receiver(leader), "rollout running", id2));
  EXPECT_TRUE(Logged(fleet().receiver(follower), "rollout running", id2));
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v2");
  // The watch opened on the follower saw both hosts progress, across the
  // failover, and ended with the rollout.
  const std::vector<hoist::v1::RolloutEvent>& events = watch.Finish();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().rollout().state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  std::set<std::string> hosts_seen;
  for (const auto& e : events) {
    if (e.host().phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
      hosts_seen.insert(e.host().agent());
    }
  }
  EXPECT_EQ(hosts_seen.size(), 2u) << events.size() << " events";
  ExpectPromisesKept(fleet(), follower, {id1, id2});
}

TEST_F(HaProcessTest, APausedLeaderStepsDownAndComesBackAsAFollower) {
  FleetOptions options;
  options.batch = "100%";
  ASSERT_TRUE(StartFleet(options));
  const int follower = followers_.front();
  Process* paused = fleet().receiver(leader_);

  // Paused past its lease: the other receiver leads.
  paused->Signal(SIGSTOP);
  const absl::Time stopped = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return Leads(fleet().receiver(follower)); },
                      absl::Seconds(kLeaseSeconds + 10)));
  std::cout << "ha: leader paused -> the other leads after "
            << absl::FormatDuration(absl::Now() - stopped) << "\n";
  // Resumed, it finds its leadership lapsed and exits at once (3), for its
  // supervisor to start it again as a follower.
  paused->Signal(SIGCONT);
  const std::optional<int> status = paused->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << paused->Log();
  ASSERT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), kDaemonExitLeadershipLost);
  EXPECT_TRUE(absl::StrContains(paused->Log(), "leadership lost: exiting"));

  // Started again (as systemd's Restart= would), it follows, takes
  // webhooks, and the new leader runs them.
  const int restarted = fleet().StartReplica();
  fleet().Target(follower);
  ASSERT_TRUE(fleet().AwaitAgents());
  fleet().Target(restarted);
  auto answer = fleet().Post(Fleet::PromotedEvent("v1", "v1"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id = Fleet::RolloutId(answer.second);
  fleet().Target(follower);
  EXPECT_EQ(fleet().AwaitFinal(id).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(Logged(fleet().receiver(follower), "rollout running", id));
  EXPECT_FALSE(Leads(fleet().receiver(restarted)));
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v1");
  ExpectPromisesKept(fleet(), follower, {id});
}

TEST_F(HaProcessTest, ControlOnAFollowerIsCarriedOutByTheLeader) {
  FleetOptions options;
  options.batch = "100%";
  ASSERT_TRUE(StartFleet(options));
  const int follower = followers_.front();
  fleet().Target(follower);

  grpc::ClientContext deploy_context;
  deploy_context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  hoist::v1::ManualDeployRequest deploy;
  deploy.set_service("web");
  deploy.set_digest(Harness().Digest("v2"));
  Rollout started;
  const grpc::Status s =
      fleet().Control()->Deploy(&deploy_context, deploy, &started);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(fleet().AwaitFinal(started.id()).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(
      Logged(fleet().receiver(leader_), "rollout running", started.id()));
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v2");

  // A Control write on a follower is recorded in etcd and carried out by the
  // leader, whose answer comes back with its code: the rollout has ended,
  // so the leader refuses to cancel it, and every host runs the desired
  // digest, so there is nothing to converge. (A follower may wait up to
  // 10 s for the leader: docs/design.md, "High availability on etcd".)
  grpc::ClientContext cancel_context;
  cancel_context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  hoist::v1::CancelRequest cancel;
  cancel.set_id(started.id());
  Rollout ignored;
  const grpc::Status refused =
      fleet().Control()->Cancel(&cancel_context, cancel, &ignored);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(),
                                "only PENDING, RUNNING or PAUSED rollouts"))
      << refused.error_message();
  EXPECT_TRUE(Logged(fleet().receiver(leader_), "control command carried out",
                     started.id()));

  grpc::ClientContext converge_context;
  converge_context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  hoist::v1::ConvergeRequest converge;
  converge.set_service("web");
  const grpc::Status nothing =
      fleet().Control()->Converge(&converge_context, converge, &ignored);
  EXPECT_EQ(nothing.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << nothing.error_message();
  EXPECT_TRUE(absl::StrContains(nothing.error_message(), "nothing to converge"))
      << nothing.error_message();
  EXPECT_TRUE(Logged(fleet().receiver(leader_), "control command carried out",
                     "kind=converge"));
  ExpectPromisesKept(fleet(), follower, {started.id()});
}

TEST_F(HaProcessTest, OneMemberDownChangesNothingAndNoQuorumPromisesNothing) {
  FleetOptions options;
  options.batch = "100%";
  ASSERT_TRUE(StartFleet(options));
  const int follower = followers_.front();
  fleet().Target(follower);  // webhooks and reads through the follower

  // One member down: webhooks and rollouts carry on.
  cluster().Kill(cluster().Leader());
  auto answer = fleet().Post(Fleet::PromotedEvent("v1", "v1"));
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id1 = Fleet::RolloutId(answer.second);
  EXPECT_EQ(fleet().AwaitFinal(id1).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v1");

  // Two down: no quorum, so 503 and no promise.
  std::vector<int> down;
  for (int i = 0; i < cluster().size(); ++i) {
    if (cluster().Healthy(i)) {
      down.push_back(i);
      cluster().Kill(i);
      break;
    }
  }
  for (int i = 0; i < cluster().size(); ++i) {
    if (std::find(down.begin(), down.end(), i) == down.end()) down.push_back(i);
  }
  // Without quorum a leader exits (3) once its lease may have lapsed, and
  // leadership may have moved to the receiver posted to above (killing
  // etcd's leader member can cost the lease on a loaded machine): post to
  // one that follows, started again as systemd would when none is left.
  const int leading = AwaitLeader(fleet(), absl::Seconds(20));
  int target = -1;
  for (int n = 0; n < fleet().receivers(); ++n) {
    if (n != leading && fleet().receiver(n)->running()) target = n;
  }
  if (target < 0) target = fleet().StartReplica();
  fleet().Target(target);
  const std::string v2 = Fleet::PromotedEvent("v2", "v2");
  answer = fleet().Post(v2);
  EXPECT_EQ(answer.first, 503) << answer.second;
  EXPECT_EQ(answer.second, R"({"error":"journal unavailable"})");

  // Every member back: the same delivery is new (it was never promised),
  // a leader is elected again and runs it.
  for (int i : down) {
    if (!cluster().Healthy(i)) {
      ASSERT_TRUE(cluster().Restart(i).ok());
    }
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        answer = fleet().Post(v2);
        return answer.first == 202;
      },
      absl::Seconds(60)))
      << answer.first << " " << answer.second;
  EXPECT_TRUE(absl::StrContains(answer.second, "\"duplicate\":false"))
      << answer.second;
  const std::string id2 = Fleet::RolloutId(answer.second);
  EXPECT_EQ(fleet().AwaitFinal(id2).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v2");
  ExpectPromisesKept(fleet(), target, {id1, id2});
}

// Waits until one of rollouts `ids` is RUNNING.
bool AwaitOneRunning(Fleet& fleet, const std::vector<std::string>& ids) {
  return WaitFor(
      [&] {
        absl::StatusOr<std::map<std::string, Rollout>> rollouts =
            RolloutsInEtcd(fleet);
        return rollouts.ok() &&
               std::any_of(ids.begin(), ids.end(), [&](const std::string& id) {
                 auto it = rollouts->find(id);
                 return it != rollouts->end() &&
                        it->second.state() == hoist::v1::ROLLOUT_STATE_RUNNING;
               });
      },
      absl::Seconds(30));
}

// Waits for each of rollouts `ids` to end; returns how many ran (were not
// SUPERSEDED), and expects every SUPERSEDED one superseded by the last.
int CountRanExpectingTheRestSupersededByLast(
    Fleet& fleet, const std::vector<std::string>& ids) {
  int ran = 0;
  for (const std::string& id : ids) {
    const Rollout r = fleet.AwaitFinal(id);
    if (r.state() == hoist::v1::ROLLOUT_STATE_SUPERSEDED) {
      EXPECT_EQ(r.superseded_by(), ids.back()) << r.id();
    } else {
      ++ran;
    }
  }
  return ran;
}

// receiver_e2e_test's BurstOfFiftyPromotionsRunsAtMostTwoRollouts with the
// webhooks spread round-robin over a leader and two followers: rollouts the
// followers journal PENDING are adopted by the leader and coalesce with its
// own. The whole burst arrives while the first rollout holds the service
// (h2's agent starts only after the last post, so it keeps retrying h2).
TEST_F(HaProcessTest, BurstOfFiftyPromotionsOverThreeReceiversCoalesces) {
  FleetOptions options;
  options.batch = "100%";
  options.start_agents = {true, false};
  options.retry_seconds = 300;
  options.connect_timeout_seconds = 2;
  ASSERT_TRUE(StartFleet(options, 3));
  fleet().Target(leader_);  // only the leader has agent streams
  ASSERT_TRUE(fleet().AwaitAgents(absl::Seconds(60), 1));
  // Round-robin, so that the last webhook (49) reaches the leader right
  // after one (48) reached a follower: the leader takes its own rollout up
  // at once and the follower's when etcd's watch reports it, and the last
  // must still be the newest.
  const std::vector<int> order = {followers_[0], leader_, followers_[1]};
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    // Distinct deliveries (tags), alternating images; the last one is v2.
    fleet().Target(order[i % order.size()]);
    auto answer = fleet().Post(
        Fleet::PromotedEvent(absl::StrCat("t", i), i % 2 ? "v2" : "v1"));
    ASSERT_EQ(answer.first, 202) << "post " << i << ": " << answer.second;
    ids.push_back(Fleet::RolloutId(answer.second));
  }
  // One of them holds the service, RUNNING (and retrying h2): the first,
  // unless the leader took a later one of its own up before etcd's watch
  // reported the first.
  fleet().Target(leader_);
  ASSERT_TRUE(AwaitOneRunning(fleet(), ids));
  fleet().StartAgent(1);
  const Rollout last = fleet().AwaitFinal(ids.back());
  ASSERT_EQ(last.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED)
      << last.DebugString();
  const int ran = CountRanExpectingTheRestSupersededByLast(fleet(), ids);
  std::cout << "ha: 50 promotions over " << fleet().receivers()
            << " receivers (leader " << leader_ << ") ran " << ran
            << " rollouts\n";
  EXPECT_LE(ran, 2);  // the one that held the service and the newest
  EXPECT_EQ(Fleet::Serves(0), "hoist-test v2");
  EXPECT_EQ(Fleet::Serves(1), "hoist-test v2");
  ExpectPromisesKept(fleet(), leader_, ids);
}

// The value of series hoist_leader on receiver `n`'s /metrics: 1 while it
// leads, 0 while it follows; -1 when /metrics does not answer or lacks it.
int LeaderGauge(Fleet& fleet, int n) {
  absl::StatusOr<std::string> metrics = fleet.Metrics(n);
  if (!metrics.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*metrics, '\n')) {
    if (absl::ConsumePrefix(&line, "hoist_leader ")) {
      return line == "1" ? 1 : line == "0" ? 0 : -1;
    }
  }
  return -1;
}

// The issue's "A receiver is partitioned from etcd (its netns loses the
// route): it stops leading and answers 503, and the others carry on."
// Receiver 0 runs inside a network namespace of its own and leads; the
// others run in the root namespace. Every receiver reaches etcd at an
// address of the root namespace outside the namespace's subnet, so deleting
// the namespace's one route there partitions receiver 0 from etcd alone,
// while the test still reaches its webhook, Control and /metrics.
TEST_F(HaProcessTest, PartitionedLeaderStopsLeadingAndAnswers503) {
  FleetOptions options;
  options.batch = "100%";
  ASSERT_TRUE(StartFleet(options, 3, /*partitionable=*/true));
  ASSERT_EQ(leader_, 0);
  const hoist::testing::TestNetns& netns = netns_->get();
  // Leading from inside its namespace: it reaches etcd, and the agents
  // (their streams are the leader's).
  EXPECT_TRUE(
      WaitFor([&] { return LeaderGauge(fleet(), 0) == 1; }, absl::Seconds(10)));
  for (int n : followers_) EXPECT_EQ(LeaderGauge(fleet(), n), 0) << n;
  fleet().Target(0);
  ASSERT_TRUE(fleet().AwaitAgents());

  // Its namespace loses the route to etcd.
  ASSERT_TRUE(hoist::testing::SetFarRoute(netns, false).ok());
  const absl::Time cut = absl::Now();
  int successor = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (int n : followers_) {
          if (LeaderGauge(fleet(), n) == 1) {
            successor = n;
            return true;
          }
        }
        return false;
      },
      absl::Seconds(kLeaseSeconds + 10)))
      << "no other receiver leads";
  const absl::Duration takeover = absl::Now() - cut;
  std::cout << "ha: leader partitioned -> receiver " << successor
            << " leads after " << absl::FormatDuration(takeover) << " (lease "
            << kLeaseSeconds << " s)\n";
  EXPECT_LE(takeover, absl::Seconds(kLeaseSeconds + 2));
  // It had stopped leading by then (its lease lapses on its own clock
  // before etcd can expire it), and it exits for its supervisor to start it
  // again as a follower.
  Process* partitioned = fleet().receiver(0);
  EXPECT_TRUE(
      absl::StrContains(partitioned->Log(), "leader election: leadership lost"))
      << "receiver " << successor
      << " leads while the partitioned one has not logged the loss";
  const std::optional<int> status = partitioned->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << "the partitioned leader still runs";
  ASSERT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), kDaemonExitLeadershipLost);
  EXPECT_TRUE(
      absl::StrContains(partitioned->Log(), "leadership lost: exiting"));
  for (int n : followers_) {
    if (n != successor) {
      EXPECT_EQ(LeaderGauge(fleet(), n), 0) << n;
    }
  }

  // Started again (as systemd's Restart= would) inside the namespace that
  // is still partitioned: it follows, and a webhook there gets 503 and no
  // promise.
  const int restarted =
      fleet().StartReplica(ReceiverPlace{netns.netns, netns.address});
  ASSERT_TRUE(fleet().Metrics(restarted).ok()) << "not up";
  EXPECT_EQ(LeaderGauge(fleet(), restarted), 0);
  fleet().Target(restarted);
  const std::string v2 = Fleet::PromotedEvent("v2", "v2");
  const absl::Time posted = absl::Now();
  auto answer = fleet().Post(v2);
  std::cout << "ha: the partitioned receiver answered " << answer.first
            << " after " << absl::FormatDuration(absl::Now() - posted) << ": "
            << answer.second << "\n";
  EXPECT_EQ(answer.first, 503) << answer.second;
  EXPECT_EQ(answer.second, R"({"error":"journal unavailable"})");

  // The others carry on: the same delivery at the other follower is new
  // (the 503 promised nothing), and the new leader runs it.
  int other = -1;
  for (int n : followers_) {
    if (n != successor) other = n;
  }
  fleet().Target(other);
  answer = fleet().Post(v2);
  ASSERT_EQ(answer.first, 202) << answer.second;
  EXPECT_TRUE(absl::StrContains(answer.second, "\"duplicate\":false"))
      << answer.second;
  const std::string id2 = Fleet::RolloutId(answer.second);
  EXPECT_EQ(fleet().AwaitFinal(id2).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(Logged(fleet().receiver(successor), "rollout running", id2));
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v2");

  // Route back: the restarted receiver takes webhooks again, still as a
  // follower.
  ASSERT_TRUE(hoist::testing::SetFarRoute(netns, true).ok());
  fleet().Target(restarted);
  const std::string v1_again = Fleet::PromotedEvent("v1-again", "v1");
  ASSERT_TRUE(WaitFor(
      [&] {
        answer = fleet().Post(v1_again);
        return answer.first == 202;
      },
      absl::Seconds(30)))
      << answer.first << " " << answer.second;
  const std::string id3 = Fleet::RolloutId(answer.second);
  fleet().Target(successor);
  EXPECT_EQ(fleet().AwaitFinal(id3).state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(LeaderGauge(fleet(), restarted), 0);
  for (size_t h = 0; h < 2; ++h) EXPECT_EQ(Fleet::Serves(h), "hoist-test v1");
  ExpectPromisesKept(fleet(), successor, {id2, id3});
}

}  // namespace
}  // namespace hoist::e2e
