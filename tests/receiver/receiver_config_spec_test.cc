// LoadReceiverConfig (what --check-config runs) refuses the container specs
// and names an agent would refuse, at their line, naming the service and the
// field: the agents' rules are common/spec_validation.h, shared.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/config.h"

namespace hoist::receiver {
namespace {

using ::testing::HasSubstr;

// Lines 1-6; the agent is on line 6, the service from line 8.
std::string Config(const std::string& agent_name, const std::string& service,
                   const std::string& container) {
  return absl::StrCat(
      "webhook:\n"                                        // 1
      "  listen: \"127.0.0.1:0\"\n"                       // 2
      "  secret_files: [secret]\n"                        // 3
      "tls: {ca: ca.pem, cert: r.pem, key: r-key.pem}\n"  // 4
      "agents:\n"                                         // 5
      "  - {name: ",
      agent_name, ", address: \"web-1:7981\", labels: {role: web}}\n",  // 6
      "services:\n",                                                    // 7
      "  - name: ", service, "\n",                                      // 8
      "    trigger: {image: hello}\n",                                  // 9
      "    image: reg.example/hello\n",                                 // 10
      "    targets: {labels: {role: web}}\n",                           // 11
      "    container: ", container, "\n");                              // 12
}

// The whole report of loading `yaml` ("" when it loads).
std::string Problems(const std::string& yaml, std::string* file) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "rcs-", RandomHex(6));
  EXPECT_TRUE(WriteFileAtomically(dir + "-secret", "s3cret\n").ok());
  *file = dir + ".yaml";
  std::string text = yaml;
  const std::string from = "[secret]";
  text.replace(text.find(from), from.size(),
               absl::StrCat("[\"", dir, "-secret\"]"));
  EXPECT_TRUE(WriteFileAtomically(*file, text).ok());
  absl::StatusOr<ReceiverConfig> config = LoadReceiverConfig(*file);
  std::remove(file->c_str());
  std::remove((dir + "-secret").c_str());
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

TEST(ReceiverConfigSpecTest, AValidConfigLoads) {
  std::string file;
  EXPECT_EQ(Problems(Config("web-1", "hello", "{name: hello}"), &file), "");
  EXPECT_EQ(
      Problems(Config(std::string(63, 'w'), "hello",
                      absl::StrCat("{name: ", std::string(100, 'c'), "}")),
               &file),
      "");
}

// Reported: the receiver allowed 128 characters, the agent refuses over 100.
TEST(ReceiverConfigSpecTest, AContainerNameOver100IsRefused) {
  std::string file;
  const std::string problems =
      Problems(Config("web-1", "hello",
                      absl::StrCat("{name: ", std::string(110, 'c'), "}")),
               &file);
  EXPECT_EQ(problems,
            absl::StrCat(file,
                         ":12: service \"hello\": container.name is longer "
                         "than 100"));
}

// A service name alone (the container's default name) is held to it too.
TEST(ReceiverConfigSpecTest, AServiceNameUsedAsContainerNameIsHeldToIt) {
  std::string file;
  const std::string name(110, 's');
  EXPECT_THAT(Problems(Config("web-1", name, "{}"), &file),
              HasSubstr(absl::StrCat(":12: service \"", name,
                                     "\": container.name is longer than 100")));
}

// Reported: the agent refuses such names (Recover would take the container
// for a deploy's temporary one and remove it).
TEST(ReceiverConfigSpecTest, AContainerNameWithTheTempInfixIsRefused) {
  std::string file;
  const std::string problems =
      Problems(Config("web-1", "hello", "{name: app.hoist-new-x}"), &file);
  EXPECT_EQ(problems, absl::StrCat(file,
                                   ":12: service \"hello\": container.name "
                                   "must not contain \".hoist-new-\""));
}

// Reported: a 110-character agent makes deploy ids over the agent's 128.
TEST(ReceiverConfigSpecTest, AnAgentNameOver63IsRefused) {
  std::string file;
  const std::string name(110, 'w');
  const std::string problems =
      Problems(Config(name, "hello", "{name: hello}"), &file);
  EXPECT_EQ(problems,
            absl::StrCat(file, ":6: agent name \"", name,
                         "\" is longer than 63 (deploy ids \"<rollout "
                         "id>-<agent>-rollback\" must fit 128 characters)"));
}

// The default agent policy: the receiver cannot see hosts' own `policy:`.
TEST(ReceiverConfigSpecTest, WhatTheDefaultAgentPolicyRefusesIsRefused) {
  std::string file;
  const std::string problems =
      Problems(Config("web-1", "hello",
                      "{name: hello, network: host, volumes: [\"/srv:/srv\", "
                      "\"/var/run/docker.sock:/var/run/docker.sock\"]}"),
               &file);
  EXPECT_THAT(problems,
              HasSubstr(":12: service \"hello\": container.volumes[1]: "
                        "default agent policy: bind source "
                        "\"/var/run/docker.sock\" is refused (refused path "
                        "/var/run/docker.sock)"));
  EXPECT_THAT(problems,
              HasSubstr(":12: service \"hello\": container.network: default "
                        "agent policy: network \"host\" is refused "
                        "(policy.allow_host_network is false)"));
}

// Each problem at the line of its own item.
TEST(ReceiverConfigSpecTest, ProblemsAreReportedAtTheirItemsLine) {
  std::string file;
  const std::string problems =
      Problems(Config("web-1", "hello",
                      "\n"                                   // 12
                      "      name: hello\n"                  // 13
                      "      ports:\n"                       // 14
                      "        - \"8080:80\"\n"              // 15
                      "        - \"80/icmp\"\n"              // 16
                      "      labels: {hoist.digest: x}\n"    // 17
                      "      health: {tcp: \"nohost\"}\n"),  // 18
               &file);
  EXPECT_THAT(problems,
              HasSubstr(absl::StrCat(file,
                                     ":16: service \"hello\": "
                                     "container.ports[1]: port \"80/icmp\"")));
  EXPECT_THAT(problems, HasSubstr(absl::StrCat(
                            file,
                            ":17: service \"hello\": container.labels: label "
                            "\"hoist.digest\": hoist.* labels are reserved")));
  EXPECT_THAT(problems,
              HasSubstr(absl::StrCat(file,
                                     ":18: service \"hello\": health.tcp "
                                     "\"nohost\" must be host:port")));
}

}  // namespace
}  // namespace hoist::receiver
