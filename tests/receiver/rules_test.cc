// Rules: glob matching, trigger matching, decisions and deploy intents.
#include "receiver/rules.h"

#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

constexpr char kSha[] =
    "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";

WebhookEvent DockerEvent() {
  WebhookEvent e;
  e.domain = "docker";
  e.event_type = "promoted";
  e.repo_key = "docker-local-staging";
  e.path = "team/helloworld/v1.2/manifest.json";
  e.image = "team/helloworld";
  e.image_name = "helloworld";
  e.tag = "v1.2";
  e.sha256 = kSha;
  return e;
}

ServiceConfig Service(const std::string& name, const std::string& image) {
  ServiceConfig s;
  s.name = name;
  s.image = "registry.example.com/prod/" + name;
  s.trigger.repo_key = "docker-local-staging";
  s.trigger.image = image;
  return s;
}

TEST(GlobMatchTest, Table) {
  struct Case {
    const char* pattern;
    const char* text;
    bool want;
  };
  for (const Case& c : std::vector<Case>{{"latest", "latest", true},
                                         {"latest", "latest2", false},
                                         {"*", "", true},
                                         {"*", "anything", true},
                                         {"v1.*", "v1.2", true},
                                         {"v1.*", "v1", false},
                                         {"v*-rc*", "v2-rc1", true},
                                         {"v*-rc*", "v2-final", false},
                                         {"*.*.*", "1.2.3", true},
                                         {"*.*.*", "1.2", false},
                                         {"a*b*c", "aXXbYYc", true},
                                         {"a*b*c", "aXXbYY", false},
                                         {"", "", true},
                                         {"", "x", false}}) {
    EXPECT_EQ(GlobMatch(c.pattern, c.text), c.want)
        << c.pattern << " ~ " << c.text;
  }
  // Many stars over a long non-matching text still finish quickly.
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*b", std::string(10000, 'a')));
}

TEST(MatchTriggerTest, EachCriterion) {
  ServiceConfig s = Service("hello", "team/helloworld");
  s.trigger.tags = {"v1.*"};
  std::string problem;
  EXPECT_EQ(MatchTrigger(s.trigger, DockerEvent(), &problem),
            RuleMatch::kMatch);

  WebhookEvent e = DockerEvent();
  e.event_type = "pushed";
  EXPECT_EQ(MatchTrigger(s.trigger, e, &problem), RuleMatch::kNoMatch);
  e = DockerEvent();
  e.repo_key = "other";
  EXPECT_EQ(MatchTrigger(s.trigger, e, &problem), RuleMatch::kNoMatch);
  e = DockerEvent();
  e.image = "team/helloworld2";
  EXPECT_EQ(MatchTrigger(s.trigger, e, &problem), RuleMatch::kNoMatch);
  e = DockerEvent();
  e.tag = "v2.0";
  EXPECT_EQ(MatchTrigger(s.trigger, e, &problem), RuleMatch::kNoMatch);
  e = DockerEvent();
  e.domain = "artifact";
  EXPECT_EQ(MatchTrigger(s.trigger, e, &problem), RuleMatch::kNoMatch);

  e = DockerEvent();
  e.repo_key.clear();
  e.field_problems["repo_key"] = "data.repo_key is missing";
  EXPECT_EQ(MatchTrigger(s.trigger, e, &problem), RuleMatch::kMissingField);
  EXPECT_EQ(problem, "data.repo_key is missing");

  // A rule without repo_key or tags does not need them.
  s.trigger.repo_key.clear();
  s.trigger.tags.clear();
  e.tag.clear();
  e.field_problems["tag"] = "data.tag is missing";
  EXPECT_EQ(MatchTrigger(s.trigger, e, &problem), RuleMatch::kMatch);
}

TEST(MatchServicesTest, Decisions) {
  ReceiverConfig config;
  config.services = {Service("hello", "team/helloworld"),
                     Service("other", "team/other"),
                     Service("hello-copy", "team/helloworld")};

  RuleDecision d = MatchServices(config, DockerEvent());
  ASSERT_EQ(d.services.size(), 2u);
  EXPECT_EQ(d.services[0]->name, "hello");
  EXPECT_EQ(d.services[1]->name, "hello-copy");
  EXPECT_TRUE(d.bad_request.empty());

  WebhookEvent e = DockerEvent();
  e.image = "team/nothing";
  d = MatchServices(config, e);
  EXPECT_TRUE(d.services.empty());
  EXPECT_TRUE(d.bad_request.empty());
  EXPECT_NE(d.ignored.find("no service"), std::string::npos) << d.ignored;

  e = DockerEvent();
  e.domain = "build";
  d = MatchServices(config, e);
  EXPECT_TRUE(d.services.empty());
  EXPECT_NE(d.ignored.find("not a docker event"), std::string::npos);

  e = DockerEvent();
  e.sha256 = "abc";
  e.field_problems["sha256"] =
      "data.sha256 must be 64 lowercase hex characters";
  d = MatchServices(config, e);
  EXPECT_TRUE(d.services.empty());
  EXPECT_NE(d.bad_request.find("data.sha256 must be 64"), std::string::npos)
      << d.bad_request;

  // An unusable sha256 does not matter when nothing matches.
  e.image = "team/nothing";
  d = MatchServices(config, e);
  EXPECT_TRUE(d.bad_request.empty());

  e = DockerEvent();
  e.image.clear();
  e.field_problems["image"] = "data.path: bad";
  d = MatchServices(config, e);
  EXPECT_NE(d.bad_request.find("data.path: bad"), std::string::npos);
  EXPECT_NE(d.bad_request.find("service hello"), std::string::npos);
}

TEST(BuildDeployIntentTest, Fields) {
  const ServiceConfig s = Service("hello", "team/helloworld");
  const DeployIntent intent = BuildDeployIntent(s, DockerEvent());
  EXPECT_EQ(intent.service, "hello");
  EXPECT_EQ(intent.image, "registry.example.com/prod/hello");
  EXPECT_EQ(intent.digest, std::string("sha256:") + kSha);
  EXPECT_EQ(intent.tag, "v1.2");
  EXPECT_EQ(intent.trigger, "webhook");
  EXPECT_EQ(DedupeKey(DockerEvent()),
            std::string("docker|promoted|docker-local-staging|"
                        "team/helloworld/v1.2/manifest.json|") +
                kSha);
  EXPECT_EQ(intent.dedupe_key, DedupeKey(DockerEvent()) + "|hello");
  EXPECT_FALSE(intent.summary.empty());

  // Another digest is another delivery; another service another rollout.
  WebhookEvent other = DockerEvent();
  other.sha256[0] = 'f';
  EXPECT_NE(BuildDeployIntent(s, other).dedupe_key, intent.dedupe_key);
  EXPECT_NE(
      BuildDeployIntent(Service("hello2", "team/helloworld"), DockerEvent())
          .dedupe_key,
      intent.dedupe_key);
}

}  // namespace
}  // namespace hoist::receiver
