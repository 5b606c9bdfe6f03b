#include "common/metrics.h"

#include "gtest/gtest.h"

namespace hoist {
namespace {

TEST(MetricsTest, RendersCountersGaugesAndHistograms) {
  MetricsRegistry registry;
  registry.GetCounter("hoist_requests_total", "Requests.", {{"code", "202"}})
      ->Increment();
  registry.GetCounter("hoist_requests_total", "Requests.", {{"code", "202"}})
      ->Increment(2);
  registry.GetCounter("hoist_requests_total", "Requests.", {{"code", "401"}})
      ->Increment();
  registry.GetGauge("hoist_up", "Up.")->Set(1);
  Histogram* h =
      registry.GetHistogram("hoist_latency_seconds", "Latency.", {0.1, 1});
  h->Observe(0.05);
  h->Observe(0.5);
  h->Observe(5);

  const std::string text = registry.Render();
  EXPECT_NE(text.find("# TYPE hoist_requests_total counter\n"),
            std::string::npos);
  EXPECT_NE(text.find("hoist_requests_total{code=\"202\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("hoist_requests_total{code=\"401\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("hoist_up 1\n"), std::string::npos);
  EXPECT_NE(text.find("hoist_latency_seconds_bucket{le=\"0.1\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("hoist_latency_seconds_bucket{le=\"1\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("hoist_latency_seconds_bucket{le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("hoist_latency_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("hoist_latency_seconds_sum 5.55\n"), std::string::npos);
}

TEST(MetricsTest, EscapesLabelValues) {
  MetricsRegistry registry;
  registry.GetCounter("hoist_x_total", "X.", {{"v", "a\"b\\c\nd"}})
      ->Increment();
  EXPECT_NE(registry.Render().find("hoist_x_total{v=\"a\\\"b\\\\c\\nd\"} 1"),
            std::string::npos);
}

TEST(MetricsTest, SameSeriesIsSameObject) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.GetGauge("g", "G.", {{"a", "1"}}),
            registry.GetGauge("g", "G.", {{"a", "1"}}));
  EXPECT_NE(registry.GetGauge("g", "G.", {{"a", "1"}}),
            registry.GetGauge("g", "G.", {{"a", "2"}}));
}

}  // namespace
}  // namespace hoist
