#!/usr/bin/env bash
# scripts/fuzz.sh — builds floodgate's libFuzzer targets (tests/fuzz) with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer in build-fuzz, and runs the fuzz suite: each target replays its
# committed corpus, then fuzzes for FG_FUZZ_SECONDS seconds (default 10).
#
#   scripts/fuzz.sh                          # the CI run: about 10 s per target
#   FG_FUZZ_SECONDS=300 scripts/fuzz.sh      # a longer campaign, 300 s per target
#   MESON_TESTTHREADS=1 scripts/fuzz.sh      # one target at a time (default: one per core)
#
# Findings, logs and each target's grown corpus are kept in build-fuzz/tests/fuzz/out/<target>/;
# the committed corpus is never written. Installs clang and its libFuzzer runtime when missing.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=build-fuzz
say() { echo "fuzz: $*"; }

scripts/deps.sh build || exit 1

# True when clang can build a libFuzzer target with ASan and UBSan here.
have_libfuzzer() {
  local tmp rc
  tmp=$(mktemp -d)
  printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return d == NULL && n > 0; }' \
    > "$tmp/t.c"
  clang -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1
  rc=$?
  rm -rf "$tmp"
  return $rc
}

if ! have_libfuzzer; then
  # Debian 12: clang is clang-14, and libFuzzer ships in the compiler-rt development package.
  say "installing clang and libFuzzer (clang, libclang-rt-14-dev)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
  have_libfuzzer || { say "clang cannot build a libFuzzer target; giving up"; exit 1; }
fi

# The compiler of a build directory cannot change: one set up with another starts over.
if [ -f "$dir/build.ninja" ] &&
    ! grep -A1 '^rule c_COMPILER$' "$dir/build.ninja" | grep -q '^ command = clang'; then
  say "$dir was set up with another compiler than clang; setting it up again"
  rm -rf "$dir"
fi
opts=(-Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
      "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=all")
say "configuring $dir (clang, ASan+UBSan, libFuzzer)"
if [ -f "$dir/build.ninja" ]; then
  meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null || { say "meson setup failed"; exit 1; }
else
  CC=clang meson setup "$dir" "${opts[@]}" >/dev/null || { say "meson setup failed"; exit 1; }
fi
say "building"
ninja -C "$dir" || { say "build failed"; exit 1; }

say "running the fuzz suite, ${FG_FUZZ_SECONDS:-10} s of fuzzing per target"
meson test -C "$dir" --suite fuzz --verbose --print-errorlogs
status=$?
say "results (logs, findings and grown corpora in $dir/tests/fuzz/out/):"
grep -hE '^fuzz_[a-z_]+: (ok|FAILED)' "$dir/meson-logs/testlog.txt" | sed 's/^/  /'
exit $status
