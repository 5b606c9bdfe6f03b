// StepClock: a fake Clock for tests that move time in steps and then wait
// until every thread waiting on the clock has caught up, instead of sleeping.
//
// Time moves only with Advance(). Every wait on the clock (AwaitWithTimeout,
// SleepFor) is tracked, and AwaitSettled(n) returns once exactly n threads
// wait on the clock and each has evaluated its condition, false, since the
// latest Advance(): whatever was due by now has happened, and those threads
// stay blocked until time moves again or something changes their condition.
// A test that changes what a waiter's condition reads (releases an agent
// call, submits a duplicate) calls Advance() before AwaitSettled(), with zero
// if time should not move, so that the waiter looks again. Timeouts are
// relative to the time a wait begins, so a test moves time only once the
// thread it means is waiting (AwaitSettled first).
//
// FakeClock (common/clock.h) counts its sleepers but cannot say whether one
// is about to wake: a thread whose condition already holds counts as a
// sleeper for a moment. Like FakeClock, a waiter re-checks the time in short
// real-time slices (1 ms); a change of its condition wakes it at once,
// through its mutex. Thread-safe.
#ifndef HOIST_TESTS_RECEIVER_STEP_CLOCK_H_
#define HOIST_TESTS_RECEIVER_STEP_CLOCK_H_

#include <cstdint>
#include <map>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace hoist::receiver::testing {

class StepClock : public Clock {
 public:
  explicit StepClock(absl::Time start = absl::UnixEpoch() +
                                        absl::Hours(24 * 365 * 50))
      : now_(start) {}

  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }

  void SleepFor(absl::Duration d) override {
    absl::Mutex mu;
    const bool never = false;
    absl::MutexLock lock(&mu);
    AwaitWithTimeout(&mu, absl::Condition(&never), d);
  }

  // The caller holds `mu`, so `cond` may be evaluated directly.
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration d) override {
    int64_t id;
    absl::Time deadline;
    {
      absl::MutexLock lock(&mu_);
      id = next_id_++;
      waiters_[id] = -1;  // has not looked yet
      deadline = now_ + d;
    }
    bool held = false;
    while (true) {
      int64_t epoch;
      absl::Time now;
      {
        absl::MutexLock lock(&mu_);
        epoch = epoch_;
        now = now_;
      }
      // Read before the condition: when it is false, it was false after
      // that Advance() too.
      if (cond.Eval()) {
        held = true;
        break;
      }
      if (now >= deadline) break;
      {
        absl::MutexLock lock(&mu_);
        waiters_[id] = epoch;
      }
      mu->AwaitWithTimeout(cond, absl::Milliseconds(1));
    }
    absl::MutexLock lock(&mu_);
    waiters_.erase(id);
    return held;
  }

  // Moves time forward by `d`; zero only makes every waiter look again.
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
    ++epoch_;
  }

  // See the class comment. False when that did not happen within `timeout`
  // of real time.
  bool AwaitSettled(int waiters, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto settled = [this, waiters]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (static_cast<int>(waiters_.size()) != waiters) return false;
      for (const auto& [id, seen] : waiters_) {
        if (seen != epoch_) return false;
      }
      return true;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&settled), timeout);
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;  // Advance() calls so far
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Per waiting thread: the epoch in which it last found its condition
  // false (-1: not yet).
  std::map<int64_t, int64_t> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_STEP_CLOCK_H_
