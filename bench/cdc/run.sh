#!/usr/bin/env bash
# CDC benchmarks on one throw-away PostgreSQL cluster (bench/cdc):
#  (a) decode rate: pg_recvlogical reading the same WAL (the physical
#      limit) vs strangler's stream (decode + Debezium envelopes);
#  (b) end to end PostgreSQL → PostgreSQL (embedded transport) under a
#      pgbench-style write load: events/s and lag percentiles;
#  (c) snapshot: pg_dump | psql vs strangler's snapshot into a sink, on
#      three tables (one of a million rows);
#  (d) catch-up: the pipeline alone applying a backlog;
#  (e) end to end at 25,000 rows/s offered and with unthrottled writers,
#      embedded and through Kafka (tansu);
#  (f) peak memory for one transaction of 2 million rows (its own process);
#  (g) a MariaDB monolith: its snapshot vs `mariadb --batch | psql COPY`,
#      and catching up on a binlog of small transactions.
#
#   bench/cdc/run.sh [ROWS=200000] [LOAD_SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup >/dev/null
cargo build --release --quiet -p bench-cdc
bin="${CARGO_TARGET_DIR:-target}/release/cdc-bench"
"$bin" "${1:-200000}" "${2:-10}"
"$bin" memory 2000000 | tail -n 1
"$bin" mysql "${1:-200000}" | tail -n 3
