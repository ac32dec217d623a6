#!/usr/bin/env bash
# Router benchmark: wrk against the same upstream
#   (a) directly, (b) through nginx as a plain reverse proxy with keep-alive
#   to the upstream, (c) through the strangler router with 50 routes,
# one after the other in one run, and prints a Markdown table.
#
#   bench/router/run.sh [DURATION_SECONDS] [CONNECTIONS] [PROXY_WORKERS]
#
# Loopback only. Access logs are off in both proxies (each would otherwise
# measure its log writer). Each proxy gets PROXY_WORKERS workers (default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10}
conns=${2:-50}
workers=${3:-1}

scripts/setup bench >/dev/null
cargo build --release --quiet --bin strangler
bin=${CARGO_TARGET_DIR:-target}/release/strangler

work=$(mktemp -d /tmp/strangler-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port); nginx_port=$(free_port); router_port=$(free_port); admin_port=$(free_port)

# The upstream: nginx answering a small JSON body from memory (2 workers, so
# it is never the bottleneck of a single-worker proxy).
mkdir -p "$work/up" "$work/px"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 2;
pid $work/up/nginx.pid;
error_log $work/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$up_port;
    location / { default_type application/json; return 200 '{"id":42,"sku":"SKU-42","title":"Kettle","price_cents":2599}'; }
  }
}
CONF
# nginx as a plain reverse proxy with keep-alive to the upstream.
cat > "$work/px/nginx.conf" <<CONF
worker_processes $workers;
pid $work/px/nginx.pid;
error_log $work/px/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream monolith { server 127.0.0.1:$up_port; keepalive 128; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://monolith;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
CONF
# strangler with 50 routes; the benchmarked request matches route 25
# (GET /api/v25/items/{id}, stage migrated) after the table is searched.
{
  cat <<CONF
[state]
url = "sqlite://$work/state.db"
[proxy]
listen = "127.0.0.1:$router_port"
admin = "127.0.0.1:$admin_port"
threads = $workers
access_log = false
[upstreams.legacy]
url = "http://127.0.0.1:$up_port"
[upstreams.svc]
url = "http://127.0.0.1:$up_port"
CONF
  for i in $(seq 1 50); do
    case $((i % 3)) in
      0) stage=legacy ;; 1) stage=migrated ;; 2) stage=canary ;;
    esac
    [ "$i" = 25 ] && stage=migrated
    cat <<CONF
[[routes]]
name = "r$i"
methods = ["GET"]
path = "/api/v$i/items/{id}"
service = "svc"
stage = "$stage"
percent = 50.0
sticky = "header:x-user-id"
CONF
  done
} > "$work/strangler.toml"

nginx -c "$work/up/nginx.conf" -g 'daemon off;' & pids+=($!)
nginx -c "$work/px/nginx.conf" -g 'daemon off;' & pids+=($!)
"$bin" proxy -c "$work/strangler.toml" >/dev/null 2>"$work/strangler.log" & pids+=($!)
for port in $up_port $nginx_port $router_port; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

run() { # name url
  wrk -t1 -c"$conns" -d2s "$2" >/dev/null  # warm-up
  wrk -t1 -c"$conns" -d"${duration}s" --latency "$2" > "$work/$1.txt"
  python3 - "$1" "$work/$1.txt" <<'PY'
import re, sys
name, path = sys.argv[1], sys.argv[2]
t = open(path).read()
def ms(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.search(r"[a-z]+", v).group()
    return n * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
lat = {p: ms(re.search(rf"\s{p}%\s+(\S+)", t).group(1)) for p in ("50", "90", "99")}
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: (.*)", t)
print(f"| {name} | {rps:,.0f} | {lat['50']:.2f} | {lat['90']:.2f} | {lat['99']:.2f} | {errs.group(1) if errs else 0}{' ('+sock.group(1)+')' if sock else ''} |")
PY
}

echo "wrk -t1 -c$conns -d${duration}s --latency; proxies with $workers worker(s); $(nproc) cores; $(date -u +%F)"
echo
echo "| target | req/s | p50 ms | p90 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|"
run "direct (upstream)" "http://127.0.0.1:$up_port/api/v25/items/7"
run "nginx reverse proxy" "http://127.0.0.1:$nginx_port/api/v25/items/7"
run "strangler router, 50 routes" "http://127.0.0.1:$router_port/api/v25/items/7"
