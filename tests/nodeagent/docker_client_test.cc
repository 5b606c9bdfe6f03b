// The libcurl DockerClient against the harness's real dockerd and registry.
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nodeagent/docker_client_curl.h"
#include "tests/harness/harness.h"

namespace hoist::nodeagent {
namespace {

using ::hoist::testing::Harness;
using ::testing::HasSubstr;

class DockerClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::hoist::testing::RemoveAllContainers(Harness().docker_endpoint);
    CurlDockerClientOptions options;
    options.endpoint = Harness().docker_endpoint;
    auto client = NewCurlDockerClient(options);
    ASSERT_TRUE(client.ok()) << client.status();
    docker_ = std::move(*client);
  }
  void TearDown() override {
    ::hoist::testing::RemoveAllContainers(Harness().docker_endpoint);
  }

  std::string Ref(const std::string& name) {
    return absl::StrCat(Harness().image_repo, "@", Harness().Digest(name));
  }

  // Pulls `name` unless present.
  void Ensure(const std::string& name) {
    if (docker_->InspectImage(Ref(name)).ok()) return;
    ASSERT_TRUE(docker_->PullImage(Ref(name), "", nullptr).ok());
  }

  std::unique_ptr<DockerClient> docker_;
};

TEST_F(DockerClientTest, PingAndVersion) {
  EXPECT_TRUE(docker_->Ping().ok());
  auto version = docker_->Version();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_FALSE(version->version.empty());
  EXPECT_THAT(version->api_version, ::testing::MatchesRegex("1\\.[0-9]+"));
}

TEST_F(DockerClientTest, MissingSocketIsUnavailable) {
  CurlDockerClientOptions options;
  options.endpoint =
      "unix://" + ::hoist::testing::MakeTempDir("nosock") + "/docker.sock";
  auto client = NewCurlDockerClient(options);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->Ping().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->InspectContainer("x").status().code(),
            absl::StatusCode::kUnavailable);
  options.endpoint = "tcp://127.0.0.1:2375";
  EXPECT_EQ(NewCurlDockerClient(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DockerClientTest, PullReportsProgressAndRepoDigest) {
  // Start from an engine without the image so the layers really download.
  // By id with force: removes every tag and digest reference of the image.
  if (auto present = docker_->InspectImage(Ref("v2")); present.ok()) {
    ASSERT_TRUE(docker_->RemoveImage(present->id, /*force=*/true).ok());
  }
  ASSERT_EQ(docker_->InspectImage(Ref("v2")).status().code(),
            absl::StatusCode::kNotFound);
  std::vector<PullUpdate> updates;
  absl::Status pulled = docker_->PullImage(
      Ref("v2"), "", [&](const PullUpdate& u) { updates.push_back(u); });
  ASSERT_TRUE(pulled.ok()) << pulled;
  bool saw_bytes = false, saw_complete = false;
  for (const PullUpdate& u : updates) {
    if (u.total > 0 && u.current > 0 && !u.layer.empty()) saw_bytes = true;
    if (u.status == "Pull complete") saw_complete = true;
  }
  EXPECT_TRUE(saw_bytes) << updates.size() << " updates";
  EXPECT_TRUE(saw_complete);
  auto image = docker_->InspectImage(Ref("v2"));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_THAT(image->repo_digests, ::testing::Contains(Ref("v2")));
  EXPECT_TRUE(absl::StartsWith(image->id, "sha256:"));
  auto images = docker_->ListImages();
  ASSERT_TRUE(images.ok());
  bool listed = false;
  for (const ImageInfo& i : *images) listed = listed || i.id == image->id;
  EXPECT_TRUE(listed);
}

TEST_F(DockerClientTest, PullOfAMissingDigestCarriesDockersMessage) {
  const std::string missing =
      absl::StrCat(Harness().image_repo, "@sha256:", std::string(64, '0'));
  absl::Status pulled = docker_->PullImage(missing, "", nullptr);
  EXPECT_EQ(pulled.code(), absl::StatusCode::kNotFound) << pulled;
  EXPECT_THAT(std::string(pulled.message()), HasSubstr("manifest"));
  EXPECT_EQ(docker_->InspectImage(missing).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(DockerClientTest, ContainerLifecycle) {
  Ensure("v1");
  const int port = ::hoist::testing::FreeTcpPort();
  ContainerConfig config;
  config.image = Ref("v1");
  config.env = {"MODE=test"};
  config.ports = {absl::StrCat("127.0.0.1:", port, ":8080/tcp")};
  config.labels = {{"hoist.service", "dc-test"}, {"team", "web"}};
  config.restart_policy = "no";
  config.stop_timeout_seconds = 3;
  config.memory_bytes = 64 * 1024 * 1024;
  config.nano_cpus = 500000000;
  auto id = docker_->CreateContainer("dc-life", config);
  ASSERT_TRUE(id.ok()) << id.status();
  // A second container with that name is a conflict.
  EXPECT_EQ(docker_->CreateContainer("dc-life", config).status().code(),
            absl::StatusCode::kAlreadyExists);

  auto info = docker_->InspectContainer("dc-life");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id, *id);
  EXPECT_EQ(info->name, "dc-life");
  EXPECT_EQ(info->status, "created");
  EXPECT_FALSE(info->running);
  EXPECT_EQ(info->labels.at("team"), "web");
  EXPECT_EQ(info->image, Ref("v1"));

  ASSERT_TRUE(docker_->StartContainer(*id).ok());
  ASSERT_TRUE(docker_->StartContainer(*id).ok());  // already running: OK
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/");
  EXPECT_TRUE(::hoist::testing::WaitFor(
      [&] {
        auto body = ::hoist::testing::HttpGet(url, absl::Seconds(1));
        return body.ok() && absl::StartsWith(*body, "hoist-test v1");
      },
      absl::Seconds(15)));
  info = docker_->InspectContainer(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->running);
  EXPECT_GT(info->started_at, absl::Now() - absl::Minutes(5));

  auto listed = docker_->ListContainers("hoist.service=dc-test");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "dc-life");
  EXPECT_EQ((*listed)[0].state, "running");
  auto none = docker_->ListContainers("hoist.service=other");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  ASSERT_TRUE(docker_->UpdateRestartPolicy(*id, "unless-stopped").ok());
  EXPECT_EQ(docker_->InspectContainer(*id)->restart_policy, "unless-stopped");
  ASSERT_TRUE(docker_->RenameContainer(*id, "dc-life-renamed").ok());
  EXPECT_EQ(docker_->InspectContainer(*id)->name, "dc-life-renamed");

  ASSERT_TRUE(docker_->StopContainer(*id, absl::Seconds(5)).ok());
  ASSERT_TRUE(docker_->StopContainer(*id, absl::Seconds(5))
                  .ok());  // already stopped: OK
  EXPECT_FALSE(docker_->InspectContainer(*id)->running);
  ASSERT_TRUE(docker_->RemoveContainer(*id, /*force=*/false).ok());
  EXPECT_EQ(docker_->InspectContainer(*id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(docker_->RemoveContainer(*id, true).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(DockerClientTest, LogsAreDemultiplexedAndExitCodeKept) {
  Ensure("crash");
  ContainerConfig config;
  config.image = Ref("crash");
  auto id = docker_->CreateContainer("dc-crash", config);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(docker_->StartContainer(*id).ok());
  ASSERT_TRUE(::hoist::testing::WaitFor(
      [&] {
        auto info = docker_->InspectContainer(*id);
        return info.ok() && info->status == "exited";
      },
      absl::Seconds(15)));
  EXPECT_EQ(docker_->InspectContainer(*id)->exit_code, 1);
  auto logs = docker_->ContainerLogs(*id, 20);
  ASSERT_TRUE(logs.ok()) << logs.status();
  EXPECT_EQ(*logs, "hoist-test crash\n");  // no stream headers left
}

TEST_F(DockerClientTest, StopKillsAContainerThatIgnoresSigterm) {
  Ensure("stubborn");
  ContainerConfig config;
  config.image = Ref("stubborn");
  auto id = docker_->CreateContainer("dc-stubborn", config);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(docker_->StartContainer(*id).ok());
  const absl::Time start = absl::Now();
  ASSERT_TRUE(docker_->StopContainer(*id, absl::Seconds(1)).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  auto info = docker_->InspectContainer(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->running);
  EXPECT_EQ(info->exit_code, 137);
}

TEST_F(DockerClientTest, EngineErrorsMapToStatusCodes) {
  EXPECT_EQ(docker_->InspectContainer("no-such-container").status().code(),
            absl::StatusCode::kNotFound);
  ContainerConfig config;
  config.image =
      absl::StrCat(Harness().image_repo, "@sha256:", std::string(64, '1'));
  auto created = docker_->CreateContainer("dc-noimage", config);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(created.status().message()),
              HasSubstr("No such image"));
  config.image = Ref("v1");
  config.ports = {"127.0.0.1:70000:8080"};
  EXPECT_EQ(docker_->CreateContainer("dc-badport", config).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(docker_->StartContainer("no-such-container").code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hoist::nodeagent
