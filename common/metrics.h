// A small Prometheus metrics registry rendering the text exposition format
// (version 0.0.4). Metric objects are owned by the registry, live as long as
// it does, and are safe to update from any thread.
#ifndef HOIST_COMMON_METRICS_H_
#define HOIST_COMMON_METRICS_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace hoist {

using MetricLabels = std::map<std::string, std::string>;

class Counter {
 public:
  void Increment(double by = 1);
  double value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v); }
  void Add(double by);
  double value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  // Cumulative counts per upper bound, then +Inf; and the sum.
  void Snapshot(std::vector<uint64_t>* cumulative, double* sum,
                uint64_t* count) const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_
      ABSL_GUARDED_BY(mu_);  // per bucket, not cumulative; last = +Inf
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

class MetricsRegistry {
 public:
  // Returns the series `name{labels}`, creating it (and its family, with
  // `help`) on first use. Names follow Prometheus rules (hoist_… with a unit
  // suffix). Calling with the same name and another type is a programming
  // error.
  Counter* GetCounter(const std::string& name, const std::string& help,
                      const MetricLabels& labels = {});
  Gauge* GetGauge(const std::string& name, const std::string& help,
                  const MetricLabels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          const std::vector<double>& bounds,
                          const MetricLabels& labels = {});

  // The whole registry in Prometheus text format.
  std::string Render() const;

  // Default buckets for durations in seconds (5 ms .. 5 min).
  static std::vector<double> DurationBuckets();

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    std::map<MetricLabels, std::unique_ptr<Counter>> counters;
    std::map<MetricLabels, std::unique_ptr<Gauge>> gauges;
    std::map<MetricLabels, std::unique_ptr<Histogram>> histograms;
  };
  Family* FamilyFor(const std::string& name, const std::string& help, Type type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist

#endif  // HOIST_COMMON_METRICS_H_
