#include "receiver/rollout_plan.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hoist::receiver {
namespace {

std::string Render(const std::vector<std::vector<int>>& waves) {
  std::string out;
  for (const auto& w : waves) {
    if (!out.empty()) out += "|";
    for (size_t i = 0; i < w.size(); ++i) {
      if (i) out += ",";
      out += std::to_string(w[i]);
    }
  }
  return out;
}

TEST(PlanWavesTest, Table) {
  struct Case {
    int hosts;
    int64_t canary;
    int batch;
    const char* want;
  } cases[] = {
      {0, 0, 1, ""},
      {1, 0, 1, "0"},
      {3, 0, 1, "0|1|2"},
      {5, 0, 2, "0,1|2,3|4"},
      {5, 1, 2, "0|1,2|3,4"},
      {5, 2, 5, "0,1|2,3,4"},
      {4, 0, 4, "0,1,2,3"},
      {3, 5, 1, "0,1,2"},
      {3, 0, 0, "0|1|2"},  // batch below 1 counts as 1
      {6, 1, 10, "0|1,2,3,4,5"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Render(PlanWaves(c.hosts, c.canary, c.batch)), c.want)
        << "hosts=" << c.hosts << " canary=" << c.canary
        << " batch=" << c.batch;
  }
}

}  // namespace
}  // namespace hoist::receiver
