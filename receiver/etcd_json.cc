#include "receiver/etcd_json.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "receiver/journal.h"

namespace hoist::receiver {

using Json = nlohmann::json;

std::string Base64Of(const google::protobuf::MessageLite& m) {
  std::string bytes;
  m.SerializeToString(&bytes);
  return absl::Base64Escape(bytes);
}

absl::Status Unparsable(const std::string& key, absl::string_view why) {
  return absl::InternalError(absl::StrCat(
      "etcd key ", key, " holds a value that does not parse (", why, ")"));
}

JsonFields::JsonFields(const std::string& key, const std::string& value)
    : JsonFields(key, Json::parse(value, nullptr, false)) {}

JsonFields::JsonFields(const std::string& key, Json json)
    : key_(key), json_(std::move(json)) {
  ok_ = json_.is_object();
}

std::string JsonFields::Str(const char* name) {
  const Json* f = Field(name);
  if (f == nullptr || !f->is_string()) return Fail();
  return f->get<std::string>();
}

int64_t JsonFields::Int(const char* name) {
  const Json* f = Field(name);
  if (f == nullptr || !f->is_number_integer()) return Fail();
  return f->get<int64_t>();
}

bool JsonFields::Bool(const char* name) {
  const Json* f = Field(name);
  if (f == nullptr || !f->is_boolean()) return Fail();
  return f->get<bool>();
}

absl::Time JsonFields::Time(const char* name) {
  return TimeFromJournalMicros(Int(name));
}

void JsonFields::Proto(const char* name, google::protobuf::MessageLite* m) {
  std::string bytes;
  if (!absl::Base64Unescape(Str(name), &bytes) || !m->ParseFromString(bytes)) {
    Fail();
  }
}

void JsonFields::Array(const char* name,
                       const std::function<void(JsonFields&)>& each) {
  const Json* f = Field(name);
  if (f == nullptr || !f->is_array()) {
    Fail();
    return;
  }
  for (const Json& item : *f) {
    JsonFields sub(key_, item);
    each(sub);
    if (!sub.ok_) Fail();
  }
}

absl::Status JsonFields::status() const {
  return ok_ ? absl::OkStatus() : Unparsable(key_, "JSON fields");
}

const Json* JsonFields::Field(const char* name) const {
  if (!ok_) return nullptr;
  auto it = json_.find(name);
  return it == json_.end() ? nullptr : &*it;
}

JsonFields::Default JsonFields::Fail() {
  ok_ = false;
  return {};
}

}  // namespace hoist::receiver
