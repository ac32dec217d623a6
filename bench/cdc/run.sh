#!/usr/bin/env bash
# CDC benchmarks on one throw-away PostgreSQL cluster (bench/cdc):
#  (a) decode rate: pg_recvlogical reading the same WAL (the physical
#      limit) vs strangler's stream (decode + Debezium envelopes);
#  (b) end to end PostgreSQL → PostgreSQL (embedded transport) under a
#      pgbench-style write load: events/s and lag percentiles;
#  (c) snapshot: pg_dump | psql vs strangler's snapshot into a sink.
#
#   bench/cdc/run.sh [ROWS=200000] [LOAD_SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup >/dev/null
cargo build --release --quiet -p bench-cdc
"${CARGO_TARGET_DIR:-target}/release/cdc-bench" "${1:-200000}" "${2:-10}"
