// AgentDirectory over scripted agents (FakeAgentClientPool) and a FakeClock:
// what ListAgents reports (docs/design.md, "gRPC API", Control).
#include "receiver/agent_directory.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/receiver/fake_agent_pool.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::FakeAgentClientPool;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::vector<AgentEntry> Agents(int n) {
  std::vector<AgentEntry> agents;
  for (int i = 1; i <= n; ++i) {
    AgentEntry a;
    a.name = absl::StrCat("web-", i);
    a.address = absl::StrCat("10.0.0.", i, ":7981");
    a.labels["role"] = "web";
    a.labels["rack"] = absl::StrCat("r", i);
    agents.push_back(a);
  }
  return agents;
}

// Lists `agents` and returns the answer; the fake pool answers inline, so
// List() has called back by the time it returns.
std::vector<hoist::v1::AgentInfo> ListNow(
    AgentDirectory& directory, const std::vector<AgentEntry>& agents) {
  std::vector<hoist::v1::AgentInfo> out;
  int calls = 0;
  directory.List(agents, [&](std::vector<hoist::v1::AgentInfo> infos) {
    out = std::move(infos);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
  return out;
}

TEST(AgentDirectoryTest, ListsEveryAgentInOrderWithReachabilityAndVersions) {
  FakeAgentClientPool pool;
  pool.SetDown("web-2");
  FakeClock clock;
  AgentDirectory directory(&pool, absl::Seconds(2), &clock);
  const std::vector<hoist::v1::AgentInfo> infos = ListNow(directory, Agents(3));
  ASSERT_THAT(infos, SizeIs(3));
  EXPECT_EQ(infos[0].name(), "web-1");
  EXPECT_EQ(infos[0].address(), "10.0.0.1:7981");
  EXPECT_EQ(infos[0].labels().at("role"), "web");
  EXPECT_EQ(infos[0].labels().at("rack"), "r1");
  EXPECT_TRUE(infos[0].reachable());
  EXPECT_EQ(infos[0].version(), "0.1.0-fake");
  EXPECT_EQ(infos[0].docker_version(), "20.10-fake");
  EXPECT_EQ(FromProto(infos[0].last_seen()), clock.Now());
  EXPECT_THAT(infos[0].last_error(), IsEmpty());

  EXPECT_EQ(infos[1].name(), "web-2");
  EXPECT_FALSE(infos[1].reachable());
  EXPECT_THAT(infos[1].version(), IsEmpty());
  EXPECT_FALSE(infos[1].has_last_seen());
  EXPECT_THAT(infos[1].last_error(), HasSubstr("web-2 is down"));

  EXPECT_EQ(infos[2].name(), "web-3");
  EXPECT_TRUE(infos[2].reachable());
  EXPECT_EQ(pool.status_calls(), 3);
}

TEST(AgentDirectoryTest, AnAgentThatGoesDownKeepsTheTimeItWasLastSeen) {
  FakeAgentClientPool pool;
  FakeClock clock;
  AgentDirectory directory(&pool, absl::Seconds(2), &clock);
  const absl::Time first = clock.Now();
  ASSERT_TRUE(ListNow(directory, Agents(2))[1].reachable());

  clock.Advance(absl::Minutes(5));
  pool.SetDown("web-2");
  const std::vector<hoist::v1::AgentInfo> infos = ListNow(directory, Agents(2));
  ASSERT_THAT(infos, SizeIs(2));
  EXPECT_EQ(FromProto(infos[0].last_seen()), first + absl::Minutes(5));
  EXPECT_FALSE(infos[1].reachable());
  EXPECT_EQ(FromProto(infos[1].last_seen()), first);
  EXPECT_THAT(infos[1].last_error(), HasSubstr("web-2 is down"));
}

// Every agent is asked at once; the answer waits for the last of them.
TEST(AgentDirectoryTest, AsksEveryAgentAtOnceAndAnswersOnceAfterTheLast) {
  FakeAgentClientPool pool;
  pool.HoldStatusCalls();
  AgentDirectory directory(&pool, absl::Seconds(2));
  int calls = 0;
  std::vector<hoist::v1::AgentInfo> infos;
  directory.List(Agents(3), [&](std::vector<hoist::v1::AgentInfo> answer) {
    infos = std::move(answer);
    ++calls;
  });
  ASSERT_TRUE(pool.WaitHeldStatusCalls(3));
  EXPECT_EQ(calls, 0);
  pool.ReleaseStatusCalls();
  EXPECT_EQ(calls, 1);
  ASSERT_THAT(infos, SizeIs(3));
  for (const hoist::v1::AgentInfo& info : infos) {
    EXPECT_TRUE(info.reachable()) << info.name();
  }
}

// An agent that is configured but that the pool has no client for (a
// config reload in between) is reported unreachable, not skipped.
TEST(AgentDirectoryTest, AnAgentWithoutAClientIsUnreachableWithThePoolsError) {
  class PoolWithoutGhost : public AgentClientPool {
   public:
    absl::StatusOr<std::shared_ptr<AgentClient>> Get(
        const std::string& name) override {
      if (name == "ghost") return absl::NotFoundError("agent ghost is gone");
      return fake.Get(name);
    }
    FakeAgentClientPool fake;
  } pool;
  AgentDirectory directory(&pool, absl::Seconds(2));
  std::vector<AgentEntry> agents = Agents(1);
  agents.push_back(AgentEntry{"ghost", "10.0.0.9:7981", "", {}});
  const std::vector<hoist::v1::AgentInfo> infos = ListNow(directory, agents);
  ASSERT_THAT(infos, SizeIs(2));
  EXPECT_TRUE(infos[0].reachable());
  EXPECT_EQ(infos[1].name(), "ghost");
  EXPECT_FALSE(infos[1].reachable());
  EXPECT_EQ(infos[1].last_error(), "agent ghost is gone");
}

TEST(AgentDirectoryTest, NoAgentsAnswersAtOnceWithAnEmptyList) {
  FakeAgentClientPool pool;
  AgentDirectory directory(&pool, absl::Seconds(2));
  EXPECT_THAT(ListNow(directory, {}), IsEmpty());
  EXPECT_EQ(pool.status_calls(), 0);
}

}  // namespace
}  // namespace hoist::receiver
