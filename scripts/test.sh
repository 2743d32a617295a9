#!/usr/bin/env bash
# scripts/test.sh — builds floodgate and runs every test: unit and integration tests on a
# normal build, then all of them again on an AddressSanitizer + UndefinedBehaviorSanitizer
# build, the engine's unit tests under ThreadSanitizer, gcc's static analyzer over src/ (zero
# findings), and the fuzz targets (corpus replay plus a bounded run each, clang + libFuzzer).
# Installs missing Debian packages first. Ends with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test || exit 1
status=0
logs=()
run_suite() { # name, build dir, suite ("" for all), meson options...
  local name=$1 dir=$2 suite=$3; shift 3
  echo "== $name: build ($dir)"
  # --reconfigure picks up test files added since the directory was set up.
  local again=()
  [ -f "$dir/build.ninja" ] && again=(--reconfigure)
  meson setup "${again[@]}" "$dir" "$@" >/dev/null || { echo "meson setup failed"; status=1; return; }
  ninja -C "$dir" || { echo "build failed"; status=1; return; }
  echo "== $name: test"
  local only=()
  [ -n "$suite" ] && only=(--suite "$suite")
  meson test -C "$dir" "${only[@]}" --num-processes 2 --print-errorlogs || status=1
  logs+=("$dir/meson-logs/testlog.json")
}
run_suite "debug build" build-test "" --buildtype=debugoptimized
run_suite "sanitizers (ASan+UBSan)" build-asan "" --buildtype=debug \
  -Db_sanitize=address,undefined -Dc_args=-fno-sanitize-recover=all -Db_lundef=false
# Criterion cannot start under TSan; this build runs the engine's unit tests with a plain
# runner (tests/unit/plain/) in the suite "tsan".
run_suite "ThreadSanitizer (engine unit tests)" build-tsan tsan -Db_sanitize=thread \
  -Db_lundef=false
echo "== static analysis (gcc -fanalyzer)"
# Counted as one test: its result goes into a log of the same shape as meson's.
analysis=OK
scripts/analyze.sh build-analyze || { analysis=FAIL; status=1; }
mkdir -p build-analyze/meson-logs
printf '{"name": "static_analysis", "result": "%s"}\n' "$analysis" \
  >build-analyze/meson-logs/analysis.json
logs+=("build-analyze/meson-logs/analysis.json")
echo "== fuzzing (clang + libFuzzer, ASan+UBSan): corpus replay and a bounded run per target"
rm -f build-fuzz/meson-logs/testlog.json # counted only from this run
scripts/fuzz.sh || status=1
if [ -f build-fuzz/meson-logs/testlog.json ]; then
  logs+=("build-fuzz/meson-logs/testlog.json")
else
  echo "fuzz: no results"
  status=1
fi
python3 scripts/count_tests.py "${logs[@]}" || status=1
exit $status
