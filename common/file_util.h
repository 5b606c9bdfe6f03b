// Small file helpers returning absl::Status.
#ifndef HOIST_COMMON_FILE_UTIL_H_
#define HOIST_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hoist {

// Whole file; NOT_FOUND / PERMISSION_DENIED / INTERNAL naming the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` atomically (temp file, fsync, rename).
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents);

// `path` if absolute, else `base_dir`/`path`. Empty stays empty.
std::string ResolvePath(const std::string& base_dir, const std::string& path);

// Directory part of `path` ("." when none).
std::string DirName(const std::string& path);

}  // namespace hoist

#endif  // HOIST_COMMON_FILE_UTIL_H_
