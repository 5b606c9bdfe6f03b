// DeployManager on the harness's real dockerd and registry: deploys answer on
// a published 127.0.0.1 port, failures roll back, a killed agent recovers.
#include <memory>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "nodeagent/deploy_manager.h"
#include "nodeagent/docker_client_curl.h"
#include "tests/harness/harness.h"

namespace hoist::nodeagent {
namespace {

using ::hoist::testing::Harness;
using ::testing::Contains;
using ::testing::HasSubstr;

// Runs `command` (a shell command line); its output, or why it failed.
absl::StatusOr<std::string> Shell(const std::string& command) {
  ::hoist::testing::CommandResult r = ::hoist::testing::RunCommand(command);
  if (r.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat(command, ": exit ", r.exit_code, ": ", r.output));
  }
  return r.output;
}

// Makes `to_repo`:`tag` in the harness registry point at the manifest of
// hoist-test:`from_tag`, with `suffix` appended to its bytes: the same image,
// and a new digest when `suffix` is not empty. That is what a push does to
// the registry, without tagging anything in a local engine. Returns the
// manifest's digest.
absl::StatusOr<std::string> PutManifest(const std::string& from_tag,
                                        const std::string& to_repo,
                                        const std::string& tag,
                                        const std::string& suffix = "") {
  const std::string curl = "curl -sSf --max-time 30 ";
  const std::string v2 = absl::StrCat("http://", Harness().registry, "/v2/");
  const std::string file =
      ::hoist::testing::MakeTempDir("manifest") + "/manifest.json";
  HOIST_RETURN_IF_ERROR(
      Shell(
          absl::StrCat(curl,
                       "-H 'Accept: "
                       "application/vnd.docker.distribution.manifest.v2+json, "
                       "application/vnd.oci.image.manifest.v1+json' -o ",
                       file, " ", v2, "hoist-test/manifests/", from_tag))
          .status());
  HOIST_ASSIGN_OR_RETURN(std::string manifest, ReadFile(file));
  const nlohmann::json parsed = nlohmann::json::parse(manifest, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("mediaType") ||
      !parsed.contains("config") || !parsed.contains("layers")) {
    return absl::InternalError("unexpected manifest: " + manifest);
  }
  // The blobs must be in the target repository before its manifest.
  std::vector<std::string> blobs = {parsed["config"]["digest"]};
  for (const auto& layer : parsed["layers"]) blobs.push_back(layer["digest"]);
  for (const std::string& blob : blobs) {
    HOIST_RETURN_IF_ERROR(
        Shell(absl::StrCat(curl, "-X POST '", v2, to_repo,
                           "/blobs/uploads/?mount=", blob, "&from=hoist-test'"))
            .status());
  }
  manifest += suffix;
  HOIST_RETURN_IF_ERROR(WriteFileAtomically(file, manifest));
  HOIST_RETURN_IF_ERROR(
      Shell(absl::StrCat(curl, "-X PUT -H 'Content-Type: ",
                         parsed["mediaType"].get<std::string>(),
                         "' --data-binary @", file, " ", v2, to_repo,
                         "/manifests/", tag))
          .status());
  return "sha256:" + Sha256Hex(manifest);
}

// Puts a file that is not a program over /bin/busybox in container `id` of
// the root engine (the test images' /bin/sh links to it). A running
// container runs on (its programs are loaded) and stops as usual on
// SIGTERM, but can never be started again: runc refuses to exec /bin/sh.
absl::Status BreakBusybox(const std::string& id) {
  const std::string file = ::hoist::testing::MakeTempDir("broken") + "/busybox";
  HOIST_RETURN_IF_ERROR(WriteFileAtomically(file, "not a program\n"));
  return Shell(absl::StrCat("DOCKER_CONFIG=", Harness().root,
                            "/docker-config docker -H ",
                            Harness().docker_endpoint, " cp ", file, " ", id,
                            ":/bin/busybox"))
      .status();
}

class DeployManagerDockerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::hoist::testing::RemoveAllContainers(Harness().docker_endpoint);
    CurlDockerClientOptions options;
    options.endpoint = Harness().docker_endpoint;
    auto client = NewCurlDockerClient(options);
    ASSERT_TRUE(client.ok()) << client.status();
    docker_ = std::shared_ptr<DockerClient>(std::move(*client));
    state_dir_ = ::hoist::testing::MakeTempDir("agent-state");
    port_ = ::hoist::testing::FreeTcpPort();
    const ::testing::TestInfo* test =
        ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = absl::StrCat("dm-", test->name());
    for (char& c : name_) {
      if (!absl::ascii_isalnum(c) && c != '-') c = '-';
    }
    manager_ = NewManager();
  }
  void TearDown() override {
    manager_.reset();
    ::hoist::testing::RemoveAllContainers(Harness().docker_endpoint);
  }

  std::unique_ptr<DeployManager> NewManager(
      absl::Duration settle = absl::Milliseconds(500)) {
    DeployManager::Options options;
    options.docker = docker_;
    options.host = "it-host";
    options.state_dir = state_dir_;
    options.settle = settle;
    auto manager = DeployManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return manager.ok() ? std::move(*manager) : nullptr;
  }

  std::string Url() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/");
  }

  hoist::v1::DeployRequest Request(const std::string& id,
                                   const std::string& image_name,
                                   int timeout_seconds = 20) {
    hoist::v1::DeployRequest request;
    request.set_deploy_id(id);
    request.set_service("svc-" + name_);
    request.set_image(Harness().image_repo);
    request.set_digest(Harness().Digest(image_name));
    request.mutable_container()->set_name(name_);
    request.mutable_container()->add_ports(
        absl::StrCat("127.0.0.1:", port_, ":8080/tcp"));
    request.mutable_container()->set_restart("unless-stopped");
    request.mutable_container()->set_stop_timeout_seconds(5);
    request.mutable_health()->set_http_get(Url());
    request.mutable_health()->set_interval_seconds(1);
    request.mutable_health()->set_timeout_seconds(timeout_seconds);
    return request;
  }

  hoist::v1::DeployEvent Run(const hoist::v1::DeployRequest& request) {
    auto log = manager_->Deploy(request);
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return {};
    EXPECT_TRUE((*log)->WaitFinished(absl::Seconds(120)));
    return (*log)->last();
  }

  // The body served on the published port, or the error.
  std::string Serving() {
    auto body = ::hoist::testing::HttpGet(Url(), absl::Seconds(2));
    return body.ok() ? *body : body.status().ToString();
  }

  std::vector<ContainerSummary> All() {
    auto all = docker_->ListContainers("");
    EXPECT_TRUE(all.ok()) << all.status();
    return all.ok() ? *all : std::vector<ContainerSummary>{};
  }

  std::shared_ptr<DockerClient> docker_;
  std::string state_dir_;
  int port_ = 0;
  std::string name_;
  std::unique_ptr<DeployManager> manager_;
};

TEST_F(DeployManagerDockerTest, FirstDeployThenUpgradeChangesTheAnswer) {
  const auto first = Run(Request("it-1", "v1"));
  ASSERT_EQ(first.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << first.DebugString();
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v1"));
  const auto second = Run(Request("it-2", "v2"));
  ASSERT_EQ(second.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << second.DebugString();
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v2"));
  // Exactly one container, under the service's name, with its restart policy.
  const auto all = All();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, name_);
  auto info = docker_->InspectContainer(name_);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id, second.container_id());
  EXPECT_EQ(info->restart_policy, "unless-stopped");
  EXPECT_EQ(info->labels.at("hoist.digest"), Harness().Digest("v2"));
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->containers_size(), 1);
  EXPECT_EQ(list->containers(0).state(), "running");
  EXPECT_EQ(list->containers(0).digest(), Harness().Digest("v2"));
  EXPECT_THAT(list->containers(0).previous_digests(),
              ::testing::ElementsAre(Harness().Digest("v1")));
  EXPECT_GT(list->containers(0).started().seconds(), 0);

  // Rollback takes it back to v1.
  hoist::v1::RollbackRequest rollback;
  rollback.set_deploy_id("it-rb");
  rollback.set_container_name(name_);
  auto log = manager_->Rollback(rollback);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->WaitFinished(absl::Seconds(120)));
  EXPECT_EQ((*log)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v1"));
}

TEST_F(DeployManagerDockerTest, CrashRollsBackAndTheOldOneServes) {
  ASSERT_EQ(Run(Request("it-1", "v2")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->InspectContainer(name_)->id;
  const auto last = Run(Request("it-2", "crash"));
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK)
      << last.DebugString();
  EXPECT_EQ(last.exit_code(), 1);
  EXPECT_THAT(last.log_tail(), HasSubstr("hoist-test crash"));
  // ROLLED_BACK means the old container was started again; its first answer
  // can come a moment later (docker-proxy, see bench/README.md).
  EXPECT_TRUE(::hoist::testing::WaitFor(
      [&] { return absl::StrContains(Serving(), "hoist-test v2"); },
      absl::Seconds(10)))
      << Serving();
  EXPECT_EQ(docker_->InspectContainer(name_)->id, old_id);
  EXPECT_EQ(All().size(), 1u);
}

TEST_F(DeployManagerDockerTest, UnhealthyRollsBackAfterTheTimeout) {
  ASSERT_EQ(Run(Request("it-1", "v1")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const absl::Time start = absl::Now();
  const auto last = Run(Request("it-2", "unhealthy", /*timeout_seconds=*/3));
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK)
      << last.DebugString();
  EXPECT_THAT(last.error(), HasSubstr("not healthy within 3s"));
  EXPECT_GE(absl::Now() - start, absl::Seconds(3));
  EXPECT_TRUE(::hoist::testing::WaitFor(
      [&] { return absl::StrContains(Serving(), "hoist-test v1"); },
      absl::Seconds(10)))
      << Serving();
  EXPECT_EQ(All().size(), 1u);
}

TEST_F(DeployManagerDockerTest, NonexistentDigestFailsAndTouchesNothing) {
  ASSERT_EQ(Run(Request("it-1", "v1")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const auto before = docker_->InspectContainer(name_);
  ASSERT_TRUE(before.ok());
  auto request = Request("it-2", "v2");
  request.set_digest("sha256:" + std::string(64, 'e'));
  const auto last = Run(request);
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_FALSE(last.error().empty());
  const auto after = docker_->InspectContainer(name_);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->id, before->id);
  EXPECT_TRUE(after->running);
  EXPECT_EQ(after->started_at, before->started_at);  // never stopped
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v1"));
}

TEST_F(DeployManagerDockerTest, DigestOfAnotherRepositoryFailsUntouched) {
  ASSERT_EQ(Run(Request("it-1", "v1")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const auto before = docker_->InspectContainer(name_);
  ASSERT_TRUE(before.ok());
  // v2's digest asked of a repository that does not hold it.
  auto request = Request("it-2", "v2");
  request.set_image(Harness().registry + "/hoist-test-elsewhere");
  const auto last = Run(request);
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(docker_->InspectContainer(name_)->started_at, before->started_at);
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v1"));
}

TEST_F(DeployManagerDockerTest, ConcurrentDeploysOfOneNameAndAttach) {
  // Slow the first deploy down with a health check that needs a few probes.
  auto first_request = Request("it-a", "v1");
  auto first = manager_->Deploy(first_request);
  ASSERT_TRUE(first.ok()) << first.status();
  auto other = manager_->Deploy(Request("it-b", "v2"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("it-a"));
  auto attached = manager_->Deploy(first_request);
  ASSERT_TRUE(attached.ok());
  ASSERT_TRUE((*first)->WaitFinished(absl::Seconds(120)));
  ASSERT_TRUE((*attached)->WaitFinished(absl::Seconds(1)));
  EXPECT_EQ((*first)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ((*attached)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  std::vector<hoist::v1::DeployEvent> a, b;
  (*first)->Read(0, &a);
  (*attached)->Read(0, &b);
  EXPECT_EQ(a.size(), b.size());
  EXPECT_EQ(All().size(), 1u);
  // Right after a terminal event the name is free again.
  EXPECT_EQ(Run(Request("it-c", "v2")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v2"));
}

TEST_F(DeployManagerDockerTest, ForeignContainerIsRefused) {
  ContainerConfig config;
  config.image =
      absl::StrCat(Harness().image_repo, "@", Harness().Digest("v1"));
  ASSERT_TRUE(docker_->PullImage(config.image, "", nullptr).ok());
  auto id = docker_->CreateContainer(name_, config);
  ASSERT_TRUE(id.ok()) << id.status();
  auto log = manager_->Deploy(Request("it-1", "v2"));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  auto info = docker_->InspectContainer(name_);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id, *id);
}

TEST_F(DeployManagerDockerTest, RecoverRestoresAHalfSwappedPairAfterAKill) {
  ASSERT_EQ(Run(Request("it-1", "v1")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  manager_.reset();  // the agent "dies"
  // What a SIGKILL during the health check of v2 leaves behind.
  const std::string old_id = docker_->InspectContainer(name_)->id;
  ASSERT_TRUE(docker_->StopContainer(old_id, absl::Seconds(5)).ok());
  const std::string ref =
      absl::StrCat(Harness().image_repo, "@", Harness().Digest("v2"));
  ASSERT_TRUE(docker_->PullImage(ref, "", nullptr).ok());
  ContainerConfig config;
  config.image = ref;
  config.ports = {absl::StrCat("127.0.0.1:", port_, ":8080/tcp")};
  config.labels = {{"hoist.service", "svc"}, {"hoist.deploy_id", "it-2"}};
  const std::string temp = name_ + ".hoist-new-it2";
  auto new_id = docker_->CreateContainer(temp, config);
  ASSERT_TRUE(new_id.ok()) << new_id.status();
  ASSERT_TRUE(docker_->StartContainer(*new_id).ok());
  {
    auto store = StateStore::Open(state_dir_ + "/state.json");
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)
                    ->Update(name_,
                             [&](ContainerState* s) {
                               s->journal =
                                   DeployJournal{"it-2",
                                                 old_id,
                                                 true,
                                                 temp,
                                                 *new_id,
                                                 JournalPhase::kHealthChecking,
                                                 "unless-stopped",
                                                 Harness().Digest("v2")};
                             })
                    .ok());
  }
  manager_ = NewManager();
  ASSERT_TRUE(manager_->Recover().ok());
  EXPECT_TRUE(::hoist::testing::WaitFor(
      [&] { return absl::StrContains(Serving(), "hoist-test v1"); },
      absl::Seconds(15)));
  EXPECT_EQ(docker_->InspectContainer(temp).status().code(),
            absl::StatusCode::kNotFound);
  auto list = manager_->ListContainers();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->containers_size(), 1);
  EXPECT_EQ(list->containers(0).last_phase(),
            hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_THAT(list->containers(0).last_error(),
              HasSubstr("agent restarted mid-deploy"));
  // And the agent deploys normally afterwards.
  EXPECT_EQ(Run(Request("it-3", "v2")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v2"));
}

TEST_F(DeployManagerDockerTest, TagDeployResolvesAndRecordsTheDigest) {
  auto request = Request("it-tag", "v2");
  request.clear_digest();
  request.set_tag("v2");
  const auto last = Run(request);
  ASSERT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << last.DebugString();
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v2"));
  EXPECT_EQ(docker_->InspectContainer(name_)->labels.at("hoist.digest"),
            Harness().Digest("v2"));
}

TEST_F(DeployManagerDockerTest, TagMovedInTheRegistryIsPulledAgain) {
  // A repository of its own: moving its :latest disturbs no other test.
  const std::string repo = Harness().registry + "/hoist-moving";
  // An earlier run's :latest would already be v2 here.
  docker_->RemoveImage(repo + ":latest", /*force=*/false).IgnoreError();
  auto pushed = PutManifest("v1", "hoist-moving", "latest");
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  ASSERT_EQ(*pushed, Harness().Digest("v1"));
  auto request = Request("it-1", "v1");
  request.set_image(repo);
  request.clear_digest();
  request.set_tag("latest");
  ASSERT_EQ(Run(request).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v1"));

  // The registry moves :latest to v2; the engine still has v1 as :latest.
  pushed = PutManifest("v2", "hoist-moving", "latest");
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  auto local = docker_->InspectImage(repo + ":latest");
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_THAT(local->repo_digests,
              Contains(repo + "@" + Harness().Digest("v1")));
  request.set_deploy_id("it-2");
  const auto second = Run(request);
  ASSERT_EQ(second.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << second.DebugString();
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v2"));
  EXPECT_EQ(docker_->InspectContainer(name_)->labels.at("hoist.digest"),
            Harness().Digest("v2"));
}

TEST_F(DeployManagerDockerTest, DigestOfTheImagesSecondRepositoryIsFound) {
  // hoist-twin holds v1's image under a manifest one byte longer: the same
  // image, another digest. The engine keeps v1's hoist-test@ digest too, and
  // Docker sorts RepoDigests, so hoist-test@… comes before hoist-twin@….
  const std::string twin = Harness().registry + "/hoist-twin";
  ASSERT_TRUE(docker_
                  ->PullImage(absl::StrCat(Harness().image_repo, "@",
                                           Harness().Digest("v1")),
                              "", nullptr)
                  .ok());
  auto digest = PutManifest("v1", "hoist-twin", "v1", "\n");
  ASSERT_TRUE(digest.ok()) << digest.status();
  ASSERT_NE(*digest, Harness().Digest("v1"));
  // Pulled by an earlier run: this one pulls it again.
  docker_->RemoveImage(twin + "@" + *digest, /*force=*/false).IgnoreError();
  auto request = Request("it-1", "v1");
  request.set_image(twin);
  request.set_digest(*digest);
  const auto last = Run(request);
  auto image = docker_->InspectImage(twin + "@" + *digest);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_GE(image->repo_digests.size(), 2u);
  ASSERT_FALSE(absl::StartsWith(image->repo_digests[0], twin + "@"))
      << "precondition: another repository's digest comes first: "
      << absl::StrJoin(image->repo_digests, " ");
  ASSERT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << last.DebugString();
  EXPECT_EQ(docker_->InspectContainer(name_)->labels.at("hoist.digest"),
            *digest);
  EXPECT_THAT(Serving(), HasSubstr("hoist-test v1"));
}

TEST_F(DeployManagerDockerTest, OldThatCannotStartAgainFailsWithBothTails) {
  auto first = Request("it-1", "v1");
  // v1's own command after a line of its own, to find in the log tail.
  for (const char* arg : {"/bin/sh", "-c",
                          "echo hoist-test old; trap 'exit 0' TERM; "
                          "/bin/httpd -f -p 8080 -h /www & wait"}) {
    first.mutable_container()->add_command(arg);
  }
  ASSERT_EQ(Run(first).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  const std::string old_id = docker_->InspectContainer(name_)->id;
  ASSERT_TRUE(BreakBusybox(old_id).ok());
  const auto last = Run(Request("it-2", "crash"));
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED) << last.DebugString();
  EXPECT_THAT(last.error(), HasSubstr("new container exited with code 1"));
  EXPECT_THAT(last.error(),
              HasSubstr("could not start the old container again: "));
  EXPECT_THAT(last.error(), HasSubstr("permission denied"));
  // 126: Docker's code for a command that cannot be invoked.
  EXPECT_THAT(last.error(), HasSubstr("(old container exit code 126)"));
  EXPECT_EQ(last.exit_code(), 1);  // the new container's
  EXPECT_THAT(last.log_tail(), HasSubstr("new container:\nhoist-test crash\n"));
  EXPECT_THAT(last.log_tail(), HasSubstr("old container:\nhoist-test old\n"));
  // The old container is left as it is, for the operator to look at.
  auto old = docker_->InspectContainer(name_);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->id, old_id);
  EXPECT_FALSE(old->running);
  EXPECT_EQ(All().size(), 1u);
}

TEST_F(DeployManagerDockerTest,
       WithoutHealthCheckAnExitWithinTheSettleRollsBack) {
  // The container lives 2 s, the settle time is 5 s: margins that hold on a
  // loaded machine, both for the first look (while it still runs; start to
  // first look took 0.2 s here) and for its exit (before the settle time is
  // over).
  manager_ = NewManager(/*settle=*/absl::Seconds(5));
  ASSERT_EQ(Run(Request("it-1", "v1")).phase(),
            hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto request = Request("it-2", "v2");
  request.clear_health();
  for (const char* arg :
       {"/bin/sh", "-c", "sleep 2; echo hoist-test gave up >&2; exit 1"}) {
    request.mutable_container()->add_command(arg);
  }
  const auto last = Run(request);
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK)
      << last.DebugString();
  EXPECT_THAT(last.error(), HasSubstr("new container exited with code 1"));
  EXPECT_EQ(last.exit_code(), 1);
  EXPECT_THAT(last.log_tail(), HasSubstr("hoist-test gave up"));
  EXPECT_TRUE(::hoist::testing::WaitFor(
      [&] { return absl::StrContains(Serving(), "hoist-test v1"); },
      absl::Seconds(10)))
      << Serving();
  EXPECT_EQ(All().size(), 1u);
}

TEST_F(DeployManagerDockerTest, StatusTalksToTheEngine) {
  const hoist::v1::AgentStatus status = manager_->GetStatus();
  EXPECT_TRUE(status.docker_reachable());
  EXPECT_FALSE(status.docker_version().empty());
  EXPECT_EQ(status.host(), "it-host");
  EXPECT_TRUE(manager_->DockerReachable());
}

}  // namespace
}  // namespace hoist::nodeagent
