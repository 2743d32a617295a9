#!/usr/bin/env bash
# scripts/test.sh — builds floodgate and runs every test: unit and integration tests on a
# normal build, then all of them again on an AddressSanitizer + UndefinedBehaviorSanitizer
# build. Installs missing Debian packages first. Ends with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test || exit 1
status=0
logs=()
run_suite() { # name, build dir, meson options...
  local name=$1 dir=$2; shift 2
  echo "== $name: build ($dir)"
  # --reconfigure picks up test files added since the directory was set up.
  local again=()
  [ -f "$dir/build.ninja" ] && again=(--reconfigure)
  meson setup "${again[@]}" "$dir" "$@" >/dev/null || { echo "meson setup failed"; status=1; return; }
  ninja -C "$dir" || { echo "build failed"; status=1; return; }
  echo "== $name: test"
  meson test -C "$dir" --num-processes 2 --print-errorlogs || status=1
  logs+=("$dir/meson-logs/testlog.json")
}
run_suite "debug build" build-test --buildtype=debugoptimized
run_suite "sanitizers (ASan+UBSan)" build-asan --buildtype=debug -Db_sanitize=address,undefined \
  -Dc_args=-fno-sanitize-recover=all -Db_lundef=false
python3 scripts/count_tests.py "${logs[@]}" || status=1
exit $status
