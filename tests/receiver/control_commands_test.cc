// Control writes on a follower (receiver/control_commands.h): a follower's
// Cancel, Resume, Rollback and Converge, made through the follower's
// FollowingRollouts and ByRole as the Control service makes them, are
// recorded in etcd, carried out once by the leader's CommandExecutor and
// answered with the leader's result. Two receivers' EtcdJournals on one
// FakeEtcd on a FakeClock; the leader's side is scripted.
#include "receiver/control_commands.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "receiver/fleet_publication.h"
#include "receiver/journal_etcd.h"
#include "receiver/rollout_follow.h"
#include "tests/common/eventually.h"
#include "tests/receiver/fake_etcd.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::testing::Eventually;
using hoist::v1::Rollout;

// The leader's own RolloutController and ServiceStates: records each write
// as "<kind> <target>" and answers from a script (default: a RUNNING
// rollout named after the target). BlockCalls() holds every write until
// Release().
class LeaderSide : public RolloutController, public ServiceStates {
 public:
  void Answer(const std::string& call, absl::StatusOr<Rollout> answer) {
    absl::MutexLock lock(&mu_);
    answers_.insert_or_assign(call, std::move(answer));
  }
  void BlockCalls() {
    absl::MutexLock lock(&mu_);
    blocked_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    blocked_ = false;
  }
  std::vector<std::string> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  absl::StatusOr<Rollout> Cancel(const std::string& id) override {
    return Call("cancel", id);
  }
  absl::StatusOr<Rollout> Resume(const std::string& id) override {
    return Call("resume", id);
  }
  absl::StatusOr<Rollout> RollbackService(const std::string& s) override {
    return Call("rollback", s);
  }
  absl::StatusOr<Rollout> Converge(const std::string& s) override {
    return Call("converge", s);
  }
  absl::StatusOr<Rollout> ManualDeploy(const std::string&, const std::string&,
                                       const std::string&) override {
    return absl::UnimplementedError("not relayed");
  }
  absl::StatusOr<Rollout> GetRollout(const std::string&) override {
    return absl::UnimplementedError("not relayed");
  }
  absl::StatusOr<std::vector<Rollout>> ListRollouts(const std::string&,
                                                    int) override {
    return absl::UnimplementedError("not relayed");
  }
  absl::StatusOr<std::shared_ptr<RolloutSubscription>> Watch(
      const std::string&, std::function<void()>) override {
    return absl::UnimplementedError("not relayed");
  }
  std::vector<hoist::v1::Service> ListServices() override { return {}; }
  absl::StatusOr<hoist::v1::Service> GetService(const std::string&) override {
    return absl::UnimplementedError("not relayed");
  }

 private:
  absl::StatusOr<Rollout> Call(const std::string& kind,
                               const std::string& target) {
    const std::string call = absl::StrCat(kind, " ", target);
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !blocked_;
    };
    mu_.Await(absl::Condition(&released));
    auto it = answers_.find(call);
    if (it != answers_.end()) return it->second;
    Rollout r;
    r.set_id(absl::StrCat("r-", target));
    r.set_service("app");
    r.set_trigger(kind);
    r.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
    return r;
  }

  absl::Mutex mu_;
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::StatusOr<Rollout>> answers_ ABSL_GUARDED_BY(mu_);
  bool blocked_ ABSL_GUARDED_BY(mu_) = false;
};

// The follower's own manager: refuses every write, as RolloutManager does
// while it follows.
class FollowerManager : public LeaderSide {
 public:
  absl::StatusOr<Rollout> Cancel(const std::string&) override {
    return Refused();
  }
  absl::StatusOr<Rollout> Resume(const std::string&) override {
    return Refused();
  }
  absl::StatusOr<Rollout> RollbackService(const std::string&) override {
    return Refused();
  }

 private:
  static absl::Status Refused() {
    return absl::UnavailableError("this receiver is not the leader");
  }
};

// A follower's call on a thread of its own. Joined at the latest when it
// goes out of scope, the relay stopped first so that a test that failed
// half-way does not wait for the fake clock.
class FollowerCall {
 public:
  FollowerCall(CommandRelay* relay,
               const std::function<absl::StatusOr<Rollout>()>& call)
      : relay_(relay), thread_([this, call] { answer_ = call(); }) {}
  ~FollowerCall() {
    if (!thread_.joinable()) return;
    relay_->Stop();
    thread_.join();
  }
  absl::StatusOr<Rollout> Answer() {
    thread_.join();
    return answer_;
  }

 private:
  CommandRelay* const relay_;
  absl::StatusOr<Rollout> answer_;
  std::thread thread_;
};

// The FakeEtcd, except that Get answers `stale`: an executor that read a
// command before another one claimed it.
class StaleGets : public EtcdClient {
 public:
  StaleGets(FakeEtcd* etcd, std::vector<EtcdKeyValue> stale)
      : etcd_(etcd), stale_(std::move(stale)) {}
  absl::StatusOr<std::vector<EtcdKeyValue>> Get(const std::string&,
                                                const std::string&,
                                                int64_t) override {
    return stale_;
  }
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease) override {
    return etcd_->Put(key, value, lease);
  }
  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 const std::string& range_end) override {
    return etcd_->Delete(key, range_end);
  }
  absl::StatusOr<EtcdTxnResult> Txn(
      const std::vector<EtcdCompare>& compares,
      const std::vector<EtcdOp>& success,
      const std::vector<EtcdOp>& failure) override {
    return etcd_->Txn(compares, success, failure);
  }
  absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds) override {
    return etcd_->GrantLease(ttl_seconds);
  }
  absl::StatusOr<int64_t> KeepAliveOnce(int64_t lease) override {
    return etcd_->KeepAliveOnce(lease);
  }
  absl::Status RevokeLease(int64_t lease) override {
    return etcd_->RevokeLease(lease);
  }
  std::unique_ptr<EtcdWatch> Watch(const std::string& key,
                                   const std::string& range_end,
                                   int64_t start_revision,
                                   EtcdEventsCallback on_events,
                                   EtcdDoneCallback on_done) override {
    return etcd_->Watch(key, range_end, start_revision, std::move(on_events),
                        std::move(on_done));
  }

 private:
  FakeEtcd* const etcd_;
  const std::vector<EtcdKeyValue> stale_;
};

// Whether `answer` failed with `code` and a message containing `text`.
bool FailedWith(const absl::StatusOr<Rollout>& answer, absl::StatusCode code,
                absl::string_view text) {
  return answer.status().code() == code &&
         absl::StrContains(answer.status().message(), text);
}

class ControlCommandsTest : public ::testing::Test {
 protected:
  ControlCommandsTest() {
    absl::StatusOr<int64_t> rev = etcd_.Put("/hoist/leader/1", "leader:7974");
    EXPECT_TRUE(rev.ok()) << rev.status();
    fence_.key = "/hoist/leader/1";
    fence_.target = EtcdCompare::Target::kCreateRevision;
    fence_.number = rev.ok() ? *rev : 0;
    leader_journal_.SetFence(fence_);
  }
  ~ControlCommandsTest() override {
    relay_.Stop();
    leader_.Release();  // a test that failed while it held the executor
    executor_.Stop();
  }

  std::unique_ptr<CommandExecutor> Executor(EtcdJournal* journal,
                                            EtcdClient* client = nullptr) {
    CommandExecutorOptions o;
    o.client = client != nullptr ? client : &etcd_;
    o.journal = journal;
    o.rollouts = &leader_;
    o.services = &leader_;
    o.clock = &clock_;
    return std::make_unique<CommandExecutor>(o);
  }
  CommandRelayOptions RelayOptions() {
    CommandRelayOptions o;
    o.client = &etcd_;
    o.journal = &follower_journal_;
    o.leader_name = [this]() -> std::optional<std::string> {
      absl::MutexLock lock(&mu_);
      return leader_name_;
    };
    o.name = "follower";
    o.clock = &clock_;
    return o;
  }
  void SetLeaderName(std::optional<std::string> name) {
    absl::MutexLock lock(&mu_);
    leader_name_ = std::move(name);
  }
  // The keys under <prefix>`what`/.
  std::vector<EtcdKeyValue> Under(const std::string& what) {
    const std::string base = absl::StrCat("/hoist/", what, "/");
    absl::StatusOr<std::vector<EtcdKeyValue>> kvs =
        etcd_.Get(base, EtcdPrefixEnd(base));
    EXPECT_TRUE(kvs.ok()) << kvs.status();
    return kvs.ok() ? *kvs : std::vector<EtcdKeyValue>();
  }
  // The id of the one command recorded, once there is one (bounded).
  std::string AwaitRecordedId() {
    std::vector<EtcdKeyValue> kvs;
    EXPECT_TRUE(Eventually(
        [&] {
          kvs = Under("commands");
          return kvs.size() == 1;
        },
        absl::Seconds(10)));
    if (kvs.size() != 1) return "";
    return kvs.front().key.substr(std::string("/hoist/commands/").size());
  }
  // The TTL of the one recorded command's lease (-1 when there is none).
  int64_t RecordedLeaseTtl() {
    const std::vector<EtcdKeyValue> recorded = Under("commands");
    if (recorded.size() != 1) return -1;
    absl::StatusOr<int64_t> ttl = etcd_.KeepAliveOnce(recorded.front().lease);
    return ttl.ok() ? *ttl : -1;
  }
  // How many of `a` and `b`, executing command `id` at once, carried it out.
  static int Race(const std::string& id, CommandExecutor* a,
                  CommandExecutor* b) {
    std::atomic<int> carried_out{0};
    auto race = [&](CommandExecutor* executor) {
      absl::StatusOr<bool> done = executor->Execute(id);
      EXPECT_TRUE(done.ok()) << done.status();
      if (done.ok() && *done) ++carried_out;
    };
    std::thread first(race, a);
    std::thread second(race, b);
    first.join();
    second.join();
    return carried_out.load();
  }
  // Moves the fake time past the relay's wait once it waits on the clock.
  void RunOutTheWait(int sleepers) {
    ASSERT_TRUE(Eventually([&] { return clock_.sleepers() >= sleepers; },
                           absl::Seconds(10)));
    clock_.Advance(absl::Seconds(11));
  }

  absl::Mutex mu_;
  std::optional<std::string> leader_name_ ABSL_GUARDED_BY(mu_) = "leader:7974";
  FakeClock clock_;
  FakeEtcd etcd_{&clock_};
  EtcdCompare fence_;
  EtcdJournal leader_journal_{&etcd_, "/hoist/"};
  EtcdJournal follower_journal_{&etcd_, "/hoist/"};
  LeaderSide leader_;
  FollowerManager follower_manager_;
  std::shared_ptr<ReceiverConfig> config_ =
      testing::MakeConfig(2, RolloutPolicy{});
  CommandRelay relay_{RelayOptions()};
  // The follower's Control paths, as receiver/main.cc wires them.
  FollowingRollouts follower_rollouts_{&follower_manager_, &follower_journal_,
                                       [] { return false; }, &relay_};
  PublishedFleet published_{&follower_journal_, [this] { return config_; }};
  ByRole follower_services_{[] { return false; }, &published_, &leader_,
                            &published_, &relay_};
  CommandExecutor executor_{[this] {
    CommandExecutorOptions o;
    o.client = &etcd_;
    o.journal = &leader_journal_;
    o.rollouts = &leader_;
    o.services = &leader_;
    o.clock = &clock_;
    return o;
  }()};
};

TEST_F(ControlCommandsTest, AFollowersCancelIsCarriedOutByTheLeader) {
  executor_.Start();
  absl::StatusOr<Rollout> r = follower_rollouts_.Cancel("r-7");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id(), "r-r-7");
  EXPECT_EQ(r->trigger(), "cancel");
  EXPECT_EQ(r->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(leader_.calls(), std::vector<std::string>{"cancel r-7"});
  EXPECT_TRUE(Under("commands").empty());  // claimed: gone
}

TEST_F(ControlCommandsTest, TheLeadersErrorComesBackWithItsCode) {
  leader_.Answer("cancel r-gone", absl::NotFoundError("no rollout r-gone"));
  leader_.Answer("resume r-1", absl::FailedPreconditionError(
                                   "rollout r-1 is SUCCEEDED, not PAUSED"));
  executor_.Start();
  absl::Status cancel = follower_rollouts_.Cancel("r-gone").status();
  EXPECT_EQ(cancel.code(), absl::StatusCode::kNotFound) << cancel;
  EXPECT_EQ(cancel.message(), "no rollout r-gone");
  absl::Status resume = follower_rollouts_.Resume("r-1").status();
  EXPECT_EQ(resume.code(), absl::StatusCode::kFailedPrecondition) << resume;
  EXPECT_EQ(resume.message(), "rollout r-1 is SUCCEEDED, not PAUSED");
}

TEST_F(ControlCommandsTest, WithNoLeaderKnownNothingIsRecorded) {
  executor_.Start();
  SetLeaderName(std::nullopt);
  const int64_t before = etcd_.revision();
  absl::Status s = follower_rollouts_.Cancel("r-1").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "no leader")) << s;
  SetLeaderName("");
  s = follower_services_.Converge("app").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "no leader")) << s;
  EXPECT_EQ(etcd_.revision(), before);  // nothing written at all
  EXPECT_TRUE(leader_.calls().empty());
}

TEST_F(ControlCommandsTest, AnUnclaimedCommandExpiresAndIsNeverCarriedOut) {
  // No executor runs: nobody claims it within the wait.
  FollowerCall follower(&relay_,
                        [&] { return follower_rollouts_.Cancel("r-1"); });
  ASSERT_FALSE(AwaitRecordedId().empty());
  // It lives on a lease of the wait's length: it goes even if this
  // follower does not come back to withdraw it.
  EXPECT_EQ(RecordedLeaseTtl(), 10);
  RunOutTheWait(1);
  const absl::StatusOr<Rollout> answer = follower.Answer();
  EXPECT_TRUE(
      FailedWith(answer, absl::StatusCode::kUnavailable, "not carried out"))
      << answer.status();
  EXPECT_TRUE(Under("commands").empty());
  // A leader that starts watching later finds nothing to carry out.
  executor_.Start();
  absl::StatusOr<Rollout> later = follower_rollouts_.Resume("r-2");
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(leader_.calls(), std::vector<std::string>{"resume r-2"});
}

TEST_F(ControlCommandsTest, ACommandWhoseLeaseRanOutIsNotCarriedOut) {
  // The follower that recorded it is gone; only the lease ends it.
  absl::StatusOr<int64_t> lease = etcd_.GrantLease(10);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(etcd_
                  .Put("/hoist/commands/c-1",
                       R"({"id":"c-1","kind":"cancel","target":"r-1"})", *lease)
                  .ok());
  clock_.Advance(absl::Seconds(10));
  etcd_.ExpireLeases();
  absl::StatusOr<bool> done = executor_.Execute("c-1");
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_FALSE(*done);
  EXPECT_TRUE(leader_.calls().empty());
}

TEST_F(ControlCommandsTest, ALeaderThatClaimedButDidNotAnswerMayHaveActed) {
  leader_.BlockCalls();
  executor_.Start();
  FollowerCall follower(&relay_,
                        [&] { return follower_rollouts_.Cancel("r-1"); });
  ASSERT_TRUE(Eventually([&] { return leader_.calls().size() == 1; },
                         absl::Seconds(10)));
  RunOutTheWait(1);
  const absl::StatusOr<Rollout> answer = follower.Answer();
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kDeadlineExceeded)
      << answer.status();
  EXPECT_TRUE(
      absl::StrContains(answer.status().message(), "may have been carried out"))
      << answer.status();
  leader_.Release();
}

// A result the follower cannot read is an error it names, not a rollout
// nor the "not carried out" of a command nobody took up.
TEST_F(ControlCommandsTest, AnAnswerThatDoesNotParseIsAnInternalError) {
  FollowerCall follower(&relay_,
                        [&] { return follower_rollouts_.Cancel("r-1"); });
  const std::string id = AwaitRecordedId();
  ASSERT_FALSE(id.empty());
  const std::string key = "/hoist/command_results/" + id;
  ASSERT_TRUE(etcd_
                  .Put(key, R"({"state": "done", "code": 0, "message": "",
                                "rollout": "not base64 %%"})")
                  .ok());
  const absl::StatusOr<Rollout> answer = follower.Answer();
  EXPECT_TRUE(FailedWith(answer, absl::StatusCode::kInternal,
                         "the leader's answer does not parse"))
      << answer.status();
  EXPECT_TRUE(absl::StrContains(answer.status().message(), key))
      << answer.status();
}

TEST_F(ControlCommandsTest, ACommandIsCarriedOutOnceWhateverRepeatsOrRaces) {
  // Nothing watches: the command waits until the two executors below race
  // for it, as a watch that reports it twice or two leaders would.
  FollowerCall follower(&relay_,
                        [&] { return follower_rollouts_.Cancel("r-1"); });
  const std::string id = AwaitRecordedId();
  ASSERT_FALSE(id.empty());
  EtcdJournal other_journal(&etcd_, "/hoist/");
  other_journal.SetFence(fence_);
  std::unique_ptr<CommandExecutor> other = Executor(&other_journal);
  StaleGets stale(&etcd_, Under("commands"));
  std::unique_ptr<CommandExecutor> late = Executor(&other_journal, &stale);
  EXPECT_EQ(Race(id, &executor_, other.get()), 1);
  // One that read the command before the claim: its own claim fails.
  absl::StatusOr<bool> late_done = late->Execute(id);
  EXPECT_TRUE(late_done.ok() && !*late_done) << late_done.status();
  const absl::StatusOr<Rollout> answer = follower.Answer();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->id(), "r-r-1");
  // Reported again (a watch repeating itself, twice at once): nothing more.
  EXPECT_EQ(Race(id, &executor_, &executor_), 0);
  EXPECT_EQ(leader_.calls(), std::vector<std::string>{"cancel r-1"});
}

TEST_F(ControlCommandsTest, ADeposedLeaderClaimsNothing) {
  FollowerCall follower(&relay_,
                        [&] { return follower_rollouts_.Cancel("r-1"); });
  const std::string id = AwaitRecordedId();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(etcd_.Delete("/hoist/leader/1").ok());  // its lease lapsed
  absl::StatusOr<bool> done = executor_.Execute(id);
  EXPECT_EQ(done.status().code(), absl::StatusCode::kFailedPrecondition)
      << done.status();
  EXPECT_EQ(Under("commands").size(), 1u);  // still unclaimed
  RunOutTheWait(1);
  const absl::StatusOr<Rollout> answer = follower.Answer();
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(leader_.calls().empty());
}

TEST_F(ControlCommandsTest, ResumeRollbackAndConvergeAreRelayedToo) {
  executor_.Start();
  absl::StatusOr<Rollout> resumed = follower_rollouts_.Resume("r-3");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->trigger(), "resume");
  absl::StatusOr<Rollout> rolled_back =
      follower_rollouts_.RollbackService("app");
  ASSERT_TRUE(rolled_back.ok()) << rolled_back.status();
  EXPECT_EQ(rolled_back->trigger(), "rollback");
  absl::StatusOr<Rollout> converged = follower_services_.Converge("app");
  ASSERT_TRUE(converged.ok()) << converged.status();
  EXPECT_EQ(converged->trigger(), "converge");
  EXPECT_EQ(
      leader_.calls(),
      (std::vector<std::string>{"resume r-3", "rollback app", "converge app"}));
  // Answers stay for a while (their lease), then go.
  EXPECT_EQ(Under("command_results").size(), 3u);
  clock_.Advance(absl::Seconds(31));
  etcd_.ExpireLeases();
  EXPECT_TRUE(Under("command_results").empty());
}

TEST_F(ControlCommandsTest, TheExecutorTakesUpCommandsRecordedBeforeItStarted) {
  FollowerCall follower(&relay_,
                        [&] { return follower_rollouts_.Cancel("r-1"); });
  ASSERT_FALSE(AwaitRecordedId().empty());
  executor_.Start();  // lists it, then watches
  const absl::StatusOr<Rollout> answer = follower.Answer();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(leader_.calls(), std::vector<std::string>{"cancel r-1"});
}

}  // namespace
}  // namespace hoist::receiver
