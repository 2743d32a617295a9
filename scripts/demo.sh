#!/usr/bin/env bash
# scripts/demo.sh — builds floodgate and runs the demo: a phone launch on the embedded SQLite
# ledger (no other server). Installs missing Debian packages first.
#
# The demo catalog: the Nova X phone in two variants, offered in IN, DE, FR, ES, IT, GB, ID and
# BR, blocked in the US ("not certified"); a case and a charger offered in the US too; a sale of
# 10,000 phones (and 2,000 cases) opening one minute after start. Ctrl-C stops it cleanly.
#
# Environment: FLOODGATE_LISTEN (default 127.0.0.1:8080), FLOODGATE_DATA (default a new
# directory under ./demo-data/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
if [ ! -f build-release/build.ninja ]; then
  meson setup build-release --buildtype=release -Db_ndebug=false >/dev/null
fi
ninja -C build-release floodgate >/dev/null
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

Stop with Ctrl-C.

TOUR
exec build-release/floodgate serve --demo --listen "$LISTEN" --data "$DATA" --admin-token "$ADMIN"
