// Clock: the time boundary. Code that reads the time or waits for a span of
// time takes a Clock so that tests can drive time with FakeClock instead of
// sleeping.
#ifndef HOIST_COMMON_CLOCK_H_
#define HOIST_COMMON_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hoist {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // Blocks the calling thread for `d` of this clock's time. Thread-safe.
  virtual void SleepFor(absl::Duration d) = 0;
  // Waits until `cond` holds (checked under `mu`, which the caller holds) or
  // `d` of this clock's time passed. Returns whether `cond` holds.
  virtual bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                                absl::Duration d) = 0;
};

// Wall clock; sleeps for real. Thread-safe; the returned object lives forever.
Clock* RealClock();

// A clock that moves only when told to. SleepFor and AwaitWithTimeout return
// once Advance() moved the time past their deadline. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() +
                                        absl::Hours(24 * 365 * 50));
  absl::Time Now() override;
  void SleepFor(absl::Duration d) override;
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration d) override;
  void Advance(absl::Duration d);
  // Number of threads currently blocked in SleepFor / AwaitWithTimeout.
  int sleepers();

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int sleepers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hoist

#endif  // HOIST_COMMON_CLOCK_H_
