#include "receiver/rollout_follow.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "receiver/rollout_manager.h"

namespace hoist::receiver {

using hoist::v1::Rollout;
using hoist::v1::RolloutEvent;

namespace {

// How often a follow with nothing new looks whether its watcher cancelled.
constexpr absl::Duration kCancelCheck = absl::Seconds(1);

bool SameHost(const hoist::v1::HostResult& a, const hoist::v1::HostResult& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace

// One follower's watch of one rollout: its etcd watch marks the rollout
// changed, its thread reads it again and queues what changed.
class FollowingRollouts::Follow {
 public:
  Follow(EtcdJournal* journal, std::string id,
         std::shared_ptr<RolloutSubscription> sub)
      : journal_(journal), id_(std::move(id)), sub_(std::move(sub)) {}

  ~Follow() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  // Watches, then reads the rollout: a write between the two is read again.
  // NOT_FOUND for an unknown rollout; then nothing runs.
  absl::Status Start() {
    watch_ = journal_->WatchRollout(
        id_,
        [this] {
          absl::MutexLock lock(&mu_);
          changed_ = true;
        },
        [this](absl::Status s) {
          absl::MutexLock lock(&mu_);
          watch_ended_ = true;
          watch_status_ = std::move(s);
        });
    absl::StatusOr<Rollout> first = journal_->GetRollout(id_);
    if (!first.ok()) {
      watch_->Cancel();
      return first.status();
    }
    last_ = *std::move(first);
    RolloutEvent e;
    *e.mutable_rollout() = last_;
    e.set_message("current state");
    const bool final_state = IsFinalRolloutState(last_.state());
    sub_->Push(e, final_state);
    if (final_state) {
      watch_->Cancel();
      done_ = true;
      return absl::OkStatus();
    }
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }

 private:
  void Run() {
    while (true) {
      bool changed;
      bool ended;
      absl::Status why;
      {
        absl::MutexLock lock(&mu_);
        auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || changed_ || watch_ended_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&woken), kCancelCheck);
        if (stopping_) break;
        changed = std::exchange(changed_, false);
        ended = watch_ended_;
        why = watch_status_;
      }
      if (sub_->cancelled()) break;
      if (changed || ended) {
        if (ReadAgain(ended, why)) break;
      }
    }
    watch_->Cancel();
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

  // Queues what changed since the last read. True when the follow is over:
  // the rollout is final, or the watch ended (`ended`, for `why`) and the
  // state read now is queued as the last event.
  bool ReadAgain(bool ended, const absl::Status& why) {
    absl::StatusOr<Rollout> now = journal_->GetRollout(id_);
    if (!now.ok()) {
      if (!ended) return false;  // the watch wakes us again
      RolloutEvent e;
      *e.mutable_rollout() = last_;
      e.set_message(absl::StrCat("following ended: ", why.message(), "; ",
                                 now.status().message()));
      sub_->Push(e, true);
      return true;
    }
    const bool final_state = IsFinalRolloutState(now->state());
    for (int i = 0; i < now->hosts_size(); ++i) {
      if (i < last_.hosts_size() && SameHost(last_.hosts(i), now->hosts(i))) {
        continue;
      }
      RolloutEvent e;
      *e.mutable_rollout() = *now;
      *e.mutable_host() = now->hosts(i);
      sub_->Push(e, false, &*now);
    }
    if (now->state() != last_.state() || ended) {
      RolloutEvent e;
      *e.mutable_rollout() = *now;
      e.set_message(ended && !final_state
                        ? absl::StrCat("following ended: ", why.message(),
                                       "; watch again")
                        : absl::StrCat("rollout ", hoist::v1::RolloutState_Name(
                                                       now->state())));
      sub_->Push(e, final_state || ended, &*now);
    }
    last_ = *std::move(now);
    return final_state || ended;
  }

  EtcdJournal* const journal_;
  const std::string id_;
  const std::shared_ptr<RolloutSubscription> sub_;
  std::unique_ptr<EtcdWatch> watch_;
  Rollout last_;  // the follow thread's, after Start
  std::thread thread_;
  absl::Mutex mu_;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool watch_ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status watch_status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

FollowingRollouts::FollowingRollouts(RolloutController* manager,
                                     EtcdJournal* journal,
                                     std::function<bool()> leading,
                                     CommandRelay* relay)
    : manager_(manager),
      journal_(journal),
      leading_(std::move(leading)),
      relay_(relay) {}

FollowingRollouts::~FollowingRollouts() {
  std::vector<std::unique_ptr<Follow>> follows;
  {
    absl::MutexLock lock(&mu_);
    follows.swap(follows_);
  }
  follows.clear();  // each stops and joins its thread
}

absl::StatusOr<std::shared_ptr<RolloutSubscription>> FollowingRollouts::Watch(
    const std::string& id, std::function<void()> notify) {
  if (leading_()) return manager_->Watch(id, std::move(notify));
  auto sub = std::make_shared<RolloutSubscription>(std::move(notify));
  auto follow = std::make_unique<Follow>(journal_, id, sub);
  if (absl::Status s = follow->Start(); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  Reap();
  follows_.push_back(std::move(follow));
  return sub;
}

int FollowingRollouts::following() {
  absl::MutexLock lock(&mu_);
  Reap();
  return static_cast<int>(follows_.size());
}

void FollowingRollouts::Reap() {
  for (auto it = follows_.begin(); it != follows_.end();) {
    it = (*it)->done() ? follows_.erase(it) : std::next(it);
  }
}

}  // namespace hoist::receiver
