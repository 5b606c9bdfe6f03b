// CallInbox: the executor's pass gathering, driven by a StepClock (no
// sleeps: each step moves the clock and waits until the executor's thread
// has caught up).
#include "receiver/call_inbox.h"

#include <deque>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/receiver/step_clock.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::StepClock;
using Item = CallInbox::Item;

constexpr absl::Duration kInterval = absl::Milliseconds(100);

Item Event(int host) {
  Item item;
  item.host = host;
  item.attempt = 1;
  item.event.set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  return item;
}

Item End(int host) {
  Item item;
  item.host = host;
  item.attempt = 1;
  item.done = true;
  return item;
}

// NextPass on its own thread, as the executor runs it.
class AsyncPass {
 public:
  AsyncPass(CallInbox* inbox, int in_flight,
            absl::Time next_retry = absl::InfiniteFuture())
      : inbox_(inbox), thread_([this, in_flight, next_retry] {
          ok_ = inbox_->NextPass(in_flight, next_retry, &items_);
          returned_.Notify();
        }) {}
  // A pass that never returns (a broken inbox) is ended by Stop().
  ~AsyncPass() {
    inbox_->Stop();
    thread_.join();
  }
  bool returned() const { return returned_.HasBeenNotified(); }
  // Waits (real time, bounded) for NextPass to return; then ok() and items()
  // hold its result.
  bool Await() {
    return returned_.WaitForNotificationWithTimeout(absl::Seconds(10));
  }
  bool ok() const { return ok_; }
  const std::deque<Item>& items() const { return items_; }

 private:
  CallInbox* const inbox_;
  absl::Notification returned_;
  bool ok_ = false;
  std::deque<Item> items_;
  std::thread thread_;  // last: starts once the rest is built
};

class CallInboxTest : public ::testing::Test {
 protected:
  // A pass that takes one item now, as the executor's previous pass.
  void PassNow(int host = 0) {
    inbox_.Add(Event(host));
    std::deque<Item> items;
    ASSERT_TRUE(inbox_.NextPass(3, absl::InfiniteFuture(), &items));
    ASSERT_EQ(items.size(), 1u);
  }

  StepClock clock_;
  CallInbox inbox_{&clock_, kInterval};
};

TEST_F(CallInboxTest, AfterAQuietIntervalTheFirstItemIsTakenAtOnce) {
  // No pass yet: nothing to gather for.
  inbox_.Add(Event(1));
  std::deque<Item> items;
  ASSERT_TRUE(inbox_.NextPass(2, absl::InfiniteFuture(), &items));
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].host, 1);

  // A whole interval after that pass, the executor waits for the next item
  // and takes it as soon as it comes, without the clock moving.
  clock_.Advance(kInterval);
  AsyncPass pass(&inbox_, 2);
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(pass.returned());
  inbox_.Add(Event(2));
  clock_.Advance(absl::ZeroDuration());
  ASSERT_TRUE(pass.Await());
  ASSERT_TRUE(pass.ok());
  ASSERT_EQ(pass.items().size(), 1u);
  EXPECT_EQ(pass.items()[0].host, 2);
}

TEST_F(CallInboxTest, RightAfterAPassItemsGatherUntilTheIntervalHasPassed) {
  PassNow();
  AsyncPass pass(&inbox_, 3);
  ASSERT_TRUE(clock_.AwaitSettled(1));
  inbox_.Add(Event(1));
  clock_.Advance(absl::Milliseconds(50));
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(pass.returned()) << "took an item 50 ms after a pass";
  inbox_.Add(Event(2));
  inbox_.Add(End(1));  // one of three calls in flight ended
  clock_.Advance(absl::Milliseconds(49));
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(pass.returned()) << "took items 99 ms after a pass";
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(pass.Await());
  ASSERT_TRUE(pass.ok());
  ASSERT_EQ(pass.items().size(), 3u);  // oldest first
  EXPECT_EQ(pass.items()[0].host, 1);
  EXPECT_EQ(pass.items()[1].host, 2);
  EXPECT_TRUE(pass.items()[2].done);
}

TEST_F(CallInboxTest, TheGatheringEndsAsSoonAsEveryCallInFlightHasEnded) {
  PassNow();
  const absl::Time start = clock_.Now();
  AsyncPass pass(&inbox_, 2);
  ASSERT_TRUE(clock_.AwaitSettled(1));
  inbox_.Add(End(1));
  clock_.Advance(absl::ZeroDuration());
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(pass.returned()) << "one of two calls still in flight";
  inbox_.Add(End(2));
  ASSERT_TRUE(pass.Await()) << "the last call's end waited for the interval";
  ASSERT_TRUE(pass.ok());
  EXPECT_EQ(pass.items().size(), 2u);
  EXPECT_EQ(clock_.Now(), start);
}

TEST_F(CallInboxTest, EndsCountFromThePreviousPassOn) {
  // An end taken by the previous pass does not count for the next one.
  inbox_.Add(End(1));
  std::deque<Item> items;
  ASSERT_TRUE(inbox_.NextPass(2, absl::InfiniteFuture(), &items));
  AsyncPass pass(&inbox_, 1);
  ASSERT_TRUE(clock_.AwaitSettled(1));
  inbox_.Add(Event(2));
  clock_.Advance(absl::ZeroDuration());
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(pass.returned());
  inbox_.Add(End(2));
  ASSERT_TRUE(pass.Await());
  EXPECT_EQ(pass.items().size(), 2u);
}

TEST_F(CallInboxTest, WithNoCallInFlightTheGatheringLastsTheInterval) {
  // Every call waits for a retry: no end can cut the gathering short.
  PassNow();
  const absl::Time retry = clock_.Now() + absl::Seconds(1);
  AsyncPass pass(&inbox_, 0, retry);
  ASSERT_TRUE(clock_.AwaitSettled(1));
  inbox_.Add(End(1));  // a stale end, say
  clock_.Advance(absl::Milliseconds(99));
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(pass.returned());
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(pass.Await());
  EXPECT_EQ(pass.items().size(), 1u);
}

TEST_F(CallInboxTest, ADueRetryEndsTheWaitWithNoItems) {
  const absl::Time retry = clock_.Now() + absl::Seconds(1);
  {
    AsyncPass pass(&inbox_, 0, retry);
    ASSERT_TRUE(clock_.AwaitSettled(1));
    clock_.Advance(absl::Milliseconds(999));
    ASSERT_TRUE(clock_.AwaitSettled(1));
    EXPECT_FALSE(pass.returned());
    clock_.Advance(absl::Milliseconds(1));
    ASSERT_TRUE(pass.Await());
    ASSERT_TRUE(pass.ok());
    EXPECT_TRUE(pass.items().empty());
  }
}

TEST_F(CallInboxTest, AnEmptyPassDoesNotStartTheInterval) {
  std::deque<Item> items;
  // A retry already due: a pass with nothing in it.
  ASSERT_TRUE(inbox_.NextPass(0, clock_.Now(), &items));
  EXPECT_TRUE(items.empty());
  // The next item is taken at once: there was no pass to gather after.
  inbox_.Add(Event(1));
  ASSERT_TRUE(inbox_.NextPass(1, absl::InfiniteFuture(), &items));
  EXPECT_EQ(items.size(), 1u);
}

TEST_F(CallInboxTest, StopEndsEveryWaitForGood) {
  PassNow();
  AsyncPass pass(&inbox_, 3);
  ASSERT_TRUE(clock_.AwaitSettled(1));
  inbox_.Add(Event(1));
  inbox_.Stop();
  ASSERT_TRUE(pass.Await());
  EXPECT_FALSE(pass.ok());
  std::deque<Item> items;
  EXPECT_FALSE(inbox_.NextPass(3, absl::InfiniteFuture(), &items));
  EXPECT_FALSE(inbox_.SleepUnlessStopped(absl::Hours(1)));
}

TEST_F(CallInboxTest, SleepUnlessStoppedWaitsOnTheClock) {
  bool slept = false;
  absl::Notification done;
  std::thread sleeper([&] {
    slept = inbox_.SleepUnlessStopped(absl::Seconds(30));
    done.Notify();
  });
  EXPECT_TRUE(clock_.AwaitSettled(1));  // sleeping from now on
  clock_.Advance(absl::Seconds(29));
  EXPECT_TRUE(clock_.AwaitSettled(1));
  EXPECT_FALSE(done.HasBeenNotified());
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  if (!done.HasBeenNotified()) inbox_.Stop();  // so that join returns
  sleeper.join();
  EXPECT_TRUE(slept);
}

TEST_F(CallInboxTest, CallbacksReportIntoTheInboxTheyKeepAlive) {
  auto inbox = std::make_shared<CallInbox>(&clock_, kInterval);
  DeployEventCallback on_event = CallInbox::MakeEventCallback(inbox, 4, 2);
  DoneCallback on_done = CallInbox::MakeDoneCallback(inbox, 4, 2);
  std::weak_ptr<CallInbox> weak = inbox;
  std::shared_ptr<CallInbox> executor = inbox;
  inbox.reset();
  hoist::v1::DeployEvent e;
  e.set_phase(hoist::v1::DEPLOY_PHASE_STARTING);
  on_event(e);
  on_done(absl::UnavailableError("gone"));
  std::deque<Item> items;
  ASSERT_TRUE(executor->NextPass(1, absl::InfiniteFuture(), &items));
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].host, 4);
  EXPECT_EQ(items[0].attempt, 2);
  EXPECT_FALSE(items[0].done);
  EXPECT_EQ(items[0].event.phase(), hoist::v1::DEPLOY_PHASE_STARTING);
  EXPECT_TRUE(items[1].done);
  EXPECT_EQ(items[1].status.code(), absl::StatusCode::kUnavailable);
  // The run may give up (Stop) while streams are open: their callbacks
  // still have an inbox to report into.
  executor.reset();
  EXPECT_FALSE(weak.expired());
  on_event(e);
  on_event = nullptr;
  on_done = nullptr;
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace hoist::receiver
