// Table-driven tests of hoistctl's command-line parsing.
#include "cli/cli_options.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hoist::cli {
namespace {

const std::string kDigest =
    "sha256:ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";

std::vector<std::string> Argv(std::vector<std::string> rest) {
  rest.insert(rest.begin(), "hoistctl");
  return rest;
}

const std::vector<std::string> kConn = {"--server", "h:1",   "--ca",  "ca.pem",
                                        "--cert",   "c.pem", "--key", "k.pem"};

std::vector<std::string> WithConn(std::vector<std::string> rest) {
  std::vector<std::string> all = kConn;
  all.insert(all.end(), rest.begin(), rest.end());
  return Argv(all);
}

EnvLookup NoEnv() {
  return [](const char*) -> const char* { return nullptr; };
}

struct BadCase {
  std::string name;
  std::vector<std::string> argv;
  std::string message_part;
};

TEST(ParseCliOptionsTest, RejectsBadCommandLinesWithAReason) {
  const std::vector<BadCase> cases = {
      {"no command", WithConn({}), "no command"},
      {"unknown command", WithConn({"frobnicate"}),
       "unknown command \"frobnicate\""},
      {"unknown flag", WithConn({"agents", "--bogus"}), "unknown flag --bogus"},
      {"flag without value", WithConn({"agents", "--output"}),
       "--output needs a value"},
      {"bad output", WithConn({"--output", "yaml", "agents"}), "text or json"},
      {"rollout without id", WithConn({"rollout"}),
       "usage: hoistctl rollout ID"},
      {"watch with two ids", WithConn({"watch", "a", "b"}),
       "usage: hoistctl watch ID"},
      {"deploy without ref", WithConn({"deploy", "web"}), "SERVICE DIGEST|TAG"},
      {"deploy short digest", WithConn({"deploy", "web", "sha256:abc"}),
       "not a digest"},
      {"deploy upper-case digest",
       WithConn({"deploy", "web",
                 "sha256:"
                 "EE34C5C94B4D7D0B319AF21A84EBB0BCC16EF01BE9A6EE0277329256ECEE2"
                 "9B0"}),
       "not a digest"},
      {"agents with argument", WithConn({"agents", "x"}),
       "usage: hoistctl agents"},
      {"limit not a number", WithConn({"rollouts", "--limit", "ten"}),
       "non-negative integer"},
      {"negative limit", WithConn({"rollouts", "--limit=-1"}),
       "non-negative integer"},
      {"service on other command", WithConn({"agents", "--service", "web"}),
       "apply to `rollouts`"},
      {"zero timeout", WithConn({"--timeout", "0", "agents"}), "at least 1"},
      {"empty argument", WithConn({"rollout", ""}), "empty argument"},
      {"service without name", WithConn({"service"}),
       "usage: hoistctl service NAME"},
      {"services with argument", WithConn({"services", "web"}),
       "usage: hoistctl services"},
      {"converge without service", WithConn({"converge"}),
       "usage: hoistctl converge SERVICE"},
      {"cancel with two ids", WithConn({"cancel", "r-1", "r-2"}),
       "usage: hoistctl cancel ID"},
      {"service flag on converge",
       WithConn({"converge", "web", "--service", "web"}),
       "apply to `rollouts`"},
      {"empty service name", WithConn({"service", ""}), "empty argument"},
      {"notify without test", WithConn({"notify", "ops"}),
       "usage: hoistctl notify test NAME"},
      {"notify other subcommand", WithConn({"notify", "send", "ops"}),
       "usage: hoistctl notify test NAME"},
      {"missing server",
       Argv({"--ca", "a", "--cert", "b", "--key", "c", "agents"}),
       "missing --server (or $HOIST_SERVER)"},
      {"missing key",
       Argv({"--server", "h:1", "--ca", "a", "--cert", "b", "agents"}),
       "missing --key (or $HOIST_KEY)"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<CliOptions> parsed = ParseCliOptions(c.argv, NoEnv());
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(parsed.status().message()).find(c.message_part),
              std::string::npos)
        << parsed.status().message();
  }
}

TEST(ParseCliOptionsTest, ParsesEachCommand) {
  struct Case {
    std::vector<std::string> argv;
    std::string command;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {
      {WithConn({"agents"}), "agents", {}},
      {WithConn({"rollouts"}), "rollouts", {}},
      {WithConn({"rollout", "r-1"}), "rollout", {"r-1"}},
      {WithConn({"watch", "r-2"}), "watch", {"r-2"}},
      {WithConn({"deploy", "web", "v2"}), "deploy", {"web", "v2"}},
      {WithConn({"deploy", "web", kDigest}), "deploy", {"web", kDigest}},
      {WithConn({"rollback", "web"}), "rollback", {"web"}},
      {WithConn({"resume", "r-3"}), "resume", {"r-3"}},
      {WithConn({"services"}), "services", {}},
      {WithConn({"service", "web"}), "service", {"web"}},
      {WithConn({"converge", "web"}), "converge", {"web"}},
      {WithConn({"cancel", "r-4"}), "cancel", {"r-4"}},
      {WithConn({"notify", "test", "ops"}), "notify", {"test", "ops"}},
      {WithConn({"--", "rollout", "--odd-id"}), "rollout", {"--odd-id"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.command);
    absl::StatusOr<CliOptions> parsed = ParseCliOptions(c.argv, NoEnv());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->command, c.command);
    EXPECT_EQ(parsed->args, c.args);
  }
}

TEST(ParseCliOptionsTest, FlagsAnywhereInBothSpellings) {
  absl::StatusOr<CliOptions> parsed = ParseCliOptions(
      Argv({"rollouts", "--service=web", "--server=s:9", "--ca", "A",
            "--cert=C", "--key", "K", "--limit", "5", "-o", "json",
            "--tls-name", "receiver.internal", "--timeout=7"}),
      NoEnv());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->service, "web");
  EXPECT_EQ(parsed->limit, 5);
  EXPECT_EQ(parsed->server, "s:9");
  EXPECT_EQ(parsed->ca, "A");
  EXPECT_EQ(parsed->cert, "C");
  EXPECT_EQ(parsed->key, "K");
  EXPECT_EQ(parsed->tls_name, "receiver.internal");
  EXPECT_EQ(parsed->output, OutputFormat::kJson);
  EXPECT_EQ(parsed->timeout_seconds, 7);
}

TEST(ParseCliOptionsTest, EnvironmentFillsConnectionAndFlagsWin) {
  const std::map<std::string, std::string> env = {{"HOIST_SERVER", "env:1"},
                                                  {"HOIST_CA", "env-ca"},
                                                  {"HOIST_CERT", "env-cert"},
                                                  {"HOIST_KEY", "env-key"}};
  EnvLookup lookup = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  absl::StatusOr<CliOptions> parsed =
      ParseCliOptions(Argv({"--server", "flag:2", "agents"}), lookup);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->server, "flag:2");
  EXPECT_EQ(parsed->ca, "env-ca");
  EXPECT_EQ(parsed->cert, "env-cert");
  EXPECT_EQ(parsed->key, "env-key");
  EXPECT_EQ(parsed->output, OutputFormat::kText);
}

TEST(ParseCliOptionsTest, HelpAndVersionNeedNothingElse) {
  for (const std::string flag : {"--help", "-h", "--version"}) {
    absl::StatusOr<CliOptions> parsed = ParseCliOptions(Argv({flag}), NoEnv());
    ASSERT_TRUE(parsed.ok()) << flag << ": " << parsed.status();
    EXPECT_EQ(parsed->help, flag != "--version");
    EXPECT_EQ(parsed->version, flag == "--version");
  }
}

TEST(IsDigestTest, Table) {
  const std::vector<std::pair<std::string, bool>> cases = {
      {kDigest, true},
      {"latest", false},
      {"sha256:", false},
      {kDigest + "0", false},
      {"sha512:" + kDigest.substr(7), false},
      {"sha256:"
       "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29bz",
       false},
  };
  for (const auto& [value, want] : cases)
    EXPECT_EQ(IsDigest(value), want) << value;
}

TEST(UsageTextTest, NamesEveryCommandAndExitCode) {
  const std::string usage = UsageText();
  for (const char* word :
       {"agents", "rollouts", "rollout ID", "watch ID", "deploy SERVICE",
        "rollback SERVICE", "resume ID", "services", "service NAME",
        "converge SERVICE", "cancel ID", "notify test NAME", "CANCELLED",
        "HOIST_SERVER", "HOIST_CA", "HOIST_CERT", "HOIST_KEY", "--tls-name",
        "--output"}) {
    EXPECT_NE(usage.find(word), std::string::npos) << word;
  }
}

}  // namespace
}  // namespace hoist::cli
