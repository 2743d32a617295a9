#!/usr/bin/env bash
# scripts/demo.sh — builds floodgate and runs the demo: a phone launch on the embedded SQLite
# ledger (no other server). Installs missing Debian packages first.
#
# The demo catalog: the Nova X phone in two variants, offered in IN, DE, FR, ES, IT, GB, ID and
# BR, blocked in the US ("not certified"); a case and a charger offered in the US too; a sale of
# 10,000 phones (and 2,000 cases) opening one minute after start. Ctrl-C stops it cleanly.
#
# With --crowd it also shows a whole launch: once the server is up, floodgate-crowd registers
# 50,000 buyers, creates a sale of 5,000 units of its own product that opens 5 s later, runs the
# crowd from opening to sell-out with a live progress bar, prints its summary and audits the
# server's record (about a minute); the server keeps running afterwards for the tour.
#
# Usage: scripts/demo.sh [--crowd]
# Environment: FLOODGATE_LISTEN (default 127.0.0.1:8080), FLOODGATE_DATA (default a new
# directory under ./demo-data/).
set -euo pipefail
CROWD=0
case "${1:-}" in
  --crowd) CROWD=1 ;;
  "") ;;
  *) echo "usage: scripts/demo.sh [--crowd]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
scripts/deps.sh build
if [ ! -f build-release/build.ninja ]; then
  meson setup build-release --buildtype=release -Db_ndebug=false >/dev/null
fi
ninja -C build-release floodgate floodgate-crowd >/dev/null
LISTEN=${FLOODGATE_LISTEN:-127.0.0.1:8080}
DATA=${FLOODGATE_DATA:-demo-data/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$(dirname "$DATA")"
ADMIN="fga_demo_$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
URL="http://$LISTEN"
cat <<TOUR

floodgate demo — data in $DATA, listening on $URL
Admin token (operators): $ADMIN

A short tour (in another terminal):

  # the sale: scheduled now, open a minute after start, 10,000 phones
  curl -s $URL/v1/sales/nova-launch

  # what a buyer in the US sees: the phone is not certified there; accessories are offered
  curl -s "$URL/v1/products/nova-x?market=US"

  # register a buyer in Germany and keep the token
  TOKEN=\$(curl -s -XPOST $URL/v1/buyers -H 'Idempotency-Key: reg-ana' \\
      -d '{"email":"ana@example.com","market":"DE"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

  # once the sale is open: hold a phone (the same Idempotency-Key again replays the answer)
  curl -s -XPOST $URL/v1/sales/nova-launch/holds -H "Authorization: Bearer \$TOKEN" \\
      -H 'Idempotency-Key: hold-1' -d '{"sku":"nova-x-256-black"}'

  # order it (use the hold id from the answer)
  curl -s -XPOST $URL/v1/holds/h_1/order -H "Authorization: Bearer \$TOKEN" -H 'Idempotency-Key: order-1' \\
      -d '{"shipping":{"name":"Ana","line1":"Hauptstr. 1","city":"Berlin","postal_code":"10115","country":"DE"},"payment":{"method":"instant"}}'

  # watch stock live, and the operator's view
  curl -sN $URL/v1/sales/nova-launch/events
  curl -s $URL/admin/v1/sales/nova-launch/stats -H "Authorization: Bearer $ADMIN"
  curl -s "$URL/admin/v1/sales/nova-launch/orders?format=csv" -H "Authorization: Bearer $ADMIN"
  curl -s $URL/metrics

  # a whole launch by a simulated crowd, audited (its own sale and product):
  build-release/floodgate-crowd --url $URL --admin-token $ADMIN \\
      --buyers 50000 --stock 5000 --connections 500 --hold-ttl-s 10 --opens-in-s 5

Stop with Ctrl-C.

TOUR
if [ "$CROWD" = 0 ]; then
  exec build-release/floodgate serve --demo --listen "$LISTEN" --data "$DATA" --admin-token "$ADMIN"
fi
# --quiet: the crowd's 100,000 requests would bury its progress bar in request log lines.
build-release/floodgate serve --demo --listen "$LISTEN" --data "$DATA" --admin-token "$ADMIN" \
  --port-file "$DATA.port" --quiet &
SERVER=$!
trap 'kill -TERM "$SERVER" 2>/dev/null; wait "$SERVER"; rm -f "$DATA.port"; exit 0' INT TERM
for _ in $(seq 100); do [ -s "$DATA.port" ] && break; sleep 0.1; done
[ -s "$DATA.port" ] || { echo "demo: the server did not start"; kill "$SERVER" 2>/dev/null; exit 1; }
echo "== a launch: 50,000 buyers, 5,000 units, 500 connections (floodgate-crowd)"
build-release/floodgate-crowd --url "$URL" --admin-token "$ADMIN" --buyers 50000 --stock 5000 \
  --connections 500 --hold-ttl-s 10 --opens-in-s 5 --duration-s 120 ||
  echo "demo: the crowd reported a problem (exit $?)"
echo "== the server is still running on $URL; Ctrl-C stops it"
wait "$SERVER"
