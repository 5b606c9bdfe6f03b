#include <vector>

#include "common/daemon.h"
#include "gtest/gtest.h"

namespace hoist {
namespace {

absl::StatusOr<DaemonFlags> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "hoist-agent");
  std::vector<char*> argv;
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

TEST(DaemonFlagsTest, RejectsMistakes) {
  EXPECT_FALSE(Parse({}).ok());                            // no --config
  EXPECT_FALSE(Parse({"--config"}).ok());                  // no value
  EXPECT_FALSE(Parse({"--config", "a", "--bogus"}).ok());  // unknown flag
  EXPECT_FALSE(Parse({"--config", "a", "--log-format", "xml"}).ok());
}

}  // namespace
}  // namespace hoist
