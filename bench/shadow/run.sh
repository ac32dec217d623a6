#!/usr/bin/env bash
# Shadow benchmarks, side by side in one run:
#  1. compare throughput on one core, 2 KiB and 64 KiB JSON pairs
#     (bench/compare: strangler-shadow's compare, as the proxy runs it);
#  2. the router with shadow off (stage legacy) vs 100 % shadow (stage
#     shadow, A/A off), same upstream: req/s and latency percentiles.
#
#   bench/shadow/run.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10}
conns=${2:-50}

scripts/setup bench >/dev/null
cargo build --release --quiet --bin strangler -p strangler --bin compare-bench -p bench-compare --bin traffic -p traffic
bin=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d /tmp/strangler-bench.XXXXXX)
pids=()
cleanup() {
  # The routers start inside $(...): their pids are in files, not in pids.
  for p in "${pids[@]}" $(cat "$work"/*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source bench/lib.sh

echo "## compare ($(date -u +%F), $(nproc) cores)"
echo
"$bin/compare-bench" "$duration"
echo

up_port=$(free_port); svc_port=$(free_port)
start_upstream "$up_port"
# The candidate: a second nginx answering the same body on its own port.
mkdir -p "$work/svc"
sed -e "s/$up_port/$svc_port/" -e "s|$work/up|$work/svc|g" "$work/up/nginx.conf" > "$work/svc/nginx.conf"
nginx -c "$work/svc/nginx.conf" -g 'daemon off;' & pids+=($!)

router() { # NAME STAGE -> port
  local listen admin
  listen=$(free_port); admin=$(free_port)
  cat > "$work/$1.toml" <<CONF
[state]
url = "sqlite://$work/$1.db"
[proxy]
listen = "127.0.0.1:$listen"
admin = "127.0.0.1:$admin"
threads = 1
access_log = false
[upstreams.legacy]
url = "http://127.0.0.1:$up_port"
[upstreams.svc]
url = "http://127.0.0.1:$svc_port"
[[routes]]
name = "product"
methods = ["GET"]
path = "/products/{id}"
service = "svc"
stage = "$2"
shadow_percent = 100.0
[routes.compare]
aa_percent = 0.0
CONF
  "$bin/strangler" proxy -c "$work/$1.toml" >/dev/null 2>"$work/$1.log" & echo $! > "$work/$1.pid"
  wait_port "$listen"
  echo "$admin" > "$work/$1.admin"
  echo "$listen"
}
# What the shadowed router did with the copies: compared or shed.
copies() {
  curl -s "http://127.0.0.1:$(cat "$work/on.admin")/metrics" > "$work/metrics.txt"
  python3 - "$work/metrics.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
n = {o: int(float(v)) for o, v in re.findall(r'strangler_shadow_total\{outcome="(\w+)",route="product"\} (\S+)', t)}
r = re.search(r"^strangler_shadow_admitted_ratio (\S+)$", t, re.M)
done = n.get("match", 0) + n.get("mismatch", 0)
shed = n.get("skipped_shed", 0)
other = sum(v for k, v in n.items() if k.startswith("skipped_") and k != "skipped_shed")
print(f"100 % shadow router, copies so far: {done:,} compared, {shed:,} shed, {other:,} skipped otherwise; admitted now {float(r.group(1)) if r else 1:.2f}")
PY
}
off=$(router off legacy)
on=$(router on shadow)
wait_port "$up_port"; wait_port "$svc_port"

echo "## router: shadow off vs 100 % shadow"
echo
echo "wrk -t1 -c$conns -d${duration}s --latency; proxies with 1 thread; $(nproc) cores"
echo
echo "| target | req/s | p50 ms | p90 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|"
wrk_row "strangler, shadow off" "http://127.0.0.1:$off/products/7"
wrk_row "strangler, 100 % shadow" "http://127.0.0.1:$on/products/7"
wrk_row "strangler, shadow off (again)" "http://127.0.0.1:$off/products/7"
wrk_row "strangler, 100 % shadow (again)" "http://127.0.0.1:$on/products/7"
echo
copies

# Open loop at a fixed rate well below saturation: does shadowing delay
# the client's answer when the machine is not out of CPU?
rate=${RATE:-2000}
fixed() { # NAME PORT
  "$bin/traffic" --base-url "http://127.0.0.1:$2" --path /products/7 --rate "$rate" --duration "$duration" --concurrency 32 --json > "$work/t.json"
  python3 - "$1" "$work/t.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"| {sys.argv[1]} | {r['rate']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
PY
}
echo
echo "## router at a fixed $rate req/s (traffic --rate $rate, 32 in flight)"
echo
echo "| target | req/s | p50 ms | p90 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|"
fixed "strangler, shadow off" "$off"
fixed "strangler, 100 % shadow" "$on"
fixed "strangler, shadow off (again)" "$off"
echo
copies
