// Strict YAML reading for Hoist configs: every problem is reported as
// "FILE:LINE: problem", unknown keys are errors, and reading goes on after a
// problem so that one --check-config run lists them all.
#ifndef HOIST_COMMON_YAML_CONFIG_H_
#define HOIST_COMMON_YAML_CONFIG_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "yaml-cpp/yaml.h"

namespace hoist {

// Accumulates problems found in one config file.
class ConfigErrors {
 public:
  explicit ConfigErrors(std::string file) : file_(std::move(file)) {}

  // Records `problem` at `node`'s line (or at line 0 when it has none).
  void Add(const YAML::Node& node, const std::string& problem);
  void AddAtLine(int line, const std::string& problem);

  bool empty() const { return problems_.empty(); }
  const std::vector<std::string>& problems() const { return problems_; }
  const std::string& file() const { return file_; }

  // OK when empty; otherwise INVALID_ARGUMENT whose message is every problem,
  // one "FILE:LINE: problem" per line.
  absl::Status ToStatus() const;

 private:
  std::string file_;
  std::vector<std::string> problems_;
};

// 1-based line of `node`, or 0 when it has no position.
int LineOf(const YAML::Node& node);

// Reads one YAML mapping. Each getter marks its key as known; Finish()
// reports every key no getter asked for. Wrong types are reported and the
// default is returned, so reading always continues.
class MapReader {
 public:
  // `node` may be undefined or null (treated as an empty mapping); anything
  // else that is not a mapping is reported. `where` names it in messages.
  MapReader(const YAML::Node& node, std::string where, ConfigErrors* errors);

  bool Has(const std::string& key) const;
  // The raw child node (undefined when absent), marked as known.
  YAML::Node Child(const std::string& key);

  std::string String(const std::string& key, const std::string& def = "",
                     bool required = false);
  int64_t Int(const std::string& key, int64_t def, int64_t min, int64_t max);
  double Double(const std::string& key, double def, double min, double max);
  bool Bool(const std::string& key, bool def);
  std::vector<std::string> StringList(const std::string& key);
  std::map<std::string, std::string> StringMap(const std::string& key);

  // Reports unknown keys. Call once, after every getter.
  void Finish();

  const YAML::Node& node() const { return node_; }
  ConfigErrors* errors() const { return errors_; }
  const std::string& where() const { return where_; }

 private:
  YAML::Node node_;
  std::string where_;
  ConfigErrors* errors_;
  std::set<std::string> known_;
};

// Parses `path` as YAML. On a syntax error returns INVALID_ARGUMENT
// "FILE:LINE: problem".
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path);

}  // namespace hoist

#endif  // HOIST_COMMON_YAML_CONFIG_H_
