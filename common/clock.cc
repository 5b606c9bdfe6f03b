#include "common/clock.h"

#include "absl/time/clock.h"

namespace hoist {
namespace {

class RealClockImpl : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration d) override {
    return mu->AwaitWithTimeout(cond, d);
  }
};

}  // namespace

Clock* RealClock() {
  static Clock* clock = new RealClockImpl();
  return clock;
}

FakeClock::FakeClock(absl::Time start) : now_(start) {}

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = now_ + d;
  ++sleepers_;
  struct Arg {
    const absl::Time* now;
    absl::Time deadline;
  } arg{&now_, deadline};
  mu_.Await(absl::Condition(
      +[](Arg* a) { return *a->now >= a->deadline; }, &arg));
  --sleepers_;
}

bool FakeClock::AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                                 absl::Duration d) {
  // The caller's condition is guarded by the caller's mutex; poll it in short
  // real-time slices until it holds or fake time passes the deadline.
  const absl::Time deadline = Now() + d;
  {
    absl::MutexLock lock(&mu_);
    ++sleepers_;
  }
  bool held = false;
  while (true) {
    if (mu->AwaitWithTimeout(cond, absl::Milliseconds(2))) {
      held = true;
      break;
    }
    if (Now() >= deadline) break;
  }
  absl::MutexLock lock(&mu_);
  --sleepers_;
  return held;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

int FakeClock::sleepers() {
  absl::MutexLock lock(&mu_);
  return sleepers_;
}

}  // namespace hoist
