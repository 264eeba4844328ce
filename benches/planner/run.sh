#!/usr/bin/env bash
# Batch-transform right-sizing: what `c360 plan` chooses for 10k, 1M, 10M and 100M rows,
# next to the common default (one ml.m5.xlarge, one input file, MaxConcurrentTransforms 1,
# MaxPayloadInMB 6), as a Markdown table. Nothing runs on AWS: these are the planner's
# estimates from its price table and throughput figure.
#
#   benches/planner/run.sh                                  # builds the debug binary
#   C360_BIN=target/release/c360 benches/planner/run.sh
#   THROUGHPUT=2000 DEADLINE=20m benches/planner/run.sh     # another model / deadline
#   ROWS="100000000" ROW_BYTES=400 benches/planner/run.sh   # other sizes
#
# Needs: jq.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/c360-target}"
THROUGHPUT="${THROUGHPUT:-20000}"
DEADLINE="${DEADLINE:-1h}"
ROW_BYTES="${ROW_BYTES:-250}"
ROWS="${ROWS:-10000 1000000 10000000 100000000}"

if [ -z "${C360_BIN:-}" ]; then
  (cd "$repo" && cargo build --bin c360 -j2 >&2)
  C360_BIN="$CARGO_TARGET_DIR/debug/c360"
fi
command -v jq >/dev/null || { echo "needs jq (apt-get install -y jq)" >&2; exit 1; }

# jq helpers: fixed decimals, durations like `c360 plan` prints them, thousands separators.
defs='
  def fixed($d): (pow(10; $d)) as $p | (. * $p | round) as $c
    | if $d == 0 then "\($c)"
      else "\($c / $p | floor).\(($c % $p) | tostring | ("0" * ($d - length)) + .)" end;
  def dur: (. | round) as $s | [
      (if $s >= 3600 then "\($s / 3600 | floor)h" else empty end),
      (if ($s % 3600) >= 60 or ($s >= 3600 and ($s % 60) > 0) then "\(($s % 3600) / 60 | floor)m" else empty end),
      (if ($s % 60) > 0 then "\($s % 60)s" else empty end)
    ] | join(" ");
  def usd: if . < 1 then "$" + fixed(4) else "$" + fixed(2) end;
  def met: if . then "met" else "missed" end;
  def sep: tostring | [match("(\\d)(?=(\\d{3})+$)"; "g")] as $m
    | reduce ($m | reverse)[] as $x (.; .[0:$x.offset + 1] + "," + .[$x.offset + 1:]);
'

first=1
for rows in $ROWS; do
  json="$("$C360_BIN" plan --rows "$rows" --row-bytes "$ROW_BYTES" --deadline "$DEADLINE" \
    --throughput "$THROUGHPUT" --compare-default --json)"
  if [ "$first" = 1 ]; then
    echo "$json" | jq -r "$defs"'
      "Assumptions: \(.settings.rows_per_second_per_vcpu | sep) rows/s per vCPU; start-up \(.settings.startup_seconds | dur) per instance (billed); deadline \(.settings.deadline_seconds | dur); \(.workload.bytes / .workload.rows) bytes per CSV row; parts of about \(.settings.target_part_bytes / 1048576) MiB.",
      "Prices: `\(.prices.file)` (\(.prices.region), \(.prices.date)): \(.prices.source).",
      "",
      "| rows | | type | count | parts | concurrency | payload MB | est. time | est. cost | deadline |",
      "|---:|---|---|---:|---:|---:|---:|---:|---:|---|"'
    first=0
  fi
  echo "$json" | jq -r "$defs"'
    def line($r; $what): "| \($r) | \($what) | \(.instance_type) | \(.instance_count) | \(.parts) | \(.max_concurrent_transforms) | \(.max_payload_mb) | \(.est_seconds | dur) | \(.est_cost_usd | usd) | \(.meets_deadline | met) |";
    (.plan | line($rows | tonumber | sep; "plan")),
    (.default | line(""; "default")),
    "| | default / plan | | | | | | \(.default.est_seconds / .plan.est_seconds | fixed(2))x | \(.default.est_cost_usd / .plan.est_cost_usd | fixed(2))x | |"' \
    --arg rows "$rows"
done
