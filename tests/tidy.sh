#!/usr/bin/env bash
# clang-tidy (settings in .clang-tidy) over Hoist's own code: every .cc file
# in receiver/, nodeagent/, common/ and cli/ and the headers they include from
# there. Needs a configured build with its generated protos (tests/run.sh
# runs it after the build):
#   tests/tidy.sh [BUILD_DIR]        (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if ! command -v run-clang-tidy >/dev/null || ! command -v clang-tidy >/dev/null; then
  echo "tidy: clang-tidy is missing (Debian package clang-tidy)" >&2
  exit 1
fi
[[ -f $build/compile_commands.json ]] || {
  echo "tidy: no $build/compile_commands.json; build first" >&2
  exit 1
}
mapfile -t files < <(git ls-files 'receiver/*.cc' 'nodeagent/*.cc' 'common/*.cc' 'cli/*.cc')
# tsan_shim.cc is compiled only in the TSan build.
files=("${files[@]/common\/tsan_shim.cc/}")
mapfile -t files < <(printf '%s\n' "${files[@]}" | grep . | sed "s|^|$PWD/|")
log=$(mktemp)
if run-clang-tidy -p "$build" -j "$(nproc)" -quiet "${files[@]}" >"$log" 2>&1; then
  echo "tidy: clean (${#files[@]} files)"
  rm -f "$log"
  exit 0
fi
grep -E 'warning:|error:' "$log" | sort -u >&2 || cat "$log" >&2
rm -f "$log"
echo "tidy: findings above" >&2
exit 1
