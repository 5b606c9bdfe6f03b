// Unit tests of the health wait (HealthWaiter) with scripted probes
// (FakeHealthProber), an in-memory Docker (FakeDockerClient) and a FakeClock
// that moves only while the waiter sleeps on it.
#include "nodeagent/health_waiter.h"

#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/nodeagent/fake_docker_client.h"
#include "tests/nodeagent/fake_health_prober.h"

namespace hoist::nodeagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kRepo[] = "registry.test:5000/app";
constexpr char kUrl[] = "http://127.0.0.1:8080/healthz";
constexpr char kTcp[] = "127.0.0.1:5432";

class HealthWaiterTest : public ::testing::Test {
 protected:
  // A started container of an image whose containers behave as `behavior`.
  std::string Started(const FakeBehavior& behavior = FakeBehavior()) {
    const std::string digest =
        absl::StrCat("sha256:", images_++, std::string(63, '0'));
    docker_.AddRemoteImage(kRepo, digest, behavior);
    const std::string reference = absl::StrCat(kRepo, "@", digest);
    EXPECT_TRUE(docker_.PullImage(reference, "", nullptr).ok());
    ContainerConfig config;
    config.image = reference;
    auto id = docker_.CreateContainer(absl::StrCat("c", images_), config);
    EXPECT_TRUE(id.ok()) << id.status();
    EXPECT_TRUE(docker_.StartContainer(*id).ok());
    return *id;
  }

  static hoist::v1::HealthCheck Http(int timeout_seconds = 0) {
    hoist::v1::HealthCheck check;
    check.set_http_get(kUrl);
    check.set_timeout_seconds(timeout_seconds);
    return check;
  }

  // Runs one wait on its own thread; whenever that thread sleeps on the
  // fake clock, moves the clock by `step`. Sets elapsed_ (clock time) and
  // attempts_.
  absl::Status Wait(const std::string& id, const hoist::v1::HealthCheck& check,
                    absl::Duration step = absl::Milliseconds(5),
                    absl::Duration settle = absl::Seconds(1)) {
    HealthWaiter waiter(&docker_, &prober_, &clock_,
                        {id, check, settle, {{"test", "1"}}});
    const absl::Time start = clock_.Now();
    absl::Status result;
    absl::Notification done;
    std::thread thread([&] {
      result = waiter.Wait();
      done.Notify();
    });
    while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(1))) {
      if (clock_.sleepers() > 0) clock_.Advance(step);
    }
    thread.join();
    elapsed_ = clock_.Now() - start;
    attempts_ = waiter.attempts();
    return result;
  }

  FakeClock clock_;
  FakeDockerClient docker_;
  FakeHealthProber prober_;
  int images_ = 0;
  absl::Duration elapsed_;
  int attempts_ = 0;
};

TEST_F(HealthWaiterTest, HttpCheckPassesOnceTheProbeDoesAfterFailures) {
  prober_.FailFirst(kUrl, 3,
                    absl::UnavailableError("GET url: Connection refused"));
  EXPECT_TRUE(Wait(Started(), Http()).ok());
  EXPECT_EQ(prober_.CountCalls(absl::StrCat("http ", kUrl)), 4);
  EXPECT_EQ(attempts_, 4);
}

TEST_F(HealthWaiterTest, TcpCheckPassesOnceTheProbeDoesAfterFailures) {
  prober_.FailFirst(kTcp, 2,
                    absl::UnavailableError("tcp x: Connection refused"));
  hoist::v1::HealthCheck check;
  check.set_tcp(kTcp);
  EXPECT_TRUE(Wait(Started(), check).ok());
  EXPECT_THAT(prober_.calls(), ElementsAre(absl::StrCat("tcp ", kTcp),
                                           absl::StrCat("tcp ", kTcp),
                                           absl::StrCat("tcp ", kTcp)));
}

TEST_F(HealthWaiterTest, HttpDeadlineExceededNamesTheLastProblem) {
  prober_.Answer(kUrl, {absl::UnavailableError("GET url: Connection refused"),
                        absl::UnavailableError("GET url: HTTP 503")});
  const absl::Status status =
      Wait(Started(), Http(/*timeout_seconds=*/3), absl::Milliseconds(50));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(status.message(), "not healthy within 3s: GET url: HTTP 503");
  // It waited out the timeout on the clock, not less.
  EXPECT_GE(elapsed_, absl::Seconds(3));
  EXPECT_GT(attempts_, 2);
}

TEST_F(HealthWaiterTest, TcpDeadlineExceededNamesTheLastProblem) {
  prober_.FailAlways(kTcp, absl::UnavailableError("tcp x: Connection refused"));
  hoist::v1::HealthCheck check;
  check.set_tcp(kTcp);
  check.set_timeout_seconds(2);
  const absl::Status status = Wait(Started(), check, absl::Milliseconds(50));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(status.message(),
            "not healthy within 2s: tcp x: Connection refused");
  EXPECT_GE(elapsed_, absl::Seconds(2));
}

TEST_F(HealthWaiterTest, TcpIsProbedOnlyOnceHttpPassesAndBothMustPass) {
  prober_.FailFirst(kUrl, 2, absl::UnavailableError("GET url: HTTP 500"));
  prober_.FailFirst(kTcp, 1, absl::UnavailableError("tcp x: refused"));
  hoist::v1::HealthCheck check = Http();
  check.set_tcp(kTcp);
  EXPECT_TRUE(Wait(Started(), check).ok());
  const std::string http = absl::StrCat("http ", kUrl);
  const std::string tcp = absl::StrCat("tcp ", kTcp);
  EXPECT_THAT(prober_.calls(), ElementsAre(http, http, http, tcp, http, tcp));
}

TEST_F(HealthWaiterTest, ProbeTimeoutIsTheIntervalWithinOneToTenSeconds) {
  const std::string id = Started();
  for (const auto& [interval, timeout] :
       std::vector<std::pair<int, absl::Duration>>{{0, absl::Seconds(1)},
                                                   {4, absl::Seconds(4)},
                                                   {30, absl::Seconds(10)}}) {
    hoist::v1::HealthCheck check = Http();
    check.set_interval_seconds(interval);
    EXPECT_TRUE(Wait(id, check).ok());
    EXPECT_EQ(prober_.last_timeout(), timeout) << "interval " << interval;
  }
}

TEST_F(HealthWaiterTest, DockerHealthIsWaitedForUntilHealthy) {
  FakeBehavior behavior;
  behavior.healthy_after_inspects = 3;  // "starting" twice, then "healthy"
  hoist::v1::HealthCheck check;
  check.set_docker(true);
  EXPECT_TRUE(Wait(Started(behavior), check).ok());
  EXPECT_EQ(attempts_, 3);
}

TEST_F(HealthWaiterTest, DockerHealthStartingUntilTheDeadlineNamesIt) {
  FakeBehavior behavior;
  behavior.health = "starting";
  hoist::v1::HealthCheck check;
  check.set_docker(true);
  check.set_timeout_seconds(2);
  const absl::Status status =
      Wait(Started(behavior), check, absl::Milliseconds(50));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(status.message(), "not healthy within 2s: Docker health: starting");
}

TEST_F(HealthWaiterTest, DockerUnhealthyOrNoHealthcheckFailsAtOnce) {
  FakeBehavior unhealthy;
  unhealthy.health = "unhealthy";
  hoist::v1::HealthCheck check;
  check.set_docker(true);
  absl::Status status = Wait(Started(unhealthy), check);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(status.message(), "Docker reports unhealthy");
  EXPECT_EQ(attempts_, 1);
  EXPECT_EQ(elapsed_, absl::ZeroDuration());

  status = Wait(Started(), check);  // the image defines no HEALTHCHECK
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("defines no HEALTHCHECK"));
  EXPECT_EQ(attempts_, 1);
}

TEST_F(HealthWaiterTest, DockerHealthIsAskedOnlyOnceTheProbesPass) {
  FakeBehavior unhealthy;
  unhealthy.health = "unhealthy";
  prober_.FailFirst(kUrl, 2, absl::UnavailableError("GET url: HTTP 500"));
  hoist::v1::HealthCheck check = Http();
  check.set_docker(true);
  const absl::Status status = Wait(Started(unhealthy), check);
  EXPECT_EQ(status.message(), "Docker reports unhealthy");
  EXPECT_EQ(attempts_, 3);
}

TEST_F(HealthWaiterTest, ContainerThatExitsEndsTheWaitWithItsExitCode) {
  FakeBehavior dies;
  dies.exits_after_inspects = 2;  // running at two looks, then exited
  dies.exit_code = 7;
  prober_.FailAlways(kUrl, absl::UnavailableError("GET url: refused"));
  const absl::Status status = Wait(Started(dies), Http());
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  EXPECT_EQ(status.message(), "new container exited with code 7");
  EXPECT_EQ(attempts_, 3);
}

TEST_F(HealthWaiterTest, DockerErrorEndsTheWait) {
  const std::string id = Started();
  docker_.FailNext("InspectContainer", absl::UnavailableError("engine down"));
  const absl::Status status = Wait(id, Http());
  EXPECT_EQ(status, absl::UnavailableError("engine down"));
  EXPECT_TRUE(prober_.calls().empty());
}

TEST_F(HealthWaiterTest, WithoutChecksHealthyOnlyAfterTheSettle) {
  EXPECT_TRUE(Wait(Started(), hoist::v1::HealthCheck(), absl::Milliseconds(50),
                   /*settle=*/absl::Seconds(1))
                  .ok());
  EXPECT_GE(elapsed_, absl::Seconds(1));
  EXPECT_GT(attempts_, 1);
  EXPECT_TRUE(prober_.calls().empty());

  FakeBehavior dies;
  dies.exits_after_inspects = 1;  // running at the first look only
  dies.exit_code = 1;
  const absl::Status status =
      Wait(Started(dies), hoist::v1::HealthCheck(), absl::Milliseconds(50),
           /*settle=*/absl::Seconds(1));
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
}

}  // namespace
}  // namespace hoist::nodeagent
