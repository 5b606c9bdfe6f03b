// ParseWebhookPayload: both JFrog shapes, image paths, bad bodies.
#include "receiver/payload.h"

#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

constexpr char kSha[] =
    "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";

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
