#!/usr/bin/env bash
# scripts/crash.sh — the long crash run: floodgate killed with SIGKILL CYCLES times (default 200)
# at random moments under a launch crowd — while it batches and commits, and during its
# start-ups, before it listens — restarted each time on the same data, then stalled with
# SIGSTOP/SIGCONT; every crowd run is audited against every answer its buyers received, and
# every run again at the end. It is tests/crowd/test_crash.py with more cycles (see there and
# docs/crowd.md, "Crash and stall runs").
#
# Usage: scripts/crash.sh [CYCLES]
# Environment:
#   FG_CRASH_BUILD           build directory (default build-crash; set up when missing)
#   FG_CRASH_SEED            replay a schedule (each test prints its seed first)
#   FG_CRASH_CYCLES_PER_RUN  kills during one crowd run (default 25)
#   FG_CRASH_STALLS          SIGSTOP stalls (default CYCLES / 20, at least 3)
#   FG_KEEP_DATA=1           keep the data directory, logs and records (under /tmp/fg-crash-*)
# Prints every kill and stall as it happens, one line of figures per test, and ends with
# "crash: passed" or "crash: FAILED", the cycles and the time. Exit status: 0 passed.
set -uo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-200}
if ! [[ "$cycles" =~ ^[1-9][0-9]{0,5}$ ]]; then
  echo "usage: scripts/crash.sh [CYCLES]   (CYCLES 1..999999, default 200)" >&2
  exit 2
fi
scripts/deps.sh build || exit 1
build=${FG_CRASH_BUILD:-build-crash}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" >/dev/null || exit 1
fi
ninja -C "$build" floodgate floodgate-crowd >/dev/null || exit 1
stalls=${FG_CRASH_STALLS:-$((cycles / 20 < 3 ? 3 : cycles / 20))}
report=$(mktemp)
trap 'rm -f "$report"' EXIT
start=$(date +%s)
FLOODGATE_BIN="$PWD/$build/floodgate" FLOODGATE_CROWD_BIN="$PWD/$build/floodgate-crowd" \
  FG_CRASH_CYCLES="$cycles" FG_CRASH_CYCLES_PER_RUN="${FG_CRASH_CYCLES_PER_RUN:-25}" \
  FG_CRASH_STALLS="$stalls" FG_CRASH_REPORT="$report" PYTHONDONTWRITEBYTECODE=1 \
  python3 tests/crowd/test_crash.py -v
status=$?
echo
cat "$report"
verdict=passed
[ "$status" -eq 0 ] || verdict=FAILED
elapsed=$(($(date +%s) - start))
echo "crash: $verdict: $cycles kill -9 cycles and $stalls stalls requested, $elapsed s ($build)"
exit "$status"
