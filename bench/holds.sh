#!/usr/bin/env bash
# bench/holds.sh — durable holds per second over HTTP, beside nginx's static 200 in the same run.
#
# Starts floodgate (fresh data dir, --quiet) and nginx on loopback, registers buyers, then runs
# wrk against each for the same duration and connections. Prints holds/s, p99, server CPU per
# hold, and the ratio to nginx. Bounded: every wrk run lasts DURATION seconds.
#
# Usage: bench/holds.sh [DURATION_S=10] [CONNECTIONS=64] [BUYERS=20000]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${2:-64}
BUYERS=${3:-20000}
WRK_THREADS=${WRK_THREADS:-2}
BIN=${FLOODGATE_BIN:-build-release/floodgate}
for cmd in wrk nginx python3 curl; do
  command -v "$cmd" >/dev/null || { echo "bench: $cmd is missing (apt-get install wrk nginx-light python3 curl)"; exit 1; }
done
[ -x "$BIN" ] || { meson setup build-release --buildtype=release -Db_ndebug=false >/dev/null && ninja -C build-release floodgate >/dev/null; }

WORK=$(mktemp -d /tmp/fg-bench.XXXXXX)
FG_PID=""; NGX_PID=""
cleanup() {
  [ -n "$FG_PID" ] && kill "$FG_PID" 2>/dev/null || true
  [ -n "$NGX_PID" ] && kill "$NGX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ADMIN=bench-admin-token-0123456789
"$BIN" serve --listen 127.0.0.1:0 --data "$WORK/data" --admin-token "$ADMIN" \
  --webhook-secret bench-webhook-secret-0123 --port-file "$WORK/port" --quiet ${FG_ARGS:-} 2>"$WORK/fg.log" &
FG_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
URL=http://127.0.0.1:$PORT
A="Authorization: Bearer $ADMIN"
curl -sf -XPUT "$URL/admin/v1/markets/DE" -H "$A" -d '{"name":"Germany","currency":"EUR"}' >/dev/null
curl -sf -XPUT "$URL/admin/v1/products/bench" -H "$A" \
  -d '{"name":"Bench phone","skus":[{"id":"bench-sku","name":"Bench phone"}]}' >/dev/null
curl -sf -XPUT "$URL/admin/v1/skus/bench-sku/offers/DE" -H "$A" -d '{"price_minor":99900}' >/dev/null
curl -sf -XPOST "$URL/admin/v1/sales" -H "$A" -H "Idempotency-Key: bench-sale" -d '{"id":"bench",
  "name":"bench","opens_at":"2020-01-01T00:00:00Z","limit_per_buyer":100,"hold_ttl_s":3600,
  "items":[{"sku":"bench-sku","stock":100000000,"markets":["DE"]}]}' >/dev/null
echo "bench: registering $BUYERS buyers"
python3 bench/register.py "127.0.0.1:$PORT" "$BUYERS" DE "$WORK/tokens" 8

# nginx peer: a static 200 on loopback.
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<NGX
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  server { listen 127.0.0.1:0; location / { return 200 "ok\n"; } }
}
NGX
NGX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/127.0.0.1:0/127.0.0.1:$NGX_PORT/" "$WORK/nginx/nginx.conf"
nginx -c "$WORK/nginx/nginx.conf" &
NGX_PID=$!
sleep 0.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
holds_total() { curl -sf "$URL/admin/v1/sales/bench/stats" -H "$A" | python3 -c 'import json,sys; print(json.load(sys.stdin)["holds_total"])'; }

H0=$(holds_total); C0=$(cpu_ticks "$FG_PID")
# FG_PERF=FILE records a CPU profile of the server during the run (perf, cpu-clock).
[ -n "${FG_PERF:-}" ] && perf record -e cpu-clock -F 2000 -g -p "$FG_PID" -o "$FG_PERF" -- sleep "$DURATION" 2>/dev/null &
FG_TOKENS="$WORK/tokens" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s bench/holds.lua "$URL" > "$WORK/wrk-fg.txt"
C1=$(cpu_ticks "$FG_PID"); H1=$(holds_total)
wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$NGX_PORT/" > "$WORK/wrk-ngx.txt"

HZ=$(getconf CLK_TCK)
python3 - "$WORK" "$H0" "$H1" "$C0" "$C1" "$HZ" "$DURATION" "$CONNS" <<'PY'
import re, sys
work, h0, h1, c0, c1, hz, dur, conns = sys.argv[1:]
h = int(h1) - int(h0); cpu_s = (int(c1) - int(c0)) / int(hz)
fg = open(f"{work}/wrk-fg.txt").read(); ngx = open(f"{work}/wrk-ngx.txt").read()
def rps(t): return float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def p99(t):
    m = re.search(r"p99_ms=([\d.]+)", t)
    if m: return float(m.group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", fg)
holds_s = h / float(dur)
print(f"floodgate durable holds: {holds_s:,.0f}/s ({h} holds in {dur} s, {conns} connections)"
      f", p99 {p99(fg):.2f} ms, server CPU {cpu_s * 1e6 / max(h, 1):.1f} us/hold"
      f", non-2xx {errs.group(1) if errs else 0}")
print(f"nginx static 200:        {rps(ngx):,.0f}/s, p99 {p99(ngx):.2f} ms")
print(f"ratio holds/nginx:       {holds_s / rps(ngx):.2f}")
PY
grep -E "batch|error" "$WORK/fg.log" | tail -3 || true
