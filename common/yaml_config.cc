#include "common/yaml_config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"

namespace hoist {

int LineOf(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

void ConfigErrors::Add(const YAML::Node& node, const std::string& problem) {
  AddAtLine(LineOf(node), problem);
}

void ConfigErrors::AddAtLine(int line, const std::string& problem) {
  problems_.push_back(absl::StrCat(file_, ":", line, ": ", problem));
}

absl::Status ConfigErrors::ToStatus() const {
  if (problems_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems_, "\n"));
}

namespace {

// A missing key's node (from Child()) is "invalid" in yaml-cpp: most of its
// accessors, even assignment, throw. Such a node reads as an empty mapping.
YAML::Node DefinedOrEmpty(const YAML::Node& node) {
  return node.IsDefined() ? node : YAML::Node(YAML::NodeType::Map);
}

}  // namespace

MapReader::MapReader(const YAML::Node& node, std::string where,
                     ConfigErrors* errors)
    : node_(DefinedOrEmpty(node)), where_(std::move(where)), errors_(errors) {
  if (!node_.IsNull() && !node_.IsMap()) {
    errors_->Add(node_, absl::StrCat(where_, " must be a mapping"));
    // reset() rebinds this reader's handle; operator= would overwrite the
    // node inside the caller's tree.
    node_.reset(YAML::Node(YAML::NodeType::Map));
  }
}

bool MapReader::Has(const std::string& key) const {
  if (!node_.IsMap()) return false;
  const YAML::Node& map = node_;  // const lookup never inserts
  return map[key].IsDefined() && !map[key].IsNull();
}

YAML::Node MapReader::Child(const std::string& key) {
  known_.insert(key);
  if (!node_.IsMap()) return YAML::Node();
  const YAML::Node& map = node_;  // const lookup never inserts
  return map[key];
}

std::string MapReader::String(const std::string& key, const std::string& def,
                              bool required) {
  YAML::Node child = Child(key);
  if (!child.IsDefined() || child.IsNull()) {
    if (required)
      errors_->Add(
          node_, absl::StrCat(where_, ": missing required key \"", key, "\""));
    return def;
  }
  if (!child.IsScalar()) {
    errors_->Add(child, absl::StrCat(where_, ".", key, " must be a string"));
    return def;
  }
  return child.Scalar();
}

int64_t MapReader::Int(const std::string& key, int64_t def, int64_t min,
                       int64_t max) {
  YAML::Node child = Child(key);
  if (!child.IsDefined() || child.IsNull()) return def;
  int64_t value = 0;
  if (!child.IsScalar() || !YAML::convert<int64_t>::decode(child, value)) {
    errors_->Add(child, absl::StrCat(where_, ".", key, " must be an integer"));
    return def;
  }
  if (value < min || value > max) {
    errors_->Add(child, absl::StrCat(where_, ".", key, " must be between ", min,
                                     " and ", max, ", got ", value));
    return def;
  }
  return value;
}

double MapReader::Double(const std::string& key, double def, double min,
                         double max) {
  YAML::Node child = Child(key);
  if (!child.IsDefined() || child.IsNull()) return def;
  double value = 0;
  if (!child.IsScalar() || !YAML::convert<double>::decode(child, value)) {
    errors_->Add(child, absl::StrCat(where_, ".", key, " must be a number"));
    return def;
  }
  if (value < min || value > max) {
    errors_->Add(child, absl::StrCat(where_, ".", key, " must be between ", min,
                                     " and ", max));
    return def;
  }
  return value;
}

bool MapReader::Bool(const std::string& key, bool def) {
  YAML::Node child = Child(key);
  if (!child.IsDefined() || child.IsNull()) return def;
  bool value = false;
  if (!child.IsScalar() || !YAML::convert<bool>::decode(child, value)) {
    errors_->Add(child,
                 absl::StrCat(where_, ".", key, " must be true or false"));
    return def;
  }
  return value;
}

std::vector<std::string> MapReader::StringList(const std::string& key) {
  std::vector<std::string> out;
  YAML::Node child = Child(key);
  if (!child.IsDefined() || child.IsNull()) return out;
  if (!child.IsSequence()) {
    errors_->Add(child,
                 absl::StrCat(where_, ".", key, " must be a list of strings"));
    return out;
  }
  for (const YAML::Node& item : child) {
    if (!item.IsScalar()) {
      errors_->Add(
          item, absl::StrCat(where_, ".", key, " must contain only strings"));
      continue;
    }
    out.push_back(item.Scalar());
  }
  return out;
}

std::map<std::string, std::string> MapReader::StringMap(
    const std::string& key) {
  std::map<std::string, std::string> out;
  YAML::Node child = Child(key);
  if (!child.IsDefined() || child.IsNull()) return out;
  if (!child.IsMap()) {
    errors_->Add(
        child, absl::StrCat(where_, ".", key, " must be a mapping of strings"));
    return out;
  }
  for (const auto& kv : child) {
    if (!kv.second.IsScalar()) {
      errors_->Add(kv.second,
                   absl::StrCat(where_, ".", key, ".", kv.first.Scalar(),
                                " must be a string"));
      continue;
    }
    out[kv.first.Scalar()] = kv.second.Scalar();
  }
  return out;
}

void MapReader::Finish() {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string key = kv.first.Scalar();
    if (known_.count(key) == 0) {
      errors_->Add(kv.first,
                   absl::StrCat("unknown key \"", key, "\" in ", where_));
    }
  }
}

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  try {
    // yaml-cpp reports syntax errors only by exception; it stops here.
    return YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ": ", e.msg));
  }
}

}  // namespace hoist
