// What the benches under bench/ share: the load average they print beside
// every figure, and their command lines (flags that take a value, each with
// a setter that parses and range-checks it, and switches that take none).
#ifndef HOIST_BENCH_BENCH_UTIL_H_
#define HOIST_BENCH_BENCH_UTIL_H_

#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"

namespace hoist::bench {

// The 1, 5 and 15 minute load averages, as /proc/loadavg has them.
inline std::string LoadAverage() {
  std::string text = ReadFile("/proc/loadavg").value_or("? ? ?");
  const std::vector<std::string> parts =
      absl::StrSplit(text, ' ', absl::SkipEmpty());
  if (parts.size() < 3) return text;
  return absl::StrCat(parts[0], " ", parts[1], " ", parts[2]);
}

// Parses a flag's value into *flags; false when the value is not valid.
template <typename Flags>
using FlagSetter = bool (*)(const std::string& value, Flags* flags);

// A bench's command line: its name (for messages), usage text, flags that
// take a value, and switches (flags that take none, each setting a bool).
template <typename Flags>
struct CommandLine {
  const char* name;
  const char* usage;
  std::map<std::string, FlagSetter<Flags>> setters;
  std::map<std::string, bool Flags::*> switches;
};

// Parses argv into *flags and records the whole command in flags->command.
// Returns the exit status when the program is to stop now: 0 after --help
// (the usage on stdout); 2 for an unknown flag, a missing value or one its
// setter refuses (what was wrong, then the usage, on stderr).
template <typename Flags>
std::optional<int> ParseCommandLine(const CommandLine<Flags>& line, int argc,
                                    char** argv, Flags* flags) {
  flags->command = absl::StrJoin(argv, argv + argc, " ");
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << line.usage;
      return 0;
    }
    if (const auto on = line.switches.find(flag); on != line.switches.end()) {
      flags->*(on->second) = true;
      continue;
    }
    const auto setter = line.setters.find(flag);
    if (setter == line.setters.end()) {
      std::cerr << line.name << ": unknown flag " << flag << "\n" << line.usage;
      return 2;
    }
    if (i + 1 >= argc) {
      std::cerr << line.name << ": " << flag << " needs a value\n"
                << line.usage;
      return 2;
    }
    const std::string value = argv[++i];
    if (!setter->second(value, flags)) {
      std::cerr << line.name << ": bad flag " << flag << " " << value << "\n"
                << line.usage;
      return 2;
    }
  }
  return std::nullopt;
}

// Parses an integer within [lo, hi] into *out.
inline bool IntIn(const std::string& value, int lo, int hi, int* out) {
  return absl::SimpleAtoi(value, out) && *out >= lo && *out <= hi;
}

// A setter for a flag that takes any value as it is: Text<Flags, &Flags::x>.
template <typename Flags, std::string Flags::*kField>
bool Text(const std::string& value, Flags* flags) {
  flags->*kField = value;
  return true;
}

}  // namespace hoist::bench

#endif  // HOIST_BENCH_BENCH_UTIL_H_
