#!/usr/bin/env bash
# Router benchmark: wrk against the same upstream
#   (a) directly, (b) through nginx as a plain reverse proxy with keep-alive
#   to the upstream, (c) through a bare Pingora proxy (same Pingora version
#   and allocator as strangler, no routing: the floor), (d) through the
#   strangler router with 50 routes (the request matches a migrated route
#   with shadowing off: proxying alone), (e) the same router on a migrated
#   route copying every request to the monolith (reverse shadow, the
#   default of a migrated route), (e') the router of (d) with its endpoint
#   inventory off (what counting every request costs), (f) nginx and
#   strangler over TLS with one
#   certificate, on keep-alive connections and with a handshake per request,
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
cargo build --release --quiet -p strangler -p bench-pingora
bin=${CARGO_TARGET_DIR:-target}/release/strangler
bare=${CARGO_TARGET_DIR:-target}/release/bare-pingora

work=$(mktemp -d /tmp/strangler-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source bench/lib.sh
up_port=$(free_port); nginx_port=$(free_port); router_port=$(free_port); admin_port=$(free_port); bare_port=$(free_port)
nginx_tls_port=$(free_port); router_tls_port=$(free_port)
noinv_port=$(free_port); noinv_admin=$(free_port)
mkdir -p "$work/px"
# One certificate for both TLS listeners (ECDSA P-256, what a modern
# deployment serves).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -keyout "$work/px/key.pem" -out "$work/px/cert.pem" 2>/dev/null
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
    listen 127.0.0.1:$nginx_tls_port ssl;
    ssl_certificate $work/px/cert.pem;
    ssl_certificate_key $work/px/key.pem;
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
# (GET /api/v25/items/{id}, stage migrated, no shadow) after the table is
# searched; route 26 is the same with the migrated stage's reverse shadow.
{
  cat <<CONF
[state]
url = "sqlite://$work/state.db"
[proxy]
listen = "127.0.0.1:$router_port"
admin = "127.0.0.1:$admin_port"
threads = $workers
access_log = false
[proxy.tls]
listen = "127.0.0.1:$router_tls_port"
cert = "$work/px/cert.pem"
key = "$work/px/key.pem"
[upstreams.legacy]
url = "http://127.0.0.1:$up_port"
[upstreams.svc]
url = "http://127.0.0.1:$up_port"
CONF
  for i in $(seq 1 50); do
    case $((i % 3)) in
      0) stage=legacy ;; 1) stage=migrated ;; 2) stage=canary ;;
    esac
    shadow=""
    [ "$i" = 25 ] && stage=migrated && shadow="shadow_percent = 0.0"
    [ "$i" = 26 ] && stage=migrated
    cat <<CONF
[[routes]]
name = "r$i"
methods = ["GET"]
path = "/api/v$i/items/{id}"
service = "svc"
stage = "$stage"
percent = 50.0
sticky = "header:x-user-id"
$shadow
CONF
  done
} > "$work/strangler.toml"
# The same router without the endpoint inventory (no TLS listener).
mkdir -p "$work/noinv"
sed -e "s/127.0.0.1:$router_port/127.0.0.1:$noinv_port/" -e "s/127.0.0.1:$admin_port/127.0.0.1:$noinv_admin/" \
    -e "s#sqlite://$work/state.db#sqlite://$work/noinv/state.db#" \
    -e "s/^access_log = false/access_log = false\ninventory = false/" \
    -e '/^\[proxy.tls\]/,/^key = /d' "$work/strangler.toml" > "$work/noinv/strangler.toml"

start_upstream "$up_port"
nginx -c "$work/px/nginx.conf" -g 'daemon off;' & pids+=($!)
"$bare" "127.0.0.1:$bare_port" "127.0.0.1:$up_port" "$workers" >/dev/null 2>"$work/bare.log" & pids+=($!)
"$bin" proxy -c "$work/strangler.toml" >/dev/null 2>"$work/strangler.log" & pids+=($!)
"$bin" proxy -c "$work/noinv/strangler.toml" >/dev/null 2>"$work/noinv.log" & pids+=($!)
for port in $up_port $nginx_port $bare_port $router_port $nginx_tls_port $router_tls_port $noinv_port; do wait_port "$port"; done

echo "wrk -t1 -c$conns -d${duration}s --latency; proxies with $workers worker(s); $(nproc) cores; $(date -u +%F)"
echo
echo "| target | req/s | p50 ms | p90 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|"
wrk_row "direct (upstream)" "http://127.0.0.1:$up_port/api/v25/items/7"
wrk_row "nginx reverse proxy" "http://127.0.0.1:$nginx_port/api/v25/items/7"
wrk_row "bare Pingora (no routing)" "http://127.0.0.1:$bare_port/api/v25/items/7"
wrk_row "strangler router, 50 routes" "http://127.0.0.1:$router_port/api/v25/items/7"
wrk_row "strangler router, 50 routes, inventory off" "http://127.0.0.1:$noinv_port/api/v25/items/7"
wrk_row "strangler router, reverse shadow of every request" "http://127.0.0.1:$router_port/api/v26/items/7"
# TLS with the same certificate: on keep-alive connections (the cost of
# encryption), then a new connection per request (handshakes/s).
wrk_row "nginx HTTPS, keep-alive" "https://127.0.0.1:$nginx_tls_port/api/v25/items/7"
wrk_row "strangler HTTPS, keep-alive" "https://127.0.0.1:$router_tls_port/api/v25/items/7"
wrk_row "nginx HTTPS, a handshake per request" "https://127.0.0.1:$nginx_tls_port/api/v25/items/7" -H "Connection: close"
wrk_row "strangler HTTPS, a handshake per request" "https://127.0.0.1:$router_tls_port/api/v25/items/7" -H "Connection: close"
