// ScopedTempDir: a directory of a test's own, removed with everything in it
// when the object goes. Tests make one each instead of sharing a fixed path
// under /tmp: CI runs the unit tier as root and then as `nobody`, who cannot
// replace what root left, and a test run must not leave anything behind.
#ifndef HOIST_TESTS_COMMON_TEMP_DIR_H_
#define HOIST_TESTS_COMMON_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace hoist::testing {

class ScopedTempDir {
 public:
  // A new directory `<gtest TempDir>/<prefix>XXXXXX` (mkdtemp, mode 0700).
  // Aborts the test binary when it cannot be made: no test can run without.
  explicit ScopedTempDir(absl::string_view prefix = "hoist-test-") {
    std::string dir = absl::StrCat(::testing::TempDir(), "/", prefix, "XXXXXX");
    if (mkdtemp(dir.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp " << dir << " failed";
      abort();
    }
    path_ = std::move(dir);
  }
  ~ScopedTempDir() {
    std::error_code ignored;  // best effort: a test may have chmod'ed parts
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // `path()/name`.
  std::string File(absl::string_view name) const {
    return absl::StrCat(path_, "/", name);
  }
  // Writes `text` to `path()/name` (replacing it) and returns that path.
  std::string Write(absl::string_view name, absl::string_view text) const {
    std::string file = File(name);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
    return file;
  }

 private:
  std::string path_;
};

}  // namespace hoist::testing

#endif  // HOIST_TESTS_COMMON_TEMP_DIR_H_
