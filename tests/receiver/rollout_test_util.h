// Helpers for rollout manager and Control tests: configs built in code and a
// journal on a temp file.
#ifndef HOIST_TESTS_RECEIVER_ROLLOUT_TEST_UTIL_H_
#define HOIST_TESTS_RECEIVER_ROLLOUT_TEST_UTIL_H_

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "receiver/config.h"
#include "receiver/journal_sqlite.h"

namespace hoist::receiver::testing {

// `agents` agents web-1..web-N (label role=web) and one service "app"
// targeting them with `policy`.
inline std::shared_ptr<ReceiverConfig> MakeConfig(int agents,
                                                  RolloutPolicy policy) {
  auto c = std::make_shared<ReceiverConfig>();
  c->webhook.dedupe_window_seconds = 600;
  c->agent_call.deadline_seconds = 60;
  c->agent_call.retry_seconds = 60;
  for (int i = 1; i <= agents; ++i) {
    AgentEntry a;
    a.name = absl::StrCat("web-", i);
    a.address = absl::StrCat("10.0.0.", i, ":7981");
    a.labels["role"] = "web";
    c->agents.push_back(a);
  }
  ServiceConfig s;
  s.name = "app";
  s.image = "registry.test/prod/app";
  s.targets.labels["role"] = "web";
  s.container.set_name("app");
  s.container.add_ports("127.0.0.1:8080:8080/tcp");
  s.health.set_http_get("http://127.0.0.1:8080/");
  s.rollout = policy;
  c->services.push_back(s);
  return c;
}

inline std::string Digest(int i) {
  std::string hex = absl::StrCat(i);
  return absl::StrCat("sha256:", std::string(64 - hex.size(), '0'), hex);
}

// A fresh SqliteJournal in a temp dir, removed by the destructor.
class TempJournal {
 public:
  TempJournal() {
    std::string tmpl = "/tmp/hoist-rollout-test-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    Open();
  }
  ~TempJournal() {
    journal_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    auto j = SqliteJournal::Open(path());
    EXPECT_TRUE(j.ok()) << j.status();
    if (j.ok()) journal_ = std::move(*j);
  }
  void Close() { journal_.reset(); }
  std::string path() const { return dir_ + "/receiver.db"; }
  SqliteJournal* get() { return journal_.get(); }

 private:
  std::string dir_;
  std::unique_ptr<SqliteJournal> journal_;
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_ROLLOUT_TEST_UTIL_H_
