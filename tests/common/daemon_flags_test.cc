#include <vector>

#include "common/daemon.h"
#include "gtest/gtest.h"

namespace hoist {
namespace {

absl::StatusOr<DaemonFlags> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "hoist-agent");
  std::vector<char*> argv;
  argv.reserve(args.size());
  for (auto& a : args) argv.push_back(a.data());
  return ParseDaemonFlags(static_cast<int>(argv.size()), argv.data());
}

TEST(DaemonFlagsTest, ParsesAllFlags) {
  auto f = Parse({"--config", "a.yaml", "--check-config", "--log-format=json"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->config, "a.yaml");
  EXPECT_TRUE(f->check_config);
  EXPECT_EQ(f->log_format, LogFormat::kJson);
}

TEST(DaemonFlagsTest, HelpAndVersionNeedNoConfig) {
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"--version"})->version);
}

TEST(DaemonFlagsTest, ValuesFollowAsNextArgumentOrAfterEquals) {
  auto f = Parse({"--config=a=b.yaml", "--log-format", "json", "-h"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->config, "a=b.yaml");  // split at the first '='
  EXPECT_EQ(f->log_format, LogFormat::kJson);
  EXPECT_TRUE(f->help);
  EXPECT_FALSE(f->check_config);
  EXPECT_FALSE(f->version);
  EXPECT_EQ(Parse({"--log-format=text", "--config", "x"})->log_format,
            LogFormat::kText);
}

// The messages are what a daemon prints before its usage (docs/design.md).
TEST(DaemonFlagsTest, RejectsMistakesNamingThem) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, "--config FILE is required"},
      {{"--config="}, "--config FILE is required"},
      {{"--config"}, "--config needs a value"},
      {{"--config", "a", "--log-format"}, "--log-format needs a value"},
      {{"--config", "a", "--bogus=1"}, "unknown flag \"--bogus\""},
      {{"a.yaml"}, "unknown flag \"a.yaml\""},
      {{"--config", "a", "--log-format", "xml"},
       "--log-format must be text or json, got \"xml\""},
  };
  for (const Case& c : cases) {
    const absl::Status status = Parse(c.args).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(status.message(), c.message);
  }
}

}  // namespace
}  // namespace hoist
