// Dashboard authentication (docs/design.md, "Dashboard"): the tokens file
// grammar, logins and their roles, sessions (TTL, logout, eviction, token
// reloads), CSRF checks and the per-IP failed-login limiter, all on a
// FakeClock.
#include "receiver/dashboard_auth.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kAliceSecret[] = "alice-secret-token";
constexpr char kBobSecret[] = "bob-secret-token";
constexpr char kIp[] = "192.0.2.10";
constexpr char kOtherIp[] = "192.0.2.20";

// alice: operator (line 1), bob: viewer (line 2).
std::vector<DashboardToken> AliceAndBob() {
  return {
      {"alice", DashboardRole::kOperator, Sha256Hex(kAliceSecret), 1},
      {"bob", DashboardRole::kViewer, Sha256Hex(kBobSecret), 2},
  };
}

bool IsLowerHex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST(DashboardRoleNameTest, NamesAsInTheTokensFile) {
  EXPECT_EQ(DashboardRoleName(DashboardRole::kViewer), "viewer");
  EXPECT_EQ(DashboardRoleName(DashboardRole::kOperator), "operator");
}

TEST(ParseDashboardTokensTest, ReadsEntriesSkippingCommentsAndBlankLines) {
  const std::string alice = Sha256Hex(kAliceSecret);
  const std::string bob = Sha256Hex(kBobSecret);
  const std::string text =
      absl::StrCat("# Dashboard tokens: NAME ROLE SHA256HEX\n",  // line 1
                   "\n",                                         // 2
                   "alice operator ", alice, "\n",               // 3
                   "   # indented comment\n",                    // 4
                   "  \t \n",                                    // 5
                   "\tbob \t viewer  ", bob, "  \r\n");  // 6, tabs and CRLF
  absl::StatusOr<std::vector<DashboardToken>> tokens =
      ParseDashboardTokens(text, "tokens.txt");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].name, "alice");
  EXPECT_EQ((*tokens)[0].role, DashboardRole::kOperator);
  EXPECT_EQ((*tokens)[0].sha256_hex, alice);
  EXPECT_EQ((*tokens)[0].line, 3);
  EXPECT_EQ((*tokens)[1].name, "bob");
  EXPECT_EQ((*tokens)[1].role, DashboardRole::kViewer);
  EXPECT_EQ((*tokens)[1].sha256_hex, bob);
  EXPECT_EQ((*tokens)[1].line, 6);
}

TEST(ParseDashboardTokensTest, OnlyCommentsGiveNoTokens) {
  absl::StatusOr<std::vector<DashboardToken>> tokens =
      ParseDashboardTokens("# nobody yet\n\n", "tokens.txt");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE(tokens->empty());
}

TEST(ParseDashboardTokensTest, BadLinesNamePathAndLine) {
  const std::string hash = Sha256Hex(kAliceSecret);
  const std::string other = Sha256Hex(kBobSecret);
  const std::string good = absl::StrCat("alice operator ", hash, "\n");
  struct Case {
    std::string name;
    std::string text;
    std::string want_prefix;
    std::string want_why;
  };
  const std::vector<Case> cases = {
      {"two fields", "# c\nalice operator\n", "t.txt:2: ", "got 2 fields"},
      {"four fields", absl::StrCat("alice operator ", hash, " extra\n"),
       "t.txt:1: ", "got 4 fields"},
      {"unknown role", absl::StrCat("\nalice admin ", hash, "\n"),
       "t.txt:2: ", "unknown role \"admin\""},
      {"role is case-sensitive", absl::StrCat("alice Operator ", hash, "\n"),
       "t.txt:1: ", "unknown role \"Operator\""},
      {"uppercase hex",
       absl::StrCat(good, "bob viewer ", absl::AsciiStrToUpper(other), "\n"),
       "t.txt:2: ", "64 lowercase hex"},
      {"short hex", absl::StrCat("bob viewer ", other.substr(1), "\n"),
       "t.txt:1: ", "64 lowercase hex"},
      {"not hex", absl::StrCat("bob viewer ", std::string(64, 'g'), "\n"),
       "t.txt:1: ", "64 lowercase hex"},
      {"duplicate name", absl::StrCat(good, "\nalice viewer ", other, "\n"),
       "t.txt:3: ", "duplicate name \"alice\" (first on line 1)"},
      {"duplicate hash", absl::StrCat("# c\n", good, "bob viewer ", hash, "\n"),
       "t.txt:3: ", "duplicate token hash (same as \"alice\" on line 2)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::vector<DashboardToken>> tokens =
        ParseDashboardTokens(c.text, "t.txt");
    ASSERT_FALSE(tokens.ok());
    EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(tokens.status().message()),
                StartsWith(c.want_prefix));
    EXPECT_THAT(std::string(tokens.status().message()), HasSubstr(c.want_why));
  }
}

TEST(ParseDashboardTokensTest, BadHashFieldIsNotRepeated) {
  // Someone pasted the secret itself where its hash belongs.
  absl::StatusOr<std::vector<DashboardToken>> tokens =
      ParseDashboardTokens("alice operator hunter2-secret\n", "t.txt");
  ASSERT_FALSE(tokens.ok());
  EXPECT_THAT(std::string(tokens.status().message()), StartsWith("t.txt:1: "));
  EXPECT_THAT(std::string(tokens.status().message()),
              ::testing::Not(HasSubstr("hunter2")));
}

TEST(LoadDashboardTokensTest, ReadsTheFileAndNamesItInErrors) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/dashboard_tokens_", getpid());
  {
    std::ofstream out(path);
    out << "# tokens\nalice operator " << Sha256Hex(kAliceSecret) << "\n";
  }
  absl::StatusOr<std::vector<DashboardToken>> tokens =
      LoadDashboardTokens(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ((*tokens)[0].name, "alice");
  EXPECT_EQ((*tokens)[0].line, 2);

  {
    std::ofstream out(path);
    out << "alice root " << Sha256Hex(kAliceSecret) << "\n";
  }
  tokens = LoadDashboardTokens(path);
  ASSERT_FALSE(tokens.ok());
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tokens.status().message()),
              StartsWith(absl::StrCat(path, ":1: ")));

  std::remove(path.c_str());
  tokens = LoadDashboardTokens(path);
  ASSERT_FALSE(tokens.ok());
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(tokens.status().message()), HasSubstr(path));
}

class DashboardAuthTest : public ::testing::Test {
 protected:
  DashboardAuthOptions Options() {
    DashboardAuthOptions options;
    options.clock = &clock_;
    return options;
  }

  // A DashboardAuth on clock_ knowing alice and bob.
  std::unique_ptr<DashboardAuth> MakeAuth(DashboardAuthOptions options) {
    auto auth = std::make_unique<DashboardAuth>(options);
    auth->SetTokens(AliceAndBob());
    return auth;
  }
  std::unique_ptr<DashboardAuth> MakeAuth() { return MakeAuth(Options()); }

  // Fails `n` logins from `ip`, each one UNAUTHENTICATED.
  static void FailLogins(DashboardAuth& auth, absl::string_view ip, int n) {
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(auth.Login("wrong", ip).status().code(),
                absl::StatusCode::kUnauthenticated)
          << "failure " << i + 1 << " from " << ip;
    }
  }

  FakeClock clock_;
};

// Expects `session` to be OK and belong to `name` with `role`.
void ExpectSessionOf(const absl::StatusOr<DashboardSession>& session,
                     absl::string_view name, DashboardRole role) {
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->name, name);
  EXPECT_EQ(session->role, role);
}

// Logs in with `secret` and expects a session for `name` with `role`, which
// Lookup finds again.
void ExpectLogin(DashboardAuth& auth, FakeClock& clock, const char* secret,
                 const char* name, DashboardRole role) {
  SCOPED_TRACE(name);
  absl::StatusOr<DashboardSession> session = auth.Login(secret, kIp);
  ExpectSessionOf(session, name, role);
  if (!session.ok()) return;
  EXPECT_EQ(session->expires, clock.Now() + absl::Hours(12));
  absl::StatusOr<DashboardSession> found = auth.Lookup(session->id);
  ExpectSessionOf(found, name, role);
  if (found.ok()) {
    EXPECT_EQ(found->csrf, session->csrf);
  }
}

TEST_F(DashboardAuthTest, LoginGivesTheTokensNameAndRole) {
  auto auth = MakeAuth();
  ExpectLogin(*auth, clock_, kAliceSecret, "alice", DashboardRole::kOperator);
  ExpectLogin(*auth, clock_, kBobSecret, "bob", DashboardRole::kViewer);
  EXPECT_EQ(auth->session_count(), 2u);
}

TEST_F(DashboardAuthTest, SessionIdAndCsrfAreRandomAndDistinct) {
  auto auth = MakeAuth();
  std::vector<std::string> seen;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<DashboardSession> session = auth->Login(kAliceSecret, kIp);
    ASSERT_TRUE(session.ok()) << session.status();
    seen.push_back(session->id);
    seen.push_back(session->csrf);
  }
  for (const std::string& secret : seen) {
    EXPECT_EQ(secret.size(), 64u);  // 32 bytes, hex
    EXPECT_TRUE(IsLowerHex(secret)) << secret;
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end())
      << absl::StrJoin(seen, "\n");
}

TEST_F(DashboardAuthTest, WrongOrEmptyTokenIsUnauthenticated) {
  auto auth = MakeAuth();
  const std::vector<std::string> wrong = {
      "wrong", "", Sha256Hex(kAliceSecret) /* the hash is no token */,
      "alice-secret-toke"};
  for (const std::string& token : wrong) {
    absl::StatusOr<DashboardSession> session = auth->Login(token, kIp);
    ASSERT_FALSE(session.ok()) << token;
    EXPECT_EQ(session.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(session.status().message(), "unknown token");
  }
  EXPECT_EQ(auth->session_count(), 0u);
}

TEST_F(DashboardAuthTest, EmptyTokenNeverLogsIn) {
  DashboardAuth auth(Options());
  // A file listing the hash of the empty string still lets nobody in.
  auth.SetTokens({{"nobody", DashboardRole::kOperator, Sha256Hex(""), 1}});
  EXPECT_EQ(auth.Login("", kIp).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(DashboardAuthTest, NoTokensNothingLogsIn) {
  DashboardAuth auth(Options());
  EXPECT_EQ(auth.Login(kAliceSecret, kIp).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(DashboardAuthTest, SixthAttemptIsLimitedEvenWithTheRightToken) {
  auto auth = MakeAuth();
  FailLogins(*auth, kIp, 5);
  absl::StatusOr<DashboardSession> limited = auth->Login(kAliceSecret, kIp);
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(limited.status().message(),
            "too many failed logins; try again in 60 s");
  EXPECT_EQ(auth->session_count(), 0u);

  clock_.Advance(absl::Seconds(59.5));
  limited = auth->Login(kAliceSecret, kIp);
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(limited.status().message(),
            "too many failed logins; try again in 1 s");

  clock_.Advance(absl::Seconds(0.5));  // the window opened 60 s ago
  absl::StatusOr<DashboardSession> session = auth->Login(kAliceSecret, kIp);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->name, "alice");
}

TEST_F(DashboardAuthTest, FiveFailuresAreAllowedBeforeTheLimit) {
  auto auth = MakeAuth();
  FailLogins(*auth, kIp, 4);
  // The fifth failure is still checked and counted, not refused up front.
  EXPECT_EQ(auth->Login("wrong", kIp).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Login("wrong", kIp).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(DashboardAuthTest, LimitFollowsTheOptions) {
  DashboardAuthOptions options = Options();
  options.login_failures_per_window = 2;
  options.login_window = absl::Minutes(10);
  auto auth = MakeAuth(options);
  FailLogins(*auth, kIp, 2);
  absl::StatusOr<DashboardSession> limited = auth->Login(kAliceSecret, kIp);
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(limited.status().message(),
            "too many failed logins; try again in 600 s");
  clock_.Advance(absl::Minutes(9));
  EXPECT_EQ(auth->Login(kAliceSecret, kIp).status().code(),
            absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE(auth->Login(kAliceSecret, kIp).ok());
}

TEST_F(DashboardAuthTest, LimitedAttemptsDoNotExtendTheWindow) {
  auto auth = MakeAuth();
  FailLogins(*auth, kIp, 5);
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(absl::Seconds(5));
    EXPECT_EQ(auth->Login("wrong", kIp).status().code(),
              absl::StatusCode::kResourceExhausted);
  }
  clock_.Advance(absl::Seconds(10));  // 60 s after the first failure
  EXPECT_TRUE(auth->Login(kAliceSecret, kIp).ok());
}

TEST_F(DashboardAuthTest, FailuresOnOneIpDoNotLimitAnother) {
  auto auth = MakeAuth();
  FailLogins(*auth, kIp, 5);
  ASSERT_EQ(auth->Login(kAliceSecret, kIp).status().code(),
            absl::StatusCode::kResourceExhausted);
  absl::StatusOr<DashboardSession> session =
      auth->Login(kAliceSecret, kOtherIp);
  ASSERT_TRUE(session.ok()) << session.status();
  // The other IP has its own full allowance.
  FailLogins(*auth, kOtherIp, 5);
  EXPECT_EQ(auth->Login(kAliceSecret, kOtherIp).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(DashboardAuthTest, SuccessClearsOnlyItsOwnIpsFailures) {
  auto auth = MakeAuth();
  FailLogins(*auth, kIp, 4);
  FailLogins(*auth, kOtherIp, 4);
  ASSERT_TRUE(auth->Login(kAliceSecret, kIp).ok());
  // kIp starts again from zero: four more failures leave it unlimited.
  FailLogins(*auth, kIp, 4);
  EXPECT_TRUE(auth->Login(kAliceSecret, kIp).ok());
  // kOtherIp kept its four: one more reaches the limit.
  FailLogins(*auth, kOtherIp, 1);
  EXPECT_EQ(auth->Login(kAliceSecret, kOtherIp).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(DashboardAuthTest, FailedLoginMemoryIsBounded) {
  DashboardAuthOptions options = Options();
  options.max_tracked_ips = 3;
  auto auth = MakeAuth(options);
  FailLogins(*auth, "10.0.0.1", 5);
  ASSERT_EQ(auth->Login(kAliceSecret, "10.0.0.1").status().code(),
            absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Seconds(1));
  for (int i = 2; i <= 4; ++i) {
    FailLogins(*auth, absl::StrCat("10.0.0.", i), 1);
  }
  EXPECT_EQ(auth->tracked_ip_count(), 3u);
  // 10.0.0.1's window opened first, so it was forgotten to make room.
  EXPECT_TRUE(auth->Login(kAliceSecret, "10.0.0.1").ok());
  // The newest ones are still counted.
  FailLogins(*auth, "10.0.0.4", 4);
  EXPECT_EQ(auth->Login(kAliceSecret, "10.0.0.4").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(DashboardAuthTest, ExpiredFailureWindowsAreForgotten) {
  auto auth = MakeAuth();
  for (int i = 0; i < 50; ++i) FailLogins(*auth, absl::StrCat("10.1.0.", i), 1);
  EXPECT_EQ(auth->tracked_ip_count(), 50u);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(auth->tracked_ip_count(), 0u);
}

TEST_F(DashboardAuthTest, LookupAfterTtlIsNotFound) {
  DashboardAuthOptions options = Options();
  options.session_ttl = absl::Hours(1);
  auto auth = MakeAuth(options);
  absl::StatusOr<DashboardSession> session = auth->Login(kBobSecret, kIp);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->expires, clock_.Now() + absl::Hours(1));
  clock_.Advance(absl::Hours(1) - absl::Seconds(1));
  EXPECT_TRUE(auth->Lookup(session->id).ok());
  clock_.Advance(absl::Seconds(1));
  absl::StatusOr<DashboardSession> expired = auth->Lookup(session->id);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(auth->session_count(), 0u);
}

TEST_F(DashboardAuthTest, ExpiredSessionsAreErasedWithoutLookup) {
  auto auth = MakeAuth();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(auth->Login(kAliceSecret, kIp).ok());
  EXPECT_EQ(auth->session_count(), 3u);
  clock_.Advance(absl::Hours(12));
  EXPECT_EQ(auth->session_count(), 0u);
}

TEST_F(DashboardAuthTest, UnknownSessionIsNotFound) {
  auto auth = MakeAuth();
  absl::StatusOr<DashboardSession> session = auth->Login(kAliceSecret, kIp);
  ASSERT_TRUE(session.ok()) << session.status();
  for (const std::string& id : {std::string(""), std::string("nope"),
                                session->csrf, session->id.substr(0, 63)}) {
    EXPECT_EQ(auth->Lookup(id).status().code(), absl::StatusCode::kNotFound)
        << id;
  }
}

TEST_F(DashboardAuthTest, LogoutEndsOnlyThatSession) {
  auto auth = MakeAuth();
  absl::StatusOr<DashboardSession> first = auth->Login(kAliceSecret, kIp);
  absl::StatusOr<DashboardSession> second = auth->Login(kAliceSecret, kIp);
  ASSERT_TRUE(first.ok() && second.ok());
  auth->Logout(first->id);
  auth->Logout(first->id);  // twice: ignored
  auth->Logout("unknown");
  EXPECT_EQ(auth->Lookup(first->id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(auth->Lookup(second->id).ok());
  EXPECT_EQ(auth->session_count(), 1u);
}

TEST_F(DashboardAuthTest, SetTokensDroppingANameDropsItsSessions) {
  auto auth = MakeAuth();
  absl::StatusOr<DashboardSession> alice = auth->Login(kAliceSecret, kIp);
  absl::StatusOr<DashboardSession> bob = auth->Login(kBobSecret, kIp);
  ASSERT_TRUE(alice.ok() && bob.ok());
  std::vector<DashboardToken> tokens = AliceAndBob();
  tokens.erase(tokens.begin());  // alice is gone
  auth->SetTokens(tokens);
  EXPECT_EQ(auth->Lookup(alice->id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(auth->Lookup(bob->id).ok());
  EXPECT_EQ(auth->Login(kAliceSecret, kIp).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(DashboardAuthTest, SetTokensChangingARoleDropsItsSessions) {
  auto auth = MakeAuth();
  absl::StatusOr<DashboardSession> alice = auth->Login(kAliceSecret, kIp);
  absl::StatusOr<DashboardSession> bob = auth->Login(kBobSecret, kIp);
  ASSERT_TRUE(alice.ok() && bob.ok());
  std::vector<DashboardToken> tokens = AliceAndBob();
  tokens[0].role = DashboardRole::kViewer;  // alice demoted
  auth->SetTokens(tokens);
  EXPECT_EQ(auth->Lookup(alice->id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(auth->Lookup(bob->id).ok());
  absl::StatusOr<DashboardSession> again = auth->Login(kAliceSecret, kIp);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->role, DashboardRole::kViewer);
}

TEST_F(DashboardAuthTest, SetTokensRotatingAHashDropsItsSessions) {
  auto auth = MakeAuth();
  absl::StatusOr<DashboardSession> alice = auth->Login(kAliceSecret, kIp);
  ASSERT_TRUE(alice.ok()) << alice.status();
  std::vector<DashboardToken> tokens = AliceAndBob();
  tokens[0].sha256_hex = Sha256Hex("alice-new-token");  // old one leaked
  auth->SetTokens(tokens);
  EXPECT_EQ(auth->Lookup(alice->id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(auth->Login(kAliceSecret, kIp).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(auth->Login("alice-new-token", kIp).ok());
}

TEST_F(DashboardAuthTest, SetTokensWithTheSameEntriesKeepsSessions) {
  auto auth = MakeAuth();
  absl::StatusOr<DashboardSession> alice = auth->Login(kAliceSecret, kIp);
  absl::StatusOr<DashboardSession> bob = auth->Login(kBobSecret, kIp);
  ASSERT_TRUE(alice.ok() && bob.ok());
  std::vector<DashboardToken> tokens = AliceAndBob();
  std::swap(tokens[0], tokens[1]);  // reordered, e.g. edited file
  tokens.push_back(
      {"carol", DashboardRole::kViewer, Sha256Hex("carol-token"), 3});
  auth->SetTokens(tokens);
  EXPECT_TRUE(auth->Lookup(alice->id).ok());
  EXPECT_TRUE(auth->Lookup(bob->id).ok());
  EXPECT_EQ(auth->session_count(), 2u);
}

TEST_F(DashboardAuthTest, CsrfMatchesOnlyTheSessionsOwnToken) {
  auto auth = MakeAuth();
  absl::StatusOr<DashboardSession> session = auth->Login(kAliceSecret, kIp);
  absl::StatusOr<DashboardSession> other = auth->Login(kAliceSecret, kIp);
  ASSERT_TRUE(session.ok() && other.ok());
  EXPECT_TRUE(DashboardAuth::CsrfMatches(*session, session->csrf));
  struct Case {
    const char* name;
    std::string csrf;
  };
  const std::vector<Case> wrong = {
      {"empty", ""},
      {"another session's", other->csrf},
      {"the session id", session->id},
      {"a prefix", session->csrf.substr(0, 32)},
      {"one character longer", session->csrf + "0"},
      {"uppercase", absl::AsciiStrToUpper(session->csrf)},
  };
  for (const Case& c : wrong) {
    EXPECT_FALSE(DashboardAuth::CsrfMatches(*session, c.csrf)) << c.name;
  }
  DashboardSession no_csrf = *session;
  no_csrf.csrf.clear();
  EXPECT_FALSE(DashboardAuth::CsrfMatches(no_csrf, ""));
}

TEST_F(DashboardAuthTest, MaxSessionsEvictsTheOldest) {
  DashboardAuthOptions options = Options();
  options.max_sessions = 3;
  auto auth = MakeAuth(options);
  std::vector<DashboardSession> sessions;
  // The clock does not move: eviction follows the order of the logins.
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<DashboardSession> session = auth->Login(kBobSecret, kIp);
    ASSERT_TRUE(session.ok()) << session.status();
    sessions.push_back(*session);
    EXPECT_LE(auth->session_count(), 3u);
  }
  EXPECT_EQ(auth->session_count(), 3u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(auth->Lookup(sessions[i].id).ok(), i >= 2) << "session " << i;
  }
}

// One client of ConcurrentLoginsLookupsAndReloads.
void LogInAndOutRepeatedly(DashboardAuth& auth, int client) {
  const std::string ip = absl::StrCat("10.2.0.", client);
  const char* secret = client % 2 == 0 ? kAliceSecret : kBobSecret;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<DashboardSession> session = auth.Login(secret, ip);
    ASSERT_TRUE(session.ok()) << session.status();
    (void)auth.Lookup(session->id);
    if (i % 3 == 0) auth.Logout(session->id);
    if (i % 50 == 0) auth.SetTokens(AliceAndBob());
  }
}

TEST_F(DashboardAuthTest, ConcurrentLoginsLookupsAndReloads) {
  DashboardAuthOptions options = Options();
  options.max_sessions = 50;
  auto auth = MakeAuth(options);
  constexpr int kClients = 4;
  std::vector<std::thread> threads;
  threads.reserve(kClients);
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back(LogInAndOutRepeatedly, std::ref(*auth), t);
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_LE(auth->session_count(), 50u);
}

}  // namespace
}  // namespace hoist::receiver
