#!/usr/bin/env bash
# Runs every tests/integration/test_*.py against the floodgate binary and prints per-file results.
# Usage: tests/integration/run_all.sh [path/to/floodgate] [test_file.py ...]
# The binary defaults to $FLOODGATE_BIN, then build/floodgate. Exit code is non-zero when any
# file fails. Each file gets at most FG_FILE_TIMEOUT_S seconds (default 600).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-${FLOODGATE_BIN:-build/floodgate}}"
[ $# -gt 0 ] && shift
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "run_all: no executable floodgate at $bin" >&2
  exit 2
fi
export FLOODGATE_BIN="$bin"
timeout_s="${FG_FILE_TIMEOUT_S:-600}"
logdir="$(mktemp -d /tmp/fg-it-logs.XXXXXX)"

if [ $# -gt 0 ]; then files=("$@"); else files=("$here"/test_*.py); fi
fail=0
results=()
for f in "${files[@]}"; do
  case "$f" in /*) ;; *) [ -f "$f" ] || f="$here/$f" ;; esac
  name="$(basename "$f" .py)"
  log="$logdir/$name.log"
  start=$(date +%s)
  timeout -k 10 "$timeout_s" python3 "$f" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  summary="$(grep -E '^(Ran [0-9]+ tests?|OK|FAILED)' "$log" | tr '\n' ' ')"
  if [ $rc -eq 0 ]; then
    status=PASS
  else
    status=FAIL; fail=1
    [ $rc -eq 124 ] && summary="$summary (timed out after ${timeout_s}s)"
  fi
  results+=("$(printf '%-20s %-4s %4ss  %s' "$name" "$status" "$secs" "$summary")")
  printf '%-20s %-4s %4ss  %s\n' "$name" "$status" "$secs" "$summary"
  if [ $rc -ne 0 ]; then
    grep -E '^(FAIL|ERROR):' "$log" | sed 's/^/    /'
  fi
done
echo
echo "== integration results (logs in $logdir) =="
printf '%s\n' "${results[@]}"
exit $fail
