// The simulator against the agent's real Engine API client (CurlDockerClient):
// every call the agent makes must parse and behave like dockerd's answer for
// the benchmark to exercise the real code paths.
#include "bench/docker_sim/docker_sim.h"

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/docker_client_curl.h"

namespace hoist::bench {
namespace {

using ::hoist::nodeagent::ContainerConfig;
using ::hoist::nodeagent::DockerClient;
using ::hoist::nodeagent::PullUpdate;
using ::testing::Contains;
using ::testing::HasSubstr;

class DockerSimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/docker-sim-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    DockerSimOptions options;
    options.socket_dir = tmpl;
    dir_ = tmpl;
    options.count = 2;
    for (auto& [op, latency] : options.latency) latency = absl::ZeroDuration();
    options.latency["pull"] = absl::Milliseconds(50);
    options.layers = 3;
    options.progress_lines = 4;
    options.health_delay = absl::Milliseconds(200);
    auto sim = DockerSim::Start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    docker_ = Client(0);
  }

  void TearDown() override {
    docker_.reset();
    sim_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<DockerClient> Client(int i) {
    nodeagent::CurlDockerClientOptions o;
    o.endpoint = "unix://" + sim_->SocketPath(i);
    auto client = nodeagent::NewCurlDockerClient(o);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  const std::string digest_ = "sha256:" + Sha256Hex("image v1");
  const std::string ref_ = "registry.sim/team/app@" + digest_;
  std::string dir_;
  std::unique_ptr<DockerSim> sim_;
  std::unique_ptr<DockerClient> docker_;
};

TEST_F(DockerSimTest, PingAndVersionSaySimulator) {
  ASSERT_TRUE(docker_->Ping().ok());
  auto version = docker_->Version();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->api_version, "1.41");
  EXPECT_THAT(version->version, HasSubstr("sim"));
}

TEST_F(DockerSimTest, PullStreamsLayerProgressAndRecordsTheRepoDigest) {
  EXPECT_EQ(docker_->InspectImage(ref_).status().code(),
            absl::StatusCode::kNotFound);
  std::vector<PullUpdate> updates;
  ASSERT_TRUE(
      docker_
          ->PullImage(ref_, "",
                      [&](const PullUpdate& u) { updates.push_back(u); })
          .ok());
  int downloading = 0, extracting = 0, complete = 0;
  bool digest_line = false, status_line = false;
  for (const PullUpdate& u : updates) {
    if (u.status == "Downloading") {
      ++downloading;
      EXPECT_GT(u.total, 0);
      EXPECT_LE(u.current, u.total);
    }
    extracting += u.status == "Extracting";
    complete += u.status == "Pull complete";
    digest_line |= u.status == "Digest: " + digest_;
    status_line |= u.status.rfind("Status: Downloaded newer image", 0) == 0;
  }
  EXPECT_EQ(downloading, 3 * 4);
  EXPECT_EQ(extracting, 3 * 4);
  EXPECT_EQ(complete, 3);
  EXPECT_TRUE(digest_line);
  EXPECT_TRUE(status_line);
  auto image = docker_->InspectImage(ref_);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_THAT(image->repo_digests, Contains(ref_));
  // A second pull reports the image up to date, with no layer lines.
  updates.clear();
  ASSERT_TRUE(
      docker_
          ->PullImage(ref_, "",
                      [&](const PullUpdate& u) { updates.push_back(u); })
          .ok());
  EXPECT_EQ(updates.back().status, "Status: Image is up to date for " + ref_);
  // Engines are independent: the other socket has no image.
  EXPECT_EQ(Client(1)->InspectImage(ref_).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(DockerSimTest, ContainerLifecycleAsTheAgentDrivesIt) {
  ContainerConfig config;
  config.image = ref_;
  config.labels = {{"hoist.service", "web"}, {"hoist.digest", digest_}};
  EXPECT_EQ(docker_->CreateContainer("web.hoist-new-1", config).status().code(),
            absl::StatusCode::kNotFound);  // image not pulled yet
  ASSERT_TRUE(docker_->PullImage(ref_, "", nullptr).ok());
  auto id = docker_->CreateContainer("web.hoist-new-1", config);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(docker_->CreateContainer("web.hoist-new-1", config).status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(docker_->StartContainer(*id).ok());
  ASSERT_TRUE(docker_->StartContainer(*id).ok());  // 304: already running
  auto info = docker_->InspectContainer(*id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->running);
  EXPECT_EQ(info->health, "starting");
  EXPECT_NE(info->started_at, absl::InfinitePast());
  // Healthy once the configured 200 ms health delay has passed (bounded poll).
  std::string health;
  for (int i = 0; i < 500 && health != "healthy"; ++i) {
    health = docker_->InspectContainer(*id)->health;
    if (health != "healthy") absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(health, "healthy");
  EXPECT_GE(absl::Now() - info->started_at, absl::Milliseconds(200));
  ASSERT_TRUE(docker_->RenameContainer(*id, "web").ok());
  EXPECT_EQ(docker_->InspectContainer("web")->id, *id);
  ASSERT_TRUE(docker_->UpdateRestartPolicy(*id, "unless-stopped").ok());
  EXPECT_EQ(docker_->InspectContainer(*id)->restart_policy, "unless-stopped");
  auto listed = docker_->ListContainers("hoist.service=web");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "web");
  EXPECT_EQ((*listed)[0].labels.at("hoist.digest"), digest_);
  EXPECT_TRUE(docker_->ListContainers("hoist.service=other")->empty());
  auto logs = docker_->ContainerLogs(*id, 10);
  ASSERT_TRUE(logs.ok()) << logs.status();
  EXPECT_THAT(*logs, HasSubstr("simulated container web"));
  EXPECT_EQ(docker_->RemoveContainer(*id, false).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(docker_->RemoveImage(ref_, false).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(docker_->StopContainer(*id, absl::Seconds(1)).ok());
  EXPECT_FALSE(docker_->InspectContainer(*id)->running);
  ASSERT_TRUE(docker_->RemoveContainer(*id, false).ok());
  EXPECT_EQ(docker_->InspectContainer(*id).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(docker_->RemoveImage(ref_, false).ok());
  EXPECT_TRUE(docker_->ListImages()->empty());
}

TEST(DockerSimLatency, ParsesKnownOperationsAndRejectsOthers) {
  DockerSimOptions options;
  ASSERT_TRUE(ParseLatencies("pull=2000,start=7", &options).ok());
  EXPECT_EQ(options.latency["pull"], absl::Milliseconds(2000));
  EXPECT_EQ(options.latency["start"], absl::Milliseconds(7));
  EXPECT_FALSE(ParseLatencies("fly=1", &options).ok());
  EXPECT_FALSE(ParseLatencies("pull=-1", &options).ok());
}

// GET /events as the agent's ContainerWatcher follows it: open and idle
// until something changes, then the container events the engine's own
// changes cause (filtered by "event"), until the stream is cancelled.
TEST_F(DockerSimTest, EventsStreamTheEngineOwnContainerChanges) {
  ASSERT_TRUE(docker_->PullImage(ref_, "", nullptr).ok());
  std::unique_ptr<DockerClient> follower = Client(0);
  nodeagent::EventStreamCancel cancel;
  absl::Mutex mu;
  std::vector<std::string> seen;  // "action name"
  bool subscribed = false;
  nodeagent::EventHandlers handlers;
  handlers.on_subscribed = [&] {
    absl::MutexLock lock(&mu);
    subscribed = true;
    return absl::OkStatus();
  };
  handlers.on_event = [&](const nodeagent::DockerEvent& e) {
    absl::MutexLock lock(&mu);
    seen.push_back(e.action + " " + e.attributes.at("name"));
  };
  absl::Status ended;
  std::thread thread([&] {
    ended = follower->FollowEvents(
        {{"type", {"container"}}, {"event", {"start", "die", "destroy"}}},
        handlers, &cancel);
  });
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&subscribed), absl::Seconds(10)));
  }
  ContainerConfig config;
  config.image = ref_;
  auto id = docker_->CreateContainer("web", config);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(docker_->StartContainer(*id).ok());
  ASSERT_TRUE(docker_->RemoveContainer(*id, /*force=*/true).ok());
  auto three = [&] { return seen.size() >= 3; };
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&three), absl::Seconds(10)));
    EXPECT_THAT(seen,
                ::testing::ElementsAre("start web", "die web", "destroy web"));
  }
  cancel.Cancel();
  thread.join();
  EXPECT_EQ(ended.code(), absl::StatusCode::kCancelled) << ended;
}

// `docker rm -f NAME` of a running container (what fleet_bench --drift does
// through the same Engine API call, DELETE /containers/NAME?force=1): as
// dockerd 20.10, kill (signal 9), die (exitCode 137), then destroy; the
// container is gone and a second removal is NOT_FOUND.
TEST_F(DockerSimTest, ForcedRemoveOfARunningContainerSendsDockerRmFEvents) {
  ASSERT_TRUE(docker_->PullImage(ref_, "", nullptr).ok());
  ContainerConfig config;
  config.image = ref_;
  auto id = docker_->CreateContainer("web", config);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(docker_->StartContainer(*id).ok());
  std::unique_ptr<DockerClient> follower = Client(0);
  nodeagent::EventStreamCancel cancel;
  absl::Mutex mu;
  std::vector<nodeagent::DockerEvent> seen;
  bool subscribed = false;
  nodeagent::EventHandlers handlers;
  handlers.on_subscribed = [&] {
    absl::MutexLock lock(&mu);
    subscribed = true;
    return absl::OkStatus();
  };
  handlers.on_event = [&](const nodeagent::DockerEvent& e) {
    absl::MutexLock lock(&mu);
    seen.push_back(e);
  };
  std::thread thread([&] {
    follower->FollowEvents({{"type", {"container"}}}, handlers, &cancel)
        .IgnoreError();
  });
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&subscribed), absl::Seconds(10)));
  }
  ASSERT_TRUE(docker_->RemoveContainer("web", /*force=*/true).ok());
  auto three = [&] { return seen.size() >= 3; };
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&three), absl::Seconds(10)));
    std::vector<std::string> actions;
    for (const auto& e : seen) {
      actions.push_back(e.action);
      EXPECT_EQ(e.id, *id);
      EXPECT_EQ(e.attributes.at("name"), "web");
    }
    EXPECT_THAT(actions, ::testing::ElementsAre("kill", "die", "destroy"));
    if (seen.size() == 3) {
      EXPECT_EQ(seen[0].attributes.at("signal"), "9");
      EXPECT_EQ(seen[1].attributes.at("exitCode"), "137");
    }
  }
  cancel.Cancel();
  thread.join();
  EXPECT_EQ(docker_->InspectContainer("web").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(docker_->RemoveContainer("web", /*force=*/true).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hoist::bench
