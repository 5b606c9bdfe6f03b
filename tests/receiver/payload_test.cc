// ParseWebhookPayload: both JFrog shapes, image paths, bad bodies.
#include "receiver/payload.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace hoist::receiver {
namespace {

constexpr char kSha[] =
    "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";

// A current-shape docker event; `path` empty: none is sent.
std::string DockerEvent(const std::string& repo_key, const std::string& tag,
                        const std::string& path) {
  nlohmann::json data = {
      {"repo_key", repo_key}, {"tag", tag}, {"sha256", kSha}};
  if (!path.empty()) data["path"] = path;
  data["image_name"] = "app";
  return nlohmann::json{
      {"domain", "docker"}, {"event_type", "promoted"}, {"data", data}}
      .dump();
}

TEST(PayloadTest, CurrentShape) {
  const std::string body =
      std::string(R"({"domain":"docker","event_type":"promoted",)") +
      R"("data":{"image_name":"helloworld","name":"manifest.json",)" +
      R"("path":"helloworld/latest/manifest.json","platforms":[],)" +
      R"("repo_key":"docker-local-staging","sha256":")" + kSha +
      R"(","size":949,"tag":"latest"},"subscription_key":"k",)" +
      R"("jpd_origin":"https://example.jfrog.io","source":"jfrog/jfrt@1"})";
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(body);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_TRUE(event->is_docker());
  EXPECT_FALSE(event->legacy_shape);
  EXPECT_EQ(event->event_type, "promoted");
  EXPECT_EQ(event->repo_key, "docker-local-staging");
  EXPECT_EQ(event->path, "helloworld/latest/manifest.json");
  EXPECT_EQ(event->image, "helloworld");
  EXPECT_EQ(event->image_name, "helloworld");
  EXPECT_EQ(event->tag, "latest");
  EXPECT_EQ(event->sha256, kSha);
  EXPECT_TRUE(event->field_problems.empty());
}

TEST(PayloadTest, LegacyFlatShape) {
  const std::string body =
      std::string(R"({"event_type":"pushed","image_name":"busybox",)") +
      R"("tag":"1.2","repo_key":"docker-local","path":"foo/busybox/1.2/manifest.json",)" +
      R"("sha256":")" + kSha + R"("})";
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(body);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_TRUE(event->legacy_shape);
  EXPECT_EQ(event->domain, "docker");
  EXPECT_EQ(event->event_type, "pushed");
  EXPECT_EQ(event->image, "foo/busybox");
  EXPECT_EQ(event->repo_key, "docker-local");
  EXPECT_EQ(event->sha256, kSha);
}

TEST(PayloadTest, LegacyShapeWithoutPathUsesImageName) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      R"({"event_type":"pushed","image_name":"busybox","tag":"1"})");
  ASSERT_TRUE(event.ok());
  EXPECT_EQ(event->image, "busybox");
  EXPECT_FALSE(event->ProblemWith("sha256").empty());
}

TEST(PayloadTest, MultiArchListManifestPath) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      R"({"domain":"docker","event_type":"pushed","data":{"path":"app/v2/list.manifest.json","tag":"v2"}})");
  ASSERT_TRUE(event.ok());
  EXPECT_EQ(event->image, "app");
  EXPECT_EQ(event->ProblemWith("image"), "");
}

TEST(PayloadTest, NestedImagePath) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      R"({"domain":"docker","event_type":"pushed","data":{"image_name":"busybox","path":"foo/bar/busybox/1.2/manifest.json","tag":"1.2"}})");
  ASSERT_TRUE(event.ok());
  EXPECT_EQ(event->image, "foo/bar/busybox");
  EXPECT_EQ(event->image_name, "busybox");
}

TEST(PayloadTest, ImagePathFromManifestPath) {
  EXPECT_EQ(*ImagePathFromManifestPath("a/b/c/t/manifest.json", "t"), "a/b/c");
  EXPECT_EQ(*ImagePathFromManifestPath("a/t/list.manifest.json", ""), "a");
  EXPECT_FALSE(ImagePathFromManifestPath("a/t/manifest.json", "other").ok());
  EXPECT_FALSE(ImagePathFromManifestPath("t/manifest.json", "t").ok());
  EXPECT_FALSE(ImagePathFromManifestPath("a/t/blob", "t").ok());
  EXPECT_FALSE(ImagePathFromManifestPath("manifest.json", "").ok());
}

TEST(PayloadTest, MissingFieldsAreRecordedNotFatal) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      R"({"domain":"docker","event_type":"pushed","data":{"tag":"x"}})");
  ASSERT_TRUE(event.ok());
  EXPECT_EQ(event->ProblemWith("repo_key"), "data.repo_key is missing");
  EXPECT_EQ(event->ProblemWith("sha256"), "data.sha256 is missing");
  EXPECT_NE(event->ProblemWith("image"), "");
  EXPECT_EQ(event->ProblemWith("tag"), "");

  absl::StatusOr<WebhookEvent> no_data =
      ParseWebhookPayload(R"({"domain":"docker","event_type":"pushed"})");
  ASSERT_TRUE(no_data.ok());
  EXPECT_EQ(no_data->ProblemWith("repo_key"), "data is missing");
}

TEST(PayloadTest, WrongTypes) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      R"({"domain":"docker","event_type":7,"data":{"repo_key":["r"],"tag":null,"sha256":"ABC","path":{}}})");
  ASSERT_TRUE(event.ok());
  EXPECT_EQ(event->ProblemWith("event_type"), "event_type must be a string");
  EXPECT_EQ(event->ProblemWith("repo_key"), "data.repo_key must be a string");
  EXPECT_EQ(event->ProblemWith("tag"), "data.tag is missing");
  EXPECT_EQ(event->ProblemWith("sha256"),
            "data.sha256 must be 64 lowercase hex characters");
  EXPECT_EQ(event->ProblemWith("path"), "data.path must be a string");

  absl::StatusOr<WebhookEvent> data_array = ParseWebhookPayload(
      R"({"domain":"docker","event_type":"pushed","data":[1]})");
  ASSERT_TRUE(data_array.ok());
  EXPECT_EQ(data_array->ProblemWith("sha256"), "data must be an object");
}

TEST(PayloadTest, UppercaseShaIsRejected) {
  std::string upper(kSha);
  for (char& c : upper) c = static_cast<char>(toupper(c));
  EXPECT_FALSE(IsSha256Hex(upper));
  EXPECT_TRUE(IsSha256Hex(kSha));
  EXPECT_FALSE(IsSha256Hex(std::string(kSha) + "0"));
}

TEST(PayloadTest, NotAnObject) {
  for (const char* body :
       {"[]", "\"docker\"", "42", "null", "", "{", "{\"a\":}", "\xff\xfe"}) {
    absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(body);
    EXPECT_EQ(event.status().code(), absl::StatusCode::kInvalidArgument)
        << body;
  }
  EXPECT_EQ(ParseWebhookPayload("[1]").status().message(),
            "body is not a JSON object");
}

// The reproduction: a tag carrying a newline and a forged log line, or a
// NUL, is refused before anything sees it (docs/design.md, "Webhook HTTP
// answers").
TEST(PayloadGrammarTest, TagOutsideDockersGrammarIsRefused) {
  const std::string forged =
      "x\n2026-01-01T00:00:00.000Z info webhook event submitted "
      "service=admin";
  for (const std::string& tag :
       {forged, std::string("a\0b", 3), std::string("-lead"),
        std::string(".lead"), std::string("a b"), std::string("a/b"),
        std::string("a:b"), std::string("\xc3\xa4"), std::string(129, 'a')}) {
    absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
        DockerEvent("docker-local", tag, "app/" + tag + "/manifest.json"));
    ASSERT_EQ(event.status().code(), absl::StatusCode::kInvalidArgument) << tag;
    EXPECT_NE(event.status().message().find("data.tag \""), std::string::npos)
        << event.status();
    // The reason quotes the value escaped: no control character in it.
    for (const char c : event.status().message()) {
      EXPECT_GE(static_cast<unsigned char>(c), 0x20) << event.status();
    }
  }
  for (const std::string& tag :
       {std::string("latest"), std::string("v1.2.3-rc_1"), std::string("_x"),
        std::string("A"), std::string(128, 'a')}) {
    EXPECT_TRUE(
        ParseWebhookPayload(
            DockerEvent("docker-local", tag, "app/" + tag + "/manifest.json"))
            .ok())
        << tag;
  }
}

TEST(PayloadGrammarTest, RepoKeyKeepsCaseButNothingElse) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      DockerEvent("Docker-Local_1.prod", "v1", "app/v1/manifest.json"));
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->repo_key, "Docker-Local_1.prod");
  for (const std::string& repo_key :
       {std::string("repo/key"), std::string("repo key"),
        std::string("repo\nkey"), std::string("r\0", 2)}) {
    absl::StatusOr<WebhookEvent> bad = ParseWebhookPayload(
        DockerEvent(repo_key, "v1", "app/v1/manifest.json"));
    ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument)
        << repo_key;
    EXPECT_NE(bad.status().message().find("data.repo_key"), std::string::npos)
        << bad.status();
  }
}

TEST(PayloadGrammarTest, ImagePathIsLowercaseAndSlashes) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      DockerEvent("r", "v1", "team.a/sub_b/app-1/v1/manifest.json"));
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->image, "team.a/sub_b/app-1");
  for (const std::string& path :
       {std::string("Team/app/v1/manifest.json"),
        std::string("te am/app/v1/manifest.json"),
        std::string("team\n/app/v1/manifest.json"),
        std::string("te\0am/app/v1/manifest.json", 26)}) {
    absl::StatusOr<WebhookEvent> bad =
        ParseWebhookPayload(DockerEvent("r", "v1", path));
    ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << path;
    EXPECT_NE(bad.status().message().find("image path of data.path"),
              std::string::npos)
        << bad.status();
  }
  // Without a path, data.image_name is the image path and is checked.
  absl::StatusOr<WebhookEvent> legacy = ParseWebhookPayload(
      R"({"event_type":"pushed","image_name":"Busy\nbox","tag":"1"})");
  ASSERT_EQ(legacy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(legacy.status().message().find("image_name"), std::string::npos)
      << legacy.status();
}

// Only docker events are checked; others are ignored whatever they hold.
TEST(PayloadGrammarTest, NonDockerEventsAreNotChecked) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      R"({"domain":"artifact","event_type":"deployed","data":{"tag":"a\nb"}})");
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_FALSE(event->is_docker());
}

TEST(PayloadTest, OtherDomainsParseAsNonDocker) {
  absl::StatusOr<WebhookEvent> event = ParseWebhookPayload(
      R"({"domain":"artifact","event_type":"deployed","data":{"repo_key":"x","image_name":"a","tag":"b"}})");
  ASSERT_TRUE(event.ok());
  EXPECT_FALSE(event->is_docker());
  EXPECT_EQ(event->domain, "artifact");
  EXPECT_TRUE(event->field_problems.empty());

  absl::StatusOr<WebhookEvent> none =
      ParseWebhookPayload(R"({"hello":"world"})");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->is_docker());
}

}  // namespace
}  // namespace hoist::receiver
