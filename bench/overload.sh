#!/usr/bin/env bash
# bench/overload.sh — three times capacity for 60 seconds: does floodgate shed the excess early,
# keep the p99 of what it accepts within 2x its unloaded p99, hold its memory, and come back to
# normal within a second?
#
# One fresh server (--quiet, fresh data dir), four runs of floodgate-load (tests/load) against
# it, each figure a ratio against a baseline measured in the same run on the same server:
#   1. unloaded: open loop at UNLOADED_RATE holds/s for 10 s        -> unloaded p99
#   2. capacity: closed loop, 64 connections, 10 s                   -> durable holds/s, B/hold
#   3. the unloaded rate again over CONNECTIONS connections     -> p99 with that many open
#   4. overload: open loop at 3 x capacity for DURATION s, then 5 s at 200/s (the recovery)
# Bounded: every run has a fixed duration and floodgate-load's own drain limit.
#
# Usage: bench/overload.sh [DURATION_S=60] [CONNECTIONS=3000]
# (more connections than the admission limit lets in at once, FG_ADMIT_MIN in src/limits.h, so
# that the excess reaches it rather than waiting in the generator)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
CONNS=${2:-3000}
UNLOADED_RATE=${UNLOADED_RATE:-500}
BUILD=${BUILD:-build-release}
BIN=${FLOODGATE_BIN:-$BUILD/floodgate}
LOAD=${FLOODGATE_LOAD_BIN:-$BUILD/tests/load/floodgate-load}
for cmd in python3 meson ninja; do
  command -v "$cmd" >/dev/null || { echo "bench: $cmd is missing"; exit 1; }
done
if [ ! -x "$BIN" ] || [ ! -x "$LOAD" ]; then
  [ -d "$BUILD" ] || meson setup "$BUILD" --buildtype=release -Db_ndebug=false >/dev/null
  ninja -C "$BUILD" floodgate tests/load/floodgate-load >/dev/null
fi

WORK=$(mktemp -d /tmp/fg-overload.XXXXXX)
FG_PID=""
cleanup() {
  [ -n "$FG_PID" ] && kill "$FG_PID" 2>/dev/null && wait "$FG_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ADMIN=bench-admin-token-0123456789
"$BIN" serve --listen 127.0.0.1:0 --data "$WORK/data" --admin-token "$ADMIN" \
  --webhook-secret bench-webhook-secret-0123 --port-file "$WORK/port" --quiet 2>"$WORK/fg.log" &
FG_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
[ -s "$WORK/port" ] || { echo "bench: floodgate did not start"; cat "$WORK/fg.log"; exit 1; }
URL=http://127.0.0.1:$(sed 's/.*://' "$WORK/port")
run() { "$LOAD" --url "$URL" --admin-token "$ADMIN" --server-pid "$FG_PID" --quiet "$@"; }
last() { tail -n 1 "$1"; }
field() { python3 -c 'import json,sys; j=json.load(sys.stdin)
for k in sys.argv[1].split("."): j=j[k]
print(j)' "$1"; }

echo "bench: unloaded, $UNLOADED_RATE holds/s for 10 s"
run --rate "$UNLOADED_RATE" --duration-s 10 --connections 32 --buyers 200 > "$WORK/unloaded.txt"
UNLOADED_P99=$(last "$WORK/unloaded.txt" | field main.accepted.p99_us)

echo "bench: capacity, closed loop, 64 connections, 10 s"
run --closed --duration-s 10 --connections 64 --buyers 10000 > "$WORK/capacity.txt"
CAPACITY=$(last "$WORK/capacity.txt" | field accepted_per_s)

echo "bench: unloaded again, over $CONNS connections, 5 s"
run --rate "$UNLOADED_RATE" --duration-s 5 --connections "$CONNS" --buyers 100 > "$WORK/unloaded_conns.txt"
# "Back to normal" is judged against this: after the overload the generator's connections stay
# open, and every open connection costs the loop threads a little on each poll().
NORMAL_US=$((2 * $(last "$WORK/unloaded_conns.txt" | field main.accepted.p99_us)))

RATE=$(python3 -c "print(int(3 * $CAPACITY))")
# Every hold sent has a buyer under the sale's limit (100): at most 80 holds per buyer.
BUYERS=$(python3 -c "print(($RATE * $DURATION + 200 * 5) // 80 + 100)")
echo "bench: overload, $RATE holds/s (3 x $CAPACITY) for $DURATION s over $CONNS connections," \
  "then 5 s at 200/s"
"$LOAD" --url "$URL" --admin-token "$ADMIN" --server-pid "$FG_PID" --rate "$RATE" \
  --duration-s "$DURATION" --connections "$CONNS" --buyers "$BUYERS" --after-s 5 \
  --after-rate 200 --normal-us "$NORMAL_US" | tee "$WORK/overload.txt" | grep '^t=' | \
  awk -v d="$DURATION" '{ n++; if (n <= 3 || n % 10 == 0 || n > d) print "  " $0 }'

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def summary(name):
    return json.loads(open(f"{work}/{name}.txt").read().strip().splitlines()[-1])
u, c, o = summary("unloaded"), summary("capacity"), summary("overload")
uc = summary("unloaded_conns")
m, a = o["main"], o["after"]
up99 = u["main"]["accepted"]["p99_us"]
shed = m["status"].get("429", 0) + m["status"].get("503", 0)
acc = m["status"].get("201", 0) + a["tally"]["status"].get("201", 0)
others = {s: n for s, n in m["status"].items() if s not in ("201", "429", "503")}
cap_b = (c["server"]["rss_end_kb"] - c["server"]["rss_start_kb"]) * 1024 / max(1, c["main"]["status"].get("201", 0))
over_b = (o["server"]["rss_max_kb"] - o["server"]["rss_start_kb"]) * 1024 / max(1, acc)
ms = lambda us: us / 1e3
print(f"unloaded:  {u['rate_per_s']:.0f} holds/s, p50 {ms(u['main']['accepted']['p50_us']):.2f} ms, p99 {ms(up99):.2f} ms "
      f"({u['connections']} connections); over {uc['connections']} connections: "
      f"p50 {ms(uc['main']['accepted']['p50_us']):.2f} ms, p99 {ms(uc['main']['accepted']['p99_us']):.2f} ms")
print(f"capacity:  {c['accepted_per_s']:,.0f} durable holds/s (closed loop, 64 connections), "
      f"p99 {ms(c['main']['accepted']['p99_us']):.2f} ms, server CPU {c['server']['cpu_us_per_answer']:.1f} us/hold, {cap_b:.0f} B RSS/hold")
print(f"overload:  offered {o['offered_per_s']:,.0f}/s for {o['duration_s']} s = {o['offered_per_s'] / c['accepted_per_s']:.2f} x capacity; "
      f"not sent in time {m['not_sent']} ({m['not_sent'] / max(1, m['offered']):.2%})")
print(f"  accepted {o['accepted_per_s']:,.0f}/s = {o['accepted_per_s'] / c['accepted_per_s']:.2f} x capacity; "
      f"p50 {ms(m['accepted']['p50_us']):.2f} ms, p99 {ms(m['accepted']['p99_us']):.2f} ms = "
      f"{m['accepted']['p99_us'] / max(1, up99):.2f} x unloaded p99 "
      f"({m['accepted']['p99_us'] / max(1, uc['main']['accepted']['p99_us']):.2f} x over {uc['connections']} connections), "
      f"p99.9 {ms(m['accepted']['p999_us']):.2f} ms")
print(f"  shed     {o['shed_per_s']:,.0f}/s ({shed / max(1, m['offered']):.1%} of offered); "
      f"p50 {m['shed']['p50_us']} us, p99 {m['shed']['p99_us']} us; without Retry-After: {m['shed_without_retry_after']}")
print(f"  other answers: {others or 'none'}; no answer: {m['no_answer']}")
print(f"  server RSS {o['server']['rss_start_kb'] / 1024:.1f} -> max {o['server']['rss_max_kb'] / 1024:.1f} MiB "
      f"({over_b:.0f} B per accepted hold, {over_b / max(1, cap_b):.2f} x capacity's); "
      f"server CPU {o['server']['cpu_us_per_answer']:.1f} us/answer; generator CPU {o['generator']['cpu_s']:.1f} s, lag p99 {ms(o['generator']['lag_p99_us']):.2f} ms")
rec, ok = a["recovered_ms"], a["all_2xx_ms"]
at = lambda v: f"from {v:.0f} ms after the overload" if v >= 0 else "not within the after phase"
print(f"recovery:  every hold 201: {at(ok)}; and 100 ms windows' median within "
      f"{ms(a['normal_us']):.2f} ms (2 x unloaded p99 over {uc['connections']} connections): {at(rec)}; after phase p50 "
      f"{ms(a['tally']['accepted']['p50_us']):.2f} ms, p99 {ms(a['tally']['accepted']['p99_us']):.2f} ms")
PY
