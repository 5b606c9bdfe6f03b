#include "receiver/progress_batch.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

using hoist::v1::DeployEvent;

// Records SaveHostProgress calls; answers them with `answer`. Nothing else
// is used by a ProgressBatch.
class RecordingJournal : public Journal {
 public:
  struct Write {
    std::string rollout_id;
    std::vector<HostUpdate> hosts;
    std::vector<HostEventRecord> events;
  };
  std::vector<Write> writes;
  absl::Status answer = absl::OkStatus();

  absl::Status SaveHostProgress(
      const std::string& id, const std::vector<HostUpdate>& hosts,
      const std::vector<HostEventRecord>& events) override {
    writes.push_back(Write{id, hosts, events});
    return answer;
  }

  absl::StatusOr<std::optional<DeliveryRecord>> FindDelivery(
      const std::string&) override {
    return Unused();
  }
  absl::Status AcceptDelivery(const DeliveryRecord&,
                              const hoist::v1::Rollout&) override {
    return Unused();
  }
  absl::Status CountDuplicate(const std::string&, absl::Time) override {
    return Unused();
  }
  absl::Status SaveRollout(const hoist::v1::Rollout&) override {
    return Unused();
  }
  absl::Status AppendHostEvent(const std::string&, const std::string&,
                               const DeployEvent&) override {
    return Unused();
  }
  absl::StatusOr<hoist::v1::Rollout> GetRollout(const std::string&) override {
    return Unused();
  }
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string&, int) override {
    return Unused();
  }
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListUnfinished() override {
    return Unused();
  }
  absl::StatusOr<std::vector<DeployEvent>> HostEvents(
      const std::string&, const std::string&) override {
    return Unused();
  }
  absl::Status SaveDesired(const DesiredState&) override { return Unused(); }
  absl::Status SaveRolloutAndDesired(const hoist::v1::Rollout&,
                                     const DesiredState&) override {
    return Unused();
  }
  absl::Status DeleteDesired(const std::string&) override { return Unused(); }
  absl::StatusOr<std::vector<DesiredState>> ListDesired() override {
    return Unused();
  }
  absl::Status SavePreviousDesired(
      const std::string&, const std::optional<DesiredState>&) override {
    return Unused();
  }
  absl::StatusOr<std::optional<DesiredState>> GetPreviousDesired(
      const std::string&) override {
    return Unused();
  }
  absl::Status SaveAttempts(const ConvergeAttempts&) override {
    return Unused();
  }
  absl::StatusOr<std::vector<ConvergeAttempts>> ListAttempts() override {
    return Unused();
  }
  absl::Status SaveRolloutWithOutbox(const hoist::v1::Rollout&,
                                     const std::vector<OutboxRow>&) override {
    return Unused();
  }
  absl::Status EnqueueNotifications(const std::vector<OutboxRow>&) override {
    return Unused();
  }
  absl::StatusOr<std::vector<OutboxRow>> ListNotifications(int) override {
    return Unused();
  }
  absl::Status RescheduleNotification(const std::string&, int,
                                      absl::Time) override {
    return Unused();
  }
  absl::Status DeleteNotification(const std::string&) override {
    return Unused();
  }
  absl::StatusOr<int64_t> CountNotifications() override { return Unused(); }

 private:
  static absl::Status Unused() {
    ADD_FAILURE() << "ProgressBatch only writes host progress";
    return absl::UnimplementedError("unused");
  }
};

DeployEvent Event(hoist::v1::DeployPhase phase, int64_t bytes = 0) {
  DeployEvent e;
  e.set_phase(phase);
  e.set_message(hoist::v1::DeployPhase_Name(phase));
  if (bytes > 0) e.mutable_pull()->set_current_bytes(bytes);
  return e;
}

Journal::HostUpdate Host(int index, hoist::v1::DeployPhase phase) {
  Journal::HostUpdate u;
  u.index = index;
  u.result.set_phase(phase);
  return u;
}

TEST(ProgressBatchTest, AnEmptyPassWritesNothing) {
  RecordingJournal journal;
  ProgressBatch batch;
  EXPECT_TRUE(batch.empty());
  EXPECT_TRUE(batch.Flush(&journal, "r-1").ok());
  EXPECT_TRUE(journal.writes.empty());
}

TEST(ProgressBatchTest, APassIsWrittenInOneTransactionWhenItEnds) {
  RecordingJournal journal;
  ProgressBatch batch;
  batch.AddEvent("web-1", Event(hoist::v1::DEPLOY_PHASE_PULLING));
  batch.host_updates()->push_back(Host(0, hoist::v1::DEPLOY_PHASE_PULLING));
  batch.AddEvent("web-2", Event(hoist::v1::DEPLOY_PHASE_STARTING));
  batch.host_updates()->push_back(Host(1, hoist::v1::DEPLOY_PHASE_STARTING));
  batch.AddEvent("web-1", Event(hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  EXPECT_FALSE(batch.empty());
  EXPECT_TRUE(journal.writes.empty()) << "written before the pass ended";

  ASSERT_TRUE(batch.Flush(&journal, "r-1").ok());
  ASSERT_EQ(journal.writes.size(), 1u);
  const RecordingJournal::Write& w = journal.writes[0];
  EXPECT_EQ(w.rollout_id, "r-1");
  ASSERT_EQ(w.hosts.size(), 2u);
  EXPECT_EQ(w.hosts[0].index, 0);
  EXPECT_EQ(w.hosts[1].index, 1);
  ASSERT_EQ(w.events.size(), 3u);
  EXPECT_EQ(w.events[0].agent, "web-1");
  EXPECT_EQ(w.events[1].agent, "web-2");
  EXPECT_EQ(w.events[2].event.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);

  // The next pass starts empty: nothing is written twice.
  EXPECT_TRUE(batch.empty());
  EXPECT_TRUE(batch.Flush(&journal, "r-1").ok());
  EXPECT_EQ(journal.writes.size(), 1u);
}

TEST(ProgressBatchTest, OnlyEventsOrOnlyHostsAreWrittenToo) {
  RecordingJournal journal;
  ProgressBatch batch;
  batch.AddEvent("web-1", Event(hoist::v1::DEPLOY_PHASE_ROLLING_BACK));
  ASSERT_TRUE(batch.Flush(&journal, "r-1").ok());
  batch.host_updates()->push_back(Host(0, hoist::v1::DEPLOY_PHASE_FAILED));
  ASSERT_TRUE(batch.Flush(&journal, "r-1").ok());
  ASSERT_EQ(journal.writes.size(), 2u);
  EXPECT_EQ(journal.writes[0].events.size(), 1u);
  EXPECT_EQ(journal.writes[1].hosts.size(), 1u);
}

// A journal that fails for a while loses no agent event: what a failed pass
// held is written, before the newer pass, by the next Flush.
TEST(ProgressBatchTest, AFailedWriteIsKeptAndWrittenByTheNextFlush) {
  RecordingJournal journal;
  journal.answer = absl::InternalError("disk full");
  ProgressBatch batch;
  batch.AddEvent("web-1", Event(hoist::v1::DEPLOY_PHASE_PULLING));
  batch.host_updates()->push_back(Host(0, hoist::v1::DEPLOY_PHASE_PULLING));
  EXPECT_EQ(batch.Flush(&journal, "r-1").code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(batch.empty());

  journal.answer = absl::OkStatus();
  batch.AddEvent("web-1", Event(hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  batch.host_updates()->push_back(Host(0, hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  ASSERT_TRUE(batch.Flush(&journal, "r-1").ok());
  EXPECT_TRUE(batch.empty());
  ASSERT_EQ(journal.writes.size(), 2u);
  const RecordingJournal::Write& second = journal.writes[1];
  ASSERT_EQ(second.events.size(), 2u);
  EXPECT_EQ(second.events[0].event.phase(), hoist::v1::DEPLOY_PHASE_PULLING);
  EXPECT_EQ(second.events[1].event.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  // The host's later result comes last, so it is the one that stays.
  ASSERT_EQ(second.hosts.size(), 2u);
  EXPECT_EQ(second.hosts[1].result.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_TRUE(batch.Flush(&journal, "r-1").ok());
  EXPECT_EQ(journal.writes.size(), 2u);  // nothing left to write
}

TEST(ProgressBatchTest, AFailingJournalHoldsOnlyTheNewestEvents) {
  RecordingJournal journal;
  journal.answer = absl::InternalError("disk full");
  ProgressBatch batch;
  for (size_t i = 0; i < ProgressBatch::kMaxHeldEvents + 5; ++i) {
    batch.AddEvent("web-1", Event(hoist::v1::DEPLOY_PHASE_PULLING,
                                  static_cast<int64_t>(i + 1)));
  }
  EXPECT_FALSE(batch.Flush(&journal, "r-1").ok());
  journal.answer = absl::OkStatus();
  journal.writes.clear();
  ASSERT_TRUE(batch.Flush(&journal, "r-1").ok());
  ASSERT_EQ(journal.writes.size(), 1u);
  const auto& events = journal.writes[0].events;
  ASSERT_EQ(events.size(), ProgressBatch::kMaxHeldEvents);
  EXPECT_EQ(events.front().event.pull().current_bytes(), 6);
  EXPECT_EQ(events.back().event.pull().current_bytes(),
            static_cast<int64_t>(ProgressBatch::kMaxHeldEvents + 5));
}

TEST(ProgressBatchTest, PullProgressIsFoldedToTheLatestPerHost) {
  RecordingJournal journal;
  ProgressBatch batch;
  const DeployEvent a1 = Event(hoist::v1::DEPLOY_PHASE_PULLING, 10);
  const DeployEvent a2 = Event(hoist::v1::DEPLOY_PHASE_PULLING, 20);
  const DeployEvent b1 = Event(hoist::v1::DEPLOY_PHASE_PULLING, 30);
  batch.FoldPull(0, &a1);
  batch.FoldPull(1, &b1);
  batch.FoldPull(0, &a2);
  ASSERT_EQ(batch.pulls().size(), 2u);
  EXPECT_EQ(batch.pulls().at(0), &a2);
  EXPECT_EQ(batch.pulls().at(1), &b1);
  // A later message of host 1 supersedes its progress.
  batch.DropPull(1);
  ASSERT_EQ(batch.pulls().size(), 1u);
  EXPECT_EQ(batch.pulls().at(0), &a2);
  // Progress is never journaled, and the pass's end forgets it.
  EXPECT_TRUE(batch.empty());
  EXPECT_TRUE(batch.Flush(&journal, "r-1").ok());
  EXPECT_TRUE(journal.writes.empty());
  EXPECT_TRUE(batch.pulls().empty());
}

}  // namespace
}  // namespace hoist::receiver
