#!/usr/bin/env bash
# Style checks that need no build, run by tests/run.sh before anything else:
#   - every shell script passes shellcheck (settings in .shellcheckrc);
#   - every C++ file is formatted as .clang-format says.
# Fix formatting with: git ls-files '*.cc' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in shellcheck clang-format; do
  if ! command -v "$tool" >/dev/null; then
    echo "lint: $tool is missing (Debian package $tool; deploy/install-deps.sh installs it)" >&2
    exit 1
  fi
done

# Shell scripts: *.sh, and files whose first line names a shell.
scripts=()
while IFS= read -r f; do
  if [[ $f == *.sh ]] || head -n1 "$f" | grep -qE '^#!.*/(env )?(ba)?sh\b'; then
    scripts+=("$f")
  fi
done < <(git ls-files | grep -v '^tests/fuzz/corpus/')
shellcheck "${scripts[@]}"
echo "lint: shellcheck clean (${#scripts[@]} scripts)"

mapfile -t sources < <(git ls-files '*.cc' '*.h')
clang-format --dry-run -Werror "${sources[@]}"
echo "lint: clang-format clean (${#sources[@]} files)"
