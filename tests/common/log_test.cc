// Logging: no logged message or value can end a line or forge one, in text
// or JSON (common/log.h).
#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace hoist {
namespace {

const absl::Time kTime = absl::FromUnixSeconds(1700000000);

// The webhook reproduction: a tag whose newline would start a forged line.
constexpr char kForged[] =
    "x\n2023-11-14T22:13:20.000Z error rollout failed rollout_id=r-1";

bool HasControlCharacter(const std::string& line) {
  for (const char c : line) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return true;
  }
  return false;
}

TEST(EscapeForTextLogTest, EscapesEveryControlCharacterAndTheBackslash) {
  EXPECT_EQ(EscapeForTextLog("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(EscapeForTextLog(std::string("nul\0end", 7)), "nul\\x00end");
  EXPECT_EQ(EscapeForTextLog("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(EscapeForTextLog("del\x7f"), "del\\x7f");
  EXPECT_EQ(EscapeForTextLog("back\\slash"), "back\\\\slash");
  // Printable ASCII and UTF-8 are kept as they are.
  EXPECT_EQ(EscapeForTextLog("plain text: ünïcode ✓"), "plain text: ünïcode ✓");
  for (int c = 0; c < 0x20; ++c) {
    EXPECT_FALSE(HasControlCharacter(
        EscapeForTextLog(std::string(1, static_cast<char>(c)))))
        << c;
  }
}

TEST(FormatLogLineTest, TextLineCannotBeSplitByAMessageOrAValue) {
  const std::string line = FormatLogLine(
      LogFormat::kText, LogLevel::kInfo, kTime, std::string("event\r\n\0", 8),
      {{"tag", kForged}, {"key\nname", "v"}});
  EXPECT_FALSE(HasControlCharacter(line)) << line;
  EXPECT_EQ(line,
            "2023-11-14T22:13:20.000Z info event\\r\\n\\x00 tag=x\\n2023-11-14T"
            "22:13:20.000Z error rollout failed rollout_id=r-1 key\\nname=v");
}

TEST(FormatLogLineTest, JsonLineEscapesControlCharactersAndReadsBack) {
  const std::string value = std::string("tab\tnul\0esc\x1b", 12);
  const std::string line = FormatLogLine(LogFormat::kJson, LogLevel::kWarning,
                                         kTime, kForged, {{"tag", value}});
  EXPECT_FALSE(absl::StrContains(line, "\n")) << line;
  for (const char c : line) {
    EXPECT_GE(static_cast<unsigned char>(c), 0x20) << line;
  }
  const nlohmann::json parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["msg"], kForged);
  EXPECT_EQ(parsed["tag"], value);
  EXPECT_EQ(parsed["level"], "warning");
}

// Log() itself writes exactly one line to stderr for a value holding
// newlines.
TEST(LogTest, WritesOneLineToStderr) {
  char path[] = "/tmp/hoist-log-test-XXXXXX";
  const int file = mkstemp(path);
  ASSERT_GE(file, 0);
  fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_EQ(dup2(file, STDERR_FILENO), STDERR_FILENO);
  LogWarning("webhook refused", {{"tag", kForged}});
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string written;
  char buffer[4096];
  lseek(file, 0, SEEK_SET);
  for (ssize_t n; (n = read(file, buffer, sizeof(buffer))) > 0;) {
    written.append(buffer, static_cast<size_t>(n));
  }
  close(file);
  unlink(path);
  ASSERT_TRUE(absl::EndsWith(written, "\n")) << written;
  EXPECT_EQ(std::count(written.begin(), written.end(), '\n'), 1) << written;
  EXPECT_TRUE(absl::StrContains(written, " tag=x\\n2023-11-14T")) << written;
}

}  // namespace
}  // namespace hoist
