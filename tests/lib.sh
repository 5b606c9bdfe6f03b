# shellcheck shell=bash
# Helpers for Hoist's shell tests (sourced, not run).

# complete_lines FILE: FILE's lines, less an unterminated last one (its writer
# may not have finished it: a port number may be half written).
complete_lines() {
  local text
  text=$(cat "$1" 2>/dev/null; echo .)
  text=${text%.}
  printf '%s' "${text%"${text##*$'\n'}"}"
}

# wait_for_line FILE REGEX [SECONDS]: prints the first match of REGEX in a
# complete line of FILE, waiting up to SECONDS (default 20). On timeout, says
# so with FILE's contents and fails.
wait_for_line() {
  local file=$1 regex=$2 tries=$((${3:-20} * 20)) line
  for ((i = 0; i < tries; i++)); do
    line=$(complete_lines "$file" | grep -oE "$regex" | head -1) || true
    if [[ -n $line ]]; then
      echo "$line"
      return 0
    fi
    sleep 0.05
  done
  echo "timed out waiting for /$regex/ in $file:" >&2
  cat "$file" >&2
  return 1
}
