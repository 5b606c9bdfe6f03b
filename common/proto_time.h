// Conversions between absl::Time and google.protobuf.Timestamp.
//
// Timestamps are kept to the microsecond: the receiver's journal stores
// microseconds, so a rollout reads the same before and after a restart, and
// the agent's deploy records use the same rule.
#ifndef HOIST_COMMON_PROTO_TIME_H_
#define HOIST_COMMON_PROTO_TIME_H_

#include <cstdint>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace hoist {

// `t` rounded down to the microsecond. nanos is always in [0, 1e9), also
// before 1970.
inline google::protobuf::Timestamp ToProto(absl::Time t) {
  const int64_t us = absl::ToUnixMicros(t);
  int64_t seconds = us / 1000000;
  int64_t micros = us % 1000000;
  if (micros < 0) {
    micros += 1000000;
    --seconds;
  }
  google::protobuf::Timestamp ts;
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(micros * 1000));
  return ts;
}

inline absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

}  // namespace hoist

#endif  // HOIST_COMMON_PROTO_TIME_H_
