#include "common/file_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace hoist {
namespace {

TEST(FileUtilTest, AtomicWriteThenRead) {
  // A directory of its own: /tmp is shared, and CI runs the unit tier as
  // root and then as nobody, who may not replace a file root left there.
  std::string dir = ::testing::TempDir() + "/hoist_file_util_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/file.txt";
  ASSERT_TRUE(WriteFileAtomically(path, "one").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "two").ok());
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "two");
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

TEST(FileUtilTest, ReadMissingIsNotFoundAndNamesPath) {
  auto text = ReadFile("/nonexistent/x");
  EXPECT_EQ(text.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(text.status().message().find("/nonexistent/x"), std::string::npos);
}

TEST(FileUtilTest, ResolvePathAndDirName) {
  EXPECT_EQ(ResolvePath("/etc/hoist", "ca.pem"), "/etc/hoist/ca.pem");
  EXPECT_EQ(ResolvePath("/etc/hoist", "/abs/ca.pem"), "/abs/ca.pem");
  EXPECT_EQ(ResolvePath("/etc/hoist", ""), "");
  EXPECT_EQ(DirName("/etc/hoist/agent.yaml"), "/etc/hoist");
  EXPECT_EQ(DirName("agent.yaml"), ".");
}

}  // namespace
}  // namespace hoist
