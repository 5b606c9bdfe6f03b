#include "common/metrics.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace hoist {
namespace {

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrCat(v);
}

std::string EscapeLabel(const std::string& v) {
  return absl::StrReplaceAll(v,
                             {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

std::string EscapeHelp(const std::string& v) {
  return absl::StrReplaceAll(v, {{"\\", "\\\\"}, {"\n", "\\n"}});
}

std::string LabelText(const MetricLabels& labels,
                      const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  std::string out;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&out, out.empty() ? "" : ",", k, "=\"", EscapeLabel(v),
                    "\"");
  }
  if (!extra_key.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : ",", extra_key, "=\"", extra_value,
                    "\"");
  }
  return out.empty() ? "" : absl::StrCat("{", out, "}");
}

}  // namespace

void Counter::Increment(double by) {
  double cur = value_.load();
  while (!value_.compare_exchange_weak(cur, cur + by)) {
  }
}

void Gauge::Add(double by) {
  double cur = value_.load();
  while (!value_.compare_exchange_weak(cur, cur + by)) {
  }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  absl::MutexLock lock(&mu_);
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::Snapshot(std::vector<uint64_t>* cumulative, double* sum,
                         uint64_t* count) const {
  absl::MutexLock lock(&mu_);
  cumulative->clear();
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    cumulative->push_back(running);
  }
  *sum = sum_;
  *count = count_;
}

MetricsRegistry::Family* MetricsRegistry::FamilyFor(const std::string& name,
                                                    const std::string& help,
                                                    Type type) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = type;
    it->second.help = help;
  } else if (it->second.type != type) {
    std::abort();  // Broken invariant: one name, two types.
  }
  return &it->second;
}

Counter* MetricsRegistry::GetCounter(const std::string& name,
                                     const std::string& help,
                                     const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot = FamilyFor(name, help, Type::kCounter)->counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return slot.get();
}

Gauge* MetricsRegistry::GetGauge(const std::string& name,
                                 const std::string& help,
                                 const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot = FamilyFor(name, help, Type::kGauge)->gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return slot.get();
}

Histogram* MetricsRegistry::GetHistogram(const std::string& name,
                                         const std::string& help,
                                         const std::vector<double>& bounds,
                                         const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot = FamilyFor(name, help, Type::kHistogram)->histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return slot.get();
}

std::string MetricsRegistry::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    const char* type = family.type == Type::kCounter ? "counter"
                       : family.type == Type::kGauge ? "gauge"
                                                     : "histogram";
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(family.help), "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", type, "\n");
    for (const auto& [labels, c] : family.counters) {
      absl::StrAppend(&out, name, LabelText(labels), " ",
                      FormatValue(c->value()), "\n");
    }
    for (const auto& [labels, g] : family.gauges) {
      absl::StrAppend(&out, name, LabelText(labels), " ",
                      FormatValue(g->value()), "\n");
    }
    for (const auto& [labels, h] : family.histograms) {
      std::vector<uint64_t> cumulative;
      double sum = 0;
      uint64_t count = 0;
      h->Snapshot(&cumulative, &sum, &count);
      for (size_t i = 0; i < cumulative.size(); ++i) {
        const std::string le = i < h->bounds().size()
                                   ? FormatValue(h->bounds()[i])
                                   : std::string("+Inf");
        absl::StrAppend(&out, name, "_bucket", LabelText(labels, "le", le), " ",
                        cumulative[i], "\n");
      }
      absl::StrAppend(&out, name, "_sum", LabelText(labels), " ",
                      FormatValue(sum), "\n");
      absl::StrAppend(&out, name, "_count", LabelText(labels), " ", count,
                      "\n");
    }
  }
  return out;
}

std::vector<double> MetricsRegistry::DurationBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
          2.5,   5,    10,    30,   60,  120,  300};
}

}  // namespace hoist
