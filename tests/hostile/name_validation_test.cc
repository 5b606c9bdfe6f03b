// Names that could escape (container names, service names, image
// references, volume paths, env_files with "..", shell characters, absolute
// and relative tricks) are refused with a clear error, both where the
// receiver loads its config (LoadReceiverConfig) and where the agent
// validates a DeployRequest (DeployManager::ValidateRequest). Table-driven.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/deploy_manager.h"
#include "receiver/config.h"
#include "tests/common/temp_dir.h"

namespace hoist {
namespace {

enum class Field {
  kServiceName,
  kContainerName,
  kImage,
  kVolume,
  kEnvFile,
};

const char* FieldKey(Field f) {
  switch (f) {
    case Field::kServiceName:
      return "service name";
    case Field::kContainerName:
      return "container";
    case Field::kImage:
      return "image";
    case Field::kVolume:
      return "volume";
    case Field::kEnvFile:
      return "env_file";
  }
  return "";
}

struct NameCase {
  const char* name;
  Field field;
  std::string value;
};

// Every row is hostile: each must be refused by both validators.
std::vector<NameCase> Cases() {
  return {
      {"ServiceDotDot", Field::kServiceName, ".."},
      {"ServiceSlashEscape", Field::kServiceName, "../etc"},
      {"ServiceSemicolon", Field::kServiceName, "app;rm -rf /"},
      {"ServiceSubshell", Field::kServiceName, "app$(id)"},
      {"ServiceBacktick", Field::kServiceName, "app`id`"},
      {"ServicePipe", Field::kServiceName, "app|nc"},
      {"ServiceSpace", Field::kServiceName, "app x"},
      {"ServiceNewline", Field::kServiceName, "app\nx"},
      {"ServiceLeadingDash", Field::kServiceName, "-app"},
      {"ServiceAbsolute", Field::kServiceName, "/app"},
      {"ContainerDotDot", Field::kContainerName, "../app"},
      {"ContainerSlash", Field::kContainerName, "a/b"},
      {"ContainerSemicolon", Field::kContainerName, "app;reboot"},
      {"ContainerSubshell", Field::kContainerName, "$(reboot)"},
      {"ContainerBacktick", Field::kContainerName, "`reboot`"},
      {"ContainerPipe", Field::kContainerName, "a|b"},
      {"ContainerSpace", Field::kContainerName, "a b"},
      {"ContainerNewline", Field::kContainerName, "a\nb"},
      {"ContainerLeadingDot", Field::kContainerName, ".hidden"},
      // A deploy's temporary name: recovery would remove it as an orphan.
      {"ContainerTempInfix", Field::kContainerName, "app.hoist-new-x"},
      // Over the agent's 100 (the temporary name adds 23 characters).
      {"ContainerTooLong", Field::kContainerName, std::string(110, 'c')},
      {"ImageDotDot", Field::kImage, "reg.example/../etc/app"},
      {"ImageAbsolute", Field::kImage, "/etc/app"},
      {"ImageDoubleSlash", Field::kImage, "reg.example//app"},
      {"ImageSemicolon", Field::kImage, "reg.example/app;id"},
      {"ImageSubshell", Field::kImage, "reg.example/$(id)"},
      {"ImageBacktick", Field::kImage, "reg.example/`id`"},
      {"ImagePipe", Field::kImage, "reg.example/a|b"},
      {"ImageSpace", Field::kImage, "reg.example/a b"},
      {"ImageNewline", Field::kImage, "reg.example/a\nb"},
      {"ImageWithDigestInjection", Field::kImage, "reg.example/a@sha256:00"},
      {"VolumeSourceDotDot", Field::kVolume, "/srv/../etc:/data"},
      {"VolumeTargetDotDot", Field::kVolume, "/srv/data:/data/../../etc"},
      {"VolumeRelativeSource", Field::kVolume, "./data:/data"},
      {"VolumeRelativeTarget", Field::kVolume, "/srv/data:data"},
      {"VolumeSourceSemicolon", Field::kVolume, "/srv/a;id:/data"},
      {"VolumeSourceSubshell", Field::kVolume, "/srv/$(id):/data"},
      {"VolumeTargetBacktick", Field::kVolume, "/srv/data:/`id`"},
      {"VolumeSourcePipe", Field::kVolume, "/srv/a|b:/data"},
      {"VolumeSourceNewline", Field::kVolume, "/srv/a\nb:/data"},
      {"VolumeNameDotDot", Field::kVolume, "..:/data"},
      {"VolumeNameSpace", Field::kVolume, "my vol:/data"},
      {"EnvFileRelative", Field::kEnvFile, "etc/app.env"},
      {"EnvFileDotRelative", Field::kEnvFile, "./app.env"},
      {"EnvFileDotDot", Field::kEnvFile, "/etc/hoist/../shadow"},
      {"EnvFileSemicolon", Field::kEnvFile, "/etc/a.env;id"},
      {"EnvFileSubshell", Field::kEnvFile, "/etc/$(id).env"},
      {"EnvFileBacktick", Field::kEnvFile, "/etc/`id`.env"},
      {"EnvFilePipe", Field::kEnvFile, "/etc/a|b.env"},
      {"EnvFileNewline", Field::kEnvFile, "/etc/a\n.env"},
      {"EnvFileEmpty", Field::kEnvFile, ""},
  };
}

// A YAML double-quoted scalar holding `s` exactly.
std::string YamlQuote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A directory of the test's own with the secret file the configs name.
class TempDir : public hoist::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("hoist-hostile-names-") {
    Write("secret", "s3cret\n");
  }
};

// A receiver config with one service, `field` set to `value`.
std::string ReceiverYaml(Field field, const std::string& value) {
  const std::string q = YamlQuote(value);
  std::string yaml =
      "webhook:\n"
      "  listen: \"127.0.0.1:0\"\n"
      "  secret_files: [secret]\n"
      "tls: {ca: ca.pem, cert: r.pem, key: r-key.pem}\n"
      "agents:\n"
      "  - {name: web-1, address: \"web-1:7981\", labels: {role: web}}\n"
      "services:\n";
  absl::StrAppend(
      &yaml, "  - name: ", field == Field::kServiceName ? q : "hello", "\n");
  absl::StrAppend(&yaml, "    trigger: {image: hello}\n");
  absl::StrAppend(&yaml, "    image: ",
                  field == Field::kImage ? q : "reg.example/hello", "\n");
  absl::StrAppend(&yaml, "    targets: {labels: {role: web}}\n");
  absl::StrAppend(&yaml, "    container:\n      name: ",
                  field == Field::kContainerName ? q : "hello", "\n");
  if (field == Field::kVolume)
    absl::StrAppend(&yaml, "      volumes: [", q, "]\n");
  if (field == Field::kEnvFile)
    absl::StrAppend(&yaml, "      env_files: [", q, "]\n");
  return yaml;
}

hoist::v1::DeployRequest AgentRequest(Field field, const std::string& value) {
  hoist::v1::DeployRequest r;
  r.set_deploy_id("d-1");
  r.set_service(field == Field::kServiceName ? value : "hello");
  r.set_image(field == Field::kImage ? value : "reg.example/hello");
  r.set_digest(absl::StrCat("sha256:", std::string(64, 'a')));
  r.mutable_container()->set_name(field == Field::kContainerName ? value
                                                                 : "hello");
  if (field == Field::kVolume) r.mutable_container()->add_volumes(value);
  if (field == Field::kEnvFile) r.mutable_container()->add_env_files(value);
  return r;
}

// A printable form of a hostile value for failure messages.
std::string Shown(const std::string& v) {
  return absl::StrReplaceAll(v, {{"\n", "\\n"}});
}

class HostileNameTest : public ::testing::TestWithParam<NameCase> {};

TEST(HostileNameBaseline, TheSameShapesWithSafeValuesAreAccepted) {
  // Without this, a loader refusing everything would pass the table.
  TempDir dir;
  const std::vector<std::pair<Field, std::string>> safe = {
      {Field::kServiceName, "hello-2.app_x"},
      {Field::kContainerName, "hello-2.app_x"},
      {Field::kImage, "reg.example:5000/team/hello"},
      {Field::kVolume, "/srv/data:/data:ro"},
      {Field::kVolume, "cache:/cache"},
      {Field::kEnvFile, "/etc/hoist/hello.env"},
  };
  for (const auto& [field, value] : safe) {
    auto config = receiver::LoadReceiverConfig(
        dir.Write("c.yaml", ReceiverYaml(field, value)));
    EXPECT_TRUE(config.ok()) << value << ": " << config.status();
    EXPECT_TRUE(
        nodeagent::DeployManager::ValidateRequest(AgentRequest(field, value))
            .ok())
        << value;
  }
}

TEST_P(HostileNameTest, ReceiverConfigLoaderRefusesIt) {
  const NameCase& c = GetParam();
  TempDir dir;
  auto config = receiver::LoadReceiverConfig(
      dir.Write("c.yaml", ReceiverYaml(c.field, c.value)));
  ASSERT_FALSE(config.ok()) << "accepted \"" << Shown(c.value) << "\"";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  // The error says which key and (FILE:LINE) where.
  const std::string message(config.status().message());
  EXPECT_NE(message.find(FieldKey(c.field)), std::string::npos) << message;
  EXPECT_NE(message.find("c.yaml:"), std::string::npos) << message;
}

TEST_P(HostileNameTest, AgentRequestValidationRefusesIt) {
  const NameCase& c = GetParam();
  absl::Status status =
      nodeagent::DeployManager::ValidateRequest(AgentRequest(c.field, c.value));
  ASSERT_FALSE(status.ok()) << "accepted \"" << Shown(c.value) << "\"";
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  const std::string message(status.message());
  EXPECT_NE(message.find(c.field == Field::kServiceName ? "service"
                                                        : FieldKey(c.field)),
            std::string::npos)
      << message;
}

INSTANTIATE_TEST_SUITE_P(Table, HostileNameTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<NameCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace hoist
