// HOIST_RETURN_IF_ERROR and HOIST_ASSIGN_OR_RETURN (common/status_macros.h),
// with the left-hand sides the code base uses: declarations and lvalues.
#include "common/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace hoist {
namespace {

absl::StatusOr<std::unique_ptr<int>> MakeInt(int value) {
  if (value < 0) return absl::OutOfRangeError("negative");
  return std::make_unique<int>(value);
}

absl::StatusOr<std::string> Name(bool ok) {
  if (!ok) return absl::NotFoundError("no name");
  return std::string("web-1");
}

// Sums the two values; `steps` counts the statements that ran.
absl::StatusOr<int> AddBoth(int a, int b, int* steps) {
  HOIST_ASSIGN_OR_RETURN(std::unique_ptr<int> first, MakeInt(a));
  ++*steps;
  HOIST_ASSIGN_OR_RETURN(std::unique_ptr<int> second, MakeInt(b));
  ++*steps;
  return *first + *second;
}

TEST(StatusMacrosTest, AssignOrReturnDeclaresOrReturnsTheFirstError) {
  int steps = 0;
  EXPECT_EQ(*AddBoth(2, 3, &steps), 5);
  EXPECT_EQ(steps, 2);

  steps = 0;
  absl::StatusOr<int> failed = AddBoth(2, -1, &steps);
  EXPECT_EQ(failed.status(), absl::OutOfRangeError("negative"));
  EXPECT_EQ(steps, 1);
}

struct Named {
  std::string name = "unset";
};

absl::Status FillName(bool ok, Named* named) {
  HOIST_ASSIGN_OR_RETURN(named->name, ok ? Name(true) : Name(false));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnAssignsAnLvalueOnlyOnSuccess) {
  Named named;
  EXPECT_EQ(FillName(false, &named), absl::NotFoundError("no name"));
  EXPECT_EQ(named.name, "unset");
  EXPECT_TRUE(FillName(true, &named).ok());
  EXPECT_EQ(named.name, "web-1");
}

absl::Status Both(const absl::Status& first, const absl::Status& second,
                  int* steps) {
  HOIST_RETURN_IF_ERROR(first);
  ++*steps;
  HOIST_RETURN_IF_ERROR(second);
  ++*steps;
  return absl::OkStatus();
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsTheFirstError) {
  int steps = 0;
  EXPECT_TRUE(Both(absl::OkStatus(), absl::OkStatus(), &steps).ok());
  EXPECT_EQ(steps, 2);
  steps = 0;
  EXPECT_EQ(Both(absl::OkStatus(), absl::UnavailableError("down"), &steps),
            absl::UnavailableError("down"));
  EXPECT_EQ(steps, 1);
}

}  // namespace
}  // namespace hoist
