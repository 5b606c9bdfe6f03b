#include "common/proto_time.h"

#include "gtest/gtest.h"

namespace hoist {
namespace {

TEST(ProtoTimeTest, KeepsMicrosecondsAndDropsNanoseconds) {
  const absl::Time t = absl::FromUnixSeconds(1700000000) +
                       absl::Microseconds(123456) + absl::Nanoseconds(789);
  const google::protobuf::Timestamp ts = ToProto(t);
  EXPECT_EQ(ts.seconds(), 1700000000);
  EXPECT_EQ(ts.nanos(), 123456000);
  EXPECT_EQ(FromProto(ts), t - absl::Nanoseconds(789));
}

TEST(ProtoTimeTest, NanosStayInRangeBefore1970) {
  const google::protobuf::Timestamp ts =
      ToProto(absl::UnixEpoch() - absl::Microseconds(1));
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 999999000);
  EXPECT_EQ(FromProto(ts), absl::UnixEpoch() - absl::Microseconds(1));
}

TEST(ProtoTimeTest, RoundTripsTheEpoch) {
  EXPECT_EQ(FromProto(ToProto(absl::UnixEpoch())), absl::UnixEpoch());
}

}  // namespace
}  // namespace hoist
