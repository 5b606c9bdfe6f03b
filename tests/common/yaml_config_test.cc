#include "common/yaml_config.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

namespace hoist {
namespace {

YAML::Node Parse(const std::string& text) { return YAML::Load(text); }

TEST(YamlConfigTest, ReadsTypedValuesAndDefaults) {
  ConfigErrors errors("f.yaml");
  MapReader r(Parse("a: x\nn: 5\nb: true\nl: [p, q]\nm: {k: v}\nd: 1.5\n"),
              "top", &errors);
  EXPECT_EQ(r.String("a"), "x");
  EXPECT_EQ(r.Int("n", 0, 0, 10), 5);
  EXPECT_TRUE(r.Bool("b", false));
  EXPECT_EQ(r.StringList("l"), (std::vector<std::string>{"p", "q"}));
  EXPECT_EQ(r.StringMap("m").at("k"), "v");
  EXPECT_DOUBLE_EQ(r.Double("d", 0, 0, 2), 1.5);
  EXPECT_EQ(r.String("missing", "def"), "def");
  r.Finish();
  EXPECT_TRUE(errors.empty()) << errors.ToStatus();
}

TEST(YamlConfigTest, ReportsUnknownKeysWithLine) {
  ConfigErrors errors("f.yaml");
  MapReader r(Parse("a: x\n\nbogus: 1\n"), "top", &errors);
  r.String("a");
  r.Finish();
  ASSERT_EQ(errors.problems().size(), 1u);
  EXPECT_EQ(errors.problems()[0], "f.yaml:3: unknown key \"bogus\" in top");
}

TEST(YamlConfigTest, ReportsTypeAndRangeErrorsAndKeepsGoing) {
  ConfigErrors errors("f.yaml");
  MapReader r(Parse("n: abc\nm: 99\nb: maybe\nl: x\n"), "top", &errors);
  EXPECT_EQ(r.Int("n", 7, 0, 10), 7);
  EXPECT_EQ(r.Int("m", 7, 0, 10), 7);
  EXPECT_FALSE(r.Bool("b", false));
  EXPECT_TRUE(r.StringList("l").empty());
  r.String("req", "", /*required=*/true);
  r.Finish();
  ASSERT_EQ(errors.problems().size(), 5u);
  EXPECT_EQ(errors.problems()[0], "f.yaml:1: top.n must be an integer");
  EXPECT_EQ(errors.problems()[1],
            "f.yaml:2: top.m must be between 0 and 10, got 99");
  EXPECT_EQ(errors.problems()[2], "f.yaml:3: top.b must be true or false");
  EXPECT_EQ(errors.problems()[3], "f.yaml:4: top.l must be a list of strings");
  EXPECT_NE(errors.problems()[4].find("missing required key \"req\""),
            std::string::npos);
  EXPECT_FALSE(errors.ToStatus().ok());
}

TEST(YamlConfigTest, LoadYamlFileReportsSyntaxErrorLine) {
  const std::string path = ::testing::TempDir() + "/bad.yaml";
  std::ofstream(path) << "a: 1\nb: [unclosed\n";
  auto node = LoadYamlFile(path);
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(node.status().message().find(path + ":"), std::string::npos);
  std::remove(path.c_str());
}

TEST(YamlConfigTest, MissingFileIsNotFound) {
  auto node = LoadYamlFile("/nonexistent/hoist.yaml");
  EXPECT_EQ(node.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hoist

namespace hoist {
namespace {

TEST(YamlConfigTest, ReaderOverMissingSectionIsEmpty) {
  ConfigErrors errors("f.yaml");
  MapReader top(YAML::Load("a: 1\n"), "top", &errors);
  MapReader missing(top.Child("section"), "section", &errors);
  EXPECT_FALSE(missing.Has("x"));
  EXPECT_EQ(missing.String("x", "def"), "def");
  EXPECT_EQ(missing.Int("n", 3, 0, 10), 3);
  missing.Finish();
  top.Int("a", 0, 0, 10);
  top.Finish();
  EXPECT_TRUE(errors.empty()) << errors.ToStatus();
}

}  // namespace
}  // namespace hoist
