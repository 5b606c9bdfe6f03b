// The JSON values Hoist keeps in etcd (the journal's rows, the followers'
// Control commands and their results): protobuf messages inside them as
// base64 of their binary form, and typed reading of their fields.
#ifndef HOIST_RECEIVER_ETCD_JSON_H_
#define HOIST_RECEIVER_ETCD_JSON_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "nlohmann/json.hpp"

namespace hoist::receiver {

// `m` serialized, as base64.
std::string Base64Of(const google::protobuf::MessageLite& m);

// INTERNAL: "etcd key KEY holds a value that does not parse (WHY)".
absl::Status Unparsable(const std::string& key, absl::string_view why);

// Typed access to the fields of one stored JSON object. Any missing or
// mistyped field makes status() INTERNAL naming the key (the getters then
// return an empty value), so a reader takes every field and checks once.
class JsonFields {
 public:
  // `key` is only named in status(); it must outlive this object.
  JsonFields(const std::string& key, const std::string& value);

  std::string Str(const char* name);
  int64_t Int(const char* name);
  bool Bool(const char* name);
  // Microseconds since the epoch (TimeToJournalMicros).
  absl::Time Time(const char* name);
  // A proto message stored with Base64Of.
  void Proto(const char* name, google::protobuf::MessageLite* m);
  // An array of objects, each read by `each`.
  void Array(const char* name, const std::function<void(JsonFields&)>& each);

  absl::Status status() const;

 private:
  JsonFields(const std::string& key, nlohmann::json json);
  const nlohmann::json* Field(const char* name) const;
  // Marks the object unreadable; converts to an empty value of any type.
  struct Default {
    operator std::string() const { return {}; }  // implicit by design
    operator int64_t() const { return 0; }
    operator bool() const { return false; }
  };
  Default Fail();

  const std::string& key_;
  nlohmann::json json_;
  bool ok_ = false;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ETCD_JSON_H_
