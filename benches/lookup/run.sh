#!/usr/bin/env bash
# The customer-lookup load test end to end: sample data for N customers, one scoring run
# (publishes customer_churn_scores), `c360 serve` (release build) in the background, then
# the open-loop driver at RATE requests/s (and wrk for the maximum, when installed).
#
#   benches/lookup/run.sh                       # 1,000,000 customers, 2,000 req/s, 30 s
#   CUSTOMERS=20000 DURATION=10 benches/lookup/run.sh   # a quick check
#
# Needs: curl; optionally wrk; PY_DRIVER=1 also runs the Python driver (venv under .venv)
# (`apt-get install -y wrk`). Work files go to $WORK (default /tmp/c360-lookup-bench).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
CUSTOMERS="${CUSTOMERS:-1000000}"
RATE="${RATE:-2000}"
DURATION="${DURATION:-30}"
WORK="${WORK:-/tmp/c360-lookup-bench}"
PORT="${PORT:-8361}"
AS_OF="${AS_OF:-2024-09-29}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/c360-target}"

if [ -z "${C360_BIN:-}" ]; then
  (cd "$repo" && cargo build --release --bin c360)
  C360_BIN="$CARGO_TARGET_DIR/release/c360"
fi
# The open-loop driver (benches/lookup/driver.rs), built with the release profile.
DRIVER="${DRIVER:-$(cd "$repo" && cargo bench --bench lookup_load --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -1)}"
case "$DRIVER" in /*) ;; *) DRIVER="$repo/$DRIVER" ;; esac
if [ -n "${PY_DRIVER:-}" ] && [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install --quiet aiohttp
fi

mkdir -p "$WORK"
cat > "$WORK/c360.toml" <<TOML
[store]
uri = "store-$CUSTOMERS"
[source]
uri = "data-$CUSTOMERS"
[paths]
features = "$repo/features"
models = "$repo/models"
jobs = "$repo/jobs"
[service]
scheduler = false
TOML
cd "$WORK"
if [ ! -d "data-$CUSTOMERS" ]; then
  "$C360_BIN" generate --customers "$CUSTOMERS" --out "data-$CUSTOMERS"
fi
"$C360_BIN" --config c360.toml run churn_weekly --as-of "$AS_OF" >/dev/null

TOKEN="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
C360_SERVICE_TOKENS="bench:marketing:$TOKEN" C360_LOG=warn \
  "$C360_BIN" --config c360.toml serve --bind "127.0.0.1:$PORT" > serve.out 2> serve.log &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "listening on" serve.out 2>/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$PORT"
rows=$(python3 -c "import json;print(json.load(open('store-$CUSTOMERS/products/customer_churn_scores/latest.json'))['rows'])")
echo "== $rows customers in the product"
: > ids.txt
off=0
while :; do
  n=$(curl -sf -H "Authorization: Bearer $TOKEN" \
    "$url/products/customer_churn_scores/rows?format=csv&limit=10000&offset=$off" \
    | tail -n +2 | cut -d, -f1 | tee -a ids.txt | wc -l)
  [ "$n" -eq 0 ] && break
  off=$((off + n))
done
echo "== open loop (Rust driver, one thread) at $RATE req/s for $DURATION s"
"$DRIVER" --url "$url" --token "$TOKEN" --ids ids.txt --rate "$RATE" --duration "$DURATION"
if [ -n "${PY_DRIVER:-}" ]; then
  echo "== open loop (Python asyncio driver) at $RATE req/s for $DURATION s"
  "$here/.venv/bin/python" "$here/bench.py" --url "$url" --token "$TOKEN" \
    --rate "$RATE" --duration "$DURATION"
fi
if command -v wrk >/dev/null; then
  echo "== wrk, closed loop (maximum throughput), 2 threads, 64 connections, $DURATION s"
  IDS="$WORK/ids.txt" TOKEN="$TOKEN" wrk -t2 -c64 -d"${DURATION}s" -s "$here/lookup.lua" "$url"
fi
echo "== server RSS: $(ps -o rss= -p $pid) KiB"
