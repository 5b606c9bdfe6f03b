#include "receiver/call_inbox.h"

#include <utility>

namespace hoist::receiver {

CallInbox::CallInbox(Clock* clock, absl::Duration min_pass_interval)
    : clock_(clock), min_pass_interval_(min_pass_interval) {}

void CallInbox::Add(Item item) {
  absl::MutexLock lock(&mu_);
  if (item.done) ++done_items_;
  items_.push_back(std::move(item));
}

void CallInbox::Stop() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
}

DeployEventCallback CallInbox::MakeEventCallback(
    const std::shared_ptr<CallInbox>& inbox, int host, int attempt) {
  return [inbox, host, attempt](const hoist::v1::DeployEvent& e) {
    inbox->Add(Item{host, attempt, false, e, absl::OkStatus()});
  };
}

DoneCallback CallInbox::MakeDoneCallback(
    const std::shared_ptr<CallInbox>& inbox, int host, int attempt) {
  return [inbox, host, attempt](absl::Status s) {
    inbox->Add(Item{host, attempt, true, {}, std::move(s)});
  };
}

bool CallInbox::NextPass(int in_flight, absl::Time next_retry,
                         std::deque<Item>* items) {
  absl::MutexLock lock(&mu_);
  GatherLocked(in_flight);
  AwaitWorkLocked(next_retry);
  if (stop_) return false;
  // A pass with no items (a retry fell due) does not restart the interval.
  if (!items_.empty()) last_pass_ = clock_->Now();
  items->clear();
  items->swap(items_);
  done_items_ = 0;
  return true;
}

void CallInbox::GatherLocked(int in_flight) {
  const absl::Duration gather = last_pass_ + min_pass_interval_ - clock_->Now();
  if (gather <= absl::ZeroDuration()) return;  // a quiet interval: take at once
  // Producers do not wake us for an item, only for the end of the last call
  // in flight (Add evaluates this on unlock). With none in flight (every
  // call waits for a retry) the gathering lasts the whole interval.
  auto stop_or_all_ended = [this,
                            in_flight]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || (in_flight > 0 && done_items_ >= in_flight);
  };
  clock_->AwaitWithTimeout(&mu_, absl::Condition(&stop_or_all_ended), gather);
}

void CallInbox::AwaitWorkLocked(absl::Time next_retry) {
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || !items_.empty();
  };
  // Even the untimed wait goes through the clock (an infinite timeout), so a
  // test clock sees every wait of the executor.
  if (next_retry == absl::InfiniteFuture()) {
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&ready),
                             absl::InfiniteDuration());
    return;
  }
  const absl::Duration wait = next_retry - clock_->Now();
  if (wait > absl::ZeroDuration()) {
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&ready), wait);
  }
}

bool CallInbox::SleepUnlessStopped(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
  clock_->AwaitWithTimeout(&mu_, absl::Condition(&stop), d);
  return !stop_;
}

}  // namespace hoist::receiver
