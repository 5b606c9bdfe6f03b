// libFuzzer target: LoadReceiverConfig on arbitrary YAML.
//
// The input is written as a config file next to a secret file and loaded.
// Invariants: no crash and no exception escaping (yaml-cpp throws on many
// inputs; the loader must catch them); a failure is INVALID_ARGUMENT
// starting "FILE:"; a loaded config's services all resolve to hosts and
// valid batch sizes. BatchSize gets the input too.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "receiver/config.h"

namespace {

const std::string& Dir() {
  static const std::string* dir = [] {
    char tmpl[] = "/tmp/hoist-fuzz-config-XXXXXX";
    auto* d = new std::string(mkdtemp(tmpl));
    std::ofstream(*d + "/secret") << "fuzz-secret\n";
    return d;
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string file = Dir() + "/receiver.yaml";
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << text;
  }
  absl::StatusOr<hoist::receiver::ReceiverConfig> config =
      hoist::receiver::LoadReceiverConfig(file);
  if (!config.ok()) {
    if (config.status().code() != absl::StatusCode::kInvalidArgument)
      std::abort();
    // (Lines may quote the input, newlines included, so only the start is
    // checked.)
    if (!absl::StartsWith(config.status().message(), file + ":")) std::abort();
  } else {
    for (const auto& service : config->services) {
      const auto targets = hoist::receiver::ResolveTargets(*config, service);
      if (targets.empty())
        std::abort();  // the loader refuses services without hosts
      absl::StatusOr<int> batch = hoist::receiver::BatchSize(
          service.rollout.batch, static_cast<int>(targets.size()));
      if (!batch.ok() || *batch < 1) std::abort();
    }
  }
  absl::StatusOr<int> batch =
      hoist::receiver::BatchSize(text.substr(0, 16), 10);
  if (batch.ok() && (*batch < 1 || *batch > 10)) std::abort();
  return 0;
}
