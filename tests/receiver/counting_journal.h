// CountingJournal: forwards to a real journal and counts SaveHostProgress
// calls (one per executor pass that changed a host) and CountDuplicate
// calls; tests wait for those counts instead of polling. Thread-safe.
#ifndef HOIST_TESTS_RECEIVER_COUNTING_JOURNAL_H_
#define HOIST_TESTS_RECEIVER_COUNTING_JOURNAL_H_

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "receiver/journal.h"

namespace hoist::receiver::testing {

class CountingJournal : public JournalWrapper {
 public:
  // `real` is not owned and must outlive this.
  explicit CountingJournal(Journal* real) : JournalWrapper(real) {}

  int host_progress_calls() {
    absl::MutexLock lock(&mu_);
    return host_progress_calls_;
  }
  int duplicate_counts() {
    absl::MutexLock lock(&mu_);
    return duplicate_counts_;
  }
  // Wait (real time, bounded) until at least `n` such calls returned.
  bool AwaitHostProgressCalls(int n,
                              absl::Duration timeout = absl::Seconds(10)) {
    return AwaitAtLeast(&host_progress_calls_, n, timeout);
  }
  bool AwaitDuplicateCounts(int n, absl::Duration timeout = absl::Seconds(10)) {
    return AwaitAtLeast(&duplicate_counts_, n, timeout);
  }

  absl::Status CountDuplicate(const std::string& key, absl::Time at) override {
    absl::Status s = JournalWrapper::CountDuplicate(key, at);
    absl::MutexLock lock(&mu_);
    ++duplicate_counts_;
    return s;
  }
  absl::Status SaveHostProgress(
      const std::string& id, const std::vector<HostUpdate>& hosts,
      const std::vector<HostEventRecord>& events) override {
    absl::Status s = JournalWrapper::SaveHostProgress(id, hosts, events);
    absl::MutexLock lock(&mu_);
    ++host_progress_calls_;
    return s;
  }

 private:
  bool AwaitAtLeast(const int* count, int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [count, n]() { return *count >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  absl::Mutex mu_;
  int host_progress_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int duplicate_counts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_COUNTING_JOURNAL_H_
