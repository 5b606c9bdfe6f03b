// Pure helpers of the Docker client and the agent's state store.
#include <filesystem>

#include "absl/strings/escaping.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "nodeagent/docker_client.h"
#include "nodeagent/state_store.h"
#include "tests/common/temp_dir.h"

namespace hoist::nodeagent {
namespace {

TEST(ParsePortSpecTest, Forms) {
  struct Case {
    std::string spec, ip, host, container, proto;
  };
  const std::vector<Case> cases = {
      {"8080", "", "", "8080", "tcp"},
      {"53/udp", "", "", "53", "udp"},
      {"9000:8080", "", "9000", "8080", "tcp"},
      {"127.0.0.1:8080:8080/tcp", "127.0.0.1", "8080", "8080", "tcp"},
      {"127.0.0.1::8080", "127.0.0.1", "", "8080", "tcp"},
      {"[::1]:8080:80", "::1", "8080", "80", "tcp"},
  };
  for (const Case& c : cases) {
    auto parsed = ParsePortSpec(c.spec);
    ASSERT_TRUE(parsed.ok()) << c.spec << ": " << parsed.status();
    EXPECT_EQ(parsed->host_ip, c.ip) << c.spec;
    EXPECT_EQ(parsed->host_port, c.host) << c.spec;
    EXPECT_EQ(parsed->container_port, c.container) << c.spec;
    EXPECT_EQ(parsed->protocol, c.proto) << c.spec;
  }
  for (const std::string bad :
       {"", "x", "0", "70000", "1:2:3:4", "80/icmp", "a.b:80:80",
        "127.0.0.1:80:80;rm", "[::1:80:80"}) {
    EXPECT_EQ(ParsePortSpec(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(RestartPolicyTest, Validation) {
  for (const std::string ok :
       {"", "no", "always", "unless-stopped", "on-failure", "on-failure:3"}) {
    EXPECT_TRUE(ValidateRestartPolicy(ok).ok()) << ok;
  }
  for (const std::string bad :
       {"sometimes", "on-failure:x", "on-failure:-1", "always;"}) {
    EXPECT_FALSE(ValidateRestartPolicy(bad).ok()) << bad;
  }
}

TEST(RegistryAuthTest, Base64UrlJson) {
  // Characters chosen so that standard base64 would contain '+' and '/'.
  const std::string encoded =
      EncodeRegistryAuth({"reg:5000", "user>?", "p?>~ss"});
  EXPECT_EQ(encoded.find_first_of("+/"), std::string::npos);
  std::string standard = encoded;
  std::replace(standard.begin(), standard.end(), '-', '+');
  std::replace(standard.begin(), standard.end(), '_', '/');
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(standard, &decoded));
  auto json = nlohmann::json::parse(decoded);
  EXPECT_EQ(json["username"], "user>?");
  EXPECT_EQ(json["password"], "p?>~ss");
  EXPECT_EQ(json["serveraddress"], "reg:5000");
}

TEST(StateStoreTest, RoundTripsThroughTheFile) {
  const hoist::testing::ScopedTempDir dir("state-");
  const std::string path = dir.File("state.json");
  {
    auto store = StateStore::Open(path);  // missing file: empty store
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_TRUE((*store)->All().empty());
    hoist::v1::DeployRequest request;
    request.set_deploy_id("d-1");
    request.mutable_container()->set_name("web");
    request.mutable_container()->add_ports("127.0.0.1:80:80");
    ASSERT_TRUE((*store)
                    ->Update("web",
                             [&](ContainerState* s) {
                               s->current_digest = "sha256:a";
                               s->previous_digests = {"sha256:b", "sha256:c"};
                               s->last_deploy_id = "d-1";
                               s->last_phase =
                                   hoist::v1::DEPLOY_PHASE_ROLLED_BACK;
                               s->last_error = "boom";
                               s->last_request = request;
                               s->journal = DeployJournal{
                                   "d-2",    "old",
                                   true,     "web.hoist-new-x",
                                   "new",    JournalPhase::kStarting,
                                   "always", "sha256:d"};
                             })
                    .ok());
  }
  auto store = StateStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  const ContainerState s = (*store)->Get("web");
  EXPECT_EQ(s.current_digest, "sha256:a");
  EXPECT_THAT(s.previous_digests,
              ::testing::ElementsAre("sha256:b", "sha256:c"));
  EXPECT_EQ(s.last_phase, hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_EQ(s.last_error, "boom");
  ASSERT_TRUE(s.last_request.has_value());
  EXPECT_EQ(s.last_request->container().ports(0), "127.0.0.1:80:80");
  ASSERT_TRUE(s.journal.has_value());
  EXPECT_EQ(s.journal->old_id, "old");
  EXPECT_TRUE(s.journal->old_was_running);
  EXPECT_EQ(s.journal->new_name, "web.hoist-new-x");
  EXPECT_EQ(s.journal->phase, JournalPhase::kStarting);
  EXPECT_EQ(s.journal->restart_policy, "always");
  EXPECT_EQ(std::filesystem::status(path).permissions() &
                std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  EXPECT_EQ((*store)->Get("other").last_deploy_id, "");

  ASSERT_TRUE(WriteFileAtomically(path, "{not json").ok());
  EXPECT_EQ(StateStore::Open(path).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StateStoreTest, JournalPhasesAreTheStringsEarlierAgentsWrote) {
  const std::vector<std::pair<std::string, JournalPhase>> phases = {
      {"pulling", JournalPhase::kPulling},
      {"stopping_old", JournalPhase::kStoppingOld},
      {"starting", JournalPhase::kStarting},
      {"health_checking", JournalPhase::kHealthChecking},
      {"swapping", JournalPhase::kSwapping},
  };
  for (const auto& [name, phase] : phases) {
    // Read from a file as agents with string phases wrote it ...
    const nlohmann::json old_file = {
        {"version", 1},
        {"containers",
         {{"web", {{"journal", {{"deploy_id", "d-1"}, {"phase", name}}}}}}}};
    auto read = StateStore::FromJson(old_file.dump());
    ASSERT_TRUE(read.ok()) << read.status();
    ASSERT_TRUE(read->at("web").journal.has_value()) << name;
    EXPECT_EQ(read->at("web").journal->phase, phase) << name;
    // ... and written back the same way, for an older agent to read.
    const nlohmann::json written =
        nlohmann::json::parse(StateStore::ToJson(*read));
    EXPECT_EQ(written["containers"]["web"]["journal"]["phase"], name);
  }
  // A phase this agent does not know (a newer agent's) restores the pair.
  auto read = StateStore::FromJson(
      R"({"containers": {"web": {"journal": {"phase": "renaming"}}}})");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->at("web").journal->phase, JournalPhase::kUnknown);
}

TEST(ContainerStatePromoteTest, CurrentBecomesNewestPreviousWithoutDuplicates) {
  ContainerState state;
  EXPECT_TRUE(state.Promote("sha256:a", 3).empty());
  EXPECT_EQ(state.current_digest, "sha256:a");
  EXPECT_TRUE(state.previous_digests.empty());
  EXPECT_TRUE(state.Promote("sha256:b", 3).empty());
  EXPECT_THAT(state.previous_digests, ::testing::ElementsAre("sha256:a"));
  // The same digest again changes nothing.
  EXPECT_TRUE(state.Promote("sha256:b", 3).empty());
  EXPECT_THAT(state.previous_digests, ::testing::ElementsAre("sha256:a"));
  // Back to a previous digest: it leaves the previous ones.
  EXPECT_TRUE(state.Promote("sha256:a", 3).empty());
  EXPECT_EQ(state.current_digest, "sha256:a");
  EXPECT_THAT(state.previous_digests, ::testing::ElementsAre("sha256:b"));
  // Duplicates (as Recover used to leave them) go, the newest one kept.
  state.previous_digests = {"sha256:b", "sha256:c", "sha256:b", "sha256:d"};
  EXPECT_THAT(state.Promote("sha256:e", 10), ::testing::IsEmpty());
  EXPECT_THAT(
      state.previous_digests,
      ::testing::ElementsAre("sha256:a", "sha256:b", "sha256:c", "sha256:d"));
}

TEST(ContainerStatePromoteTest, KeepsKeepImagesAndReturnsTheDropped) {
  ContainerState state;
  state.current_digest = "sha256:c";
  state.previous_digests = {"sha256:b", "sha256:a"};
  // keep_images counts the current image: two previous ones for 3.
  EXPECT_THAT(state.Promote("sha256:d", 3), ::testing::ElementsAre("sha256:a"));
  EXPECT_THAT(state.previous_digests,
              ::testing::ElementsAre("sha256:c", "sha256:b"));
  EXPECT_THAT(state.Promote("sha256:e", 1),
              ::testing::ElementsAre("sha256:d", "sha256:c", "sha256:b"));
  EXPECT_EQ(state.current_digest, "sha256:e");
  EXPECT_TRUE(state.previous_digests.empty());
}

}  // namespace
}  // namespace hoist::nodeagent
