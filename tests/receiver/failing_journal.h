// FailingJournal: a journal whose writes fail on demand, as a full disk or an
// I/O error would, for tests of what the receiver does when it cannot record.
//
// A write set to fail returns UNAVAILABLE ("injected: ...") without reaching
// the wrapped journal, so nothing of it is written (the Journal contract for
// a failed write). Everything else is forwarded. Failed calls are counted,
// and the host results of failed SaveHostProgress calls are kept, so that a
// test can wait for the failure it caused instead of sleeping. Thread-safe.
#ifndef HOIST_TESTS_RECEIVER_FAILING_JOURNAL_H_
#define HOIST_TESTS_RECEIVER_FAILING_JOURNAL_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "receiver/journal.h"

namespace hoist::receiver::testing {

class FailingJournal : public JournalWrapper {
 public:
  enum class Write {
    kAcceptDelivery,
    kCountDuplicate,
    kSaveRollout,
    kSaveHostProgress,
    kAppendHostEvent,
    kSaveDesired,
    kSaveRolloutAndDesired,
    kDeleteDesired,
    kSavePreviousDesired,
    kSaveAttempts,
  };
  // For AcceptDelivery, SaveRollout and SaveRolloutAndDesired: which
  // rollouts' writes fail.
  using RolloutPredicate = std::function<bool(const hoist::v1::Rollout&)>;

  // `real` is not owned and must outlive this.
  explicit FailingJournal(Journal* real) : JournalWrapper(real) {}

  // `write` fails from now on until Heal(write): every call, or for
  // AcceptDelivery, SaveRollout and SaveRolloutAndDesired only those whose
  // rollout `when` holds for.
  void Fail(Write write, RolloutPredicate when = nullptr) {
    absl::MutexLock lock(&mu_);
    failing_[write] =
        when ? std::move(when) : [](const hoist::v1::Rollout&) { return true; };
  }
  void Heal(Write write) {
    absl::MutexLock lock(&mu_);
    failing_.erase(write);
  }

  // Calls of `write` that failed so far.
  int failures(Write write) {
    absl::MutexLock lock(&mu_);
    return failures_[write];
  }
  // Waits (real time, bounded) until a failed SaveHostProgress carried a
  // host result `match` holds for.
  bool AwaitFailedHostUpdate(std::function<bool(const HostUpdate&)> match,
                             absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const HostUpdate& h : failed_host_updates_) {
        if (match(h)) return true;
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
  }

  absl::Status AcceptDelivery(const DeliveryRecord& delivery,
                              const hoist::v1::Rollout& rollout) override {
    if (Failing(Write::kAcceptDelivery, &rollout)) {
      return Injected("cannot record the delivery");
    }
    return JournalWrapper::AcceptDelivery(delivery, rollout);
  }
  absl::Status CountDuplicate(const std::string& key, absl::Time at) override {
    if (Failing(Write::kCountDuplicate, nullptr)) {
      return Injected("cannot count the duplicate");
    }
    return JournalWrapper::CountDuplicate(key, at);
  }
  absl::Status SaveRollout(const hoist::v1::Rollout& rollout) override {
    if (Failing(Write::kSaveRollout, &rollout)) {
      return Injected("cannot save the rollout");
    }
    return JournalWrapper::SaveRollout(rollout);
  }
  absl::Status SaveHostProgress(
      const std::string& id, const std::vector<HostUpdate>& hosts,
      const std::vector<HostEventRecord>& events) override {
    if (Failing(Write::kSaveHostProgress, nullptr, &hosts)) {
      return Injected("cannot save host progress");
    }
    return JournalWrapper::SaveHostProgress(id, hosts, events);
  }
  absl::Status AppendHostEvent(const std::string& id, const std::string& agent,
                               const hoist::v1::DeployEvent& event) override {
    if (Failing(Write::kAppendHostEvent, nullptr)) {
      return Injected("cannot append the host event");
    }
    return JournalWrapper::AppendHostEvent(id, agent, event);
  }
  absl::Status SaveDesired(const DesiredState& desired) override {
    if (Failing(Write::kSaveDesired, nullptr)) {
      return Injected("cannot save the desired state");
    }
    return JournalWrapper::SaveDesired(desired);
  }
  absl::Status SaveRolloutAndDesired(const hoist::v1::Rollout& rollout,
                                     const DesiredState& desired) override {
    if (Failing(Write::kSaveRolloutAndDesired, &rollout)) {
      return Injected("cannot save the rollout and the desired state");
    }
    return JournalWrapper::SaveRolloutAndDesired(rollout, desired);
  }
  absl::Status DeleteDesired(const std::string& service) override {
    if (Failing(Write::kDeleteDesired, nullptr)) {
      return Injected("cannot delete the desired state");
    }
    return JournalWrapper::DeleteDesired(service);
  }
  absl::Status SavePreviousDesired(
      const std::string& rollout_id,
      const std::optional<DesiredState>& previous) override {
    if (Failing(Write::kSavePreviousDesired, nullptr)) {
      return Injected("cannot save the previous desired state");
    }
    return JournalWrapper::SavePreviousDesired(rollout_id, previous);
  }
  absl::Status SaveAttempts(const ConvergeAttempts& attempts) override {
    if (Failing(Write::kSaveAttempts, nullptr)) {
      return Injected("cannot save converge attempts");
    }
    return JournalWrapper::SaveAttempts(attempts);
  }

 private:
  static absl::Status Injected(const std::string& what) {
    return absl::UnavailableError(absl::StrCat("injected: ", what));
  }

  // Whether this call of `write` fails; counts it and keeps `hosts` if so.
  bool Failing(Write write, const hoist::v1::Rollout* rollout,
               const std::vector<HostUpdate>* hosts = nullptr) {
    absl::MutexLock lock(&mu_);
    auto it = failing_.find(write);
    if (it == failing_.end()) return false;
    if (rollout != nullptr && !it->second(*rollout)) return false;
    ++failures_[write];
    if (hosts != nullptr) {
      failed_host_updates_.insert(failed_host_updates_.end(), hosts->begin(),
                                  hosts->end());
    }
    return true;
  }

  absl::Mutex mu_;
  std::map<Write, RolloutPredicate> failing_ ABSL_GUARDED_BY(mu_);
  std::map<Write, int> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<HostUpdate> failed_host_updates_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_FAILING_JOURNAL_H_
